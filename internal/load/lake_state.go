package load

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/schemas"
)

// lakeFormat is the version of the lake's layout and state.json:
//
//	1: data at the top of the lake, zero-padded partition values (month=04),
//	   kinds of columns stored as numbers;
//	2: data under contacts/, unpadded partition values (month=4) as DuckDB
//	   writes them, kinds stored by name.
//
// Opening a lake of an older format converts it, journaled like a commit.
const lakeFormat = 2

// lakeState is _leadlex/state.json.
type lakeState struct {
	Format      int                   `json:"format"`
	PartitionBy Partitioning          `json:"partition_by"`
	Columns     []lakeColumn          `json:"columns"` // every data file has exactly these
	Streams     map[string]streamJSON `json:"streams"`
	Budgets     map[string]budgetJSON `json:"budgets,omitempty"`
	Runs        []runJSON             `json:"runs,omitempty"` // the last maxRuns
	Seq         int64                 `json:"seq"`            // numbers data files
	Windows     int64                 `json:"windows"`        // committed so far
	// Files is the manifest: every data file the lake wrote, by its
	// lake-relative path. nil in the state of earlier versions: opening
	// such a lake checks its files and adopts them (see checkShape).
	Files map[string]lakeFile `json:"files"`
}

type lakeColumn struct {
	Name string       `json:"name"`
	Kind schemas.Kind `json:"kind"`
}

type streamJSON struct {
	Identity string `json:"identity"`
	// Cursor is Coverage's frontier, kept for people reading the file;
	// the state of versions without coverage has only it.
	Cursor       string        `json:"cursor,omitempty"`
	Coverage     []segmentJSON `json:"coverage,omitempty"`
	Pending      []windowJSON  `json:"pending,omitempty"`
	PendingSince string        `json:"pending_since,omitempty"`
	PendingUntil string        `json:"pending_until,omitempty"`
	UpdatedAt    string        `json:"updated_at"`
	// Start is where the synced history begins ("" the beginning; absent:
	// a version before it, which started where the coverage does).
	Start          *string `json:"start,omitempty"`
	KeyFingerprint string  `json:"key_fingerprint,omitempty"`
}

type budgetJSON struct {
	Limit     int    `json:"limit"`
	Remaining int    `json:"remaining"`
	Reset     string `json:"reset,omitempty"`
	UpdatedAt string `json:"updated_at"`
}

type runJSON struct {
	RunID      string   `json:"run_id"`
	StreamID   string   `json:"stream_id"`
	StartedAt  string   `json:"started_at"`
	FinishedAt string   `json:"finished_at,omitempty"`
	Status     string   `json:"status"`
	Since      string   `json:"since,omitempty"`
	Until      string   `json:"until,omitempty"`
	Windows    int      `json:"windows"`
	Rows       int64    `json:"rows"`
	Rejects    int64    `json:"rejects"`
	Calls      int      `json:"calls"`
	Error      string   `json:"error,omitempty"`
	Inserted   int64    `json:"inserted,omitempty"`
	Replaced   int64    `json:"replaced,omitempty"`
	Changed    int64    `json:"changed,omitempty"`
	Deleted    int64    `json:"deleted,omitempty"`
	Refresh    int      `json:"refresh_calls,omitempty"`
	RequestIDs []string `json:"request_ids,omitempty"`
}

// rejectJSON is one line of a _leadlex/rejects/*.jsonl file.
type rejectJSON struct {
	StreamID   string `json:"stream_id"`
	RunID      string `json:"run_id"`
	RequestID  string `json:"request_id"`
	WindowFrom string `json:"window_from"`
	WindowTo   string `json:"window_to"`
	Line       int64  `json:"line"`
	Raw        string `json:"raw"`
	Reason     string `json:"reason"`
	RejectedAt string `json:"rejected_at"`
}

const maxRuns = 100

func newLakeState() lakeState {
	return lakeState{Format: lakeFormat, Streams: map[string]streamJSON{}, Files: map[string]lakeFile{}}
}

// readState reads and checks state.json; a lake without one is new.
func (l *Lake) readState() error {
	b, err := l.root.ReadFile(stateFile)
	if errors.Is(err, fs.ErrNotExist) {
		l.state = newLakeState()
		return nil
	}
	if err != nil {
		return err
	}
	var st lakeState
	if err := json.Unmarshal(b, &st); err != nil {
		return &UntrustedError{Path: l.rootPath(stateFile), Detail: err.Error()}
	}
	if err := st.check(); err != nil {
		return &UntrustedError{Path: l.rootPath(stateFile), Detail: err.Error()}
	}
	if st.Streams == nil {
		st.Streams = map[string]streamJSON{}
	}
	l.state = st
	return nil
}

