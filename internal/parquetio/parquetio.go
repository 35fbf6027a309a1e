package parquetio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	aparquet "github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"

	"github.com/leadlex/leadlex-etl/schemas"
)

// Defaults of Options.
const (
	DefaultCompression  = Zstd
	DefaultRowGroupRows = 131072
	DefaultPageBytes    = 1 << 20
)

// Compression is the codec of a file's column chunks. It is a pflag.Value,
// so the command line, the writer and the help text share one list.
type Compression string

// The compressions.
const (
	Zstd   Compression = "zstd"
	Snappy Compression = "snappy"
	Gzip   Compression = "gzip"
	None   Compression = "none"
)

// Compressions lists every Compression, the default first.
var Compressions = []Compression{Zstd, Snappy, Gzip, None}

// String returns the compression's name.
func (c Compression) String() string { return string(c) }

// Set sets c from its name.
func (c *Compression) Set(s string) error {
	for _, v := range Compressions {
		if string(v) == s {
			*c = v
			return nil
		}
	}
	return fmt.Errorf("%q is not one of %s", s, (*Compression)(nil).Type())
}

// Type lists the valid names, for help texts.
func (*Compression) Type() string {
	names := make([]string, len(Compressions))
	for i, v := range Compressions {
		names[i] = string(v)
	}
	return strings.Join(names, "|")
}

// ColumnsKey is the key-value metadata entry of every file
// Writer writes: the JSON array of its columns, each
// {"name", "kind", "required"}, so that ReadFile recovers their kinds
// exactly.
const ColumnsKey = "leadlex.columns"

// bloomBitsPerValue sizes bloom filters: 10 bits a value gives about 1%
// false positives.
const bloomBitsPerValue = 10

// parquetChunkRows bounds the rows of one WriteRowValues call, so a page
// overshoots its target size by at most that many rows and the value buffers
// stay small.
const parquetChunkRows = 1024

// parquetPageRows bounds the rows of a data page: every column's buffered
// page is flushed at this many rows. Dictionary-encoded columns would
// otherwise hold one page per row group, since their buffered size counts
// only dictionary indexes, and parquet-go checks DictionaryMaxBytes (and
// falls back to PLAIN) only when a page is flushed. parquet-mr and Arrow C++
// cap pages at 20,000 rows the same way.
const parquetPageRows = 16384

// parquetDictionaryMaxBytes is the size past which a column's dictionary
// stops growing for the rest of the row group and its next pages are PLAIN,
// so a column of unique values (emails, names) pays for a dictionary on its
// first page only.
const parquetDictionaryMaxBytes = 256 << 10

// parquetReadBatchRows is the number of rows of the batches ReadFile
// returns (the last of a file may have fewer).
const parquetReadBatchRows = 65536

// Options configures written files explicitly, never on parquet-go's
// defaults.
type Options struct {
	Compression Compression // "" means DefaultCompression
	// SortedBy names the columns the rows come sorted by, ascending, for
	// the files' sorting_columns metadata (the writer does not sort).
	SortedBy []string
	// BloomFilters names text columns that get a split-block bloom filter
	// (bloomBitsPerValue bits a value), for point lookups by readers.
	BloomFilters []string
	RowGroupRows int // rows per row group; 0 -> DefaultRowGroupRows. A file never buffers more rows than this.
	PageBytes    int // target page buffer size; 0 -> DefaultPageBytes
}

// RowRef picks one row of one of several source batches.
type RowRef struct{ Batch, Row int32 }

