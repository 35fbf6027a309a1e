package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leadlex/leadlex-etl/internal/budget"
	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/fakeapi"
	"github.com/leadlex/leadlex-etl/internal/load"
	"github.com/leadlex/leadlex-etl/internal/pipeline"
)

// fakeClock is the fake API's rate-limit clock: time.Now moved by an
// offset the test sets, so that setup syncs spend the calls of hours long
// past and the test's own hour starts fresh.
type fakeClock struct{ off atomic.Int64 }

func (c *fakeClock) now() time.Time { return time.Now().Add(time.Duration(c.off.Load())) }

// budgetRun is one sync of the budget tests.
type budgetRun struct {
	limit   int
	refresh pipeline.RefreshPolicy
	budgets pipeline.SharedBudget
	noWait  bool
	ignore  bool // IgnoreSavedBudget
	now     func() time.Time
	prog    pipeline.Progress
	client  *extract.Client // nil: a new one
}

func (r budgetRun) sync(ctx context.Context, url string, targets ...load.Target) (pipeline.Result, *extract.Client, error) {
	c := r.client
	if c == nil {
		c = &extract.Client{BaseURL: url, Key: extract.NewAPIKey(testKey), NoWait: r.noWait,
			Retry: extract.RetryPolicy{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}}
	}
	res, err := pipeline.Sync(ctx, pipeline.Options{
		Client: c, Query: extract.Query{Limit: r.limit}, Lookback: time.Minute, Targets: targets,
		Refresh: r.refresh, Budgets: r.budgets, IgnoreSavedBudget: r.ignore, Now: r.now, Progress: r.prog,
	})
	return res, c, err
}

// syncedInThePast syncs each destination in one call, in a fake API hour of
// its own long past, with no refresh; the fake clock is back at now after.
func syncedInThePast(t *testing.T, clk *fakeClock, url string, dbs ...*load.DuckDB) {
	t.Helper()
	for i, db := range dbs {
		clk.off.Store(int64(-time.Duration(2*(len(dbs)-i)+1) * time.Hour))
		if _, _, err := (budgetRun{limit: extract.MaxLimit}).sync(context.Background(), url, db); err != nil {
			t.Fatal(err)
		}
	}
	clk.off.Store(0)
}

func openBudgets(t *testing.T, path string) *budget.Store {
	t.Helper()
	s, err := budget.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// barrier holds the first committed window of each of n runs until all n
// have committed theirs (or ended): the runs then start their refresh at
// once, each knowing the others' first calls.
type barrier struct {
	wg sync.WaitGroup
}

func newBarrier(n int) *barrier {
	b := &barrier{}
	b.wg.Add(n)
	return b
}

// arrival is one run's side of the barrier, its Progress.
type arrival struct {
	b    *barrier
	once sync.Once
}

func (a *arrival) arrive() { a.once.Do(a.b.wg.Done) }

func (a *arrival) Start(int) {}
func (a *arrival) Window(pipeline.WindowProgress) {
	a.arrive()
	a.b.wg.Wait()
}
func (a *arrival) Refresh(extract.Window, int) {}

// TestConcurrentSyncsKeepTheReserve runs two syncs of one key into two
// destinations at once, in a fresh rate-limit hour of 10 calls: both
// commit their new data (one call each), then both refresh, each told the
// hour's spare calls by its own answers. Together they spend no more than
// the calls left less the reserve of 2, get no 429, and release what they
// claimed.
func TestConcurrentSyncsKeepTheReserve(t *testing.T) {
	clk := &fakeClock{}
	srv, url := startFake(t, fakeapi.Config{Contacts: 600, Seed: 51, RateLimit: 10, Hour: time.Hour, Now: clk.now})
	dir := t.TempDir()
	dbs := []*load.DuckDB{openDB(t, filepath.Join(dir, "a.duckdb")), openDB(t, filepath.Join(dir, "b.duckdb"))}
	syncedInThePast(t, clk, url, dbs...)
	path := filepath.Join(dir, "state", "budgets.json")
	calls, requests := srv.Calls(), srv.Requests()
	bar := newBarrier(len(dbs))
	results := make([]pipeline.Result, len(dbs))
	clients := make([]*extract.Client, len(dbs))
	errs := make([]error, len(dbs))
	var wg sync.WaitGroup
	for i, db := range dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := &arrival{b: bar}
			defer a.arrive() // a run that ends early holds nobody
			// A store of its own, as another process has.
			run := budgetRun{limit: 100, budgets: openBudgets(t, path), prog: a,
				refresh: pipeline.RefreshPolicy{Calls: pipeline.RefreshAuto, ReserveCalls: 2}}
			results[i], clients[i], errs[i] = run.sync(context.Background(), url, db)
		}()
	}
	wg.Wait()
	refreshCalls := 0
	for i, err := range errs {
		if err != nil {
			t.Fatalf("sync %d: %v", i, err)
		}
		refreshCalls += results[i].Refresh.Calls
		t.Logf("sync %d: %d calls, refresh %d (%s), 429s %d", i, results[i].Calls, results[i].Refresh.Calls, results[i].Refresh.Skipped, clients[i].RateLimited())
		if n := clients[i].RateLimited(); n != 0 {
			t.Errorf("sync %d was answered 429 %d times", i, n)
		}
	}
	if n := srv.Requests() - requests - (srv.Calls() - calls); n != 0 {
		t.Errorf("the API refused %d requests", n)
	}
	if spent := srv.Calls() - calls; spent != 8 {
		t.Errorf("the two syncs spent %d of the hour's 10 calls; want 8: the reserve of 2 left", spent)
	}
	if refreshCalls != 6 {
		t.Errorf("the refreshes spent %d calls, want the 6 spare ones", refreshCalls)
	}
	if n, err := openBudgets(t, path).Claimed(pipeline.BudgetKey(extract.NewAPIKey(testKey).Fingerprint(), url)); err != nil || n != 0 {
		t.Errorf("%d calls still claimed after both runs (%v)", n, err)
	}
}

