package extract_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/fakeapi"
)

const secretKey = "wbk_live_S3CR3T_0123456789abcdef"

// newFake starts the fake API on loopback with cfg (the secret key is added).
func newFake(t testing.TB, cfg fakeapi.Config) (*fakeapi.Server, *httptest.Server) {
	t.Helper()
	cfg.Keys = append(cfg.Keys,
		fakeapi.Key{Token: secretKey, Workspace: "acme", ReadContacts: true},
		fakeapi.Key{Token: "wbk_noread_S3CR3T", Workspace: "acme", ReadContacts: false},
	)
	srv, err := fakeapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return srv, hs
}

func newClient(hs *httptest.Server, key string, log io.Writer) *extract.Client {
	c := &extract.Client{
		BaseURL: hs.URL,
		Key:     extract.NewAPIKey(key),
		Retry:   extract.RetryPolicy{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond},
	}
	if log != nil {
		c.Logger = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return c
}

// idCollector is a Handler that keeps the ids of every committed window. It
// follows the Handler contract: Consume keeps its rows aside, a retried
// Consume starts afresh, Commit makes them count.
type idCollector struct {
	attempt  []string
	ids      map[string]int // id -> times committed
	consumes int
	commits  int
	pending  []extract.Window
}

func (h *idCollector) Consume(_ context.Context, _ extract.Window, resp *extract.Response) (extract.Tally, error) {
	h.consumes++
	h.attempt = h.attempt[:0]
	var t extract.Tally
	cr := csv.NewReader(resp.Body)
	header, err := cr.Read()
	if err != nil {
		return t, err
	}
	idCol, tsCol := -1, -1
	for i, name := range header {
		switch name {
		case "id":
			idCol = i
		case "created_at":
			tsCol = i
		}
	}
	if idCol < 0 || tsCol < 0 {
		return t, fmt.Errorf("header %v lacks id or created_at", header)
	}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return t, nil
		}
		if err != nil {
			return t, err
		}
		t.AddRow()
		at, err := time.Parse(time.RFC3339, rec[tsCol])
		if err != nil {
			return t, err
		}
		t.AddTime(at)
		h.attempt = append(h.attempt, rec[idCol])
	}
}

func (h *idCollector) Commit(_ context.Context, _ extract.Window, pending []extract.Window) error {
	h.commits++
	if h.ids == nil {
		h.ids = map[string]int{}
	}
	for _, id := range h.attempt {
		h.ids[id]++
	}
	h.pending = pending
	return nil
}

// checkComplete fails unless the collected ids are exactly the dataset's.
func (h *idCollector) checkComplete(t *testing.T, ds *fakeapi.Dataset) {
	t.Helper()
	if len(h.ids) != ds.Len() {
		t.Errorf("collected %d distinct ids, dataset has %d", len(h.ids), ds.Len())
	}
	for i := 0; i < ds.Len(); i++ {
		if h.ids[ds.Contact(i).ID] == 0 {
			t.Fatalf("contact %d (%s, created %s) never fetched", i, ds.Contact(i).ID, ds.Contact(i).CreatedAt)
		}
	}
	if len(h.pending) != 0 {
		t.Errorf("windows still pending after completion: %v", h.pending)
	}
}

func sync(t *testing.T, c *extract.Client, limit int, h extract.Handler) (extract.Summary, error) {
	t.Helper()
	e := &extract.Extractor{Client: c, Query: extract.Query{Limit: limit}}
	return e.Run(context.Background(), extract.NewPlanner(limit, extract.Window{To: time.Now()}), h, 0)
}

func TestAPIErrorsAreTypedAndNotRetried(t *testing.T) {
	srv, hs := newFake(t, fakeapi.Config{Contacts: 100, Seed: 3})
	for _, tc := range []struct {
		name   string
		key    string
		q      extract.Query
		status int
		code   string
	}{
		{"unknown key", "wbk_nope_S3CR3T", extract.Query{}, 401, "invalid_key"},
		{"no read permission", "wbk_noread_S3CR3T", extract.Query{}, 403, "insufficient_permissions"},
		{"limit above 50000", secretKey, extract.Query{Limit: 50001}, 400, "validation_error"},
		{"bad list id", secretKey, extract.Query{ListID: "no spaces allowed"}, 400, "validation_error"},
		{"unknown field", secretKey, extract.Query{Fields: []string{"id", "shoe_size"}}, 400, "validation_error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			c := newClient(hs, tc.key, &logs)
			before := srv.Requests()
			called := false
			err := c.Export(context.Background(), tc.q, func(*extract.Response) error { called = true; return nil })
			var apiErr *extract.APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("got %v (%T), want *APIError", err, err)
			}
			if apiErr.Status != tc.status || apiErr.Code != tc.code || apiErr.Message == "" || apiErr.RequestID == "" {
				t.Errorf("got %+v, want status %d code %s with a message and request id", apiErr, tc.status, tc.code)
			}
			if called {
				t.Error("the body callback ran for an error response")
			}
			if n := srv.Requests() - before; n != 1 {
				t.Errorf("%d requests sent, want 1 (never retry %d)", n, tc.status)
			}
			if apiErr.Auth() != (tc.status == 401 || tc.status == 403) {
				t.Errorf("Auth() = %v for %d", apiErr.Auth(), tc.status)
			}
			for _, s := range []string{err.Error(), logs.String()} {
				if strings.Contains(s, tc.key) || strings.Contains(s, "S3CR3T") {
					t.Errorf("the API key leaked: %q", s)
				}
			}
			if !strings.Contains(err.Error(), apiErr.RequestID) {
				t.Errorf("error %q does not name the request id", err)
			}
		})
	}
}

