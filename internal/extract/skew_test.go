package extract_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/fakeapi"
)

// TestClockSkewResetReadInLocalTime syncs from a fake API whose clock runs
// 10 minutes ahead of this machine's, and 10 minutes behind, and whose
// X-RateLimit-Reset is epoch seconds of its clock. The Date header tells
// the difference, so the budget the answer spent resets an hour after the
// call by this machine's clock, not an hour plus or minus the skew: a
// --no-wait run is told to resume then, and no sooner or later.
func TestClockSkewResetReadInLocalTime(t *testing.T) {
	for _, skew := range []time.Duration{10 * time.Minute, -10 * time.Minute} {
		t.Run(skew.String(), func(t *testing.T) {
			srv, hs := newFake(t, fakeapi.Config{Contacts: 100, Seed: 7, RateLimit: 1, ResetStyle: fakeapi.ResetEpoch, ClockSkew: skew})
			var logs bytes.Buffer
			c := newClient(hs, secretKey, &logs)
			c.NoWait = true
			start := time.Now()
			if err := c.Export(context.Background(), extract.Query{Limit: 10}, readBody); err != nil {
				t.Fatal(err)
			}
			end := time.Now()
			b := c.Budget()
			// The epoch counts whole seconds rounded up, and Date whole
			// seconds rounded down: up to 2 s late, never early.
			if lo, hi := start.Add(time.Hour).Add(-time.Second), end.Add(time.Hour+3*time.Second); !b.Known || b.Remaining != 0 || b.Reset.Before(lo) || b.Reset.After(hi) {
				t.Fatalf("budget %+v; want 0 remaining, reset between %s and %s (an hour after the call, this machine's time)", b, lo, hi)
			}
			err := c.Export(context.Background(), extract.Query{Limit: 10}, readBody)
			var rl *extract.RateLimitError
			if !errors.As(err, &rl) || !rl.ResumeAt.Equal(b.Reset) {
				t.Fatalf("second call: %v; want a *RateLimitError to resume at %s", err, b.Reset)
			}
			if n := srv.Requests(); n != 1 {
				t.Errorf("%d requests, want 1: the spent budget is known", n)
			}
			if n := strings.Count(logs.String(), "the API's clock differs from this machine's"); n != 1 {
				t.Errorf("the skew is logged %d times, want once:\n%s", n, logs.String())
			}
		})
	}
}

// TestClockSkewDateNotBelieved answers with an epoch reset an hour ahead of
// this machine's clock and Date headers that cannot correct it: missing,
// unparsable, within the tolerance of a Date's whole seconds, or days away
// (implausible, so ignored and said once). The reset is read as it was
// before Date was used: an hour ahead.
func TestClockSkewDateNotBelieved(t *testing.T) {
	for _, tc := range []struct {
		name string
		date func(now time.Time) string
		warn bool
	}{
		{"missing", func(time.Time) string { return "" }, false},
		{"unparsable", func(time.Time) string { return "yesterday at noon" }, false},
		{"within the tolerance", func(now time.Time) string { return now.Add(time.Second).UTC().Format(http.TimeFormat) }, false},
		{"three days ahead", func(now time.Time) string { return now.Add(72 * time.Hour).UTC().Format(http.TimeFormat) }, true},
		{"three days behind", func(now time.Time) string { return now.Add(-72 * time.Hour).UTC().Format(http.TimeFormat) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var reset int64
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				now := time.Now()
				reset = now.Add(time.Hour).Unix()
				if d := tc.date(now); d != "" {
					w.Header().Set("Date", d)
				} else {
					w.Header()["Date"] = nil // net/http adds none
				}
				w.Header().Set("X-RateLimit-Limit", "10")
				w.Header().Set("X-RateLimit-Remaining", "0")
				w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(reset, 10))
				w.Header().Set("Content-Type", "text/csv")
				_, _ = w.Write([]byte("id,created_at\n"))
			}))
			defer hs.Close()
			var logs bytes.Buffer
			c := newClient(hs, secretKey, &logs)
			for range 2 {
				if err := c.Export(context.Background(), extract.Query{Limit: 10}, readBody); err != nil {
					t.Fatal(err)
				}
				c.SetBudget(extract.RateLimit{}) // ask again at once
			}
			if err := c.Export(context.Background(), extract.Query{Limit: 10}, readBody); err != nil {
				t.Fatal(err)
			}
			if b := c.Budget(); !b.Reset.Equal(time.Unix(reset, 0)) {
				t.Errorf("reset %s, want %s as the header said", b.Reset, time.Unix(reset, 0))
			}
			warned := strings.Count(logs.String(), "Date header is too far from this machine's clock to be believed")
			if tc.warn && warned != 1 || !tc.warn && warned != 0 {
				t.Errorf("%d warnings of an implausible Date, want %v once:\n%s", warned, tc.warn, logs.String())
			}
			if strings.Contains(logs.String(), "the API's clock differs from this machine's") {
				t.Errorf("a skew was applied:\n%s", logs.String())
			}
		})
	}
}
