package fakeapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var requestIDPattern = regexp.MustCompile(`^req_[0-9a-f]{16}$`)

func TestErrors(t *testing.T) {
	_, ts := newTestServer(t, Config{Contacts: 500, Seed: 3})
	bearer := "Bearer " + DemoKey
	tests := []struct {
		name   string
		method string
		path   string
		query  string
		auth   string
		status int
		code   string
		msg    string // a substring of the message
	}{
		{"missing key", "GET", ExportPath, "", "", 401, "invalid_key", "missing Authorization header"},
		{"basic scheme", "GET", ExportPath, "", "Basic d2JrOng=", 401, "invalid_key", "malformed Authorization header"},
		{"bearer without token", "GET", ExportPath, "", "Bearer", 401, "invalid_key", "malformed Authorization header"},
		{"token with space", "GET", ExportPath, "", "Bearer wbk_demo_key extra", 401, "invalid_key", "malformed Authorization header"},
		{"unknown key", "GET", ExportPath, "", "Bearer wbk_secret_unknown", 401, "invalid_key", "invalid or expired API key"},
		{"no read permission", "GET", ExportPath, "", "Bearer " + NoReadKey, 403, "insufficient_permissions", "read:contacts"},
		{"unknown path", "GET", "/v1/contacts", "", bearer, 404, "not_found", "no such endpoint: /v1/contacts"},
		{"trailing slash", "GET", ExportPath + "/", "", bearer, 404, "not_found", "no such endpoint"},
		{"post", "POST", ExportPath, "", bearer, 405, "method_not_allowed", "method POST is not allowed"},
		{"limit not integer", "GET", ExportPath, "limit=abc", bearer, 400, "validation_error", `limit must be an integer between 1 and 50000, got "abc"`},
		{"limit fractional", "GET", ExportPath, "limit=1.5", bearer, 400, "validation_error", `limit must be an integer between 1 and 50000, got "1.5"`},
		{"limit empty", "GET", ExportPath, "limit=", bearer, 400, "validation_error", `limit must be an integer between 1 and 50000, got ""`},
		{"limit zero", "GET", ExportPath, "limit=0", bearer, 400, "validation_error", "limit must be between 1 and 50000, got 0"},
		{"limit negative", "GET", ExportPath, "limit=-3", bearer, 400, "validation_error", "limit must be between 1 and 50000, got -3"},
		{"limit too big", "GET", ExportPath, "limit=50001", bearer, 400, "validation_error", "limit must be between 1 and 50000, got 50001"},
		{"limit twice", "GET", ExportPath, "limit=5&limit=6", bearer, 400, "validation_error", "limit must be given at most once"},
		{"created_after words", "GET", ExportPath, "created_after=yesterday", bearer, 400, "validation_error", `created_after must be an ISO 8601 date or date-time such as 2026-04-15 or 2026-04-15T09:00:00Z, got "yesterday"`},
		{"created_after no zone", "GET", ExportPath, "created_after=2026-04-15T09:00:00", bearer, 400, "validation_error", `created_after must be an ISO 8601`},
		{"created_after unencoded plus", "GET", ExportPath, "created_after=2026-04-15T09:00:00+02:00", bearer, 400, "validation_error", "must be encoded as %2B"},
		{"created_before bad month", "GET", ExportPath, "created_before=2026-13-01", bearer, 400, "validation_error", `created_before must be an ISO 8601 date or date-time such as 2026-04-15 or 2026-04-15T09:00:00Z, got "2026-13-01"`},
		{"created_before empty", "GET", ExportPath, "created_before=", bearer, 400, "validation_error", `created_before must be an ISO 8601`},
		{"after later than before", "GET", ExportPath, "created_after=2025-01-02&created_before=2025-01-01T23:59:59.5Z", bearer, 400, "validation_error", "created_after (2025-01-02T00:00:00Z) must not be later than created_before (2025-01-01T23:59:59.5Z)"},
		{"list_id with space", "GET", ExportPath, "list_id=lst+01", bearer, 400, "validation_error", `list_id must match ^[A-Za-z0-9_-]{1,64}$, got "lst 01"`},
		{"list_id too long", "GET", ExportPath, "list_id=" + strings.Repeat("a", 65), bearer, 400, "validation_error", "list_id must match"},
		{"list_id empty", "GET", ExportPath, "list_id=", bearer, 400, "validation_error", `list_id must match ^[A-Za-z0-9_-]{1,64}$, got ""`},
		{"tag empty", "GET", ExportPath, "tag=lead&tag=", bearer, 400, "validation_error", "tag must not be empty"},
		{"fields empty", "GET", ExportPath, "fields=", bearer, 400, "validation_error", "fields must not be empty"},
		{"fields unknown", "GET", ExportPath, "fields=id,salary", bearer, 400, "validation_error", `fields has unknown field "salary"`},
		{"fields duplicate", "GET", ExportPath, "fields=id,email,id", bearer, 400, "validation_error", `fields names "id" more than once`},
		{"fields empty name", "GET", ExportPath, "fields=id,,email", bearer, 400, "validation_error", "fields has an empty name at position 2"},
		{"malformed query", "GET", ExportPath, "limit=%zz", bearer, 400, "validation_error", "malformed query string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body, err := doRequest(t, ts, tt.method, tt.path, tt.query, tt.auth)
			if err != nil {
				t.Fatalf("reading body: %v", err)
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			id := resp.Header.Get("X-Request-ID")
			if !requestIDPattern.MatchString(id) {
				t.Errorf("X-Request-ID %q does not look like req_ + 16 hex digits", id)
			}
			e := decodeError(t, body)
			if e.Error.Code != tt.code {
				t.Errorf("code %q, want %q", e.Error.Code, tt.code)
			}
			if !strings.Contains(e.Error.Message, tt.msg) {
				t.Errorf("message %q does not contain %q", e.Error.Message, tt.msg)
			}
			if e.Error.RequestID != id {
				t.Errorf("body request_id %q, header %q", e.Error.RequestID, id)
			}
			if strings.Contains(string(body), "wbk_") {
				t.Errorf("error body repeats an API key: %s", body)
			}
			if tt.status == 405 && resp.Header.Get("Allow") != "GET" {
				t.Errorf("Allow %q, want GET", resp.Header.Get("Allow"))
			}
			if resp.Header.Get("X-RateLimit-Limit") != "" {
				t.Errorf("rate-limit headers sent with the limit off")
			}
		})
	}
}