func TestRetriesServerErrorsAndBrokenStreams(t *testing.T) {
	for _, tc := range []struct {
		name      string
		faults    []fakeapi.Fault
		wantCalls int
		wantErr   bool
	}{
		{"500 then ok", []fakeapi.Fault{fakeapi.Fault500}, 2, false},
		{"503, 500, then ok", []fakeapi.Fault{fakeapi.Fault503, fakeapi.Fault500}, 3, false},
		{"cut mid-body then ok", []fakeapi.Fault{fakeapi.FaultCut}, 2, false},
		{"cut, 503, cut then ok", []fakeapi.Fault{fakeapi.FaultCut, fakeapi.Fault503, fakeapi.FaultCut}, 4, false},
		{"slow body", []fakeapi.Fault{fakeapi.FaultSlow}, 1, false},
		{"gives up after 4 attempts", []fakeapi.Fault{fakeapi.Fault500, fakeapi.FaultCut, fakeapi.Fault503, fakeapi.Fault500}, 4, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, hs := newFake(t, fakeapi.Config{Contacts: 3000, Seed: 5, SlowDelay: time.Millisecond})
			srv.InjectFault(tc.faults...)
			var logs bytes.Buffer
			c := newClient(hs, secretKey, &logs)
			h := &idCollector{}
			sum, err := sync(t, c, 5000, h)
			if tc.wantErr {
				var apiErr *extract.APIError
				if !errors.As(err, &apiErr) || apiErr.Status != 500 {
					t.Fatalf("got %v, want the last *APIError 500", err)
				}
				if h.commits != 0 {
					t.Errorf("%d windows committed after a failure", h.commits)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				h.checkComplete(t, srv.Dataset())
				for id, n := range h.ids {
					if n != 1 {
						t.Fatalf("id %s committed %d times: a broken attempt's rows were kept", id, n)
					}
				}
			}
			if sum.Calls != tc.wantCalls || c.Calls() != tc.wantCalls {
				t.Errorf("calls: summary %d, client %d; want %d", sum.Calls, c.Calls(), tc.wantCalls)
			}
			if strings.Contains(logs.String(), secretKey) {
				t.Error("the API key leaked into the log")
			}
		})
	}
}

func TestRateLimitWaitsForReset(t *testing.T) {
	for _, style := range []fakeapi.ResetStyle{fakeapi.ResetEpoch, fakeapi.ResetDelta} {
		t.Run(string(style), func(t *testing.T) {
			srv, hs := newFake(t, fakeapi.Config{Contacts: 1000, Seed: 9, RateLimit: 2, Hour: 1500 * time.Millisecond, ResetStyle: style})
			c := newClient(hs, secretKey, nil)
			var waits []time.Time
			c.OnWait = func(until time.Time) { waits = append(waits, until) }
			h := &idCollector{}
			// 1000 rows at limit 300: 4 calls, so the budget of 2 resets once.
			start := time.Now()
			sum, err := sync(t, c, 300, h)
			if err != nil {
				t.Fatal(err)
			}
			// OnWait was told of each pause, before it, with its end.
			if len(waits) == 0 || len(waits) > 2 {
				t.Errorf("OnWait called %d times, want once per pause (1 or 2)", len(waits))
			}
			for _, u := range waits {
				if !u.After(start) {
					t.Errorf("OnWait said the pause ends at %s, before the sync started", u)
				}
			}
			h.checkComplete(t, srv.Dataset())
			if sum.Calls < 4 {
				t.Errorf("%d calls, want at least 4", sum.Calls)
			}
			// The client saw Remaining reach 0 and waited instead of
			// spending a request on a 429.
			if sum.RateLimited != 0 {
				t.Errorf("%d requests answered 429; the known budget should have been waited out", sum.RateLimited)
			}
			if b := c.Budget(); !b.Known || b.Limit != 2 {
				t.Errorf("budget %+v, want a known limit of 2", b)
			}
		})
	}
}

