package parquetio_test

import (
	"bufio"
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	aparquet "github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	_ "github.com/duckdb/duckdb-go/v2"
	"github.com/parquet-go/parquet-go"

	"github.com/leadlex/leadlex-etl/internal/parquetio"
	"github.com/leadlex/leadlex-etl/internal/transform"
	"github.com/leadlex/leadlex-etl/schemas"
)

// pqCSVTagged has every standard column plus an extra field "region", with
// values that trip CSV and Parquet writers: separators, quotes and newlines
// inside fields, non-ASCII text, empty optional fields (NULL), empty and
// blank tags (an empty list), and microsecond instants far before 1970 and
// after 2038 (outside the range of nanosecond timestamps too).
const pqCSVTagged = "id,full_name,email,phone,job_title,company_name,linkedin_url,tags,created_at,region\n" +
	`0b5b3c3e-64a8-4e2a-9d55-2b1a0c8f0001,"Doe, Jane",jane@example.com,+1 555 0100,"Head of ""Growth""",Acme,https://www.linkedin.com/in/jane,"lead, priority",2024-03-01T12:34:56.123456Z,EU` + "\n" +
	`0B5B3C3E-64A8-4E2A-9D55-2B1A0C8F0002,"Zoë Ångström-山田 🚀","zoe+tag@exämple.org",,,"Ünïcødé, Inc.",,,1969-07-20T20:17:40.000001Z,` + "\n" +
	`0b5b3c3e-64a8-4e2a-9d55-2b1a0c8f0003,"Multi` + "\n" + `Line ""Name""",m@example.com,,"CEO",,,"  ,  ",2040-02-29T23:59:59.999999+02:00,APAC` + "\n" +
	`0b5b3c3e-64a8-4e2a-9d55-2b1a0c8f0004,Old Timer,,,,,,"history,   ,first",1677-09-21T00:12:43.145224Z,` + "\n" +
	`0b5b3c3e-64a8-4e2a-9d55-2b1a0c8f0005,Far Future,,,,"Comma,, Co",,solo,2262-04-12T23:47:16.854776Z,"NA, East"` + "\n"

// pqCSVUntagged lacks tags, phone and region: its batch writes them NULL.
const pqCSVUntagged = "id,full_name,email,created_at\n" +
	`1b5b3c3e-64a8-4e2a-9d55-2b1a0c8f0001,No Tags,nt@example.com,1970-01-01T00:00:00Z` + "\n" +
	`1b5b3c3e-64a8-4e2a-9d55-2b1a0c8f0002,,,1969-12-31T23:59:59.999999Z` + "\n" +
	`1b5b3c3e-64a8-4e2a-9d55-2b1a0c8f0003,"Tab	and \ backslash",,2038-01-19T03:14:08Z` + "\n"

// pqColumns is what the round-trip files hold: the standard columns and
// "region".
func pqColumns() []schemas.Column {
	return append(append([]schemas.Column(nil), schemas.Contacts...), schemas.Column{Name: "region", Kind: schemas.Text})
}

// pqBatches reads csv with transform in batches of batchRows rows, retaining
// each batch; the caller releases them.
func pqBatches(t testing.TB, alloc memory.Allocator, csv string, batchRows int) []arrow.RecordBatch {
	t.Helper()
	rd, err := transform.NewReader(strings.NewReader(csv), transform.Options{BatchRows: batchRows, Alloc: alloc})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Release()
	var out []arrow.RecordBatch
	for rd.Next() {
		b := rd.RecordBatch()
		b.Retain()
		out = append(out, b)
	}
	if err := rd.Err(); err != nil {
		t.Fatal(err)
	}
	if n := len(rd.Rejects()); n > 0 {
		t.Fatalf("%d rows rejected: %+v", n, rd.Rejects())
	}
	return out
}

func pqRelease(batches []arrow.RecordBatch) {
	for _, b := range batches {
		b.Release()
	}
}

// pqSources returns three source batches: two from pqCSVTagged (3 and 2
// rows), one from pqCSVUntagged.
func pqSources(t testing.TB, alloc memory.Allocator) []arrow.RecordBatch {
	t.Helper()
	src := pqBatches(t, alloc, pqCSVTagged, 3)
	src = append(src, pqBatches(t, alloc, pqCSVUntagged, 10)...)
	if len(src) != 3 {
		pqRelease(src)
		t.Fatalf("%d source batches, want 3", len(src))
	}
	return src
}

