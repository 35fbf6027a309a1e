package transform

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/schemas"
)

// Defaults of Options.
const (
	DefaultBatchRows      = 16384
	DefaultMaxRejectRatio = 0.01
)

// LineField is the name of the last field of every batch: the line the
// row's record starts on, so that a loader can keep the latest of duplicate
// ids.
const LineField = "_line"

// Options tunes a Reader. The zero value is ready to use.
type Options struct {
	BatchRows      int              // rows per record batch; 0 (or less) means DefaultBatchRows
	MaxRejectRatio float64          // the body fails (Err returns a *RejectRatioError) when rejected rows exceed this share of data rows; 0 means DefaultMaxRejectRatio, below 0 tolerates no reject, 1 or more never fails
	RejectsAllowed int              // a body with at most this many rejected rows never fails, whatever the ratio (a few bad contacts in a small window are recorded, not fatal); 0 means none
	Alloc          memory.Allocator // nil means memory.DefaultAllocator
	RequestID      string           // copied into each Reject
	// MaxRows is the most data rows a body may hold: the limit the request
	// asked for. A body with more fails (Err returns an
	// *extract.ProtocolError) as soon as row MaxRows+1 is read, and nothing
	// after it is read. 0 means no cap.
	MaxRows int
	// Fields, when set, are the columns asked for: other columns of the
	// header are read past and left out of the batches (Ignored names
	// them), so a server that adds columns nobody asked for cannot change
	// the destination's schema. id and created_at are always kept.
	Fields []string
}

// Reader turns one export body into record batches with the schema Schema
// returns. It implements array.RecordReader, so it can be handed straight to
// DuckDB's Arrow view registration. Each batch has exactly BatchRows rows
// but the last; rows that do not parse never appear in a batch and are kept
// in Rejects instead. The stream ends at the end of the body (Err returns
// nil), at a read error of the underlying reader (Err returns it unchanged;
// the rows of the unfinished batch are dropped), at row Options.MaxRows+1
// (Err returns an *extract.ProtocolError; the unfinished batch is dropped),
// or, at the end of the body, when too many rows were rejected (Err returns
// a *RejectRatioError instead of the last batch). Any error means the window
// must not be committed.
// A Reader is not safe for concurrent use. The caller releases it (which
// does not close the io.Reader); the batch RecordBatch returns belongs to the
// Reader.
type Reader struct {
	refs atomic.Int64

	sc        *scanner
	requestID string
	batchRows int
	maxReject float64
	allowed   int64 // rejects that never fail the body
	maxRows   int64 // 0: no cap

	cols      []schemas.Column
	width     int      // fields in the header
	src       []int    // per column of cols: its field in the header
	ignored   []string // header fields not asked for
	schema    *arrow.Schema
	rb        *array.RecordBuilder
	conv      []colBuilder
	lines     *array.Int64Builder
	createdAt int // index of the created_at column

	cur  arrow.RecordBatch
	n    int // rows in the builders
	rows int64

	rejects []Reject
	tally   extract.Tally
	err     error
	done    bool

	uuids [][36]byte // per column: the canonical UUID of the row being added
	ints  []int64    // per column: the timestamp or integer of the row being added
	sizes [][2]int   // per column: values and bytes in the last batch
}

// colBuilder appends one column's values.
type colBuilder struct {
	schemas.Column
	str  *array.StringBuilder // Text and UUID
	ts   *array.TimestampBuilder
	i64  *array.Int64Builder
	list *array.ListBuilder
	tags *array.StringBuilder // the values of list
}

var _ array.RecordReader = (*Reader)(nil)

// NewReader reads the header of the CSV body r and returns a Reader of its
// data rows. It fails with ErrEmptyBody when the body has no header row, with
// an error matching ErrHeader (and wrapping schemas.ForHeader's) when the
// header is unusable, and with the read error when reading r fails. The
// Reader does not close r.
func NewReader(r io.Reader, opts Options) (*Reader, error) {
	return newReader(r, opts, initialBufferBytes, maxRecordBytes)
}

