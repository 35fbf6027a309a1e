package load

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/duckdb/duckdb-go/v2"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/transform"
	"github.com/leadlex/leadlex-etl/schemas"
)

// DuckDBOptions tunes the embedded DuckDB.
type DuckDBOptions struct {
	// MemoryLimit is DuckDB's memory_limit ("2GB"); "" -> "2GB". DuckDB's own
	// default is 80% of RAM, too much beside other jobs on a cron host.
	MemoryLimit string
	// Threads is DuckDB's threads setting; 0 -> the number of CPUs.
	Threads int
}

// DuckDB is the DuckDB sink and state store. All its work happens on one
// pinned connection, because registered Arrow views and temporary tables
// belong to a connection. It is not safe for concurrent use.
type DuckDB struct {
	path    string
	db      *sql.DB
	conn    *sql.Conn
	arrow   *duckdb.Arrow
	cols    []schemas.Column    // of the current window
	batches []arrow.RecordBatch // of the current window, retained
	ids     map[string]struct{} // of the current window
	dups    bool                // an id repeats within the window
	table   map[string]bool     // columns the contacts table has
	inTx    bool
}

var _ Target = (*DuckDB)(nil)

const (
	batchView   = TablePrefix + "batch"
	windowTable = TablePrefix + "window"
	mergedTable = TablePrefix + "merged"
)

// OpenDuckDB opens (creating if needed) the DuckDB file at path and the
// tables the tool needs in it.
func OpenDuckDB(ctx context.Context, path string, opts DuckDBOptions) (*DuckDB, error) {
	if opts.MemoryLimit == "" {
		opts.MemoryLimit = "2GB"
	}
	if opts.Threads <= 0 {
		opts.Threads = runtime.NumCPU()
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("create folder for %s: %w", path, err)
		}
	}
	connector, err := duckdb.NewConnector(path, func(ex driver.ExecerContext) error {
		for _, q := range []string{
			fmt.Sprintf("SET memory_limit = '%s'", strings.ReplaceAll(opts.MemoryLimit, "'", "")),
			fmt.Sprintf("SET threads = %d", opts.Threads),
			// A window's WAL is fsynced at each commit either way. The 16MB
			// default checkpoints after every 50,000-row window, which tripled
			// the commit time; 1GB kept all of it in memory (RSS 750MB for 2M
			// rows against 370MB at 64MB, at the same speed).
			"SET checkpoint_threshold = '64MB'",
		} {
			if _, err := ex.ExecContext(ctx, q, nil); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, openError(path, err)
	}
	db := sql.OpenDB(connector)
	conn, err := db.Conn(ctx)
	if err != nil {
		_ = db.Close()
		return nil, openError(path, err)
	}
	d := &DuckDB{path: path, db: db, conn: conn}
	if err := conn.Raw(func(dc any) error {
		var err error
		d.arrow, err = duckdb.NewArrowFromConn(dc.(driver.Conn))
		return err
	}); err != nil {
		_ = d.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := d.createTables(ctx); err != nil {
		_ = d.Close()
		return nil, fmt.Errorf("prepare %s: %w", path, err)
	}
	return d, nil
}

// OpenDuckDBReadOnly opens an existing DuckDB file for reading only, or an
// in-memory database when path is "".
func OpenDuckDBReadOnly(path string) (*sql.DB, error) {
	dsn := ""
	if path != "" {
		dsn = path + "?access_mode=read_only"
	}
	connector, err := duckdb.NewConnector(dsn, nil)
	if err != nil {
		return nil, openError(path, err)
	}
	db := sql.OpenDB(connector)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, openError(path, err)
	}
	return db, nil
}

func openError(path string, err error) error {
	if msg := err.Error(); strings.Contains(msg, "Could not set lock") || strings.Contains(msg, "Conflicting lock") {
		return &LockedError{Kind: "DuckDB file", Path: path, Detail: msg}
	}
	return fmt.Errorf("open DuckDB file %s: %w", path, err)
}

// Close closes the database.
func (d *DuckDB) Close() error {
	d.releaseBatches()
	var errs []error
	if d.conn != nil {
		errs = append(errs, d.conn.Close())
	}
	errs = append(errs, d.db.Close())
	return errors.Join(errs...)
}

// DB returns the database, for reading results (tests, summaries).
func (d *DuckDB) DB() *sql.DB { return d.db }

func (d *DuckDB) exec(ctx context.Context, q string, args ...any) error {
	_, err := d.conn.ExecContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", firstLine(q), err)
	}
	return nil
}

