package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leadlex/leadlex-etl/internal/fakeapi"
	"github.com/leadlex/leadlex-etl/internal/pipeline"
)

// TestPlanPredictsSync runs plan before syncs and checks, for each row
// order, that plan makes no request; that for a first export it says the
// calls are unknown until the first; that for new contacts and a refresh
// of spare calls the sync then spends what plan predicted, within one call;
// and that it sees a run stopped at --max-calls is resumed.
func TestPlanPredictsSync(t *testing.T) {
	for _, order := range []fakeapi.Order{fakeapi.OrderAsc, fakeapi.OrderDesc, fakeapi.OrderRandom} {
		t.Run(string(order), func(t *testing.T) {
			srv, url := fake(t, fakeapi.Config{Contacts: 20000, Seed: 9, Order: order, RateLimit: 200, Hour: time.Hour})
			dir := t.TempDir()
			env := []string{"LEADLEX_API_KEY=" + cliKey}
			args := []string{"--base-url", url, "--duckdb", filepath.Join(dir, "w.duckdb"), "--parquet", filepath.Join(dir, "lake"),
				"--limit", "2000", "--refresh-min-age", "0s"}
			plan := func(extra ...string) pipeline.PlanResult {
				t.Helper()
				before := srv.Requests()
				r := cli(t, env, append(append([]string{"plan", "--json"}, args...), extra...)...)
				if r.code != 0 {
					t.Fatalf("plan: %d %s", r.code, r.stderr)
				}
				if n := srv.Requests() - before; n != 0 {
					t.Fatalf("plan made %d requests", n)
				}
				var p pipeline.PlanResult
				if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
					t.Fatalf("plan --json: %v\n%s", err, r.stdout)
				}
				return p
			}
			sync := func(extra ...string) int {
				t.Helper()
				before := srv.Calls()
				if r := cli(t, env, append(append([]string{"sync", "-q"}, args...), extra...)...); r.code != 0 {
					t.Fatalf("sync: %d %s", r.code, r.stderr)
				}
				return int(srv.Calls() - before)
			}
			within := func(what string, p pipeline.PlanResult, spent int) {
				t.Helper()
				if d := spent - p.TotalCalls; d < -1 || d > 1 {
					t.Errorf("%s: plan said %d calls (%d new data, %d refresh), the sync spent %d", what, p.TotalCalls, p.Calls, len(p.Refresh), spent)
				}
			}
			// A first export: nothing to estimate from.
			p := plan()
			if !p.NewStream || p.RowsKnown || p.Budget.Known {
				t.Errorf("first plan: %+v", p)
			}
			sync("--refresh-calls", "0")
			// 1,500 new contacts; the budget is known now, the spare calls
			// refresh what the first sync verified.
			if err := srv.Append(1500, time.Now().Add(-time.Minute)); err != nil {
				t.Fatal(err)
			}
			p = plan()
			if p.NewStream || !p.RowsKnown || !p.Budget.Known || len(p.Refresh) == 0 {
				t.Errorf("second plan: %+v", p)
			}
			within("new contacts and a refresh", p, sync())
			// A run stopped at --max-calls, resumed.
			for k := range 4 {
				if err := srv.Append(1500, time.Now().Add(time.Duration(k-5)*time.Second)); err != nil {
					t.Fatal(err)
				}
			}
			sync("--max-calls", "1", "--refresh-calls", "0")
			p = plan("--refresh-calls", "0")
			if !p.Resume || len(p.Windows) == 0 {
				t.Errorf("plan after a stopped run does not resume: %+v", p)
			}
			sync("--refresh-calls", "0")
			// The text form says what it found.
			r := cli(t, env, append([]string{"plan"}, args...)...)
			if r.code != 0 || !strings.Contains(r.stdout, "budget: ") || !strings.Contains(r.stdout, "calls: ") {
				t.Errorf("plan text:\n%s%s", r.stdout, r.stderr)
			}
		})
	}
}