// pqShuffled returns a ref to every row of src in a fixed shuffled order,
// with the first row picked a second time at the end.
func pqShuffled(src []arrow.RecordBatch) []parquetio.RowRef {
	var refs []parquetio.RowRef
	for b, rec := range src {
		for r := range rec.NumRows() {
			refs = append(refs, parquetio.RowRef{Batch: int32(b), Row: int32(r)})
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(refs), func(i, j int) { refs[i], refs[j] = refs[j], refs[i] })
	return append(refs, refs[0])
}

// pqWrite writes the rows refs picks to a new file at path and returns the
// writer's row count.
func pqWrite(t testing.TB, path string, cols []schemas.Column, src []arrow.RecordBatch, refs []parquetio.RowRef, opts parquetio.Options) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := parquetio.NewWriter(f, cols, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(src, refs); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return w.Rows()
}

// pqValue is the value of row i of arr, normalised for comparison: nil for
// NULL, string for text (16-byte UUIDs formatted), []string for a list
// (never nil), int64 microseconds for a timestamp, int64 for an integer.
func pqValue(t testing.TB, arr arrow.Array, i int) any {
	t.Helper()
	if arr.IsNull(i) {
		return nil
	}
	switch a := arr.(type) {
	case *array.String:
		return a.Value(i)
	case *array.LargeString:
		return a.Value(i)
	case *array.Dictionary:
		return pqValue(t, a.Dictionary(), a.GetValueIndex(i))
	case *array.FixedSizeBinary:
		u := a.Value(i)
		return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	case *array.Timestamp:
		v := int64(a.Value(i))
		switch a.DataType().(*arrow.TimestampType).Unit {
		case arrow.Second:
			return v * 1e6
		case arrow.Millisecond:
			return v * 1e3
		case arrow.Nanosecond:
			if v < 0 && v%1000 != 0 {
				return v/1000 - 1
			}
			return v / 1000
		}
		return v
	case *array.Int64:
		return a.Value(i)
	case array.ListLike:
		lo, hi := a.ValueOffsets(i)
		out := []string{}
		for k := lo; k < hi; k++ {
			out = append(out, pqValue(t, a.ListValues(), int(k)).(string))
		}
		return out
	}
	t.Fatalf("no test value for %s", arr.DataType())
	return nil
}

// pqWant returns the rows refs picks from src, each with the values of
// cols in order (nil where a batch lacks a column).
func pqWant(t testing.TB, cols []schemas.Column, src []arrow.RecordBatch, refs []parquetio.RowRef) [][]any {
	t.Helper()
	rows := make([][]any, len(refs))
	for i, r := range refs {
		rec := src[r.Batch]
		row := make([]any, len(cols))
		for j, c := range cols {
			if idx := rec.Schema().FieldIndices(c.Name); len(idx) > 0 {
				row[j] = pqValue(t, rec.Column(idx[0]), int(r.Row))
			}
		}
		rows[i] = row
	}
	return rows
}

// pqCompare fails unless got equals want value by value and null by null.
func pqCompare(t testing.TB, reader string, cols []schemas.Column, got, want [][]any) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d rows, want %d", reader, len(got), len(want))
	}
	bad := 0
	for i := range want {
		for j, c := range cols {
			if !reflect.DeepEqual(got[i][j], want[i][j]) {
				t.Errorf("%s: row %d column %s = %#v, want %#v", reader, i, c.Name, got[i][j], want[i][j])
				if bad++; bad > 20 {
					t.FailNow()
				}
			}
		}
	}
}

// pqFixture writes the round-trip rows (three source batches, shuffled
// refs) with opts and returns the file, its columns and the rows expected
// back in ref order.
func pqFixture(t *testing.T, opts parquetio.Options) (path string, cols []schemas.Column, want [][]any) {
	t.Helper()
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	src := pqSources(t, alloc)
	defer pqRelease(src)
	cols = pqColumns()
	refs := pqShuffled(src)
	path = filepath.Join(t.TempDir(), "contacts.parquet")
	pqWrite(t, path, cols, src, refs, opts)
	return path, cols, pqWant(t, cols, src, refs)
}

// TestParquetRoundTrip writes rows picked across three transform batches in
// a shuffled order, reads the file back with ReadFile, then writes
// the batches read back (pqarrow's types) to a second file in reverse order
// and reads that too.
func TestParquetRoundTrip(t *testing.T) {
	withLine := append(pqColumns(), schemas.Column{Name: transform.LineField, Kind: schemas.Int64, Required: true})
	tests := []struct {
		name string
		cols []schemas.Column
		opts parquetio.Options
	}{
		{"zstd by default", pqColumns(), parquetio.Options{}},
		{"snappy", pqColumns(), parquetio.Options{Compression: "snappy"}},
		{"gzip", pqColumns(), parquetio.Options{Compression: "gzip"}},
		{"none, tiny row groups and pages", pqColumns(), parquetio.Options{Compression: "none", RowGroupRows: 2, PageBytes: 64}},
		{"int64 column", withLine, parquetio.Options{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer alloc.AssertSize(t, 0)
			src := pqSources(t, alloc)
			defer pqRelease(src)
			refs := pqShuffled(src)
			want := pqWant(t, tc.cols, src, refs)
			dir := t.TempDir()
			first := filepath.Join(dir, "first.parquet")
			if n := pqWrite(t, first, tc.cols, src, refs, tc.opts); n != int64(len(refs)) {
				t.Fatalf("Rows() = %d, want %d", n, len(refs))
			}

			cols, back, err := parquetio.ReadFile(first, alloc)
			if err != nil {
				t.Fatal(err)
			}
			defer pqRelease(back)
			if !reflect.DeepEqual(cols, tc.cols) {
				t.Fatalf("columns read back\n%+v, want\n%+v", cols, tc.cols)
			}
			pqCheckArrowTypes(t, back)
			var got [][]any
			var backRefs []parquetio.RowRef
			for b, rec := range back {
				if err := array.ValidateRecordFull(rec); err != nil {
					t.Fatalf("batch %d read back is invalid: %v", b, err)
				}
				got = append(got, pqWant(t, tc.cols, back[b:b+1], pqAllRows(rec))...)
				for r := range rec.NumRows() {
					backRefs = append(backRefs, parquetio.RowRef{Batch: int32(b), Row: int32(r)})
				}
			}
			pqCompare(t, "ReadFile", tc.cols, got, want)

			// Write what was read back, last row first.
			for i, j := 0, len(backRefs)-1; i < j; i, j = i+1, j-1 {
				backRefs[i], backRefs[j] = backRefs[j], backRefs[i]
			}
			second := filepath.Join(dir, "second.parquet")
			pqWrite(t, second, cols, back, backRefs, tc.opts)
			_, again, err := parquetio.ReadFile(second, alloc)
			if err != nil {
				t.Fatal(err)
			}
			defer pqRelease(again)
			got = got[:0]
			for b, rec := range again {
				got = append(got, pqWant(t, tc.cols, again[b:b+1], pqAllRows(rec))...)
			}
			reversed := make([][]any, len(want))
			for i := range want {
				reversed[len(want)-1-i] = want[i]
			}
			pqCompare(t, "rewritten", tc.cols, got, reversed)
		})
	}
}