func firstLine(q string) string {
	q = strings.TrimSpace(q)
	if i := strings.IndexByte(q, '\n'); i >= 0 {
		q = q[:i] + " ..."
	}
	if len(q) > 80 {
		q = q[:80] + "..."
	}
	return q
}

func (d *DuckDB) createTables(ctx context.Context) error {
	contacts := append(append([]schemas.Column{}, schemas.Contacts...), schemas.Lineage...)
	for _, q := range []string{
		// Versions before 0.2 left their Arrow view in the file, pointing
		// into the memory of the process that wrote it: reading it crashes.
		`DROP VIEW IF EXISTS main.` + batchView,
		schemas.CreateTableSQL(ContactsTable, contacts),
		`CREATE TABLE IF NOT EXISTS _leadlex_streams (
			stream_id VARCHAR PRIMARY KEY, identity VARCHAR NOT NULL, cursor TIMESTAMPTZ,
			pending VARCHAR, pending_since TIMESTAMPTZ, pending_until TIMESTAMPTZ, updated_at TIMESTAMPTZ NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS _leadlex_runs (
			run_id VARCHAR PRIMARY KEY, stream_id VARCHAR NOT NULL, started_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ,
			status VARCHAR NOT NULL, since TIMESTAMPTZ, "until" TIMESTAMPTZ, windows INTEGER, "rows" BIGINT, rejects BIGINT,
			calls INTEGER, error VARCHAR)`,
		`CREATE TABLE IF NOT EXISTS _leadlex_windows (
			stream_id VARCHAR NOT NULL, run_id VARCHAR NOT NULL, window_from TIMESTAMPTZ, window_to TIMESTAMPTZ,
			request_id VARCHAR, "rows" BIGINT, rejects BIGINT, calls INTEGER, committed_at TIMESTAMPTZ NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS _leadlex_rejects (
			stream_id VARCHAR NOT NULL, run_id VARCHAR NOT NULL, request_id VARCHAR, window_from TIMESTAMPTZ,
			window_to TIMESTAMPTZ, line BIGINT, raw VARCHAR, reason VARCHAR, rejected_at TIMESTAMPTZ NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS _leadlex_budget (
			key_fingerprint VARCHAR PRIMARY KEY, rate_limit INTEGER, remaining INTEGER, reset_at TIMESTAMPTZ,
			updated_at TIMESTAMPTZ NOT NULL)`,
	} {
		if err := d.exec(ctx, q); err != nil {
			return err
		}
	}
	if err := d.loadTableColumns(ctx); err != nil {
		return err
	}
	// A contacts table of the user's own would take our upserts; refuse it.
	for _, c := range append(append([]schemas.Column{}, schemas.Contacts...), schemas.Lineage...) {
		if !d.table[c.Name] {
			return fmt.Errorf("table %s in %s was not made by leadlex-etl (it has no %s column): sync into another file", ContactsTable, d.path, c.Name)
		}
	}
	return nil
}

func (d *DuckDB) loadTableColumns(ctx context.Context) error {
	rows, err := d.conn.QueryContext(ctx, `SELECT column_name FROM duckdb_columns() WHERE table_name = ? AND schema_name = 'main' AND database_name = current_database()`, ContactsTable)
	if err != nil {
		return err
	}
	defer rows.Close()
	d.table = map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return err
		}
		d.table[name] = true
	}
	return rows.Err()
}

