package fakeapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestSubSecondDataset checks the sub-second workspace: the same contacts
// in the same seconds as the whole-second one, ascending, spread over their
// seconds, some at the whole second, some sharing an instant.
func TestSubSecondDataset(t *testing.T) {
	whole := newDataset(20000, 5)
	d := whole.withFractions()
	var fractional, wholeGroups, sharedInstant, spread int
	for i := 0; i < d.Len(); i++ {
		at, sec := d.CreatedAt(i), whole.CreatedAt(i)
		if at.Truncate(time.Second) != sec {
			t.Fatalf("contact %d is created at %s, outside its second %s", i, at, sec)
		}
		if i > 0 && at.Before(d.CreatedAt(i-1)) {
			t.Fatalf("contact %d at %s comes before contact %d at %s", i, at, i-1, d.CreatedAt(i-1))
		}
		if !d.Contact(i).CreatedAt.Equal(at) || d.Contact(i).ID != whole.Contact(i).ID {
			t.Fatalf("contact %d: Contact says %s, CreatedAt %s", i, d.Contact(i).CreatedAt, at)
		}
		if at != sec {
			fractional++
		}
		if i > 0 && sec.Equal(whole.CreatedAt(i-1)) && (i == 1 || !sec.Equal(whole.CreatedAt(i-2))) {
			// The second contact of a group sharing a second.
			switch prev := d.CreatedAt(i - 1); {
			case at.Equal(prev) && at.Equal(sec):
				wholeGroups++
			case at.Equal(prev):
				sharedInstant++
			default:
				spread++
			}
		}
	}
	t.Logf("%d of %d contacts at a fraction of a second; groups: %d at the whole second, %d sharing another instant, %d spread",
		fractional, d.Len(), wholeGroups, sharedInstant, spread)
	if fractional < d.Len()/2 || wholeGroups == 0 || sharedInstant == 0 || spread == 0 {
		t.Error("the sub-second workspace lacks one of its kinds of contacts")
	}
	// Appending in the last contact's second keeps the times ascending.
	last := d.CreatedAt(d.Len() - 1)
	more, err := d.appended(3, last.Unix())
	if err != nil {
		t.Fatal(err)
	}
	if n := more.Len(); more.CreatedAt(n - 1).Before(more.CreatedAt(n - 4)) {
		t.Errorf("appended contacts at %s come before the last one at %s", more.CreatedAt(n-1), last)
	}
}

// TestBoundPrecision checks that a coarse server truncates the bounds it is
// sent before the bound rule applies, on contacts created within seconds.
func TestBoundPrecision(t *testing.T) {
	for _, p := range []Precision{PrecisionExact, PrecisionMicrosecond, PrecisionMillisecond, PrecisionSecond} {
		for _, b := range []Bounds{BoundsInclusive, BoundsExclusive, BoundsMixed} {
			t.Run(string(p)+"/"+string(b), func(t *testing.T) {
				srv, ts := newTestServer(t, Config{Contacts: 5000, Seed: 8, Bounds: b, BoundPrecision: p, SubSecond: true})
				d := srv.Dataset()
				// Bounds a little after two contacts within their seconds.
				lo, hi := d.CreatedAt(1000).Add(300*time.Microsecond+7), d.CreatedAt(1300).Add(2*time.Millisecond+1)
				q := url.Values{"created_after": {lo.Format(time.RFC3339Nano)}, "created_before": {hi.Format(time.RFC3339Nano)}, "limit": {"50000"}}
				_, recs := export(t, ts, q.Encode())
				a, z := lo, hi
				if u := p.unit(); u > 0 {
					a, z = lo.Truncate(u), hi.Truncate(u)
				}
				checkRows(t, d, recs, selectRef(d, &a, &z, b, nil))
				if p == PrecisionSecond && len(selectRef(d, &lo, &hi, b, nil)) == len(recs)-1 {
					t.Error("the test's bounds do not tell whole seconds from exact bounds")
				}
			})
		}
	}
}

