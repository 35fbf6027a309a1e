package fakeapi

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestBadReset(t *testing.T) {
	t0 := time.Date(2026, 4, 15, 9, 0, 0, 0, time.UTC)
	far := strconv.FormatInt(t0.AddDate(50, 0, 0).Unix(), 10)
	farDelta := strconv.FormatInt(int64(t0.AddDate(50, 0, 0).Sub(t0)/time.Second), 10)
	truth := strconv.FormatInt(t0.Add(time.Hour).Unix(), 10)
	tests := []struct {
		bad                  BadReset
		style                ResetStyle
		reset, retryAfter429 string // "" means no header
	}{
		{BadResetNone, ResetEpoch, truth, "3600"},
		{BadResetZero, ResetEpoch, strconv.FormatInt(t0.Unix(), 10), "0"},
		{BadResetZero, ResetDelta, "0", "0"},
		{BadResetPast, ResetEpoch, strconv.FormatInt(t0.Add(-time.Hour).Unix(), 10), ""},
		{BadResetPast, ResetDelta, "-3600", ""},
		{BadResetFar, ResetEpoch, far, ""},
		{BadResetFar, ResetDelta, farDelta, ""},
		{BadResetDate, ResetEpoch, truth, FarDate},
	}
	for _, tt := range tests {
		t.Run(string(tt.bad)+"/"+string(tt.style), func(t *testing.T) {
			clock := newFakeClock(t0)
			_, ts := newTestServer(t, Config{Contacts: 10, RateLimit: 1, ResetStyle: tt.style, BadReset: tt.bad, Now: clock.Now})
			for i, status := range []int{200, 429} {
				resp, _, err := doRequest(t, ts, "GET", ExportPath, "", "Bearer "+DemoKey)
				if err != nil || resp.StatusCode != status {
					t.Fatalf("call %d: status %d, %v; want %d", i+1, resp.StatusCode, err, status)
				}
				if got := resp.Header.Get("X-RateLimit-Reset"); got != tt.reset {
					t.Errorf("call %d: X-RateLimit-Reset %q, want %q", i+1, got, tt.reset)
				}
				want := ""
				if status == 429 {
					want = tt.retryAfter429
				}
				if got := resp.Header.Get("Retry-After"); got != want {
					t.Errorf("call %d: Retry-After %q, want %q", i+1, got, want)
				}
			}
		})
	}
}

func TestRedirectTo(t *testing.T) {
	srv, ts := newTestServer(t, Config{Contacts: 10, RedirectTo: "http://127.0.0.1:9/base/"})
	req, _ := http.NewRequest("GET", ts.URL+ExportPath+"?limit=5&created_after=2024-01-01", nil)
	req.Header.Set("Authorization", "Bearer "+DemoKey)
	c := ts.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := "http://127.0.0.1:9/base" + ExportPath + "?limit=5&created_after=2024-01-01"; resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != want {
		t.Errorf("status %d, Location %q; want 302 to %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	if srv.Requests() != 1 || srv.Calls() != 0 {
		t.Errorf("requests %d, calls %d; want 1 and 0", srv.Requests(), srv.Calls())
	}
}

func TestStallAfter(t *testing.T) {
	for _, tt := range []struct {
		name  string
		stall int
		query string
		lines int // lines before the silence: the header and the rows
	}{
		{"after 3 rows", 3, "limit=10", 4},
		{"shorter body", 30, "limit=10", 11},
		{"empty body", 3, "created_after=2030-01-01", 1},
		{"headers", StallHeaders, "limit=10", -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := New(Config{Contacts: 100, StallAfter: tt.stall})
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				defer close(done)
				srv.ServeHTTP(w, r)
			}))
			defer ts.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+ExportPath+"?"+tt.query, nil)
			req.Header.Set("Authorization", "Bearer "+DemoKey)
			if tt.stall == StallHeaders {
				// No answer comes; the handler waits for the client to go.
				tctx, tcancel := context.WithTimeout(ctx, 50*time.Millisecond)
				defer tcancel()
				if _, err := ts.Client().Do(req.WithContext(tctx)); !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("got %v, want no answer", err)
				}
			} else {
				resp, err := ts.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				br := bufio.NewReader(resp.Body)
				for i := 0; i < tt.lines; i++ {
					if _, err := br.ReadString('\n'); err != nil {
						t.Fatalf("line %d: %v", i+1, err)
					}
				}
				// Nothing more comes until the client gives up.
				more := make(chan int, 1)
				go func() { n, _ := br.Read(make([]byte, 1)); more <- n }()
				select {
				case n := <-more:
					t.Fatalf("%d more bytes after %d lines", n, tt.lines)
				case <-time.After(50 * time.Millisecond):
				}
				cancel()
				resp.Body.Close()
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the stalled handler did not end when the client went away")
			}
		})
	}
}

