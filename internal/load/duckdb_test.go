package load_test

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/load"
	"github.com/leadlex/leadlex-etl/internal/transform"
)

const header = "id,full_name,email,phone,job_title,company_name,linkedin_url,tags,created_at\n"

func open(t *testing.T, path string) *load.DuckDB {
	t.Helper()
	db, err := load.OpenDuckDB(context.Background(), path, load.DuckDBOptions{MemoryLimit: "512MB", Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// window stages csv (header included) as one window in batches of two rows,
// then commits it unless abort is set. The window's memory is released
// when it ends.
func window(t *testing.T, db *load.DuckDB, csv, reqID string, st load.StreamState, abort bool) {
	t.Helper()
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	windowAlloc(t, db, csv, reqID, st, abort, alloc)
}

// windowAlloc is window with the transform's batches from alloc.
func windowAlloc(t *testing.T, db *load.DuckDB, csv, reqID string, st load.StreamState, abort bool, alloc memory.Allocator) {
	t.Helper()
	ctx := context.Background()
	rd, err := transform.NewReader(strings.NewReader(csv), transform.Options{BatchRows: 2, Alloc: alloc, RequestID: reqID})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Release()
	info := load.WindowInfo{StreamID: st.StreamID, RunID: "run1", RequestID: reqID, LoadedAt: time.Now()}
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
	if abort {
		if err := db.Abort(ctx); err != nil {
			t.Fatal(err)
		}
		return
	}
	if _, err := db.Commit(ctx, info, rd.Rejects(), load.WindowStats{Rows: rd.Rows(), Rejects: int64(len(rd.Rejects())), Calls: 1}, st); err != nil {
		t.Fatal(err)
	}
}

func names(t *testing.T, db *load.DuckDB) map[string]string {
	t.Helper()
	rows, err := db.DB().Query(`SELECT id::VARCHAR, full_name || '/' || _request_id FROM contacts`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, v string
		if err := rows.Scan(&id, &v); err != nil {
			t.Fatal(err)
		}
		if _, dup := out[id]; dup {
			t.Fatalf("id %s twice", id)
		}
		out[id] = v
	}
	return out
}

const (
	idA = "123e4567-e89b-12d3-a456-426614174000"
	idB = "223e4567-e89b-12d3-a456-426614174000"
	idC = "323e4567-e89b-12d3-a456-426614174000"
)

func TestUpsertKeepsIDsUnique(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "w.duckdb"))
	st := load.StreamState{StreamID: "s", Identity: "{}"}
	// Within a window the last row of an id wins, even across batches.
	window(t, db, header+
		idA+",A old,,,,,,,2024-01-01T00:00:00Z\n"+
		idB+",B,,,,,,,2024-01-01T00:00:00Z\n"+
		idC+",C,,,,,,,2024-01-01T00:00:00Z\n"+
		strings.ToUpper(idA)+",A new,,,,,,,2024-01-01T00:00:00Z\n", "req1", st, false)
	want := map[string]string{idA: "A new/req1", idB: "B/req1", idC: "C/req1"}
	if got := names(t, db); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// A later window replaces the ids it carries and leaves the others.
	window(t, db, header+idB+",B again,,,,,,,2024-01-01T00:00:00Z\n", "req2", st, false)
	want[idB] = "B again/req2"
	if got := names(t, db); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// An aborted attempt leaves nothing; the next attempt of the window commits.
	window(t, db, header+idC+",C aborted,,,,,,,2024-01-01T00:00:00Z\n", "req3", st, true)
	if got := names(t, db); !reflect.DeepEqual(got, want) {
		t.Fatalf("after abort: got %v, want %v", got, want)
	}
	window(t, db, header+idC+",C retried,,,,,,,2024-01-01T00:00:00Z\n", "req4", st, false)
	want[idC] = "C retried/req4"
	if got := names(t, db); !reflect.DeepEqual(got, want) {
		t.Fatalf("after retry: got %v, want %v", got, want)
	}
}

// A grouping sink knows the ids of a table that was empty when it first
// committed and deletes only those a window repeats; a row written behind its back,
// or a table that held rows, sends it back to deleting by the whole window.
func TestUpsertOfATableWhoseIDsAreKnown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.duckdb")
	db := open(t, path)
	db.GroupCommits(1) // each window commits at once, grouped
	st := load.StreamState{StreamID: "s", Identity: "{}"}
	const idD = "423e4567-e89b-12d3-a456-426614174000"
	gwindow(t, db, header+idA+",A,,,,,,,2024-01-01T00:00:00Z\n"+idB+",B,,,,,,,2024-01-01T00:00:00Z\n", "req1", st)
	// Overlapping windows, as at the planner's edges.
	gwindow(t, db, header+strings.ToUpper(idB)+",B again,,,,,,,2024-01-01T00:00:00Z\n"+idC+",C,,,,,,,2024-01-01T00:00:00Z\n", "req2", st)
	want := map[string]string{idA: "A/req1", idB: "B again/req2", idC: "C/req2"}
	if got := names(t, db); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// Another writer adds a contact between two commits.
	if _, err := db.DB().Exec(`INSERT INTO contacts (id, full_name, created_at, _request_id) VALUES ('` + idD + `', 'D', TIMESTAMPTZ '2024-01-01 00:00:00Z', 'outside')`); err != nil {
		t.Fatal(err)
	}
	gwindow(t, db, header+idD+",D synced,,,,,,,2024-01-01T00:00:00Z\n", "req3", st)
	want[idD] = "D synced/req3"
	if got := names(t, db); !reflect.DeepEqual(got, want) {
		t.Fatalf("after a write behind the sink's back: got %v, want %v", got, want)
	}
	// A sink that opens a table holding rows knows none of them.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = open(t, path)
	db.GroupCommits(1)
	gwindow(t, db, header+idA+",A again,,,,,,,2024-01-01T00:00:00Z\n", "req4", st)
	want[idA] = "A again/req4"
	if got := names(t, db); !reflect.DeepEqual(got, want) {
		t.Fatalf("after reopening: got %v, want %v", got, want)
	}
}

