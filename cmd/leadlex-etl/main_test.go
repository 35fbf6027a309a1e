package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/leadlex/leadlex-etl/internal/fakeapi"
	"github.com/leadlex/leadlex-etl/internal/load"
)

// The test binary doubles as the CLI: with LEADLEX_ETL_RUN_MAIN=1 it runs
// main, so the tests below exercise real processes (exit codes, SIGKILL,
// file locks) without a separate build.
func TestMain(m *testing.M) {
	if os.Getenv("LEADLEX_ETL_RUN_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

const cliKey = "wbk_cli_S3CR3T_key_0123456789"

var (
	statesMu sync.Mutex
	states   = map[testing.TB]string{}
)

// cliEnv is the environment of a CLI process of test t: the test binary
// runs main, and the shared rate-limit budget lives in a folder of t's own,
// so that no test sees what another (with a fake API on the same port, say)
// left there.
func cliEnv(t testing.TB, extra ...string) []string {
	t.Helper()
	statesMu.Lock()
	dir, ok := states[t]
	if !ok {
		dir = t.TempDir()
		states[t] = dir
		t.Cleanup(func() {
			statesMu.Lock()
			delete(states, t)
			statesMu.Unlock()
		})
	}
	statesMu.Unlock()
	return append(append(os.Environ(), "LEADLEX_ETL_RUN_MAIN=1", "XDG_STATE_HOME="+dir), extra...)
}

type result struct {
	code           int
	stdout, stderr string
}

func cli(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = cliEnv(t, "LEADLEX_API_KEY=", "LEADLEX_BASE_URL=")
	cmd.Env = append(cmd.Env, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, out.String(), errb.String()}
}

func fake(t *testing.T, cfg fakeapi.Config) (*fakeapi.Server, string) {
	t.Helper()
	cfg.Keys = []fakeapi.Key{{Token: cliKey, Workspace: "acme", ReadContacts: true}, {Token: "wbk_noread", Workspace: "acme"}}
	srv, err := fakeapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return srv, hs.URL
}

// count runs q, which returns one number, on the DuckDB file at path,
// opened read-only as an analyst would.
func count(t *testing.T, path, q string) int64 {
	t.Helper()
	n, err := tryCount(path, q)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func tryCount(path, q string) (int64, error) {
	db, err := load.OpenDuckDBReadOnly(path)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int64
	if err := db.QueryRow(q).Scan(&n); err != nil {
		return 0, fmt.Errorf("%s: %w", q, err)
	}
	return n, nil
}

func TestHelpExplainsItself(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"sync", "fake-api", "query", "check", "version", "--version", "Exit codes"}},
		{[]string{"sync", "--help"}, []string{"--duckdb", "--since", "--lookback", "--no-wait", "LEADLEX_API_KEY", "LEADLEX_BASE_URL", "75",
			"--summary-json", "exit 2", "run finished", "--progress-interval", "countdown"}},
		{[]string{"check", "--help"}, []string{"limit=1", "one of the", "--base-url", "--api-key-file", "--timeouts", "--attempts", "LEADLEX_API_KEY", "75", "never waited"}},
		{[]string{"version", "--help"}, []string{"commit", "DuckDB", "--version"}},
		{[]string{"fake-api", "--help"}, []string{"--addr", "--contacts", "--order", "--bounds", "--rate-limit", "--hour", "--reset-style", "--cut-rate", "curl"}},
	} {
		r := cli(t, nil, tc.args...)
		if r.code != 0 {
			t.Errorf("%v exited %d: %s", tc.args, r.code, r.stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("%v: help lacks %q", tc.args, w)
			}
		}
		if strings.Contains(r.stdout, "api-key string") {
			t.Errorf("%v: help shows the hidden --api-key flag", tc.args)
		}
	}
	if r := cli(t, nil); r.code != 2 {
		t.Errorf("no command exited %d, want 2", r.code)
	}
	if r := cli(t, nil, "frobnicate"); r.code != 2 || !strings.Contains(r.stderr, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: %d %q", r.code, r.stderr)
	}
}

