package load_test

import (
	"context"
	"database/sql"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/leadlex/leadlex-etl/internal/load"
)

// proxyTrap listens on loopback as an HTTP proxy that nothing should
// reach, counts the connections made to it, and makes it the proxy of
// DuckDB's downloads (HTTP_PROXY) for the test.
func proxyTrap(t *testing.T) *atomic.Int64 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	conns := new(atomic.Int64)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			c.Close()
		}
	}()
	for _, v := range []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"} {
		t.Setenv(v, "http://"+l.Addr().String())
	}
	return conns
}

// TestNoConnectionInstallsOrLoadsExtensions runs, on every kind of DuckDB
// connection the tool opens, the statements that download an extension
// (INSTALL, from the default repository or a URL; UPDATE EXTENSIONS):
// each fails without a connection to the proxy DuckDB's downloads go
// through, and without making DuckDB's extension folder in HOME. On the
// connections that run a user's SQL (query's), the settings that would
// undo this cannot be changed and no extension file can be loaded, while
// Parquet files anywhere still read and the time zone can be set.
func TestNoConnectionInstallsOrLoadsExtensions(t *testing.T) {
	conns := proxyTrap(t)
	home := t.TempDir()
	t.Setenv("HOME", home)
	path := syncedFile(t)
	dir := t.TempDir()
	ext := filepath.Join(dir, "x.duckdb_extension")
	if err := os.WriteFile(ext, []byte("not an extension"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		userSQL bool
		open    func() (*sql.DB, func() error, error)
	}{
		{"sync", false, func() (*sql.DB, func() error, error) {
			db, err := load.OpenDuckDB(ctx, path, load.DuckDBOptions{})
			if err != nil {
				return nil, nil, err
			}
			return db.DB(), db.Close, nil
		}},
		{"read-only", false, func() (*sql.DB, func() error, error) {
			db, err := load.OpenDuckDB(ctx, path, load.DuckDBOptions{ReadOnly: true})
			if err != nil {
				return nil, nil, err
			}
			return db.DB(), db.Close, nil
		}},
		{"query", true, func() (*sql.DB, func() error, error) {
			db, err := load.OpenDuckDBReadOnly(path)
			if err != nil {
				return nil, nil, err
			}
			return db, db.Close, nil
		}},
		{"query in memory", true, func() (*sql.DB, func() error, error) {
			db, err := load.OpenDuckDBReadOnly("")
			if err != nil {
				return nil, nil, err
			}
			return db, db.Close, nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, closeDB, err := tc.open()
			if err != nil {
				t.Fatal(err)
			}
			defer closeDB()
			for _, q := range []string{"INSTALL httpfs", "FORCE INSTALL httpfs FROM 'http://127.0.0.1:9/x'", "INSTALL httpfs FROM core_nightly", "UPDATE EXTENSIONS"} {
				if _, err := db.Exec(q); err == nil {
					t.Errorf("%s ran", q)
				}
			}
			if !tc.userSQL {
				return
			}
			for _, q := range []string{
				"SET extension_directory = '" + dir + "'", "SET custom_extension_repository = 'http://127.0.0.1:9/x'",
				"SET autoinstall_known_extensions = true", "PRAGMA autoload_known_extensions = true", "RESET extension_directory",
				"LOAD '" + ext + "'", "SET lock_configuration = false",
			} {
				if _, err := db.Exec(q); err == nil {
					t.Errorf("%s ran on a connection for the user's SQL", q)
				}
			}
			if _, err := db.Exec(`SET TimeZone = 'UTC'`); err != nil {
				t.Error(err)
			}
			pq := filepath.Join(dir, "one.parquet")
			if _, err := db.Exec(`COPY (SELECT 1 AS a) TO '` + pq + `' (FORMAT parquet)`); err != nil {
				t.Fatal(err)
			}
			var n int
			if err := db.QueryRow(`SELECT count(*) FROM read_parquet('` + pq + `')`).Scan(&n); err != nil || n != 1 {
				t.Errorf("reading a Parquet file: %d rows, %v", n, err)
			}
		})
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("%d connection(s) reached the proxy: a connection tried to download an extension", n)
	}
	if _, err := os.Stat(filepath.Join(home, ".duckdb")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("DuckDB's extension folder was made in HOME (%v)", err)
	}
}