func newReader(r io.Reader, opts Options, bufSize, maxRecord int) (*Reader, error) {
	sc := newScanner(r, bufSize, maxRecord)
	sc.skipBOM()
	if !sc.next() {
		if err := sc.err(); err != nil {
			return nil, err
		}
		return nil, ErrEmptyBody
	}
	if sc.bad != nil {
		if sc.cut {
			return nil, truncated(opts.RequestID, &RowError{Line: sc.recLine, Err: sc.bad}, sc.open)
		}
		return nil, fmt.Errorf("%w: line %d: %w", ErrHeader, sc.recLine, sc.bad)
	}
	header := make([]string, len(sc.fields))
	for i, f := range sc.fields {
		header[i] = string(f)
	}
	all, err := schemas.ForHeader(header)
	if err != nil {
		if sc.cut {
			return nil, truncated(opts.RequestID, &RowError{Line: sc.recLine, Err: err}, false)
		}
		return nil, fmt.Errorf("%w: %w", ErrHeader, err)
	}
	var cols []schemas.Column
	var src []int
	var ignored []string
	for i, c := range all {
		if opts.Fields != nil && c.Name != "id" && c.Name != "created_at" && !slices.Contains(opts.Fields, c.Name) {
			ignored = append(ignored, c.Name)
			continue
		}
		cols, src = append(cols, c), append(src, i)
	}

	rd := &Reader{
		sc:        sc,
		requestID: opts.RequestID,
		batchRows: opts.BatchRows,
		maxReject: opts.MaxRejectRatio,
		allowed:   int64(max(opts.RejectsAllowed, 0)),
		maxRows:   int64(max(opts.MaxRows, 0)),
		cols:      cols,
		createdAt: -1,
		width:     len(all),
		src:       src,
		ignored:   ignored,
		uuids:     make([][36]byte, len(cols)),
		ints:      make([]int64, len(cols)),
		sizes:     make([][2]int, len(cols)),
	}
	rd.refs.Store(1)
	if rd.batchRows <= 0 {
		rd.batchRows = DefaultBatchRows
	}
	switch {
	case rd.maxReject == 0:
		rd.maxReject = DefaultMaxRejectRatio
	case rd.maxReject < 0:
		rd.maxReject = 0
	}
	alloc := opts.Alloc
	if alloc == nil {
		alloc = memory.DefaultAllocator
	}
	base := schemas.ArrowSchema(cols)
	fields := append(base.Fields(), arrow.Field{Name: LineField, Type: arrow.PrimitiveTypes.Int64})
	rd.schema = arrow.NewSchema(fields, nil)
	rd.rb = array.NewRecordBuilder(alloc, rd.schema)
	rd.conv = make([]colBuilder, len(cols))
	for i, c := range cols {
		cb := colBuilder{Column: c}
		switch b := rd.rb.Field(i).(type) {
		case *array.StringBuilder:
			cb.str = b
		case *array.TimestampBuilder:
			cb.ts = b
		case *array.Int64Builder:
			cb.i64 = b
		case *array.ListBuilder:
			cb.list = b
			cb.tags = b.ValueBuilder().(*array.StringBuilder)
		default:
			rd.rb.Release()
			return nil, fmt.Errorf("transform: column %s: no builder for %s", c.Name, c.ArrowType())
		}
		rd.conv[i] = cb
		if c.Name == "created_at" && c.Kind == schemas.Timestamp {
			rd.createdAt = i
		}
	}
	rd.lines = rd.rb.Field(len(cols)).(*array.Int64Builder)
	return rd, nil
}

// Ignored returns the header's columns that Options.Fields did not ask for,
// which the batches leave out.
func (r *Reader) Ignored() []string { return slices.Clone(r.ignored) }

