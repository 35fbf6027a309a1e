package main

import (
	"database/sql"
	"encoding/json"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/leadlex/leadlex-etl/internal/fakeapi"
)

// devices returns a null and a full character device for the test to
// write to: nodes of its own in a temporary folder when it runs as root
// (so that a regression replaces those, never the system's), else /dev's,
// which a user other than root cannot replace.
func devices(t *testing.T) (null, full string) {
	t.Helper()
	if os.Getuid() != 0 {
		return "/dev/null", "/dev/full"
	}
	dir := t.TempDir()
	null, full = filepath.Join(dir, "null"), filepath.Join(dir, "full")
	for _, d := range []struct {
		path  string
		minor uint32
	}{{null, 3}, {full, 7}} {
		if err := syscall.Mknod(d.path, syscall.S_IFCHR|0o666, int(1<<8|d.minor)); err != nil {
			t.Skipf("cannot make a device node as root here: %v", err)
		}
	}
	return null, full
}

// TestSummaryJSONIntoAFIFOOrADevice writes --summary-json into what is at
// the path when it is not a regular file: a FIFO (read here) gets the JSON,
// /dev/null swallows it, /dev/full fails the run with a clear error; none is
// replaced. A socket or a block device is refused before any call.
func TestSummaryJSONIntoAFIFOOrADevice(t *testing.T) {
	srv, url := fake(t, fakeapi.Config{Contacts: 300, Seed: 3})
	dir := t.TempDir()
	env := []string{"LEADLEX_API_KEY=" + cliKey}
	sync := func(summary string) result {
		return cli(t, env, "sync", "--base-url", url, "--duckdb", filepath.Join(dir, "w.duckdb"), "-q", "--summary-json", summary)
	}
	stillA := func(path string, mode fs.FileMode) {
		t.Helper()
		fi, err := os.Lstat(path)
		if err != nil || fi.Mode().Type() != mode {
			t.Errorf("%s was replaced: %v %v", path, fi.Mode(), err)
		}
	}

	// A FIFO: the test holds a read end (and a write end, so that the
	// sync's open does not wait, and reading ends when it is closed).
	fifo := filepath.Join(dir, "summary.fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	rd, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	wr, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	r := sync(fifo)
	wr.Close()
	got, err := io.ReadAll(rd)
	if err != nil {
		t.Fatal(err)
	}
	var rep syncReport
	if r.code != 0 || json.Unmarshal(got, &rep) != nil || rep.State != "complete" || rep.ExitCode != 0 {
		t.Errorf("into a FIFO: exit %d, stderr %q; the FIFO got %q", r.code, r.stderr, got)
	}
	stillA(fifo, fs.ModeNamedPipe)

	null, full := devices(t)
	if r := sync(null); r.code != 0 || r.stderr != "" {
		t.Errorf("into %s: exit %d, stderr %q", null, r.code, r.stderr)
	}
	stillA(null, fs.ModeDevice|fs.ModeCharDevice)
	// A summary that cannot be written fails a run that went well (exit 1),
	// saying where and why; the prose summary is printed.
	r = sync(full)
	if r.code != 1 || !strings.Contains(r.stderr, "--summary-json") || !strings.Contains(r.stderr, full) ||
		!strings.Contains(r.stderr, "no space left on device") || !strings.Contains(r.stdout, "complete") {
		t.Errorf("into %s: exit %d, stdout %q, stderr %q; want 1 and the write error", full, r.code, r.stdout, r.stderr)
	}
	stillA(full, fs.ModeDevice|fs.ModeCharDevice)

	// A socket is refused as bad usage, before any call.
	sock := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	before := srv.Requests()
	if r := sync(sock); r.code != 2 || !strings.Contains(r.stderr, "--summary-json "+sock+" is a socket") {
		t.Errorf("into a socket: exit %d, stderr %q; want 2 naming it", r.code, r.stderr)
	}
	if n := srv.Requests() - before; n != 0 {
		t.Errorf("%d calls before the socket was refused", n)
	}
	stillA(sock, fs.ModeSocket)
}

// TestDuplicatesRemovedAreCountedApart adds copies of 5 contacts to a
// synced DuckDB file by hand; the refresh that removes them says so, and
// counts nothing new and nothing negative.
func TestDuplicatesRemovedAreCountedApart(t *testing.T) {
	_, url := fake(t, fakeapi.Config{Contacts: 2000, Seed: 6})
	dir := t.TempDir()
	db, summary := filepath.Join(dir, "w.duckdb"), filepath.Join(dir, "last.json")
	env := []string{"LEADLEX_API_KEY=" + cliKey}
	if r := cli(t, env, "sync", "--base-url", url, "--duckdb", db, "--refresh-calls", "0", "-q"); r.code != 0 {
		t.Fatalf("first sync: %d %s", r.code, r.stderr)
	}
	conn, err := sql.Open("duckdb", db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(`INSERT INTO contacts SELECT * FROM contacts ORDER BY id LIMIT 5`); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	r := cli(t, env, "sync", "--base-url", url, "--duckdb", db, "--refresh-calls", "1", "--refresh-min-age", "0s", "--summary-json", summary)
	if r.code != 0 {
		t.Fatalf("refresh: %d %s", r.code, r.stderr)
	}
	raw, err := os.ReadFile(summary)
	if err != nil {
		t.Fatal(err)
	}
	var rep syncReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	for _, c := range []reportChanges{rep.Changes, rep.Refresh.Changes} {
		if c.Inserted != 0 || c.Replaced != 2000 || c.DuplicatesRemoved != 5 {
			t.Errorf("changes %+v, want 0 new, 2000 written again, 5 duplicates removed", c)
		}
	}
	if !strings.Contains(r.stdout, "0 new, 2000 written again") || !strings.Contains(r.stdout, "5 duplicate rows removed") || strings.Contains(r.stdout, "-5") {
		t.Errorf("summary:\n%s", r.stdout)
	}
	if n := count(t, db, "SELECT count(*) FROM contacts"); n != 2000 {
		t.Errorf("%d rows after the refresh, want 2000", n)
	}
}
