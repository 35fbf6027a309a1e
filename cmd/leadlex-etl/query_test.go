package main

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leadlex/leadlex-etl/internal/fakeapi"
)

var update = flag.Bool("update", false, "rewrite the golden files of the query tests")

// cliIn runs the CLI with args in folder dir.
func cliIn(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Dir = dir
	cmd.Env = cliEnv(t, "LEADLEX_API_KEY=", "LEADLEX_BASE_URL=")
	cmd.Env = append(cmd.Env, env...)
	var out, errb strings.Builder
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

// shellWords splits a command line of plain words and "double-quoted"
// strings, as the examples are written.
func shellWords(t *testing.T, line string) []string {
	t.Helper()
	var out []string
	var cur strings.Builder
	inQuote, have := false, false
	for _, r := range line {
		switch {
		case r == '"':
			inQuote, have = !inQuote, true
		case r == ' ' && !inQuote:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if inQuote {
		t.Fatalf("unbalanced quotes in %q", line)
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

// syncedFolder syncs a small fake workspace into warehouse.duckdb and lake/
// in a new folder and returns it.
func syncedFolder(t *testing.T) string {
	t.Helper()
	_, url := fake(t, fakeapi.Config{Contacts: 300, Seed: 7})
	dir := t.TempDir()
	if r := cliIn(t, dir, []string{"LEADLEX_API_KEY=" + cliKey}, "sync", "--base-url", url, "--duckdb", "warehouse.duckdb", "--parquet", "lake", "-q"); r.code != 0 {
		t.Fatalf("sync: %d %s", r.code, r.stderr)
	}
	return dir
}

// TestQueryHelpExamplesRun runs every example of `query --help`, as
// written, in a folder a sync wrote.
func TestQueryHelpExamplesRun(t *testing.T) {
	dir := syncedFolder(t)
	help := cli(t, nil, "query", "--help")
	for _, ex := range queryExamples {
		if !strings.Contains(help.stdout, ex) {
			t.Errorf("--help lacks the example %s", ex)
		}
		words := shellWords(t, ex)
		if words[0] != "leadlex-etl" {
			t.Fatalf("example %q does not start with leadlex-etl", ex)
		}
		r := cliIn(t, dir, nil, words[1:]...)
		if r.code != 0 || strings.Count(r.stdout, "\n") < 2 {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", ex, r.code, r.stdout, r.stderr)
		}
	}
}

// TestQueryFormats compares each output format with a golden file, on
// values that trip a renderer (NULL, a comma, a quote, a newline, a list, a
// struct, a UUID, an instant) and on synced contacts.
func TestQueryFormats(t *testing.T) {
	dir := syncedFolder(t)
	tricky := `SELECT 'a,b' AS s, NULL AS n, ['x', 'y z', 'd,e', 'it''s'] AS l, TIMESTAMPTZ '2025-12-31 21:30:16.5+02' AS t,
		'123E4567-E89B-12D3-A456-426614174000'::UUID AS u, 42 AS i, 1.5 AS f, 'multi' || chr(10) || 'line "q"' AS m, {'k': 'v'} AS st`
	contacts := `SELECT id, full_name, email, tags, created_at FROM contacts ORDER BY created_at, id LIMIT 4`
	for _, tc := range []struct {
		name, query string
		args        []string
	}{
		{"tricky.txt", tricky, nil},
		{"tricky.csv", tricky, []string{"--format", "csv"}},
		{"tricky.json", tricky, []string{"--format", "json"}},
		{"contacts.txt", contacts, []string{"--duckdb", "warehouse.duckdb"}},
		{"contacts.csv", contacts, []string{"--duckdb", "warehouse.duckdb", "--format", "csv"}},
		{"contacts.json", contacts, []string{"--duckdb", "warehouse.duckdb", "--format", "json"}},
		{"empty.json", "SELECT 1 AS x WHERE false", []string{"--format", "json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cliIn(t, dir, nil, append(append([]string{"query"}, tc.args...), tc.query)...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			golden := filepath.Join("testdata", "query-"+tc.name)
			if *update {
				if err := os.WriteFile(golden, []byte(r.stdout), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestQueryFormats -update to write it)", err)
			}
			if r.stdout != string(want) {
				t.Errorf("output differs from %s:\n got:\n%s\nwant:\n%s", golden, r.stdout, want)
			}
		})
	}
	// A bad format is a usage error; a statement that cannot stand in
	// FROM ( ... ) still runs as a table.
	if r := cli(t, nil, "query", "--format", "xml", "SELECT 1"); r.code != 2 || !strings.Contains(r.stderr, "table, csv or json") {
		t.Errorf("--format xml: %d %q", r.code, r.stderr)
	}
	if r := cli(t, nil, "query", "PRAGMA version"); r.code != 0 || !strings.Contains(r.stdout, "library_version") {
		t.Errorf("PRAGMA: %d %q %q", r.code, r.stdout, r.stderr)
	}
}
