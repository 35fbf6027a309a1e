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
	out := make([]extract.Window, len(in))
	for i, w := range in {
		var err error
		if out[i].From, err = parseTime(w.From); err != nil {
			return nil, fmt.Errorf("pending window %d: %w", i, err)
		}
		if out[i].To, err = parseTime(w.To); err != nil {
			return nil, fmt.Errorf("pending window %d: %w", i, err)
		}
		if !out[i].From.IsZero() && !out[i].To.IsZero() && !out[i].To.After(out[i].From) {
			return nil, fmt.Errorf("pending window %d ends before it starts", i)
		}
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
)
