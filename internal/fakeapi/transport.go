package fakeapi

import (
	"errors"
	"net/http"
	"time"
)

// CutStyle is how a body cut off mid-row (Config.CutRate, FaultCut) ends.
type CutStyle string

// The cut styles.
const (
	// CutChunked drops the connection in the middle of a chunked body: the
	// client reads an unexpected EOF.
	CutChunked CutStyle = "chunked"
	// CutClose sends the body without Content-Length or chunking, so that
	// its end is the connection's close, and closes it mid-row: the client
	// reads a clean EOF, as at the end of a whole body, after a last row
	// without its line ending.
	CutClose CutStyle = "mid-row-close"
)

// MaxClockSkew bounds Config.ClockSkew either way.
const MaxClockSkew = 48 * time.Hour

// skewedClock returns now shifted by skew: the clock of a server whose time
// is skew ahead (behind, if negative) of now's.
func skewedClock(now func() time.Time, skew time.Duration) func() time.Time {
	if skew == 0 {
		return now
	}
	return func() time.Time { return now().Add(skew) }
}

// setDate sets the Date header from the server's clock when it is skewed;
// otherwise net/http sets it from the machine's.
func (s *Server) setDate(h http.Header) {
	if s.cfg.ClockSkew != 0 {
		h.Set("Date", s.now().UTC().Format(http.TimeFormat))
	}
}

// closeDelimited makes the 200 response about to be written one whose end
// is the connection's close: no Content-Length, no chunking.
func closeDelimited(h http.Header) { h.Set("Transfer-Encoding", "identity") }

// signedDurationValue is a duration flag that may be negative, at most max
// either way.
type signedDurationValue struct {
	p   *time.Duration
	max time.Duration
}

func (v *signedDurationValue) String() string {
	if v.p == nil {
		return "0s"
	}
	return v.p.String()
}

func (v *signedDurationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return errors.New("not a duration such as 10m, -90s or 2h")
	case d > v.max || d < -v.max:
		return errors.New("must be at most " + v.max.String() + " either way")
	}
	*v.p = d
	return nil
}

func (v *signedDurationValue) Type() string { return "duration" }