// Writer writes one Parquet file with the given columns,
// columnar: Write turns each column's Arrow values into parquet-go values
// with explicit repetition and definition levels and hands them to that
// column's writer. Text and UUID columns are STRING byte arrays, timestamps
// INT64 TIMESTAMP(MICROS, adjusted to UTC), tags the standard three-level
// LIST of required STRING elements, Int64 columns INT64; required columns
// are REQUIRED, the others OPTIONAL. Text columns and tag elements are
// dictionary-encoded until the row group's dictionary passes 256 KiB, then
// PLAIN; UUIDs, timestamps and integers are PLAIN. Every column has
// statistics (min, max and null count per column chunk and per page, and a
// page index) and the chosen compression; data pages are version 2 and hold
// at most 16,384 rows. A row group is flushed as soon as it holds
// RowGroupRows rows. A Writer is not safe for concurrent use;
// after an error from Write or Close it fails every later call.
type Writer struct {
	pw        *parquet.GenericWriter[any]
	cols      []pqColumn
	groupRows int
	inGroup   int    // rows in the row group being buffered
	inPage    int    // rows since the last page flush
	rows      int64  // rows written, flushed or not
	used      []bool // per source batch of the current Write: whether a ref picks it
	err       error
	closed    bool
}

// pqColumn is one column of a Writer with its reusable buffers.
type pqColumn struct {
	schemas.Column
	index int // leaf column index in the Parquet schema
	def   int // definition level of a present value (of a list element for Tags)
	vals  []parquet.Value
	srcs  []pqSource // per source batch of the current Write
	arena []byte     // text made for the current chunk (UUIDs from 16 bytes)
}

// NewWriter returns a writer of a Parquet file with columns cols
// to w. It fails if a column name repeats or is empty, or opts names an
// unknown compression. Nothing is written to w before the first row group
// is flushed.
func NewWriter(w io.Writer, cols []schemas.Column, opts Options) (*Writer, error) {
	if len(cols) == 0 {
		return nil, errors.New("parquet: no columns")
	}
	codec, err := parquetCodec(opts.Compression)
	if err != nil {
		return nil, err
	}
	groupRows := opts.RowGroupRows
	if groupRows <= 0 {
		groupRows = DefaultRowGroupRows
	}
	pageBytes := opts.PageBytes
	if pageBytes <= 0 {
		pageBytes = DefaultPageBytes
	}
	schema, err := parquetSchema(cols)
	if err != nil {
		return nil, err
	}
	meta, err := json.Marshal(columnsMeta(cols))
	if err != nil {
		return nil, err
	}
	options := []parquet.WriterOption{
		schema,
		parquet.Compression(codec),
		parquet.DataPageVersion(2),
		parquet.DataPageStatistics(true),
		parquet.PageBufferSize(pageBytes),
		parquet.DictionaryMaxBytes(parquetDictionaryMaxBytes),
		parquet.WriteBufferSize(64 << 10),
		parquet.MaxRowsPerRowGroup(int64(groupRows)),
		parquet.KeyValueMetadata(ColumnsKey, string(meta)),
	}
	var sorting []parquet.SortingColumn
	for _, name := range opts.SortedBy {
		if !slices.ContainsFunc(cols, func(c schemas.Column) bool { return c.Name == name }) {
			return nil, fmt.Errorf("parquet: sorted by %s, which is not a column", name)
		}
		sorting = append(sorting, parquet.Ascending(name))
	}
	if len(sorting) > 0 {
		options = append(options, parquet.SortingWriterConfig(parquet.SortingColumns(sorting...)))
	}
	var blooms []parquet.BloomFilterColumn
	for _, name := range opts.BloomFilters {
		if !slices.ContainsFunc(cols, func(c schemas.Column) bool {
			return c.Name == name && (c.Kind == schemas.Text || c.Kind == schemas.UUID)
		}) {
			return nil, fmt.Errorf("parquet: a bloom filter needs a text column, and %s is not one", name)
		}
		blooms = append(blooms, parquet.SplitBlockFilter(bloomBitsPerValue, name))
	}
	if len(blooms) > 0 {
		options = append(options, parquet.BloomFilters(blooms...))
	}
	config, err := parquet.NewWriterConfig(options...)
	if err != nil {
		return nil, fmt.Errorf("parquet writer configuration: %w", err)
	}
	pw := &Writer{
		pw:        parquet.NewGenericWriter[any](w, config),
		cols:      make([]pqColumn, len(cols)),
		groupRows: groupRows,
	}
	for i, c := range cols {
		def := 0
		if !c.Required {
			def++
		}
		if c.Kind == schemas.Tags {
			def++ // the repeated group "list"
		}
		pw.cols[i] = pqColumn{Column: c, index: i, def: def}
	}
	if n := len(pw.pw.ColumnWriters()); n != len(cols) {
		return nil, fmt.Errorf("parquet: schema has %d leaf columns, want %d", n, len(cols))
	}
	return pw, nil
}

