package pipeline_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/fakeapi"
	"github.com/leadlex/leadlex-etl/internal/transform"
)

// TestHostileBodyClosedMidRow: a body without Content-Length that the
// server closes mid-row ends like a whole one, after a last row without its
// line ending that does not parse. It is a broken stream: the attempt is
// retried (a counted call), nothing of it is loaded or kept as a reject,
// and when every attempt is cut the run fails saying so, with nothing
// loaded and no window taken for complete.
func TestHostileBodyClosedMidRow(t *testing.T) {
	t.Run("cut once, retried", func(t *testing.T) {
		srv, url := startFake(t, fakeapi.Config{Contacts: 3000, Seed: 33, CutStyle: fakeapi.CutClose})
		srv.InjectFault(fakeapi.FaultCut)
		env := newHostileEnv(t)
		res, err := env.sync(env.client(url), 5000)
		if err != nil {
			t.Fatal(err)
		}
		if res.Calls != 2 || srv.Calls() != 2 || res.Rejects != 0 || !res.Complete {
			t.Errorf("%d calls (server %d), %d rejects, complete %v; want 2 calls (one retry), no reject, complete", res.Calls, srv.Calls(), res.Rejects, res.Complete)
		}
		if !strings.Contains(env.logs.String(), "export call failed, retrying") || !strings.Contains(env.logs.String(), "cut mid-row") {
			t.Errorf("the log does not say the cut attempt was retried:\n%s", env.logs.String())
		}
		env.checkBoth(t, srv.Dataset(), func(fakeapi.Contact) bool { return true })
		var n int
		if err := env.db.DB().QueryRow(`SELECT count(*) FROM _leadlex_rejects`).Scan(&n); err != nil || n != 0 {
			t.Errorf("%d rejects stored (%v), want none", n, err)
		}
		env.checkNoKey(t)
	})
	t.Run("every attempt cut", func(t *testing.T) {
		srv, url := startFake(t, fakeapi.Config{Contacts: 3000, Seed: 33, CutRate: 1, CutStyle: fakeapi.CutClose})
		env := newHostileEnv(t)
		res, err := env.sync(env.client(url), 5000)
		var se *extract.StreamError
		var te *transform.TruncatedError
		if !errors.As(err, &se) || !errors.As(err, &te) || !extract.Transient(err) {
			t.Fatalf("got %v, want a transient *extract.StreamError holding a *transform.TruncatedError", err)
		}
		for _, want := range []string{"gave up after 2 attempts", "response body broken off", "the body ends inside the record of line", "cut mid-row"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the error %q does not say %q", err, want)
			}
		}
		if res.Calls != 2 || srv.Calls() != 2 || res.Windows != 0 || res.Complete {
			t.Errorf("%d calls (server %d), %d windows, complete %v; want 2 calls, no window", res.Calls, srv.Calls(), res.Windows, res.Complete)
		}
		env.checkNothingLoaded(t)
		env.checkNoKey(t, err.Error())
	})
}

// TestHostileClockSkew syncs with --no-wait from an API whose clock runs 10
// minutes ahead of this machine's, and 10 behind, and says when its budget
// resets only as epoch seconds of its clock (and the Date header). The run
// that spends the budget, and the next run that finds it spent in the
// machine's shared budget file without a call, are both told to resume an
// hour after the call by this machine's clock: not 10 minutes late (every
// run of the machine refusing to call after the real reset), nor 10
// minutes early (a run calling into a 429).
func TestHostileClockSkew(t *testing.T) {
	for _, skew := range []time.Duration{10 * time.Minute, -10 * time.Minute} {
		t.Run(skew.String(), func(t *testing.T) {
			srv, url := startFake(t, fakeapi.Config{Contacts: 3000, Seed: 34, RateLimit: 1, ResetStyle: fakeapi.ResetEpoch, ClockSkew: skew})
			store := openBudgets(t, filepath.Join(t.TempDir(), "budget.json"))
			db := openDB(t, filepath.Join(t.TempDir(), "w.duckdb"))
			start := time.Now()
			res, _, err := budgetRun{limit: 1000, budgets: store, noWait: true}.sync(context.Background(), url, db)
			var rl *extract.RateLimitError
			if !errors.As(err, &rl) || rl.Saved || res.Windows != 1 {
				t.Fatalf("first run: %v, %d windows; want one window, then a *RateLimitError", err, res.Windows)
			}
			// Epoch seconds round up, Date seconds down: up to 2 s late.
			lo, hi := start.Add(time.Hour-time.Second), time.Now().Add(time.Hour+3*time.Second)
			if rl.ResumeAt.Before(lo) || rl.ResumeAt.After(hi) {
				t.Errorf("first run resumes at %s, want between %s and %s", rl.ResumeAt, lo, hi)
			}
			before := srv.Requests()
			_, _, err = budgetRun{limit: 1000, budgets: openBudgets(t, store.Path()), noWait: true}.sync(context.Background(), url, db)
			var saved *extract.RateLimitError
			if !errors.As(err, &saved) || !saved.Saved || !saved.ResumeAt.Equal(rl.ResumeAt) {
				t.Fatalf("second run: %v; want the saved budget's *RateLimitError, resuming at %s", err, rl.ResumeAt)
			}
			if n := srv.Requests() - before; n != 0 {
				t.Errorf("the second run sent %d requests, want none", n)
			}
		})
	}
}