func TestOverrun(t *testing.T) {
	_, ts := newTestServer(t, Config{Contacts: 100, Overrun: 5})
	_, recs := export(t, ts, "limit=10")
	if len(recs) != 1+15 {
		t.Fatalf("%d rows, want 15", len(recs)-1)
	}
	for i := 10; i < 15; i++ {
		if strings.Join(recs[1+i], ",") != strings.Join(recs[1+i-10], ",") {
			t.Errorf("row %d is not row %d again", i, i-10)
		}
	}
	// An empty selection has nothing to repeat.
	_, recs = export(t, ts, "created_after=2030-01-01")
	if len(recs) != 1 {
		t.Errorf("%d rows past an empty selection", len(recs)-1)
	}

	// An endless body goes on past the dataset; the handler ends when the
	// client goes away.
	srv, err := New(Config{Contacts: 100, Overrun: OverrunEndless})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	es := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		srv.ServeHTTP(w, r)
	}))
	defer es.Close()
	req, _ := http.NewRequest("GET", es.URL+ExportPath+"?limit=10", nil)
	req.Header.Set("Authorization", "Bearer "+DemoKey)
	resp, err := es.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	for i := 0; i < 1+10000; i++ {
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
	}
	resp.Body.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the endless handler did not end when the client went away")
	}
}

func TestIgnoreBounds(t *testing.T) {
	_, ts := newTestServer(t, Config{Contacts: 100, IgnoreBounds: true})
	_, all := export(t, ts, "limit=50")
	_, bounded := export(t, ts, "limit=50&created_after=2030-01-01&created_before=2031-01-01")
	if len(all) != 51 || strings.Join(all[1], ",") != strings.Join(bounded[1], ",") || len(bounded) != len(all) {
		t.Errorf("bounds were not ignored: %d rows unbounded, %d bounded", len(all)-1, len(bounded)-1)
	}
	// They are still checked.
	resp, _, _ := doRequest(t, ts, "GET", ExportPath, "created_after=yesterday", "Bearer "+DemoKey)
	if resp.StatusCode != 400 {
		t.Errorf("a malformed bound got %d, want 400", resp.StatusCode)
	}
}

func TestEchoKey(t *testing.T) {
	const key = "wbk_echo_S3CR3T"
	keys := []Key{{Token: key, Workspace: "w", ReadContacts: true}}
	t.Run("errors", func(t *testing.T) {
		srv, ts := newTestServer(t, Config{Contacts: 10, EchoKey: []Echo{EchoErrors}, Keys: keys})
		srv.InjectFault(Fault500)
		resp, body, _ := doRequest(t, ts, "GET", ExportPath, "", "Bearer "+key)
		if e := decodeError(t, body); resp.StatusCode != 500 || !strings.HasSuffix(e.Error.Message, "(request had Authorization: Bearer "+key+")") {
			t.Errorf("status %d, message %q", resp.StatusCode, e.Error.Message)
		}
		if strings.Contains(resp.Header.Get("X-Request-ID"), key) {
			t.Error("the key is in X-Request-ID too")
		}
	})
	t.Run("request-id", func(t *testing.T) {
		_, ts := newTestServer(t, Config{Contacts: 10, EchoKey: []Echo{EchoRequestID}, Keys: keys})
		resp, body, _ := doRequest(t, ts, "GET", ExportPath, "", "Bearer "+key)
		if id := resp.Header.Get("X-Request-ID"); resp.StatusCode != 200 || !strings.HasPrefix(id, "req_") || !strings.HasSuffix(id, "."+key) {
			t.Errorf("status %d, X-Request-ID %q", resp.StatusCode, id)
		}
		if strings.Contains(string(body), key) {
			t.Error("the key is in the body too")
		}
	})
	t.Run("body", func(t *testing.T) {
		_, ts := newTestServer(t, Config{Contacts: 10, EchoKey: []Echo{EchoBody}, Keys: keys})
		resp, body, err := doRequest(t, ts, "GET", ExportPath, "", "Bearer "+key)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("status %d, %v", resp.StatusCode, err)
		}
		recs := parseCSV(t, body)
		if recs[1][1] != "echo Bearer "+key || recs[2][0] != key || len(recs) != 11 {
			t.Errorf("rows %q", recs[1:3])
		}
	})
}