// TestRefreshLeavesTheReserve syncs, in a fresh hour of 10 calls, a
// destination whose covered range needs more refresh windows than the hour
// has: the refresh spends the calls left less the reserve, and no more,
// with or without the shared budget file.
func TestRefreshLeavesTheReserve(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			clk := &fakeClock{}
			srv, url := startFake(t, fakeapi.Config{Contacts: 1200, Seed: 52, RateLimit: 10, Hour: time.Hour, Now: clk.now})
			dir := t.TempDir()
			db := openDB(t, filepath.Join(dir, "w.duckdb"))
			syncedInThePast(t, clk, url, db)
			run := budgetRun{limit: 100, refresh: pipeline.RefreshPolicy{Calls: pipeline.RefreshAuto, ReserveCalls: 2}}
			if shared {
				run.budgets = openBudgets(t, filepath.Join(dir, "state", "budgets.json"))
			}
			calls := srv.Calls()
			res, c, err := run.sync(context.Background(), url, db)
			if err != nil {
				t.Fatal(err)
			}
			if spent := srv.Calls() - calls; spent != 8 || res.Refresh.Calls != 7 || c.RateLimited() != 0 {
				t.Errorf("spent %d calls, %d of them on refresh, %d answered 429; want 8, 7 and none: 2 left in reserve",
					spent, res.Refresh.Calls, c.RateLimited())
			}
		})
	}
}

// TestRefreshMinAge syncs a destination, then runs with --refresh-min-age
// 1h half an hour later (by the run's clock): nothing is old enough to
// re-export; two hours later the refresh re-exports.
func TestRefreshMinAge(t *testing.T) {
	srv, url := startFake(t, fakeapi.Config{Contacts: 500, Seed: 53})
	db := openDB(t, filepath.Join(t.TempDir(), "w.duckdb"))
	base := time.Now()
	for _, tc := range []struct {
		after   time.Duration
		refresh bool
	}{{0, false}, {30 * time.Minute, false}, {2 * time.Hour, true}} {
		calls := srv.Calls()
		run := budgetRun{limit: 1000, now: func() time.Time { return base.Add(tc.after) },
			refresh: pipeline.RefreshPolicy{Calls: 3, MinAge: time.Hour}}
		res, _, err := run.sync(context.Background(), url, db)
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Refresh.Calls > 0; got != tc.refresh {
			t.Errorf("%s after the first sync, with a minimum age of 1h: refresh spent %d calls (%s), %d in all",
				tc.after, res.Refresh.Calls, res.Refresh.Skipped, srv.Calls()-calls)
		}
	}
}

