//go:build duckdb_arrow

package load

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/leadlex/leadlex-etl/internal/extract"
)

// The DuckDB sink's state lives in its _leadlex_* tables, beside contacts:
// one row per stream (its cursor and pending windows), per run, per
// committed window, per rejected row and per remembered budget. Each method
// opens the file for the time it works and closes it.

func (d *DuckDB) saveState(ctx context.Context, st StreamState) error {
	pending, err := encodeWindows(st.Pending)
	if err != nil {
		return err
	}
	coverage, err := encodeCoverage(st.Coverage)
	if err != nil {
		return err
	}
	return d.exec(ctx, `INSERT OR REPLACE INTO _leadlex_streams (stream_id, identity, cursor, pending, pending_since, pending_until, updated_at, coverage,
		history_start, key_fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		st.StreamID, st.Identity, nullTime(st.Cursor()), nullString(pending), nullTime(st.PendingSince), nullTime(st.PendingUntil), time.Now().UTC(),
		nullString(coverage), fmtTime(st.Start), nullString(st.KeyFingerprint))
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// LoadState reads a stream's state.
func (d *DuckDB) LoadState(ctx context.Context, streamID, identity string) (st StreamState, err error) {
	err = d.with(ctx, func() error {
		st, err = d.loadState(ctx, streamID, identity)
		return err
	})
	return st, err
}

func (d *DuckDB) loadState(ctx context.Context, streamID, identity string) (StreamState, error) {
	st := StreamState{StreamID: streamID, Identity: identity}
	var cursor, since, until, updated sql.NullTime
	var pending, coverage, start, keyFP sql.NullString
	err := d.conn.QueryRowContext(ctx, `SELECT cursor, pending, pending_since, pending_until, updated_at, `+
		d.col("_leadlex_streams", "coverage", "coverage", "NULL::VARCHAR")+`, `+
		d.col("_leadlex_streams", "history_start", "history_start", "NULL::VARCHAR")+`, `+
		d.col("_leadlex_streams", "key_fingerprint", "key_fingerprint", "NULL::VARCHAR")+
		` FROM _leadlex_streams WHERE stream_id = ?`, streamID).
		Scan(&cursor, &pending, &since, &until, &updated, &coverage, &start, &keyFP)
	if errors.Is(err, sql.ErrNoRows) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read state of stream %s: %w", streamID, err)
	}
	st.PendingSince, st.PendingUntil = validTime(since), validTime(until)
	bad := func(err error) (StreamState, error) {
		return st, &UntrustedError{Path: d.path, Detail: fmt.Sprintf("table _leadlex_streams, stream %s: %v", streamID, err)}
	}
	if st.Pending, err = decodeWindows(pending.String); err != nil {
		return bad(err)
	}
	if coverage.Valid {
		if st.Coverage, err = decodeCoverage(coverage.String); err != nil {
			return bad(err)
		}
	} else {
		st.Coverage = coverageFromCursor(validTime(cursor), validTime(updated))
	}
	if st.Start, err = historyStart(start.String, start.Valid, st.Coverage); err != nil {
		return bad(err)
	}
	st.KeyFingerprint = keyFP.String
	return st, nil
}

// Streams returns the state of every stream in the file.
func (d *DuckDB) Streams(ctx context.Context) (out []StreamState, err error) {
	err = d.with(ctx, func() error {
		rows, err := d.conn.QueryContext(ctx, `SELECT stream_id, identity FROM _leadlex_streams ORDER BY stream_id`)
		if err != nil {
			return fmt.Errorf("read streams: %w", err)
		}
		var ids [][2]string
		for rows.Next() {
			var id, ident string
			if err := rows.Scan(&id, &ident); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, [2]string{id, ident})
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return err
		}
		for _, x := range ids {
			st, err := d.loadState(ctx, x[0], x[1])
			if err != nil {
				return err
			}
			out = append(out, st)
		}
		return nil
	})
	return out, err
}

// ForgetStream removes a stream's state; its contacts stay.
func (d *DuckDB) ForgetStream(ctx context.Context, streamID string) error {
	return d.with(ctx, func() error {
		if err := d.flushGroup(ctx); err != nil {
			return err
		}
		return d.exec(ctx, `DELETE FROM _leadlex_streams WHERE stream_id = ?`, streamID)
	})
}

// StartRun records a run as running.
func (d *DuckDB) StartRun(ctx context.Context, r Run) error {
	return d.with(ctx, func() error {
		if err := d.flushGroup(ctx); err != nil {
			return err
		}
		return d.startRun(ctx, r)
	})
}

func (d *DuckDB) startRun(ctx context.Context, r Run) error {
	return d.exec(ctx, `INSERT INTO _leadlex_runs (run_id, stream_id, started_at, status, since, "until") VALUES (?, ?, ?, 'running', ?, ?)`,
		r.RunID, r.StreamID, r.StartedAt.UTC(), nullTime(r.Since), nullTime(r.Until))
}

// FinishRun records a run's outcome.
// Windows of an open group (GroupCommits) commit first.
func (d *DuckDB) FinishRun(ctx context.Context, r Run) error {
	return d.with(ctx, func() error {
		if err := errors.Join(d.groupError(), d.flushGroup(ctx)); err != nil {
			return err
		}
		return d.finishRun(ctx, r)
	})
}

func (d *DuckDB) finishRun(ctx context.Context, r Run) error {
	var errText any
	if r.Error != "" {
		errText = r.Error
	}
	ids, err := json.Marshal(append([]string{}, r.RequestIDs...))
	if err != nil {
		return err
	}
	return d.exec(ctx, `UPDATE _leadlex_runs SET finished_at = ?, status = ?, windows = ?, "rows" = ?, rejects = ?, calls = ?, error = ?,
		inserted = ?, replaced = ?, changed = ?, deleted = ?, refresh_calls = ?, request_ids = from_json(?::JSON, '["VARCHAR"]') WHERE run_id = ?`,
		r.FinishedAt.UTC(), r.Status, r.Windows, r.Rows, r.Rejects, r.Calls, errText,
		r.Changes.Inserted, r.Changes.Replaced, r.Changes.Changed, r.Changes.Deleted, r.RefreshCalls, string(ids), r.RunID)
}

// LoadBudget reads the remembered rate-limit budget of a key.
func (d *DuckDB) LoadBudget(ctx context.Context, fp string) (b extract.RateLimit, err error) {
	err = d.with(ctx, func() error {
		b, err = d.loadBudget(ctx, fp)
		return err
	})
	return b, err
}

func (d *DuckDB) loadBudget(ctx context.Context, fp string) (extract.RateLimit, error) {
	var b extract.RateLimit
	var reset sql.NullTime
	err := d.conn.QueryRowContext(ctx, `SELECT rate_limit, remaining, reset_at FROM _leadlex_budget WHERE key_fingerprint = ?`, fp).Scan(&b.Limit, &b.Remaining, &reset)
	if errors.Is(err, sql.ErrNoRows) {
		return b, nil
	}
	if err != nil {
		return b, fmt.Errorf("read rate-limit budget: %w", err)
	}
	b.Known, b.Reset = true, reset.Time
	return b, nil
}

// SaveBudget remembers a key's rate-limit budget.
func (d *DuckDB) SaveBudget(ctx context.Context, fp string, b extract.RateLimit) error {
	if !b.Known {
		return nil
	}
	return d.with(ctx, func() error {
		if err := d.flushGroup(ctx); err != nil {
			return err
		}
		return d.saveBudget(ctx, fp, b)
	})
}

func (d *DuckDB) saveBudget(ctx context.Context, fp string, b extract.RateLimit) error {
	return d.exec(ctx, `INSERT OR REPLACE INTO _leadlex_budget VALUES (?, ?, ?, ?, ?)`, fp, b.Limit, b.Remaining, nullTime(b.Reset), time.Now().UTC())
}

// Runs returns the recorded runs, newest first.
func (d *DuckDB) Runs(ctx context.Context, limit int) (runs []Run, err error) {
	err = d.with(ctx, func() error {
		runs, err = d.runs(ctx, limit)
		return err
	})
	return runs, err
}

func (d *DuckDB) runs(ctx context.Context, limit int) ([]Run, error) {
	q := `SELECT run_id, stream_id, started_at, finished_at, status, since, "until", coalesce(windows, 0), coalesce("rows", 0),
		coalesce(rejects, 0), coalesce(calls, 0), coalesce(error, ''), ` + strings.Join([]string{
		d.col("_leadlex_runs", "inserted", "coalesce(inserted, 0)", "0"), d.col("_leadlex_runs", "replaced", "coalesce(replaced, 0)", "0"),
		d.col("_leadlex_runs", "changed", "coalesce(changed, 0)", "0"), d.col("_leadlex_runs", "deleted", "coalesce(deleted, 0)", "0"),
		d.col("_leadlex_runs", "refresh_calls", "coalesce(refresh_calls, 0)", "0"),
		d.col("_leadlex_runs", "request_ids", "coalesce(array_to_string(request_ids, chr(10)), '')", "''")}, ", ") + `
		FROM _leadlex_runs ORDER BY started_at DESC, run_id DESC`
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := d.conn.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("read runs: %w", err)
	}
	defer rows.Close()
	var out []Run
	for rows.Next() {
		var r Run
		var finished, since, until sql.NullTime
		var ids string
		if err := rows.Scan(&r.RunID, &r.StreamID, &r.StartedAt, &finished, &r.Status, &since, &until, &r.Windows, &r.Rows,
			&r.Rejects, &r.Calls, &r.Error, &r.Changes.Inserted, &r.Changes.Replaced, &r.Changes.Changed, &r.Changes.Deleted,
			&r.RefreshCalls, &ids); err != nil {
			return nil, fmt.Errorf("read runs: %w", err)
		}
		if ids != "" {
			r.RequestIDs = strings.Split(ids, "\n")
		}
		r.StartedAt = r.StartedAt.UTC()
		r.FinishedAt, r.Since, r.Until = validTime(finished), validTime(since), validTime(until)
		out = append(out, r)
	}
	return out, rows.Err()
}

// Rejects returns the stored rejected rows, oldest first.
func (d *DuckDB) Rejects(ctx context.Context, limit int) (rej []StoredReject, err error) {
	err = d.with(ctx, func() error {
		rej, err = d.rejects(ctx, limit)
		return err
	})
	return rej, err
}

func (d *DuckDB) rejects(ctx context.Context, limit int) ([]StoredReject, error) {
	q := `SELECT stream_id, run_id, coalesce(request_id, '') AS request_id, window_from, window_to, coalesce(line, 0) AS line,
		coalesce(raw, '') AS raw, coalesce(reason, '') AS reason, rejected_at FROM _leadlex_rejects`
	if limit > 0 {
		q = `SELECT * FROM (` + q + fmt.Sprintf(` ORDER BY rejected_at DESC, run_id DESC, line DESC LIMIT %d)`, limit)
	}
	q += ` ORDER BY rejected_at, run_id, line`
	rows, err := d.conn.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("read rejects: %w", err)
	}
	defer rows.Close()
	var out []StoredReject
	for rows.Next() {
		var r StoredReject
		var from, to sql.NullTime
		if err := rows.Scan(&r.StreamID, &r.RunID, &r.RequestID, &from, &to, &r.Line, &r.Raw, &r.Reason, &r.RejectedAt); err != nil {
			return nil, fmt.Errorf("read rejects: %w", err)
		}
		r.Window = extract.Window{From: validTime(from), To: validTime(to)}
		r.RejectedAt = r.RejectedAt.UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

func validTime(t sql.NullTime) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}