func TestUsageErrorsBeforeAnyCall(t *testing.T) {
	srv, url := fake(t, fakeapi.Config{Contacts: 10})
	db := filepath.Join(t.TempDir(), "w.duckdb")
	key := "LEADLEX_API_KEY=" + cliKey
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(cliKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"no destination", []string{key}, []string{"--base-url", url}, "--parquet"},
		{"bad partitioning", []string{key}, []string{"--base-url", url, "--parquet", db, "--partition-by", "week"}, "--partition-by"},
		{"bad compression", []string{key}, []string{"--base-url", url, "--parquet", db, "--parquet-compression", "lzo"}, "--parquet-compression"},
		{"bad target size", []string{key}, []string{"--base-url", url, "--parquet", db, "--parquet-target-size", "lots"}, "--parquet-target-size"},
		{"no key", nil, []string{"--base-url", url, "--duckdb", db}, "LEADLEX_API_KEY"},
		{"key as a flag", nil, []string{"--base-url", url, "--duckdb", db, "--api-key", cliKey}, "--api-key-file"},
		{"missing key file", nil, []string{"--base-url", url, "--duckdb", db, "--api-key-file", "/nonexistent/key"}, "--api-key-file"},
		{"bad since", []string{key}, []string{"--base-url", url, "--duckdb", db, "--since", "last tuesday"}, `--since "last tuesday"`},
		{"until before since", []string{key}, []string{"--base-url", url, "--duckdb", db, "--since", "2024-02-01", "--until", "2024-01-01"}, "--until"},
		{"until in the future", []string{key}, []string{"--base-url", url, "--duckdb", db, "--until", "2999-01-01"}, "future"},
		{"limit too high", []string{key}, []string{"--base-url", url, "--duckdb", db, "--limit", "50001"}, "--limit 50001"},
		{"plain http off loopback", []string{key}, []string{"--base-url", "http://api.example.com", "--duckdb", db}, "--allow-insecure-http"},
		{"not a URL", []string{key}, []string{"--base-url", "ftp://x", "--duckdb", db}, "--base-url"},
		{"wait and no-wait", []string{key}, []string{"--base-url", url, "--duckdb", db, "--wait", "--no-wait"}, "contradict"},
		{"unknown flag", []string{key}, []string{"--base-url", url, "--duckdb", db, "--frob"}, "--frob"},
		{"empty tag", []string{key}, []string{"--base-url", url, "--duckdb", db, "--tag", " "}, "--tag"},
		{"bad field name", []string{key}, []string{"--base-url", url, "--duckdb", db, "--fields", "id,Shoe Size"}, "--fields"},
		{"bad log format", []string{key}, []string{"--base-url", url, "--duckdb", db, "--log-format", "xml"}, "--log-format"},
		{"two timeouts", []string{key}, []string{"--base-url", url, "--duckdb", db, "--timeouts", "30s,2m"}, "--timeouts"},
		{"zero timeout", []string{key}, []string{"--base-url", url, "--duckdb", db, "--timeouts", "30s,0s,2m"}, "headers timeout"},
		{"no 429 allowed", []string{key}, []string{"--base-url", url, "--duckdb", db, "--max-429", "0"}, "--max-429"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cli(t, tc.env, append([]string{"sync"}, tc.args...)...)
			if r.code != 2 {
				t.Fatalf("exit %d, want 2; stderr %q", r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.want) {
				t.Errorf("stderr %q does not name %q", r.stderr, tc.want)
			}
			if strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
				t.Errorf("stderr is more than one line: %q", r.stderr)
			}
			if strings.Contains(r.stderr, cliKey) {
				t.Error("the key is in the error")
			}
		})
	}
	if n := srv.Requests(); n != 0 {
		t.Errorf("usage errors made %d API requests", n)
	}
	// A key file works.
	if r := cli(t, nil, "sync", "--base-url", url, "--duckdb", db, "--api-key-file", keyFile, "-q"); r.code != 0 {
		t.Errorf("sync with --api-key-file exited %d: %s", r.code, r.stderr)
	}
}

func TestRefusedKeyExits3(t *testing.T) {
	_, url := fake(t, fakeapi.Config{Contacts: 10})
	for _, tc := range []struct{ key, code string }{{"wbk_wrong_S3CR3T", "invalid_key"}, {"wbk_noread", "insufficient_permissions"}} {
		r := cli(t, []string{"LEADLEX_API_KEY=" + tc.key}, "sync", "--base-url", url, "--duckdb", filepath.Join(t.TempDir(), "w.duckdb"), "-q")
		if r.code != 3 {
			t.Fatalf("exit %d, want 3; stderr %q", r.code, r.stderr)
		}
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		last := lines[len(lines)-1]
		if !strings.HasPrefix(last, "leadlex-etl: ") || !strings.Contains(last, tc.code) || !strings.Contains(last, "request req_") {
			t.Errorf("last line %q lacks the code and request id", last)
		}
		if strings.Contains(r.stderr, "goroutine") || strings.Contains(r.stderr, "panic") {
			t.Errorf("stack trace on stderr: %s", r.stderr)
		}
		if strings.Contains(r.stderr+r.stdout, tc.key) {
			t.Error("the key was printed")
		}
	}
}