func TestResponseHeaders(t *testing.T) {
	_, ts := newTestServer(t, Config{Contacts: 300, Seed: 5})
	seen := map[string]bool{}
	for _, q := range []string{"", "limit=1", "created_after=2030-01-01", "fields=id"} {
		t.Run("query="+q, func(t *testing.T) {
			resp, body, err := doRequest(t, ts, "GET", ExportPath, q, "Bearer "+DemoKey)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("status %d, err %v", resp.StatusCode, err)
			}
			if got := resp.Header.Get("Content-Type"); got != "text/csv; charset=utf-8" {
				t.Errorf("Content-Type %q", got)
			}
			if got := resp.Header.Get("Content-Disposition"); got != `attachment; filename="contacts-export.csv"` {
				t.Errorf("Content-Disposition %q", got)
			}
			if resp.ContentLength != -1 || !slices.Equal(resp.TransferEncoding, []string{"chunked"}) {
				t.Errorf("ContentLength %d, TransferEncoding %v; want a chunked stream", resp.ContentLength, resp.TransferEncoding)
			}
			id := resp.Header.Get("X-Request-ID")
			if !requestIDPattern.MatchString(id) || seen[id] {
				t.Errorf("X-Request-ID %q malformed or repeated", id)
			}
			seen[id] = true
			if !strings.HasSuffix(string(body), "\r\n") {
				t.Errorf("body does not end with CRLF")
			}
			if q == "created_after=2030-01-01" && string(body) != strings.Join(DefaultFields, ",")+"\r\n" {
				t.Errorf("empty export body %q, want only the header row", body)
			}
		})
	}
}

