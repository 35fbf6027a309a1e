package load_test

import (
	"context"
	"fmt"
	"math/rand"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/load"
	"github.com/leadlex/leadlex-etl/internal/transform"
	"github.com/leadlex/leadlex-etl/schemas"
)

// The tests of this file came from an adversarial review of grouped
// commits and of the sink's known ids: each failed before its fix.

// gwindow is window with batches from an allocator that is not checked
// per window (a group keeps them until it flushes).
func gwindow(t *testing.T, db *load.DuckDB, csv, reqID string, st load.StreamState) {
	t.Helper()
	windowAlloc(t, db, csv, reqID, st, false, memory.NewGoAllocator())
}

func countIDs(t *testing.T, db *load.DuckDB) (rows, distinct int) {
	t.Helper()
	if err := db.DB().QueryRow(`SELECT count(*), count(DISTINCT id) FROM contacts`).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	return rows, distinct
}

// Bug 1: GroupCommits(0) (as Replay calls after its loop) while a group is
// open: the next Commit runs the one-by-one path, whose BEGIN fails inside
// the group's open transaction.
func TestGroupingTurnedOffWithAGroupOpen(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "w.duckdb"))
	st := load.StreamState{StreamID: "s", Identity: "{}"}
	db.GroupCommits(1 << 20)
	gwindow(t, db, header+idA+",A,,,,,,,2024-01-01T00:00:00Z\n", "req1", st) // deferred in an open group
	db.GroupCommits(0)
	gwindow(t, db, header+idB+",B,,,,,,,2024-01-01T00:00:00Z\n", "req2", st) // t.Fatal: BEGIN inside a transaction
	if err := db.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := names(t, db); len(got) != 2 {
		t.Fatalf("got %v", got)
	}
}

// Bug 2 (b8b31d8): the known set is checked by row count only. A write
// behind the sink's back that keeps the count (one delete, one insert)
// goes unnoticed, and the next window's id the outside write inserted is
// not deleted before the INSERT: a duplicate. (Before b8b31d8 the
// delete-by-join caught it.)
func TestAnOutsideWriteKeepingTheCountIsNoticed(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "w.duckdb"))
	db.GroupCommits(1)
	st := load.StreamState{StreamID: "s", Identity: "{}"}
	gwindow(t, db, header+idA+",A,,,,,,,2024-01-01T00:00:00Z\n"+idB+",B,,,,,,,2024-01-01T00:00:00Z\n", "req1", st)
	// An analyst (the file is closed between commits) deletes A and adds C.
	if _, err := db.DB().Exec(`DELETE FROM contacts WHERE id = '` + idA + `'`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.DB().Exec(`INSERT INTO contacts (id, full_name, created_at, _request_id) VALUES ('` + idC + `', 'C', TIMESTAMPTZ '2024-01-01 00:00:00Z', 'outside')`); err != nil {
		t.Fatal(err)
	}
	gwindow(t, db, header+idC+",C synced,,,,,,,2024-01-01T00:00:00Z\n", "req2", st)
	if rows, distinct := countIDs(t, db); rows != distinct {
		t.Fatalf("%d rows for %d ids: a duplicate id in contacts", rows, distinct)
	}
}

// Bug 3: a write through DB() while a group is open: the group checked the
// count when it opened, and its flush INSERTs the window's C beside the C
// the outside write stored.
func TestDBDuringAnOpenGroupCommitsIt(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "w.duckdb"))
	st := load.StreamState{StreamID: "s", Identity: "{}"}
	db.GroupCommits(1 << 20)
	gwindow(t, db, header+idA+",A,,,,,,,2024-01-01T00:00:00Z\n", "req1", st)
	if _, err := db.DB().Exec(`INSERT INTO contacts (id, full_name, created_at, _request_id) VALUES ('` + idC + `', 'C', TIMESTAMPTZ '2024-01-01 00:00:00Z', 'outside')`); err != nil {
		t.Fatal(err)
	}
	gwindow(t, db, header+idC+",C synced,,,,,,,2024-01-01T00:00:00Z\n", "req2", st)
	if err := db.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rows, distinct := countIDs(t, db); rows != distinct {
		t.Fatalf("%d rows for %d ids: a duplicate id in contacts", rows, distinct)
	}
}