func TestRateLimitedNoWaitExits75(t *testing.T) {
	srv, url := fake(t, fakeapi.Config{Contacts: 3000, Seed: 2, RateLimit: 2, Hour: time.Hour})
	db := filepath.Join(t.TempDir(), "w.duckdb")
	env := []string{"LEADLEX_API_KEY=" + cliKey}
	r := cli(t, env, "sync", "--base-url", url, "--duckdb", db, "--limit", "500", "--no-wait", "-q")
	if r.code != 75 {
		t.Fatalf("exit %d, want 75; stderr %q", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "run again after") || !strings.Contains(r.stderr, "rate limited until") {
		t.Errorf("stderr %q does not say when to resume", r.stderr)
	}
	loaded := count(t, db, "SELECT count(*) FROM contacts")
	if loaded == 0 {
		t.Error("the windows fetched before the limit were not kept")
	}
	// The next run knows the budget is spent and does not spend a request on a 429.
	before := srv.Requests()
	r = cli(t, env, "sync", "--base-url", url, "--duckdb", db, "--limit", "500", "--no-wait", "-q")
	if r.code != 75 || srv.Requests() != before {
		t.Errorf("second run: exit %d after %d requests; want 75 after none", r.code, srv.Requests()-before)
	}
	if !strings.Contains(r.stderr, "budget an earlier run saved") || !strings.Contains(r.stderr, "--ignore-saved-budget") {
		t.Errorf("second run's stderr %q does not say the saved budget stopped it, nor how to override it", r.stderr)
	}
	// Told to ignore it, a run asks the API (and is refused with a 429).
	r = cli(t, env, "sync", "--base-url", url, "--duckdb", db, "--limit", "500", "--no-wait", "--ignore-saved-budget", "-q")
	if r.code != 75 || srv.Requests() != before+1 || strings.Contains(r.stderr, "earlier run saved") {
		t.Errorf("--ignore-saved-budget run: exit %d after %d requests, stderr %q; want 75 after a 429", r.code, srv.Requests()-before, r.stderr)
	}
	if n := count(t, db, "SELECT count(*) FROM contacts"); n != loaded {
		t.Errorf("contacts went from %d to %d", loaded, n)
	}
}

// TestKilledSyncResumesExactly kills syncs with SIGKILL right after a random
// number of windows have committed (an event read from the log, never a
// delay) and checks that a final run leaves exactly the dataset: nothing
// lost, no id twice.
func TestKilledSyncResumesExactly(t *testing.T) {
	srv, url := fake(t, fakeapi.Config{Contacts: 60000, Seed: 11, Order: fakeapi.OrderRandom, Bounds: fakeapi.BoundsExclusive})
	dir := t.TempDir()
	db := filepath.Join(dir, "w.duckdb")
	lake := filepath.Join(dir, "lake")
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for i := 0; i < 6; i++ {
		// At most 3 windows a run: the sync needs about 25 at this limit,
		// so every run is killed before it can finish.
		// Killed after a window committed, or while one downloads and
		// commits (its call answered).
		after, event := 1+r.IntN(3), []string{"window committed", "export call"}[r.IntN(2)]
		if !killAfter(t, event, after, "sync", "--base-url", url, "--duckdb", db, "--parquet", lake, "--limit", "3000", "--log-format", "json") {
			t.Fatalf("run %d finished before its %d-th %q; the test proves nothing", i, after, event)
		}
	}
	res := cli(t, []string{"LEADLEX_API_KEY=" + cliKey}, "sync", "--base-url", url, "--duckdb", db, "--parquet", lake, "--limit", "3000", "-q")
	if res.code != 0 {
		t.Fatalf("final run exited %d: %s", res.code, res.stderr)
	}
	t.Logf("final run: %s", strings.TrimSpace(res.stdout))
	ds := srv.Dataset()
	lakeTable := fmt.Sprintf("read_parquet('%s/**/*.parquet', hive_partitioning = true)", lake)
	for _, table := range []string{"contacts", lakeTable} {
		if n := count(t, db, "SELECT count(*) FROM "+table); n != int64(ds.Len()) {
			t.Errorf("%s has %d rows, want %d", table, n, ds.Len())
		}
		if n := count(t, db, "SELECT count(DISTINCT id) FROM "+table); n != int64(ds.Len()) {
			t.Errorf("%s has %d distinct ids, want %d", table, n, ds.Len())
		}
	}
	// The two sinks hold the same rows.
	cols := "id::VARCHAR, full_name, email, phone, job_title, company_name, linkedin_url, tags, created_at"
	if n := count(t, db, "SELECT count(*) FROM (SELECT "+cols+" FROM contacts EXCEPT SELECT "+cols+" FROM "+lakeTable+")"); n != 0 {
		t.Errorf("%d rows of DuckDB are not in the lake", n)
	}
	// The file holds the tool's tables and contacts, and no view: the
	// Arrow view of a killed commit never reached it.
	if n := count(t, db, `SELECT count(*) FROM duckdb_views() WHERE NOT internal`); n != 0 {
		t.Errorf("%d views in the DuckDB file after kills", n)
	}
	if n := count(t, db, `SELECT count(*) FROM duckdb_tables() WHERE table_name <> 'contacts' AND NOT starts_with(table_name, '_leadlex_')`); n != 0 {
		t.Errorf("%d tables other than contacts and the tool's own", n)
	}
	// No temporary file or journal is left once a run has finished.
	leftovers, _ := filepath.Glob(filepath.Join(lake, "*", ".*.tmp"))
	if _, err := os.Stat(filepath.Join(lake, "_leadlex", "journal.json")); err == nil || len(leftovers) > 0 {
		t.Errorf("leftovers after the final run: journal present %v, temp files %v", err == nil, leftovers)
	}
	// Every dataset id is there (checked in SQL against the generated list).
	var ids strings.Builder
	for i := 0; i < ds.Len(); i++ {
		fmt.Fprintf(&ids, "%s\n", ds.Contact(i).ID)
	}
	idFile := filepath.Join(dir, "ids.csv")
	if err := os.WriteFile(idFile, []byte("id\n"+ids.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	q := fmt.Sprintf("SELECT count(*) FROM read_csv('%s', columns = {'id': 'UUID'}, header = true) AS d ANTI JOIN contacts c ON c.id = d.id", idFile)
	if n := count(t, db, q); n != 0 {
		t.Errorf("%d dataset ids missing from contacts", n)
	}
}

func TestSecondWriterGetsALockError(t *testing.T) {
	_, url := fake(t, fakeapi.Config{Contacts: 100})
	path := filepath.Join(t.TempDir(), "w.duckdb")
	db, err := load.OpenDuckDB(context.Background(), path, load.DuckDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	summary := filepath.Join(t.TempDir(), "last.json")
	r := cli(t, []string{"LEADLEX_API_KEY=" + cliKey}, "sync", "--base-url", url, "--duckdb", path, "-q", "--summary-json", summary)
	if r.code != 1 || !strings.Contains(r.stderr, "locked by another process") || !strings.Contains(r.stderr, path) {
		t.Errorf("exit %d, stderr %q; want 1 and a message naming the lock and the file", r.code, r.stderr)
	}
	// A run that failed before any call still writes its report.
	var rep syncReport
	if b, err := os.ReadFile(summary); err != nil || json.Unmarshal(b, &rep) != nil ||
		rep.State != "failed" || rep.ExitCode != 1 || !strings.Contains(rep.Error, "locked by another process") || rep.Calls != 0 {
		t.Errorf("report of the locked-out run: %+v (%v)", rep, err)
	}
}

// badRowsServer answers every export with the same CSV: good rows and rows
// that do not parse.
func badRowsServer(t *testing.T, body string) string {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+cliKey {
			w.WriteHeader(401)
			return
		}
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("X-Request-ID", "req_badrows")
		fmt.Fprint(w, body)
	}))
	t.Cleanup(hs.Close)
	return hs.URL
}

func TestBadRowsGoToRejects(t *testing.T) {
	const header = "id,full_name,email,phone,job_title,company_name,linkedin_url,tags,created_at\r\n"
	good := "123e4567-e89b-12d3-a456-426614174000,Jane Doe,jane@acme.com,+1-555-0100,General Counsel,Acme Corp,https://linkedin.com/in/janedoe,\"lead,priority\",2026-04-15T09:00:00Z\r\n" +
		"456e7890-a1b2-34c5-d678-901234567890,Bob Smith,bob@beta.com,+1-555-0200,CEO,Beta LLP,,\"prospect\",2026-04-16T14:30:00Z\r\n"
	bad := "not-a-uuid,Eve,eve@x.com,,,,,,2026-04-17T10:00:00Z\r\n" +
		"789e7890-a1b2-34c5-d678-901234567890,Mallory,m@x.com,,,,,,yesterday\r\n" +
		"999e7890-a1b2-34c5-d678-901234567890,Too,Few\r\n"
	path := filepath.Join(t.TempDir(), "w.duckdb")
	env := []string{"LEADLEX_API_KEY=" + cliKey}

	// Over the 1% reject ratio with no bad row allowed: the window fails
	// and loads nothing.
	url := badRowsServer(t, header+good+bad)
	r := cli(t, env, "sync", "--base-url", url, "--duckdb", path, "-q", "--rejects-allowed", "0")
	if r.code != 1 || !strings.Contains(r.stderr, "3 of 5 rows rejected") || !strings.Contains(r.stderr, "line 4: id: not a UUID") {
		t.Fatalf("exit %d, stderr %q; want 1 naming the rejects and the first bad row", r.code, r.stderr)
	}
	// Nothing loaded: the file this first run created is gone.
	if _, err := os.Stat(path); err == nil {
		t.Error("a failed first run left its new DuckDB file")
	}
	// By default a few bad rows (up to 10) never fail a window: good rows
	// load and bad ones land in rejects.
	r = cli(t, env, "sync", "--base-url", url, "--duckdb", path, "-q")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if n := count(t, path, "SELECT count(*) FROM contacts"); n != 2 {
		t.Errorf("contacts has %d rows, want the 2 good ones", n)
	}
	if n := count(t, path, "SELECT count(*) FROM contacts WHERE id::VARCHAR LIKE '789e%' OR id::VARCHAR LIKE '999e%'"); n != 0 {
		t.Error("a rejected row is in contacts")
	}
	for _, q := range []string{
		"SELECT count(*) FROM _leadlex_rejects WHERE line = 4 AND raw LIKE 'not-a-uuid,Eve%' AND reason LIKE '%id%' AND request_id = 'req_badrows'",
		"SELECT count(*) FROM _leadlex_rejects WHERE line = 5 AND raw LIKE '%yesterday' AND reason LIKE '%created_at%'",
		"SELECT count(*) FROM _leadlex_rejects WHERE line = 6 AND raw = '999e7890-a1b2-34c5-d678-901234567890,Too,Few'",
	} {
		if n := count(t, path, q); n != 1 {
			t.Errorf("%s: %d rows, want 1", q, n)
		}
	}
	// A later failing window leaves what was loaded alone.
	r = cli(t, env, "sync", "--base-url", url, "--duckdb", path, "-q", "--since", "2020-01-01", "--rejects-allowed", "0")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1", r.code)
	}
	if n := count(t, path, "SELECT count(*) FROM contacts"); n != 2 {
		t.Errorf("after a failed window contacts has %d rows, want 2", n)
	}
}

