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
	return fmt.Sprintf("response body broken off (request %s): %v", e.RequestID, e.Err)
}

func (e *StreamError) Unwrap() error { return e.Err }

// ErrRateLimited is matched (errors.Is) by a *RateLimitError.
var ErrRateLimited = errors.New("rate limited")

// RateLimitError says the workspace's export budget is spent and the caller
// asked not to wait. ResumeAt is when the next call can be made.
type RateLimitError struct {
	ResumeAt  time.Time
	RequestID string // of the 429 response, if one was received
}

func (e *RateLimitError) Error() string {
	s := fmt.Sprintf("export budget spent: rate limited until %s", e.ResumeAt.UTC().Format(time.RFC3339))
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
// return them in pieces. Raising --limit (at most 50000) or narrowing the
// export with filters are the only ways around it.
type OverflowError struct {
	At    time.Time
	Limit int
}

func (e *OverflowError) Error() string {
	return fmt.Sprintf("at least %d rows (the limit) share created_at %s, so no window can split them; raise --limit (max 50000) or narrow the export with --tag/--list-id",
		e.Limit, e.At.UTC().Format(time.RFC3339Nano))
}

func (e *OverflowError) Is(target error) bool { return target == ErrTimestampOverflow }
