package load_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/load"
	"github.com/leadlex/leadlex-etl/internal/parquetio"
	"github.com/leadlex/leadlex-etl/internal/transform"
)

// sinkUnderTest is one load.Target implementation as the conformance suite
// drives it. A new sink is done when TestTargetConformance passes for it.
type sinkUnderTest struct {
	name string
	// open opens (creating if needed) the destination at dir. Sinks that
	// write files use small files here, so that upserts reach files at and
	// above half the target size.
	open func(t *testing.T, dir string, alloc memory.Allocator) load.Target
	// rows returns every stored contact row, each column as text (NULL as
	// "<null>"); ids repeated across rows are returned as they are.
	rows func(t *testing.T, tgt load.Target, dir string) []map[string]string
	// sorted is set when the sink documents a row order: by created_at,
	// then id, within each data file.
	sorted func(t *testing.T, dir string)
	// files is set for sinks that write data files: their sizes.
	files func(t *testing.T, dir string) []int64
}

// targetFileBytes is the file size sinks that write files aim at here.
const targetFileBytes = 8 << 10

var sinksUnderTest = []sinkUnderTest{
	{
		name: "DuckDB",
		open: func(t *testing.T, dir string, _ memory.Allocator) load.Target {
			db, err := load.OpenDuckDB(context.Background(), filepath.Join(dir, "w.duckdb"), load.DuckDBOptions{MemoryLimit: "512MB", Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			return db
		},
		rows: func(t *testing.T, tgt load.Target, _ string) []map[string]string {
			return textRows(t, tgt.(*load.DuckDB).DB(), "contacts")
		},
	},
	// DuckDB committing windows in groups (load.Grouper), as a replay does:
	// of four rows, so that groups flush at every point of the cases, and
	// of a million, flushed only where the case reads the contacts.
	groupedDuckDB(4),
	groupedDuckDB(1 << 20),
	{
		name: "lake",
		open: func(t *testing.T, dir string, alloc memory.Allocator) load.Target {
			l, err := load.OpenLake(context.Background(), filepath.Join(dir, "lake"), load.LakeOptions{
				PartitionBy: "month", TargetFileBytes: targetFileBytes, Alloc: alloc,
				Parquet: parquetio.Options{RowGroupRows: 250},
			})
			if err != nil {
				t.Fatal(err)
			}
			return l
		},
		// The files are read as Polars, Spark and DuckDB read the lake, with
		// no option: every file must carry every column.
		rows: func(t *testing.T, _ load.Target, dir string) []map[string]string {
			files := lakeDataFiles(t, filepath.Join(dir, "lake"))
			if len(files) == 0 {
				return nil
			}
			db := memDB(t)
			return textRows(t, db, fmt.Sprintf("read_parquet([%s], hive_partitioning = false)", quoteList(files)))
		},
		files: func(t *testing.T, dir string) []int64 {
			var sizes []int64
			for _, f := range lakeDataFiles(t, filepath.Join(dir, "lake")) {
				fi, err := os.Stat(f)
				if err != nil {
					t.Fatal(err)
				}
				sizes = append(sizes, fi.Size())
			}
			return sizes
		},
		sorted: func(t *testing.T, dir string) {
			db := memDB(t)
			for _, f := range lakeDataFiles(t, filepath.Join(dir, "lake")) {
				var unsorted int
				q := fmt.Sprintf(`SELECT count(*) FROM (SELECT created_at, id, lag(created_at) OVER w AS pc, lag(id) OVER w AS pid
					FROM read_parquet('%s', file_row_number = true) WINDOW w AS (ORDER BY file_row_number))
					WHERE pc > created_at OR (pc = created_at AND pid >= id)`, f)
				if err := db.QueryRow(q).Scan(&unsorted); err != nil {
					t.Fatal(err)
				}
				if unsorted != 0 {
					t.Errorf("%s: %d rows out of (created_at, id) order", f, unsorted)
				}
			}
		},
	},
}

func groupedDuckDB(rows int64) sinkUnderTest {
	return sinkUnderTest{
		name: fmt.Sprintf("DuckDB grouped by %d rows", rows),
		open: func(t *testing.T, dir string, _ memory.Allocator) load.Target {
			db, err := load.OpenDuckDB(context.Background(), filepath.Join(dir, "w.duckdb"), load.DuckDBOptions{MemoryLimit: "512MB", Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			db.GroupCommits(rows)
			return db
		},
		rows: func(t *testing.T, tgt load.Target, _ string) []map[string]string {
			if err := tgt.(load.Grouper).Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			return textRows(t, tgt.(*load.DuckDB).DB(), "contacts")
		},
	}
}

func memDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := load.OpenDuckDBReadOnly("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = "'" + strings.ReplaceAll(s, "'", "''") + "'"
	}
	return strings.Join(q, ", ")
}

func lakeDataFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), "_") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".parquet") && !strings.HasPrefix(d.Name(), ".") {
			out = append(out, p)
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

// textRows reads every row of from with each column cast to text.
func textRows(t *testing.T, db *sql.DB, from string) []map[string]string {
	t.Helper()
	rows, err := db.Query("SELECT * FROM " + from)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	casts := make([]string, len(cols))
	for i, c := range cols {
		casts[i] = fmt.Sprintf(`CAST(%q AS VARCHAR)`, c)
	}
	rows.Close()
	rows, err = db.Query("SELECT " + strings.Join(casts, ", ") + " FROM " + from)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []map[string]string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for i, c := range cols {
			m[c] = "<null>"
			if vals[i].Valid {
				m[c] = vals[i].String
			}
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// conformance is the state of one subtest: a sink, its folder, and the
// checked allocator every batch comes from.
type conformance struct {
	t     *testing.T
	sink  sinkUnderTest
	dir   string
	alloc *memory.CheckedAllocator
	tgt   load.Target
	seq   int
}

func (c *conformance) reopen() {
	c.t.Helper()
	if c.tgt != nil {
		if err := c.tgt.Close(); err != nil {
			c.t.Fatal(err)
		}
	}
	c.tgt = c.sink.open(c.t, c.dir, c.alloc)
}

// attempt stages csv (header included) as one window attempt, in batches of
// three rows, and returns the reader's rejects and row count.
func (c *conformance) attempt(csv string, info load.WindowInfo) ([]transform.Reject, int64) {
	c.t.Helper()
	ctx := context.Background()
	rd, err := transform.NewReader(strings.NewReader(csv), transform.Options{BatchRows: 3, Alloc: c.alloc, RequestID: info.RequestID, MaxRejectRatio: 1})
	if err != nil {
		c.t.Fatal(err)
	}
	defer rd.Release()
	if err := c.tgt.Begin(ctx, info, rd.Columns()); err != nil {
		c.t.Fatal(err)
	}
	for rd.Next() {
		if err := c.tgt.Write(ctx, rd.RecordBatch()); err != nil {
			c.t.Fatal(err)
		}
	}
	if err := rd.Err(); err != nil {
		c.t.Fatal(err)
	}
	return slices.Clone(rd.Rejects()), rd.Rows()
}

func (c *conformance) info() load.WindowInfo {
	c.seq++
	return load.WindowInfo{StreamID: "s1", RunID: "run1", RequestID: fmt.Sprintf("req%d", c.seq),
		LoadedAt: time.Date(2026, 1, 1, 0, 0, c.seq, 0, time.UTC),
		Window:   extract.Window{From: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC)}}
}

// commit stages and commits csv as one window with state st.
func (c *conformance) commit(csv string, st load.StreamState) load.Changes {
	c.t.Helper()
	return c.commitWith(csv, st, nil)
}

// commitWith is commit with the window's info changed by f.
func (c *conformance) commitWith(csv string, st load.StreamState, f func(*load.WindowInfo)) load.Changes {
	c.t.Helper()
	info := c.info()
	if f != nil {
		f(&info)
	}
	rejects, rows := c.attempt(csv, info)
	ch, err := c.tgt.Commit(context.Background(), info, rejects, load.WindowStats{Rows: rows, Rejects: int64(len(rejects)), Calls: 1}, st)
	if err != nil {
		c.t.Fatal(err)
	}
	return ch
}

// rows returns the stored rows by id, failing on an id stored twice, with
// lineage columns dropped and only the given columns kept (all if none).
func (c *conformance) rows(cols ...string) map[string]map[string]string {
	c.t.Helper()
	out := map[string]map[string]string{}
	for _, r := range c.sink.rows(c.t, c.tgt, c.dir) {
		id := r["id"]
		if _, dup := out[id]; dup {
			c.t.Errorf("id %s is stored twice", id)
		}
		delete(r, "_request_id")
		delete(r, "_loaded_at")
		if len(cols) == 0 {
			delete(r, "_deleted_at")
		}
		if len(cols) > 0 {
			keep := map[string]string{}
			for _, k := range cols {
				keep[k] = r[k]
			}
			r = keep
		}
		out[id] = r
	}
	return out
}

var st1 = load.StreamState{StreamID: "s1", Identity: `{"base_url":"http://x"}`}

const (
	uA = "123e4567-e89b-12d3-a456-426614174000"
	uB = "223e4567-e89b-12d3-a456-426614174000"
	uC = "323e4567-e89b-12d3-a456-426614174000"
	uX = "923e4567-e89b-12d3-a456-426614174000"
)

// TestTargetConformance runs one suite, written once, against every
// load.Target: any future sink must pass it. Every batch comes from a
// checked Arrow allocator that must be back at zero bytes once the sink is
// closed.
func TestTargetConformance(t *testing.T) {
	for _, sink := range sinksUnderTest {
		t.Run(sink.name, func(t *testing.T) {
			for _, tc := range conformanceCases {
				t.Run(tc.name, func(t *testing.T) {
					c := &conformance{t: t, sink: sink, dir: t.TempDir(), alloc: memory.NewCheckedAllocator(memory.NewGoAllocator())}
					c.reopen()
					defer func() {
						if c.tgt != nil {
							if err := c.tgt.Close(); err != nil {
								t.Error(err)
							}
						}
						c.alloc.AssertSize(t, 0)
					}()
					tc.run(c)
				})
			}
		})
	}
}

var conformanceCases = []struct {
	name string
	run  func(c *conformance)
}{
	{"ColumnsByNameInAnyOrder", func(c *conformance) {
		// id and created_at anywhere, unrequested columns before, between
		// and after them: every value lands in the column of its name.
		c.commit("note,created_at,tags,id,full_name,email,phone,job_title,company_name,linkedin_url\n"+
			uX+`,2024-01-02T00:00:00Z,"a, b",`+uA+",Ann,a@x.com,,,,\n", st1)
		c.commit("tags,full_name,created_at,email,phone,id,job_title,company_name,linkedin_url,note\n"+
			`c,Bob,2024-01-03T00:00:00Z,b@x.com,,`+uB+",,,,hi\n", st1)
		c.reopen()
		// A later window in yet another order, with a new column.
		c.commit("city,id,note,created_at,full_name,email,phone,job_title,company_name,linkedin_url,tags\n"+
			"Oslo,"+uA+",again,2024-01-02T00:00:00Z,Ann 2,a@x.com,,,,,\n", st1)
		got := c.rows("id", "full_name", "email", "tags", "created_at", "note", "city")
		want := map[string]map[string]string{
			uA: {"id": uA, "full_name": "Ann 2", "email": "a@x.com", "tags": "[]", "note": "again", "city": "Oslo"},
			uB: {"id": uB, "full_name": "Bob", "email": "b@x.com", "tags": "[c]", "note": "hi", "city": "<null>"},
		}
		for id, w := range want {
			g := got[id]
			if g == nil || !strings.HasPrefix(g["created_at"], "2024-01-0") {
				c.t.Errorf("%s: created_at %q", id, g["created_at"])
				continue
			}
			delete(g, "created_at")
			if !reflect.DeepEqual(g, w) {
				c.t.Errorf("%s:\n got  %v\n want %v", id, g, w)
			}
		}
		if len(got) != 2 {
			c.t.Errorf("%d rows, want 2", len(got))
		}
	}},
	{"LastRowOfARepeatedIDWins", func(c *conformance) {
		// Across batches (three rows each) and in any case of the UUID.
		c.commit(header+
			uA+",A old,,,,,,,2024-01-01T00:00:00Z\n"+
			uB+",B,,,,,,,2024-01-01T00:00:00Z\n"+
			uC+",C,,,,,,,2024-02-01T00:00:00Z\n"+
			strings.ToUpper(uA)+",A new,,,,,,,2024-01-01T00:00:00Z\n", st1)
		c.commit(header+uB+",B 2,,,,,,,2024-01-01T00:00:00Z\n"+uB+",B 3,,,,,,,2024-01-01T00:00:00Z\n", st1)
		want := map[string]map[string]string{uA: {"full_name": "A new"}, uB: {"full_name": "B 3"}, uC: {"full_name": "C"}}
		if got := stripID(c.rows("id", "full_name")); !reflect.DeepEqual(got, want) {
			c.t.Errorf("got %v, want %v", got, want)
		}
	}},
	{"AbortDiscardsAndARetryCommits", func(c *conformance) {
		c.commit(header+uA+",A,,,,,,,2024-01-01T00:00:00Z\n", st1)
		info := c.info()
		c.attempt(header+uA+",A aborted,,,,,,,2024-01-01T00:00:00Z\n"+uB+",B aborted,,,,,,,2024-01-01T00:00:00Z\n", info)
		if err := c.tgt.Abort(context.Background()); err != nil {
			c.t.Fatal(err)
		}
		want := map[string]map[string]string{uA: {"full_name": "A"}}
		if got := stripID(c.rows("id", "full_name")); !reflect.DeepEqual(got, want) {
			c.t.Fatalf("after Abort: got %v, want %v", got, want)
		}
		// The retried window: begun again (after Abort, and once more
		// without one, as a broken-off body does) and committed.
		c.attempt(header+uB+",B first try,,,,,,,2024-01-01T00:00:00Z\n", info)
		rejects, rows := c.attempt(header+uB+",B retried,,,,,,,2024-01-01T00:00:00Z\n", info)
		st := st1
		st.Coverage = load.Coverage{{To: time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC), VerifiedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Rows: 2}}
		if _, err := c.tgt.Commit(context.Background(), info, rejects, load.WindowStats{Rows: rows, Calls: 2}, st); err != nil {
			c.t.Fatal(err)
		}
		want[uB] = map[string]string{"full_name": "B retried"}
		if got := stripID(c.rows("id", "full_name")); !reflect.DeepEqual(got, want) {
			c.t.Errorf("after the retry: got %v, want %v", got, want)
		}
		// An Abort with nothing begun is harmless.
		if err := c.tgt.Abort(context.Background()); err != nil {
			c.t.Error(err)
		}
	}},
	{"StateRoundTripAndReopen", func(c *conformance) {
		ctx := context.Background()
		st := load.StreamState{
			StreamID: "s1", Identity: st1.Identity, KeyFingerprint: "s1:0011:aabb",
			Coverage: load.Coverage{
				{To: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), VerifiedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Rows: 10},
				{From: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC), VerifiedAt: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC), Rows: 49999},
				{From: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC), VerifiedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
			},
			Pending: []extract.Window{
				{To: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)},
				{From: time.Date(2021, 1, 1, 0, 0, 0, 5000, time.UTC), To: time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC)},
				{From: time.Date(2023, 1, 1, 0, 0, 0, 1000, time.UTC)},
			},
			PendingUntil: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		}
		c.commit(header+uA+",A,,,,,,,2024-01-01T00:00:00Z\n", st)
		other := load.StreamState{StreamID: "s2", Identity: `{"base_url":"http://x","tags":["vip"]}`, Start: time.Date(2022, 6, 1, 0, 0, 0, 0, time.UTC),
			Coverage: load.Coverage{{From: time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC), VerifiedAt: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), Rows: 3}}}
		c.commit(header+uB+",B,,,,,,,2024-01-01T00:00:00Z\n", other)
		check := func(when string) {
			for _, want := range []load.StreamState{st, other} {
				got, err := c.tgt.LoadState(ctx, want.StreamID, want.Identity)
				if err != nil {
					c.t.Fatal(err)
				}
				if !reflect.DeepEqual(got, want) {
					c.t.Errorf("%s: state\n got  %+v\n want %+v", when, got, want)
				}
			}
			fresh, err := c.tgt.LoadState(ctx, "never", "{}")
			if err != nil || !reflect.DeepEqual(fresh, load.StreamState{StreamID: "never", Identity: "{}"}) {
				c.t.Errorf("%s: a stream never synced: %+v (%v)", when, fresh, err)
			}
		}
		check("before reopening")
		c.reopen()
		check("after reopening")
		if n := len(c.rows()); n != 2 {
			c.t.Errorf("%d rows after reopening, want 2", n)
		}
		// Progress of the first stream: pending windows done, the cursor moves.
		st.Pending, st.PendingSince, st.PendingUntil = nil, time.Time{}, time.Time{}
		st.Coverage = st.Coverage.Add(load.Segment{From: time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
			VerifiedAt: time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC), Rows: 40})
		c.commit(header+uC+",C,,,,,,,2024-01-01T00:00:00Z\n", st)
		c.reopen()
		check("after the pending windows were done")
	}},
	{"BudgetRoundTrip", func(c *conformance) {
		ctx := context.Background()
		b1 := extract.RateLimit{Limit: 10, Remaining: 3, Reset: time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC), Known: true}
		b2 := extract.RateLimit{Limit: 10, Remaining: 0, Reset: time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC), Known: true}
		for _, s := range []struct {
			fp string
			b  extract.RateLimit
		}{{"fp1", b1}, {"fp2", b2}} {
			if err := c.tgt.SaveBudget(ctx, s.fp, s.b); err != nil {
				c.t.Fatal(err)
			}
		}
		// An unknown budget does not overwrite a known one.
		if err := c.tgt.SaveBudget(ctx, "fp1", extract.RateLimit{}); err != nil {
			c.t.Fatal(err)
		}
		c.reopen()
		for fp, want := range map[string]extract.RateLimit{"fp1": b1, "fp2": b2, "fp3": {}} {
			got, err := c.tgt.LoadBudget(ctx, fp)
			if err != nil || got.Limit != want.Limit || got.Remaining != want.Remaining || !got.Reset.Equal(want.Reset) || got.Known != want.Known {
				c.t.Errorf("budget %s: %+v (%v), want %+v", fp, got, err, want)
			}
		}
	}},
	{"RunsRecordTheirOutcome", func(c *conformance) {
		ctx := context.Background()
		t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		var want []load.Run
		for i, status := range []string{"ok", "partial", "failed"} {
			r := load.Run{RunID: fmt.Sprintf("r%d", i), StreamID: "s1", StartedAt: t0.Add(time.Duration(i) * time.Hour), Status: "running",
				Until: t0.Add(time.Duration(i) * time.Hour)}
			if i == 1 {
				r.Since = t0.Add(-time.Hour)
			}
			if err := c.tgt.StartRun(ctx, r); err != nil {
				c.t.Fatal(err)
			}
			r.Status, r.FinishedAt, r.Windows, r.Rows, r.Rejects, r.Calls = status, r.StartedAt.Add(time.Minute), i+1, int64(100*i), int64(i), i+2
			r.Changes, r.RefreshCalls = load.Changes{Inserted: int64(10 * i), Replaced: 3, Changed: int64(i), Deleted: int64(2 * i)}, i
			if i > 0 {
				r.RequestIDs = []string{"req_a", fmt.Sprintf("req_%d", i)}
			}
			if status == "failed" {
				r.Error = "export window [...]: LeadLex API 500"
			}
			if err := c.tgt.FinishRun(ctx, r); err != nil {
				c.t.Fatal(err)
			}
			want = append([]load.Run{r}, want...)
		}
		running := load.Run{RunID: "r9", StreamID: "s1", StartedAt: t0.Add(9 * time.Hour), Status: "running"}
		if err := c.tgt.StartRun(ctx, running); err != nil {
			c.t.Fatal(err)
		}
		want = append([]load.Run{running}, want...)
		c.reopen()
		got, err := c.tgt.Runs(ctx, 0)
		if err != nil {
			c.t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			c.t.Errorf("runs\n got  %+v\n want %+v", got, want)
		}
		if got, err := c.tgt.Runs(ctx, 2); err != nil || !reflect.DeepEqual(got, want[:2]) {
			c.t.Errorf("the last 2 runs: %+v (%v)", got, err)
		}
	}},
	{"RejectedRowsAreStored", func(c *conformance) {
		c.commit(header+
			uA+",A,,,,,,,2024-01-01T00:00:00Z\n"+
			"not-a-uuid,Eve,,,,,,,2024-01-01T00:00:00Z\n"+
			uB+",B,,,,,,,yesterday\n", st1)
		c.reopen()
		if got := stripID(c.rows("id", "full_name")); !reflect.DeepEqual(got, map[string]map[string]string{uA: {"full_name": "A"}}) {
			c.t.Errorf("rows %v, want only A", got)
		}
		rej, err := c.tgt.Rejects(context.Background(), 0)
		if err != nil {
			c.t.Fatal(err)
		}
		if len(rej) != 2 {
			c.t.Fatalf("%d rejects stored, want 2: %+v", len(rej), rej)
		}
		for i, want := range []struct {
			line        int64
			raw, reason string
		}{{3, "not-a-uuid,Eve,,,,,,,2024-01-01T00:00:00Z", "id"}, {4, uB + ",B,,,,,,,yesterday", "created_at"}} {
			r := rej[i]
			if r.Line != want.line || r.Raw != want.raw || !strings.Contains(r.Reason, want.reason) || r.RequestID != "req1" ||
				r.StreamID != "s1" || r.RunID != "run1" || !r.Window.From.Equal(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)) || r.RejectedAt.IsZero() {
				c.t.Errorf("reject %d: %+v", i, r)
			}
		}
	}},
	{"AColumnTheWindowOmitsKeepsItsValues", func(c *conformance) {
		// An extra field, then windows without it and with a subset of the
		// standard fields: stored values of the columns a window did not
		// export stay.
		c.commit("id,full_name,email,phone,job_title,company_name,linkedin_url,tags,created_at,city\n"+
			uA+",A,a@x.com,+1,CEO,Acme,,vip,2024-01-01T00:00:00Z,Oslo\n"+
			uB+",B,b@x.com,,,,,,2024-03-01T00:00:00Z,Bergen\n", st1)
		c.commit(header+uA+",A 2,a2@x.com,+1,CEO,Acme,,vip,2024-01-01T00:00:00Z\n", st1)
		c.commit("id,created_at,full_name\n"+uB+",2024-03-01T00:00:00Z,B 2\n", st1)
		got := stripID(c.rows("id", "full_name", "email", "city", "tags"))
		want := map[string]map[string]string{
			uA: {"full_name": "A 2", "email": "a2@x.com", "city": "Oslo", "tags": "[vip]"},
			uB: {"full_name": "B 2", "email": "b@x.com", "city": "Bergen", "tags": "[]"},
		}
		if !reflect.DeepEqual(got, want) {
			c.t.Errorf("got  %v\nwant %v", got, want)
		}
	}},
	{"ANewColumnReachesRowsTheWindowDidNotTouch", func(c *conformance) {
		// Rows in three months, then a window with a new column whose only
		// row lies in a fourth: every stored row has the column, NULL where
		// it was never exported. (Read with no option, a lake whose first
		// file lacks the column shows no row with it: city "" below.)
		c.commit(header+
			uA+",A,,,,,,,2024-01-01T00:00:00Z\n"+
			uB+",B,,,,,,,2024-03-01T00:00:00Z\n"+
			uC+",C,,,,,,,2024-04-01T00:00:00Z\n", st1)
		c.commit("id,created_at,full_name,city\n"+uX+",2024-05-01T00:00:00Z,X,Oslo\n", st1)
		c.reopen()
		got := stripID(c.rows("id", "full_name", "city"))
		want := map[string]map[string]string{
			uA: {"full_name": "A", "city": "<null>"},
			uB: {"full_name": "B", "city": "<null>"},
			uC: {"full_name": "C", "city": "<null>"},
			uX: {"full_name": "X", "city": "Oslo"},
		}
		if !reflect.DeepEqual(got, want) {
			c.t.Errorf("got  %v\nwant %v", got, want)
		}
	}},
	{"SmallWindowsDoNotPileUpFiles", func(c *conformance) {
		// Windows of a few new contacts each, all in one month: a sink that
		// writes files merges a file under half the target size into the
		// next write of its partition, so they do not pile up.
		for w := 0; w < 8; w++ {
			var b strings.Builder
			b.WriteString(header)
			for i := 0; i < 3; i++ {
				fmt.Fprintf(&b, "%08x-0000-4000-8000-%012x,W%d,,,,,,,2024-02-%02dT00:00:00Z\n", w, i, w, 1+w)
			}
			c.commit(b.String(), st1)
		}
		if n := len(c.rows()); n != 24 {
			c.t.Errorf("%d rows, want 24", n)
		}
		if c.sink.files != nil {
			// One, or two once the merged file passes half the target.
			if sizes := c.sink.files(c.t, c.dir); len(sizes) > 2 {
				c.t.Errorf("%d files of %v bytes for 24 rows in one month, want at most 2 (target %d bytes)", len(sizes), sizes, targetFileBytes)
			}
		}
	}},
	{"UpsertsIntoLargeFilesLeaveNoDuplicates", func(c *conformance) {
		// Files are 8 KiB here: 3,000 rows make several of them, each at
		// or above half that size, so replacing ids finds them in files the
		// merge does not rewrite for their size alone.
		var b strings.Builder
		b.WriteString(header)
		for i := 0; i < 3000; i++ {
			fmt.Fprintf(&b, "%08x-0000-4000-8000-%012x,Name %d,n%d@example.com,,,,,,2024-01-%02dT%02d:00:00Z\n", i, i, i, i, 1+i%28, i%24)
		}
		c.commit(b.String(), st1)
		if c.sink.files != nil {
			large := 0
			for _, size := range c.sink.files(c.t, c.dir) {
				if size >= targetFileBytes/2 {
					large++
				}
			}
			if large < 3 {
				c.t.Fatalf("%d files at or above half the target size: the case needs several to mean anything", large)
			}
		}
		b.Reset()
		b.WriteString(header)
		for i := 0; i < 3000; i += 7 {
			fmt.Fprintf(&b, "%08x-0000-4000-8000-%012x,Renamed %d,,,,,,,2024-01-%02dT%02d:00:00Z\n", i, i, i, 1+i%28, i%24)
		}
		c.commit(b.String(), st1)
		got := c.rows("id", "full_name")
		if len(got) != 3000 {
			c.t.Errorf("%d distinct ids, want 3000", len(got))
		}
		for i := 0; i < 3000; i++ {
			id := fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
			want := fmt.Sprintf("Name %d", i)
			if i%7 == 0 {
				want = fmt.Sprintf("Renamed %d", i)
			}
			if got[id]["full_name"] != want {
				c.t.Errorf("%s: %q, want %q", id, got[id]["full_name"], want)
				break
			}
		}
		if c.sink.sorted != nil {
			c.sink.sorted(c.t, c.dir)
		}
	}},
}