func TestKeyInNoFileTheRunWrote(t *testing.T) {
	_, url := fake(t, fakeapi.Config{Contacts: 5000, FailRate: 0.2, CutRate: 0.1, Seed: 4})
	dir := t.TempDir()
	path := filepath.Join(dir, "w.duckdb")
	logFile, err := os.Create(filepath.Join(dir, "sync.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "sync", "--base-url", url, "--duckdb", path, "--limit", "1000", "--log-format", "json", "--attempts", "10", "--retry-backoff", "5ms")
	cmd.Env = cliEnv(t, "LEADLEX_API_KEY="+cliKey)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	runErr := cmd.Run()
	logFile.Close()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(cliKey)) || bytes.Contains(b, []byte("S3CR3T")) {
			t.Errorf("the API key is in %s", e.Name())
		}
	}
	log, _ := os.ReadFile(filepath.Join(dir, "sync.log"))
	if runErr != nil {
		t.Fatalf("sync failed: %v\n%s", runErr, log)
	}
	if !bytes.Contains(log, []byte(`"request_id"`)) {
		t.Errorf("the log names no request id:\n%s", log)
	}
}

func TestQueryIsReadOnly(t *testing.T) {
	_, url := fake(t, fakeapi.Config{Contacts: 200, Seed: 1})
	dir := t.TempDir()
	path := filepath.Join(dir, "w.duckdb")
	if r := cli(t, []string{"LEADLEX_API_KEY=" + cliKey}, "sync", "--base-url", url, "--duckdb", path, "-q"); r.code != 0 {
		t.Fatalf("sync: %d %s", r.code, r.stderr)
	}
	r := cli(t, nil, "query", "--duckdb", path, "SELECT count(*) AS n FROM contacts")
	if r.code != 0 || !strings.Contains(r.stdout, "200") {
		t.Errorf("query: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := cli(t, nil, "query", "--duckdb", path, "DELETE FROM contacts"); r.code != 1 || !strings.Contains(r.stderr, "read-only") {
		t.Errorf("a DELETE through query: %d %q", r.code, r.stderr)
	}
	if r := cli(t, nil, "query", "SELECT 40 + 2 AS answer"); r.code != 0 || !strings.Contains(r.stdout, "42") {
		t.Errorf("in-memory query: %d %q %q", r.code, r.stdout, r.stderr)
	}
	missing := filepath.Join(dir, "typo.duckdb")
	if r := cli(t, nil, "query", "--duckdb", missing, "SELECT 1"); r.code != 1 {
		t.Errorf("query on a missing file exited %d", r.code)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("query created the missing file")
	}
}

// TestInterruptKeepsCommittedWindows stops syncs with SIGINT and SIGTERM
// once two windows have committed: the exit code is the shell's (130, 143),
// the message and the summary say what was kept, and the next run resumes.
func TestInterruptKeepsCommittedWindows(t *testing.T) {
	_, url := fake(t, fakeapi.Config{Contacts: 20000, Seed: 1, SlowRate: 1, SlowDelay: 20 * time.Millisecond})
	for _, tc := range []struct {
		sig  os.Signal
		name string
		code int
	}{{os.Interrupt, "SIGINT", 130}, {syscall.SIGTERM, "SIGTERM", 143}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "w.duckdb")
			cmd := exec.Command(os.Args[0], "sync", "--base-url", url, "--duckdb", path, "--limit", "1000", "--log-format", "json")
			cmd.Env = cliEnv(t, "LEADLEX_API_KEY="+cliKey)
			var out strings.Builder
			cmd.Stdout = &out
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Signal once two windows have committed (of about 20).
			var errb strings.Builder
			sc := bufio.NewScanner(stderr)
			commits := 0
			for sc.Scan() {
				errb.WriteString(sc.Text() + "\n")
				if strings.Contains(sc.Text(), `"msg":"window committed"`) {
					if commits++; commits == 2 {
						_ = cmd.Process.Signal(tc.sig)
					}
				}
			}
			err = cmd.Wait()
			code := -1
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			if code != tc.code || !strings.Contains(errb.String(), "interrupted by "+tc.name) || !strings.Contains(errb.String(), "run again to resume") {
				t.Fatalf("exit %d, stderr %q; want %d and a message about resuming", code, errb.String(), tc.code)
			}
			if !strings.Contains(out.String(), ": interrupted: ") || !strings.Contains(out.String(), "the next run resumes") {
				t.Errorf("summary %q does not say what was kept", out.String())
			}
			n := count(t, path, "SELECT count(*) FROM contacts")
			if n == 0 || n >= 20000 {
				t.Errorf("%d contacts after the interrupt; want some windows kept and the run cut short", n)
			}
			if r := cli(t, []string{"LEADLEX_API_KEY=" + cliKey}, "sync", "--base-url", url, "--duckdb", path, "--limit", "1000", "-q"); r.code != 0 {
				t.Fatalf("resumed run: %d %s", r.code, r.stderr)
			}
			if n := count(t, path, "SELECT count(DISTINCT id) FROM contacts"); n != 20000 {
				t.Errorf("%d contacts after resuming, want 20000", n)
			}
		})
	}
}

