package transform

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// result is everything a Reader produced for one body.
type result struct {
	rows    []string // rowString of every batch row, in order
	batches []int    // row count of each batch
	rejects []Reject
	nrows   int64
	err     error
	tally   []int64
	tallyN  int
}

// readAll reads body to its end with a checked allocator, validating every
// batch, and checks that all memory is returned after Release.
func readAll(t testing.TB, body io.Reader, opts Options) (*result, error) {
	t.Helper()
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	opts.Alloc = alloc
	rd, err := NewReader(body, opts)
	if err != nil {
		return nil, err
	}
	defer rd.Release()
	res := drain(t, rd)
	return res, nil
}

// drain reads rd to its end.
func drain(t testing.TB, rd *Reader) *result {
	t.Helper()
	res := &result{}
	for rd.Next() {
		rec := rd.RecordBatch()
		if !rec.Schema().Equal(rd.Schema()) {
			t.Fatalf("batch schema %v, reader schema %v", rec.Schema(), rd.Schema())
		}
		if err := array.ValidateRecordFull(rec); err != nil {
			t.Fatalf("invalid batch: %v", err)
		}
		res.batches = append(res.batches, int(rec.NumRows()))
		for i := range int(rec.NumRows()) {
			res.rows = append(res.rows, rowString(rec, i))
		}
	}
	res.err = rd.Err()
	res.rejects = rd.Rejects()
	res.nrows = rd.Rows()
	tl := rd.Tally()
	res.tally, res.tallyN = tl.Times, tl.Rows
	return res
}

// rowString renders row i of rec as "v1|v2|...": NULL as ∅, a list as
// [a;b], a timestamp in RFC 3339 UTC, strings quoted only if they hold a
// separator, and the _line field as @n.
func rowString(rec arrow.RecordBatch, i int) string {
	var parts []string
	for c, col := range rec.Columns() {
		if col.IsNull(i) {
			parts = append(parts, "∅")
			continue
		}
		switch a := col.(type) {
		case *array.String:
			parts = append(parts, quoteIfNeeded(a.Value(i)))
		case *array.List:
			lo, hi := a.ValueOffsets(i)
			vals := a.ListValues().(*array.String)
			var items []string
			for k := lo; k < hi; k++ {
				items = append(items, quoteIfNeeded(vals.Value(int(k))))
			}
			parts = append(parts, "["+strings.Join(items, ";")+"]")
		case *array.Timestamp:
			parts = append(parts, time.UnixMicro(int64(a.Value(i))).UTC().Format(time.RFC3339Nano))
		case *array.Int64:
			if rec.ColumnName(c) == LineField {
				parts = append(parts, fmt.Sprintf("@%d", a.Value(i)))
			} else {
				parts = append(parts, fmt.Sprint(a.Value(i)))
			}
		default:
			parts = append(parts, fmt.Sprintf("?%T", col))
		}
	}
	return strings.Join(parts, "|")
}

func quoteIfNeeded(s string) string {
	if strings.ContainsAny(s, "|;[]∅\n\r\"") || s == "" {
		return fmt.Sprintf("%q", s)
	}
	return s
}
