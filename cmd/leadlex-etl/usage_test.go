package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leadlex/leadlex-etl/internal/fakeapi"
)

// TestPartitionNamesInFieldsWithALake refuses, as bad usage before any
// call, --fields naming a lake's partition column (year, month, day) when
// the run writes a lake: in sync, in plan, and in a config file's stream.
// Into DuckDB alone the names are the API's business.
func TestPartitionNamesInFieldsWithALake(t *testing.T) {
	srv, url := fake(t, fakeapi.Config{Contacts: 10})
	dir := t.TempDir()
	db, lake := filepath.Join(dir, "w.duckdb"), filepath.Join(dir, "lake")
	cfg := filepath.Join(dir, "leadlex.toml")
	if err := os.WriteFile(cfg, []byte(`base-url = "`+url+`"
duckdb = "w.duckdb"

[streams.plain]
fields = ["email"]

[streams.partitioned]
parquet = "lake"
fields = ["email", "month"]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"LEADLEX_API_KEY=" + cliKey}
	for _, tc := range []struct {
		name  string
		args  []string
		field string
	}{
		{"sync year", []string{"sync", "--base-url", url, "--parquet", lake, "--fields", "email,year"}, "year"},
		{"sync day, with DuckDB too", []string{"sync", "--base-url", url, "--duckdb", db, "--parquet", lake, "--fields", " day"}, "day"},
		{"plan month", []string{"plan", "--base-url", url, "--parquet", lake, "--fields", "month"}, "month"},
		{"config stream", []string{"sync", "--config", cfg}, "month"},
		{"config stream in plan", []string{"plan", "--config", cfg, "--stream", "partitioned"}, "month"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cli(t, env, tc.args...)
			if r.code != 2 || !strings.Contains(r.stderr, "--fields") || !strings.Contains(r.stderr, tc.field) || !strings.Contains(r.stderr, "partition") {
				t.Errorf("exit %d, stderr %q; want 2 naming --fields, %s and the lake's partitions", r.code, r.stderr, tc.field)
			}
		})
	}
	if n := srv.Requests(); n != 0 {
		t.Errorf("the refused runs made %d API requests", n)
	}
	for _, p := range []string{db, lake} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("a refused run created %s", p)
		}
	}
}

// TestEmptyStreamIsBadUsage refuses an empty --stream (as "$S" gives with S
// unset), which used to run every stream of the config file, in each
// command that reads one, before any call.
func TestEmptyStreamIsBadUsage(t *testing.T) {
	srv, url := fake(t, fakeapi.Config{Contacts: 10})
	dir := t.TempDir()
	cfg := filepath.Join(dir, "leadlex.toml")
	if err := os.WriteFile(cfg, []byte(`base-url = "`+url+`"
duckdb = "w.duckdb"

[streams.a]
tag = ["a"]

[streams.b]
tag = ["b"]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"LEADLEX_API_KEY=" + cliKey}
	for _, args := range [][]string{
		{"sync", "--config", cfg, "--stream", ""},
		{"sync", "--config", cfg, "--stream="},
		{"sync", "--config", cfg, "--stream", " "},
		{"sync", "--config", cfg, "--stream", "a,"},
		{"sync", "--base-url", url, "--duckdb", filepath.Join(dir, "w.duckdb"), "--stream", ""},
		{"plan", "--config", cfg, "--stream", ""},
		{"status", "--config", cfg, "--stream", ""},
	} {
		r := cli(t, env, args...)
		if r.code != 2 || !strings.Contains(r.stderr, "--stream") || !strings.Contains(r.stderr, "empty") {
			t.Errorf("%q: exit %d, stderr %q; want 2 saying --stream is empty", args, r.code, r.stderr)
		}
	}
	if n := srv.Requests(); n != 0 {
		t.Errorf("the refused runs made %d API requests", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "w.duckdb")); err == nil {
		t.Error("a refused run created the DuckDB file")
	}
}