// TestMistakesLeaveNoDebris checks what a refused key or a refused
// parameter leaves behind: no new destination, no pending windows, no
// advice to run again; and a destination that existed keeps its data.
func TestMistakesLeaveNoDebris(t *testing.T) {
	srv, url := fake(t, fakeapi.Config{Contacts: 500, Seed: 1})
	dir := t.TempDir()
	db, lake := filepath.Join(dir, "new.duckdb"), filepath.Join(dir, "newlake")
	emptyLake := filepath.Join(dir, "empty")
	if err := os.Mkdir(emptyLake, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, key string
		args      []string
		code      int
		want      string
	}{
		{"refused key", "wbk_wrong_S3CR3T", nil, 3, "invalid_key"},
		{"key without permission", "wbk_noread", nil, 3, "insufficient_permissions"},
		{"unknown field", cliKey, []string{"--fields", "shoe_size"}, 1, "the API refused --fields"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := srv.Requests()
			r := cli(t, []string{"LEADLEX_API_KEY=" + tc.key}, append([]string{"sync", "--base-url", url, "--duckdb", db, "--parquet", lake, "-q"}, tc.args...)...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want %d naming %q", r.code, r.stderr, tc.code, tc.want)
			}
			if n := srv.Requests() - before; n != 1 {
				t.Errorf("%d requests, want 1 (never retried)", n)
			}
			for _, p := range []string{db, db + ".wal", db + ".leadlex-lock", lake} {
				if _, err := os.Stat(p); err == nil {
					t.Errorf("%s was left behind", p)
				}
			}
			if strings.Contains(r.stdout+r.stderr, "pending") || strings.Contains(r.stdout+r.stderr, "run again to resume") || strings.Contains(r.stdout, "synced:") {
				t.Errorf("output advises resuming or claims a sync:\n%s%s", r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout, "nothing was committed") || !strings.Contains(r.stdout, "was removed") {
				t.Errorf("summary %q does not say nothing was committed and the new destination was removed", r.stdout)
			}
		})
	}
	// An empty folder the user made stays, empty.
	if r := cli(t, []string{"LEADLEX_API_KEY=wbk_noread"}, "sync", "--base-url", url, "--parquet", emptyLake, "-q"); r.code != 3 {
		t.Fatalf("exit %d", r.code)
	}
	if entries, err := os.ReadDir(emptyLake); err != nil || len(entries) != 0 {
		t.Errorf("the user's empty folder: %v %v", entries, err)
	}
	// A destination with data keeps it, and is not removed.
	if r := cli(t, []string{"LEADLEX_API_KEY=" + cliKey}, "sync", "--base-url", url, "--duckdb", db, "-q"); r.code != 0 {
		t.Fatalf("sync: %d %s", r.code, r.stderr)
	}
	// (Another key of the workspace: --key-rotated lets it reach the API.)
	if r := cli(t, []string{"LEADLEX_API_KEY=wbk_noread"}, "sync", "--base-url", url, "--duckdb", db, "-q", "--since", "2020-01-01", "--key-rotated"); r.code != 3 {
		t.Fatalf("exit %d", r.code)
	}
	if n := count(t, db, "SELECT count(*) FROM contacts"); n != 500 {
		t.Errorf("%d contacts after a refused run, want the 500 synced before", n)
	}
}