func TestTypesAreStoredFaithfully(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "w.duckdb"))
	window(t, db, header+
		idA+`,"Núñez, José","j@x.com",,"Head of ""Special"" Projects",,,"lead, priority,,vip",2024-03-10T01:30:00.123456+02:00`+"\n"+
		idB+",Zoë,,,,,,,2024-03-10T00:00:00Z\n", "req1", load.StreamState{StreamID: "s"}, false)
	var name, title string
	var phone, company *string
	var tags []any
	var us int64
	var typ string
	err := db.DB().QueryRow(`SELECT full_name, job_title, phone, company_name, tags, epoch_us(created_at), typeof(created_at) FROM contacts WHERE id = ?`, idA).
		Scan(&name, &title, &phone, &company, &tags, &us, &typ)
	if err != nil {
		t.Fatal(err)
	}
	if name != "Núñez, José" || title != `Head of "Special" Projects` || phone != nil || company != nil {
		t.Errorf("got %q %q %v %v", name, title, phone, company)
	}
	if !reflect.DeepEqual(tags, []any{"lead", "priority", "vip"}) {
		t.Errorf("tags %v", tags)
	}
	if want := time.Date(2024, 3, 9, 23, 30, 0, 123456000, time.UTC).UnixMicro(); us != want || typ != "TIMESTAMP WITH TIME ZONE" {
		t.Errorf("created_at %d (%s), want %d", us, typ, want)
	}
	if err := db.DB().QueryRow(`SELECT tags FROM contacts WHERE id = ?`, idB).Scan(&tags); err != nil || len(tags) != 0 || tags == nil {
		t.Errorf("empty tags field: %v (%v), want an empty list", tags, err)
	}
}

func TestStateSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.duckdb")
	db := open(t, path)
	cursor := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)
	st := load.StreamState{
		StreamID: "s1", Identity: `{"base_url":"x"}`, Coverage: load.Coverage{{To: cursor, VerifiedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Rows: 7}},
		Pending: []extract.Window{
			{To: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)},
			{From: time.Date(2021, 1, 1, 0, 0, 0, 5000, time.UTC), To: time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC)},
		},
		PendingUntil: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	window(t, db, header+idA+",A,,,,,,,2024-01-01T00:00:00Z\n", "req1", st, false)
	budget := extract.RateLimit{Limit: 10, Remaining: 3, Reset: time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC), Known: true}
	if err := db.SaveBudget(context.Background(), "fp", budget); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db = open(t, path)
	got, err := db.LoadState(context.Background(), "s1", st.Identity)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, st) {
		t.Errorf("state\n got  %+v\n want %+v", got, st)
	}
	b, err := db.LoadBudget(context.Background(), "fp")
	if err != nil || b.Limit != 10 || b.Remaining != 3 || !b.Reset.Equal(budget.Reset) || !b.Known {
		t.Errorf("budget %+v (%v)", b, err)
	}
	if n := len(names(t, db)); n != 1 {
		t.Errorf("%d contacts after reopen", n)
	}
	other, err := db.LoadState(context.Background(), "never-synced", "{}")
	if err != nil || !other.Cursor().IsZero() || other.Pending != nil {
		t.Errorf("unknown stream: %+v (%v)", other, err)
	}
}

func TestRefusesAContactsTableOfItsOwn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "user.duckdb")
	db, err := load.OpenDuckDBReadOnly("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(fmt.Sprintf("ATTACH '%s' AS u; CREATE TABLE u.contacts (name VARCHAR); INSERT INTO u.contacts VALUES ('mine'); DETACH u", path)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = load.OpenDuckDB(context.Background(), path, load.DuckDBOptions{})
	if err == nil || !strings.Contains(err.Error(), "not made by leadlex-etl") {
		t.Fatalf("got %v, want a refusal", err)
	}
	db, err = load.OpenDuckDBReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var name string
	if err := db.QueryRow("SELECT name FROM contacts").Scan(&name); err != nil || name != "mine" {
		t.Errorf("the user's table changed: %q %v", name, err)
	}
}

// TestNoViewIsLeftInTheFile checks that the Arrow view the batches reach
// DuckDB through never reaches the file (it points into the writer's memory
// and crashes any reader), and that a stale one an older version left is
// dropped on open.
func TestNoViewIsLeftInTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.duckdb")
	db := open(t, path)
	st := load.StreamState{StreamID: "s", Identity: "{}"}
	window(t, db, header+idA+",A,,,,,,,2024-01-01T00:00:00Z\n", "req1", st, false)
	window(t, db, header+idB+",B,,,,,,,2024-01-01T00:00:00Z\n", "req2", st, true)
	window(t, db, "id,created_at,city\n"+idA+",2024-01-01T00:00:00Z,Oslo\n", "req3", st, false)
	db.Close()
	views := func() []string {
		ro, err := load.OpenDuckDBReadOnly(path)
		if err != nil {
			t.Fatal(err)
		}
		defer ro.Close()
		rows, err := ro.Query(`SELECT view_name FROM duckdb_views() WHERE NOT internal UNION ALL
			SELECT table_name FROM information_schema.tables WHERE table_type = 'VIEW' AND table_schema = 'main'`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var v string
			if err := rows.Scan(&v); err != nil {
				t.Fatal(err)
			}
			out = append(out, v)
		}
		return out
	}
	if v := views(); len(v) != 0 {
		t.Errorf("views in the file after syncs and an abort: %v", v)
	}
	// A file an older version wrote, with its stale view.
	raw, err := load.OpenDuckDBReadOnly("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(fmt.Sprintf("ATTACH '%s' AS f; CREATE VIEW f._leadlex_batch AS SELECT 1 AS x; DETACH f", path)); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	if v := views(); len(v) == 0 {
		t.Fatalf("setting up the stale view: %v", v)
	}
	db = open(t, path)
	db.Close()
	if v := views(); len(v) != 0 {
		t.Errorf("the stale view survived opening the file: %v", v)
	}
}

// TestOldCursorReadsAsCoverage reads a stream row of the versions that kept
// only a cursor.
func TestOldCursorReadsAsCoverage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.duckdb")
	db := open(t, path)
	cursor := time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC)
	updated := time.Date(2025, 5, 1, 0, 0, 1, 0, time.UTC)
	if _, err := db.DB().Exec(`INSERT INTO _leadlex_streams (stream_id, identity, cursor, updated_at) VALUES ('old', '{}', ?, ?)`, cursor, updated); err != nil {
		t.Fatal(err)
	}
	st, err := db.LoadState(context.Background(), "old", "{}")
	if err != nil {
		t.Fatal(err)
	}
	if want := (load.Coverage{{To: cursor, VerifiedAt: updated}}); !reflect.DeepEqual(st.Coverage, want) || !st.Cursor().Equal(cursor) {
		t.Errorf("coverage %v, want %v", st.Coverage, want)
	}
}

