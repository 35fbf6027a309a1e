package load_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/duckdb/duckdb-go/v2" // the "duckdb" driver, as a user's own program would use it

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

// columnType reads a column's type from the file at path, read-only.
func columnType(t *testing.T, path, table, column string) string {
	t.Helper()
	db, err := load.OpenDuckDBReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var typ string
	if err := db.QueryRow(`SELECT data_type FROM duckdb_columns() WHERE table_name = ? AND column_name = ?`, table, column).Scan(&typ); err != nil {
		t.Fatalf("%s.%s: %v", table, column, err)
	}
	return typ
}

// syncedFile returns a DuckDB file a sync wrote: one stream s1 whose
// coverage says contacts created before 2025 are synced, two contacts,
// one with the extra field city, which the stream asks for, and a column
// of the user's own.
func syncedFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "w.duckdb")
	db := open(t, path)
	st := load.StreamState{StreamID: "s1", Identity: `{"base_url":"http://x","fields":["city","created_at","full_name","id","tags"]}`,
		Coverage: load.Coverage{{To: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), VerifiedAt: time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC), Rows: 2}}}
	window(t, db, header+idA+",A,,,,,,\"a,b\",2024-01-01T00:00:00Z\n", "req1", st, false)
	window(t, db, "id,created_at,city\n"+idB+",2024-02-01T00:00:00Z,Oslo\n", "req2", st, false)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	handEdit(t, path, `ALTER TABLE contacts ADD COLUMN score INTEGER`)
	return path
}

// TestLocksHoldThroughSymlinks opens one DuckDB file and one lake twice
// for writing, once by their own path and once through a symbolic link
// (to the file, to its folder, relative and absolute): the second open
// is refused as locked, so two syncs never write one destination at once.
// Through a link, the file behind it is written, with its lock file and
// WAL beside it, not beside the link.
func TestLocksHoldThroughSymlinks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	real := filepath.Join(dir, "w.duckdb")
	links := map[string]string{
		filepath.Join(dir, "rel.duckdb"):    "w.duckdb",
		filepath.Join(dir, "abs.duckdb"):    real,
		filepath.Join(dir, "chain.duckdb"):  "rel.duckdb",
		filepath.Join(dir, "folder"):        ".",
		filepath.Join(dir, "lakelink"):      "lake",
		filepath.Join(dir, "folder2"):       dir,
		filepath.Join(dir, "notyet.duckdb"): "later.duckdb", // to a file a sync creates
	}
	for link, target := range links {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	held := open(t, real)
	for _, p := range []string{filepath.Join(dir, "rel.duckdb"), filepath.Join(dir, "abs.duckdb"), filepath.Join(dir, "chain.duckdb"),
		filepath.Join(dir, "folder", "w.duckdb"), filepath.Join(dir, "folder2", "folder", "w.duckdb")} {
		db, err := load.OpenDuckDB(ctx, p, load.DuckDBOptions{})
		if !errors.As(err, new(*load.LockedError)) {
			t.Errorf("second writer through %s: %v, want a *LockedError", p, err)
		}
		if err == nil {
			db.Close()
		}
	}
	held.Close()
	// The other way round: the link first.
	viaLink := open(t, filepath.Join(dir, "rel.duckdb"))
	if db, err := load.OpenDuckDB(ctx, real, load.DuckDBOptions{}); !errors.As(err, new(*load.LockedError)) {
		t.Errorf("second writer by the file's own path while a link holds it: %v, want a *LockedError", err)
		if err == nil {
			db.Close()
		}
	}
	window(t, viaLink, header+idA+",A,,,,,,,2024-01-01T00:00:00Z\n", "req1", load.StreamState{StreamID: "s", Identity: "{}"}, false)
	viaLink.Close()
	if n := len(names(t, open(t, real))); n != 1 {
		t.Errorf("the file behind the link holds %d contacts, want 1", n)
	}
	for _, p := range []string{"rel.duckdb.leadlex-lock", "rel.duckdb.wal", "abs.duckdb.leadlex-lock", "chain.duckdb.leadlex-lock"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); err == nil {
			t.Errorf("%s was made beside a link", p)
		}
	}
	// A link to a file that does not exist yet: the file is created behind it.
	db := open(t, filepath.Join(dir, "notyet.duckdb"))
	if db, err := load.OpenDuckDB(ctx, filepath.Join(dir, "later.duckdb"), load.DuckDBOptions{}); !errors.As(err, new(*load.LockedError)) {
		t.Errorf("second writer of a file created through a link: %v, want a *LockedError", err)
		if err == nil {
			db.Close()
		}
	}
	db.Close()
	if fi, err := os.Lstat(filepath.Join(dir, "later.duckdb")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("the file behind a link to a missing file: %v %v", fi, err)
	}
	// A lake and a link to it.
	lake, err := load.OpenLake(ctx, filepath.Join(dir, "lake"), load.LakeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer lake.Close()
	for _, p := range []string{filepath.Join(dir, "lakelink"), filepath.Join(dir, "folder", "lake")} {
		if l, err := load.OpenLake(ctx, p, load.LakeOptions{}); !errors.As(err, new(*load.LockedError)) {
			t.Errorf("second lake writer through %s: %v, want a *LockedError", p, err)
			if err == nil {
				l.Close()
			}
		}
	}
}