// rawWindow commits one window of the given ids as batches built by hand
// (not through the transform, which lowercases ids): the Sink contract
// asks only for schemas.ArrowSchema(cols) plus _line.
func rawWindow(t *testing.T, db *load.DuckDB, reqID string, ids ...string) {
	t.Helper()
	ctx := context.Background()
	rd, err := transform.NewReader(strings.NewReader(header), transform.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cols := rd.Columns()
	rd.Release()
	fields := append(schemas.ArrowSchema(cols).Fields(), arrow.Field{Name: "_line", Type: arrow.PrimitiveTypes.Int64})
	b := array.NewRecordBuilder(memory.NewGoAllocator(), arrow.NewSchema(fields, nil))
	defer b.Release()
	for i, id := range ids {
		for k, c := range cols {
			switch c.Name {
			case "id":
				b.Field(k).(*array.StringBuilder).Append(id)
			case "created_at":
				b.Field(k).(*array.TimestampBuilder).Append(arrow.Timestamp(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()))
			default:
				if lb, ok := b.Field(k).(*array.ListBuilder); ok {
					lb.Append(true)
				} else {
					b.Field(k).AppendNull()
				}
			}
		}
		b.Field(len(cols)).(*array.Int64Builder).Append(int64(i + 2))
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	info := load.WindowInfo{StreamID: "s", RunID: "run1", RequestID: reqID, LoadedAt: time.Now()}
	if err := db.Begin(ctx, info, cols); err != nil {
		t.Fatal(err)
	}
	if err := db.Write(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Commit(ctx, info, nil, load.WindowStats{Rows: int64(len(ids)), Calls: 1}, load.StreamState{StreamID: "s", Identity: "{}"}); err != nil {
		t.Fatal(err)
	}
}

// Bug 4 (b8b31d8): the known set hashes id strings, DuckDB compares UUIDs.
// An id written in uppercase by one window and in lowercase by the next is
// one contact twice.
func TestOtherSpellingsOfAUUIDAreOneID(t *testing.T) {
	for _, grouped := range []bool{false, true} {
		db := open(t, filepath.Join(t.TempDir(), "w.duckdb"))
		if grouped {
			db.GroupCommits(1 << 20)
		}
		const up = "ABCDEF67-E89B-12D3-A456-426614174000"
		rawWindow(t, db, "req1", up)
		rawWindow(t, db, "req2", strings.ToLower(up))
		if err := db.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		if rows, distinct := countIDs(t, db); rows != distinct {
			t.Errorf("grouped=%v: %d rows for %d ids: a duplicate id in contacts", grouped, rows, distinct)
		}
	}
}

// Bug 5: state writes made while a group was open joined its transaction:
// a group that failed took them along, though their calls returned nil.
// They commit the group first now.
func TestStateWritesDuringAGroupAreNotRolledBackWithIt(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "w.duckdb"))
	st := load.StreamState{StreamID: "s", Identity: "{}"}
	db.GroupCommits(1 << 20)
	gwindow(t, db, header+idA+",A,,,,,,,2024-01-01T00:00:00Z\n", "req1", st)
	ctx := context.Background()
	if err := db.SaveBudget(ctx, "fp", extract.RateLimit{Limit: 10, Remaining: 3, Known: true, Reset: time.Now()}); err != nil {
		t.Fatal(err)
	}
	gwindow(t, db, header+idB+",B,,,,,,,2024-01-01T00:00:00Z\n", "req2", st)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := db.Flush(cctx); err == nil {
		t.Fatal("the flush did not fail")
	}
	if b, err := db.LoadBudget(ctx, "fp"); err != nil || !b.Known {
		t.Fatalf("the budget SaveBudget stored (nil error) is gone: %+v (%v)", b, err)
	}
	if got := names(t, db); len(got) != 1 || got[idA] != "A/req1" {
		t.Fatalf("the window before SaveBudget committed with it, the one after not: %v", got)
	}
}

type rvWindow struct {
	csv     string
	deletes []extract.Window
	hard    bool
	refresh bool
}

func rvDay(m, d int) time.Time { return time.Date(2024, time.Month(m), d, 0, 0, 0, 0, time.UTC) }

func rvGen(r *rand.Rand, n int, extraCols bool) []rvWindow {
	ids := make([]string, 10)
	for i := range ids {
		ids[i] = fmt.Sprintf("%d23e4567-e89b-12d3-a456-4266141740%02d", i, i)
	}
	times := []string{"2024-01-01T00:00:00Z", "2024-01-15T00:00:00Z", "2024-02-01T00:00:00Z", "2024-02-10T00:00:00Z", "2024-03-01T00:00:00Z", "2024-03-20T00:00:00Z"}
	bounds := []time.Time{{}, rvDay(1, 1), rvDay(2, 1), rvDay(3, 1), rvDay(4, 1)}
	var out []rvWindow
	for w := 0; w < n; w++ {
		hdr := header
		extra := extraCols && r.Intn(4) == 0
		if extra {
			hdr = "id,full_name,created_at,city\n"
		}
		var sb strings.Builder
		sb.WriteString(hdr)
		rows := r.Intn(5)
		for k := 0; k < rows; k++ {
			id := ids[r.Intn(len(ids))]
			if r.Intn(6) == 0 {
				id = strings.ToUpper(id)
			}
			if r.Intn(15) == 0 {
				id = "not-a-uuid"
			}
			if extra {
				fmt.Fprintf(&sb, "%s,n%d_%d,%s,c%d\n", id, w, k, times[r.Intn(len(times))], k)
			} else {
				fmt.Fprintf(&sb, "%s,n%d_%d,,,,,,,%s\n", id, w, k, times[r.Intn(len(times))])
			}
		}
		var del []extract.Window
		if r.Intn(2) == 0 {
			i := r.Intn(len(bounds) - 1)
			j := i + 1 + r.Intn(len(bounds)-1-i)
			from, to := bounds[i], bounds[j]
			if r.Intn(5) == 0 {
				to = time.Time{}
			}
			del = append(del, extract.Window{From: from, To: to})
		}
		out = append(out, rvWindow{csv: sb.String(), deletes: del, hard: r.Intn(3) == 0, refresh: r.Intn(8) == 0})
	}
	return out
}

func rvCommit(t *testing.T, db *load.DuckDB, w rvWindow, i int, alloc memory.Allocator) load.Changes {
	t.Helper()
	ctx := context.Background()
	info := load.WindowInfo{StreamID: "s", RunID: "run1", RequestID: fmt.Sprintf("req%d", i),
		LoadedAt: time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC), Deletes: w.deletes, HardDelete: w.hard, Refresh: w.refresh,
		Window: extract.Window{From: rvDay(1, 1), To: rvDay(5, 1)}}
	st := load.StreamState{StreamID: "s", Identity: "{}", Coverage: load.Coverage{{From: rvDay(1, 1), To: rvDay(1, 2+i%20), VerifiedAt: info.LoadedAt, Rows: int64(i)}}}
	rd, err := transform.NewReader(strings.NewReader(w.csv), transform.Options{BatchRows: 2, RequestID: info.RequestID, MaxRejectRatio: 2, Alloc: alloc})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Release()
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
	ch, err := db.Commit(ctx, info, rd.Rejects(), load.WindowStats{Rows: rd.Rows(), Rejects: int64(len(rd.Rejects())), Calls: 1}, st)
	if err != nil {
		t.Fatalf("window %d: %v", i, err)
	}
	return ch
}