func init() {
	conformanceCases = append(conformanceCases, struct {
		name string
		run  func(c *conformance)
	}{"DeletionsAndChanges", func(c *conformance) {
		day := func(m, d int) time.Time { return time.Date(2024, time.Month(m), d, 0, 0, 0, 0, time.UTC) }
		span := func(from, to time.Time) []extract.Window { return []extract.Window{{From: from, To: to}} }
		const uD, uE = "423e4567-e89b-12d3-a456-426614174000", "523e4567-e89b-12d3-a456-426614174000"
		ch := c.commit(header+
			uA+",A,,,,,,,2024-01-02T00:00:00Z\n"+
			uB+",B,,,,,,,2024-01-03T00:00:00Z\n"+
			uC+",C,,,,,,,2024-03-01T00:00:00Z\n"+
			uD+",D,,,,,,,2024-06-01T00:00:00Z\n"+
			uE+",E,,,,,,,2024-04-01T00:00:00Z\n", st1)
		if ch != (load.Changes{Inserted: 5}) {
			c.t.Errorf("first window: %+v, want 5 inserted", ch)
		}
		deleted := func() map[string]bool {
			out := map[string]bool{}
			for id, r := range c.rows("id", "_deleted_at") {
				out[id] = r["_deleted_at"] != "<null>"
			}
			return out
		}
		// A complete refresh of [Jan 1, Apr 1) returns A edited and C: B is
		// gone; E, at the range's end, and D, after it, are not judged.
		ch = c.commitWith(header+uA+",A edited,,,,,,,2024-01-02T00:00:00Z\n"+uC+",C,,,,,,,2024-03-01T00:00:00Z\n", st1, func(i *load.WindowInfo) {
			i.Deletes, i.Refresh = span(day(1, 1), day(4, 1)), true
		})
		if ch != (load.Changes{Replaced: 2, Changed: 1, Deleted: 1}) {
			c.t.Errorf("refresh: %+v, want 2 replaced, 1 changed, 1 deleted", ch)
		}
		want := map[string]bool{uA: false, uB: true, uC: false, uD: false, uE: false}
		if got := deleted(); !reflect.DeepEqual(got, want) {
			c.t.Errorf("deleted after the refresh: %v, want %v", got, want)
		}
		if got := c.rows("id", "full_name")[uB]["full_name"]; got != "B" {
			c.t.Errorf("a soft-deleted contact keeps its values: %q", got)
		}
		// B reappears (live again, and changed); A is now missing from
		// [Jan 1, Feb 1); the already deleted are not counted again.
		ch = c.commitWith(header+uB+",B,,,,,,,2024-01-03T00:00:00Z\n", st1, func(i *load.WindowInfo) {
			i.Deletes, i.Refresh = span(day(1, 1), day(2, 1)), true
		})
		if ch != (load.Changes{Replaced: 1, Changed: 1, Deleted: 1}) {
			c.t.Errorf("B back, A gone: %+v", ch)
		}
		want[uA], want[uB] = true, false
		if got := deleted(); !reflect.DeepEqual(got, want) {
			c.t.Errorf("deleted: %v, want %v", got, want)
		}
		c.reopen()
		// A window with no row at all, hard: D is removed, soft-deleted A
		// stays marked outside the range.
		ch = c.commitWith(header, st1, func(i *load.WindowInfo) {
			i.Deletes, i.HardDelete = span(day(5, 1), day(7, 1)), true
		})
		if ch != (load.Changes{Deleted: 1}) {
			c.t.Errorf("hard delete: %+v", ch)
		}
		delete(want, uD)
		if got := deleted(); !reflect.DeepEqual(got, want) {
			c.t.Errorf("after the hard delete: %v, want %v", got, want)
		}
		// Without Deletes nothing is judged.
		if ch = c.commit(header+uC+",C,,,,,,,2024-03-01T00:00:00Z\n", st1); ch != (load.Changes{Replaced: 1}) {
			c.t.Errorf("a window without deletions: %+v", ch)
		}
		if c.sink.sorted != nil {
			c.sink.sorted(c.t, c.dir)
		}
	}})
}