// Columns returns the data columns in header order (without LineField).
func (r *Reader) Columns() []schemas.Column { return slices.Clone(r.cols) }

// Schema is schemas.ArrowSchema(Columns()) plus a last field LineField, int64
// and never null: the line the row's record starts on.
func (r *Reader) Schema() *arrow.Schema { return r.schema }

// Next reads the next batch and reports whether there is one. It releases the
// previous batch. After it returns false, Err says why.
func (r *Reader) Next() bool {
	if r.cur != nil {
		r.cur.Release()
		r.cur = nil
	}
	if r.err != nil || r.done || r.refs.Load() <= 0 {
		return false
	}
	sc := r.sc
	for r.n < r.batchRows {
		if !sc.next() {
			if err := sc.err(); err != nil {
				r.err = err
				return false
			}
			r.done = true
			break
		}
		if r.maxRows > 0 && r.rows >= r.maxRows {
			r.err = &extract.ProtocolError{RequestID: r.requestID, Rows: r.rows + 1, Problem: fmt.Sprintf(
				"the body holds more data rows than the limit of %d the request asked for: reading stopped at row %d (line %d) and nothing of this window was loaded",
				r.maxRows, r.rows+1, sc.recLine)}
			return false
		}
		r.rows++
		r.tally.AddRow()
		var bad *RowError
		if sc.bad != nil {
			bad = &RowError{Line: sc.recLine, Err: sc.bad}
		} else {
			bad = r.add(sc.fields, sc.raw, sc.recLine)
		}
		if bad != nil && sc.cut {
			r.err = truncated(r.requestID, bad, sc.open)
			return false
		}
		if bad != nil {
			r.rejects = append(r.rejects, Reject{
				Line:      bad.Line,
				Raw:       string(truncate(sc.raw, maxRawBytes)),
				Reason:    bad.reason(),
				RequestID: r.requestID,
			})
		}
	}
	if r.done {
		if rej := int64(len(r.rejects)); rej > r.allowed && float64(rej) > r.maxReject*float64(r.rows) {
			r.err = &RejectRatioError{Rejected: rej, Rows: r.rows, Max: r.maxReject, First: r.rejects[0]}
			return false
		}
		if r.n == 0 {
			return false
		}
	}
	r.emit()
	return true
}

// emit turns the builders into the current batch and, when more rows are to
// come, reserves room for a full batch like the last.
func (r *Reader) emit() {
	if !r.done {
		for i, c := range r.conv {
			switch {
			case c.str != nil:
				r.sizes[i] = [2]int{0, c.str.DataLen()}
			case c.list != nil:
				r.sizes[i] = [2]int{c.tags.Len(), c.tags.DataLen()}
			}
		}
	}
	r.cur = r.rb.NewRecordBatch()
	r.n = 0
	if r.done {
		return
	}
	r.rb.Reserve(r.batchRows)
	for i, c := range r.conv {
		n, data := r.sizes[i][0], r.sizes[i][1]
		switch {
		case c.str != nil:
			c.str.ReserveData(data + data/16)
		case c.list != nil:
			c.tags.Reserve(n + n/16)
			c.tags.ReserveData(data + data/16)
		}
	}
}