// writeBudgetFile writes budgets.json by hand with one entry for key.
func writeBudgetFile(t *testing.T, path, key string, remaining int, reset, updatedAt time.Time) {
	t.Helper()
	b, err := json.Marshal(map[string]any{"budgets": map[string]any{key: map[string]any{
		"limit": 10, "remaining": remaining, "reset": reset, "updated_at": updatedAt}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestAFutureBudgetBlocksNoSync plants spent budgets no answer of the
// API could have left: a reset days ahead (in the shared file or in the
// destination's copy), an updated_at days ahead (the clock stepped back).
// A --no-wait sync is not stopped by them, and its answers replace them,
// also with --ignore-saved-budget. A plausible spent budget stops the run
// without a call, at its reset, run after run, and is not rewritten.
func TestAFutureBudgetBlocksNoSync(t *testing.T) {
	now := time.Now().UTC()
	for _, tc := range []struct {
		name             string
		reset, updatedAt time.Time
		inDestination    bool
		ignore           bool
	}{
		{name: "a reset three days ahead", reset: now.Add(72 * time.Hour), updatedAt: now.Add(-time.Minute)},
		{name: "updated_at three days ahead", reset: now.Add(30 * time.Minute), updatedAt: now.Add(72 * time.Hour)},
		{name: "updated_at three days ahead, --ignore-saved-budget", reset: now.Add(30 * time.Minute), updatedAt: now.Add(72 * time.Hour), ignore: true},
		{name: "a reset three days ahead in the destination", reset: now.Add(72 * time.Hour), inDestination: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, url := startFake(t, fakeapi.Config{Contacts: 500, Seed: 54, RateLimit: 10, Hour: time.Hour})
			dir := t.TempDir()
			db := openDB(t, filepath.Join(dir, "w.duckdb"))
			path := filepath.Join(dir, "state", "budgets.json")
			key := pipeline.BudgetKey(extract.NewAPIKey(testKey).Fingerprint(), url)
			if tc.inDestination {
				if err := db.SaveBudget(context.Background(), key, extract.RateLimit{Limit: 10, Remaining: 0, Reset: tc.reset, Known: true}); err != nil {
					t.Fatal(err)
				}
			} else {
				writeBudgetFile(t, path, key, 0, tc.reset, tc.updatedAt)
			}
			store := openBudgets(t, path)
			for i := range 2 {
				run := budgetRun{limit: 1000, noWait: true, ignore: tc.ignore && i == 0, budgets: store}
				calls := srv.Calls()
				if _, _, err := run.sync(context.Background(), url, db); err != nil {
					t.Fatalf("run %d: %v", i, err)
				}
				if srv.Calls() == calls {
					t.Errorf("run %d made no call", i)
				}
			}
			b, seen, err := store.Load(key)
			if err != nil || !b.Known || b.Remaining != 10-int(srv.Calls()) || seen.After(time.Now()) || b.Reset.After(time.Now().Add(extract.MaxResetAhead)) {
				t.Errorf("the shared budget after the runs: %+v seen %s (%v); want the API's last answer, %d left", b, seen, err, 10-srv.Calls())
			}
		})
	}
	t.Run("a plausible spent budget", func(t *testing.T) {
		srv, url := startFake(t, fakeapi.Config{Contacts: 500, Seed: 54, RateLimit: 10, Hour: time.Hour})
		dir := t.TempDir()
		db := openDB(t, filepath.Join(dir, "w.duckdb"))
		path := filepath.Join(dir, "state", "budgets.json")
		key := pipeline.BudgetKey(extract.NewAPIKey(testKey).Fingerprint(), url)
		reset := now.Add(30 * time.Minute).Truncate(time.Second)
		writeBudgetFile(t, path, key, 0, reset, now.Add(-time.Minute))
		before, _ := os.ReadFile(path)
		for i := range 2 {
			_, _, err := budgetRun{limit: 1000, noWait: true, budgets: openBudgets(t, path)}.sync(context.Background(), url, db)
			var rl *extract.RateLimitError
			if !errors.As(err, &rl) || !rl.ResumeAt.Equal(reset) {
				t.Fatalf("run %d: %v; want a rate-limit error resuming at %s", i, err, reset)
			}
		}
		if srv.Requests() != 0 {
			t.Errorf("%d requests", srv.Requests())
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
			t.Errorf("runs that made no call rewrote the budget file:\n%s\nwas\n%s", after, before)
		}
	})
}

// countingBudget counts the reads and writes a sync asks of the shared
// budget file.
type countingBudget struct {
	pipeline.SharedBudget
	loads, saves atomic.Int32
}

func (c *countingBudget) Load(key string) (extract.RateLimit, time.Time, error) {
	c.loads.Add(1)
	return c.SharedBudget.Load(key)
}

func (c *countingBudget) Save(key string, b extract.RateLimit, seen time.Time) error {
	c.saves.Add(1)
	return c.SharedBudget.Save(key, b, seen)
}

// TestALargeBudgetFileStaysBounded syncs in 12 windows next to a hostile
// budgets.json of 20,000 live entries (2.4 MB, over the cap): the sync
// reads and writes the file a few times, not at every window, and leaves it
// small.
func TestALargeBudgetFileStaysBounded(t *testing.T) {
	srv, url := startFake(t, fakeapi.Config{Contacts: 1200, Seed: 55, RateLimit: 100, Hour: time.Hour})
	dir := t.TempDir()
	db := openDB(t, filepath.Join(dir, "w.duckdb"))
	path := filepath.Join(dir, "state", "budgets.json")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	var sb strings.Builder
	sb.WriteString(`{"budgets":{`)
	for i := range 20_000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `"%016x":{"limit":10,"remaining":%d,"reset":%q,"updated_at":%q}`, i, i%10,
			now.Add(30*time.Minute).Format(time.RFC3339Nano), now.Add(-time.Minute).Format(time.RFC3339Nano))
	}
	sb.WriteString(`}}`)
	if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	store := &countingBudget{SharedBudget: openBudgets(t, path)}
	res, _, err := budgetRun{limit: 100, budgets: store}.sync(context.Background(), url, db)
	if err != nil {
		t.Fatal(err)
	}
	if res.Windows < 12 {
		t.Fatalf("%d windows: the test proves nothing", res.Windows)
	}
	if l, s := store.loads.Load(), store.saves.Load(); l > 1 || s > 3 {
		t.Errorf("a sync of %d windows read the shared budget %d times and wrote it %d times", res.Windows, l, s)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() > 4096 {
		t.Errorf("the budget file is %d bytes after the sync (%v)", fi.Size(), err)
	}
	if srv.Calls() != int64(res.Calls) {
		t.Errorf("calls: %d at the API, %d said", srv.Calls(), res.Calls)
	}
}

// TestPlanPredictsTheRefresh plans, then syncs, in a fresh hour whose
// budget a check saved, next to the claim a crashed run left on the key's
// calls: plan predicts the refresh calls the sync then spends, the reserve
// and the claim left, with no minimum age and with one nothing is old
// enough for.
func TestPlanPredictsTheRefresh(t *testing.T) {
	for _, minAge := range []time.Duration{0, time.Hour} {
		t.Run(minAge.String(), func(t *testing.T) {
			clk := &fakeClock{}
			srv, url := startFake(t, fakeapi.Config{Contacts: 600, Seed: 56, RateLimit: 10, Hour: time.Hour, Now: clk.now})
			dir := t.TempDir()
			db := openDB(t, filepath.Join(dir, "w.duckdb"))
			// Segments of at most a call's rows, so that each refresh window
			// takes one call.
			clk.off.Store(int64(-3 * time.Hour))
			if _, _, err := (budgetRun{limit: 100}).sync(context.Background(), url, db); err != nil {
				t.Fatal(err)
			}
			clk.off.Store(0)
			store := openBudgets(t, filepath.Join(dir, "state", "budgets.json"))
			key := pipeline.BudgetKey(extract.NewAPIKey(testKey).Fingerprint(), url)
			now := time.Now()
			if err := store.Save(key, extract.RateLimit{Limit: 10, Remaining: 10, Reset: now.Add(time.Hour), Known: true}, now); err != nil {
				t.Fatal(err)
			}
			if n, err := store.Claim(key, "crashed", 3, 0, extract.RateLimit{}, now); err != nil || n != 3 {
				t.Fatalf("claim: %d %v", n, err)
			}
			pol := pipeline.RefreshPolicy{Calls: pipeline.RefreshAuto, ReserveCalls: 2, MinAge: minAge}
			p, err := pipeline.Plan(context.Background(), pipeline.Options{
				Client: &extract.Client{BaseURL: url, Key: extract.NewAPIKey(testKey)}, Query: extract.Query{Limit: 100},
				Lookback: time.Minute, Targets: []load.Target{db}, Refresh: pol, Budgets: store,
			})
			if err != nil {
				t.Fatal(err)
			}
			calls := srv.Calls()
			res, _, err := budgetRun{limit: 100, refresh: pol, budgets: store}.sync(context.Background(), url, db)
			if err != nil {
				t.Fatal(err)
			}
			want := 4 // 10 - 1 for the new data - 2 in reserve - 3 claimed
			if minAge > 0 {
				want = 0
			}
			if len(p.Refresh) != want || res.Refresh.Calls != want || p.TotalCalls != res.Calls || int(srv.Calls()-calls) != res.Calls {
				t.Errorf("plan: %d refresh calls of %d (%s); sync: %d of %d (%s); want %d refresh calls",
					len(p.Refresh), p.TotalCalls, p.RefreshSkipped, res.Refresh.Calls, res.Calls, res.Refresh.Skipped, want)
			}
		})
	}
}