func pqAllRows(rec arrow.RecordBatch) []parquetio.RowRef {
	refs := make([]parquetio.RowRef, rec.NumRows())
	for i := range refs {
		refs[i] = parquetio.RowRef{Row: int32(i)}
	}
	return refs
}

// pqCheckArrowTypes checks the types pqarrow gives for our kinds.
func pqCheckArrowTypes(t *testing.T, batches []arrow.RecordBatch) {
	t.Helper()
	if len(batches) == 0 {
		t.Fatal("no batch read back")
	}
	sc := batches[0].Schema()
	want := map[string]string{
		"id":         "utf8",
		"full_name":  "utf8",
		"tags":       "list<element: utf8>",
		"created_at": "timestamp[us, tz=UTC]",
	}
	for name, typ := range want {
		idx := sc.FieldIndices(name)
		if len(idx) == 0 {
			t.Fatalf("no column %s read back", name)
		}
		if got := sc.Field(idx[0]).Type.String(); got != typ {
			t.Errorf("column %s read back as %s, want %s", name, got, typ)
		}
	}
}

// TestParquetWriterSourceTypes writes arrays of every type the writer
// accepts besides the transform's: large strings and lists, dictionaries,
// 16-byte UUIDs and other timestamp units.
func TestParquetWriterSourceTypes(t *testing.T) {
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	cols := []schemas.Column{
		{Name: "id", Kind: schemas.UUID, Required: true},
		{Name: "full_name", Kind: schemas.Text},
		{Name: "tags", Kind: schemas.Tags},
		{Name: "created_at", Kind: schemas.Timestamp, Required: true},
	}
	uuidA := [16]byte{0x12, 0x3e, 0x45, 0x67, 0xe8, 0x9b, 0x12, 0xd3, 0xa4, 0x56, 0x42, 0x66, 0x14, 0x17, 0x40, 0x00}
	uuidB := [16]byte{0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}

	// Batch 0: fixed-size-binary ids, dictionary names, large_list<large_utf8>
	// tags, nanosecond timestamps; sliced, so every array has an offset.
	idB := array.NewFixedSizeBinaryBuilder(alloc, &arrow.FixedSizeBinaryType{ByteWidth: 16})
	idB.AppendValues([][]byte{uuidB[:], uuidA[:], uuidB[:]}, nil)
	nameB := array.NewDictionaryBuilder(alloc, &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int8, ValueType: arrow.BinaryTypes.String}).(*array.BinaryDictionaryBuilder)
	nameB.AppendNull()
	nameB.AppendString("Ann")
	nameB.AppendNull()
	tagB := array.NewLargeListBuilder(alloc, arrow.BinaryTypes.LargeString)
	tagV := tagB.ValueBuilder().(*array.LargeStringBuilder)
	tagB.Append(true)
	tagV.Append("x")
	tagB.Append(true)
	tagV.Append("a")
	tagV.Append("b, c")
	tagB.AppendNull()
	tsB := array.NewTimestampBuilder(alloc, &arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "Europe/Paris"})
	tsB.AppendValues([]arrow.Timestamp{0, -1_500, 1_700_000_000_123_456_789}, nil)
	sc0 := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: idB.Type()}, {Name: "full_name", Type: nameB.Type(), Nullable: true},
		{Name: "tags", Type: tagB.Type(), Nullable: true}, {Name: "created_at", Type: tsB.Type()},
	}, nil)
	full := pqRecord(sc0, 3, idB, nameB, tagB, tsB)
	b0 := full.NewSlice(1, 3)
	full.Release()
	defer b0.Release()

	// Batch 1: seconds, large_utf8 id, list of dictionary strings, no name.
	id1 := array.NewLargeStringBuilder(alloc)
	id1.Append("323e4567-e89b-12d3-a456-426614174000")
	tag1 := array.NewListBuilder(alloc, &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String})
	tagD := tag1.ValueBuilder().(*array.BinaryDictionaryBuilder)
	tag1.Append(true)
	tagD.AppendString("dict")
	tagD.AppendString("dict")
	ts1 := array.NewTimestampBuilder(alloc, &arrow.TimestampType{Unit: arrow.Second})
	ts1.Append(-86400)
	sc1 := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: id1.Type()}, {Name: "tags", Type: tag1.Type()}, {Name: "created_at", Type: ts1.Type()},
	}, nil)
	b1 := pqRecord(sc1, 1, id1, tag1, ts1)
	defer b1.Release()

	src := []arrow.RecordBatch{b0, b1}
	refs := []parquetio.RowRef{{1, 0}, {0, 1}, {0, 0}}
	want := [][]any{
		{"323e4567-e89b-12d3-a456-426614174000", nil, []string{"dict", "dict"}, int64(-86_400_000_000)},
		{"ff010203-0405-0607-0809-0a0b0c0d0e0f", nil, nil, int64(1_700_000_000_123_456)},
		{"123e4567-e89b-12d3-a456-426614174000", "Ann", []string{"a", "b, c"}, int64(-2)},
	}
	if got := pqWant(t, cols, src, refs); !reflect.DeepEqual(got, want) {
		t.Fatalf("test values %#v, want %#v", got, want)
	}
	path := filepath.Join(t.TempDir(), "types.parquet")
	pqWrite(t, path, cols, src, refs, parquetio.Options{})
	_, back, err := parquetio.ReadFile(path, alloc)
	if err != nil {
		t.Fatal(err)
	}
	defer pqRelease(back)
	var got [][]any
	for b := range back {
		got = append(got, pqWant(t, cols, back[b:b+1], pqAllRows(back[b]))...)
	}
	pqCompare(t, "ReadFile", cols, got, want)
}