func stripID(m map[string]map[string]string) map[string]map[string]string {
	for _, r := range m {
		delete(r, "id")
	}
	return m
}

func init() {
	conformanceCases = append(conformanceCases, struct {
		name string
		run  func(c *conformance)
	}{"ForgetAStreamKeepsTheContacts", func(c *conformance) {
		ctx := context.Background()
		st := st1
		st.Coverage = load.Coverage{{To: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), VerifiedAt: time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC), Rows: 1}}
		c.commit(header+uA+",A,,,,,,,2024-01-01T00:00:00Z\n", st)
		other := load.StreamState{StreamID: "s2", Identity: `{"base_url":"http://x","tags":["vip"]}`, Coverage: st.Coverage}
		c.commit(header+uB+",B,,,,,,,2024-01-01T00:00:00Z\n", other)
		if err := c.tgt.ForgetStream(ctx, "s1"); err != nil {
			c.t.Fatal(err)
		}
		if err := c.tgt.ForgetStream(ctx, "never"); err != nil {
			c.t.Errorf("forgetting an unknown stream: %v", err)
		}
		c.reopen()
		streams, err := c.tgt.Streams(ctx)
		if err != nil || len(streams) != 1 || streams[0].StreamID != "s2" {
			c.t.Errorf("streams after forgetting s1: %+v (%v)", streams, err)
		}
		if got, err := c.tgt.LoadState(ctx, "s1", st.Identity); err != nil || len(got.Coverage) != 0 {
			c.t.Errorf("s1 after forgetting: %+v (%v)", got, err)
		}
		if n := len(c.rows()); n != 2 {
			c.t.Errorf("%d contacts after forgetting a stream, want 2", n)
		}
	}})
}

