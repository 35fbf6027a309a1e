package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/leadlex/leadlex-etl/internal/fakeapi"
)

// TestSignalDuringARefreshCommit sends SIGTERM to syncs at the moment a
// refresh window's commit starts, again and again: each run ends as
// interrupted (exit 143, the summary written and the run recorded so), never
// with DuckDB's interrupt error or a panic, and the data stays exactly the
// workspace's.
func TestSignalDuringARefreshCommit(t *testing.T) {
	const contacts = 10000
	_, url := fake(t, fakeapi.Config{Contacts: contacts, Seed: 5})
	dir := t.TempDir()
	db, summary := filepath.Join(dir, "w.duckdb"), filepath.Join(dir, "last.json")
	env := []string{"LEADLEX_API_KEY=" + cliKey}
	if r := cli(t, env, "sync", "--base-url", url, "--duckdb", db, "--refresh-calls", "0", "-q"); r.code != 0 {
		t.Fatalf("first sync: %d %s", r.code, r.stderr)
	}
	runs := 12
	if testing.Short() {
		runs = 4
	}
	for i := range runs {
		cmd := exec.Command(os.Args[0], "sync", "--base-url", url, "--duckdb", db, "--refresh-calls", "1", "--refresh-min-age", "0s",
			"--log-format", "json", "--summary-json", summary)
		cmd.Env = cliEnv(t, env...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout = &stdout
		pipe, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			stderr.WriteString(line + "\n")
			if !signalled && strings.Contains(line, `"msg":"window committing"`) && strings.Contains(line, `"refresh":true`) {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				signalled = true
			}
		}
		_ = cmd.Wait()
		r := result{cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()}
		if !signalled {
			t.Fatalf("run %d: no refresh window committed: exit %d %s", i, r.code, r.stderr)
		}
		if r.code != 143 || strings.Contains(r.stderr, "INTERRUPT Error") || strings.Contains(r.stderr, "panic") {
			t.Fatalf("run %d: exit %d, want 143 and no DuckDB interrupt error or panic:\n%s", i, r.code, r.stderr)
		}
		rep := checkReport(t, summary, r, db)
		if rep.State != "interrupted" || rep.Error != "interrupted by SIGTERM" {
			t.Errorf("run %d: report %+v", i, rep)
		}
		if st := readRun(t, db, rep.RunID).status; st != "interrupted" {
			t.Errorf("run %d is recorded %q, want interrupted", i, st)
		}
		if n := count(t, db, "SELECT count(*) FROM _leadlex_runs WHERE status = 'running'"); n != 0 {
			t.Errorf("after run %d: %d runs still recorded running", i, n)
		}
		if n := count(t, db, "SELECT count(*) FROM contacts WHERE _deleted_at IS NULL"); n != contacts {
			t.Errorf("after run %d: %d live contacts, want %d", i, n, contacts)
		}
		if n := count(t, db, "SELECT count(*) - count(DISTINCT id) FROM contacts"); n != 0 {
			t.Errorf("after run %d: %d ids twice", i, n)
		}
	}
}