func TestShuffleAndExtraColumns(t *testing.T) {
	srv, ts := newTestServer(t, Config{Contacts: 50, Seed: 3, ShuffleColumns: true, ExtraColumns: 2})
	headers := map[string]bool{}
	for call := 0; call < 4; call++ {
		_, recs := export(t, ts, "limit=20")
		header := recs[0]
		headers[strings.Join(header, ",")] = true
		if len(header) != len(DefaultFields)+2 {
			t.Fatalf("header %v: want the %d default fields and 2 extra", header, len(DefaultFields))
		}
		col := map[string]int{}
		for i, h := range header {
			col[h] = i
		}
		for _, name := range append(slices.Clone(DefaultFields), "unrequested_1", "unrequested_2") {
			if _, ok := col[name]; !ok {
				t.Fatalf("header %v lacks %s", header, name)
			}
		}
		// Every value sits under its own name.
		byID := map[string]Contact{}
		for i := 0; i < srv.Dataset().Len(); i++ {
			byID[srv.Dataset().Contact(i).ID] = srv.Dataset().Contact(i)
		}
		for _, rec := range recs[1:] {
			c, ok := byID[rec[col["id"]]]
			if !ok {
				t.Fatalf("row %v: id %q is not a contact's", rec, rec[col["id"]])
			}
			for _, name := range DefaultFields {
				want, _ := c.Field(name)
				if rec[col[name]] != want {
					t.Errorf("%s: %s = %q, want %q", c.ID, name, rec[col[name]], want)
				}
			}
			if len(rec[col["unrequested_1"]]) != 36 {
				t.Errorf("unrequested_1 = %q, want a UUID", rec[col["unrequested_1"]])
			}
		}
	}
	if len(headers) < 2 {
		t.Errorf("four responses shared one column order: %v", headers)
	}
	// Without shuffling, the first extra column stands before id.
	_, ts = newTestServer(t, Config{Contacts: 5, ExtraColumns: 1})
	if _, recs := export(t, ts, "fields=created_at,id"); !slices.Equal(recs[0], []string{"unrequested_1", "created_at", "id"}) {
		t.Errorf("header %v", recs[0])
	}
}

func TestMutateEndpoint(t *testing.T) {
	srv, ts := newTestServer(t, Config{Contacts: 200, Seed: 4, Control: true})
	resp, body, err := doRequest(t, ts, http.MethodPost, MutatePath, "edit=10&delete=5&append=3", "Bearer "+DemoKey)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST: %d %s %v", resp.StatusCode, body, err)
	}
	if d := srv.Dataset(); d.Len() != 203 || d.Live() < 198 || d.Live() > 202 {
		t.Errorf("after the mutation: %d contacts, %d live; body %s", d.Len(), d.Live(), body)
	}
	if !strings.Contains(string(body), `"appended":3`) {
		t.Errorf("body %s", body)
	}
	for _, tc := range []struct {
		method, query, auth string
		status              int
	}{
		{http.MethodGet, "edit=1", "Bearer " + DemoKey, 405},
		{http.MethodPost, "edit=1", "Bearer wbk_nope", 401},
		{http.MethodPost, "edit=lots", "Bearer " + DemoKey, 400},
	} {
		if resp, body, _ := doRequest(t, ts, tc.method, MutatePath, tc.query, tc.auth); resp.StatusCode != tc.status {
			t.Errorf("%s ?%s: %d %s, want %d", tc.method, tc.query, resp.StatusCode, body, tc.status)
		}
	}
	// Off by default.
	_, ts = newTestServer(t, Config{Contacts: 5})
	if resp, _, _ := doRequest(t, ts, http.MethodPost, MutatePath, "edit=1", "Bearer "+DemoKey); resp.StatusCode != 404 {
		t.Errorf("without Control: %d, want 404", resp.StatusCode)
	}
}