// TestTrickle checks that a trickling body comes whole, a byte at a time.
func TestTrickle(t *testing.T) {
	_, plain := newTestServer(t, Config{Contacts: 100, Seed: 3})
	_, want, err := doRequest(t, plain, http.MethodGet, ExportPath, "limit=1", "Bearer "+DemoKey)
	if err != nil {
		t.Fatal(err)
	}
	_, ts := newTestServer(t, Config{Contacts: 100, Seed: 3, Trickle: 5 * time.Millisecond})
	req, _ := http.NewRequest(http.MethodGet, ts.URL+ExportPath+"?limit=1", nil)
	req.Header.Set("Authorization", "Bearer "+DemoKey)
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got []byte
	reads := 0
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			reads++
			got = append(got, buf[:n]...)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if string(got) != string(want) {
		t.Errorf("trickled body %q, want %q", got, want)
	}
	// Each byte is flushed on its own: the body cannot come in a few reads
	// (a reader that lags coalesces some).
	if reads < len(want)/10 {
		t.Errorf("%d bytes came in %d reads; want a trickle", len(want), reads)
	}
}

// TestErrorBody checks padded and endless error bodies: valid JSON when
// they end, and an endless one stops when the client goes away.
func TestErrorBody(t *testing.T) {
	srv, ts := newTestServer(t, Config{Contacts: 10, ErrorBody: 100_000})
	resp, body, err := doRequest(t, ts, http.MethodGet, ExportPath, "", "Bearer wbk_nope")
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status %d, %v", resp.StatusCode, err)
	}
	var eb errorBody
	if err := json.Unmarshal(body, &eb); err != nil {
		t.Fatalf("padded error body is not JSON: %v", err)
	}
	if eb.Error.Code != "invalid_key" || eb.Error.RequestID == "" || len(eb.Error.Message) < 100_000 ||
		!strings.HasPrefix(eb.Error.Message, "invalid or expired API key ") {
		t.Errorf("padded error %s %s, message of %d bytes starting %.60q", eb.Error.Code, eb.Error.RequestID, len(eb.Error.Message), eb.Error.Message)
	}
	if srv.ErrorBytes() != int64(len(body)) {
		t.Errorf("ErrorBytes %d, body %d bytes", srv.ErrorBytes(), len(body))
	}

	srv, ts = newTestServer(t, Config{Contacts: 10, ErrorBody: ErrorBodyEndless})
	req, _ := http.NewRequest(http.MethodGet, ts.URL+ExportPath, nil)
	resp, err = ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.CopyN(io.Discard, resp.Body, 1<<20)
	if err != nil || n != 1<<20 || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("read %d bytes of an endless 401 body: %v", n, err)
	}
	resp.Body.Close()
	// Close waits for the handler: it must end now that the client is gone.
	ts.Close()
	if srv.ErrorBytes() < 1<<20 {
		t.Errorf("ErrorBytes %d after a client read 1 MiB", srv.ErrorBytes())
	}
}

func TestPrecisionAndFaultFlags(t *testing.T) {
	o, err := parseFlags("--bound-precision", "second", "--sub-second", "--trickle", "2s", "--error-body", "endless")
	if err != nil {
		t.Fatal(err)
	}
	c := o.Config
	if c.BoundPrecision != PrecisionSecond || !c.SubSecond || c.Trickle != 2*time.Second || c.ErrorBody != ErrorBodyEndless {
		t.Errorf("parsed %+v", c)
	}
	if o, err := parseFlags(); err != nil || o.Config.BoundPrecision != PrecisionExact || o.Config.ErrorBody != 0 || o.Config.Trickle != 0 {
		t.Errorf("defaults %+v, %v", o.Config, err)
	}
	for _, args := range [][]string{{"--bound-precision", "minute"}, {"--trickle", "-1s"}, {"--error-body", "huge"}} {
		if _, err := parseFlags(args...); err == nil || !strings.Contains(err.Error(), `"`+args[0]+`"`) {
			t.Errorf("%v: error %v, want one naming %s", args, err, args[0])
		}
	}
	for _, cfg := range []Config{{BoundPrecision: "minute"}, {Trickle: -1}, {ErrorBody: -2}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%s) accepted", fmt.Sprintf("%+v", cfg)[:40])
		}
	}
}
