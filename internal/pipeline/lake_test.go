package pipeline_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/duckdb/duckdb-go/v2"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/fakeapi"
	"github.com/leadlex/leadlex-etl/internal/load"
	"github.com/leadlex/leadlex-etl/internal/parquetio"
	"github.com/leadlex/leadlex-etl/internal/pipeline"
)

func openLake(t testing.TB, dir string, opts load.LakeOptions) *load.Lake {
	t.Helper()
	l, err := load.OpenLake(context.Background(), dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func syncTargets(t testing.TB, url string, a syncArgs, targets ...load.Target) (pipeline.Result, error) {
	t.Helper()
	if a.limit == 0 {
		a.limit = extract.MaxLimit
	}
	c := &extract.Client{BaseURL: url, Key: extract.NewAPIKey(testKey), Retry: extract.RetryPolicy{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}}
	var now func() time.Time
	if !a.now.IsZero() {
		now = func() time.Time { return a.now }
	}
	return pipeline.Sync(context.Background(), pipeline.Options{
		Client: c, Query: extract.Query{Limit: a.limit, Tags: a.tags, ListID: a.listID, Fields: a.fields},
		Since: a.since, Until: a.until, MaxCalls: a.maxCalls, Lookback: a.lookback, Targets: targets, Now: now, NewStream: true,
	})
}

// memDuckDB is an in-memory DuckDB for reading lakes.
func memDuckDB(t testing.TB) *sql.DB {
	t.Helper()
	c, err := duckdb.NewConnector("", nil)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	t.Cleanup(func() { db.Close() })
	return db
}

// lakeFrom reads a lake's data the way a DuckDB user would: its contacts
// folder with DuckDB's defaults (Hive partitions detected, as BIGINT).
func lakeFrom(dir string) string {
	return fmt.Sprintf("read_parquet('%s/contacts/**/*.parquet')", dir)
}

func lakeFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(dir, "contacts"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".parquet") {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func TestParquetRoundTripEveryPartitioning(t *testing.T) {
	for _, tc := range []struct {
		part     string
		contacts int
		order    fakeapi.Order
	}{
		// Day partitions of a sparse dataset are many small files; ascending
		// windows touch each of them about once.
		{"month", 20000, fakeapi.OrderRandom},
		{"day", 5000, fakeapi.OrderAsc},
		{"year", 20000, fakeapi.OrderDesc},
	} {
		part := tc.part
		t.Run(part, func(t *testing.T) {
			srv, url := startFake(t, fakeapi.Config{Contacts: tc.contacts, Seed: 5, Order: tc.order})
			ds := srv.Dataset()
			dir := filepath.Join(t.TempDir(), "lake")
			lake := openLake(t, dir, load.LakeOptions{PartitionBy: load.Partitioning(part)})
			if _, err := syncTargets(t, url, syncArgs{limit: 5000}, lake); err != nil {
				t.Fatal(err)
			}
			db := memDuckDB(t)
			checkEqualsDatasetFrom(t, db, lakeFrom(dir), ds, nil)

			// Partition values agree with created_at in UTC.
			cond := map[string]string{
				"year":  "year != year(created_at AT TIME ZONE 'UTC')",
				"month": "year != year(created_at AT TIME ZONE 'UTC') OR month != month(created_at AT TIME ZONE 'UTC')",
				"day":   "year != year(created_at AT TIME ZONE 'UTC') OR month != month(created_at AT TIME ZONE 'UTC') OR day != day(created_at AT TIME ZONE 'UTC')",
			}[part]
			var bad int
			if err := db.QueryRow(`SELECT count(*) FROM ` + lakeFrom(dir) + ` WHERE ` + cond).Scan(&bad); err != nil || bad != 0 {
				t.Errorf("%d rows in the wrong partition (%v)", bad, err)
			}
			var typ string
			if err := db.QueryRow(`SELECT typeof(created_at) || ' ' || typeof(tags) || ' ' || typeof(id) || ' ' || typeof(year) FROM ` + lakeFrom(dir) + ` LIMIT 1`).Scan(&typ); err != nil || typ != "TIMESTAMP WITH TIME ZONE VARCHAR[] VARCHAR BIGINT" {
				t.Errorf("types %q (%v)", typ, err)
			}
			checkWithPqarrow(t, lakeFiles(t, dir), ds)
			checkBloomFilters(t, db, lakeFiles(t, dir), ds)
			checkWithHyparquet(t, lakeFiles(t, dir), ds)
			checkWithPolars(t, dir, load.Partitioning(part), ds)
		})
	}
}

// checkBloomFilters asks DuckDB to probe each file's bloom filter on id:
// a file never excludes an id it holds, and excludes almost every other.
func checkBloomFilters(t *testing.T, db *sql.DB, files []string, ds *fakeapi.Dataset) {
	t.Helper()
	for _, f := range files[:min(len(files), 3)] {
		var id string
		if err := db.QueryRow(fmt.Sprintf(`SELECT id FROM read_parquet('%s') LIMIT 1`, f)).Scan(&id); err != nil {
			t.Fatal(err)
		}
		var excluded, groups int
		q := `SELECT count(*) FILTER (WHERE bloom_filter_excludes), count(*) FROM parquet_bloom_probe(?, 'id', ?)`
		if err := db.QueryRow(q, f, id).Scan(&excluded, &groups); err != nil {
			t.Fatal(err)
		}
		if groups == 0 || excluded == groups {
			t.Errorf("%s: the bloom filter excludes id %s, which the file holds (%d of %d row groups)", f, id, excluded, groups)
		}
		absent := 0
		for i := 0; i < 20; i++ {
			if err := db.QueryRow(q, f, fmt.Sprintf("ffffffff-0000-4000-8000-%012d", i)).Scan(&excluded, &groups); err != nil {
				t.Fatal(err)
			}
			if excluded == groups {
				absent++
			}
		}
		if absent < 15 {
			t.Errorf("%s: the bloom filter excluded only %d of 20 absent ids", f, absent)
		}
	}
}

// textColumns are the standard text fields, compared value by value with
// the dataset by every reader.
var textColumns = []string{"full_name", "email", "phone", "job_title", "company_name", "linkedin_url"}

// checkWithPqarrow reads every file with arrow-go's Parquet reader, an
// implementation independent of the writer, and compares with the dataset.
func checkWithPqarrow(t *testing.T, files []string, ds *fakeapi.Dataset) {
	t.Helper()
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	seen := 0
	for _, f := range files {
		rdr, err := file.OpenParquetFile(f, false)
		if err != nil {
			t.Fatal(err)
		}
		fr, err := pqarrow.NewFileReader(rdr, pqarrow.ArrowReadProperties{}, alloc)
		if err != nil {
			t.Fatal(err)
		}
		// Every row group says it is sorted by created_at, then id.
		schema := rdr.MetaData().Schema
		want := []int{schema.ColumnIndexByName("created_at"), schema.ColumnIndexByName("id")}
		for g := 0; g < rdr.NumRowGroups(); g++ {
			sorting := rdr.MetaData().RowGroup(g).SortingColumns()
			if len(sorting) != 2 || int(sorting[0].ColumnIdx) != want[0] || int(sorting[1].ColumnIdx) != want[1] || sorting[0].Descending || sorting[1].Descending {
				t.Errorf("%s row group %d: sorting_columns %+v, want created_at then id, ascending", f, g, sorting)
			}
		}
		tbl, err := fr.ReadTable(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		sc := tbl.Schema()
		col := func(name string) *arrow.Chunked {
			idx := sc.FieldIndices(name)
			if len(idx) == 0 {
				t.Fatalf("%s: no column %s", f, name)
			}
			return tbl.Column(idx[0]).Data()
		}
		if ts, ok := sc.Field(sc.FieldIndices("created_at")[0]).Type.(*arrow.TimestampType); !ok || ts.Unit != arrow.Microsecond || ts.TimeZone != "UTC" {
			t.Fatalf("%s: created_at is %s, want timestamp[us, tz=UTC]", f, sc.Field(sc.FieldIndices("created_at")[0]).Type)
		}
		if lt, ok := sc.Field(sc.FieldIndices("tags")[0]).Type.(*arrow.ListType); !ok || lt.Elem().ID() != arrow.STRING {
			t.Fatalf("%s: tags is %s, want a list of utf8", f, sc.Field(sc.FieldIndices("tags")[0]).Type)
		}
		for _, name := range textColumns {
			if typ := sc.Field(sc.FieldIndices(name)[0]).Type; typ.ID() != arrow.STRING {
				t.Fatalf("%s: %s is %s, want utf8", f, name, typ)
			}
		}
		ids, tags, created := col("id"), col("tags"), col("created_at")
		texts := make([]*arrow.Chunked, len(textColumns))
		for k, name := range textColumns {
			texts[k] = col(name)
		}
		for c := range ids.Chunks() {
			idArr := ids.Chunk(c).(*array.String)
			tagArr := tags.Chunk(c).(*array.List)
			tagVals := tagArr.ListValues().(*array.String)
			tsArr := created.Chunk(c).(*array.Timestamp)
			for r := 0; r < idArr.Len(); r++ {
				i, ok := ds.Index(idArr.Value(r))
				if !ok {
					t.Fatalf("pqarrow: unknown id %s", idArr.Value(r))
				}
				want := ds.Contact(i)
				for k, name := range textColumns {
					arr := texts[k].Chunk(c).(*array.String)
					got := ""
					if arr.IsValid(r) {
						got = arr.Value(r)
						if got == "" {
							t.Fatalf("pqarrow: contact %s: %s is an empty string, want NULL", want.ID, name)
						}
					}
					if exp, _ := want.Field(name); got != exp {
						t.Fatalf("pqarrow: contact %s: %s = %q, want %q", want.ID, name, got, exp)
					}
				}
				start, end := tagArr.ValueOffsets(r)
				var got []string
				for k := start; k < end; k++ {
					got = append(got, tagVals.Value(int(k)))
				}
				if fmt.Sprint(got) != fmt.Sprint(want.Tags) || int64(tsArr.Value(r)) != want.CreatedAt.UnixMicro() || tagArr.IsNull(r) {
					t.Fatalf("pqarrow: contact %s: got %v %d, want %v %d", want.ID, got, tsArr.Value(r), want.Tags, want.CreatedAt.UnixMicro())
				}
				seen++
			}
		}
		tbl.Release()
		rdr.Close()
	}
	if seen != ds.Len() {
		t.Errorf("pqarrow read %d rows, want %d", seen, ds.Len())
	}
}

// checkWithHyparquet reads every file with hyparquet, a JavaScript reader,
// through tools/js/read-parquet.mjs (make test installs it).
func checkWithHyparquet(t *testing.T, files []string, ds *fakeapi.Dataset) {
	t.Helper()
	out := runNode(t, "read-parquet.mjs", files...)
	seen := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		checkJSONRow(t, "hyparquet", sc.Bytes(), ds)
		seen++
	}
	if seen != ds.Len() {
		t.Errorf("hyparquet read %d rows, want %d", seen, ds.Len())
	}
}

// runNode runs one of the tools/js scripts and returns its stdout.
func runNode(t *testing.T, script string, args ...string) []byte {
	t.Helper()
	path, err := filepath.Abs("../../tools/js/" + script)
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range []string{"hyparquet", "nodejs-polars"} {
		if _, err := os.Stat(filepath.Join(filepath.Dir(path), "node_modules", dep)); err != nil {
			t.Fatalf("%s is not installed: run make test, which runs npm ci --prefix tools/js (%v)", dep, err)
		}
	}
	cmd := exec.Command("node", append([]string{path}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node %s: %v\n%s", script, err, stderr.String())
	}
	return out
}

// checkJSONRow compares one row a JavaScript reader printed with the
// dataset, every standard field value by value, and returns it.
func checkJSONRow(t *testing.T, reader string, line []byte, ds *fakeapi.Dataset) (map[string]any, fakeapi.Contact) {
	t.Helper()
	var rec map[string]any
	if err := json.Unmarshal(line, &rec); err != nil {
		t.Fatalf("%s output %q: %v", reader, line, err)
	}
	id, _ := rec["id"].(string)
	i, ok := ds.Index(id)
	if !ok {
		t.Fatalf("%s: unknown id %v", reader, rec["id"])
	}
	want := ds.Contact(i)
	for _, name := range textColumns {
		got, _ := rec[name].(string)
		if exp, _ := want.Field(name); got != exp || (exp == "" && rec[name] != nil) {
			t.Fatalf("%s: contact %s: %s = %#v, want %q (NULL if empty)", reader, id, name, rec[name], exp)
		}
	}
	var tags []string
	if list, ok := rec["tags"].([]any); ok {
		for _, v := range list {
			tags = append(tags, fmt.Sprint(v))
		}
	}
	if fmt.Sprint(tags) != fmt.Sprint(want.Tags) || !sameInstant(rec["created_at"], want.CreatedAt) {
		t.Fatalf("%s: contact %s: got %v, want %v %s", reader, id, rec, want.Tags, want.CreatedAt)
	}
	return rec, want
}

// checkWithPolars reads the lake's contacts folder with Polars and no
// option, as a Polars user would, and compares with the dataset: types
// (partition columns as integers), values, and partition values.
func checkWithPolars(t *testing.T, lake string, part load.Partitioning, ds *fakeapi.Dataset) {
	t.Helper()
	out := runNode(t, "read-polars.mjs", filepath.Join(lake, "contacts"))
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	if !sc.Scan() {
		t.Fatal("polars printed nothing")
	}
	var schema map[string]string
	if err := json.Unmarshal(sc.Bytes(), &schema); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"created_at": "Datetime(us,UTC)", "tags": "List(DataType(String))", "id": "String", "email": "String"}
	for _, c := range part.Columns() {
		want[c] = "Int64"
	}
	for col, typ := range want {
		if schema[col] != typ {
			t.Errorf("polars reads %s as %q, want %q (schema %v)", col, schema[col], typ, schema)
		}
	}
	seen := 0
	for sc.Scan() {
		rec, c := checkJSONRow(t, "polars", sc.Bytes(), ds)
		at := c.CreatedAt.UTC()
		for col, v := range map[string]int{"year": at.Year(), "month": int(at.Month()), "day": at.Day()} {
			if got, ok := rec[col]; ok && got != float64(v) {
				t.Fatalf("polars: contact %s: %s = %v, want %d", c.ID, col, got, v)
			}
		}
		seen++
	}
	if seen != ds.Len() {
		t.Errorf("polars read %d rows, want %d", seen, ds.Len())
	}
}

func sameInstant(v any, want time.Time) bool {
	switch v := v.(type) {
	case string:
		if got, err := time.Parse(time.RFC3339Nano, v); err == nil {
			return got.Equal(want)
		}
		var us int64
		if _, err := fmt.Sscan(v, &us); err == nil {
			return us == want.UnixMicro()
		}
	case float64:
		return int64(v) == want.UnixMicro()
	}
	return false
}

func TestParquetResyncsNeverDuplicateAndKeepFewFiles(t *testing.T) {
	srv, url := startFake(t, fakeapi.Config{Contacts: 30000, Seed: 6, Order: fakeapi.OrderAsc})
	ds := srv.Dataset()
	dir := filepath.Join(t.TempDir(), "lake")
	lake := openLake(t, dir, load.LakeOptions{PartitionBy: "year"})
	at := func(i int) time.Time { return ds.Contact(i).CreatedAt }
	// Overlapping ranges, then twenty small incremental windows over the
	// last year, then everything again.
	for _, w := range [][2]time.Time{{at(1000), at(20000)}, {at(15000), at(29000)}} {
		if _, err := syncTargets(t, url, syncArgs{limit: 4000, since: w[0], until: w[1]}, lake); err != nil {
			t.Fatal(err)
		}
	}
	for k := 0; k < 20; k++ {
		from, to := at(25000+k*240), at(25000+(k+1)*240+100)
		if _, err := syncTargets(t, url, syncArgs{since: from, until: to}, lake); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := syncTargets(t, url, syncArgs{since: at(0).Add(-time.Hour)}, lake); err != nil {
		t.Fatal(err)
	}
	db := memDuckDB(t)
	checkEqualsDatasetFrom(t, db, lakeFrom(dir), ds, nil)
	perPart := map[string]int{}
	for _, f := range lakeFiles(t, dir) {
		perPart[filepath.Dir(f)]++
	}
	for p, n := range perPart {
		if n > 2 {
			t.Errorf("partition %s has %d files after 23 syncs, want at most 2", p, n)
		}
	}
}

func TestParquetFilesRollAtTargetSize(t *testing.T) {
	srv, url := startFake(t, fakeapi.Config{Contacts: 40000, Seed: 3})
	dir := filepath.Join(t.TempDir(), "lake")
	const target = 48 << 10
	lake := openLake(t, dir, load.LakeOptions{PartitionBy: "year", TargetFileBytes: target, Parquet: parquetio.Options{RowGroupRows: 1000}})
	if _, err := syncTargets(t, url, syncArgs{}, lake); err != nil {
		t.Fatal(err)
	}
	files := lakeFiles(t, dir)
	perPart := map[string]int{}
	for _, f := range files {
		st, _ := os.Stat(f)
		if st.Size() > 2*target {
			t.Errorf("%s is %d bytes, target %d", f, st.Size(), target)
		}
		perPart[filepath.Dir(f)]++
	}
	for p, n := range perPart {
		if n < 2 {
			t.Errorf("partition %s has %d file(s): ~6,700 rows did not roll over at %d bytes", p, n, target)
		}
	}
	var total int64
	for _, f := range files {
		st, _ := os.Stat(f)
		total += st.Size()
	}
	t.Logf("%d files in %d partitions, %d bytes on average (target %d)", len(files), len(perPart), total/int64(len(files)), target)
	checkEqualsDatasetFrom(t, memDuckDB(t), lakeFrom(dir), srv.Dataset(), nil)
}

func TestBothSinksFromOneExtract(t *testing.T) {
	srv, url := startFake(t, fakeapi.Config{Contacts: 20000, Seed: 13, Order: fakeapi.OrderDesc})
	dir := t.TempDir()
	db := openDB(t, filepath.Join(dir, "w.duckdb"))
	lake := openLake(t, filepath.Join(dir, "lake"), load.LakeOptions{})
	res, err := syncTargets(t, url, syncArgs{limit: 5000}, db, lake)
	if err != nil {
		t.Fatal(err)
	}
	if srv.Calls() != int64(res.Calls) {
		t.Errorf("server saw %d calls, the run reports %d", srv.Calls(), res.Calls)
	}
	checkEqualsDataset(t, db.DB(), srv.Dataset(), nil)
	checkEqualsDatasetFrom(t, db.DB(), lakeFrom(filepath.Join(dir, "lake")), srv.Dataset(), nil)
	checkSinksEqual(t, db.DB(), filepath.Join(dir, "lake"))
	// One target behind the other: the next run plans from the one behind.
	lake2 := openLake(t, filepath.Join(dir, "lake2"), load.LakeOptions{})
	res, err = syncTargets(t, url, syncArgs{limit: 5000}, db, lake2)
	if err != nil {
		t.Fatal(err)
	}
	if res.Calls < 4 {
		t.Errorf("a run with a new, empty lake used %d calls: it did not export all history", res.Calls)
	}
	checkSinksEqual(t, db.DB(), filepath.Join(dir, "lake2"))
}

// checkSinksEqual fails unless the DuckDB table and the lake hold the same
// rows, lineage included.
func checkSinksEqual(t testing.TB, db *sql.DB, lake string) {
	t.Helper()
	cols := `id::VARCHAR, full_name, email, phone, job_title, company_name, linkedin_url, tags, created_at, _request_id, _loaded_at`
	for _, q := range []string{
		`SELECT count(*) FROM (SELECT ` + cols + ` FROM contacts EXCEPT ALL SELECT ` + cols + ` FROM ` + lakeFrom(lake) + `)`,
		`SELECT count(*) FROM (SELECT ` + cols + ` FROM ` + lakeFrom(lake) + ` EXCEPT ALL SELECT ` + cols + ` FROM contacts)`,
	} {
		var n int
		if err := db.QueryRow(q).Scan(&n); err != nil || n != 0 {
			t.Errorf("%d rows differ between DuckDB and the lake (%v)", n, err)
		}
	}
}