// TestRefusesFilesThatAreNotDuckDB gives a SQLite database, a CSV file,
// text, an empty file and a folder where a DuckDB file is expected: every
// open (a sync's, status's, query's) refuses it with a *NotDuckDBError
// naming it and what to do, before DuckDB reads it (DuckDB would download
// an extension for SQLite, and take a small file for a new database), and
// nothing is written: the file is unchanged and no lock file or WAL
// appears beside it.
func TestRefusesFilesThatAreNotDuckDB(t *testing.T) {
	sqlite, err := os.ReadFile(filepath.Join("testdata", "contacts.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, file string
		body       []byte
		says       string
	}{
		{"SQLite", "contacts.sqlite", sqlite, "SQLite"},
		{"CSV", "contacts.csv", []byte(header + idA + ",A,,,,,,,2024-01-01T00:00:00Z\n"), "text"},
		{"CSV named like a DuckDB file", "w.duckdb", []byte("id,full_name\n1,a\n"), "text"},
		{"empty", "empty.duckdb", nil, "empty"},
		{"binary", "blob.duckdb", bytes.Repeat([]byte{0, 1, 2, 3, 0xff}, 2000), "not a DuckDB database"},
		{"folder", "dir.duckdb", nil, "folder"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, tc.file)
			if tc.name == "folder" {
				if err := os.Mkdir(path, 0o755); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(path, tc.body, 0o644); err != nil {
				t.Fatal(err)
			}
			opens := map[string]func() error{
				"sync": func() error {
					db, err := load.OpenDuckDB(context.Background(), path, load.DuckDBOptions{})
					if err == nil {
						db.Close()
					}
					return err
				},
				"read-only": func() error {
					db, err := load.OpenDuckDB(context.Background(), path, load.DuckDBOptions{ReadOnly: true})
					if err == nil {
						db.Close()
					}
					return err
				},
				"query": func() error {
					db, err := load.OpenDuckDBReadOnly(path)
					if err == nil {
						db.Close()
					}
					return err
				},
			}
			for name, f := range opens {
				err := f()
				var nd *load.NotDuckDBError
				if !errors.As(err, &nd) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.says) ||
					!strings.Contains(err.Error(), "not a DuckDB database") || !strings.Contains(err.Error(), "give") {
					t.Errorf("%s: %v, want a *NotDuckDBError naming %s, saying %q and what to do", name, err, path, tc.says)
				}
			}
			if tc.name != "folder" {
				if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, tc.body) {
					t.Errorf("the file changed: %d bytes, %v", len(got), err)
				}
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Errorf("files beside it after the refusals: %v", names)
			}
		})
	}
}