// parquetCodec returns the codec of c.
func parquetCodec(c Compression) (compress.Codec, error) {
	switch c {
	case "", Zstd:
		return &parquet.Zstd, nil
	case Snappy:
		return &parquet.Snappy, nil
	case Gzip:
		return &parquet.Gzip, nil
	case None:
		return &parquet.Uncompressed, nil
	}
	return nil, fmt.Errorf("parquet: unknown compression %q (want %s)", string(c), (*Compression)(nil).Type())
}

// parquetSchema builds the physical schema of cols, in their order.
func parquetSchema(cols []schemas.Column) (*parquet.Schema, error) {
	root := &orderedGroup{Group: parquet.Group{}}
	for _, c := range cols {
		if c.Name == "" {
			return nil, errors.New("parquet: a column has no name")
		}
		if _, dup := root.Group[c.Name]; dup {
			return nil, fmt.Errorf("parquet: column %s repeats", c.Name)
		}
		var node parquet.Node
		switch c.Kind {
		case schemas.Text:
			node = parquet.Encoded(parquet.String(), &parquet.RLEDictionary)
		case schemas.UUID:
			node = parquet.Encoded(parquet.String(), &parquet.Plain) // unique: a dictionary would only cost
		case schemas.Tags:
			node = parquet.List(parquet.Encoded(parquet.String(), &parquet.RLEDictionary))
		case schemas.Timestamp:
			node = parquet.Encoded(parquet.TimestampAdjusted(parquet.Microsecond, true), &parquet.Plain)
		case schemas.Int64:
			node = parquet.Encoded(parquet.Leaf(parquet.Int64Type), &parquet.Plain)
		default:
			return nil, fmt.Errorf("parquet: column %s has unknown kind %d", c.Name, c.Kind)
		}
		if c.Required {
			node = parquet.Required(node)
		} else {
			node = parquet.Optional(node)
		}
		root.Group[c.Name] = node
		root.fields = append(root.fields, &namedField{Node: node, name: c.Name})
	}
	return parquet.NewSchema("schema", root), nil
}

// orderedGroup is a parquet.Group whose fields keep the order they were
// added in (parquet.Group sorts them by name), so that files list their
// columns in header order.
type orderedGroup struct {
	parquet.Group
	fields []parquet.Field
}

// Fields returns the fields in the order they were added.
func (g *orderedGroup) Fields() []parquet.Field { return g.fields }

// String returns the group in Parquet schema notation.
func (g *orderedGroup) String() string { return parquet.NewSchema("", g).String() }

// namedField is a field of an orderedGroup.
type namedField struct {
	parquet.Node
	name string
}

// Name returns the field's name.
func (f *namedField) Name() string { return f.name }

// Value is not supported: the writer never maps Go values by reflection.
func (f *namedField) Value(reflect.Value) reflect.Value { return reflect.Value{} }

// columnMeta is one entry of ColumnsKey.
type columnMeta struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	Required bool   `json:"required,omitempty"`
}

func columnsMeta(cols []schemas.Column) []columnMeta {
	out := make([]columnMeta, len(cols))
	for i, c := range cols {
		out[i] = columnMeta{Name: c.Name, Kind: c.Kind.String(), Required: c.Required}
	}
	return out
}