// Begin starts a window; its batches are kept until Commit (a window holds
// at most the API's limit of rows).
func (d *DuckDB) Begin(ctx context.Context, _ WindowInfo, cols []schemas.Column) error {
	if err := d.Abort(ctx); err != nil {
		return err
	}
	d.cols = cols
	clear(d.ids)
	if d.ids == nil {
		d.ids = map[string]struct{}{}
	}
	d.dups = false
	return nil
}

// Write keeps one batch of the window and notes whether an id repeats.
func (d *DuckDB) Write(_ context.Context, batch arrow.RecordBatch) error {
	if !d.dups {
		if idx := batch.Schema().FieldIndices("id"); len(idx) > 0 {
			if ids, ok := batch.Column(idx[0]).(*array.String); ok {
				for i := 0; i < ids.Len(); i++ {
					id := ids.Value(i)
					if _, seen := d.ids[id]; seen {
						d.dups = true
						break
					}
					d.ids[id] = struct{}{} // points into the batch, retained until the window ends
				}
			} else {
				d.dups = true // cannot tell: deduplicate anyway
			}
		}
	}
	batch.Retain()
	d.batches = append(d.batches, batch)
	return nil
}

func (d *DuckDB) releaseBatches() {
	clear(d.ids) // its keys point into the batches
	for _, b := range d.batches {
		b.Release()
	}
	d.batches = nil
}

// Abort drops the window's batches and rolls back an open transaction.
func (d *DuckDB) Abort(ctx context.Context) error {
	defer d.releaseBatches()
	if d.inTx {
		d.inTx = false
		return d.exec(ctx, "ROLLBACK")
	}
	return nil
}

// stage copies the window's batches into the temporary table windowTable,
// inside the open transaction. The batches reach DuckDB through an Arrow
// view, which DuckDB's C API creates as a catalog object that points into
// this process's memory; created inside the transaction and dropped before
// it commits, it never reaches the file. The view is read once, with every
// column in schema order: DuckDB's Arrow stream scan ignores projections,
// so a statement that read only some of its columns would get others in
// their place.
func (d *DuckDB) stage(ctx context.Context) error {
	rr, err := array.NewRecordReader(d.batches[0].Schema(), d.batches)
	if err != nil {
		return err
	}
	defer rr.Release()
	release, err := d.arrow.RegisterView(rr, batchView)
	if err != nil {
		return fmt.Errorf("register Arrow batches: %w", err)
	}
	defer release()
	if err := d.exec(ctx, `CREATE OR REPLACE TEMP TABLE `+windowTable+` AS SELECT * FROM `+batchView); err != nil {
		return err
	}
	return d.exec(ctx, `DROP VIEW `+batchView)
}

