package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leadlex/leadlex-etl/internal/fakeapi"
)

// lineOf returns the first line of text that starts with prefix.
func lineOf(text, prefix string) string {
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), prefix) {
			return line
		}
	}
	return ""
}

// TestChangedIsCountedByTheRefreshOnly edits contacts at the fake API and
// picks the edits up twice: by a backfill (the stream reset), which does
// not compare rows, and by a refresh, which does. The summary and status
// print a count of changed contacts for the refresh's part only, saying
// so; before, the backfill's summary said "0 changed" of 1000 contacts
// written again, 10 of them edited.
func TestChangedIsCountedByTheRefreshOnly(t *testing.T) {
	srv, url := fake(t, fakeapi.Config{Contacts: 1000, Seed: 9})
	dir := t.TempDir()
	db, summary := filepath.Join(dir, "w.duckdb"), filepath.Join(dir, "last.json")
	env := []string{"LEADLEX_API_KEY=" + cliKey}
	if r := cli(t, env, "sync", "--base-url", url, "--duckdb", db, "--refresh-calls", "0", "-q"); r.code != 0 {
		t.Fatalf("first sync: %d %s", r.code, r.stderr)
	}
	id := strings.Fields(cli(t, nil, "streams", "--duckdb", db).stdout)[0]
	if r := cli(t, nil, "streams", "reset", id, "--duckdb", db, "--yes"); r.code != 0 {
		t.Fatalf("reset: %d %s", r.code, r.stderr)
	}
	srv.Edit(0, 1, 2, 3, 4, 5, 6, 7, 8, 9)
	r := cli(t, env, "sync", "--base-url", url, "--duckdb", db, "--refresh-calls", "0")
	if r.code != 0 {
		t.Fatalf("backfill: %d %s", r.code, r.stderr)
	}
	if line := lineOf(r.stdout, "contacts:"); !strings.Contains(line, "0 new, 1000 written again") || strings.Contains(line, "changed") {
		t.Errorf("backfill summary %q: want 1000 written again and no count of changed contacts (a backfill does not compare rows)", line)
	}
	if line := lineOf(cli(t, env, "status", "--duckdb", db).stdout, "20"); strings.Contains(line, "changed") {
		t.Errorf("status of the backfill run %q: want no count of changed contacts", line)
	}

	srv.Edit(10, 11, 12)
	r = cli(t, env, "sync", "--base-url", url, "--duckdb", db, "--refresh-calls", "1", "--refresh-min-age", "0s", "--summary-json", summary)
	if r.code != 0 {
		t.Fatalf("refresh: %d %s", r.code, r.stderr)
	}
	if line := lineOf(r.stdout, "contacts:"); !strings.Contains(line, "(1000 of them by the refresh, 3 of those changed)") {
		t.Errorf("refresh summary %q: want 3 changed, counted by the refresh", line)
	}
	if line := lineOf(cli(t, env, "status", "--duckdb", db).stdout, "20"); !strings.Contains(line, "3 changed by the refresh") {
		t.Errorf("status of the refresh run %q: want 3 changed by the refresh", line)
	}
	raw, err := os.ReadFile(summary)
	if err != nil {
		t.Fatal(err)
	}
	var rep syncReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Changes.Changed != 3 || rep.Refresh.Changes.Changed != 3 {
		t.Errorf("changes.changed %d, refresh.changes.changed %d; want 3 and 3", rep.Changes.Changed, rep.Refresh.Changes.Changed)
	}
}
