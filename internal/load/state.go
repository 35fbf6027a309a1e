package load

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/leadlex/leadlex-etl/internal/extract"
)

// This file holds what both sinks store of the sync state (streams, windows,
// runs, budgets, rejects: the types in sink.go) in the one text form they
// share. Each sink only encodes it: DuckDB in its _leadlex_* tables, the lake
// in _leadlex/state.json.

// fmtTime renders an instant for state: RFC 3339 in UTC with nanoseconds;
// the zero time (an open bound) is "".
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// parseTime reads what fmtTime wrote.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}

// windowJSON is how a pending window is stored; "" is an open bound.
type windowJSON struct {
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
}

func toWindowsJSON(ws []extract.Window) []windowJSON {
	out := make([]windowJSON, len(ws))
	for i, w := range ws {
		out[i] = windowJSON{From: fmtTime(w.From), To: fmtTime(w.To)}
	}
	return out
}

func fromWindowsJSON(in []windowJSON) ([]extract.Window, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make([]extract.Window, 0, len(in))
	for i, w := range in {
		var x extract.Window
		var err error
		if x.From, err = parseTime(w.From); err != nil {
			return nil, fmt.Errorf("pending window %d: %w", i, err)
		}
		if x.To, err = parseTime(w.To); err != nil {
			return nil, fmt.Errorf("pending window %d: %w", i, err)
		}
		if !x.From.IsZero() && !x.To.IsZero() {
			if x.To.Before(x.From) {
				return nil, fmt.Errorf("pending window %d ends before it starts", i)
			}
			if x.To.Equal(x.From) {
				continue // empty: versions before 0.3 could save one
			}
		}
		out = append(out, x)
	}
	return out, nil
}

// encodeWindows is the JSON text of pending windows ("" for none).
func encodeWindows(ws []extract.Window) (string, error) {
	if len(ws) == 0 {
		return "", nil
	}
	b, err := json.Marshal(toWindowsJSON(ws))
	return string(b), err
}

// decodeWindows reads what encodeWindows wrote.
func decodeWindows(s string) ([]extract.Window, error) {
	if s == "" {
		return nil, nil
	}
	var in []windowJSON
	if err := json.Unmarshal([]byte(s), &in); err != nil {
		return nil, fmt.Errorf("pending windows: %w", err)
	}
	return fromWindowsJSON(in)
}

// Run statuses.
const (
	RunRunning = "running"
	RunOK      = "ok"
	RunPartial = "partial" // stopped at --max-calls, or rate-limited with --no-wait
	RunFailed  = "failed"
	// RunInterrupted is a run a signal stopped (its context was cancelled).
	RunInterrupted = "interrupted"
)

// segmentJSON is how a covered range is stored; "" is an open bound.
type segmentJSON struct {
	From       string `json:"from,omitempty"`
	To         string `json:"to,omitempty"`
	VerifiedAt string `json:"verified_at"`
	Rows       int64  `json:"rows"`
}

func toCoverageJSON(c Coverage) []segmentJSON {
	out := make([]segmentJSON, len(c))
	for i, s := range c {
		out[i] = segmentJSON{From: fmtTime(s.From), To: fmtTime(s.To), VerifiedAt: fmtTime(s.VerifiedAt), Rows: s.Rows}
	}
	return out
}

// fromCoverageJSON reads stored coverage, refusing segments that are out of
// order, overlap or end before they start.
func fromCoverageJSON(in []segmentJSON) (Coverage, error) {
	var out Coverage
	for i, j := range in {
		var s Segment
		var err error
		if s.From, err = parseTime(j.From); err == nil {
			if s.To, err = parseTime(j.To); err == nil {
				s.VerifiedAt, err = parseTime(j.VerifiedAt)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("coverage segment %d: %w", i, err)
		}
		if lo(s.From) >= hi(s.To) || j.Rows < 0 {
			return nil, fmt.Errorf("coverage segment %d is empty or inverted", i)
		}
		if i > 0 && lo(s.From) < hi(out[i-1].To) {
			return nil, fmt.Errorf("coverage segment %d overlaps the one before", i)
		}
		s.Rows = j.Rows
		out = append(out, s)
	}
	return out, nil
}

// encodeCoverage is the JSON text of coverage ("" for none).
func encodeCoverage(c Coverage) (string, error) {
	if len(c) == 0 {
		return "", nil
	}
	b, err := json.Marshal(toCoverageJSON(c))
	return string(b), err
}

// decodeCoverage reads what encodeCoverage wrote.
func decodeCoverage(s string) (Coverage, error) {
	if s == "" {
		return nil, nil
	}
	var in []segmentJSON
	if err := json.Unmarshal([]byte(s), &in); err != nil {
		return nil, fmt.Errorf("coverage: %w", err)
	}
	return fromCoverageJSON(in)
}

// historyStart reads a stream's stored Start: s as fmtTime wrote it ("" the
// beginning), or, when a version before it saved the stream (known false),
// where the coverage starts, which keeps that stream's cursor where that
// version had it.
func historyStart(s string, known bool, c Coverage) (time.Time, error) {
	if !known {
		from, _ := c.Span()
		return from, nil
	}
	t, err := parseTime(s)
	if err != nil {
		return t, fmt.Errorf("history start: %w", err)
	}
	return t, nil
}

// coverageFromCursor converts the state of versions that kept only a
// cursor: everything created before it was synced, from the beginning, as
// of when the state was last written.
func coverageFromCursor(cursor, updated time.Time) Coverage {
	if cursor.IsZero() {
		return nil
	}
	return Coverage{{To: cursor, VerifiedAt: updated}}
}
