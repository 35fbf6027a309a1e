//go:build duckdb_arrow

package load

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// FileChangedError says the DuckDB file a sync writes changed while the
// sink had it closed (between windows, during a wait for the rate limit):
// it is gone, another file took its place, or the tool's tables no longer
// hold what the sync last committed. The sync stops before it writes
// anything, rather than write its state into a file that lacks the
// windows that state counts, or create a new file in the place of one
// moved away.
type FileChangedError struct {
	Path string
	What string // what changed
	Fix  string // what to do
}

func (e *FileChangedError) Error() string {
	return fmt.Sprintf("DuckDB file %s %s; nothing was written. %s", e.Path, e.What, e.Fix)
}

// fileMark is what a writing sink knows of its file while the file is
// closed: which file it is (device and inode), and a mark of what the
// tool's tables held when the sink closed it.
type fileMark struct {
	file     os.FileInfo // nil until the sink made or checked the file
	state    stateMark
	stateOK  bool // state was read
	closedAt time.Time
}

// stateMark sums up the tool's tables that a sync writes: its window
// records, stream states and runs (their rows' hashes; the runs' rows
// change as a run finishes) and how many rejects it stored. A file restored
// from a backup, or tables written by another program, give another mark.
// The budget table is left out: it is a copy of the budget file.
type stateMark struct {
	windows, rejects         int64
	windowsHash, streamsHash uint64
	runsHash                 uint64
}

// stateMarkSQL reads a stateMark; every table it reads is small (a row per
// window or run, not per contact).
const stateMarkSQL = `SELECT (SELECT count(*) FROM _leadlex_windows), (SELECT count(*) FROM _leadlex_rejects),
	(SELECT coalesce(bit_xor(hash(w)), 0) FROM _leadlex_windows AS w), (SELECT coalesce(bit_xor(hash(s)), 0) FROM _leadlex_streams AS s),
	(SELECT coalesce(bit_xor(hash(r)), 0) FROM _leadlex_runs AS r)`

func (d *DuckDB) readStateMark(ctx context.Context) (m stateMark, err error) {
	err = d.conn.QueryRowContext(ctx, stateMarkSQL).Scan(&m.windows, &m.rejects, &m.windowsHash, &m.streamsHash, &m.runsHash)
	return m, err
}

// release closes the file, first noting what it holds (a writing sink's
// reopen compares it) and, the first time, which file it is.
func (d *DuckDB) release(ctx context.Context) error {
	if d.db == nil || d.opts.ReadOnly {
		return d.disconnect()
	}
	m, err := d.readStateMark(ctx)
	d.mark.state, d.mark.stateOK = m, err == nil
	if err != nil {
		d.opts.Logger.Warn("cannot read what the DuckDB file holds before closing it; its reopen checks only that it is the same file", "path", d.path, "err", err.Error())
	}
	if err := d.disconnect(); err != nil {
		return err
	}
	d.mark.closedAt = time.Now()
	if d.mark.file == nil {
		fi, err := os.Stat(d.path)
		if err != nil {
			return fmt.Errorf("DuckDB file %s: %w", d.path, err)
		}
		d.mark.file = fi
	}
	return nil
}

// checkSameFile refuses, before DuckDB opens the path (which would create
// a missing file), a file that is gone or is not the one the sink closed.
func (d *DuckDB) checkSameFile() error {
	if d.mark.file == nil || d.opts.ReadOnly {
		return nil
	}
	closed := d.mark.closedAt.Format(time.TimeOnly)
	fi, err := os.Stat(d.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &FileChangedError{Path: d.path,
			What: "is gone: it was moved, renamed or deleted while the sync ran (after it closed the file at " + closed + "), and a new file was not created in its place",
			Fix:  "The windows this run committed are in the file that was moved: put it back at " + d.path + " and sync again, which resumes from what it holds."}
	case err != nil:
		return fmt.Errorf("DuckDB file %s: %w", d.path, err)
	case !os.SameFile(fi, d.mark.file):
		return &FileChangedError{Path: d.path,
			What: "was replaced by another file while the sync ran (after it closed the file at " + closed + "; a backup restored, or a file moved over it)",
			Fix: "If the replacement is what you want (a backup), sync again: the next run starts from what the file holds now and exports again what it lacks. " +
				"Otherwise put the file the sync was writing back first."}
	}
	return nil
}

// checkReopened runs when the sink opens its file again after closing it,
// before anything is written: the tool's tables must hold what the sink
// left (not a backup copied into the file, nor rows another program wrote
// there), and the tables must still have the shape the tool made (the
// columns the sink knows are read again: an analyst may add one).
func (d *DuckDB) checkReopened(ctx context.Context) error {
	if d.mark.file == nil || d.opts.ReadOnly {
		return nil
	}
	if d.mark.stateOK {
		m, err := d.readStateMark(ctx)
		if err != nil {
			return fmt.Errorf("read the tables of %s: %w", d.path, err)
		}
		if m != d.mark.state {
			return &FileChangedError{Path: d.path,
				What: fmt.Sprintf("does not hold what this sync last committed: its tables %swindows, %sstreams and %sruns changed while the sync had the file closed "+
					"(after %s; a backup copied into it, or another program wrote them; it holds %d window records, the sync left %d)",
					TablePrefix, TablePrefix, TablePrefix, d.mark.closedAt.Format(time.TimeOnly), m.windows, d.mark.state.windows),
				Fix: "If the file is what you want (a backup), sync again: the next run starts from what the file holds now and exports again what it lacks."}
		}
	}
	if err := d.checkShape(ctx); err != nil {
		return err
	}
	return d.loadTableColumns(ctx)
}