func init() {
	conformanceCases = append(conformanceCases, struct {
		name string
		run  func(c *conformance)
	}{"AnIDWhoseCreatedAtMovesStaysOneContact", func(c *conformance) {
		day := func(m, d int) time.Time { return time.Date(2024, time.Month(m), d, 0, 0, 0, 0, time.UTC) }
		span := func(from, to time.Time) []extract.Window { return []extract.Window{{From: from, To: to}} }
		check := func(when string, want map[string]map[string]string) {
			c.t.Helper()
			got := stripID(c.rows("id", "full_name", "city", "created_at", "_deleted_at"))
			for _, r := range got {
				r["created_at"] = r["created_at"][:10]
			}
			if !reflect.DeepEqual(got, want) {
				c.t.Errorf("%s:\n got  %v\n want %v", when, got, want)
			}
		}
		ch := c.commit("id,full_name,created_at,city\n"+uA+",A,2024-01-02T00:00:00Z,Oslo\n"+uB+",B,2024-01-03T00:00:00Z,Bergen\n", st1)
		if ch != (load.Changes{Inserted: 2}) {
			c.t.Errorf("first window: %+v", ch)
		}
		// A moves to March, in a window without the city: still one A, in
		// March, with its city.
		ch = c.commit("id,full_name,created_at\n"+uA+",A moved,2024-03-05T00:00:00Z\n", st1)
		if ch != (load.Changes{Replaced: 1}) {
			c.t.Errorf("A moved: %+v, want 1 replaced", ch)
		}
		want := map[string]map[string]string{
			uA: {"full_name": "A moved", "city": "Oslo", "created_at": "2024-03-05", "_deleted_at": "<null>"},
			uB: {"full_name": "B", "city": "Bergen", "created_at": "2024-01-03", "_deleted_at": "<null>"},
		}
		check("after the move", want)
		c.reopen()
		check("after reopening", want)
		// One run refreshes March, which lacks A (moved on to May), then
		// May, which has it: A was marked deleted, and is found again by the
		// same run. The later window says so (Revived), so that the run
		// does not count a move as a deletion.
		inRun := func(run string, deletes []extract.Window) func(*load.WindowInfo) {
			return func(i *load.WindowInfo) { i.RunID, i.Refresh, i.Deletes = run, true, deletes }
		}
		ch = c.commitWith("id,full_name,created_at\n", st1, inRun("run2", span(day(3, 1), day(4, 1))))
		if ch != (load.Changes{Deleted: 1}) {
			c.t.Errorf("March without A: %+v, want 1 deleted", ch)
		}
		ch = c.commitWith("id,full_name,created_at\n"+uA+",A moved,2024-05-06T00:00:00Z\n", st1, inRun("run2", span(day(5, 1), day(6, 1))))
		if ch != (load.Changes{Replaced: 1, Changed: 1, Revived: 1}) {
			c.t.Errorf("A found again in May by the same run: %+v, want 1 replaced, 1 changed, 1 revived", ch)
		}
		want[uA]["created_at"] = "2024-05-06"
		check("after the run that moved A to May", want)
		// A contact another run marked deleted that comes back is a change,
		// not a move of this run.
		ch = c.commitWith("id,full_name,created_at\n", st1, inRun("run3", span(day(5, 1), day(6, 1))))
		if ch != (load.Changes{Deleted: 1}) {
			c.t.Errorf("May without A: %+v, want 1 deleted", ch)
		}
		ch = c.commitWith("id,full_name,created_at\n"+uA+",A moved,2024-02-07T00:00:00Z\n", st1, inRun("run4", span(day(2, 1), day(3, 1))))
		if ch != (load.Changes{Replaced: 1, Changed: 1}) {
			c.t.Errorf("A back in February in the next run: %+v, want 1 replaced, 1 changed", ch)
		}
		want[uA]["created_at"] = "2024-02-07"
		check("after A came back in February", want)
		if c.sink.sorted != nil {
			c.sink.sorted(c.t, c.dir)
		}
	}}, struct {
		name string
		run  func(c *conformance)
	}{"TheLastRowOfAnIDWinsAcrossPartitions", func(c *conformance) {
		// One response holds A in July then August, B in August then July,
		// and C, stored in June, in July then August.
		c.commit(header+uC+",C June,,,,,,,2024-06-01T00:00:00Z\n", st1)
		ch := c.commit(header+
			uA+",A July,,,,,,,2024-07-10T00:00:00Z\n"+
			uB+",B August,,,,,,,2024-08-10T00:00:00Z\n"+
			uC+",C July,,,,,,,2024-07-12T00:00:00Z\n"+
			uA+",A August,,,,,,,2024-08-11T00:00:00Z\n"+
			uB+",B July,,,,,,,2024-07-11T00:00:00Z\n"+
			uC+",C August,,,,,,,2024-08-12T00:00:00Z\n", st1)
		if ch != (load.Changes{Inserted: 2, Replaced: 1}) {
			c.t.Errorf("%+v, want 2 inserted, 1 replaced", ch)
		}
		want := map[string]map[string]string{
			uA: {"full_name": "A August", "created_at": "2024-08-11"},
			uB: {"full_name": "B July", "created_at": "2024-07-11"},
			uC: {"full_name": "C August", "created_at": "2024-08-12"},
		}
		for _, when := range []string{"after the window", "after reopening"} {
			got := stripID(c.rows("id", "full_name", "created_at"))
			for _, r := range got {
				r["created_at"] = r["created_at"][:10]
			}
			if !reflect.DeepEqual(got, want) {
				c.t.Errorf("%s:\n got  %v\n want %v", when, got, want)
			}
			c.reopen()
		}
	}})
}

