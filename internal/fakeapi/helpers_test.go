package fakeapi

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"
)

// newTestServer builds a Server from cfg and serves it on loopback for the
// duration of the test.
func newTestServer(t testing.TB, cfg Config) (*Server, *httptest.Server) {
	t.Helper()
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return srv, ts
}

// doRequest sends one request and reads the whole body; readErr is the error
// reading the body, if any.
func doRequest(t testing.TB, ts *httptest.Server, method, path, query, auth string) (resp *http.Response, body []byte, readErr error) {
	t.Helper()
	u := ts.URL + path
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Accept", "text/csv")
	resp, err = ts.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	body, readErr = io.ReadAll(resp.Body)
	return resp, body, readErr
}

// export sends an authenticated export request and expects a complete 200.
func export(t testing.TB, ts *httptest.Server, query string) (*http.Response, [][]string) {
	t.Helper()
	resp, body, err := doRequest(t, ts, http.MethodGet, ExportPath, query, "Bearer "+DemoKey)
	if err != nil {
		t.Fatalf("export %q: reading body: %v", query, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("export %q: status %d, body %s", query, resp.StatusCode, body)
	}
	return resp, parseCSV(t, body)
}

func parseCSV(t testing.TB, body []byte) [][]string {
	t.Helper()
	recs, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatalf("parsing CSV body: %v", err)
	}
	if len(recs) == 0 {
		t.Fatalf("CSV body has no header row")
	}
	return recs
}

// decodeError decodes a JSON error body.
func decodeError(t testing.TB, body []byte) errorBody {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	return e
}

// checkRows checks that the records after the header are the contacts at
// want, field by field as named in the header.
func checkRows(t testing.TB, d *Dataset, recs [][]string, want []int) {
	t.Helper()
	header, rows := recs[0], recs[1:]
	if len(rows) != len(want) {
		t.Fatalf("got %d rows, want %d", len(rows), len(want))
	}
	for r, i := range want {
		c := d.Contact(i)
		for k, name := range header {
			v, ok := c.Field(name)
			if !ok {
				t.Fatalf("header names unknown field %q", name)
			}
			if rows[r][k] != v {
				t.Fatalf("row %d (contact %d) field %s = %q, want %q", r, i, name, rows[r][k], v)
			}
		}
	}
}

// inWindow is an independent reference for the bound rules, comparing at
// full precision; a nil bound is open.
func inWindow(t time.Time, after, before *time.Time, b Bounds) bool {
	if after != nil {
		if b == BoundsExclusive && !t.After(*after) || b != BoundsExclusive && t.Before(*after) {
			return false
		}
	}
	if before != nil {
		if b == BoundsInclusive && t.After(*before) || b != BoundsInclusive && !t.Before(*before) {
			return false
		}
	}
	return true
}

// selectRef returns the indexes of the contacts in the window that pass keep,
// in ascending order.
func selectRef(d *Dataset, after, before *time.Time, b Bounds, keep func(Contact) bool) []int {
	var idx []int
	for i := range d.Len() {
		c := d.Contact(i)
		if inWindow(c.CreatedAt, after, before, b) && (keep == nil || keep(c)) {
			idx = append(idx, i)
		}
	}
	return idx
}

// orderRef orders ascending indexes as the server would for o and keeps the
// first limit.
func orderRef(d *Dataset, idx []int, o Order, limit int) []int {
	idx = slices.Clone(idx)
	switch o {
	case OrderDesc:
		slices.Reverse(idx)
	case OrderRandom:
		slices.SortFunc(idx, func(a, b int) int {
			ra, rb := d.rank(a), d.rank(b)
			if ra < rb {
				return -1
			}
			if ra > rb {
				return 1
			}
			return 0
		})
	}
	return idx[:min(limit, len(idx))]
}

// fakeClock is a settable clock for the rate limiter.
type fakeClock struct {
	ch chan time.Time // holds the current time; a channel keeps it race-free
}

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{ch: make(chan time.Time, 1)}
	c.ch <- t
	return c
}

func (c *fakeClock) Now() time.Time {
	t := <-c.ch
	c.ch <- t
	return t
}

func (c *fakeClock) Advance(d time.Duration) {
	t := <-c.ch
	c.ch <- t.Add(d)
}
