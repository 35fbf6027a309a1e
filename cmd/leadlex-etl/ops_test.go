package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/leadlex/leadlex-etl/internal/fakeapi"
	"github.com/leadlex/leadlex-etl/internal/load"
)

func TestVersion(t *testing.T) {
	want, err := duckDBVersion(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--version"}, {"version"}} {
		r := cli(t, nil, args...)
		if r.code != 0 {
			t.Fatalf("%v exited %d: %s", args, r.code, r.stderr)
		}
		for _, line := range []string{"leadlex-etl ", "commit: ", "go:     " + runtime.Version() + "\n", "duckdb: " + want + "\n"} {
			if !strings.Contains(r.stdout, line) {
				t.Errorf("%v: output lacks %q:\n%s", args, line, r.stdout)
			}
		}
	}
	if !regexp.MustCompile(`^v\d+\.\d+\.\d+`).MatchString(want) {
		t.Errorf("DuckDB says its version is %q", want)
	}
}

func TestCheck(t *testing.T) {
	srv, url := fake(t, fakeapi.Config{Contacts: 100, RateLimit: 2, Hour: time.Hour})
	key := "LEADLEX_API_KEY=" + cliKey

	before := srv.Requests()
	r := cli(t, []string{key}, "check", "--base-url", url)
	if r.code != 0 || srv.Requests()-before != 1 || srv.Calls() != 1 {
		t.Fatalf("check: exit %d after %d requests (%d calls), want 0 after one: %s", r.code, srv.Requests()-before, srv.Calls(), r.stderr)
	}
	if !strings.Contains(r.stderr, "spends one of the workspace's export calls") {
		t.Errorf("check did not say what it costs before calling: %q", r.stderr)
	}
	if !regexp.MustCompile(`ok: the API accepted the key \(request req_\w+\)\nrate limit: 1 of 2 calls left this hour, reset at \S+Z \(in \S+\)\n`).MatchString(r.stdout) {
		t.Errorf("check's result: %q", r.stdout)
	}

	for _, tc := range []struct{ key, code string }{{"wbk_wrong_S3CR3T", "invalid_key"}, {"wbk_noread", "insufficient_permissions"}} {
		before := srv.Requests()
		r := cli(t, []string{"LEADLEX_API_KEY=" + tc.key}, "check", "--base-url", url, "-q")
		if r.code != 3 || !strings.Contains(r.stderr, tc.code) || srv.Requests()-before != 1 {
			t.Errorf("key %s: exit %d after %d requests, stderr %q; want 3 after one, naming %s", tc.code, r.code, srv.Requests()-before, r.stderr, tc.code)
		}
		if strings.Contains(r.stdout+r.stderr, tc.key) {
			t.Error("the key was printed")
		}
	}

	// The second call of the hour spends the budget; the third is
	// refused with a 429: exit 75, said so, and not asked again.
	if r := cli(t, []string{key}, "sync", "--base-url", url, "--duckdb", filepath.Join(t.TempDir(), "w.duckdb"), "--max-calls", "1", "-q"); r.code != 0 {
		t.Fatalf("sync: %d %s", r.code, r.stderr)
	}
	before = srv.Requests()
	r = cli(t, []string{key}, "check", "--base-url", url)
	if r.code != 75 || srv.Requests()-before != 1 {
		t.Fatalf("rate-limited check: exit %d after %d requests, want 75 after one: %s", r.code, srv.Requests()-before, r.stderr)
	}
	if !regexp.MustCompile(`leadlex-etl: rate-limited now: the API answered 429 \(request req_\w+\); calls resume at \S+Z\n$`).MatchString(r.stderr) {
		t.Errorf("rate-limited check's message: %q", r.stderr)
	}
	// A sync knows what the check learnt, and spends no request on a 429.
	before = srv.Requests()
	if r := cli(t, []string{key}, "sync", "--base-url", url, "--duckdb", filepath.Join(t.TempDir(), "w.duckdb"), "--no-wait", "-q"); r.code != 75 || srv.Requests() != before {
		t.Errorf("sync after the check: exit %d after %d requests, want 75 after none", r.code, srv.Requests()-before)
	}

	// Something that is not the export API answers 200.
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<html><body>Welcome</body></html>")
	}))
	defer hs.Close()
	r = cli(t, []string{key}, "check", "--base-url", hs.URL)
	if r.code != 1 || !strings.Contains(r.stderr, "--base-url") || strings.Contains(r.stdout, "ok") {
		t.Errorf("check of a web page: exit %d, stdout %q, stderr %q; want 1 naming --base-url", r.code, r.stdout, r.stderr)
	}
	// Usage errors.
	if r := cli(t, nil, "check", "--base-url", url); r.code != 2 || !strings.Contains(r.stderr, "LEADLEX_API_KEY") {
		t.Errorf("check without a key: %d %q", r.code, r.stderr)
	}
}

