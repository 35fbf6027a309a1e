package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leadlex/leadlex-etl/internal/fakeapi"
)

// TestTheDeletionGuardHoldsBackAMassDeletion deletes half of the
// workspace at the fake API and lets the refresh find it: the sync applies
// none of it in either destination, keeps what was committed, exits 1 and
// names --max-delete-ratio; the next run with --max-delete-ratio 1 applies
// it.
func TestTheDeletionGuardHoldsBackAMassDeletion(t *testing.T) {
	srv, url := fake(t, fakeapi.Config{Contacts: 2000, Seed: 12})
	dir := t.TempDir()
	db, lake := filepath.Join(dir, "w.duckdb"), filepath.Join(dir, "lake")
	env := []string{"LEADLEX_API_KEY=" + cliKey}
	args := []string{"sync", "-q", "--base-url", url, "--duckdb", db, "--parquet", lake, "--refresh-calls", "5", "--refresh-min-age", "0s"}
	if r := cli(t, env, args...); r.code != 0 {
		t.Fatalf("first sync: %d %s", r.code, r.stderr)
	}
	live := func() (int64, int64) {
		t.Helper()
		return count(t, db, `SELECT count(*) FROM contacts WHERE _deleted_at IS NULL`),
			count(t, db, fmt.Sprintf(`SELECT count(*) FROM read_parquet('%s/contacts/**/*.parquet') WHERE _deleted_at IS NULL`, lake))
	}
	half := make([]int, 1000)
	for i := range half {
		half[i] = 2 * i
	}
	srv.Delete(half...)
	r := cli(t, env, args...)
	if r.code != 1 || !strings.Contains(r.stderr, "--max-delete-ratio 1") || !strings.Contains(r.stderr, "1000 of the 2000") {
		t.Fatalf("a refresh that finds half the workspace gone: exit %d, want 1 naming --max-delete-ratio 1 and the counts:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if d, l := live(); d != 2000 || l != 2000 {
		t.Errorf("after the guard held the deletions back: %d live contacts in DuckDB, %d in the lake; want the 2000 synced", d, l)
	}
	if r := cli(t, env, append(args, "--max-delete-ratio", "1")...); r.code != 0 || !strings.Contains(r.stdout, "1000 marked deleted") {
		t.Fatalf("with --max-delete-ratio 1: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if d, l := live(); d != 1000 || l != 1000 {
		t.Errorf("after the user confirmed: %d live contacts in DuckDB, %d in the lake; want 1000", d, l)
	}
	if r := cli(t, env, append(args, "--max-delete-ratio", "0")...); r.code != 2 || !strings.Contains(r.stderr, "--max-delete-ratio") {
		t.Errorf("--max-delete-ratio 0: exit %d %s", r.code, r.stderr)
	}
}
