package load_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/leadlex/leadlex-etl/internal/load"
	"github.com/leadlex/leadlex-etl/internal/transform"
)

// commitChanges commits csv (header included) as one window, a refresh's
// if refresh is set, and returns what the sink says it changed.
func commitChanges(t *testing.T, db *load.DuckDB, csv, reqID string, refresh bool) load.Changes {
	t.Helper()
	ctx := context.Background()
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	rd, err := transform.NewReader(strings.NewReader(csv), transform.Options{Alloc: alloc, RequestID: reqID})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Release()
	info := load.WindowInfo{StreamID: "s", RunID: "run1", RequestID: reqID, LoadedAt: time.Now(), Refresh: refresh}
	if err := db.Begin(ctx, info, rd.Columns()); err != nil {
		t.Fatal(err)
	}
	for rd.Next() {
		if err := db.Write(ctx, rd.RecordBatch()); err != nil {
			t.Fatal(err)
		}
	}
	if err := rd.Err(); err != nil {
		t.Fatal(err)
	}
	ch, err := db.Commit(ctx, info, nil, load.WindowStats{Rows: rd.Rows(), Calls: 1}, load.StreamState{StreamID: "s", Identity: "{}"})
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// TestDuplicatesMadeByHandAreCountedApart: rows of an id stored more than
// once (written outside the tool) are replaced by the window's one row;
// the id counts once as written again, the extra rows as duplicates
// removed, and no count goes negative.
func TestDuplicatesMadeByHandAreCountedApart(t *testing.T) {
	const idD = "423e4567-e89b-12d3-a456-426614174000"
	db := open(t, filepath.Join(t.TempDir(), "w.duckdb"))
	row := func(id, name string) string { return id + "," + name + ",,,,,,,2024-01-01T00:00:00Z\n" }
	if ch := commitChanges(t, db, header+row(idA, "A")+row(idB, "B")+row(idC, "C"), "req1", false); ch != (load.Changes{Inserted: 3}) {
		t.Fatalf("first window: %+v", ch)
	}
	// By hand: every row twice, A's three times.
	for _, q := range []string{`INSERT INTO contacts SELECT * FROM contacts`, `INSERT INTO contacts SELECT * FROM contacts WHERE id = '` + idA + `' LIMIT 1`} {
		if _, err := db.DB().Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	rowsOK := func(when string) {
		t.Helper()
		var rows, ids int64
		if err := db.DB().QueryRow(`SELECT count(*), count(DISTINCT id) FROM contacts`).Scan(&rows, &ids); err != nil || rows != ids {
			t.Errorf("%s: %d rows for %d ids (%v)", when, rows, ids, err)
		}
	}
	// A refresh of all three: nothing new, three written again (A
	// changed), four extra rows gone.
	if ch := commitChanges(t, db, header+row(idA, "A edited")+row(idB, "B")+row(idC, "C"), "req2", true); ch != (load.Changes{Replaced: 3, Changed: 1, Duplicates: 4}) {
		t.Errorf("refresh: %+v", ch)
	}
	rowsOK("after the refresh")
	// Outside a refresh, duplicates show where they outnumber the rows
	// written: B written again over its three rows.
	for range 2 {
		if _, err := db.DB().Exec(`INSERT INTO contacts SELECT * FROM contacts WHERE id = '` + idB + `' LIMIT 1`); err != nil {
			t.Fatal(err)
		}
	}
	if ch := commitChanges(t, db, header+row(idB, "B"), "req3", false); ch != (load.Changes{Replaced: 1, Duplicates: 2}) {
		t.Errorf("incremental window: %+v", ch)
	}
	// A window of new contacts only is counted as before.
	if ch := commitChanges(t, db, header+row(idD, "D"), "req4", false); ch != (load.Changes{Inserted: 1}) {
		t.Errorf("a new contact: %+v", ch)
	}
	rowsOK("after the incremental window")
}