func rvCompare(t *testing.T, a, b string) {
	t.Helper()
	db, err := load.OpenDuckDBReadOnly("")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(fmt.Sprintf("ATTACH '%s' AS a (READ_ONLY); ATTACH '%s' AS b (READ_ONLY)", a, b)); err != nil {
		t.Fatal(err)
	}
	var dup int
	if err := db.QueryRow(`SELECT count(*) - count(DISTINCT id) FROM b.contacts`).Scan(&dup); err != nil || dup != 0 {
		t.Errorf("grouped: %d duplicate ids (%v)", dup, err)
	}
	for _, tbl := range []string{"contacts", "_leadlex_windows", "_leadlex_streams", "_leadlex_rejects"} {
		sel := "*"
		if tbl == "_leadlex_streams" {
			sel = "* EXCLUDE (updated_at)"
		}
		for _, q := range []string{"SELECT " + sel + " FROM a.%[1]s EXCEPT ALL SELECT " + sel + " FROM b.%[1]s", "SELECT " + sel + " FROM b.%[1]s EXCEPT ALL SELECT " + sel + " FROM a.%[1]s"} {
			var n int
			if err := db.QueryRow("SELECT count(*) FROM (" + fmt.Sprintf(q, tbl) + ")").Scan(&n); err != nil || n != 0 {
				t.Errorf("%s: %d rows differ (%v)", fmt.Sprintf(q, tbl), n, err)
			}
		}
	}
}

// TestGroupedEqualsOneByOneOnRandomWindows: random windows (ids repeated
// within and across windows in any case, rejects, empty windows, deletion
// ranges with bounds on rows' instants, hard and soft, refreshes, a new
// column) committed one by one and in groups of 1 to 8 rows leave equal
// tables and report equal changes.
func TestGroupedEqualsOneByOneOnRandomWindows(t *testing.T) {
	for seed := int64(0); seed < 6; seed++ {
		for _, extra := range []bool{false, true} {
			t.Run(fmt.Sprintf("seed%d-extra%v", seed, extra), func(t *testing.T) {
				r := rand.New(rand.NewSource(seed))
				ws := rvGen(r, 12, extra)
				dir := t.TempDir()
				pa, pb := filepath.Join(dir, "plain.duckdb"), filepath.Join(dir, "grouped.duckdb")
				plain, grouped := open(t, pa), open(t, pb)
				alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
				defer alloc.AssertSize(t, 0)
				grouped.GroupCommits(int64(1 + r.Intn(8)))
				for i, w := range ws {
					c1 := rvCommit(t, plain, w, i, alloc)
					c2 := rvCommit(t, grouped, w, i, alloc)
					if c1 != c2 {
						t.Errorf("window %d (%q deletes %v hard %v refresh %v): plain %+v grouped %+v", i, w.csv, w.deletes, w.hard, w.refresh, c1, c2)
					}
				}
				if err := grouped.Flush(context.Background()); err != nil {
					t.Fatal(err)
				}
				plain.Close()
				grouped.Close()
				rvCompare(t, pa, pb)
			})
		}
	}
}