// Commit upserts the window into contacts and records rejects, the window
// and the stream state, all in one transaction.
func (d *DuckDB) Commit(ctx context.Context, info WindowInfo, rejects []transform.Reject, stats WindowStats, st StreamState) (err error) {
	defer d.releaseBatches()
	if err := d.exec(ctx, "BEGIN TRANSACTION"); err != nil {
		return err
	}
	d.inTx = true
	defer func() {
		if err != nil && d.inTx {
			d.inTx = false
			_ = d.exec(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	var added []string
	for _, c := range d.cols {
		if !d.table[c.Name] {
			if err := d.exec(ctx, fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", schemas.QuoteIdent(ContactsTable), schemas.QuoteIdent(c.Name), c.DuckDBType())); err != nil {
				return err
			}
			added = append(added, c.Name)
		}
	}
	if len(d.batches) > 0 {
		if err := d.upsert(ctx, info); err != nil {
			return err
		}
	}
	from, to := nullTime(info.Window.From), nullTime(info.Window.To)
	for _, r := range rejects {
		if err := d.exec(ctx, `INSERT INTO _leadlex_rejects VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			info.StreamID, info.RunID, r.RequestID, from, to, r.Line, strings.ToValidUTF8(r.Raw, "\uFFFD"), r.Reason, info.LoadedAt.UTC()); err != nil {
			return err
		}
	}
	if err := d.exec(ctx, `INSERT INTO _leadlex_windows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		info.StreamID, info.RunID, from, to, info.RequestID, stats.Rows, stats.Rejects, stats.Calls, info.LoadedAt.UTC()); err != nil {
		return err
	}
	if err := d.saveState(ctx, st); err != nil {
		return err
	}
	if err := d.exec(ctx, "COMMIT"); err != nil {
		return err
	}
	d.inTx = false
	for _, name := range added {
		d.table[name] = true
	}
	return nil
}

// upsert replaces the window's ids in contacts: delete, then insert, inside
// the caller's transaction. Not ON CONFLICT on a primary key: DuckDB
// rewrites a list column under an index as delete+insert, 25 times slower.
func (d *DuckDB) upsert(ctx context.Context, info WindowInfo) error {
	contacts := schemas.QuoteIdent(ContactsTable)
	if err := d.stage(ctx); err != nil {
		return err
	}
	// Latest wins: of ids repeated within the window (rare: Write noticed),
	// keep the last row.
	latest := `SELECT * EXCLUDE (_line) REPLACE (CAST(id AS UUID) AS id) FROM ` + windowTable
	if d.dups {
		latest += ` QUALIFY row_number() OVER (PARTITION BY id ORDER BY _line DESC) = 1`
	}
	lineage := `?::VARCHAR AS _request_id, ?::TIMESTAMPTZ AS _loaded_at`
	// Columns the table has but this window did not export (a --fields
	// subset, or extra fields an earlier sync added) keep their values.
	keep := d.columnsNotIn(d.cols)
	if len(keep) == 0 {
		if err := d.exec(ctx, `DELETE FROM `+contacts+` WHERE id IN (SELECT CAST(id AS UUID) FROM `+windowTable+`)`); err != nil {
			return err
		}
		if err := d.exec(ctx, `INSERT INTO `+contacts+` BY NAME SELECT s.*, `+lineage+` FROM (`+latest+`) AS s`, info.RequestID, info.LoadedAt.UTC()); err != nil {
			return err
		}
		return d.exec(ctx, `DROP TABLE `+windowTable)
	}
	var sel strings.Builder
	sel.WriteString(`SELECT s.*`)
	for _, c := range keep {
		fmt.Fprintf(&sel, ", o.%s", schemas.QuoteIdent(c))
	}
	if err := d.exec(ctx, `CREATE OR REPLACE TEMP TABLE `+mergedTable+` AS `+sel.String()+` FROM (`+latest+`) AS s LEFT JOIN `+
		contacts+` AS o ON o.id = s.id`); err != nil {
		return err
	}
	if err := d.exec(ctx, `DELETE FROM `+contacts+` WHERE id IN (SELECT id FROM `+mergedTable+`)`); err != nil {
		return err
	}
	if err := d.exec(ctx, `INSERT INTO `+contacts+` BY NAME SELECT s.*, `+lineage+` FROM `+mergedTable+` AS s`, info.RequestID, info.LoadedAt.UTC()); err != nil {
		return err
	}
	return d.exec(ctx, `DROP TABLE `+mergedTable+`; DROP TABLE `+windowTable)
}

// columnsNotIn returns the contacts table's data columns (not lineage) that
// cols lacks, in a stable order.
func (d *DuckDB) columnsNotIn(cols []schemas.Column) []string {
	have := map[string]bool{}
	for _, c := range cols {
		have[c.Name] = true
	}
	for _, c := range schemas.Lineage {
		have[c.Name] = true
	}
	var out []string
	for name := range d.table {
		if !have[name] {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

func (d *DuckDB) saveState(ctx context.Context, st StreamState) error {
	pending, err := encodeWindows(st.Pending)
	if err != nil {
		return err
	}
	var pendingArg any = pending
	if pending == "" {
		pendingArg = nil
	}
	return d.exec(ctx, `INSERT OR REPLACE INTO _leadlex_streams VALUES (?, ?, ?, ?, ?, ?, ?)`,
		st.StreamID, st.Identity, nullTime(st.Cursor), pendingArg, nullTime(st.PendingSince), nullTime(st.PendingUntil), time.Now().UTC())
}

// LoadState reads a stream's state.
func (d *DuckDB) LoadState(ctx context.Context, streamID, identity string) (StreamState, error) {
	st := StreamState{StreamID: streamID, Identity: identity}
	var cursor, since, until sql.NullTime
	var pending sql.NullString
	err := d.conn.QueryRowContext(ctx, `SELECT cursor, pending, pending_since, pending_until FROM _leadlex_streams WHERE stream_id = ?`, streamID).
		Scan(&cursor, &pending, &since, &until)
	if errors.Is(err, sql.ErrNoRows) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read state of stream %s: %w", streamID, err)
	}
	st.Cursor, st.PendingSince, st.PendingUntil = cursor.Time.UTC(), since.Time.UTC(), until.Time.UTC()
	if !cursor.Valid {
		st.Cursor = time.Time{}
	}
	if !since.Valid {
		st.PendingSince = time.Time{}
	}
	if !until.Valid {
		st.PendingUntil = time.Time{}
	}
	st.Pending, err = decodeWindows(pending.String)
	return st, err
}

// StartRun records a run as running.
func (d *DuckDB) StartRun(ctx context.Context, r Run) error {
	return d.exec(ctx, `INSERT INTO _leadlex_runs (run_id, stream_id, started_at, status, since, "until") VALUES (?, ?, ?, 'running', ?, ?)`,
		r.RunID, r.StreamID, r.StartedAt.UTC(), nullTime(r.Since), nullTime(r.Until))
}

// FinishRun records a run's outcome.
func (d *DuckDB) FinishRun(ctx context.Context, r Run) error {
	var errText any
	if r.Error != "" {
		errText = r.Error
	}
	return d.exec(ctx, `UPDATE _leadlex_runs SET finished_at = ?, status = ?, windows = ?, "rows" = ?, rejects = ?, calls = ?, error = ? WHERE run_id = ?`,
		r.FinishedAt.UTC(), r.Status, r.Windows, r.Rows, r.Rejects, r.Calls, errText, r.RunID)
}

// LoadBudget reads the remembered rate-limit budget of a key.
func (d *DuckDB) LoadBudget(ctx context.Context, fp string) (extract.RateLimit, error) {
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
	return d.exec(ctx, `INSERT OR REPLACE INTO _leadlex_budget VALUES (?, ?, ?, ?, ?)`, fp, b.Limit, b.Remaining, nullTime(b.Reset), time.Now().UTC())
}

// Runs returns the recorded runs, newest first.
func (d *DuckDB) Runs(ctx context.Context, limit int) ([]Run, error) {
	q := `SELECT run_id, stream_id, started_at, finished_at, status, since, "until", coalesce(windows, 0), coalesce("rows", 0),
		coalesce(rejects, 0), coalesce(calls, 0), coalesce(error, '') FROM _leadlex_runs ORDER BY started_at DESC, run_id DESC`
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
		if err := rows.Scan(&r.RunID, &r.StreamID, &r.StartedAt, &finished, &r.Status, &since, &until, &r.Windows, &r.Rows,
			&r.Rejects, &r.Calls, &r.Error); err != nil {
			return nil, fmt.Errorf("read runs: %w", err)
		}
		r.StartedAt = r.StartedAt.UTC()
		r.FinishedAt, r.Since, r.Until = validTime(finished), validTime(since), validTime(until)
		out = append(out, r)
	}
	return out, rows.Err()
}

// Rejects returns the stored rejected rows, oldest first.
func (d *DuckDB) Rejects(ctx context.Context, limit int) ([]StoredReject, error) {
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