// TestAStateWithoutAStartKeepsItsCursor reads a stream row of the versions
// before the history's start was kept: its history begins where its
// coverage does, so its cursor stays where those versions had it.
func TestAStateWithoutAStartKeepsItsCursor(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "w.duckdb"))
	at := func(m int) time.Time { return time.Date(2025, time.Month(m), 1, 0, 0, 0, 0, time.UTC) }
	coverage := `[{"from":"2025-01-01T00:00:00Z","to":"2025-03-01T00:00:00Z","verified_at":"2025-06-01T00:00:00Z","rows":5},` +
		`{"from":"2025-04-01T00:00:00Z","to":"2025-05-01T00:00:00Z","verified_at":"2025-06-01T00:00:00Z","rows":5}]`
	if _, err := db.DB().Exec(`INSERT INTO _leadlex_streams (stream_id, identity, cursor, updated_at, coverage) VALUES ('old', '{}', ?, ?, ?)`,
		at(3), at(6), coverage); err != nil {
		t.Fatal(err)
	}
	st, err := db.LoadState(context.Background(), "old", "{}")
	if err != nil {
		t.Fatal(err)
	}
	if !st.Start.Equal(at(1)) || !st.Cursor().Equal(at(3)) || st.KeyFingerprint != "" {
		t.Errorf("start %s, cursor %s, key fingerprint %q; want %s, %s and none", st.Start, st.Cursor(), st.KeyFingerprint, at(1), at(3))
	}
}