// pqRecord builds a batch from the arrays of bs and releases the builders.
func pqRecord(sc *arrow.Schema, rows int64, bs ...array.Builder) arrow.RecordBatch {
	arrs := make([]arrow.Array, len(bs))
	for i, b := range bs {
		arrs[i] = b.NewArray()
		b.Release()
	}
	rec := array.NewRecordBatch(sc, arrs, rows)
	for _, a := range arrs {
		a.Release()
	}
	return rec
}

// pqDuckDB opens an in-memory DuckDB.
func pqDuckDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`SET threads = 1`); err != nil {
		t.Fatal(err)
	}
	return db
}

func pqQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// TestParquetReadByDuckDB reads the round-trip file with DuckDB's
// read_parquet and checks its types, values and metadata.
func TestParquetReadByDuckDB(t *testing.T) {
	tests := []struct {
		name      string
		opts      parquetio.Options
		codec     string
		groupRows int
	}{
		{"zstd by default", parquetio.Options{}, "ZSTD", parquetio.DefaultRowGroupRows},
		{"snappy", parquetio.Options{Compression: "snappy"}, "SNAPPY", parquetio.DefaultRowGroupRows},
		{"gzip, row groups of 3", parquetio.Options{Compression: "gzip", RowGroupRows: 3}, "GZIP", 3},
		{"none", parquetio.Options{Compression: "none"}, "UNCOMPRESSED", parquetio.DefaultRowGroupRows},
	}
	db := pqDuckDB(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path, cols, want := pqFixture(t, tc.opts)
			file := pqQuote(path)

			var tsType, tagsType, idType string
			if err := db.QueryRow(`SELECT typeof(created_at), typeof(tags), typeof(id) FROM read_parquet(`+file+`) LIMIT 1`).Scan(&tsType, &tagsType, &idType); err != nil {
				t.Fatal(err)
			}
			if tsType != "TIMESTAMP WITH TIME ZONE" || tagsType != "VARCHAR[]" || idType != "VARCHAR" {
				t.Errorf("DuckDB types: created_at %s, tags %s, id %s; want TIMESTAMP WITH TIME ZONE, VARCHAR[], VARCHAR", tsType, tagsType, idType)
			}

			got := pqReadDuckDB(t, db, path, cols)
			pqCompare(t, "DuckDB", cols, got, want)

			// Row groups, compression and statistics as DuckDB sees them.
			mrows, err := db.Query(`SELECT row_group_id, row_group_num_rows, path_in_schema, compression,
				stats_min_value, stats_max_value, stats_null_count FROM parquet_metadata(` + file + `) ORDER BY row_group_id, column_id`)
			if err != nil {
				t.Fatal(err)
			}
			defer mrows.Close()
			groups := map[int64]int64{}
			var minAt, maxAt time.Time
			statsAt := 0
			for mrows.Next() {
				var rg, n int64
				var colPath, codec string
				var minV, maxV sql.NullString
				var nulls sql.NullInt64
				if err := mrows.Scan(&rg, &n, &colPath, &codec, &minV, &maxV, &nulls); err != nil {
					t.Fatal(err)
				}
				groups[rg] = n
				if codec != tc.codec {
					t.Errorf("row group %d column %s compression %s, want %s", rg, colPath, codec, tc.codec)
				}
				if !nulls.Valid {
					t.Errorf("row group %d column %s has no null count", rg, colPath)
				}
				if colPath != "created_at" {
					continue
				}
				statsAt++
				lo, err1 := time.Parse(duckTimestamptz, minV.String)
				hi, err2 := time.Parse(duckTimestamptz, maxV.String)
				if err := errors.Join(err1, err2); err != nil {
					t.Fatalf("row group %d created_at statistics: %v", rg, err)
				}
				if minAt.IsZero() || lo.Before(minAt) {
					minAt = lo
				}
				if maxAt.IsZero() || hi.After(maxAt) {
					maxAt = hi
				}
			}
			if err := mrows.Err(); err != nil {
				t.Fatal(err)
			}
			total := int64(0)
			for rg, n := range groups {
				if n > int64(tc.groupRows) {
					t.Errorf("row group %d has %d rows, more than %d", rg, n, tc.groupRows)
				}
				total += n
			}
			if total != int64(len(want)) || statsAt != len(groups) {
				t.Errorf("metadata: %d rows in %d row groups, created_at statistics in %d; want %d rows", total, len(groups), statsAt, len(want))
			}
			at := slices.IndexFunc(cols, func(c schemas.Column) bool { return c.Name == "created_at" })
			var wantMin, wantMax int64
			for i, row := range want {
				v := row[at].(int64)
				if i == 0 || v < wantMin {
					wantMin = v
				}
				if i == 0 || v > wantMax {
					wantMax = v
				}
			}
			if minAt.UnixMicro() != wantMin || maxAt.UnixMicro() != wantMax {
				t.Errorf("created_at statistics span %s to %s, want %s to %s", minAt, maxAt, time.UnixMicro(wantMin).UTC(), time.UnixMicro(wantMax).UTC())
			}
		})
	}
}

// duckTimestamptz is how parquet_metadata prints a TIMESTAMPTZ statistic.
const duckTimestamptz = "2006-01-02 15:04:05.999999-07"

// pqReadDuckDB reads the file at path with DuckDB's read_parquet, in file
// order, normalising each row's values of cols like pqValue.
func pqReadDuckDB(t *testing.T, db *sql.DB, path string, cols []schemas.Column) [][]any {
	t.Helper()
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = schemas.QuoteIdent(c.Name)
	}
	rows, err := db.Query(`SELECT ` + strings.Join(names, ", ") + ` FROM read_parquet(` + pqQuote(path) + `, file_row_number = true) ORDER BY file_row_number`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got [][]any
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := make([]any, len(cols))
		for i, v := range vals {
			row[i] = pqFromDuckDB(t, v)
		}
		got = append(got, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// pqFromDuckDB normalises a value scanned from DuckDB like pqValue.
func pqFromDuckDB(t *testing.T, v any) any {
	switch v := v.(type) {
	case nil, string, int64:
		return v
	case time.Time:
		return v.UnixMicro()
	case []any:
		out := []string{}
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				t.Fatalf("DuckDB list element %#v", e)
			}
			out = append(out, s)
		}
		return out
	}
	t.Fatalf("DuckDB value %#v (%T)", v, v)
	return nil
}