func TestOrders(t *testing.T) {
	allFields := strings.Join(append(slices.Clone(DefaultFields), ExtraFields...), ",")
	for _, order := range []Order{OrderAsc, OrderDesc, OrderRandom} {
		t.Run(string(order), func(t *testing.T) {
			srv, ts := newTestServer(t, Config{Contacts: 4000, Seed: 11, Order: order})
			d := srv.Dataset()
			a, b := d.CreatedAt(1000), d.CreatedAt(2500)
			tests := []struct {
				name   string
				query  string
				after  *time.Time
				before *time.Time
				limit  int
			}{
				{"everything", "", nil, nil, DefaultLimit},
				{"all fields", "fields=" + allFields, nil, nil, DefaultLimit},
				{"truncated", "limit=700", nil, nil, 700},
				{"window", "created_after=" + a.Format(time.RFC3339) + "&created_before=" + b.Format(time.RFC3339), &a, &b, DefaultLimit},
				{"truncated window", "limit=50&created_after=" + a.Format(time.RFC3339) + "&created_before=" + b.Format(time.RFC3339), &a, &b, 50},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					_, recs := export(t, ts, tt.query)
					window := selectRef(d, tt.after, tt.before, BoundsInclusive, nil)
					want := orderRef(d, window, order, tt.limit)
					checkRows(t, d, recs, want)
					if tt.limit >= len(window) {
						got := make([]int, 0, len(recs)-1)
						for _, rec := range recs[1:] {
							i, ok := d.Index(rec[0])
							if !ok {
								t.Fatalf("unknown id %s", rec[0])
							}
							got = append(got, i)
						}
						slices.Sort(got)
						if !slices.Equal(got, window) {
							t.Errorf("untruncated response is not exactly the window")
						}
					}
				})
			}
		})
	}
}

func TestBounds(t *testing.T) {
	for _, b := range []Bounds{BoundsInclusive, BoundsExclusive, BoundsMixed} {
		t.Run(string(b), func(t *testing.T) {
			srv, ts := newTestServer(t, Config{Contacts: 20000, Seed: 2, Bounds: b})
			d := srv.Dataset()
			lo, n := d.LargestGroup()
			if n < 2 {
				t.Fatalf("largest group has %d contacts; want a shared second", n)
			}
			// hi is the time of a contact some way after the largest group.
			_, to := d.search(lo.UnixMicro(), lo.UnixMicro())
			hi := d.CreatedAt(min(d.Len()-1, to+300))
			plus2 := time.FixedZone("", 2*3600)
			half := 500 * time.Millisecond
			day := time.Date(2023, 6, 1, 0, 0, 0, 0, time.UTC)
			dayAfter := day.AddDate(0, 0, 1)
			tests := []struct {
				name          string
				after, before string
				a, b          time.Time
			}{
				{"exact seconds", lo.Format(time.RFC3339), hi.Format(time.RFC3339), lo, hi},
				{"same instant in +02:00", lo.In(plus2).Format(time.RFC3339), hi.In(plus2).Format(time.RFC3339), lo, hi},
				{"half a second inside", lo.Add(-half).Format(time.RFC3339Nano), hi.Add(half).Format(time.RFC3339Nano), lo.Add(-half), hi.Add(half)},
				{"half a second outside", lo.Add(half).Format(time.RFC3339Nano), hi.Add(-half).Format(time.RFC3339Nano), lo.Add(half), hi.Add(-half)},
				{"nanoseconds", lo.Add(time.Nanosecond).Format(time.RFC3339Nano), hi.Add(-time.Nanosecond).Format(time.RFC3339Nano), lo.Add(time.Nanosecond), hi.Add(-time.Nanosecond)},
				{"one instant", lo.Format(time.RFC3339), lo.Format(time.RFC3339), lo, lo},
				{"dates", day.Format(time.DateOnly), dayAfter.Format(time.DateOnly), day, dayAfter},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					q := url.Values{"created_after": {tt.after}, "created_before": {tt.before}, "limit": {"50000"}}
					_, recs := export(t, ts, q.Encode())
					want := selectRef(d, &tt.a, &tt.b, b, nil)
					checkRows(t, d, recs, want)
				})
			}
			// The exact-second window must differ between the rules by
			// exactly the contacts on its edges.
			_, recs := export(t, ts, url.Values{"created_after": {lo.Format(time.RFC3339)}, "created_before": {hi.Format(time.RFC3339)}, "limit": {"50000"}}.Encode())
			hiFrom, hiTo := d.search(hi.UnixMicro(), hi.UnixMicro())
			nHi := hiTo - hiFrom
			all := len(selectRef(d, &lo, &hi, BoundsInclusive, nil))
			want := map[Bounds]int{BoundsInclusive: all, BoundsExclusive: all - n - nHi, BoundsMixed: all - nHi}[b]
			if got := len(recs) - 1; got != want {
				t.Errorf("edge window has %d rows, want %d", got, want)
			}
		})
	}
}