// TestReadOnlyOpensBesideASync opens a DuckDB file and a lake read-only
// while a sync holds them (their locks taken): their state reads, and a
// write fails.
func TestReadOnlyOpensBesideASync(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	db := open(t, filepath.Join(dir, "w.duckdb"))
	st := load.StreamState{StreamID: "s", Identity: "{}", Coverage: load.Coverage{{To: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), VerifiedAt: time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC)}}}
	window(t, db, header+idA+",A,,,,,,,2024-01-01T00:00:00Z\n", "req1", st, false)
	// A sync between two commits: its lock held, the file closed.
	db.Close()
	open(t, filepath.Join(dir, "w.duckdb")) // held until the test ends
	lake, err := load.OpenLake(ctx, filepath.Join(dir, "lake"), load.LakeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer lake.Close()
	ro, err := load.OpenDuckDB(ctx, filepath.Join(dir, "w.duckdb"), load.DuckDBOptions{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only beside the writer: %v", err)
	}
	defer ro.Close()
	if streams, err := ro.Streams(ctx); err != nil || len(streams) != 1 || len(streams[0].Coverage) != 1 {
		t.Errorf("streams read-only: %+v (%v)", streams, err)
	}
	if err := ro.ForgetStream(ctx, "s"); err == nil {
		t.Error("a read-only DuckDB wrote")
	}
	rl, err := load.OpenLakeReadOnly(filepath.Join(dir, "lake"))
	if err == nil {
		t.Errorf("a folder without state opened read-only: %v", rl)
	}
	if err := lake.SaveBudget(ctx, "k", extract.RateLimit{Limit: 10, Remaining: 1, Reset: time.Now().Add(time.Hour), Known: true}); err != nil {
		t.Fatal(err)
	}
	rl, err = load.OpenLakeReadOnly(filepath.Join(dir, "lake"))
	if err != nil {
		t.Fatal(err)
	}
	defer rl.Close()
	if b, err := rl.LoadBudget(ctx, "k"); err != nil || !b.Known || b.Remaining != 1 {
		t.Errorf("budget read-only: %+v (%v)", b, err)
	}
	if err := rl.ForgetStream(ctx, "s"); err != nil {
		t.Errorf("forgetting an unknown stream of a read-only lake: %v", err)
	}
	if err := rl.SaveBudget(ctx, "k", extract.RateLimit{Known: true}); err == nil {
		t.Error("a read-only lake wrote")
	}
}

// TestGroupedCommitsEqualOneByOne feeds the same windows to a DuckDB sink
// committing one by one and to one committing in groups (load.Grouper):
// every window's changes and, after the flush, every stored row (lineage
// included), window record and stream state agree. The windows repeat ids
// within and across windows, move a contact's created_at, and judge
// deletions of rows a group still defers, at a window bound too.
func TestGroupedCommitsEqualOneByOne(t *testing.T) {
	for _, hard := range []bool{false, true} {
		t.Run(fmt.Sprintf("hard=%v", hard), func(t *testing.T) {
			dir := t.TempDir()
			plain, grouped := open(t, filepath.Join(dir, "plain.duckdb")), open(t, filepath.Join(dir, "grouped.duckdb"))
			grouped.GroupCommits(1 << 20)
			day := func(m, d int) time.Time { return time.Date(2024, time.Month(m), d, 0, 0, 0, 0, time.UTC) }
			const idD, idE, idF, idG, idH = "423e4567-e89b-12d3-a456-426614174000", "523e4567-e89b-12d3-a456-426614174000",
				"623e4567-e89b-12d3-a456-426614174000", "723e4567-e89b-12d3-a456-426614174000", "823e4567-e89b-12d3-a456-426614174000"
			windows := []struct {
				csv     string
				deletes []extract.Window
			}{
				{header + idA + ",A,,,,,,,2024-01-02T00:00:00Z\n" + idB + ",B,,,,,,,2024-01-03T00:00:00Z\n" +
					idC + ",C1,,,,,,,2024-01-05T00:00:00Z\n" + strings.ToUpper(idC) + ",C2,,,,,,,2024-01-05T00:00:00Z\n",
					[]extract.Window{{From: day(1, 1), To: day(2, 1)}}},
				{header + idD + ",D,,,,,,,2024-02-02T00:00:00Z\n" + idB + ",B moved,,,,,,,2024-02-03T00:00:00Z\n" + idE + ",E,,,,,,,2024-02-05T00:00:00Z\n",
					[]extract.Window{{From: day(2, 1), To: day(3, 1)}}},
				// January again: A and C, deferred, are gone (A is back next).
				{header + idH + ",H,,,,,,,2024-01-10T00:00:00Z\n", []extract.Window{{From: day(1, 1), To: day(2, 1)}}},
				{header + idF + ",F,,,,,,,2024-03-02T00:00:00Z\n" + idA + ",A again,,,,,,,2024-01-02T00:00:00Z\n" + idG + ",G,,,,,,,2024-03-01T00:00:00Z\n", nil},
				// G, on the range's first instant, is gone; F is not.
				{header + idF + ",F,,,,,,,2024-03-02T00:00:00Z\n", []extract.Window{{From: day(3, 1), To: day(4, 1)}}},
				{header, []extract.Window{{From: day(4, 1), To: day(5, 1)}}},
				{header + idD + ",D again,,,,,,,2024-02-02T00:00:00Z\n" + idD + ",D last,,,,,,,2024-02-02T00:00:00Z\n", nil},
			}
			ctx := context.Background()
			for i, w := range windows {
				info := load.WindowInfo{StreamID: "s", RunID: "run1", RequestID: fmt.Sprintf("req%d", i),
					LoadedAt: time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC), Deletes: w.deletes, HardDelete: hard,
					Window: extract.Window{From: day(1, 1), To: day(5, 1)}}
				st := load.StreamState{StreamID: "s", Identity: "{}", Coverage: load.Coverage{{From: day(1, 1), To: day(1, 2+i), VerifiedAt: info.LoadedAt, Rows: int64(i)}}}
				var changes [2]load.Changes
				for k, db := range []*load.DuckDB{plain, grouped} {
					rd, err := transform.NewReader(strings.NewReader(w.csv), transform.Options{BatchRows: 2, RequestID: info.RequestID})
					if err != nil {
						t.Fatal(err)
					}
					if err := db.Begin(ctx, info, rd.Columns()); err != nil {
						t.Fatal(err)
					}
					for rd.Next() {
						if err := db.Write(ctx, rd.RecordBatch()); err != nil {
							t.Fatal(err)
						}
					}
					if changes[k], err = db.Commit(ctx, info, nil, load.WindowStats{Rows: rd.Rows(), Calls: 1}, st); err != nil {
						t.Fatal(err)
					}
					rd.Release()
				}
				if changes[0] != changes[1] {
					t.Errorf("window %d: one by one %+v, grouped %+v", i, changes[0], changes[1])
				}
			}
			if err := grouped.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if got := names(t, grouped); len(got) == 0 {
				t.Fatal("the grouped file holds no contact")
			}
			plain.Close()
			grouped.Close()
			db, err := load.OpenDuckDBReadOnly("")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec(fmt.Sprintf("ATTACH '%s' AS a (READ_ONLY); ATTACH '%s' AS b (READ_ONLY)", filepath.Join(dir, "plain.duckdb"), filepath.Join(dir, "grouped.duckdb"))); err != nil {
				t.Fatal(err)
			}
			var deleted int
			if err := db.QueryRow(`SELECT (SELECT count(*) FROM a.contacts WHERE _deleted_at IS NOT NULL) + 8 - (SELECT count(*) FROM a.contacts)`).Scan(&deleted); err != nil || deleted != 2 {
				t.Errorf("%d contacts deleted one by one (%v), want 2 (C and G)", deleted, err)
			}
			for _, tbl := range []string{"contacts", "_leadlex_windows", "_leadlex_streams"} {
				sel := "*"
				if tbl == "_leadlex_streams" {
					sel = "* EXCLUDE (updated_at)" // the wall clock
				}
				for _, q := range []string{"SELECT " + sel + " FROM a.%[1]s EXCEPT ALL SELECT " + sel + " FROM b.%[1]s", "SELECT " + sel + " FROM b.%[1]s EXCEPT ALL SELECT " + sel + " FROM a.%[1]s"} {
					var n int
					if err := db.QueryRow("SELECT count(*) FROM (" + fmt.Sprintf(q, tbl) + ")").Scan(&n); err != nil || n != 0 {
						t.Errorf("%s: %d rows differ (%v)", fmt.Sprintf(q, tbl), n, err)
					}
				}
			}
		})
	}
}

