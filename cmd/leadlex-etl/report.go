package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/load"
	"github.com/leadlex/leadlex-etl/internal/pipeline"
)

// syncReport is a sync's outcome for machines: what --summary-json writes
// and the "run finished" log event says, with the prose summary's numbers.
// Its JSON field names are an interface scripts depend on: add, never
// rename.
type syncReport struct {
	// State is complete, stopped (at --max-calls), rate-limited,
	// interrupted or failed.
	State    string `json:"state"`
	ExitCode int    `json:"exit_code"`
	Exit     string `json:"exit"` // what ExitCode means
	Error    string `json:"error,omitempty"`
	// ResumeAt is when to run again, after exit 75.
	ResumeAt     *time.Time `json:"resume_at,omitempty"`
	RunID        string     `json:"run_id"`
	StreamID     string     `json:"stream_id"`
	Destinations []string   `json:"destinations"`
	// Removed are destinations this run created and removed again,
	// because it committed nothing to them.
	Removed        []string      `json:"removed"`
	Since          *time.Time    `json:"since"` // null: from the beginning
	Until          *time.Time    `json:"until"`
	Contacts       int           `json:"contacts"` // distinct contacts loaded
	Rows           int           `json:"rows"`     // rows received, duplicates at window edges included
	Windows        int           `json:"windows"`
	Calls          int           `json:"calls"`
	MinCalls       int           `json:"min_calls"`
	RateLimited    int           `json:"rate_limited"` // answers 429
	Rejects        int64         `json:"rejects"`
	ElapsedSeconds float64       `json:"elapsed_seconds"`
	Changes        reportChanges `json:"changes"`
	Refresh        reportRefresh `json:"refresh"`
	Staleness      *reportStale  `json:"staleness"` // null: nothing synced yet
	Pending        reportPending `json:"pending"`
	Deletions      bool          `json:"deletions_tracked"`
	StartedAt      time.Time     `json:"started_at"`
	FinishedAt     time.Time     `json:"finished_at"`
	Version        string        `json:"version"`
}

type reportChanges struct {
	Inserted int64 `json:"inserted"`
	Replaced int64 `json:"replaced"`
	// Changed counts, of Replaced, the contacts a refresh window found
	// different (or marked deleted and live again). Only the refresh
	// compares rows: windows of new data and backfills write theirs
	// without, so this is the refresh's count, in changes as in
	// refresh.changes.
	Changed int64 `json:"changed"`
	Deleted int64 `json:"deleted"`
	// DuplicatesRemoved are extra rows of ids stored more than once (not
	// by leadlex-etl) that the run replaced by one row each.
	DuplicatesRemoved int64 `json:"duplicates_removed"`
}

type reportRefresh struct {
	Calls    int            `json:"calls"`
	Ranges   []reportWindow `json:"ranges"`
	Verified bool           `json:"verified"`
	Changes  reportChanges  `json:"changes"`
	Skipped  string         `json:"skipped,omitempty"`
}

// reportWindow is a created_at range; null bounds are open.
type reportWindow struct {
	From *time.Time `json:"from"`
	To   *time.Time `json:"to"`
}

type reportStale struct {
	OldestVerifiedAt time.Time `json:"oldest_verified_at"`
	Seconds          int64     `json:"seconds"`
}

type reportPending struct {
	Windows int  `json:"windows"`
	Saved   bool `json:"saved"` // the next run resumes them
}

// outcome is a run's state: the report's word and the prose summary's.
func outcome(r pipeline.Result, err error) (word, prose string) {
	switch {
	case err == nil && len(r.Pending) == 0:
		return "complete", "complete"
	case err == nil:
		return "stopped", "stopped at --max-calls"
	case errors.Is(err, context.Canceled):
		return "interrupted", "interrupted"
	case errors.As(err, new(*extract.RateLimitError)):
		return "rate-limited", "stopped by the rate limit"
	}
	return "failed", "failed"
}

func utcPtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// byRefresh is what the prose summary says of the contacts the refresh
// wrote again, and of those it found changed: only the refresh compares
// rows, so no count of changed contacts is printed for a run without one.
func byRefresh(rf pipeline.RefreshResult) string {
	if rf.Calls == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d of them by the refresh, %d of those changed)", rf.Changes.Replaced, rf.Changes.Changed)
}

func changesOf(c load.Changes) reportChanges {
	return reportChanges{Inserted: c.Inserted, Replaced: c.Replaced, Changed: c.Changed, Deleted: c.Deleted, DuplicatesRemoved: c.Duplicates}
}

