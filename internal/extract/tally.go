package extract

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"time"
)

// Tally is what the planner needs to know about one response: how many data
// rows it held and the created_at of each, in the order they came. The
// transform fills it while it parses the body (AddRow per data record, AddTime
// per created_at that parsed), so the body is read once.
type Tally struct {
	Rows  int     // data records in the body (header excluded), parsed or not
	Times []int64 // created_at as Unix microseconds, in body order; rows whose created_at did not parse are missing
}

// AddRow counts one data record.
func (t *Tally) AddRow() { t.Rows++ }

// AddTime records one row's created_at.
func (t *Tally) AddTime(at time.Time) { t.Times = append(t.Times, at.UnixMicro()) }

// Reset empties t for another attempt at the same window, keeping its memory.
func (t *Tally) Reset() {
	t.Rows = 0
	t.Times = t.Times[:0]
}

// TallyCSV reads a whole export body and returns its Tally without keeping
// any row. It is the planner's feedback for callers that do not transform the
// rows (the plan command, tests, benchmarks).
func TallyCSV(r io.Reader) (Tally, error) {
	var t Tally
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return t, errors.New("empty response body: no CSV header")
		}
		return t, fmt.Errorf("read CSV header: %w", err)
	}
	col := -1
	for i, h := range header {
		if h == "created_at" {
			col = i
		}
	}
	if col < 0 {
		return t, errors.New("CSV header has no created_at column")
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return t, nil
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) && !errors.Is(err, io.ErrUnexpectedEOF) {
				// A malformed row is the transform's business; count it.
				t.AddRow()
				continue
			}
			return t, err
		}
		t.AddRow()
		if col < len(rec) {
			if at, err := time.Parse(time.RFC3339Nano, rec[col]); err == nil {
				t.AddTime(at)
			}
		}
	}
}
