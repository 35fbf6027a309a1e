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

// signalAfter runs the CLI with JSON logs and sends it sig right after the
// nth log line whose message is msg. It returns the exit code and output,
// and fails the test if the run ended before the signal was sent.
func signalAfter(t *testing.T, sig syscall.Signal, msg string, n int, args ...string) result {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = cliEnv(t)
	var out bytes.Buffer
	cmd.Stdout = &out
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	seen, sent := 0, false
	var all strings.Builder
	for sc.Scan() {
		all.WriteString(sc.Text() + "\n")
		if !sent && strings.Contains(sc.Text(), `"msg":"`+msg+`"`) {
			if seen++; seen == n {
				_ = cmd.Process.Signal(sig)
				sent = true
			}
		}
	}
	err = cmd.Wait()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	} else if err != nil {
		t.Fatal(err)
	}
	if !sent {
		t.Fatalf("the run ended (exit %d) before its %d %q line; the test proves nothing:\n%s", code, n, msg, all.String())
	}
	return result{code, out.String(), all.String()}
}

// TestInterruptedReplayResumesFromTheCLI stops replays with SIGTERM,
// SIGINT and SIGKILL right after a committed window, into a new file and
// into a file that holds another stream: the interrupted replay says its
// windows are kept and to run it again, keeps the new file, and the same
// command then resumes and ends with the original's contacts, stream state
// and windows, the other stream untouched.
func TestInterruptedReplayResumesFromTheCLI(t *testing.T) {
	_, url := fake(t, fakeapi.Config{Contacts: 8000, Seed: 23})
	_, otherURL := fake(t, fakeapi.Config{Contacts: 500, Seed: 22})
	dir := t.TempDir()
	db, raw := filepath.Join(dir, "w.duckdb"), filepath.Join(dir, "raw")
	env := []string{"LEADLEX_API_KEY=" + cliKey}
	if r := cli(t, env, "sync", "--base-url", url, "--duckdb", db, "--raw-dir", raw, "--limit", "400", "-q"); r.code != 0 {
		t.Fatalf("sync: %d %s", r.code, r.stderr)
	}
	for _, tc := range []struct {
		name  string
		sig   syscall.Signal
		after int
		other bool     // the file holds another stream
		extra []string // replay flags
	}{
		{"SIGTERM into a new file", syscall.SIGTERM, 1, false, []string{"--group-rows", "0"}},
		{"SIGINT into a file with another stream", syscall.SIGINT, 2, true, []string{"--group-rows", "0"}},
		{"SIGKILL in groups, after one committed", syscall.SIGKILL, 8, false, []string{"--group-rows", "2000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.duckdb")
			if tc.other {
				if r := cli(t, env, "sync", "--base-url", otherURL, "--duckdb", out, "--limit", "1000", "-q"); r.code != 0 {
					t.Fatalf("sync of the other stream: %d %s", r.code, r.stderr)
				}
			}
			args := append([]string{"replay", "--raw-dir", raw, "--duckdb", out, "--log-format", "json"}, tc.extra...)
			r := signalAfter(t, tc.sig, "window committed", tc.after, args...)
			if r.code != 128+int(tc.sig) {
				t.Fatalf("exit %d, want %d:\n%s\n%s", r.code, 128+int(tc.sig), r.stdout, r.stderr)
			}
			if tc.sig != syscall.SIGKILL && (!strings.Contains(r.stdout, "run the same replay again to resume") || !strings.Contains(r.stderr, "run again to resume")) {
				t.Errorf("the interrupted replay does not say to run it again:\n%s\n%s", r.stdout, r.stderr)
			}
			if _, err := os.Stat(out); err != nil {
				t.Fatalf("the interrupted replay removed its destination, which it says is kept: %v", err)
			}
			r = cli(t, nil, args...)
			if r.code != 0 {
				t.Fatalf("the replay run again: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout, "resumed: the first") {
				t.Errorf("the replay run again does not say it resumed:\n%s", r.stdout)
			}
			q := attach(t, db, out)
			defer q.Close()
			mine := "SELECT * FROM b.contacts WHERE _request_id IN (SELECT request_id FROM b._leadlex_windows WHERE stream_id = (SELECT stream_id FROM a._leadlex_streams))"
			sameRows(t, q, "contacts", "SELECT * FROM a.contacts", mine)
			sameRows(t, q, "stream state", "SELECT * EXCLUDE (updated_at) FROM a._leadlex_streams",
				"SELECT * EXCLUDE (updated_at) FROM b._leadlex_streams WHERE stream_id = (SELECT stream_id FROM a._leadlex_streams)")
			sameRows(t, q, "windows", "SELECT * FROM a._leadlex_windows", "SELECT * FROM b._leadlex_windows WHERE stream_id = (SELECT stream_id FROM a._leadlex_streams)")
			want := int64(8000)
			if tc.other {
				want += 500
			}
			if n := queryInt(t, q, "SELECT count(*) FROM b.contacts WHERE _deleted_at IS NULL"); n != want {
				t.Errorf("%d live contacts, want %d", n, want)
			}
		})
	}
}