// TestKeyFileReadableByOthersIsWarnedOf checks the ssh-like warning.
func TestKeyFileReadableByOthersIsWarnedOf(t *testing.T) {
	_, url := fake(t, fakeapi.Config{Contacts: 10})
	dir := t.TempDir()
	for _, tc := range []struct {
		mode os.FileMode
		warn bool
	}{{0o644, true}, {0o600, false}, {0o640, true}} {
		keyFile := filepath.Join(dir, fmt.Sprintf("key%o", tc.mode))
		if err := os.WriteFile(keyFile, []byte(cliKey+"\n"), tc.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(keyFile, tc.mode); err != nil {
			t.Fatal(err)
		}
		r := cli(t, nil, "sync", "--base-url", url, "--duckdb", filepath.Join(dir, "w.duckdb"), "--api-key-file", keyFile)
		if r.code != 0 {
			t.Fatalf("mode %o: exit %d %s", tc.mode, r.code, r.stderr)
		}
		if got := strings.Contains(r.stderr, "readable by other users") && strings.Contains(r.stderr, "chmod 600"); got != tc.warn {
			t.Errorf("mode %o: warned %v, want %v:\n%s", tc.mode, got, tc.warn, r.stderr)
		}
		if strings.Contains(r.stderr, cliKey) {
			t.Error("the key is in the log")
		}
	}
}

// killAfter starts the CLI with args (which must log JSON to stderr) and
// kills it with SIGKILL as soon as its log has shown the message msg n
// times. It reports whether the kill happened before the process ended on
// its own.
func killAfter(t *testing.T, msg string, n int, args ...string) bool {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = cliEnv(t, "LEADLEX_API_KEY="+cliKey)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	seen, killed := 0, false
	var tail []string
	for sc.Scan() {
		line := sc.Text()
		tail = append(tail, line)
		if !killed && strings.Contains(line, `"msg":"`+msg+`"`) {
			if seen++; seen == n {
				_ = cmd.Process.Signal(syscall.SIGKILL)
				killed = true
			}
		}
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return true
	}
	if err != nil {
		t.Fatalf("run failed before the kill: %v\n%s", err, strings.Join(tail, "\n"))
	}
	return false
}

// syncProcess starts the CLI with args (JSON logs) and calls onLine for each
// log line until the process ends; it returns the exit code.
func syncProcess(t *testing.T, onLine func(line string), args ...string) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = cliEnv(t, "LEADLEX_API_KEY="+cliKey)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var all []string
	for sc.Scan() {
		all = append(all, sc.Text())
		onLine(sc.Text())
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		t.Logf("exit %d; log:\n%s", ee.ExitCode(), strings.Join(all, "\n"))
		return ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0
}

// TestReadersOpenTheFileWhileASyncWaits checks that a sync waiting for the
// rate-limit reset has the DuckDB file closed: another process opens it
// read-only and counts what is committed so far.
func TestReadersOpenTheFileWhileASyncWaits(t *testing.T) {
	_, url := fake(t, fakeapi.Config{Contacts: 3000, Seed: 2, RateLimit: 2, Hour: 4 * time.Second})
	path := filepath.Join(t.TempDir(), "w.duckdb")
	var seen int64 = -1
	var lastErr error
	code := syncProcess(t, func(line string) {
		if seen >= 0 || !strings.Contains(line, "waiting for the reset") {
			return
		}
		// The wait lasts a few seconds; the file is closed at its start or
		// within the sink's idle delay (1 s).
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if seen, lastErr = tryCount(path, "SELECT count(*) FROM contacts"); lastErr == nil {
				return
			}
			seen = -1
		}
	}, "sync", "--base-url", url, "--duckdb", path, "--limit", "1000", "--log-format", "json")
	if code != 0 {
		t.Fatalf("sync exited %d", code)
	}
	if seen < 1000 || seen >= 3000 {
		t.Errorf("a reader during the wait counted %d rows (%v); want the windows committed before it", seen, lastErr)
	}
	if n := count(t, path, "SELECT count(DISTINCT id) FROM contacts"); n != 3000 {
		t.Errorf("%d contacts after the sync, want 3000", n)
	}
}