func TestFilters(t *testing.T) {
	srv, ts := newTestServer(t, Config{Contacts: 5000, Seed: 9})
	d := srv.Dataset()
	has := func(tags ...string) func(Contact) bool {
		return func(c Contact) bool {
			for _, tag := range tags {
				if !slices.Contains(c.Tags, tag) {
					return false
				}
			}
			return true
		}
	}
	inList := func(l string, more func(Contact) bool) func(Contact) bool {
		return func(c Contact) bool { return slices.Contains(c.ListIDs, l) && (more == nil || more(c)) }
	}
	tests := []struct {
		name     string
		query    string
		keep     func(Contact) bool
		nonEmpty bool
	}{
		{"one tag", "tag=lead", has("lead"), true},
		{"tag with a space", "tag=trade+show", has("trade show"), true},
		{"two tags are AND", "tag=lead&tag=priority", has("lead", "priority"), true},
		{"three tags", "tag=lead&tag=prospect&tag=newsletter", has("lead", "prospect", "newsletter"), true},
		{"tag twice", "tag=vip&tag=vip", has("vip"), true},
		{"unknown tag", "tag=Lead", func(Contact) bool { return false }, false},
		{"list", "list_id=lst_03", inList("lst_03", nil), true},
		{"list and tag", "list_id=lst_20&tag=customer", inList("lst_20", has("customer")), true},
		{"unknown list", "list_id=lst_99", func(Contact) bool { return false }, false},
		{"unknown parameter ignored", "color=blue", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, recs := export(t, ts, tt.query)
			want := selectRef(d, nil, nil, BoundsInclusive, tt.keep)
			if tt.nonEmpty && len(want) == 0 {
				t.Fatalf("test data has no matching contact")
			}
			checkRows(t, d, recs, want)
		})
	}
}

func TestFields(t *testing.T) {
	srv, ts := newTestServer(t, Config{Contacts: 800, Seed: 4})
	d := srv.Dataset()
	all := make([]int, d.Len())
	for i := range all {
		all[i] = i
	}
	tests := []struct {
		name   string
		fields string
		header []string
	}{
		{"default", "", DefaultFields},
		{"reordered", "created_at,id,email", []string{"created_at", "id", "email"}},
		{"extras", "id,list_ids,city,country,lead_score,notes", []string{"id", "list_ids", "city", "country", "lead_score", "notes"}},
		{"one", "notes", []string{"notes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := ""
			if tt.fields != "" {
				q = "fields=" + tt.fields
			}
			_, recs := export(t, ts, q)
			if !slices.Equal(recs[0], tt.header) {
				t.Fatalf("header %q, want %q", recs[0], tt.header)
			}
			checkRows(t, d, recs, all)
		})
	}
	if _, ok := d.Contact(0).Field("salary"); ok {
		t.Errorf("Field(salary) reported a known field")
	}
}

// TestQuotingRoundTrip checks that values with commas, quotes, newlines and
// non-ASCII letters survive the CSV encoding.
func TestQuotingRoundTrip(t *testing.T) {
	srv, ts := newTestServer(t, Config{Contacts: 3000, Seed: 6})
	d := srv.Dataset()
	var comma, quote, newline, nonASCII, spacedTags bool
	for i := range d.Len() {
		c := d.Contact(i)
		comma = comma || strings.Contains(c.CompanyName, ",")
		quote = quote || strings.Contains(c.CompanyName, `"`)
		newline = newline || strings.Contains(c.Notes, "\n")
		nonASCII = nonASCII || strings.ContainsAny(c.FullName, "éñüøłŁ王")
		tags, _ := c.Field("tags")
		spacedTags = spacedTags || strings.Contains(tags, ", ")
	}
	if !comma || !quote || !newline || !nonASCII || !spacedTags {
		t.Fatalf("dataset lacks hard values: comma %v quote %v newline %v non-ASCII %v spaced tags %v", comma, quote, newline, nonASCII, spacedTags)
	}
	fields := strings.Join(append(slices.Clone(DefaultFields), ExtraFields...), ",")
	_, recs := export(t, ts, "fields="+fields)
	all := make([]int, d.Len())
	for i := range all {
		all[i] = i
	}
	checkRows(t, d, recs, all)
}