// Rows returns the number of rows written so far, buffered or flushed.
func (w *Writer) Rows() int64 { return w.rows }

// Size returns the bytes written to the io.Writer so far plus an estimate
// of the row group still buffered (not yet compressed, so an upper bound);
// the footer is not counted.
func (w *Writer) Size() int64 { return w.pw.Size() }

// Write appends the rows refs points at, in that order. Each source batch's
// columns are found by name: a writer column a batch lacks is written as
// NULL (a NULL list for tags), which is an error for a required column; a
// batch column the writer lacks (such as "_line") is ignored. Text and UUID
// columns take utf8, large_utf8 or dictionary-of-string arrays (UUID also
// 16-byte fixed-size binary, formatted canonically); timestamps take any
// timestamp unit (nanoseconds are floored to microseconds); tags take list
// or large_list of those string types, with no NULL element. Anything else
// is an error naming the column, as is a NULL in a required column or a
// ref out of range; batches no ref picks are not looked at. Those errors
// are all found before anything is written, and leave the writer usable.
// The caller keeps ownership of src; Write does not retain it.
func (w *Writer) Write(src []arrow.RecordBatch, refs []RowRef) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return errors.New("parquet: write after close")
	}
	if len(refs) == 0 {
		return nil
	}
	w.used = slices.Grow(w.used[:0], len(src))[:len(src)]
	clear(w.used)
	for _, r := range refs {
		if r.Batch < 0 || int(r.Batch) >= len(src) || r.Row < 0 || int64(r.Row) >= src[r.Batch].NumRows() {
			return fmt.Errorf("parquet: row ref {batch %d, row %d} out of range", r.Batch, r.Row)
		}
		w.used[r.Batch] = true
	}
	defer func() {
		for i := range w.cols {
			clear(w.cols[i].srcs) // drop the arrays
		}
	}()
	for i := range w.cols {
		c := &w.cols[i]
		c.srcs = slices.Grow(c.srcs[:0], len(src))[:len(src)]
		clear(c.srcs)
		for b, rec := range src {
			if !w.used[b] {
				continue
			}
			s, err := bindSource(c.Column, rec)
			if err != nil {
				return fmt.Errorf("parquet: source batch %d: %w", b, err)
			}
			c.srcs[b] = s
		}
		if err := c.check(refs); err != nil {
			return err
		}
	}
	writers := w.pw.ColumnWriters()
	for len(refs) > 0 {
		n := min(len(refs), parquetChunkRows, w.groupRows-w.inGroup, parquetPageRows-w.inPage)
		chunk := refs[:n]
		// Columns are independent: fill and write (which may compress a
		// page) them on all cores.
		if err := w.eachColumn(func(c *pqColumn) error {
			c.fill(chunk)
			_, err := writers[c.index].WriteRowValues(c.vals)
			clear(c.vals)
			if err != nil {
				return fmt.Errorf("parquet: column %s: %w", c.Name, err)
			}
			return nil
		}); err != nil {
			w.err = err
			return w.err
		}
		w.inGroup += n
		w.inPage += n
		w.rows += int64(n)
		refs = refs[n:]
		switch {
		case w.inGroup == w.groupRows:
			// Compress the columns' last pages on all cores, then write the
			// row group.
			if err := w.flushPages(); err != nil {
				return err
			}
			if err := w.pw.Flush(); err != nil {
				w.err = fmt.Errorf("parquet: flush row group: %w", err)
				return w.err
			}
			w.inGroup, w.inPage = 0, 0
		case w.inPage == parquetPageRows:
			if err := w.flushPages(); err != nil {
				return err
			}
			w.inPage = 0
		}
	}
	return nil
}

