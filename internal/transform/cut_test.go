package transform

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/leadlex/leadlex-etl/internal/extract"
)

// TestCutLastRecord reads bodies that end inside their last record, as a
// body without Content-Length ends when the server or a proxy closes the
// connection mid-row: the last record has no line ending and does not
// parse, or a quoted field is still open. The body is broken, not a body
// with one bad row: Err is an *extract.StreamError (which the client
// retries) matching ErrTruncated and naming the line, and no reject is
// kept. A last record without its line ending that parses, and a bad
// record with its line ending, are what they were.
func TestCutLastRecord(t *testing.T) {
	okRow := u2 + ",ok,," + ts1
	good := func(line int) string { return fmt.Sprintf("%s|ok|[]|2026-04-15T09:00:00Z|@%d", u2, line) }
	long := strings.Repeat("x", 300)
	tests := []struct {
		name      string
		body      string
		cutLine   int64    // the line of the cut record; 0: the body is whole
		rows      []string // of a whole body
		rejects   int      // of a whole body
		maxRecord int      // 0: the default
	}{
		{name: "too few fields", body: hdr + okRow + "\n" + u1 + ",Ja", cutLine: 3},
		{name: "cut inside created_at", body: hdr + okRow + "\n" + u1 + ",Jane,,2026-04-15T09:0", cutLine: 3},
		{name: "cut before the offset", body: hdr + okRow + "\n" + u1 + ",Jane,,2026-04-15T09:00:00", cutLine: 3},
		{name: "cut inside the id", body: hdr + okRow + "\n" + u1[:20], cutLine: 3},
		{name: "cut between CR and LF", body: hdr + okRow + "\r\n" + u1 + ",Jane,\r", cutLine: 3},
		{name: "cut inside a quoted field", body: hdr + okRow + "\n" + u1 + `,"Ja`, cutLine: 3},
		{name: "cut after a line inside a quoted field", body: hdr + okRow + "\n" + u1 + ",\"Jane\nvan\n", cutLine: 3},
		{name: "quote open at the end swallows the rows after it", body: hdr + okRow + "\n" + u1 + ",\"Jane,," + ts1 + "\n" + okRow + "\n", cutLine: 3},
		{name: "cut inside a record too long", body: hdr + okRow + "\n" + u1 + "," + long, cutLine: 3, maxRecord: 256},
		{name: "cut inside a quoted record too long", body: hdr + okRow + "\n" + u1 + ",\"" + long + "\n" + long, cutLine: 3, maxRecord: 256},
		{name: "cut after a syntax error", body: hdr + okRow + "\n" + u1 + `,Ja"ne,,2026`, cutLine: 3},
		{name: "last record parses without its line ending", body: hdr + okRow + "\n" + okRow, rows: []string{good(2), good(3)}},
		{name: "last record parses, CR at the end", body: hdr + okRow + "\n" + okRow + "\r", rows: []string{good(2), good(3)}},
		{name: "bad last record with its line ending", body: hdr + okRow + "\n" + u1 + ",Ja\n", rows: []string{good(2)}, rejects: 1},
		{name: "bad last record with its CRLF", body: hdr + okRow + "\r\n" + u1 + ",Ja\r\n", rows: []string{good(2)}, rejects: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer alloc.AssertSize(t, 0)
			maxRecord := maxRecordBytes
			if tt.maxRecord > 0 {
				maxRecord = tt.maxRecord
			}
			// BatchRows 1: a batch of the rows before the cut is out before
			// the cut is found, as in a long body.
			rd, err := newReader(strings.NewReader(tt.body), Options{Alloc: alloc, BatchRows: 1, MaxRejectRatio: 1, RequestID: "req-cut"}, 16, maxRecord)
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Release()
			res := drain(t, rd)
			if tt.cutLine == 0 {
				if res.err != nil {
					t.Fatalf("Err: %v", res.err)
				}
				if !slices.Equal(res.rows, tt.rows) || len(res.rejects) != tt.rejects {
					t.Errorf("rows %q, %d rejects; want %q, %d", res.rows, len(res.rejects), tt.rows, tt.rejects)
				}
				return
			}
			checkCut(t, res.err, tt.cutLine)
			if len(res.rejects) != 0 {
				t.Errorf("the cut record was kept as a reject too: %+v", res.rejects)
			}
		})
	}
}

// TestCutHeader reads a body cut inside its header: a header without its
// line ending that is unusable is a broken stream too, retried like one.
func TestCutHeader(t *testing.T) {
	for _, body := range []string{"id,full_na", "id,full_name,tags,created_a", `id,"full_name`} {
		_, err := NewReader(strings.NewReader(body), Options{RequestID: "req-cut"})
		checkCut(t, err, 1)
	}
	// A whole header that is unusable stays a header error, not retried.
	_, err := NewReader(strings.NewReader("id,full_name\n"), Options{})
	if se := (*extract.StreamError)(nil); !errors.Is(err, ErrHeader) || errors.As(err, &se) {
		t.Errorf("whole unusable header: %v, want ErrHeader and no *extract.StreamError", err)
	}
}

// checkCut checks that err says the body was cut inside the record of line.
func checkCut(t *testing.T, err error, line int64) {
	t.Helper()
	var se *extract.StreamError
	var te *TruncatedError
	switch {
	case !errors.As(err, &se) || se.RequestID != "req-cut":
		t.Fatalf("Err = %v (%T), want an *extract.StreamError of request req-cut", err, err)
	case !errors.Is(err, ErrTruncated) || !errors.As(err, &te):
		t.Fatalf("Err = %v, want a *TruncatedError matching ErrTruncated", err)
	case te.Line != line:
		t.Errorf("Line = %d, want %d", te.Line, line)
	case !extract.Transient(err):
		t.Errorf("%v is not transient: it would not be retried", err)
	case !strings.Contains(err.Error(), fmt.Sprintf("line %d", line)) || !strings.Contains(err.Error(), "cut"):
		t.Errorf("the message %q does not say the body was cut at line %d", err, line)
	}
}