func TestTimeFormatOffset(t *testing.T) {
	srv, ts := newTestServer(t, Config{Contacts: 2000, Seed: 8, TimeFormat: TimeOffset})
	d := srv.Dataset()
	_, recs := export(t, ts, "fields=id,created_at")
	offsets := map[string]bool{}
	for r, rec := range recs[1:] {
		got, err := time.Parse(time.RFC3339, rec[1])
		if err != nil {
			t.Fatalf("row %d created_at %q: %v", r, rec[1], err)
		}
		if want := d.Contact(r).CreatedAt; !got.Equal(want) {
			t.Fatalf("row %d created_at %q is %s, want %s", r, rec[1], got.UTC(), want)
		}
		if strings.HasSuffix(rec[1], "Z") {
			t.Fatalf("row %d created_at %q has no numeric offset", r, rec[1])
		}
		offsets[rec[1][len(rec[1])-6:]] = true
	}
	if len(offsets) < 5 {
		t.Errorf("only %d distinct offsets", len(offsets))
	}
}

func TestRateLimit(t *testing.T) {
	t0 := time.Date(2026, 4, 15, 9, 0, 0, 500_000_000, time.UTC)
	const hour = 700 * time.Millisecond
	for _, style := range []ResetStyle{ResetEpoch, ResetDelta} {
		t.Run(string(style), func(t *testing.T) {
			clock := newFakeClock(t0)
			srv, ts := newTestServer(t, Config{
				Contacts: 50, RateLimit: 3, Hour: hour, ResetStyle: style, Now: clock.Now,
				Keys: []Key{
					{Token: "wbk_a", Workspace: "a", ReadContacts: true},
					{Token: "wbk_a_noread", Workspace: "a"},
					{Token: "wbk_b", Workspace: "b", ReadContacts: true},
				},
			})
			// reset returns the X-RateLimit-Reset expected for a window
			// ending at end, seen at the clock's time.
			reset := func(end time.Time) string {
				if style == ResetDelta {
					return strconv.FormatInt(ceilSeconds(end.Sub(clock.Now())), 10)
				}
				return strconv.FormatInt(end.Add(time.Second-1).Unix(), 10)
			}
			steps := []struct {
				name      string
				advance   time.Duration
				auth      string
				query     string
				status    int
				remaining string // "" means no rate-limit headers
				windowEnd time.Time
				calls     int64
			}{
				{"unknown key is not counted", 0, "Bearer wbk_x", "", 401, "", time.Time{}, 0},
				{"first call starts the window", 0, "Bearer wbk_a", "", 200, "2", t0.Add(hour), 1},
				{"forbidden is not counted", 0, "Bearer wbk_a_noread", "", 403, "", time.Time{}, 1},
				{"bad request counts", 100 * time.Millisecond, "Bearer wbk_a", "limit=0", 400, "1", t0.Add(hour), 2},
				{"last call", 100 * time.Millisecond, "Bearer wbk_a", "", 200, "0", t0.Add(hour), 3},
				{"over the limit", 100 * time.Millisecond, "Bearer wbk_a", "", 429, "0", t0.Add(hour), 3},
				{"other workspace has its own window", 0, "Bearer wbk_b", "", 200, "2", t0.Add(300*time.Millisecond + hour), 4},
				{"still over just before the reset", 400*time.Millisecond - 1, "Bearer wbk_a", "", 429, "0", t0.Add(hour), 4},
				{"window resets", 1, "Bearer wbk_a", "", 200, "2", t0.Add(2 * hour), 5},
				{"counts down again", 0, "Bearer wbk_a", "", 200, "1", t0.Add(2 * hour), 6},
			}
			for _, st := range steps {
				clock.Advance(st.advance)
				resp, body, err := doRequest(t, ts, "GET", ExportPath, st.query, st.auth)
				if err != nil {
					t.Fatalf("%s: reading body: %v", st.name, err)
				}
				if resp.StatusCode != st.status {
					t.Fatalf("%s: status %d, want %d; body %s", st.name, resp.StatusCode, st.status, body)
				}
				h := resp.Header
				if st.remaining == "" {
					if h.Get("X-RateLimit-Limit") != "" {
						t.Errorf("%s: unexpected rate-limit headers", st.name)
					}
				} else {
					if h.Get("X-RateLimit-Limit") != "3" || h.Get("X-RateLimit-Remaining") != st.remaining {
						t.Errorf("%s: Limit %q Remaining %q, want 3 and %s", st.name, h.Get("X-RateLimit-Limit"), h.Get("X-RateLimit-Remaining"), st.remaining)
					}
					if got, want := h.Get("X-RateLimit-Reset"), reset(st.windowEnd); got != want {
						t.Errorf("%s: X-RateLimit-Reset %q, want %q", st.name, got, want)
					}
				}
				if st.status == 429 {
					e := decodeError(t, body)
					if e.Error.Code != "rate_limited" || !strings.Contains(e.Error.Message, "3 calls per 700ms per workspace") {
						t.Errorf("%s: error %+v", st.name, e.Error)
					}
					want := strconv.FormatInt(ceilSeconds(st.windowEnd.Sub(clock.Now())), 10)
					if got := h.Get("Retry-After"); got != want {
						t.Errorf("%s: Retry-After %q, want %q", st.name, got, want)
					}
				} else if h.Get("Retry-After") != "" {
					t.Errorf("%s: Retry-After on a %d", st.name, st.status)
				}
				if got := srv.Calls(); got != st.calls {
					t.Errorf("%s: Calls() = %d, want %d", st.name, got, st.calls)
				}
			}
			if got := srv.Requests(); got != int64(len(steps)) {
				t.Errorf("Requests() = %d, want %d", got, len(steps))
			}
		})
	}
}