// TestNoConnectionFetchesCode checks every kind of DuckDB connection the
// tool opens (a sync's, a read-only one for status and plan, query's on a
// file and in memory): automatic extension install and load are off, so
// no file, SQL or query makes DuckDB download or load code at run time.
func TestNoConnectionFetchesCode(t *testing.T) {
	path := syncedFile(t)
	sqlite, err := filepath.Abs(filepath.Join("testdata", "contacts.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	// One at a time: DuckDB refuses a second configuration of a file
	// that one process has open.
	for _, tc := range []struct {
		name string
		open func() (*sql.DB, func() error, error)
	}{
		{"sync", func() (*sql.DB, func() error, error) {
			db, err := load.OpenDuckDB(context.Background(), path, load.DuckDBOptions{})
			if err != nil {
				return nil, nil, err
			}
			return db.DB(), db.Close, nil
		}},
		{"read-only", func() (*sql.DB, func() error, error) {
			db, err := load.OpenDuckDB(context.Background(), path, load.DuckDBOptions{ReadOnly: true})
			if err != nil {
				return nil, nil, err
			}
			return db.DB(), db.Close, nil
		}},
		{"query", func() (*sql.DB, func() error, error) {
			db, err := load.OpenDuckDBReadOnly(path)
			if err != nil {
				return nil, nil, err
			}
			return db, db.Close, nil
		}},
		{"query in memory", func() (*sql.DB, func() error, error) {
			db, err := load.OpenDuckDBReadOnly("")
			if err != nil {
				return nil, nil, err
			}
			return db, db.Close, nil
		}},
	} {
		db, closeDB, err := tc.open()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var install, autoload, community string
		if err := db.QueryRow(`SELECT current_setting('autoinstall_known_extensions')::VARCHAR, current_setting('autoload_known_extensions')::VARCHAR,
			current_setting('allow_community_extensions')::VARCHAR`).Scan(&install, &autoload, &community); err != nil {
			t.Fatal(err)
		}
		if install != "false" || autoload != "false" || community != "false" {
			t.Errorf("%s: autoinstall %s, autoload %s, community extensions %s; want all false", tc.name, install, autoload, community)
		}
		// What would need the sqlite extension fails without fetching it.
		_, err = db.Exec(`SELECT * FROM sqlite_scan('` + sqlite + `', 'contacts')`)
		if err == nil || strings.Contains(strings.ToLower(err.Error()), "download") {
			t.Errorf("%s: reading SQLite: %v, want an error without a download", tc.name, err)
		}
		if err := closeDB(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRefusesADroppedContactsTable drops contacts by hand from a file
// whose stream says contacts are synced: a sync, status and plan refuse
// it, naming the table and the exact command that fixes it; that command's
// open (streams reset) works and does not create the table again, so a
// file with two streams stays refused until both are reset.
func TestRefusesADroppedContactsTable(t *testing.T) {
	ctx := context.Background()
	path := syncedFile(t)
	db := open(t, path)
	window(t, db, header+idC+",C,,,,,,,2024-03-01T00:00:00Z\n", "req3", load.StreamState{StreamID: "s2", Identity: `{"base_url":"http://y"}`,
		Coverage: load.Coverage{{To: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), VerifiedAt: time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC), Rows: 1}}}, false)
	db.Close()
	handEdit(t, path, `DROP TABLE contacts`)
	refused := func(want ...string) {
		t.Helper()
		for _, ro := range []bool{false, true} {
			db, err := load.OpenDuckDB(ctx, path, load.DuckDBOptions{ReadOnly: ro})
			var se *load.ShapeError
			if !errors.As(err, &se) {
				t.Errorf("read-only %v: %v, want a *load.ShapeError", ro, err)
				if err == nil {
					db.Close()
				}
				continue
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("read-only %v: %q does not say %q", ro, err, w)
				}
			}
		}
	}
	refused("contacts", "streams reset s1 --duckdb "+path+" --yes", "streams reset s2 --duckdb "+path+" --yes")
	reset := func(id string) {
		t.Helper()
		db, err := load.OpenDuckDB(ctx, path, load.DuckDBOptions{ContactsMayBeMissing: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.ForgetStream(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	reset("s1")
	refused("streams reset s2")
	reset("s2")
	db = open(t, path)
	if n := len(names(t, db)); n != 0 {
		t.Errorf("%d contacts in the table made again", n)
	}
}

// TestRefusesRetypedColumns changes the type of a column the tool made
// (in contacts, an extra field, the tool's own tables), or replaces a
// table by a view: every open refuses it before writing anything, naming
// the column, its type and the type the tool made.
func TestRefusesRetypedColumns(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  []string
		table string
		col   string
		want  []string
	}{
		{"tags as text", []string{`ALTER TABLE contacts ALTER tags TYPE VARCHAR`}, "contacts", "tags", []string{"contacts.tags", "VARCHAR[]"}},
		{"created_at without time zone", []string{`ALTER TABLE contacts ALTER created_at TYPE TIMESTAMP`}, "contacts", "created_at",
			[]string{"contacts.created_at", "TIMESTAMP WITH TIME ZONE"}},
		{"id as text", []string{`ALTER TABLE contacts ALTER id TYPE VARCHAR`}, "contacts", "id", []string{"contacts.id", "UUID"}},
		{"lineage", []string{`ALTER TABLE contacts ALTER _loaded_at TYPE TIMESTAMP`}, "contacts", "_loaded_at", []string{"contacts._loaded_at"}},
		{"an extra field", []string{`ALTER TABLE contacts ALTER city TYPE INTEGER USING length(city)`}, "contacts", "city", []string{"contacts.city", "INTEGER", "VARCHAR"}},
		{"stream state", []string{`ALTER TABLE _leadlex_streams ALTER coverage TYPE JSON`}, "_leadlex_streams", "coverage", []string{"_leadlex_streams.coverage"}},
		{"runs", []string{`ALTER TABLE _leadlex_runs ALTER calls TYPE BIGINT`}, "_leadlex_runs", "calls", []string{"_leadlex_runs.calls", "INTEGER"}},
		{"windows", []string{`ALTER TABLE _leadlex_windows ALTER window_from TYPE TIMESTAMP`}, "_leadlex_windows", "window_from", []string{"_leadlex_windows.window_from"}},
		{"runs, in a file without contacts or streams", []string{`DROP TABLE contacts`, `DELETE FROM _leadlex_streams`, `ALTER TABLE _leadlex_runs ALTER calls TYPE BIGINT`},
			"_leadlex_runs", "calls", []string{"_leadlex_runs.calls", "INTEGER"}},
		{"contacts a view", []string{`CREATE TABLE kept AS SELECT * FROM contacts`, `DROP TABLE contacts`, `CREATE VIEW contacts AS SELECT * FROM kept`},
			"kept", "tags", []string{"contacts", "view"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := syncedFile(t)
			handEdit(t, path, tc.edit...)
			before := columnType(t, path, tc.table, tc.col)
			for _, ro := range []bool{false, true} {
				db, err := load.OpenDuckDB(context.Background(), path, load.DuckDBOptions{ReadOnly: ro})
				var se *load.ShapeError
				if !errors.As(err, &se) {
					t.Errorf("read-only %v: %v, want a *load.ShapeError", ro, err)
					if err == nil {
						db.Close()
					}
					continue
				}
				for _, w := range append(tc.want, path) {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("read-only %v: %q does not say %q", ro, err, w)
					}
				}
			}
			if after := columnType(t, path, tc.table, tc.col); after != before {
				t.Errorf("%s.%s changed from %s to %s", tc.table, tc.col, before, after)
			}
			if _, err := os.Stat(path + ".leadlex-lock"); err != nil {
				t.Errorf("the lock file of the tool's own file: %v", err)
			}
		})
	}
}

// TestAFailedOpenLeavesNoLockFile opens a DuckDB file of the user's own
// (its contacts table not the tool's): the refusal removes the lock file
// the open made, and creates none of the tool's tables in the file.
func TestAFailedOpenLeavesNoLockFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "user.duckdb")
	handEdit(t, path, `CREATE TABLE contacts (name VARCHAR)`, `INSERT INTO contacts VALUES ('mine')`)
	if _, err := load.OpenDuckDB(context.Background(), path, load.DuckDBOptions{}); err == nil || !strings.Contains(err.Error(), "not made by leadlex-etl") {
		t.Fatalf("got %v, want a refusal", err)
	}
	if _, err := os.Stat(path + ".leadlex-lock"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock file beside the user's file: %v", err)
	}
	db, err := load.OpenDuckDBReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM duckdb_tables() WHERE starts_with(table_name, '_leadlex_')`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d tables of the tool made in the user's file (%v)", n, err)
	}
}
