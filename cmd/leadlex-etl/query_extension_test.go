package main

import (
	"net"
	"strings"
	"sync/atomic"
	"testing"
)

// proxyTrap listens on loopback as an HTTP proxy that nothing should
// reach, and counts the connections made to it; the returned URL goes into
// HTTP_PROXY and HTTPS_PROXY, which DuckDB's downloads honour.
func proxyTrap(t *testing.T) (url string, conns *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	conns = new(atomic.Int64)
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
	return "http://" + l.Addr().String(), conns
}

// TestQueryRefusesExtensionStatements runs query with statements that
// install or load DuckDB extensions, alone, lowercase, after a comment or
// another statement, and from a URL: each is refused before DuckDB sees
// it, with a plain message and exit 2, and no connection reaches the proxy
// that DuckDB's downloads go through. Before, INSTALL httpfs downloaded
// the extension (README: the tool never downloads one). SQL that only
// mentions the words runs.
func TestQueryRefusesExtensionStatements(t *testing.T) {
	proxy, conns := proxyTrap(t)
	env := []string{"HTTP_PROXY=" + proxy, "HTTPS_PROXY=" + proxy, "http_proxy=" + proxy, "https_proxy=" + proxy}
	for _, q := range []string{
		"INSTALL httpfs",
		"LOAD httpfs",
		"install httpfs;",
		"FORCE INSTALL httpfs FROM 'http://127.0.0.1:9/x'",
		"-- a comment\n/* another; with a semicolon */ INSTALL httpfs FROM core_nightly",
		"SELECT 1; LOAD '/tmp/any.duckdb_extension'",
		"SELECT ';' AS a; UPDATE EXTENSIONS",
	} {
		r := cli(t, env, "query", "--", q)
		if r.code != 2 || !strings.Contains(r.stderr, "never downloads or loads") || strings.Contains(r.stderr, "Error:") {
			t.Errorf("query %q: exit %d, stderr %q; want exit 2 and a plain message", q, r.code, r.stderr)
		}
	}
	for _, q := range []string{
		"SELECT 'INSTALL httpfs; LOAD httpfs' AS install",
		`SELECT 1 AS "load"; SELECT 2 AS update_extensions`,
	} {
		if r := cli(t, env, "query", "--format", "csv", q); r.code != 0 {
			t.Errorf("query %q: exit %d, stderr %q; want it to run", q, r.code, r.stderr)
		}
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("%d connection(s) reached the proxy: query tried to download", n)
	}
}

// TestExtensionStatement finds the statements that install or load
// extensions however the SQL around them is written, and nothing in
// strings, comments or identifiers.
func TestExtensionStatement(t *testing.T) {
	for _, tc := range []struct {
		sql, want string
	}{
		{"INSTALL httpfs", "INSTALL httpfs"},
		{"  load\thttpfs ;", "load\thttpfs"},
		{"force install spatial from core_nightly", "force install spatial from core_nightly"},
		{"update extensions (httpfs)", "update extensions (httpfs)"},
		{"EXPLAIN ANALYZE INSTALL httpfs", "EXPLAIN ANALYZE INSTALL httpfs"},
		{"/* a /* nested */ comment; */ LOAD x", "/* a /* nested */ comment; */ LOAD x"},
		{"SELECT 1 -- ; LOAD x\n; LOAD y", "LOAD y"},
		{"SELECT 'a;'';LOAD x'; SELECT E'\\';LOAD y'; SELECT $t$;LOAD z$t$; SELECT $$;$$; LOAD w", "LOAD w"},
		{`SELECT 1 AS "x;LOAD y"; INSTALL z`, "INSTALL z"},
		{"SELECT 'INSTALL httpfs'", ""},
		{"SELECT load, install FROM t", ""},
		{"UPDATE t SET a = 1", ""},
		{"SELECT $1::INT; SELECT 2", ""},
		{"/* LOAD x */ SELECT 1", ""},
		{"(INSTALL httpfs)", ""},
		{"", ""},
	} {
		if got := extensionStatement(tc.sql); got != tc.want {
			t.Errorf("extensionStatement(%q) = %q, want %q", tc.sql, got, tc.want)
		}
	}
}