// flushPages ends every column's current page, compressing the columns on
// all cores. An error sticks to the writer.
func (w *Writer) flushPages() error {
	writers := w.pw.ColumnWriters()
	if err := w.eachColumn(func(c *pqColumn) error {
		if err := writers[c.index].Flush(); err != nil {
			return fmt.Errorf("parquet: column %s: flush page: %w", c.Name, err)
		}
		return nil
	}); err != nil {
		w.err = err
	}
	return w.err
}

// eachColumn runs f on every column, spread over GOMAXPROCS goroutines,
// and returns the first error.
func (w *Writer) eachColumn(f func(c *pqColumn) error) error {
	workers := min(runtime.GOMAXPROCS(0), len(w.cols))
	if workers <= 1 {
		for i := range w.cols {
			if err := f(&w.cols[i]); err != nil {
				return err
			}
		}
		return nil
	}
	var next atomic.Int64
	errs := make([]error, len(w.cols))
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(w.cols) {
					return
				}
				errs[i] = f(&w.cols[i])
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close flushes the last row group and writes the footer. It does not close
// the io.Writer. Closing twice is a no-op.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err != nil {
		return w.err
	}
	if w.inGroup > 0 {
		if err := w.flushPages(); err != nil {
			return err
		}
	}
	if err := w.pw.Close(); err != nil {
		w.err = fmt.Errorf("parquet: close: %w", err)
	}
	return w.err
}

// pqSource is one source batch's array for one writer column, unpacked for
// direct access.
type pqSource struct {
	arr   arrow.Array // nil: the batch lacks the column
	str   byteArrays  // Text, UUID: the values; Tags: the list elements
	i64   []int64     // Int64
	ts    []arrow.Timestamp
	unit  arrow.TimeUnit
	off32 []int32 // Tags: list offsets into str, from the list's first row
	off64 []int64 // Tags of a large_list (large is set)
	large bool
}

// byteArrays reads string-like arrays: plain or large utf8, a dictionary of
// those, or 16-byte UUIDs.
type byteArrays struct {
	arr   arrow.Array // for nulls
	data  []byte
	off32 []int32 // utf8
	off64 []int64 // large_utf8 (large is set)
	large bool
	dict  *array.Dictionary // set: indexes data/off* through it
	dictV arrow.Array       // the dictionary's values, for nulls
	uuid  []byte            // 16 bytes a value, from the array's first row
}

func (b *byteArrays) isNull(i int) bool {
	if b.arr.IsNull(i) {
		return true
	}
	if b.dict != nil {
		return b.dictV.IsNull(b.dict.GetValueIndex(i))
	}
	return false
}

// at returns value i, which must not be null; a UUID is formatted into
// *arena.
func (b *byteArrays) at(i int, arena *[]byte) []byte {
	if b.dict != nil {
		i = b.dict.GetValueIndex(i)
	}
	switch {
	case b.uuid != nil:
		start := len(*arena)
		*arena = appendUUID(*arena, b.uuid[16*i:16*i+16])
		return (*arena)[start:len(*arena):len(*arena)]
	case b.large:
		return b.data[b.off64[i]:b.off64[i+1]]
	default:
		return b.data[b.off32[i]:b.off32[i+1]]
	}
}

func appendUUID(dst, u []byte) []byte {
	const hex = "0123456789abcdef"
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hex[c>>4], hex[c&15])
	}
	return dst
}

// bindByteArrays unpacks a string-like array; ok is false for any other type.
func bindByteArrays(arr arrow.Array, uuid bool) (b byteArrays, ok bool) {
	b.arr = arr
	if d, isDict := arr.(*array.Dictionary); isDict {
		inner, ok := bindByteArrays(d.Dictionary(), false)
		if !ok || inner.dict != nil {
			return b, false
		}
		inner.arr, inner.dict, inner.dictV = arr, d, d.Dictionary()
		return inner, true
	}
	if ext, isExt := arr.(array.ExtensionArray); isExt {
		arr = ext.Storage()
	}
	switch a := arr.(type) {
	case *array.String:
		b.data, b.off32 = bufferBytes(a, 2), a.ValueOffsets()
		return b, true
	case *array.LargeString:
		b.data, b.off64, b.large = bufferBytes(a, 2), a.ValueOffsets(), true
		return b, true
	case *array.FixedSizeBinary:
		if !uuid || a.DataType().(*arrow.FixedSizeBinaryType).ByteWidth != 16 {
			return b, false
		}
		off := a.Data().Offset()
		b.uuid = bufferBytes(a, 1)[16*off : 16*(off+a.Len())]
		if b.uuid == nil {
			b.uuid = []byte{}
		}
		return b, true
	}
	return b, false
}