// TestASyncWaitsForAReader checks that a reader holding the DuckDB file
// open makes the sync wait, saying so, rather than fail.
func TestASyncWaitsForAReader(t *testing.T) {
	_, url := fake(t, fakeapi.Config{Contacts: 2000, Seed: 3})
	path := filepath.Join(t.TempDir(), "w.duckdb")
	if r := cli(t, []string{"LEADLEX_API_KEY=" + cliKey}, "sync", "--base-url", url, "--duckdb", path, "-q", "--until", "2023-01-01"); r.code != 0 {
		t.Fatalf("first sync: %d %s", r.code, r.stderr)
	}
	reader, err := load.OpenDuckDBReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := reader.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	waited := false
	code := syncProcess(t, func(line string) {
		if !waited && strings.Contains(line, "open in another process") {
			waited = true
			conn.Close()
			reader.Close()
		}
	}, "sync", "--base-url", url, "--duckdb", path, "--log-format", "json")
	if !waited {
		conn.Close()
		reader.Close()
		t.Error("the sync never said it waited for the reader")
	}
	if code != 0 {
		t.Fatalf("sync exited %d", code)
	}
	if n := count(t, path, "SELECT count(DISTINCT id) FROM contacts"); n != 2000 {
		t.Errorf("%d contacts, want 2000", n)
	}
}