// check refuses a state this version cannot act on safely.
func (st *lakeState) check() error {
	if st.Format < 1 || st.Format > lakeFormat {
		return fmt.Errorf("state format %d is not one this version knows (1 to %d): a newer leadlex-etl wrote it", st.Format, lakeFormat)
	}
	if st.PartitionBy != "" && !slices.Contains(Partitionings, st.PartitionBy) {
		return fmt.Errorf("unknown partitioning %q", st.PartitionBy)
	}
	seen := map[string]bool{}
	for _, c := range st.Columns {
		if err := schemas.ValidName(strings.TrimPrefix(c.Name, "_")); err != nil {
			return fmt.Errorf("column: %w", err)
		}
		if seen[c.Name] {
			return fmt.Errorf("column %q is listed twice", c.Name)
		}
		seen[c.Name] = true
	}
	if st.Seq < 0 || st.Windows < 0 {
		return errors.New("negative counters")
	}
	return nil
}

func (l *Lake) rootPath(rel string) string { return path.Join(l.dir, rel) }

func (l *Lake) saveState(st lakeState) error {
	if l.readOnly {
		return errReadOnlyLake
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := l.writeFileAtomic(stateFile, b); err != nil {
		return fmt.Errorf("write lake state: %w", err)
	}
	l.state = st
	return nil
}

func cloneState(s lakeState) (lakeState, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return s, err
	}
	var out lakeState
	err = json.Unmarshal(b, &out)
	if out.Streams == nil {
		out.Streams = map[string]streamJSON{}
	}
	return out, err
}

func setStream(s *lakeState, st StreamState) {
	s.Streams[st.StreamID] = streamJSON{
		Identity: st.Identity, Cursor: fmtTime(st.Cursor()), Coverage: toCoverageJSON(st.Coverage), Pending: toWindowsJSON(st.Pending),
		PendingSince: fmtTime(st.PendingSince), PendingUntil: fmtTime(st.PendingUntil), UpdatedAt: fmtTime(time.Now()),
		Start: new(fmtTime(st.Start)), KeyFingerprint: st.KeyFingerprint,
	}
}