// add appends one well-formed record to the builders, or returns why it is
// rejected without appending anything.
func (r *Reader) add(fields [][]byte, raw []byte, line int64) *RowError {
	if len(fields) != r.width {
		return &RowError{Line: line, Err: fmt.Errorf("%w: got %d, want %d", csv.ErrFieldCount, len(fields), r.width)}
	}
	if !utf8.Valid(raw) {
		// Only the columns kept matter; an ignored one may hold anything.
		for i := range r.conv {
			if !utf8.Valid(fields[r.src[i]]) {
				return &RowError{Line: line, Column: r.conv[i].Name, Err: ErrInvalidUTF8}
			}
		}
	}
	// Check every value before appending any.
	for i := range r.conv {
		c := &r.conv[i]
		v := fields[r.src[i]]
		if len(v) == 0 && !c.Required {
			continue
		}
		switch c.Kind {
		case schemas.UUID:
			if !canonicalUUID(&r.uuids[i], v) {
				return &RowError{Line: line, Column: c.Name, Err: fmt.Errorf("%w: %s", ErrNotUUID, quoteValue(v))}
			}
		case schemas.Timestamp:
			t, ok := parseTimestamp(v)
			if !ok {
				return &RowError{Line: line, Column: c.Name, Err: fmt.Errorf("%w: %s", ErrBadTimestamp, quoteValue(v))}
			}
			r.ints[i] = t
		case schemas.Int64:
			n, ok := parseInt64(v)
			if !ok {
				return &RowError{Line: line, Column: c.Name, Err: fmt.Errorf("%w: %s", ErrNotInteger, quoteValue(v))}
			}
			r.ints[i] = n
		case schemas.Text:
			if len(v) == 0 {
				return &RowError{Line: line, Column: c.Name, Err: ErrMissing}
			}
		}
	}
	for i := range r.conv {
		c := &r.conv[i]
		v := fields[r.src[i]]
		switch {
		case c.list != nil:
			c.list.Append(true) // an empty field is an empty list, never NULL
			for len(v) > 0 {
				item := v
				if k := bytes.IndexByte(v, ','); k >= 0 {
					item, v = v[:k], v[k+1:]
				} else {
					v = nil
				}
				if item = bytes.TrimSpace(item); len(item) > 0 {
					c.tags.BinaryBuilder.Append(item)
				}
			}
		case len(v) == 0:
			r.rb.Field(i).AppendNull()
		case c.Kind == schemas.UUID:
			c.str.BinaryBuilder.Append(r.uuids[i][:])
		case c.str != nil:
			c.str.BinaryBuilder.Append(v)
		case c.ts != nil:
			c.ts.Append(arrow.Timestamp(r.ints[i]))
		case c.i64 != nil:
			c.i64.Append(r.ints[i])
		}
	}
	r.lines.Append(line)
	r.n++
	if r.createdAt >= 0 && len(fields[r.src[r.createdAt]]) > 0 {
		if t := r.tally.Times; len(t) == cap(t) {
			r.tally.Times = slices.Grow(t, max(len(t), 1024)) // double, not append's 1.25
		}
		r.tally.AddTime(time.UnixMicro(r.ints[r.createdAt]))
	}
	return nil
}

// RecordBatch returns the current batch, valid until the next call of Next or
// Release. The caller retains it to keep it longer.
func (r *Reader) RecordBatch() arrow.RecordBatch { return r.cur }

// Record returns the current batch, like RecordBatch.
//
// Deprecated: use RecordBatch.
func (r *Reader) Record() arrow.RecordBatch { return r.cur }

// Err returns the error that ended the stream, nil at a clean end. A read
// error of the underlying reader is returned as it is.
func (r *Reader) Err() error { return r.err }

// Retain adds a reference to r.
func (r *Reader) Retain() { r.refs.Add(1) }

// Release drops a reference to r; the last one frees the current batch and
// the builders. Next returns false afterwards.
func (r *Reader) Release() {
	if r.refs.Add(-1) != 0 {
		return
	}
	if r.cur != nil {
		r.cur.Release()
		r.cur = nil
	}
	r.rb.Release()
	r.sc.buf = nil
}

// Rejects returns the rows rejected so far, in body order. The caller must
// not modify the slice.
func (r *Reader) Rejects() []Reject { return r.rejects }

// Rows returns the number of data records read so far, parsed or rejected.
func (r *Reader) Rows() int64 { return r.rows }

// Tally returns the planner's feedback: Rows counts the data records read so
// far, parsed or rejected, and Times holds the created_at of each accepted
// row, in body order.
func (r *Reader) Tally() extract.Tally { return r.tally }
