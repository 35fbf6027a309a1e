package transform

import (
	"errors"
	"fmt"

	"github.com/leadlex/leadlex-etl/internal/extract"
)

// Sentinels matched with errors.Is. A row's reason wraps one of these, or one
// of encoding/csv's ErrBareQuote, ErrQuote and ErrFieldCount for a record
// that is not well-formed CSV.
var (
	// ErrEmptyBody is returned by NewReader for a body without a header row.
	ErrEmptyBody = errors.New("empty body: no CSV header")
	// ErrHeader is matched by every NewReader error about an unusable header.
	ErrHeader = errors.New("unusable CSV header")
	// ErrNotUUID rejects an id that is not 8-4-4-4-12 hex.
	ErrNotUUID = errors.New("not a UUID")
	// ErrBadTimestamp rejects a timestamp that is not ISO 8601 with a UTC offset.
	ErrBadTimestamp = errors.New("not an ISO 8601 timestamp with a UTC offset")
	// ErrNotInteger rejects an integer column that does not hold a base-10 int64.
	ErrNotInteger = errors.New("not an integer")
	// ErrMissing rejects a row whose required text column is empty.
	ErrMissing = errors.New("required value missing")
	// ErrInvalidUTF8 rejects a row that is not valid UTF-8.
	ErrInvalidUTF8 = errors.New("invalid UTF-8")
	// ErrRecordTooLong rejects a record longer than the reader buffers (8 MiB).
	ErrRecordTooLong = errors.New("record too long")
	// ErrTooManyRejects is matched by a *RejectRatioError.
	ErrTooManyRejects = errors.New("too many rejected rows")
)

// Reject is a data row that did not parse. Line is the line the record starts
// on (the header is line 1). Raw is the row's exact text as it appeared in the
// body (all its physical lines for a quoted multi-line row, without the final
// line ending), truncated to 64 KiB; it is not necessarily valid UTF-8.
// Reason says what was wrong, naming the column ("id: not a UUID: \"x\"").
// RequestID is Options.RequestID.
type Reject struct {
	Line      int64
	Raw       string
	Reason    string
	RequestID string
}

// RowError says why one row was rejected: Line is the 1-based line the record
// starts on (the header is line 1), Column the field ("" for the row as a
// whole).
type RowError struct {
	Line   int64
	Column string
	Err    error
}

func (e *RowError) Error() string {
	return fmt.Sprintf("line %d: %s", e.Line, e.reason())
}

func (e *RowError) Unwrap() error { return e.Err }

// reason is the error without its line: what a Reject carries.
func (e *RowError) reason() string {
	if e.Column == "" {
		return e.Err.Error()
	}
	return e.Column + ": " + e.Err.Error()
}

// RejectRatioError says too much of a body was rejected: Rejected of Rows data
// rows, more than the share Max allows. It matches ErrTooManyRejects.
type RejectRatioError struct {
	Rejected, Rows int64
	Max            float64
	First          Reject // the first rejected row, to show what is wrong
}

func (e *RejectRatioError) Error() string {
	share := 0.0
	if e.Rows > 0 {
		share = float64(e.Rejected) / float64(e.Rows)
	}
	return fmt.Sprintf("%d of %d rows rejected (%.2f%%), more than the %g%% allowed: the body looks broken; the first, line %d: %s",
		e.Rejected, e.Rows, 100*share, 100*e.Max, e.First.Line, e.First.Reason)
}

// Is reports whether target is ErrTooManyRejects.
func (e *RejectRatioError) Is(target error) bool { return target == ErrTooManyRejects }

// ErrTruncated is matched by a *TruncatedError.
var ErrTruncated = errors.New("the body ends inside a record")

// TruncatedError says a body ended inside its last record: the record has
// no line ending and does not parse, or a quoted field is still open at the
// end. A body without Content-Length that the server or a proxy closes
// mid-row ends like a whole one, so this is how such a cut shows: the
// window must be fetched again. Line is the line the record starts on,
// Reason what is wrong with it. The Reader returns it wrapped in an
// *extract.StreamError, which the client retries; it matches ErrTruncated.
type TruncatedError struct {
	Line   int64
	Reason string
}

func (e *TruncatedError) Error() string {
	return fmt.Sprintf("the body ends inside the record of line %d (%s): the connection was cut mid-row, so the window is fetched again",
		e.Line, e.Reason)
}

// Is reports whether target is ErrTruncated.
func (e *TruncatedError) Is(target error) bool { return target == ErrTruncated }

// truncated returns the error of a body that ends inside the record of
// bad's line, which open says ends inside a quoted field.
func truncated(requestID string, bad *RowError, open bool) error {
	reason := "it has no line ending and does not parse: " + bad.reason()
	if open {
		reason = "a quoted field is still open at the end of the body"
	}
	return &extract.StreamError{RequestID: requestID, Err: &TruncatedError{Line: bad.Line, Reason: reason}}
}
