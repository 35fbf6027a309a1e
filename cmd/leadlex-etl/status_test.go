package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leadlex/leadlex-etl/internal/fakeapi"
)

// TestStatusAndStreams syncs into a DuckDB file and a lake, then checks that
// status --json parses and matches the runs the destinations recorded, that
// the text form names the stream, and that streams lists and resets.
func TestStatusAndStreams(t *testing.T) {
	srv, url := fake(t, fakeapi.Config{Contacts: 3000, Seed: 2, RateLimit: 10, Hour: time.Hour})
	dir := t.TempDir()
	db, lake := filepath.Join(dir, "w.duckdb"), filepath.Join(dir, "lake")
	env := []string{"LEADLEX_API_KEY=" + cliKey}
	for range 2 {
		if r := cli(t, env, "sync", "--base-url", url, "--duckdb", db, "--parquet", lake, "--limit", "1000", "-q"); r.code != 0 {
			t.Fatalf("sync: %d %s", r.code, r.stderr)
		}
	}
	for _, dest := range [][]string{{"--duckdb", db}, {"--parquet", lake}} {
		r := cli(t, env, append([]string{"status", "--json"}, dest...)...)
		if r.code != 0 {
			t.Fatalf("status %v: %d %s", dest, r.code, r.stderr)
		}
		var rep statusReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("status --json does not parse: %v\n%s", err, r.stdout)
		}
		if len(rep.Streams) != 1 || len(rep.Runs) != 2 || rep.Streams[0].Contacts < 2970 || rep.Streams[0].Cursor == nil {
			t.Fatalf("%v: %+v", dest, rep)
		}
		if !rep.Streams[0].TellsDeletions || rep.Streams[0].StalenessSec < 0 || rep.Streams[0].StalenessSec > 600 {
			t.Errorf("%v: stream %+v", dest, rep.Streams[0])
		}
		var calls int
		for _, run := range rep.Runs {
			calls += run.Calls
			if run.Status != "ok" || len(run.RequestIDs) == 0 || run.DurationSec <= 0 {
				t.Errorf("%v: run %+v", dest, run)
			}
		}
		if calls != int(srv.Calls()) {
			t.Errorf("%v: the runs say %d calls, the API saw %d", dest, calls, srv.Calls())
		}
		if rep.Runs[1].Changes.Inserted != 3000 {
			t.Errorf("%v: the first run inserted %d, want 3000", dest, rep.Runs[1].Changes.Inserted)
		}
		if len(rep.Budgets) != 1 || rep.Budgets[0].Limit != 10 || rep.Budgets[0].Remaining != 10-int(srv.Calls()) {
			t.Errorf("%v: budgets %+v after %d calls", dest, rep.Budgets, srv.Calls())
		}
	}
	// The runs match the file's own table.
	if n := count(t, db, "SELECT sum(inserted) FROM _leadlex_runs WHERE status = 'ok' AND inserted IS NOT NULL AND len(request_ids) > 0"); n != 3000 {
		t.Errorf("the runs recorded %d contacts inserted, want 3000", n)
	}
	r := cli(t, env, "status", "--duckdb", db)
	if r.code != 0 || !strings.Contains(r.stdout, "covered: [the beginning,") || !strings.Contains(r.stdout, "last 2 run(s)") || !strings.Contains(r.stdout, "calls left until") {
		t.Errorf("status text:\n%s%s", r.stdout, r.stderr)
	}
	if r := cli(t, nil, "status", "--duckdb", db); !strings.Contains(r.stdout, "budget: unknown") {
		t.Errorf("status without a key:\n%s", r.stdout)
	}

	// streams lists; reset needs consent, forgets the state, keeps contacts.
	r = cli(t, nil, "streams", "--duckdb", db)
	fields := strings.Fields(r.stdout)
	if r.code != 0 || len(fields) == 0 {
		t.Fatalf("streams: %d %q %q", r.code, r.stdout, r.stderr)
	}
	id := fields[0]
	if r := cli(t, nil, "streams", "reset", id, "--duckdb", db); r.code != 2 || !strings.Contains(r.stderr, "--yes") {
		t.Errorf("reset without consent: %d %q", r.code, r.stderr)
	}
	if r := cli(t, nil, "streams", "reset", "nope", "--duckdb", db, "--yes"); r.code != 2 {
		t.Errorf("reset of an unknown stream: %d %q", r.code, r.stderr)
	}
	if r := cli(t, nil, "streams", "reset", id, "--duckdb", db, "--yes"); r.code != 0 || !strings.Contains(r.stdout, "forgotten") {
		t.Fatalf("reset: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := cli(t, nil, "streams", "--duckdb", db); !strings.Contains(r.stdout, "no streams") {
		t.Errorf("streams after the reset: %q", r.stdout)
	}
	if n := count(t, db, "SELECT count(*) FROM contacts"); n != 3000 {
		t.Errorf("%d contacts after the reset, want them kept", n)
	}
	if r := cli(t, nil, "status"); r.code != 2 {
		t.Errorf("status without a destination: %d", r.code)
	}
}