func TestRateLimitEpochRoundsUp(t *testing.T) {
	// A window ending at .2 s past a second reports the next second; the
	// delta style reports at least one second.
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		style ResetStyle
		start time.Time
		hour  time.Duration
		want  string
	}{
		{ResetEpoch, t0, 1200 * time.Millisecond, strconv.FormatInt(t0.Unix()+2, 10)},
		{ResetEpoch, t0, 2 * time.Second, strconv.FormatInt(t0.Unix()+2, 10)},
		{ResetDelta, t0, 1200 * time.Millisecond, "2"},
		{ResetDelta, t0, 200 * time.Millisecond, "1"},
		{ResetDelta, t0, time.Hour, "3600"},
	}
	for _, tt := range tests {
		t.Run(string(tt.style)+"/"+tt.hour.String(), func(t *testing.T) {
			clock := newFakeClock(tt.start)
			_, ts := newTestServer(t, Config{Contacts: 10, RateLimit: 10, Hour: tt.hour, ResetStyle: tt.style, Now: clock.Now})
			resp, _, _ := doRequest(t, ts, "GET", ExportPath, "", "Bearer "+DemoKey)
			if got := resp.Header.Get("X-RateLimit-Reset"); got != tt.want {
				t.Errorf("X-RateLimit-Reset %q, want %q", got, tt.want)
			}
		})
	}
}

func TestInjectedFaults(t *testing.T) {
	srv, ts := newTestServer(t, Config{Contacts: 3000, Seed: 12, SlowDelay: time.Millisecond})
	fields := "fields=" + strings.Join(append(slices.Clone(DefaultFields), ExtraFields...), ",")
	_, _, _ = doRequest(t, ts, "GET", ExportPath, fields, "Bearer "+DemoKey)
	_, normal, err := doRequest(t, ts, "GET", ExportPath, fields, "Bearer "+DemoKey)
	if err != nil || len(normal) < 3*flushEvery {
		t.Fatalf("normal body: %d bytes, %v; want several chunks", len(normal), err)
	}
	srv.InjectFault(Fault500, Fault503, Fault502, FaultNone, FaultCut, FaultSlow, FaultCut, FaultCut)
	tests := []struct {
		name   string
		query  string
		status int
		cut    bool
	}{
		{"500", fields, 500, false},
		{"503", fields, 503, false},
		{"502", fields, 502, false},
		{"none", fields, 200, false},
		{"cut", fields, 200, true},
		{"slow", fields, 200, false},
		{"cut empty export", "created_after=2030-01-01", 200, true},
		{"cut one row", "limit=1", 200, true},
		{"queue drained", fields, 200, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body, err := doRequest(t, ts, "GET", ExportPath, tt.query, "Bearer "+DemoKey)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			switch {
			case tt.status >= 500:
				if err != nil {
					t.Fatalf("reading error body: %v", err)
				}
				e := decodeError(t, body)
				if e.Error.Code != "internal_error" || resp.Header.Get("Content-Type") != "application/json" {
					t.Errorf("5xx body %s, Content-Type %q", body, resp.Header.Get("Content-Type"))
				}
			case tt.cut:
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("reading a cut body: err %v, want io.ErrUnexpectedEOF", err)
				}
				if tt.query == fields {
					if len(body) < len(normal)/4 || len(body) > len(normal)*3/4 || !strings.HasPrefix(string(normal), string(body)) {
						t.Errorf("cut body has %d of %d bytes or is not a prefix", len(body), len(normal))
					}
				}
				if strings.HasSuffix(string(body), "\r\n") {
					t.Errorf("cut body ends at a row boundary")
				}
			default:
				if err != nil {
					t.Fatalf("reading body: %v", err)
				}
				if tt.query == fields && string(body) != string(normal) {
					t.Errorf("body (%d bytes) differs from a normal one (%d bytes)", len(body), len(normal))
				}
			}
		})
	}
	if got, want := srv.Calls(), int64(2+len(tests)); got != want {
		t.Errorf("Calls() = %d, want %d", got, want)
	}
}