func bufferBytes(a arrow.Array, i int) []byte {
	if buf := a.Data().Buffers()[i]; buf != nil {
		return buf.Bytes()
	}
	return nil
}

// bindSource finds column c in rec by name and unpacks it.
func bindSource(c schemas.Column, rec arrow.RecordBatch) (pqSource, error) {
	idx := rec.Schema().FieldIndices(c.Name)
	if len(idx) == 0 {
		if c.Required {
			return pqSource{}, fmt.Errorf("required column %s is missing", c.Name)
		}
		return pqSource{}, nil
	}
	arr := rec.Column(idx[0])
	s := pqSource{arr: arr}
	bad := func() (pqSource, error) {
		return pqSource{}, fmt.Errorf("column %s: cannot write %s as %s", c.Name, arr.DataType(), c.Kind)
	}
	switch c.Kind {
	case schemas.Text, schemas.UUID:
		b, ok := bindByteArrays(arr, c.Kind == schemas.UUID)
		if !ok {
			return bad()
		}
		s.str = b
	case schemas.Timestamp:
		a, ok := arr.(*array.Timestamp)
		if !ok {
			return bad()
		}
		s.ts, s.unit = a.TimestampValues(), a.DataType().(*arrow.TimestampType).Unit
	case schemas.Int64:
		a, ok := arr.(*array.Int64)
		if !ok {
			return bad()
		}
		s.i64 = a.Int64Values()
	case schemas.Tags:
		var values arrow.Array
		switch a := arr.(type) {
		case *array.List:
			values, s.off32 = a.ListValues(), a.Offsets()[a.Data().Offset():]
		case *array.LargeList:
			values, s.off64, s.large = a.ListValues(), a.Offsets()[a.Data().Offset():], true
		default:
			return bad()
		}
		b, ok := bindByteArrays(values, false)
		if !ok {
			return bad()
		}
		s.str = b
	default:
		return bad()
	}
	return s, nil
}

// check fails if a ref picks a NULL of a required column or a NULL list
// element. It looks at rows only in source arrays that have NULLs there.
func (c *pqColumn) check(refs []RowRef) error {
	scan := false
	for i := range c.srcs {
		if c.srcs[i].mayHaveBadNull(c.Column) {
			scan = true
		}
	}
	if !scan {
		return nil
	}
	for _, r := range refs {
		s := &c.srcs[r.Batch]
		if s.arr == nil {
			continue
		}
		row := int(r.Row)
		if c.Kind != schemas.Tags {
			if c.Required && s.str.arr != nil && s.str.isNull(row) || c.Required && s.arr.IsNull(row) {
				return fmt.Errorf("parquet: column %s is required but batch %d row %d is NULL", c.Name, r.Batch, r.Row)
			}
			continue
		}
		if s.arr.IsNull(row) {
			if c.Required {
				return fmt.Errorf("parquet: column %s is required but batch %d row %d is NULL", c.Name, r.Batch, r.Row)
			}
			continue
		}
		lo, hi := s.listBounds(row)
		for k := lo; k < hi; k++ {
			if s.str.isNull(k) {
				return fmt.Errorf("parquet: column %s: batch %d row %d has a NULL list element", c.Name, r.Batch, r.Row)
			}
		}
	}
	return nil
}