// pqRepoRoot is the repository root: tests run in internal/parquetio.
func pqRepoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found from the test's folder: %v", err)
	}
	return root
}

// TestParquetReadByJavaScript reads the round-trip file with hyparquet
// (tools/js/read-parquet.mjs) and compares every value.
func TestParquetReadByJavaScript(t *testing.T) {
	js := pqJSReader(t)
	tests := []struct {
		name string
		opts parquetio.Options
	}{
		{"zstd by default", parquetio.Options{}},
		{"snappy", parquetio.Options{Compression: "snappy"}},
		{"gzip, row groups of 4", parquetio.Options{Compression: "gzip", RowGroupRows: 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path, cols, want := pqFixture(t, tc.opts)
			got := pqReadJS(t, js, path, cols)
			pqCompare(t, "hyparquet", cols, got, want)
		})
	}
}

// pqJSReader returns the command that runs tools/js/read-parquet.mjs, less
// the file to read. It fails the test, never skips it, when node or the
// script's dependencies are missing.
func pqJSReader(t *testing.T) []string {
	t.Helper()
	root := pqRepoRoot(t)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node (Node.js 18 or later) is needed to check the Parquet files in JavaScript: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "tools", "js", "node_modules", "hyparquet", "package.json")); err != nil {
		t.Fatalf("tools/js/node_modules is missing: `make test` installs it (npm ci --prefix tools/js); run that first (%v)", err)
	}
	return []string{node, filepath.Join(root, "tools", "js", "read-parquet.mjs")}
}