// TestDestinationsShareTheBudget syncs one workspace into two destinations,
// one after the other with the same key: the first spends the hour's calls,
// and the second knows it (from the budget file under XDG_STATE_HOME) and
// stops with exit 75 without a request, where it would otherwise spend one
// on a 429.
func TestDestinationsShareTheBudget(t *testing.T) {
	srv, url := fake(t, fakeapi.Config{Contacts: 3000, Seed: 2, RateLimit: 3, Hour: time.Hour})
	dir := t.TempDir()
	env := []string{"LEADLEX_API_KEY=" + cliKey}
	r := cli(t, env, "sync", "--base-url", url, "--duckdb", filepath.Join(dir, "one.duckdb"), "--limit", "1000", "--no-wait", "-q")
	if r.code != 75 || srv.Calls() != 3 {
		t.Fatalf("first destination: exit %d after %d calls, want 75 after the hour's 3: %s", r.code, srv.Calls(), r.stderr)
	}
	before := srv.Requests()
	r = cli(t, env, "sync", "--base-url", url, "--parquet", filepath.Join(dir, "lake"), "--limit", "1000", "--no-wait", "-q")
	if r.code != 75 || !strings.Contains(r.stderr, "run again after") {
		t.Fatalf("second destination: exit %d, want 75 saying when to resume: %s", r.code, r.stderr)
	}
	if n := srv.Requests() - before; n != 0 {
		t.Errorf("the second destination's run made %d requests: it did not know the first spent the hour's calls", n)
	}
	b, err := os.ReadFile(filepath.Join(states[t], "leadlex-etl", "budgets.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"remaining": 0`) || strings.Contains(string(b), cliKey) || strings.Contains(string(b), "S3CR3T") {
		t.Errorf("budget file:\n%s", b)
	}
}

// TestKilledRefreshResumesExactly edits and deletes contacts at the fake
// API after a full sync, kills refreshing syncs with SIGKILL in the middle
// of a refresh window, and checks that later runs leave both sinks exactly
// the workspace: live contacts equal, deleted ones marked.
func TestKilledRefreshResumesExactly(t *testing.T) {
	srv, url := fake(t, fakeapi.Config{Contacts: 20000, Seed: 11, Order: fakeapi.OrderRandom})
	dir := t.TempDir()
	db, lake := filepath.Join(dir, "w.duckdb"), filepath.Join(dir, "lake")
	args := []string{"sync", "--base-url", url, "--duckdb", db, "--parquet", lake, "--limit", "2000", "--log-format", "json",
		"--refresh-calls", "30", "--refresh-min-age", "0s"}
	env := []string{"LEADLEX_API_KEY=" + cliKey}
	if r := cli(t, env, args...); r.code != 0 {
		t.Fatalf("full sync: %d %s", r.code, r.stderr)
	}
	var edits, deletes []int
	for i := 0; i < 20000; i += 97 {
		edits = append(edits, i)
	}
	for i := 50; i < 20000; i += 331 {
		deletes = append(deletes, i)
	}
	srv.Edit(edits...)
	srv.Delete(deletes...)
	// Kill during the refresh: after a refresh window's call is answered,
	// or right after one committed.
	for i, ev := range []string{"export call", "window committed", "export call"} {
		n := 0
		seenRefresh := false
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = cliEnv(t, env...)
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killed := false
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.Contains(line, `"msg":"refresh starting"`) {
				seenRefresh = true
			}
			if seenRefresh && !killed && strings.Contains(line, `"msg":"`+ev+`"`) {
				if n++; n == 2+i {
					_ = cmd.Process.Signal(syscall.SIGKILL)
					killed = true
				}
			}
		}
		_ = cmd.Wait()
		if !killed {
			t.Fatalf("run %d finished before its refresh could be killed", i)
		}
	}
	ds := srv.Dataset()
	lakeData := fmt.Sprintf("read_parquet('%s/contacts/**/*.parquet')", lake)
	for round := 0; ; round++ {
		if r := cli(t, env, args...); r.code != 0 {
			t.Fatalf("run after the kills: %d %s", r.code, r.stderr)
		}
		done := true
		for _, from := range []string{"contacts", lakeData} {
			marked := count(t, db, "SELECT count(*) FROM "+from+" WHERE _deleted_at IS NOT NULL")
			live := count(t, db, "SELECT count(*) FROM "+from+" WHERE _deleted_at IS NULL")
			done = done && marked == int64(len(deletes)) && live == int64(ds.Live())
		}
		if done {
			break
		}
		if round == 3 {
			t.Fatal("four runs after the kills did not verify everything")
		}
	}
	// Value by value: every live contact as the API has it now, the deleted
	// ones marked (with the values last seen), no id twice.
	var want bytes.Buffer
	w := csv.NewWriter(&want)
	_ = w.Write([]string{"id", "full_name", "email", "deleted"})
	for i := 0; i < ds.Len(); i++ {
		c := ds.Contact(i)
		_ = w.Write([]string{c.ID, c.FullName, c.Email, fmt.Sprint(c.Deleted)})
	}
	w.Flush()
	wantFile := filepath.Join(dir, "want.csv")
	if err := os.WriteFile(wantFile, want.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, from := range []string{"contacts", lakeData} {
		q := fmt.Sprintf(`SELECT count(*) FROM read_csv('%s', header = true, all_varchar = true) AS w FULL JOIN %s AS c ON c.id::VARCHAR = w.id
			WHERE c.id IS NULL OR w.id IS NULL OR (c._deleted_at IS NOT NULL) <> (w.deleted = 'true')
			OR w.deleted = 'false' AND (c.full_name IS DISTINCT FROM nullif(w.full_name, '') OR c.email IS DISTINCT FROM nullif(w.email, ''))`, wantFile, from)
		if n := count(t, db, q); n != 0 {
			t.Errorf("%s: %d contacts differ from the workspace", from, n)
		}
		if n := count(t, db, "SELECT count(*) - count(DISTINCT id) FROM "+from); n != 0 {
			t.Errorf("%s: %d ids twice", from, n)
		}
	}
}

// TestNewStreamNeedsConsent syncs the default stream, then a command line
// that differs by a --tag: without a terminal it is refused before any call,
// naming the existing stream and --new-stream; with --new-stream it runs.
// The same stream spelled otherwise (localhost, a trailing slash, the
// default fields spelled out) continues the stream at the cost of one call.
func TestNewStreamNeedsConsent(t *testing.T) {
	srv, url := fake(t, fakeapi.Config{Contacts: 1000, Seed: 3})
	db := filepath.Join(t.TempDir(), "w.duckdb")
	env := []string{"LEADLEX_API_KEY=" + cliKey}
	if r := cli(t, env, "sync", "--base-url", url, "--duckdb", db, "-q"); r.code != 0 {
		t.Fatalf("first sync: %d %s", r.code, r.stderr)
	}
	calls := srv.Calls()
	r := cli(t, env, "sync", "--base-url", strings.Replace(url, "127.0.0.1", "localhost", 1)+"/", "--duckdb", db, "-q",
		"--fields", "tags,created_at,id,full_name,email,phone,job_title,company_name,linkedin_url")
	if r.code != 0 || srv.Calls()-calls != 1 {
		t.Fatalf("the same stream spelled otherwise: exit %d after %d calls, want 0 after 1: %s", r.code, srv.Calls()-calls, r.stderr)
	}
	calls = srv.Calls()
	r = cli(t, env, "sync", "--base-url", url, "--duckdb", db, "-q", "--tag", "vip")
	if r.code != 2 || !strings.Contains(r.stderr, "--new-stream") || !strings.Contains(r.stderr, "new stream") || srv.Calls() != calls {
		t.Fatalf("a new stream: exit %d after %d calls, stderr %q; want 2 naming --new-stream, no call", r.code, srv.Calls()-calls, r.stderr)
	}
	if r := cli(t, env, "sync", "--base-url", url, "--duckdb", db, "-q", "--tag", "vip", "--new-stream"); r.code != 0 {
		t.Fatalf("with --new-stream: %d %s", r.code, r.stderr)
	}
}

// TestHostTimeZoneChangesNothing syncs with the process in zones far east
// and west of UTC: every contact lands in the partition of its created_at in
// UTC, as the flag's help says and DuckDB's own COPY ... PARTITION_BY writes.
func TestHostTimeZoneChangesNothing(t *testing.T) {
	srv, url := fake(t, fakeapi.Config{Contacts: 3000, Seed: 5})
	for _, tz := range []string{"Pacific/Kiritimati", "America/Adak"} {
		t.Run(tz, func(t *testing.T) {
			dir := t.TempDir()
			db, lake := filepath.Join(dir, "w.duckdb"), filepath.Join(dir, "lake")
			res := cli(t, []string{"TZ=" + tz, "LEADLEX_API_KEY=" + cliKey}, "sync", "--base-url", url, "--duckdb", db, "--parquet", lake, "--partition-by", "day", "-q")
			if res.code != 0 {
				t.Fatalf("sync exited %d: %s", res.code, res.stderr)
			}
			lakeTable := fmt.Sprintf("read_parquet('%s/contacts/**/*.parquet', hive_partitioning = true)", lake)
			for _, table := range []string{"contacts", lakeTable} {
				if n := count(t, db, "SELECT count(*) FROM "+table); n != int64(srv.Dataset().Len()) {
					t.Errorf("%s has %d rows, want %d", table, n, srv.Dataset().Len())
				}
			}
			// Most contacts fall on another day in this zone than in UTC.
			if n := count(t, db, fmt.Sprintf("SELECT count(*) FROM contacts WHERE day(timezone('%s', created_at)) <> day(timezone('UTC', created_at))", tz)); n < 100 {
				t.Fatalf("only %d contacts fall on another day in %s: the test proves nothing", n, tz)
			}
			q := "SELECT count(*) FROM " + lakeTable + ", (SELECT timezone('UTC', created_at) AS utc) " +
				"WHERE year <> year(utc) OR month <> month(utc) OR day <> day(utc)"
			if n := count(t, db, q); n != 0 {
				t.Errorf("%d contacts of the lake are in the partition of another day than their created_at in UTC", n)
			}
		})
	}
}
