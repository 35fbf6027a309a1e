package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	_ "github.com/duckdb/duckdb-go/v2" // the "duckdb" driver, as a user's own program would use it

	"github.com/leadlex/leadlex-etl/internal/fakeapi"
	"github.com/leadlex/leadlex-etl/internal/load"
)

// handEdit runs statements on the DuckDB file at path as a user would in
// the duckdb CLI, behind the tool's back.
func handEdit(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("duckdb", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// TestDroppedContactsTableIsRefusedWithItsFix drops contacts by hand after
// a sync: the next sync is refused before any API call, naming the table
// and the command that fixes it; status and plan do not say the history is
// covered; the command, run as printed, works, and the sync after it
// exports all history again.
func TestDroppedContactsTableIsRefusedWithItsFix(t *testing.T) {
	srv, url := fake(t, fakeapi.Config{Contacts: 300, Seed: 3})
	db := filepath.Join(t.TempDir(), "w.duckdb")
	env := []string{"LEADLEX_API_KEY=" + cliKey}
	if r := cli(t, env, "sync", "--base-url", url, "--duckdb", db, "-q"); r.code != 0 {
		t.Fatalf("sync: %d %s", r.code, r.stderr)
	}
	handEdit(t, db, `DROP TABLE contacts`)
	before := srv.Requests()
	r := cli(t, env, "sync", "--base-url", url, "--duckdb", db, "-q")
	if r.code != 1 || !strings.Contains(r.stderr, "table contacts is gone") || strings.Contains(r.stdout, "synced:") {
		t.Fatalf("sync after the drop: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if n := srv.Requests() - before; n != 0 {
		t.Errorf("the refused sync made %d requests", n)
	}
	for _, args := range [][]string{{"status", "--duckdb", db}, {"plan", "--base-url", url, "--duckdb", db}} {
		r := cli(t, env, args...)
		if r.code == 0 || strings.Contains(r.stdout, "covered:") || strings.Contains(r.stdout, "freshness") || !strings.Contains(r.stderr, "table contacts is gone") {
			t.Errorf("%s after the drop: exit %d\n%s%s", args[0], r.code, r.stdout, r.stderr)
		}
	}
	var fix []string
	for _, line := range strings.Split(r.stderr, "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "leadlex-etl streams reset ") {
			fix = append(fix, line)
		}
	}
	if len(fix) != 1 {
		t.Fatalf("the refusal gives %d commands, want 1:\n%s", len(fix), r.stderr)
	}
	// streams lists the stream the command names.
	if r := cli(t, env, "streams", "--duckdb", db); r.code != 0 || !strings.Contains(r.stdout, strings.Fields(fix[0])[3]) {
		t.Errorf("streams after the drop: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := cli(t, env, strings.Fields(fix[0])[1:]...); r.code != 0 {
		t.Fatalf("%s: exit %d\n%s%s", fix[0], r.code, r.stdout, r.stderr)
	}
	before = srv.Requests()
	if r := cli(t, env, "sync", "--base-url", url, "--duckdb", db, "-q"); r.code != 0 || !strings.Contains(r.stdout, "synced:") {
		t.Fatalf("sync after the reset: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if n := count(t, db, "SELECT count(*) FROM contacts WHERE _deleted_at IS NULL"); n != 300 || srv.Requests() == before {
		t.Errorf("%d contacts after the reset and a sync (%d requests), want all 300 exported again", n, srv.Requests()-before)
	}
	if r := cli(t, env, "status", "--duckdb", db); r.code != 0 || !strings.Contains(r.stdout, "covered:") {
		t.Errorf("status after the fix: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestRetypedColumnIsRefusedBeforeAnyCall retypes a column after a sync
// (tags to text; created_at to a timestamp without time zone, with the
// next sync in New York): the next sync is refused before any API call,
// naming the column, and nothing of it is recorded.
func TestRetypedColumnIsRefusedBeforeAnyCall(t *testing.T) {
	srv, url := fake(t, fakeapi.Config{Contacts: 200, Seed: 4})
	for _, tc := range []struct{ column, typ string }{{"tags", "VARCHAR"}, {"created_at", "TIMESTAMP"}} {
		t.Run(tc.column, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "w.duckdb")
			env := []string{"LEADLEX_API_KEY=" + cliKey, "TZ=America/New_York"}
			if r := cli(t, env, "sync", "--base-url", url, "--duckdb", db, "-q"); r.code != 0 {
				t.Fatalf("sync: %d %s", r.code, r.stderr)
			}
			handEdit(t, db, `ALTER TABLE contacts ALTER `+tc.column+` TYPE `+tc.typ)
			runs := count(t, db, "SELECT count(*) FROM _leadlex_runs")
			before := srv.Requests()
			r := cli(t, env, "sync", "--base-url", url, "--duckdb", db, "--refresh-min-age", "0s", "-q")
			if r.code != 1 || !strings.Contains(r.stderr, "column contacts."+tc.column+" is "+tc.typ) {
				t.Errorf("sync after retyping %s: exit %d\n%s%s", tc.column, r.code, r.stdout, r.stderr)
			}
			if n := srv.Requests() - before; n != 0 {
				t.Errorf("the refused sync made %d requests", n)
			}
			if n := count(t, db, "SELECT count(*) FROM _leadlex_runs"); n != runs {
				t.Errorf("%d runs recorded, want %d", n, runs)
			}
		})
	}
}

// TestRefusedDestinationsLeaveNoDebris points a sync, status and query at
// files and folders that are not the tool's: each is refused before any
// call with a message naming it and what to do; the user's files are
// unchanged, no lock file is left beside them, and a DuckDB file the
// refused run created is removed.
func TestRefusedDestinationsLeaveNoDebris(t *testing.T) {
	srv, url := fake(t, fakeapi.Config{Contacts: 50})
	env := []string{"LEADLEX_API_KEY=" + cliKey}
	sqlite, err := os.ReadFile(filepath.Join("..", "..", "internal", "load", "testdata", "contacts.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string) (args []string, mine []string)
		want  string
	}{
		{"a folder of the user's files as the lake", func(t *testing.T, dir string) ([]string, []string) {
			lake := filepath.Join(dir, "exports")
			mustWrite(t, filepath.Join(lake, "mine.parquet"), []byte("PAR1 not really"))
			return []string{"sync", "--duckdb", filepath.Join(dir, "new.duckdb"), "--parquet", lake}, []string{filepath.Join(lake, "mine.parquet")}
		}, "is not empty and is not a leadlex-etl lake"},
		{"a SQLite file", func(t *testing.T, dir string) ([]string, []string) {
			mustWrite(t, filepath.Join(dir, "crm.sqlite"), sqlite)
			return []string{"sync", "--duckdb", filepath.Join(dir, "crm.sqlite")}, []string{filepath.Join(dir, "crm.sqlite")}
		}, "is a SQLite database, not a DuckDB database"},
		{"a CSV file", func(t *testing.T, dir string) ([]string, []string) {
			mustWrite(t, filepath.Join(dir, "contacts.csv"), []byte("id,full_name\n1,Ada\n"))
			return []string{"sync", "--duckdb", filepath.Join(dir, "contacts.csv")}, []string{filepath.Join(dir, "contacts.csv")}
		}, "is a text file (CSV?), not a DuckDB database"},
		{"a DuckDB file of the user's own", func(t *testing.T, dir string) ([]string, []string) {
			handEdit(t, filepath.Join(dir, "mine.duckdb"), `CREATE TABLE contacts (name VARCHAR)`)
			return []string{"sync", "--duckdb", filepath.Join(dir, "mine.duckdb")}, []string{filepath.Join(dir, "mine.duckdb")}
		}, "was not made by leadlex-etl"},
		{"status of a SQLite file", func(t *testing.T, dir string) ([]string, []string) {
			mustWrite(t, filepath.Join(dir, "crm.sqlite"), sqlite)
			return []string{"status", "--duckdb", filepath.Join(dir, "crm.sqlite")}, []string{filepath.Join(dir, "crm.sqlite")}
		}, "is a SQLite database, not a DuckDB database"},
		{"query of a SQLite file", func(t *testing.T, dir string) ([]string, []string) {
			mustWrite(t, filepath.Join(dir, "crm.sqlite"), sqlite)
			return []string{"query", "--duckdb", filepath.Join(dir, "crm.sqlite"), "SELECT 1"}, []string{filepath.Join(dir, "crm.sqlite")}
		}, "is a SQLite database, not a DuckDB database"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args, mine := tc.setup(t, dir)
			kept := map[string][]byte{}
			for _, p := range mine {
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				kept[p] = b
			}
			if args[0] == "sync" {
				args = append(args, "--base-url", url, "-q")
			}
			before := srv.Requests()
			r := cli(t, env, args...)
			if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 1 saying %q", r.code, r.stderr, tc.want)
			}
			if n := srv.Requests() - before; n != 0 {
				t.Errorf("%d requests", n)
			}
			for p, b := range kept {
				if now, err := os.ReadFile(p); err != nil || !bytes.Equal(now, b) {
					t.Errorf("%s changed (%v)", p, err)
				}
			}
			var left []string
			_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() && kept[p] == nil {
					left = append(left, p)
				}
				return err
			})
			if len(left) > 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

func mustWrite(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSyncThroughASymlinkMeetsTheLock holds a DuckDB file's lock, as a
// sync writing it does, and starts a sync on a symbolic link to the file:
// it is refused as locked, before any call.
func TestSyncThroughASymlinkMeetsTheLock(t *testing.T) {
	srv, url := fake(t, fakeapi.Config{Contacts: 50})
	dir := t.TempDir()
	real, link := filepath.Join(dir, "w.duckdb"), filepath.Join(dir, "link.duckdb")
	if err := os.Symlink("w.duckdb", link); err != nil {
		t.Fatal(err)
	}
	held, err := load.OpenDuckDB(context.Background(), real, load.DuckDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	r := cli(t, []string{"LEADLEX_API_KEY=" + cliKey}, "sync", "--base-url", url, "--duckdb", link, "-q")
	if r.code != 1 || !strings.Contains(r.stderr, "locked by another process") {
		t.Errorf("sync through the link: exit %d, stderr %q; want 1 and the lock error", r.code, r.stderr)
	}
	if n := srv.Requests(); n != 0 {
		t.Errorf("%d requests", n)
	}
}

// TestUnwritableDestinationsAreExplained syncs, as a user without the
// rights, into a read-only folder and into a read-only DuckDB file: each is
// refused before any call with a message saying what could not be
// written and what to do, not a bare "permission denied". As root (which
// writes anywhere) the sync runs as nobody.
func TestUnwritableDestinationsAreExplained(t *testing.T) {
	srv, url := fake(t, fakeapi.Config{Contacts: 50})
	dir := t.TempDir()
	bin := os.Args[0]
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		cred = &syscall.Credential{Uid: 65534, Gid: 65534}
		for _, d := range []string{filepath.Dir(dir), dir} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		bin = filepath.Join(dir, "leadlex-etl")
		if err := os.Link(os.Args[0], bin); err != nil {
			copyFile(t, os.Args[0], bin)
		}
	}
	readOnly := filepath.Join(dir, "ro")
	if err := os.Mkdir(readOnly, 0o555); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(readOnly, 0o555); err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(dir, "shared")
	if err := os.Mkdir(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	theirs := filepath.Join(shared, "theirs.duckdb")
	db, err := load.OpenDuckDB(context.Background(), theirs, load.DuckDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := os.Chmod(theirs, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(theirs+load.LockSuffix, 0o666); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want []string
	}{
		{filepath.Join(readOnly, "new.duckdb"), []string{"cannot write in the folder of DuckDB file", "permission denied", "give a path in a folder"}},
		{filepath.Join(readOnly, "sub", "new.duckdb"), []string{"cannot write in the folder of DuckDB file", "permission denied", "give a path in a folder"}},
		{theirs, []string{"permission denied", "for a sync writable", "change their permissions"}},
	} {
		cmd := exec.Command(bin, "sync", "--base-url", url, "--duckdb", tc.path, "-q")
		cmd.Env = append(cliEnv(t, "LEADLEX_BASE_URL="), "LEADLEX_API_KEY="+cliKey, "XDG_STATE_HOME="+state)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("%s: %v, want exit 1", tc.path, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("%s: stderr %q does not say %q", tc.path, stderr.String(), w)
			}
		}
	}
	if n := srv.Requests(); n != 0 {
		t.Errorf("%d requests", n)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