func TestRandomFaults(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		// check inspects one call's outcome.
		check func(t *testing.T, status int, readErr error)
	}{
		{"fail", Config{FailRate: 1}, func(t *testing.T, status int, _ error) {
			if status != 500 && status != 502 && status != 503 {
				t.Errorf("status %d, want a 5xx", status)
			}
		}},
		{"cut", Config{CutRate: 1}, func(t *testing.T, status int, err error) {
			if status != 200 || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("status %d, read error %v; want a cut 200", status, err)
			}
		}},
		{"slow", Config{SlowRate: 1, SlowDelay: time.Millisecond}, func(t *testing.T, status int, err error) {
			if status != 200 || err != nil {
				t.Errorf("status %d, read error %v; want a complete 200", status, err)
			}
		}},
		{"never", Config{}, func(t *testing.T, status int, err error) {
			if status != 200 || err != nil {
				t.Errorf("status %d, read error %v; want a complete 200", status, err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Contacts = 200
			_, ts := newTestServer(t, tt.cfg)
			statuses := map[int]bool{}
			for range 30 {
				resp, _, err := doRequest(t, ts, "GET", ExportPath, "", "Bearer "+DemoKey)
				statuses[resp.StatusCode] = true
				tt.check(t, resp.StatusCode, err)
			}
			if tt.name == "fail" && len(statuses) < 2 {
				t.Errorf("fail rate picked only statuses %v", statuses)
			}
		})
	}
	// Rates between 0 and 1 fail some calls and not others.
	_, ts := newTestServer(t, Config{Contacts: 100, FailRate: 0.5})
	statuses := map[int]int{}
	for range 60 {
		resp, _, _ := doRequest(t, ts, "GET", ExportPath, "", "Bearer "+DemoKey)
		statuses[resp.StatusCode]++
	}
	if statuses[200] < 10 || statuses[200] > 50 {
		t.Errorf("FailRate 0.5 gave statuses %v", statuses)
	}
}

// TestSlowStreamStopsOnCancel checks that a slow body stops as soon as the
// client goes away.
func TestSlowStreamStopsOnCancel(t *testing.T) {
	srv, err := New(Config{Contacts: 5000, SlowDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	srv.InjectFault(FaultSlow)
	done := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		srv.ServeHTTP(w, r)
	}))
	defer ts.Close()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+ExportPath, nil)
	req.Header.Set("Authorization", "Bearer "+DemoKey)
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "id,full_na" {
		t.Fatalf("first bytes %q, %v", buf, err)
	}
	cancel()
	resp.Body.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("handler still streaming after the client went away")
	}
}