// TestPlanMatchesSyncAroundGaps checks that an incremental run continues
// from the end of the synced history, not from a gap a backfill left
// before it, and that plan predicts what each sync then spends, within one
// call, wherever the stream's state can tell: a backfill of an older range,
// the plain run after it, and a re-export stopped at --max-calls and
// resumed, for ascending and descending row order. Where it cannot (the
// rest of a first export), plan says the rows are unknown.
func TestPlanMatchesSyncAroundGaps(t *testing.T) {
	for _, order := range []fakeapi.Order{fakeapi.OrderAsc, fakeapi.OrderDesc} {
		t.Run(string(order), func(t *testing.T) {
			srv, url := fake(t, fakeapi.Config{Contacts: 20000, Seed: 5, Order: order, RateLimit: 500, Hour: time.Hour})
			dir := t.TempDir()
			db := filepath.Join(dir, "w.duckdb")
			env := []string{"LEADLEX_API_KEY=" + cliKey}
			args := []string{"--base-url", url, "--duckdb", db, "--limit", "1000"}
			plan := func(extra ...string) pipeline.PlanResult {
				t.Helper()
				r := cli(t, env, append(append([]string{"plan", "--json"}, args...), extra...)...)
				if r.code != 0 {
					t.Fatalf("plan: %d %s", r.code, r.stderr)
				}
				var p pipeline.PlanResult
				if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
					t.Fatalf("plan --json: %v\n%s", err, r.stdout)
				}
				return p
			}
			sync := func(extra ...string) int {
				t.Helper()
				before := srv.Calls()
				if r := cli(t, env, append(append([]string{"sync", "-q"}, args...), extra...)...); r.code != 0 {
					t.Fatalf("sync %v: %d %s", extra, r.code, r.stderr)
				}
				return int(srv.Calls() - before)
			}
			within := func(what string, p pipeline.PlanResult, spent int) {
				t.Helper()
				if !p.RowsKnown {
					t.Errorf("%s: plan does not know the rows: %+v", what, p)
				}
				if d := spent - p.TotalCalls; d < -1 || d > 1 {
					t.Errorf("%s: plan said %d calls (%d new data in %d windows, %d refresh), the sync spent %d", what, p.TotalCalls, p.Calls, len(p.Windows), len(p.Refresh), spent)
				}
			}
			// A first export from 2023 on, stopped and resumed: what is
			// left of it cannot be told before it is exported.
			sync("--since", "2023-01-01", "--max-calls", "2")
			if p := plan(); !p.Resume || p.RowsKnown {
				t.Errorf("plan of the rest of a first export: resume %v, rows known %v (%d)", p.Resume, p.RowsKnown, p.Rows)
			}
			sync()
			// A backfill of an older range, then a plain run.
			backfill := []string{"--since", "2021-01-01", "--until", "2021-06-01"}
			p := plan(backfill...)
			if spent := sync(backfill...); p.RowsKnown {
				within("a backfill", p, spent)
			}
			p = plan()
			within("the run after a backfill", p, sync())
			if n := count(t, db, `SELECT count(*) FROM contacts WHERE created_at >= '2021-06-01' AND created_at < '2022-12-31'`); n != 0 {
				t.Errorf("%d contacts of the gap the user left out were synced", n)
			}
			// The gap is no recent range whose rate the plan could go by.
			if p := plan("--since", "2022-01-01", "--until", "2022-03-01"); p.RowsKnown {
				t.Errorf("plan of a range in the gap claims to know its rows: %d", p.Rows)
			}
			// A re-export of a synced range, stopped at --max-calls, and
			// the plain run that resumes it.
			again := []string{"--since", "2024-06-01", "--max-calls", "3"}
			p = plan(again...)
			within("a re-export stopped at --max-calls", p, sync(again...))
			p = plan()
			if !p.Resume {
				t.Errorf("plan after a stopped run does not resume: %+v", p)
			}
			within("the resume after --max-calls", p, sync())
		})
	}
}