// newReport builds the report of a run that ended with runErr (as the
// pipeline returned it) and is told to the user as err, exiting code.
func newReport(ctx context.Context, r pipeline.Result, runErr, err error, dests, removed []string, started time.Time) syncReport {
	code, meaning := exitStatus(ctx, err)
	state, _ := outcome(r, runErr)
	rep := syncReport{
		State: state, ExitCode: code, Exit: meaning,
		RunID: r.RunID, StreamID: r.StreamID, Destinations: dests, Removed: removed,
		Since: utcPtr(r.Since), Until: utcPtr(r.Until),
		Contacts: r.Distinct, Rows: r.Rows, Windows: r.Windows, Calls: r.Calls, MinCalls: r.MinCalls, RateLimited: r.RateLimited,
		Rejects: r.Rejects, ElapsedSeconds: r.Elapsed.Round(time.Millisecond).Seconds(),
		Changes: changesOf(r.Changes),
		Refresh: reportRefresh{Calls: r.Refresh.Calls, Ranges: []reportWindow{}, Verified: r.Refresh.Verified,
			Changes: changesOf(r.Refresh.Changes), Skipped: r.Refresh.Skipped},
		Pending:    reportPending{Windows: len(r.Pending), Saved: r.PendingSaved},
		Deletions:  r.CanDelete,
		StartedAt:  started.UTC(),
		FinishedAt: time.Now().UTC(),
		Version:    buildVersion().Version,
	}
	if rep.Destinations == nil {
		rep.Destinations = []string{}
	}
	if rep.Removed == nil {
		rep.Removed = []string{}
	}
	for _, w := range r.Refresh.Ranges {
		rep.Refresh.Ranges = append(rep.Refresh.Ranges, reportWindow{From: utcPtr(w.From), To: utcPtr(w.To)})
	}
	if oldest := r.Coverage.Oldest(); !oldest.IsZero() {
		rep.Staleness = &reportStale{OldestVerifiedAt: oldest.UTC(), Seconds: int64(time.Since(oldest).Seconds())}
	}
	if err != nil {
		rep.Error = err.Error()
		var in *interrupted
		if errors.As(context.Cause(ctx), &in) && errors.Is(err, context.Canceled) {
			rep.Error = in.Error()
		}
	}
	var rl *extract.RateLimitError
	if errors.As(err, &rl) {
		rep.ResumeAt = utcPtr(rl.ResumeAt)
	}
	return rep
}

// writeSummary writes data to path, the --summary-json file: a regular file
// (or none yet) is replaced atomically; a FIFO or a character device (a
// pipe such as bash's >(...), /dev/stdout, /dev/null) is written into,
// never replaced.
func writeSummary(path string, data []byte) error {
	inPlace, err := summaryInPlace(path)
	if err != nil {
		return err
	}
	if !inPlace {
		return writeFileAtomic(path, data)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// summaryInPlace reports whether --summary-json writes into what is at
// path, a FIFO or a character device, rather than replacing a regular file
// (or creating one); what is neither is refused with an error that reads
// after the path. An error reading path is left to the write.
func summaryInPlace(path string) (bool, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return false, nil
	}
	switch m := fi.Mode(); {
	case m.IsRegular():
		return false, nil
	case m&(fs.ModeNamedPipe|fs.ModeCharDevice) != 0:
		return true, nil
	case m.IsDir():
		return false, errors.New("is a folder")
	case m&fs.ModeSocket != 0:
		return false, errors.New("is a socket: give a file, a FIFO or a character device such as /dev/stdout")
	case m&fs.ModeDevice != 0:
		return false, errors.New("is a block device: give a file, a FIFO or a character device such as /dev/stdout")
	}
	return false, errors.New("is not a file, a FIFO or a character device")
}

// writeFileAtomic replaces path with data: a reader sees the old file or
// the new one, never a part.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // once renamed, there is nothing to remove
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// jsonAttrs turns a JSON object into log attributes, in its order, objects
// as groups, so that the log event has exactly the object's fields.
func jsonAttrs(b []byte) ([]slog.Attr, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object")
	}
	return objectAttrs(dec)
}

// objectAttrs reads an object's members after its '{', and its '}'.
func objectAttrs(dec *json.Decoder) ([]slog.Attr, error) {
	var attrs []slog.Attr
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		a, err := jsonAttr(key, raw)
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, a)
	}
	_, err := dec.Token() // '}'
	return attrs, err
}

func jsonAttr(key string, raw json.RawMessage) (slog.Attr, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) {
		_, _ = dec.Token()
		attrs, err := objectAttrs(dec)
		if err != nil {
			return slog.Attr{}, err
		}
		return slog.Attr{Key: key, Value: slog.GroupValue(attrs...)}, nil
	}
	var v any
	if err := dec.Decode(&v); err != nil {
		return slog.Attr{}, err
	}
	switch v := v.(type) {
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return slog.Int64(key, n), nil
		}
		f, _ := v.Float64()
		return slog.Float64(key, f), nil
	case nil:
		return slog.Any(key, nil), nil
	}
	return slog.Any(key, v), nil
}