// pqReadJS reads the file at path with hyparquet, normalising each row's
// values of cols like pqValue.
func pqReadJS(t *testing.T, js []string, path string, cols []schemas.Column) [][]any {
	t.Helper()
	cmd := exec.Command(js[0], append(js[1:], path)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("read-parquet.mjs: %v\n%s", err, stderr.String())
	}
	var got [][]any
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var obj map[string]any
		if err := json.Unmarshal(sc.Bytes(), &obj); err != nil {
			t.Fatalf("read-parquet.mjs line %q: %v", sc.Text(), err)
		}
		if len(obj) != len(cols) {
			t.Fatalf("read-parquet.mjs row has %d columns, want %d: %s", len(obj), len(cols), sc.Text())
		}
		row := make([]any, len(cols))
		for i, c := range cols {
			row[i] = pqFromJS(t, c, obj[c.Name])
		}
		got = append(got, row)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// pqFromJS normalises a value read-parquet.mjs printed like pqValue.
func pqFromJS(t *testing.T, c schemas.Column, v any) any {
	if v == nil {
		return nil
	}
	switch c.Kind {
	case schemas.Timestamp, schemas.Int64:
		s, ok := v.(string)
		if !ok {
			t.Fatalf("column %s: JavaScript value %#v, want a decimal string", c.Name, v)
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("column %s: JavaScript value %q: %v", c.Name, s, err)
		}
		return n
	case schemas.Tags:
		list, ok := v.([]any)
		if !ok {
			t.Fatalf("column %s: JavaScript value %#v, want an array", c.Name, v)
		}
		out := []string{}
		for _, e := range list {
			out = append(out, e.(string))
		}
		return out
	}
	return v
}

// TestParquetRowGroupsAreBounded writes 10,000 rows with RowGroupRows 3000
// in writes of 1,000 and checks the row groups and that Size grows.
func TestParquetRowGroupsAreBounded(t *testing.T) {
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	src := pqBatches(t, alloc, pqGenerateCSV(10_000), 4096)
	defer pqRelease(src)
	cols := schemas.Contacts
	var buf bytes.Buffer
	w, err := parquetio.NewWriter(&buf, cols, parquetio.Options{RowGroupRows: 3000})
	if err != nil {
		t.Fatal(err)
	}
	if w.Size() != 0 || w.Rows() != 0 {
		t.Fatalf("new writer: Size %d, Rows %d", w.Size(), w.Rows())
	}
	var refs []parquetio.RowRef
	for b, rec := range src {
		for r := range rec.NumRows() {
			refs = append(refs, parquetio.RowRef{Batch: int32(b), Row: int32(r)})
		}
	}
	var sizes []int64
	for len(refs) > 0 {
		n := min(1000, len(refs))
		if err := w.Write(src, refs[:n]); err != nil {
			t.Fatal(err)
		}
		refs = refs[n:]
		sizes = append(sizes, w.Size())
	}
	if w.Rows() != 10_000 {
		t.Fatalf("Rows() = %d", w.Rows())
	}
	// Within a row group Size only grows (buffered values); at a flush the
	// buffered estimate becomes compressed bytes, which may be fewer.
	for i := 1; i < len(sizes); i++ {
		if (i+1)%3 != 0 && sizes[i] <= sizes[i-1] {
			t.Errorf("Size() after write %d = %d, not more than %d before", i+1, sizes[i], sizes[i-1])
		}
	}
	if sizes[len(sizes)-1] <= sizes[2] || sizes[2] <= 0 {
		t.Errorf("Size() did not grow across row groups: %v", sizes)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if int64(buf.Len()) < sizes[len(sizes)-1]/4 {
		t.Errorf("file has %d bytes, Size() said %d before Close", buf.Len(), sizes[len(sizes)-1])
	}
	t.Logf("Size() after each 1000 rows: %v; file %d bytes", sizes, buf.Len())

	f, err := parquet.OpenFile(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, rg := range f.RowGroups() {
		got = append(got, rg.NumRows())
	}
	if want := []int64{3000, 3000, 3000, 1000}; !reflect.DeepEqual(got, want) {
		t.Errorf("row groups %v, want %v", got, want)
	}
	pqCheckFileMetadata(t, f, cols)
}

// pqCheckFileMetadata checks the physical schema, the options and the
// leadlex.columns entry of a file as parquet-go reads them.
func pqCheckFileMetadata(t *testing.T, f *parquet.File, cols []schemas.Column) {
	t.Helper()
	schema := f.Schema().String()
	for _, want := range []string{
		"required binary id (STRING);",
		"optional binary full_name (STRING);",
		"optional group tags (LIST) {\n\t\trepeated group list {\n\t\t\trequired binary element (STRING);",
		"required int64 created_at (TIMESTAMP(isAdjustedToUTC=true,unit=MICROS));",
	} {
		if !strings.Contains(schema, want) {
			t.Errorf("schema lacks %q:\n%s", want, schema)
		}
	}
	if strings.Index(schema, " id ") > strings.Index(schema, " created_at ") {
		t.Errorf("schema does not keep the column order:\n%s", schema)
	}
	meta := f.Metadata()
	for _, rg := range meta.RowGroups {
		for _, cc := range rg.Columns {
			md := cc.MetaData
			if md.Codec.String() != "ZSTD" {
				t.Errorf("column %v codec %v", md.PathInSchema, md.Codec)
			}
			if md.Statistics.MinValue == nil || md.Statistics.MaxValue == nil {
				t.Errorf("column %v has no min/max statistics", md.PathInSchema)
			}
		}
	}
	if len(f.ColumnIndexes()) == 0 || len(f.OffsetIndexes()) == 0 {
		t.Errorf("no page index: %d column indexes, %d offset indexes", len(f.ColumnIndexes()), len(f.OffsetIndexes()))
	}
	v, ok := f.Lookup(parquetio.ColumnsKey)
	if !ok {
		t.Fatalf("no %s metadata", parquetio.ColumnsKey)
	}
	var got []struct {
		Name, Kind string
		Required   bool
	}
	if err := json.Unmarshal([]byte(v), &got); err != nil || len(got) != len(cols) {
		t.Fatalf("%s = %s (%v)", parquetio.ColumnsKey, v, err)
	}
	for i, c := range cols {
		if got[i].Name != c.Name || got[i].Required != c.Required {
			t.Errorf("%s[%d] = %+v, want %+v", parquetio.ColumnsKey, i, got[i], c)
		}
	}
}

// TestParquetLargeFile writes 20,000 rows, more than a page holds, so that
// high-cardinality columns switch from dictionary to PLAIN pages inside a
// row group, and checks every value in every reader.
func TestParquetLargeFile(t *testing.T) {
	js := pqJSReader(t)
	db := pqDuckDB(t)
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	src := pqBatches(t, alloc, pqGenerateCSV(20_000), 8192)
	defer pqRelease(src)
	cols := schemas.Contacts
	var refs []parquetio.RowRef
	for b, rec := range src {
		for r := range rec.NumRows() {
			refs = append(refs, parquetio.RowRef{Batch: int32(b), Row: int32(r)})
		}
	}
	want := pqWant(t, cols, src, refs)
	path := filepath.Join(t.TempDir(), "large.parquet")
	pqWrite(t, path, cols, src, refs, parquetio.Options{RowGroupRows: 18_000})

	_, back, err := parquetio.ReadFile(path, alloc)
	if err != nil {
		t.Fatal(err)
	}
	defer pqRelease(back)
	var got [][]any
	for b, rec := range back {
		got = append(got, pqWant(t, cols, back[b:b+1], pqAllRows(rec))...)
	}
	pqCompare(t, "ReadFile", cols, got, want)
	pqCompare(t, "DuckDB", cols, pqReadDuckDB(t, db, path, cols), want)
	pqCompare(t, "hyparquet", cols, pqReadJS(t, js, path, cols), want)

	var encodings string
	if err := db.QueryRow(`SELECT encodings FROM parquet_metadata(` + pqQuote(path) + `) WHERE path_in_schema = 'email' AND row_group_id = 0`).Scan(&encodings); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(encodings, "RLE_DICTIONARY") || !strings.Contains(encodings, "PLAIN") {
		t.Errorf("email encodings %q: want dictionary pages, then PLAIN ones", encodings)
	}
}

// pqGenerateCSV returns a CSV body of n contacts, created a second apart.
func pqGenerateCSV(n int) string {
	var b strings.Builder
	b.WriteString("id,full_name,email,phone,job_title,company_name,linkedin_url,tags,created_at\n")
	base := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	titles := []string{"CEO", "CTO", "Head of Sales", "Engineer", ""}
	tags := []string{"lead", "lead,priority", "", "customer, churn-risk", "partner"}
	for i := range n {
		fmt.Fprintf(&b, "%08x-0000-4000-8000-%012x,Person %d,person%d@example.com,+1 555 %04d,%s,Company %d,https://www.linkedin.com/in/p%d,\"%s\",%s\n",
			i, i, i, i, i%10000, titles[i%len(titles)], i%97, i, tags[i%len(tags)],
			base.Add(time.Duration(i)*time.Second+time.Duration(i%1000)*time.Microsecond).Format("2006-01-02T15:04:05.000000Z"))
	}
	return b.String()
}

// TestParquetWriterErrors checks the errors Write and NewWriter
// report, each naming what is wrong.
func TestParquetWriterErrors(t *testing.T) {
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	cols := []schemas.Column{
		{Name: "id", Kind: schemas.UUID, Required: true},
		{Name: "tags", Kind: schemas.Tags},
		{Name: "created_at", Kind: schemas.Timestamp, Required: true},
	}
	str := func(vals []string, valid []bool) arrow.Array {
		b := array.NewStringBuilder(alloc)
		defer b.Release()
		b.AppendValues(vals, valid)
		return b.NewArray()
	}
	ts := func() arrow.Array {
		b := array.NewTimestampBuilder(alloc, &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"})
		defer b.Release()
		b.Append(1)
		return b.NewArray()
	}
	i64 := func() arrow.Array {
		b := array.NewInt64Builder(alloc)
		defer b.Release()
		b.Append(1)
		return b.NewArray()
	}
	nullElement := func() arrow.Array {
		b := array.NewListBuilder(alloc, arrow.BinaryTypes.String)
		defer b.Release()
		b.Append(true)
		b.ValueBuilder().AppendNull()
		return b.NewArray()
	}
	batch := func(fields map[string]arrow.Array, order ...string) arrow.RecordBatch {
		var fs []arrow.Field
		var arrs []arrow.Array
		for _, name := range order {
			a := fields[name]
			fs = append(fs, arrow.Field{Name: name, Type: a.DataType(), Nullable: true})
			arrs = append(arrs, a)
		}
		rec := array.NewRecordBatch(arrow.NewSchema(fs, nil), arrs, 1)
		for _, a := range arrs {
			a.Release()
		}
		return rec
	}
	const id = "123e4567-e89b-12d3-a456-426614174000"
	tests := []struct {
		name    string
		src     func() arrow.RecordBatch
		refs    []parquetio.RowRef
		wantErr []string
	}{
		{"timestamp column of strings", func() arrow.RecordBatch {
			return batch(map[string]arrow.Array{"id": str([]string{id}, nil), "created_at": str([]string{"2024-01-01T00:00:00Z"}, nil)}, "id", "created_at")
		}, nil, []string{"created_at", "utf8"}},
		{"tags column of strings", func() arrow.RecordBatch {
			return batch(map[string]arrow.Array{"id": str([]string{id}, nil), "tags": str([]string{"a,b"}, nil), "created_at": ts()}, "id", "tags", "created_at")
		}, nil, []string{"tags", "utf8"}},
		{"id column of integers", func() arrow.RecordBatch {
			return batch(map[string]arrow.Array{"id": i64(), "created_at": ts()}, "id", "created_at")
		}, nil, []string{"id", "int64"}},
		{"required column missing", func() arrow.RecordBatch {
			return batch(map[string]arrow.Array{"id": str([]string{id}, nil)}, "id")
		}, nil, []string{"created_at", "missing"}},
		{"required column NULL", func() arrow.RecordBatch {
			return batch(map[string]arrow.Array{"id": str([]string{""}, []bool{false}), "created_at": ts()}, "id", "created_at")
		}, nil, []string{"id", "NULL"}},
		{"NULL list element", func() arrow.RecordBatch {
			return batch(map[string]arrow.Array{"id": str([]string{id}, nil), "tags": nullElement(), "created_at": ts()}, "id", "tags", "created_at")
		}, nil, []string{"tags", "NULL"}},
		{"row out of range", func() arrow.RecordBatch {
			return batch(map[string]arrow.Array{"id": str([]string{id}, nil), "created_at": ts()}, "id", "created_at")
		}, []parquetio.RowRef{{0, 1}}, []string{"out of range"}},
		{"batch out of range", func() arrow.RecordBatch {
			return batch(map[string]arrow.Array{"id": str([]string{id}, nil), "created_at": ts()}, "id", "created_at")
		}, []parquetio.RowRef{{1, 0}}, []string{"out of range"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := tc.src()
			defer rec.Release()
			var buf bytes.Buffer
			w, err := parquetio.NewWriter(&buf, cols, parquetio.Options{})
			if err != nil {
				t.Fatal(err)
			}
			refs := tc.refs
			if refs == nil {
				refs = []parquetio.RowRef{{0, 0}}
			}
			err = w.Write([]arrow.RecordBatch{rec}, refs)
			if err == nil {
				t.Fatal("Write succeeded")
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
			// Nothing was written: the file closes empty and valid.
			if w.Rows() != 0 {
				t.Errorf("Rows() = %d after a failed Write", w.Rows())
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := parquet.OpenFile(bytes.NewReader(buf.Bytes()), int64(buf.Len())); err != nil {
				t.Errorf("file after a failed Write: %v", err)
			}
		})
	}

	t.Run("a batch no ref picks is not looked at", func(t *testing.T) {
		good := batch(map[string]arrow.Array{"id": str([]string{id}, nil), "created_at": ts()}, "id", "created_at")
		defer good.Release()
		bad := batch(map[string]arrow.Array{"id": i64()}, "id")
		defer bad.Release()
		w, err := parquetio.NewWriter(io.Discard, cols, parquetio.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write([]arrow.RecordBatch{bad, good}, []parquetio.RowRef{{1, 0}}); err != nil {
			t.Fatal(err)
		}
		if err := w.Write([]arrow.RecordBatch{bad, good}, []parquetio.RowRef{{0, 0}}); err == nil || !strings.Contains(err.Error(), "id") {
			t.Errorf("Write of a bad batch's row: %v", err)
		}
		if err := w.Close(); err != nil || w.Rows() != 1 {
			t.Errorf("Close: %v, Rows %d", err, w.Rows())
		}
		if err := w.Write([]arrow.RecordBatch{good}, []parquetio.RowRef{{0, 0}}); err == nil {
			t.Error("Write after Close succeeded")
		}
	})

	t.Run("bad options and columns", func(t *testing.T) {
		for _, tc := range []struct {
			cols []schemas.Column
			opts parquetio.Options
			want string
		}{
			{cols, parquetio.Options{Compression: "lzo"}, "lzo"},
			{nil, parquetio.Options{}, "no columns"},
			{[]schemas.Column{{Name: "a"}, {Name: "a"}}, parquetio.Options{}, "a repeats"},
		} {
			_, err := parquetio.NewWriter(io.Discard, tc.cols, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewWriter(%v, %+v) = %v, want an error with %q", tc.cols, tc.opts, err, tc.want)
			}
		}
	})
}

// TestParquetEmptyFile writes no row: the file still has its columns.
func TestParquetEmptyFile(t *testing.T) {
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	path := filepath.Join(t.TempDir(), "empty.parquet")
	cols := pqColumns()
	pqWrite(t, path, cols, nil, nil, parquetio.Options{})
	got, batches, err := parquetio.ReadFile(path, alloc)
	if err != nil {
		t.Fatal(err)
	}
	defer pqRelease(batches)
	if !reflect.DeepEqual(got, cols) || len(batches) != 0 {
		t.Errorf("empty file: columns %+v, %d batches", got, len(batches))
	}
}

// TestParquetReadWithoutMetadata reads a file that arrow-go's own writer
// made, without the leadlex.columns entry: columns are mapped by name and
// Arrow type, and the batches read back (milliseconds, no time zone) write
// to a Writer unchanged.
func TestParquetReadWithoutMetadata(t *testing.T) {
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	sc := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.BinaryTypes.String},
		{Name: "created_at", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}},
		{Name: "_loaded_at", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}, Nullable: true},
		{Name: "score", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "extra", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "seen", Type: &arrow.TimestampType{Unit: arrow.Microsecond}},
		{Name: "labels", Type: arrow.ListOf(arrow.BinaryTypes.String), Nullable: true},
	}, nil)
	rb := array.NewRecordBuilder(alloc, sc)
	rb.Field(0).(*array.StringBuilder).AppendValues([]string{"a", "b"}, nil)
	rb.Field(1).(*array.TimestampBuilder).AppendValues([]arrow.Timestamp{-1, 1}, nil)
	rb.Field(2).(*array.TimestampBuilder).AppendValues([]arrow.Timestamp{-1, 0}, []bool{true, false})
	rb.Field(3).(*array.Int64Builder).AppendValues([]int64{7, 0}, []bool{true, false})
	rb.Field(4).(*array.StringBuilder).AppendValues([]string{"", "x"}, []bool{false, true})
	rb.Field(5).(*array.TimestampBuilder).AppendValues([]arrow.Timestamp{3, 4}, nil)
	labels := rb.Field(6).(*array.ListBuilder)
	labels.Append(true)
	labels.ValueBuilder().(*array.StringBuilder).Append("l")
	labels.AppendNull()
	rec := rb.NewRecordBatch()
	rb.Release()
	defer rec.Release()

	path := filepath.Join(t.TempDir(), "arrow.parquet")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	fw, err := pqarrow.NewFileWriter(sc, f, aparquet.NewWriterProperties(aparquet.WithAllocator(alloc)), pqarrow.NewArrowWriterProperties(pqarrow.WithAllocator(alloc)))
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(fw.Write(rec), fw.Close()); err != nil {
		t.Fatal(err)
	}
	cols, batches, err := parquetio.ReadFile(path, alloc)
	if err != nil {
		t.Fatal(err)
	}
	defer pqRelease(batches)
	want := []schemas.Column{
		{Name: "id", Kind: schemas.UUID, Required: true},
		{Name: "created_at", Kind: schemas.Timestamp, Required: true},
		{Name: "_loaded_at", Kind: schemas.Timestamp},
		{Name: "score", Kind: schemas.Int64},
		{Name: "extra", Kind: schemas.Text},
		{Name: "seen", Kind: schemas.Timestamp, Required: true},
		{Name: "labels", Kind: schemas.Tags},
	}
	if !reflect.DeepEqual(cols, want) {
		t.Fatalf("columns\n%+v, want\n%+v", cols, want)
	}

	refs := []parquetio.RowRef{{0, 1}, {0, 0}}
	again := filepath.Join(t.TempDir(), "again.parquet")
	pqWrite(t, again, cols, batches, refs, parquetio.Options{})
	_, back, err := parquetio.ReadFile(again, alloc)
	if err != nil {
		t.Fatal(err)
	}
	defer pqRelease(back)
	pqCompare(t, "rewritten", cols, pqWant(t, cols, back, pqAllRows(back[0])), [][]any{
		{"b", int64(1), nil, nil, "x", int64(4), nil},
		{"a", int64(-1), int64(-1000), int64(7), nil, int64(3), []string{"l"}},
	})
}

// BenchmarkParquetFileWriter writes 200,000 contacts from transform batches
// to a counting io.Writer with the default options.
func BenchmarkParquetFileWriter(b *testing.B) {
	const rows = 200_000
	csv := pqGenerateCSV(rows)
	src := pqBatches(b, memory.DefaultAllocator, csv, transform.DefaultBatchRows)
	defer pqRelease(src)
	var refs []parquetio.RowRef
	for i, rec := range src {
		for r := range rec.NumRows() {
			refs = append(refs, parquetio.RowRef{Batch: int32(i), Row: int32(r)})
		}
	}
	b.SetBytes(int64(len(csv)))
	b.ReportAllocs()
	var out int64
	b.ResetTimer()
	for b.Loop() {
		cw := &pqCounter{}
		w, err := parquetio.NewWriter(cw, schemas.Contacts, parquetio.Options{})
		if err != nil {
			b.Fatal(err)
		}
		// Write in window-sized calls, as the sink does.
		for lo := 0; lo < len(refs); lo += 50_000 {
			if err := w.Write(src, refs[lo:min(lo+50_000, len(refs))]); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		out += cw.n
	}
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(rows*b.N)/sec, "rows/s")
	b.ReportMetric(float64(out)/1e6/sec, "parquet-MB/s")
	b.ReportMetric(float64(out)/float64(b.N), "file-bytes")
}

// pqCounter counts the bytes written to it.
type pqCounter struct{ n int64 }

func (c *pqCounter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}