// summaryLine is the prose summary's first line.
var summaryLine = regexp.MustCompile(`: (\S[^:]*): (\d+) contacts \((\d+) rows received\) in (\d+) windows? with (\d+) API calls? \(minimum (\d+)\), (\d+) rejected, (\S+)\n`)

// runRow is a run as _leadlex_runs records it.
type runRow struct {
	status                              string
	windows, calls                      int
	rows, rejects                       int64
	inserted, replaced, changed, delete int64
	refreshCalls                        int
	errText                             string
}

func readRun(t *testing.T, db, runID string) runRow {
	t.Helper()
	conn, err := load.OpenDuckDBReadOnly(db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var r runRow
	err = conn.QueryRow(`SELECT status, windows, calls, "rows", rejects, coalesce(inserted, 0), coalesce(replaced, 0), coalesce(changed, 0),
		coalesce(deleted, 0), coalesce(refresh_calls, 0), coalesce(error, '') FROM _leadlex_runs WHERE run_id = ?`, runID).
		Scan(&r.status, &r.windows, &r.calls, &r.rows, &r.rejects, &r.inserted, &r.replaced, &r.changed, &r.delete, &r.refreshCalls, &r.errText)
	if err != nil {
		t.Fatalf("run %s: %v", runID, err)
	}
	return r
}

// checkReport compares a --summary-json report with the prose summary on
// stdout, the "run finished" event of the JSON log on stderr, and the run
// the DuckDB file db recorded.
func checkReport(t *testing.T, path string, r result, db string) syncReport {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep syncReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatalf("%v:\n%s", err, raw)
	}
	if rep.ExitCode != r.code {
		t.Errorf("report says exit %d, the process exited %d", rep.ExitCode, r.code)
	}
	m := summaryLine.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("no summary line in %q", r.stdout)
	}
	elapsed, _ := time.ParseDuration(m[8])
	prose := []int{atoi(m[2]), atoi(m[3]), atoi(m[4]), atoi(m[5]), atoi(m[6]), atoi(m[7])}
	got := []int{rep.Contacts, rep.Rows, rep.Windows, rep.Calls, rep.MinCalls, int(rep.Rejects)}
	if !reflect.DeepEqual(prose, got) || elapsed.Seconds() != rep.ElapsedSeconds {
		t.Errorf("prose says contacts, rows, windows, calls, minimum, rejects %v in %s; the report %v in %gs", prose, elapsed, got, rep.ElapsedSeconds)
	}
	if words := map[string]string{"complete": "complete", "stopped": "stopped at --max-calls", "rate-limited": "stopped by the rate limit",
		"interrupted": "interrupted", "failed": "failed"}; words[rep.State] != m[1] {
		t.Errorf("prose says %q, the report %q", m[1], rep.State)
	}
	// The log's last event has the same fields and values.
	var event map[string]any
	for _, line := range strings.Split(r.stderr, "\n") {
		if strings.Contains(line, `"msg":"run finished"`) {
			if err := json.Unmarshal([]byte(line), &event); err != nil {
				t.Fatal(err)
			}
		}
	}
	var file map[string]any
	_ = json.Unmarshal(raw, &file)
	for _, k := range []string{"time", "level", "msg"} {
		delete(event, k)
	}
	if !reflect.DeepEqual(event, file) {
		t.Errorf("the run finished event differs from the file:\n%v\n%v", event, file)
	}
	run := readRun(t, db, rep.RunID)
	c := rep.Changes
	if run.windows != rep.Windows || run.calls != rep.Calls || run.rows != int64(rep.Rows) || run.rejects != rep.Rejects ||
		run.inserted != c.Inserted || run.replaced != c.Replaced || run.changed != c.Changed || run.delete != c.Deleted || run.refreshCalls != rep.Refresh.Calls {
		t.Errorf("_leadlex_runs has %+v; the report %+v", run, rep)
	}
	return rep
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func TestSummaryJSON(t *testing.T) {
	_, limited := fake(t, fakeapi.Config{Contacts: 3000, Seed: 2, RateLimit: 3, Hour: time.Hour})
	_, url := fake(t, fakeapi.Config{Contacts: 3000, Seed: 2})
	dir := t.TempDir()
	summary := filepath.Join(dir, "last.json")
	env := []string{"LEADLEX_API_KEY=" + cliKey}
	args := func(url, db string) []string {
		return []string{"sync", "--base-url", url, "--duckdb", db, "--limit", "1000", "--summary-json", summary, "--log-format", "json"}
	}

	// Stopped by the rate limit: the third call spends the hour's budget.
	db := filepath.Join(dir, "limited.duckdb")
	r := cli(t, env, append(args(limited, db), "--no-wait")...)
	if r.code != 75 {
		t.Fatalf("exit %d, want 75: %s", r.code, r.stderr)
	}
	rep := checkReport(t, summary, r, db)
	if rep.State != "rate-limited" || rep.ResumeAt == nil || rep.Exit == "" || !strings.Contains(rep.Error, "run again after") ||
		!rep.Pending.Saved || rep.Pending.Windows == 0 || readRun(t, db, rep.RunID).status != "failed" {
		t.Errorf("rate-limited run's report: %+v", rep)
	}
	if !strings.Contains(r.stderr, "run again after "+rep.ResumeAt.Format(time.RFC3339)) {
		t.Errorf("resume_at %s is not the time the message gives: %s", rep.ResumeAt, r.stderr)
	}

	// Complete.
	db = filepath.Join(dir, "w.duckdb")
	r = cli(t, env, args(url, db)...)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	rep = checkReport(t, summary, r, db)
	if rep.State != "complete" || rep.ResumeAt != nil || rep.Error != "" || rep.Pending.Windows != 0 || rep.Staleness == nil ||
		len(rep.Destinations) != 1 || rep.Destinations[0] != db || rep.Changes.Inserted != 3000 || readRun(t, db, rep.RunID).status != "ok" {
		t.Errorf("complete run's report: %+v", rep)
	}

	// A refused key (another of the workspace's, which --key-rotated lets
	// reach the API): the report is written, and names the error.
	r = cli(t, []string{"LEADLEX_API_KEY=wbk_noread"}, append(args(url, db), "--key-rotated")...)
	if r.code != 3 {
		t.Fatalf("exit %d, want 3", r.code)
	}
	rep = checkReport(t, summary, r, db)
	if rep.State != "failed" || !strings.Contains(rep.Error, "insufficient_permissions") || rep.Exit == "" {
		t.Errorf("refused run's report: %+v", rep)
	}

	// A usage error writes none.
	if err := os.Remove(summary); err != nil {
		t.Fatal(err)
	}
	if r := cli(t, env, append(args(url, db), "--limit", "0")...); r.code != 2 {
		t.Fatalf("exit %d, want 2", r.code)
	}
	if _, err := os.Stat(summary); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a usage error wrote the report: %v", err)
	}
	if r := cli(t, env, "sync", "--base-url", url, "--duckdb", db, "--summary-json", filepath.Join(dir, "nope", "x.json")); r.code != 2 || !strings.Contains(r.stderr, "--summary-json") {
		t.Errorf("a report in a missing folder: %d %q", r.code, r.stderr)
	}
}