// LoadState reads a stream's state.
func (l *Lake) LoadState(_ context.Context, streamID, identity string) (StreamState, error) {
	st := StreamState{StreamID: streamID, Identity: identity}
	s, ok := l.state.Streams[streamID]
	if !ok {
		return st, nil
	}
	bad := func(err error) (StreamState, error) {
		return st, &UntrustedError{Path: l.rootPath(stateFile), Detail: fmt.Sprintf("stream %s: %v", streamID, err)}
	}
	var err error
	if s.Coverage != nil {
		if st.Coverage, err = fromCoverageJSON(s.Coverage); err != nil {
			return bad(err)
		}
	} else {
		cursor, err := parseTime(s.Cursor)
		if err != nil {
			return bad(err)
		}
		updated, _ := parseTime(s.UpdatedAt)
		st.Coverage = coverageFromCursor(cursor, updated)
	}
	if st.PendingSince, err = parseTime(s.PendingSince); err != nil {
		return bad(err)
	}
	if st.PendingUntil, err = parseTime(s.PendingUntil); err != nil {
		return bad(err)
	}
	if st.Pending, err = fromWindowsJSON(s.Pending); err != nil {
		return bad(err)
	}
	if st.Start, err = historyStart(deref(s.Start), s.Start != nil, st.Coverage); err != nil {
		return bad(err)
	}
	st.KeyFingerprint = s.KeyFingerprint
	return st, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// Streams returns the state of every stream of the lake.
func (l *Lake) Streams(ctx context.Context) ([]StreamState, error) {
	var out []StreamState
	for _, id := range slices.Sorted(maps.Keys(l.state.Streams)) {
		st, err := l.LoadState(ctx, id, l.state.Streams[id].Identity)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// ForgetStream removes a stream's state; its contacts stay.
func (l *Lake) ForgetStream(_ context.Context, streamID string) error {
	if _, ok := l.state.Streams[streamID]; !ok {
		return nil
	}
	next, err := cloneState(l.state)
	if err != nil {
		return err
	}
	delete(next.Streams, streamID)
	return l.saveState(next)
}

func (l *Lake) putRun(r Run) error {
	next, err := cloneState(l.state)
	if err != nil {
		return err
	}
	rj := runJSON{RunID: r.RunID, StreamID: r.StreamID, StartedAt: fmtTime(r.StartedAt), FinishedAt: fmtTime(r.FinishedAt), Status: r.Status,
		Since: fmtTime(r.Since), Until: fmtTime(r.Until), Windows: r.Windows, Rows: r.Rows, Rejects: r.Rejects, Calls: r.Calls, Error: r.Error,
		Inserted: r.Changes.Inserted, Replaced: r.Changes.Replaced, Changed: r.Changes.Changed, Deleted: r.Changes.Deleted,
		Refresh: r.RefreshCalls, RequestIDs: r.RequestIDs}
	if i := slices.IndexFunc(next.Runs, func(x runJSON) bool { return x.RunID == r.RunID }); i >= 0 {
		next.Runs[i] = rj
	} else {
		next.Runs = append(next.Runs, rj)
	}
	if len(next.Runs) > maxRuns {
		next.Runs = next.Runs[len(next.Runs)-maxRuns:]
	}
	return l.saveState(next)
}

// StartRun records a run as running.
func (l *Lake) StartRun(_ context.Context, r Run) error { return l.putRun(r) }

// FinishRun records a run's outcome.
func (l *Lake) FinishRun(_ context.Context, r Run) error { return l.putRun(r) }

// Runs returns the recorded runs (the last 100), newest first.
func (l *Lake) Runs(_ context.Context, limit int) ([]Run, error) {
	var out []Run
	for i := len(l.state.Runs) - 1; i >= 0 && (limit <= 0 || len(out) < limit); i-- {
		rj := l.state.Runs[i]
		r := Run{RunID: rj.RunID, StreamID: rj.StreamID, Status: rj.Status, Windows: rj.Windows, Rows: rj.Rows,
			Rejects: rj.Rejects, Calls: rj.Calls, Error: rj.Error, RefreshCalls: rj.Refresh, RequestIDs: rj.RequestIDs,
			Changes: Changes{Inserted: rj.Inserted, Replaced: rj.Replaced, Changed: rj.Changed, Deleted: rj.Deleted}}
		for _, f := range []struct {
			dst *time.Time
			src string
		}{{&r.StartedAt, rj.StartedAt}, {&r.FinishedAt, rj.FinishedAt}, {&r.Since, rj.Since}, {&r.Until, rj.Until}} {
			var err error
			if *f.dst, err = parseTime(f.src); err != nil {
				return nil, &UntrustedError{Path: l.rootPath(stateFile), Detail: fmt.Sprintf("run %s: %v", rj.RunID, err)}
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// Rejects returns the stored rejected rows, oldest first.
func (l *Lake) Rejects(_ context.Context, limit int) ([]StoredReject, error) {
	files, err := fs.Glob(l.root.FS(), rejectsDir+"/*.jsonl")
	if err != nil {
		return nil, err
	}
	var out []StoredReject
	for _, f := range files {
		b, err := l.root.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if line == "" {
				continue
			}
			var rj rejectJSON
			if err := json.Unmarshal([]byte(line), &rj); err != nil {
				return nil, fmt.Errorf("%s line %d: %w", l.rootPath(f), i+1, err)
			}
			r := StoredReject{StreamID: rj.StreamID, RunID: rj.RunID, RequestID: rj.RequestID, Line: rj.Line, Raw: rj.Raw, Reason: rj.Reason}
			if r.Window.From, err = parseTime(rj.WindowFrom); err == nil {
				if r.Window.To, err = parseTime(rj.WindowTo); err == nil {
					r.RejectedAt, err = parseTime(rj.RejectedAt)
				}
			}
			if err != nil {
				return nil, fmt.Errorf("%s line %d: %w", l.rootPath(f), i+1, err)
			}
			out = append(out, r)
		}
	}
	slices.SortStableFunc(out, func(a, b StoredReject) int {
		return cmp.Or(a.RejectedAt.Compare(b.RejectedAt), cmp.Compare(a.RunID, b.RunID), cmp.Compare(a.Line, b.Line))
	})
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}

// LoadBudget reads the remembered rate-limit budget of a key.
func (l *Lake) LoadBudget(_ context.Context, fp string) (extract.RateLimit, error) {
	b, ok := l.state.Budgets[fp]
	if !ok {
		return extract.RateLimit{}, nil
	}
	reset, err := parseTime(b.Reset)
	if err != nil {
		return extract.RateLimit{}, &UntrustedError{Path: l.rootPath(stateFile), Detail: "budget: " + err.Error()}
	}
	return extract.RateLimit{Limit: b.Limit, Remaining: b.Remaining, Reset: reset, Known: true}, nil
}

// SaveBudget remembers a key's rate-limit budget.
func (l *Lake) SaveBudget(_ context.Context, fp string, b extract.RateLimit) error {
	if !b.Known {
		return nil
	}
	next, err := cloneState(l.state)
	if err != nil {
		return err
	}
	if next.Budgets == nil {
		next.Budgets = map[string]budgetJSON{}
	}
	next.Budgets[fp] = budgetJSON{Limit: b.Limit, Remaining: b.Remaining, Reset: fmtTime(b.Reset), UpdatedAt: fmtTime(time.Now())}
	return l.saveState(next)
}