// mayHaveBadNull reports whether s has NULLs where column c cannot store
// them: in a required column, or as a list element.
func (s *pqSource) mayHaveBadNull(c schemas.Column) bool {
	if s.arr == nil {
		return false
	}
	strNulls := s.str.arr != nil && (s.str.arr.NullN() > 0 || s.str.dict != nil && s.str.dictV.NullN() > 0)
	if c.Kind == schemas.Tags {
		return strNulls || c.Required && s.arr.NullN() > 0
	}
	return c.Required && (s.arr.NullN() > 0 || strNulls)
}

func (s *pqSource) listBounds(row int) (int, int) {
	if s.large {
		return int(s.off64[row]), int(s.off64[row+1])
	}
	return int(s.off32[row]), int(s.off32[row+1])
}

// fill puts the values of the rows refs picks into c.vals, with their
// levels.
func (c *pqColumn) fill(refs []RowRef) {
	vals := c.vals[:0]
	c.arena = c.arena[:0]
	if c.Kind == schemas.UUID {
		c.arena = growCap(c.arena, 36*len(refs))
	}
	col := c.index
	null := c.def - 1 // definition level of a NULL (never used when required)
	switch c.Kind {
	case schemas.Text, schemas.UUID:
		for _, r := range refs {
			s := &c.srcs[r.Batch]
			row := int(r.Row)
			if s.arr == nil || s.str.isNull(row) {
				vals = append(vals, parquet.Value{}.Level(0, null, col))
				continue
			}
			vals = append(vals, parquet.ByteArrayValue(s.str.at(row, &c.arena)).Level(0, c.def, col))
		}
	case schemas.Timestamp:
		for _, r := range refs {
			s := &c.srcs[r.Batch]
			row := int(r.Row)
			if s.arr == nil || s.arr.IsNull(row) {
				vals = append(vals, parquet.Value{}.Level(0, null, col))
				continue
			}
			vals = append(vals, parquet.Int64Value(toMicros(int64(s.ts[row]), s.unit)).Level(0, c.def, col))
		}
	case schemas.Int64:
		for _, r := range refs {
			s := &c.srcs[r.Batch]
			row := int(r.Row)
			if s.arr == nil || s.arr.IsNull(row) {
				vals = append(vals, parquet.Value{}.Level(0, null, col))
				continue
			}
			vals = append(vals, parquet.Int64Value(s.i64[row]).Level(0, c.def, col))
		}
	case schemas.Tags:
		// Levels: a NULL list is (0, def-2), an empty list (0, def-1), each
		// element (0 for the first, 1 after, def).
		for _, r := range refs {
			s := &c.srcs[r.Batch]
			row := int(r.Row)
			if s.arr == nil || s.arr.IsNull(row) {
				vals = append(vals, parquet.Value{}.Level(0, c.def-2, col))
				continue
			}
			lo, hi := s.listBounds(row)
			if lo == hi {
				vals = append(vals, parquet.Value{}.Level(0, c.def-1, col))
				continue
			}
			for k := lo; k < hi; k++ {
				rep := 1
				if k == lo {
					rep = 0
				}
				vals = append(vals, parquet.ByteArrayValue(s.str.at(k, &c.arena)).Level(rep, c.def, col))
			}
		}
	}
	c.vals = vals
}

func growCap(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, 0, n)
	}
	return b
}

// toMicros converts a timestamp of the given unit to microseconds, flooring
// nanoseconds.
func toMicros(v int64, unit arrow.TimeUnit) int64 {
	switch unit {
	case arrow.Second:
		return v * 1_000_000
	case arrow.Millisecond:
		return v * 1_000
	case arrow.Nanosecond:
		q := v / 1_000
		if v%1_000 < 0 {
			q--
		}
		return q
	}
	return v
}