// TestProgress runs a sync that waits for the rate-limit reset (a fake API
// with 2 calls per 3-second hour) three ways: on a terminal (a pseudo-
// terminal), where a live line counts windows and rows and counts down the
// wait; with stderr a pipe, where no escape code appears and progress is
// logged; and with -q, where the one line is a warning that the wait starts.
func TestProgress(t *testing.T) {
	cfg := fakeapi.Config{Contacts: 3000, Seed: 2, RateLimit: 2, Hour: 3 * time.Second}
	args := func(url string) []string {
		return []string{"sync", "--base-url", url, "--duckdb", filepath.Join(t.TempDir(), "w.duckdb"), "--limit", "1000", "--refresh-calls", "0"}
	}
	t.Run("terminal", func(t *testing.T) {
		t.Parallel()
		_, url := fake(t, cfg)
		ptmx, tty, err := pty.Open()
		if err != nil {
			t.Fatal(err)
		}
		defer ptmx.Close()
		if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 30, Cols: 160}); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], args(url)...)
		cmd.Env = cliEnv(t, "LEADLEX_API_KEY="+cliKey, "TERM=xterm")
		var stdout bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, tty
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		tty.Close()
		// Read the terminal until the process has gone (then reading the
		// pseudo-terminal fails with EIO).
		screen := make(chan []byte)
		go func() {
			b, _ := io.ReadAll(ptmx)
			screen <- b
		}()
		err = cmd.Wait()
		out := string(<-screen)
		if err != nil {
			t.Fatalf("sync: %v\n%s", err, out)
		}
		live := regexp.MustCompile(`sync \[[=>-]*\] \d+/\d+ windows \| [\d,]+ rows \| [\d,]+ rows/s \| \d+ calls? \(hour: \d+/2 used\)`)
		countdown := regexp.MustCompile(`waiting for the reset: \ds left`)
		final := regexp.MustCompile(`sync \[=+\] (\d+)/(\d+) windows \| 3,\d{3} rows`)
		if !live.MatchString(out) || !countdown.MatchString(out) || !strings.Contains(out, "\x1b[") {
			t.Errorf("no live line with a countdown on the terminal:\n%q", out)
		}
		if m := final.FindStringSubmatch(out); m == nil || m[1] != m[2] {
			t.Errorf("the last live line does not show every window done:\n%q", out)
		}
		// The log is printed above the line, whole lines.
		if !regexp.MustCompile(`\n[^\n]*time=\S+ level=INFO msg="export budget spent, waiting for the reset"`).MatchString(out) {
			t.Errorf("the log is not on the terminal:\n%q", out)
		}
		if !strings.Contains(stdout.String(), ": complete: 3000 contacts") || strings.Contains(stdout.String(), "\x1b") {
			t.Errorf("summary %q", stdout.String())
		}
	})
	t.Run("pipe", func(t *testing.T) {
		t.Parallel()
		_, url := fake(t, cfg)
		r := cli(t, []string{"LEADLEX_API_KEY=" + cliKey, "TERM=xterm"}, append(args(url), "--progress-interval", "100ms", "--log-format", "json")...)
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if strings.ContainsAny(r.stderr+r.stdout, "\x1b\r") {
			t.Errorf("escape codes in output to a pipe:\n%q", r.stderr)
		}
		var waiting, progress bool
		for _, line := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
			var ev struct {
				Msg                string
				Windows, Planned   int
				Rows, Calls        int
				WaitingUntil       string `json:"waiting_until"`
				HourLimit          int    `json:"hour_limit"`
				Until, Wait, Level string
			}
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("not a JSON log line: %q", line)
			}
			switch ev.Msg {
			case "export budget spent, waiting for the reset":
				waiting = waiting || (ev.Until != "" && ev.Wait != "")
			case "progress":
				// Logged during the wait, which lasts seconds.
				progress = progress || (ev.WaitingUntil != "" && ev.Windows > 0 && ev.Planned >= ev.Windows && ev.Rows > 0 && ev.Calls > 0 && ev.HourLimit == 2)
			}
		}
		if !waiting || !progress {
			t.Errorf("the log says of the wait %v and of the progress during it %v:\n%s", waiting, progress, r.stderr)
		}
	})
	t.Run("quiet", func(t *testing.T) {
		t.Parallel()
		_, url := fake(t, cfg)
		r := cli(t, []string{"LEADLEX_API_KEY=" + cliKey}, append(args(url), "-q", "--progress-interval", "100ms")...)
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		for _, line := range lines {
			if !regexp.MustCompile(`^time=\S+ level=WARN msg="waiting for the rate-limit reset" until=\S+Z wait=\ds$`).MatchString(line) {
				t.Errorf("with -q, stderr has %q", line)
			}
		}
		if len(lines) == 0 || lines[0] == "" {
			t.Error("with -q, the wait was not said")
		}
	})
}