func TestRateLimitNoWait(t *testing.T) {
	for _, style := range []fakeapi.ResetStyle{fakeapi.ResetEpoch, fakeapi.ResetDelta} {
		t.Run(string(style), func(t *testing.T) {
			_, hs := newFake(t, fakeapi.Config{Contacts: 100, Seed: 9, RateLimit: 1, Hour: time.Hour, ResetStyle: style})
			first := newClient(hs, secretKey, nil)
			if err := first.Export(context.Background(), extract.Query{}, func(r *extract.Response) error { _, err := extract.TallyCSV(r.Body); return err }); err != nil {
				t.Fatal(err)
			}
			// Another process, knowing nothing of the budget, is refused with 429.
			var logs bytes.Buffer
			second := newClient(hs, secretKey, &logs)
			second.NoWait = true
			second.OnWait = func(time.Time) { t.Error("OnWait called without a wait (NoWait)") }
			err := second.Export(context.Background(), extract.Query{}, func(*extract.Response) error { return nil })
			var rl *extract.RateLimitError
			if !errors.As(err, &rl) || !errors.Is(err, extract.ErrRateLimited) {
				t.Fatalf("got %v, want *RateLimitError", err)
			}
			if d := time.Until(rl.ResumeAt); d < 58*time.Minute || d > 61*time.Minute {
				t.Errorf("resume at %s, %s from now; want about an hour", rl.ResumeAt, d)
			}
			if rl.RequestID == "" {
				t.Error("no request id on the 429 error")
			}
			if second.RateLimited() != 1 || second.Calls() != 0 {
				t.Errorf("rate limited %d, calls %d; want 1 and 0", second.RateLimited(), second.Calls())
			}
			// The first process knows its budget is spent and does not even ask.
			first.NoWait = true
			err = first.Export(context.Background(), extract.Query{}, func(*extract.Response) error { return nil })
			if !errors.Is(err, extract.ErrRateLimited) || first.RateLimited() != 0 {
				t.Errorf("got %v after %d 429s; want a RateLimitError without a request", err, first.RateLimited())
			}
			if strings.Contains(logs.String()+err.Error(), secretKey) {
				t.Error("the API key leaked")
			}
		})
	}
}

func TestRateLimit429IsWaitedOut(t *testing.T) {
	srv, hs := newFake(t, fakeapi.Config{Contacts: 100, Seed: 9, RateLimit: 1, Hour: time.Second, ResetStyle: fakeapi.ResetDelta})
	first := newClient(hs, secretKey, nil)
	consume := func(r *extract.Response) error { _, err := extract.TallyCSV(r.Body); return err }
	if err := first.Export(context.Background(), extract.Query{}, consume); err != nil {
		t.Fatal(err)
	}
	second := newClient(hs, secretKey, nil)
	var waits []time.Time
	second.OnWait = func(until time.Time) { waits = append(waits, until) }
	start := time.Now()
	if err := second.Export(context.Background(), extract.Query{}, consume); err != nil {
		t.Fatal(err)
	}
	if len(waits) != 1 || !waits[0].After(start) {
		t.Errorf("OnWait calls %v, want one pause ending after the 429", waits)
	}
	if second.RateLimited() != 1 || second.Calls() != 1 {
		t.Errorf("rate limited %d, calls %d; want 1 and 1", second.RateLimited(), second.Calls())
	}
	if time.Since(start) < 500*time.Millisecond {
		t.Errorf("retried after %s, before the reset", time.Since(start))
	}
	if srv.Calls() != 2 {
		t.Errorf("server counted %d calls, want 2", srv.Calls())
	}
}

// TestPlannerEveryOrderAndBound runs whole syncs against the fake API for each
// row order and bound rule the real service might have.
func TestPlannerEveryOrderAndBound(t *testing.T) {
	for _, order := range []fakeapi.Order{fakeapi.OrderAsc, fakeapi.OrderDesc, fakeapi.OrderRandom} {
		for _, bounds := range []fakeapi.Bounds{fakeapi.BoundsInclusive, fakeapi.BoundsExclusive, fakeapi.BoundsMixed} {
			t.Run(string(order)+"/"+string(bounds), func(t *testing.T) {
				srv, hs := newFake(t, fakeapi.Config{Contacts: 20000, Seed: 21, Order: order, Bounds: bounds})
				_, largest := srv.Dataset().LargestGroup()
				limit := 2000
				if largest >= limit {
					t.Fatalf("dataset's largest group %d is not below the limit %d", largest, limit)
				}
				c := newClient(hs, secretKey, nil)
				h := &idCollector{}
				sum, err := sync(t, c, limit, h)
				if err != nil {
					t.Fatal(err)
				}
				h.checkComplete(t, srv.Dataset())
				t.Logf("%d rows at limit %d: %d calls (minimum %d), %d rows received", srv.Dataset().Len(), limit, sum.Calls, extract.MinCalls(20000, limit), sum.Rows)
				if order != fakeapi.OrderRandom {
					if bound := extract.MinCalls(20000, limit-largest) + 1; sum.Calls > bound {
						t.Errorf("%d calls, want at most %d", sum.Calls, bound)
					}
				}
			})
		}
	}
}

