package extract

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// APIError is a non-2xx answer from the export API. It carries what a user
// needs to act on it and to quote it to LeadLex support; it never carries the
// API key.
type APIError struct {
	Status    int       // HTTP status code
	Code      string    // the API's error code, e.g. "validation_error"; "" if the body had none
	Message   string    // the API's message, or the start of a non-JSON body
	RequestID string    // X-Request-ID of the response
	ResetAt   time.Time // for 429: when the budget resets, if the response said
}

func (e *APIError) Error() string {
	code := e.Code
	if code == "" {
		code = http.StatusText(e.Status)
	}
	s := fmt.Sprintf("LeadLex API %d %s", e.Status, code)
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.RequestID != "" {
		s += " (request " + e.RequestID + ")"
	}
	return s
}

// Retryable reports whether sending the same request again may succeed: true
// for 5xx answers, false for 4xx (a 429 is waited out, not retried blindly).
func (e *APIError) Retryable() bool { return e.Status >= 500 }

// Auth reports whether the key was refused (401) or lacks a permission (403).
func (e *APIError) Auth() bool {
	return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
}

// StreamError is a failure while reading a response body that had started
// well: the connection broke or the body ended early. The window must be
// fetched again; whatever was read of it must be discarded.
type StreamError struct {
	RequestID string
	Err       error
}

func (e *StreamError) Error() string {
	what := "broken off"
	if errors.Is(e.Err, ErrTimeout) {
		what = "stalled"
	}
	return fmt.Sprintf("response body %s (request %s): %v", what, e.RequestID, e.Err)
}

func (e *StreamError) Unwrap() error { return e.Err }

// ErrRateLimited is matched (errors.Is) by a *RateLimitError.
var ErrRateLimited = errors.New("rate limited")

// RateLimitError says the workspace's export budget is spent and the run
// stops rather than waits: the caller asked not to wait (Client.NoWait), the
// wait is longer than Client.MaxWait, or the API answered 429 to InARow
// requests in a row (Client.MaxRateLimited), which waiting has not fixed.
// ResumeAt is when the next call can be made, at most MaxResetAhead from
// when the API (or the saved budget) said it.
type RateLimitError struct {
	ResumeAt  time.Time
	RequestID string // of the 429 response, if one was received
	// Saved is true when no request was made: the budget an earlier run
	// saved says it is spent until ResumeAt.
	Saved bool
	// InARow is the number of 429 answers in a row that made the run give
	// up; 0 when it stopped for another reason.
	InARow int
}

func (e *RateLimitError) Error() string {
	until := e.ResumeAt.UTC().Format(time.RFC3339)
	var s string
	switch {
	case e.InARow > 0:
		s = fmt.Sprintf("the API answered 429 (rate limited) to %d requests in a row, waiting between them as it said or longer; stopped asking: rate limited until %s", e.InARow, until)
	case e.Saved:
		s = fmt.Sprintf("export budget spent according to the budget an earlier run saved (no request made): rate limited until %s, when that saved budget expires", until)
	default:
		s = fmt.Sprintf("export budget spent: rate limited until %s", until)
	}
	if e.RequestID != "" {
		s += " (request " + e.RequestID + ")"
	}
	return s
}

func (e *RateLimitError) Is(target error) bool { return target == ErrRateLimited }

// ErrTimestampOverflow is matched (errors.Is) by an *OverflowError.
var ErrTimestampOverflow = errors.New("too many rows share one created_at")

// OverflowError says a window could not be split because at least Limit rows
// share one created_at instant: no created_after/created_before pair can
// return them in pieces. With Second, they share one second (or it and the
// instants at its edges, which a whole-second bound includes under an
// inclusive rule), and the API has not shown that it keeps the bounds finer
// than whole seconds, so no window asked for safely can split them either.
// Raising --limit (at most 50000) or narrowing the export with filters are
// the only ways around it.
type OverflowError struct {
	At     time.Time
	Limit  int
	Second bool // At is a whole second the rows share, not an instant
}

func (e *OverflowError) Error() string {
	if e.Second {
		return fmt.Sprintf("at least %d rows (the limit) were created within the second %s or at its edges, and the API has not shown that it keeps created_after/created_before finer than whole seconds, so no window can split them without risking rows; raise --limit (max 50000) or narrow the export with --tag/--list-id",
			e.Limit, e.At.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("at least %d rows (the limit) share created_at %s, so no window can split them; raise --limit (max 50000) or narrow the export with --tag/--list-id",
		e.Limit, e.At.UTC().Format(time.RFC3339Nano))
}

func (e *OverflowError) Is(target error) bool { return target == ErrTimestampOverflow }

// ErrProtocol is matched (errors.Is) by a *ProtocolError.
var ErrProtocol = errors.New("the API broke the export protocol")

// ProtocolError says an answer broke the export API's contract in a way that
// asking again cannot fix: a body with more rows than the limit asked for,
// or rows created outside the requested window. Nothing of the window is
// loaded, and it is not retried: every retry would spend a call on the same
// broken answer.
type ProtocolError struct {
	RequestID string
	Problem   string // what was wrong, for a person
	Rows      int64  // data rows read when the problem was found
}

func (e *ProtocolError) Error() string {
	s := "the LeadLex API's answer broke the export protocol"
	if e.RequestID != "" {
		s += " (request " + e.RequestID + ")"
	}
	return s + ": " + e.Problem
}

// Is reports whether target is ErrProtocol.
func (e *ProtocolError) Is(target error) bool { return target == ErrProtocol }

// RedirectError says the API answered the export call with a redirect to
// another origin (scheme, host or port) than the base URL. It is never
// followed: the Authorization header would go along, and the data would come
// from somewhere else. It is not retried.
type RedirectError struct {
	Status    int    // the redirect's status, e.g. 302
	Location  string // where it pointed, scrubbed: no credentials, query or API key
	RequestID string
}

func (e *RedirectError) Error() string {
	s := fmt.Sprintf("the API answered %d, redirecting the export to %s, another origin than the base URL: not followed, so the API key does not travel there; check the base URL", e.Status, e.Location)
	if e.RequestID != "" {
		s += " (request " + e.RequestID + ")"
	}
	return s
}

// ErrTimeout is matched (errors.Is) by every error of a call that ran out of
// one of its Timeouts: no connection, no response headers, or no byte of the
// body for too long. Such a call is retried like a 5xx answer.
var ErrTimeout = errors.New("timed out")

// Transient reports whether err may go away by itself, so that running the
// same sync again later can succeed: a spent rate limit, a 5xx answer, a
// broken or stalled body, a network failure. Anything else (a 4xx, a
// protocol error, a redirect off the origin, too many rows at one instant)
// needs a change by someone first.
func Transient(err error) bool {
	var rl *RateLimitError
	return retryable(err) || errors.As(err, &rl)
}