func TestConcurrentRequests(t *testing.T) {
	srv, ts := newTestServer(t, Config{Contacts: 2000, Seed: 21, Order: OrderRandom, RateLimit: 1000})
	d := srv.Dataset()
	want := orderRef(d, selectRef(d, nil, nil, BoundsInclusive, nil), OrderRandom, 500)
	errc := make(chan error, 8)
	for range 8 {
		go func() {
			resp, body, err := doRequest(t, ts, "GET", ExportPath, "limit=500&fields=id", "Bearer "+DemoKey)
			if err == nil && resp.StatusCode != 200 {
				err = errors.New(resp.Status)
			}
			if err == nil {
				lines := strings.Split(strings.TrimSuffix(string(body), "\r\n"), "\r\n")
				if len(lines) != 501 || lines[1] != d.Contact(want[0]).ID || lines[500] != d.Contact(want[499]).ID {
					err = errors.New("unexpected rows")
				}
			}
			errc <- err
		}()
	}
	for range 8 {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	if srv.Calls() != 8 || srv.Requests() != 8 {
		t.Errorf("Calls %d, Requests %d, want 8 and 8", srv.Calls(), srv.Requests())
	}
}

func TestNewValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error; "" means valid
	}{
		{"zero value", Config{}, ""},
		{"everything set", Config{Contacts: 10, Order: OrderRandom, Bounds: BoundsMixed, RateLimit: 3, Hour: time.Second, ResetStyle: ResetDelta, TimeFormat: TimeOffset, FailRate: 0.1, CutRate: 1, SlowRate: 0, SlowDelay: time.Millisecond}, ""},
		{"negative contacts", Config{Contacts: -1}, "Contacts -1"},
		{"too many contacts", Config{Contacts: MaxContacts + 1}, "Contacts"},
		{"unknown order", Config{Order: "newest"}, `unknown Order "newest"`},
		{"unknown bounds", Config{Bounds: "closed"}, `unknown Bounds "closed"`},
		{"unknown reset style", Config{ResetStyle: "iso"}, `unknown ResetStyle "iso"`},
		{"unknown time format", Config{TimeFormat: "local"}, `unknown TimeFormat "local"`},
		{"negative rate limit", Config{RateLimit: -1}, "negative RateLimit"},
		{"negative hour", Config{Hour: -time.Second}, "negative Hour"},
		{"negative slow delay", Config{SlowDelay: -time.Second}, "negative SlowDelay"},
		{"fail rate above 1", Config{FailRate: 1.5}, "FailRate 1.5 outside [0, 1]"},
		{"cut rate negative", Config{CutRate: -0.1}, "CutRate -0.1 outside [0, 1]"},
		{"slow rate NaN", Config{SlowRate: nan()}, "SlowRate NaN outside [0, 1]"},
		{"empty token", Config{Keys: []Key{{Workspace: "w"}}}, "Keys[0] has an empty Token"},
		{"repeated token", Config{Keys: []Key{{Token: "a", Workspace: "w"}, {Token: "a", Workspace: "w"}}}, "Keys[1] repeats a Token"},
		{"empty workspace", Config{Keys: []Key{{Token: "a"}}}, "Keys[0] has an empty Workspace"},
		{"unnamed workspace of its own", Config{Workspaces: []Workspace{{Seed: 2}}}, "Workspaces[0] has an empty Name"},
		{"workspace of its own twice", Config{Workspaces: []Workspace{{Name: "w"}, {Name: "w"}}}, `Workspaces[1] repeats the Name "w"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := New(tt.cfg)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if tt.cfg.Contacts == 0 && srv.Dataset().Len() != 10000 {
					t.Errorf("default dataset has %d contacts, want 10000", srv.Dataset().Len())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func nan() float64 {
	zero := 0.0
	return zero / zero
}

// TestWorkspacesOfTheirOwn exports with the keys of two workspaces, one
// with contacts of its own: each key sees only its workspace's contacts,
// and a change of the main dataset does not reach the other.
func TestWorkspacesOfTheirOwn(t *testing.T) {
	srv, ts := newTestServer(t, Config{Contacts: 30, Seed: 1,
		Keys:       []Key{{Token: "wbk_a", Workspace: "a", ReadContacts: true}, {Token: "wbk_b", Workspace: "b", ReadContacts: true}},
		Workspaces: []Workspace{{Name: "b", Contacts: 20, Seed: 2}}})
	ids := func(key string) map[string]bool {
		t.Helper()
		resp, body, err := doRequest(t, ts, http.MethodGet, ExportPath, "", "Bearer "+key)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("export with %s: %d %v %s", key, resp.StatusCode, err, body)
		}
		out := map[string]bool{}
		for _, rec := range parseCSV(t, body)[1:] {
			out[rec[0]] = true
		}
		return out
	}
	a, b := ids("wbk_a"), ids("wbk_b")
	if len(a) != 30 || len(b) != 20 {
		t.Fatalf("workspace a exports %d contacts, b %d; want 30 and 20", len(a), len(b))
	}
	for id := range b {
		if a[id] {
			t.Errorf("contact %s is in both workspaces", id)
		}
	}
	srv.Delete(0, 1, 2)
	if n, m := len(ids("wbk_a")), len(ids("wbk_b")); n != 27 || m != 20 {
		t.Errorf("after deleting 3 of the main contacts: a %d, b %d; want 27 and 20", n, m)
	}
	if srv.WorkspaceDataset("b").Len() != 20 || srv.WorkspaceDataset("a") != srv.Dataset() {
		t.Error("WorkspaceDataset")
	}
}
