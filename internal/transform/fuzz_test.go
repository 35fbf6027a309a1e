package transform

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/schemas"
)

// fuzzHeader precedes the fuzzed bytes when the second argument is true.
const fuzzHeader = "id,full_name,tags,created_at\n"

// FuzzReader feeds random bytes, after a valid header or on their own, to the
// scanner (which must split records exactly like encoding/csv) and to the
// Reader (which must never panic, must account for every data record as a
// batch row or a reject, and must return all its memory). The seed corpus is
// in testdata/fuzz/FuzzReader.
func FuzzReader(f *testing.F) {
	for _, s := range []string{
		"",
		u1 + ",Jane,\"a, b\"," + ts1 + "\n",
		u1 + ",\"Ja\r\nne\",,2026-04-15T11:00:00+02:00\r\n",
		"bad,\"x\"y,,\n\"unterminated",
		"\ufeff" + fuzzHeader + u1 + ",,,2026-04-15 09:00:00.1234567-0500",
	} {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, body []byte, withHeader bool) {
		input := body
		if withHeader {
			input = append([]byte(fuzzHeader), body...)
		}
		checkScanner(t, input, 1+len(input)%13, 1<<20)
		checkScanner(t, input, 5, 40)
		checkReader(t, input)
	})
}

// checkScanner compares the scanner's records with encoding/csv's.
func checkScanner(t *testing.T, input []byte, bufSize, maxRecord int) {
	t.Helper()
	sc := newScanner(bytes.NewReader(input), bufSize, maxRecord)
	cr := csv.NewReader(bytes.NewReader(input))
	cr.FieldsPerRecord = -1
	for n := 0; ; n++ {
		want, werr := cr.Read()
		got := sc.next()
		if werr == io.EOF {
			if got {
				t.Fatalf("record %d: scanner has a record at line %d, encoding/csv is at EOF", n, sc.recLine)
			}
			if sc.err() != nil {
				t.Fatalf("scanner error %v", sc.err())
			}
			return
		}
		if !got {
			t.Fatalf("record %d: scanner ended (%v), encoding/csv read %q, %v", n, sc.err(), want, werr)
		}
		var line int
		var kind error
		if werr != nil {
			var pe *csv.ParseError
			if !errors.As(werr, &pe) {
				t.Fatalf("encoding/csv: %v", werr)
			}
			line, kind = pe.StartLine, pe.Err
		} else {
			line, _ = cr.FieldPos(0)
		}
		if sc.recLine != int64(line) {
			t.Fatalf("record %d starts on line %d, encoding/csv says %d", n, sc.recLine, line)
		}
		if len(sc.raw) > maxRawBytes {
			t.Fatalf("raw of %d bytes", len(sc.raw))
		}
		if sc.bad == ErrRecordTooLong {
			continue
		}
		if sc.bad != kind {
			t.Fatalf("record %d (line %d): scanner error %v, encoding/csv %v", n, line, sc.bad, kind)
		}
		if werr != nil {
			continue
		}
		if len(sc.fields) != len(want) {
			t.Fatalf("record %d: %q, encoding/csv %q", n, sc.fields, want)
		}
		for i := range want {
			if string(sc.fields[i]) != want[i] {
				t.Fatalf("record %d field %d: %q, encoding/csv %q", n, i, sc.fields[i], want[i])
			}
		}
	}
}

// checkReader reads input with a Reader and checks its invariants.
func checkReader(t *testing.T, input []byte) {
	t.Helper()
	for _, maxRatio := range []float64{1, 0} {
		alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
		batchRows := 1 + len(input)%5
		rd, err := newReader(bytes.NewReader(input), Options{Alloc: alloc, BatchRows: batchRows, MaxRejectRatio: maxRatio}, 7, 4096)
		if err != nil {
			if !errors.Is(err, ErrEmptyBody) && !errors.Is(err, ErrHeader) && !errors.Is(err, ErrTruncated) {
				t.Fatalf("NewReader: %v", err)
			}
			alloc.AssertSize(t, 0)
			return
		}
		var rows, last int64
		var sizes []int
		var lines []int64
		for rd.Next() {
			rec := rd.RecordBatch()
			if err := array.ValidateRecordFull(rec); err != nil {
				t.Fatalf("invalid batch: %v", err)
			}
			sizes = append(sizes, int(rec.NumRows()))
			rows += rec.NumRows()
			ids := rec.Column(slices.IndexFunc(rd.Columns(), func(c schemas.Column) bool { return c.Name == "id" })).(*array.String)
			ln := rec.Column(int(rec.NumCols()) - 1).(*array.Int64)
			for i := range int(rec.NumRows()) {
				var u [36]byte
				if id := ids.Value(i); !canonicalUUID(&u, []byte(id)) || string(u[:]) != id {
					t.Fatalf("id %q is not canonical", id)
				}
				if ln.Value(i) <= last {
					t.Fatalf("line %d after %d", ln.Value(i), last)
				}
				last = ln.Value(i)
				lines = append(lines, last)
			}
			for c := range int(rec.NumCols()) {
				if s, ok := rec.Column(c).(*array.String); ok {
					for i := range s.Len() {
						if !utf8.ValidString(s.Value(i)) {
							t.Fatalf("column %d holds invalid UTF-8 %q", c, s.Value(i))
						}
					}
				}
			}
		}
		rejects := rd.Rejects()
		switch err := rd.Err(); {
		case err == nil:
			if rows+int64(len(rejects)) != rd.Rows() {
				t.Fatalf("%d batch rows + %d rejects != Rows() %d", rows, len(rejects), rd.Rows())
			}
			for i, n := range sizes {
				if n > batchRows || n < batchRows && i != len(sizes)-1 {
					t.Fatalf("batch sizes %v with BatchRows %d", sizes, batchRows)
				}
			}
			if maxRatio == 0 && float64(len(rejects)) > DefaultMaxRejectRatio*float64(rd.Rows()) {
				t.Fatalf("%d rejects of %d rows passed", len(rejects), rd.Rows())
			}
		case errors.Is(err, ErrTruncated):
			// The body ends inside its last record: without a line ending,
			// or in a quoted field.
			var se *extract.StreamError
			var te *TruncatedError
			if !errors.As(err, &se) || !errors.As(err, &te) {
				t.Fatalf("%v is not a *TruncatedError in an *extract.StreamError", err)
			}
			if bytes.HasSuffix(input, []byte("\n")) && !strings.Contains(te.Reason, "quoted field is still open") {
				t.Fatalf("%v for a body that ends with a line ending", err)
			}
		case errors.Is(err, ErrTooManyRejects):
			if maxRatio == 1 || float64(len(rejects)) <= DefaultMaxRejectRatio*float64(rd.Rows()) {
				t.Fatalf("%v with MaxRejectRatio %g", err, maxRatio)
			}
		default:
			t.Fatalf("Err: %v", err)
		}
		if tl := rd.Tally(); int64(tl.Rows) != rd.Rows() || (rd.Err() == nil && int64(len(tl.Times)) != rows) {
			t.Fatalf("Tally {%d rows, %d times}, Rows() %d, %d batch rows", tl.Rows, len(tl.Times), rd.Rows(), rows)
		}
		for _, r := range rejects {
			if len(r.Raw) > maxRawBytes || r.Reason == "" {
				t.Fatalf("reject %+v", r)
			}
			lines = append(lines, r.Line)
		}
		slices.Sort(lines)
		if len(slices.Compact(lines)) != int(rows)+len(rejects) && rd.Err() == nil {
			t.Fatalf("two records share a line")
		}
		rd.Release()
		alloc.AssertSize(t, 0)
	}
}