func init() {
	conformanceCases = append(conformanceCases, struct {
		name string
		run  func(c *conformance)
	}{"TheDeletionGuardHoldsBackAWindow", func(c *conformance) {
		// 20 contacts in January, 4 in March; a refresh of January that
		// lacks half of them, or all, is held back: nothing of it (rows,
		// deletions, state) is committed, soft or hard; a few deletions
		// (the allowance) or a small share pass; at MaxRatio 1 all pass.
		ctx := context.Background()
		jan := []extract.Window{{From: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC)}}
		mar := []extract.Window{{From: time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2024, 4, 1, 0, 0, 0, 0, time.UTC)}}
		id := func(i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i) }
		body := func(name string, ids ...int) string {
			var b strings.Builder
			b.WriteString(header)
			for _, i := range ids {
				day, month := 1+i%20, 1
				if i >= 20 {
					day, month = 1+i-20, 3
				}
				fmt.Fprintf(&b, "%s,%s %d,,,,,,,2024-%02d-%02dT00:00:00Z\n", id(i), name, i, month, day)
			}
			return b.String()
		}
		all := make([]int, 24)
		for i := range all {
			all[i] = i
		}
		st := st1
		st.Coverage = load.Coverage{{To: time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC), VerifiedAt: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), Rows: 24}}
		c.commit(body("A", all...), st)
		before, committed := c.rows("id", "full_name", "_deleted_at"), st
		guard := load.DeleteGuard{MaxRatio: 0.2, Allowed: 3}
		next := st
		next.Coverage = st.Coverage.Add(load.Segment{From: jan[0].From, To: jan[0].To, VerifiedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Rows: 10})
		tryCommit := func(csv string, f func(*load.WindowInfo)) (load.Changes, error) {
			c.t.Helper()
			info := c.info()
			info.Deletes, info.Refresh, info.DeleteGuard = jan, true, guard
			if f != nil {
				f(&info)
			}
			rejects, rows := c.attempt(csv, info)
			ch, err := c.tgt.Commit(ctx, info, rejects, load.WindowStats{Rows: rows, Calls: 1}, next)
			if err != nil {
				if aerr := c.tgt.Abort(ctx); aerr != nil {
					c.t.Fatal(aerr)
				}
			}
			return ch, err
		}
		held := func(what string, err error, deleted, stored int64) {
			c.t.Helper()
			var ge *load.DeleteGuardError
			if !errors.As(err, &ge) || ge.Deleted != deleted || ge.Stored != stored {
				c.t.Fatalf("%s: %v, want a *load.DeleteGuardError of %d deletions of %d stored", what, err, deleted, stored)
			}
			if got := c.rows("id", "full_name", "_deleted_at"); !reflect.DeepEqual(got, before) {
				c.t.Errorf("%s: the stored contacts changed", what)
			}
			if got, err := c.tgt.LoadState(ctx, st.StreamID, st.Identity); err != nil || !reflect.DeepEqual(got.Coverage, committed.Coverage) {
				c.t.Errorf("%s: the stream state moved: %+v (%v)", what, got, err)
			}
		}
		firstHalf := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
		_, err := tryCommit(body("B", firstHalf...), nil)
		held("half of January missing", err, 10, 20)
		_, err = tryCommit(body("B", firstHalf...), func(i *load.WindowInfo) { i.HardDelete = true })
		held("half of January missing, hard", err, 10, 20)
		_, err = tryCommit(header, nil)
		held("an empty answer", err, 20, 20)
		c.reopen()
		// A window that can be grouped (not a refresh) is held back too.
		_, err = tryCommit(header, func(i *load.WindowInfo) { i.Refresh = false })
		held("an empty answer in a window that is no refresh", err, 20, 20)
		// Within the allowance, or a small share: applied.
		ch, err := tryCommit(body("A", 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16), nil)
		if err != nil || ch.Deleted != 3 {
			c.t.Fatalf("3 deletions of 20 (the allowance): %+v %v", ch, err)
		}
		before, committed = c.rows("id", "full_name", "_deleted_at"), next
		_, err = tryCommit(body("A", 20, 21), func(i *load.WindowInfo) { i.Deletes, i.DeleteGuard.Allowed = mar, 0 })
		held("half of March missing, no allowance left", err, 2, 4)
		ch, err = tryCommit(body("A", 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), func(i *load.WindowInfo) { i.DeleteGuard.Allowed = 0 })
		if err != nil || ch.Deleted != 1 {
			c.t.Fatalf("1 deletion of 17, no allowance left: %+v %v", ch, err)
		}
		// MaxRatio 1 (the user's confirmation): applied.
		ch, err = tryCommit(body("A", 0, 1), func(i *load.WindowInfo) { i.DeleteGuard = load.DeleteGuard{MaxRatio: 1} })
		if err != nil || ch.Deleted != 14 {
			c.t.Fatalf("with MaxRatio 1: %+v %v", ch, err)
		}
		live := 0
		for _, r := range c.rows("id", "_deleted_at") {
			if r["_deleted_at"] == "<null>" {
				live++
			}
		}
		if live != 6 {
			c.t.Errorf("%d live contacts at the end, want 6 (2 of January, 4 of March)", live)
		}
	}})
}