// ReadFile reads a whole Parquet file written by Writer
// (or any file with our column kinds) with arrow-go's pqarrow into record
// batches of at most 65536 rows, and returns its columns as
// schemas.Columns: from the file's ColumnsKey metadata when present,
// otherwise standard names keep their kind from schemas.Known (lineage
// columns from schemas.Lineage) and other names are Text, or Timestamp,
// Tags or Int64 when that is their Arrow type. The caller releases the
// batches. Arrays have the types pqarrow gives: utf8, list<element: utf8>,
// timestamp[us, tz=UTC], int64; every Writer accepts them.
func ReadFile(path string, alloc memory.Allocator) (cols []schemas.Column, batches []arrow.RecordBatch, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open parquet file %s: %w", path, err)
	}
	defer f.Close()
	return Read(f, path, alloc)
}

// Read is ReadFile for an open file; name is used in errors.
func Read(r aparquet.ReaderAtSeeker, path string, alloc memory.Allocator) (cols []schemas.Column, batches []arrow.RecordBatch, err error) {
	if alloc == nil {
		alloc = memory.DefaultAllocator
	}
	pf, err := file.NewParquetReader(r)
	if err != nil {
		return nil, nil, fmt.Errorf("open parquet file %s: %w", path, err)
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: parquetReadBatchRows}, alloc)
	if err != nil {
		return nil, nil, fmt.Errorf("read parquet file %s: %w", path, err)
	}
	sc, err := fr.Schema()
	if err != nil {
		return nil, nil, fmt.Errorf("read parquet file %s: schema: %w", path, err)
	}
	var meta []columnMeta
	if v := pf.MetaData().KeyValueMetadata().FindValue(ColumnsKey); v != nil {
		if err := json.Unmarshal([]byte(*v), &meta); err != nil {
			return nil, nil, fmt.Errorf("read parquet file %s: metadata %s: %w", path, ColumnsKey, err)
		}
	}
	cols = columnsOf(sc, meta)
	if pf.NumRows() == 0 {
		return cols, nil, nil
	}
	rr, err := fr.GetRecordReader(context.Background(), nil, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("read parquet file %s: %w", path, err)
	}
	defer rr.Release()
	for rr.Next() {
		b := rr.RecordBatch()
		b.Retain()
		batches = append(batches, b)
	}
	if err := rr.Err(); err != nil {
		for _, b := range batches {
			b.Release()
		}
		return nil, nil, fmt.Errorf("read parquet file %s: %w", path, err)
	}
	return cols, batches, nil
}

// columnsOf maps the fields of a file's Arrow schema to columns.
func columnsOf(sc *arrow.Schema, meta []columnMeta) []schemas.Column {
	byName := make(map[string]columnMeta, len(meta))
	for _, m := range meta {
		byName[m.Name] = m
	}
	cols := make([]schemas.Column, sc.NumFields())
	for i, f := range sc.Fields() {
		if m, ok := byName[f.Name]; ok {
			if k, err := schemas.ParseKind(m.Kind); err == nil {
				cols[i] = schemas.Column{Name: f.Name, Kind: k, Required: m.Required}
				continue
			}
		}
		if c, ok := knownColumn(f.Name); ok {
			cols[i] = c
			continue
		}
		c := schemas.Column{Name: f.Name, Kind: schemas.Text, Required: !f.Nullable}
		switch f.Type.ID() {
		case arrow.TIMESTAMP:
			c.Kind = schemas.Timestamp
		case arrow.LIST, arrow.LARGE_LIST:
			c.Kind = schemas.Tags
		case arrow.INT64:
			c.Kind = schemas.Int64
		}
		cols[i] = c
	}
	return cols
}

// knownColumn returns the standard or lineage column called name.
func knownColumn(name string) (schemas.Column, bool) {
	if c, ok := schemas.Known(name); ok {
		return c, true
	}
	for _, c := range schemas.Lineage {
		if c.Name == name {
			return c, true
		}
	}
	return schemas.Column{}, false
}