// TestAFailedGroupLeavesNothingOfIt: a group whose flush fails is rolled
// back whole, says so, and the sink goes on one window at a time.
func TestAFailedGroupLeavesNothingOfIt(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "w.duckdb"))
	st := load.StreamState{StreamID: "s", Identity: "{}"}
	db.GroupCommits(1 << 20)
	windowAlloc(t, db, header+idA+",A,,,,,,,2024-01-01T00:00:00Z\n", "req1", st, false, memory.NewGoAllocator())
	if err := db.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The group holds the windows' batches until it ends.
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	windowAlloc(t, db, header+idB+",B,,,,,,,2024-01-01T00:00:00Z\n", "req2", st, false, alloc)
	windowAlloc(t, db, header+idA+",A again,,,,,,,2024-01-01T00:00:00Z\n", "req3", st, false, alloc)
	if alloc.CurrentAlloc() == 0 {
		t.Error("the group holds no batch")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := db.Flush(ctx)
	if err == nil || !strings.Contains(err.Error(), "2 window(s) committed since the last flush are rolled back") {
		t.Fatalf("a flush with a cancelled context: %v", err)
	}
	alloc.AssertSize(t, 0)
	want := map[string]string{idA: "A/req1"}
	if got := names(t, db); !reflect.DeepEqual(got, want) {
		t.Fatalf("after the failed group: got %v, want %v", got, want)
	}
	var windows int
	if err := db.DB().QueryRow(`SELECT count(*) FROM _leadlex_windows`).Scan(&windows); err != nil || windows != 1 {
		t.Errorf("%d windows recorded (%v), want 1", windows, err)
	}
	window(t, db, header+idA+",A last,,,,,,,2024-01-01T00:00:00Z\n"+idC+",C,,,,,,,2024-01-01T00:00:00Z\n", "req4", st, false)
	want = map[string]string{idA: "A last/req4", idC: "C/req4"}
	if got := names(t, db); !reflect.DeepEqual(got, want) {
		t.Fatalf("after the next window: got %v, want %v", got, want)
	}
}