// TestSummaryOfAnInterruptedRun interrupts a sync with SIGINT once a window
// has committed: the report says interrupted and exit 130.
func TestSummaryOfAnInterruptedRun(t *testing.T) {
	_, url := fake(t, fakeapi.Config{Contacts: 10000, Seed: 1, SlowRate: 1, SlowDelay: 20 * time.Millisecond})
	dir := t.TempDir()
	db, summary := filepath.Join(dir, "w.duckdb"), filepath.Join(dir, "last.json")
	cmd := exec.Command(os.Args[0], "sync", "--base-url", url, "--duckdb", db, "--limit", "1000", "--log-format", "json", "--summary-json", summary)
	cmd.Env = cliEnv(t, "LEADLEX_API_KEY="+cliKey)
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
		stderr.WriteString(sc.Text() + "\n")
		if !signalled && strings.Contains(sc.Text(), `"msg":"window committed"`) {
			_ = cmd.Process.Signal(syscall.SIGINT)
			signalled = true
		}
	}
	_ = cmd.Wait()
	r := result{cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()}
	if r.code != 130 {
		t.Fatalf("exit %d, want 130: %s", r.code, r.stderr)
	}
	rep := checkReport(t, summary, r, db)
	if rep.State != "interrupted" || rep.Error != "interrupted by SIGINT" || !rep.Pending.Saved || rep.Windows == 0 {
		t.Errorf("interrupted run's report: %+v", rep)
	}
}