func TestOverflowOfOneInstant(t *testing.T) {
	for _, order := range []fakeapi.Order{fakeapi.OrderAsc, fakeapi.OrderDesc, fakeapi.OrderRandom} {
		t.Run(string(order), func(t *testing.T) {
			srv, hs := newFake(t, fakeapi.Config{Contacts: 20000, Seed: 21, Order: order})
			at, largest := srv.Dataset().LargestGroup()
			c := newClient(hs, secretKey, nil)
			h := &idCollector{}
			_, err := sync(t, c, largest-1, h)
			var oe *extract.OverflowError
			if !errors.As(err, &oe) || !errors.Is(err, extract.ErrTimestampOverflow) {
				t.Fatalf("got %v, want an *OverflowError", err)
			}
			if !oe.At.Equal(at) {
				t.Errorf("overflow names %s, want %s", oe.At, at)
			}
			if !strings.Contains(err.Error(), at.UTC().Format(time.RFC3339)) {
				t.Errorf("message %q does not name the instant", err)
			}
			if len(h.pending) == 0 && h.commits > 0 {
				t.Error("nothing left pending after an overflow")
			}
		})
	}
}

// TestCallsFor1MRows measures the planner on 1,000,000 rows at the real
// limit: ascending order must take at most 21 calls (20 is the minimum).
func TestCallsFor1MRows(t *testing.T) {
	if testing.Short() {
		t.Skip("1M rows a row order: run without -short (make test does; make race does not)")
	}
	for _, tc := range []struct {
		order    fakeapi.Order
		maxCalls int
	}{
		{fakeapi.OrderAsc, 21},
		{fakeapi.OrderDesc, 21},
		{fakeapi.OrderRandom, 26},
	} {
		t.Run(string(tc.order), func(t *testing.T) {
			srv, hs := newFake(t, fakeapi.Config{Contacts: 1_000_000, Seed: 1, Order: tc.order, Bounds: fakeapi.BoundsInclusive})
			c := newClient(hs, secretKey, nil)
			e := &extract.Extractor{Client: c, Query: extract.Query{Limit: extract.MaxLimit, Fields: []string{"id", "created_at"}}}
			h := &idCollector{}
			sum, err := e.Run(context.Background(), extract.NewPlanner(extract.MaxLimit, extract.Window{To: time.Now()}), h, 0)
			if err != nil {
				t.Fatal(err)
			}
			h.checkComplete(t, srv.Dataset())
			t.Logf("1,000,000 rows, %s order: %d calls (minimum 20), %d rows received", tc.order, sum.Calls, sum.Rows)
			if sum.Calls > tc.maxCalls {
				t.Errorf("%d calls, want at most %d", sum.Calls, tc.maxCalls)
			}
		})
	}
}

func TestKeyNeverInRequestLineOrLogs(t *testing.T) {
	var seen []string
	srv, err := fakeapi.New(fakeapi.Config{Contacts: 10, Keys: []fakeapi.Key{{Token: secretKey, Workspace: "w", ReadContacts: true}}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.URL.String(), r.Header.Get("Authorization"), r.Header.Get("Accept"))
		srv.ServeHTTP(w, r)
	}))
	defer hs.Close()
	var logs bytes.Buffer
	c := newClient(hs, secretKey, &logs)
	if err := c.Export(context.Background(), extract.Query{Limit: 5}, func(r *extract.Response) error { _, err := extract.TallyCSV(r.Body); return err }); err != nil {
		t.Fatal(err)
	}
	if seen[1] != "Bearer "+secretKey || seen[2] != "text/csv" {
		t.Errorf("headers sent: Authorization %q, Accept %q", seen[1], seen[2])
	}
	if strings.Contains(seen[0], secretKey) {
		t.Error("the key is in the URL")
	}
	if strings.Contains(logs.String(), secretKey) {
		t.Error("the key is in the log")
	}
	key := extract.NewAPIKey(secretKey)
	for _, s := range []string{fmt.Sprint(key), fmt.Sprintf("%v %+v %#v %s %q %x %d", key, key, key, key, key, key, key), fmt.Sprintf("%+v", c)} {
		if strings.Contains(s, secretKey) || strings.Contains(s, "S3CR3T") {
			t.Errorf("formatting printed the key: %s", s)
		}
	}
}
