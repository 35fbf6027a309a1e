//go:build duckdb_arrow

package load

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/duckdb/duckdb-go/v2"

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
	// BusyTimeout bounds how long a write waits for readers that hold the
	// file open (DuckDB lets one process write a file only while no other
	// has it open); 0 -> 10 minutes. The wait is logged.
	BusyTimeout time.Duration
	// IdleClose is how long the file stays open after the sink last used it;
	// 0 -> 1 second. Back-to-back windows then share one open file (closing
	// it checkpoints, which tripled the time of a fast sync), while the file
	// is closed during every download that takes longer and every wait.
	IdleClose time.Duration
	// Logger receives the waits for readers; nil discards them.
	Logger *slog.Logger
	// ReadOnly opens an existing file to read its state (status, plan):
	// no lock file is taken, nothing is created, and a running sync is not
	// disturbed. Writing methods fail.
	ReadOnly bool
	// ContactsMayBeMissing opens a file whose contacts table was dropped by
	// hand although its streams say their contacts are synced, which is
	// otherwise a *ShapeError: for streams, to list and reset them. The
	// tables are neither made nor upgraded, so the file stays refused to a
	// sync until every such stream is reset.
	ContactsMayBeMissing bool
}

// DuckDB is the DuckDB sink and state store. The file is open only while
// the sink reads or writes it, and IdleClose after: each Commit (and each
// state read or write) opens it if needed and works on one pinned
// connection (registered Arrow views and temporary tables belong to a
// connection); a timer closes it once the sink has left it alone for
// IdleClose, so that analysts and dashboards can open the file between
// commits and during every wait for the rate limit. Syncs exclude each
// other with a lock file beside the database (PATH.leadlex-lock), held from
// OpenDuckDB to Close. Its methods must not be called concurrently.
type DuckDB struct {
	path string
	opts DuckDBOptions
	lock *fileLock

	mu     sync.Mutex // guards the fields below against the idle timer
	db     *sql.DB    // nil while the file is closed
	conn   *sql.Conn  // the pinned connection
	arrow  *duckdb.Arrow
	idle   *time.Timer // closes the file when it fires
	gen    int         // counts uses; the timer closes only if none came since
	pinned bool        // DB handed the file out: keep it open

	cols    []schemas.Column    // of the current window
	batches []arrow.RecordBatch // of the current window, retained
	ids     map[string]struct{} // of the current window
	dups    bool                // an id repeats within the window
	dupIDs  map[string]struct{} // those ids
	idsAll  bool                // ids holds every id of the window
	// known holds a hash of every id the contacts table holds, while that
	// is known: the table was empty when this sink first committed to it
	// and had the fingerprint knownFP after each commit since. A window then
	// deletes before its INSERT only the few ids the table may hold, by
	// value, not by joining the whole table with the window, and grouped
	// windows see which ids they share. Kept only while GroupCommits is
	// on.
	known     map[uint64]bool // true: the id's row is deferred in the open group (GroupCommits), not stored yet
	knownSeed maphash.Seed
	knownFP   tableFingerprint
	knownOff  bool            // the table's ids are not known: it held rows, or changed behind the sink's back
	table     map[string]bool // columns the contacts table has
	groupRows int64           // GroupCommits: commit windows in groups of this many rows
	grp       group
	grpErr    error // of a group flushed by DB(), for the next call that can return it
	// stateCols are the columns of the _leadlex_* tables, for a file
	// opened read-only that an older version wrote (no upgrade ran).
	stateCols map[string]bool
	inTx      bool
	marks     runMarks // of the deletions the current run marked
	mark      fileMark // of the file while closed, checked as it reopens
}

var _ Target = (*DuckDB)(nil)

const (
	batchView   = TablePrefix + "batch"
	mergedTable = TablePrefix + "merged"
)

// LockSuffix names the lock file beside a DuckDB file that syncs take.
const LockSuffix = ".leadlex-lock"

// OpenDuckDB prepares the DuckDB file at path (creating it and the tables
// the tool needs if missing) for a sync, taking its lock file; the file
// itself is closed again until the first read or write. Symbolic links in
// path are resolved first. Before anything is written, a path that is not
// a DuckDB database is a *NotDuckDBError, and tables changed behind the
// tool's back a *ShapeError; a refused open leaves no lock file it made.
func OpenDuckDB(ctx context.Context, path string, opts DuckDBOptions) (*DuckDB, error) {
	if opts.MemoryLimit == "" {
		opts.MemoryLimit = "2GB"
	}
	if opts.Threads <= 0 {
		opts.Threads = runtime.NumCPU()
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 10 * time.Minute
	}
	if opts.IdleClose <= 0 {
		opts.IdleClose = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	// Every name of the file (a symbolic link, a linked folder) locks and
	// opens the file itself.
	given := path
	path, err := resolvePath(path)
	if err != nil {
		return nil, fmt.Errorf("DuckDB file %s: %w", given, err)
	}
	if err := checkDuckDBFile(path); err != nil {
		return nil, err
	}
	if opts.ReadOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("DuckDB file %s: %w", path, err)
		}
		d := &DuckDB{path: path, opts: opts}
		if err := d.with(ctx, func() error {
			if err := d.checkShape(ctx); err != nil {
				return err
			}
			if err := d.loadTableColumns(ctx); err != nil {
				return err
			}
			return d.loadStateColumns(ctx)
		}); err != nil {
			_ = d.Close()
			return nil, err
		}
		return d, nil
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, notWritable("DuckDB file", path, "creating its folder", err)
		}
	}
	lock, err := lockPath(path+LockSuffix, "DuckDB file", path)
	if err != nil {
		return nil, err
	}
	d := &DuckDB{path: path, opts: opts, lock: lock}
	if err := d.prepare(ctx); err != nil {
		// Nothing of the tool's is left beside a file it refused.
		_ = d.lock.discard()
		_ = d.Close()
		return nil, err
	}
	return d, nil
}

// Path returns the file's path, its symbolic links resolved: the file
// written, beside which its lock file and WAL lie.
func (d *DuckDB) Path() string { return d.path }

// prepare checks the file's tables and makes those missing, then closes
// the file until the first read or write.
func (d *DuckDB) prepare(ctx context.Context) error {
	if err := d.connect(ctx); err != nil {
		return err
	}
	if err := d.checkShape(ctx); err != nil {
		return err
	}
	if d.opts.ContactsMayBeMissing {
		// streams reset: the tables stay as they are.
		if err := d.loadTableColumns(ctx); err != nil {
			return err
		}
		if err := d.loadStateColumns(ctx); err != nil {
			return err
		}
	} else if err := d.createTables(ctx); err != nil {
		return fmt.Errorf("prepare %s: %w", d.path, err)
	}
	return d.release(ctx)
}

// connect opens the file if it is closed. When another process has it open
// (a reader), it waits, retrying with backoff up to BusyTimeout. A file
// the sink opens again must be the one it closed, as it left it (a
// *FileChangedError, or a *ShapeError, before anything is written).
func (d *DuckDB) connect(ctx context.Context) error {
	if d.db != nil {
		return nil
	}
	deadline := time.Now().Add(d.opts.BusyTimeout)
	pause, logged := 50*time.Millisecond, time.Time{}
	for {
		err := d.checkSameFile()
		if err == nil {
			err = d.open(ctx)
		}
		if err == nil {
			if err = d.checkReopened(ctx); err != nil {
				return errors.Join(err, d.disconnect())
			}
			return nil
		}
		var locked *LockedError
		if !errors.As(err, &locked) || time.Now().After(deadline) {
			return err
		}
		if time.Since(logged) > 30*time.Second {
			d.opts.Logger.Warn("the DuckDB file is open in another process (a reader?); waiting to write", "path", d.path,
				"gives_up_at", deadline.UTC().Format(time.RFC3339))
			logged = time.Now()
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		pause = min(pause*2, 2*time.Second)
	}
}

func (d *DuckDB) open(ctx context.Context) error {
	connector, err := duckdb.NewConnector(duckdbDSN(d.path, d.opts.ReadOnly), func(ex driver.ExecerContext) error {
		if d.opts.ReadOnly {
			return nil
		}
		for _, q := range []string{
			fmt.Sprintf("SET memory_limit = '%s'", strings.ReplaceAll(d.opts.MemoryLimit, "'", "")),
			fmt.Sprintf("SET threads = %d", d.opts.Threads),
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
		return openError(d.path, err)
	}
	db := sql.OpenDB(connector)
	conn, err := db.Conn(ctx)
	if err != nil {
		_ = db.Close()
		return openError(d.path, err)
	}
	var ar *duckdb.Arrow
	if err := conn.Raw(func(dc any) error {
		var err error
		ar, err = duckdb.NewArrowFromConn(dc.(driver.Conn))
		return err
	}); err != nil {
		_ = conn.Close()
		_ = db.Close()
		return fmt.Errorf("open %s: %w", d.path, err)
	}
	d.db, d.conn, d.arrow = db, conn, ar
	return nil
}

// disconnect closes the file, if open, so that other processes can open it.
func (d *DuckDB) disconnect() error {
	if d.db == nil {
		return nil
	}
	err := errors.Join(d.conn.Close(), d.db.Close())
	d.db, d.conn, d.arrow, d.inTx = nil, nil, nil, false
	if err != nil {
		return fmt.Errorf("close %s: %w", d.path, err)
	}
	return nil
}

// with runs f with the file open, then leaves it open for IdleClose.
func (d *DuckDB) with(ctx context.Context, f func() error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	d.pinned = false
	if d.idle != nil {
		d.idle.Stop()
	}
	if err := d.connect(ctx); err != nil {
		return err
	}
	err := f()
	gen := d.gen
	d.idle = time.AfterFunc(d.opts.IdleClose, func() { d.closeIdle(gen) })
	return err
}

// closeIdle is the idle timer's work: it closes the file unless the sink
// used it since use gen, or keeps it open (DB, an open group).
func (d *DuckDB) closeIdle(gen int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gen != gen || d.pinned || d.grp.open {
		return
	}
	if err := d.release(context.Background()); err != nil {
		d.opts.Logger.Warn("closing the DuckDB file failed", "path", d.path, "err", err.Error())
	}
}

// OpenDuckDBReadOnly opens an existing DuckDB file for reading only, or an
// in-memory database when path is "", to run a user's SQL. It never
// downloads or loads an extension, whatever that SQL says (see
// userSQLSettings); a path that is not a DuckDB database is a
// *NotDuckDBError.
func OpenDuckDBReadOnly(path string) (*sql.DB, error) {
	if path != "" {
		if err := checkDuckDBFile(path); err != nil {
			return nil, err
		}
	}
	connector, err := duckdb.NewConnector(duckdbDSN(path, path != ""), func(ex driver.ExecerContext) error {
		return lockUserSQL(context.Background(), ex)
	})
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
	if strings.Contains(err.Error(), "Permission denied") {
		return fmt.Errorf("cannot open DuckDB file %s: permission denied (%w): the file must be readable by this user, and for a sync writable, "+
			"with its folder (DuckDB writes a WAL file beside it); change their permissions, or give another path", path, err)
	}
	return fmt.Errorf("open DuckDB file %s: %w", path, err)
}

// Close closes the file if open and releases the lock.
func (d *DuckDB) Close() error {
	d.releaseBatches()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	if d.idle != nil {
		d.idle.Stop()
	}
	err := d.groupError()
	if d.grp.open {
		err = errors.Join(err, d.flushGroup(context.Background()))
	}
	err = errors.Join(err, d.disconnect())
	err = errors.Join(err, d.lock.release())
	d.lock = nil
	return err
}

// DB opens the file and returns it, for reading results (tests,
// summaries). It stays open, and valid, until the next call of another
// method.
func (d *DuckDB) DB() *sql.DB {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	d.pinned = true
	if err := d.connect(context.Background()); err != nil {
		panic(fmt.Sprintf("load: open %s: %v", d.path, err))
	}
	// What is read or written through it must meet the group committed.
	if err := d.flushGroup(context.Background()); err != nil {
		d.grpErr = err
	}
	return d.db
}

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
		// Coverage (JSON) came after the cursor; a file with only a cursor is
		// read as covered from the beginning up to it.
		`ALTER TABLE _leadlex_streams ADD COLUMN IF NOT EXISTS coverage VARCHAR`,
		// Where the history begins ('' the beginning, NULL unknown: start
		// where the coverage does) and the key's fingerprint came later.
		`ALTER TABLE _leadlex_streams ADD COLUMN IF NOT EXISTS history_start VARCHAR`,
		`ALTER TABLE _leadlex_streams ADD COLUMN IF NOT EXISTS key_fingerprint VARCHAR`,
		`CREATE TABLE IF NOT EXISTS _leadlex_runs (
			run_id VARCHAR PRIMARY KEY, stream_id VARCHAR NOT NULL, started_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ,
			status VARCHAR NOT NULL, since TIMESTAMPTZ, "until" TIMESTAMPTZ, windows INTEGER, "rows" BIGINT, rejects BIGINT,
			calls INTEGER, error VARCHAR)`,
		// What runs did to the contacts came later.
		`ALTER TABLE _leadlex_runs ADD COLUMN IF NOT EXISTS inserted BIGINT`,
		`ALTER TABLE _leadlex_runs ADD COLUMN IF NOT EXISTS replaced BIGINT`,
		`ALTER TABLE _leadlex_runs ADD COLUMN IF NOT EXISTS changed BIGINT`,
		`ALTER TABLE _leadlex_runs ADD COLUMN IF NOT EXISTS deleted BIGINT`,
		`ALTER TABLE _leadlex_runs ADD COLUMN IF NOT EXISTS refresh_calls INTEGER`,
		`ALTER TABLE _leadlex_runs ADD COLUMN IF NOT EXISTS request_ids VARCHAR[]`,
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
		if c.Name == schemas.DeletedAt && !d.table[c.Name] && d.table["_loaded_at"] {
			// Tables of versions before deletions were tracked.
			if err := d.exec(ctx, `ALTER TABLE `+schemas.QuoteIdent(ContactsTable)+` ADD COLUMN `+schemas.DeletedAt+` TIMESTAMPTZ`); err != nil {
				return err
			}
			d.table[c.Name] = true
		}
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

// loadStateColumns reads which columns the tool's tables have, refusing a
// file without them.
func (d *DuckDB) loadStateColumns(ctx context.Context) error {
	rows, err := d.conn.QueryContext(ctx, `SELECT table_name || '.' || column_name FROM duckdb_columns()
		WHERE starts_with(table_name, '_leadlex_') AND schema_name = 'main' AND database_name = current_database()`)
	if err != nil {
		return err
	}
	defer rows.Close()
	d.stateCols = map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return err
		}
		d.stateCols[name] = true
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if !d.stateCols["_leadlex_streams.stream_id"] || !d.stateCols["_leadlex_runs.run_id"] {
		return fmt.Errorf("%s is not a DuckDB file a leadlex-etl sync wrote (no _leadlex_streams and _leadlex_runs tables)", d.path)
	}
	return nil
}

// col returns expr, an expression of column of table, when the file has
// that column, else fallback: a file opened read-only may come from an
// older version, which no upgrade ran on.
func (d *DuckDB) col(table, column, expr, fallback string) string {
	if d.stateCols == nil || d.stateCols[table+"."+column] {
		return expr
	}
	return fallback
}

// Begin starts a window; its batches are kept until Commit (a window holds
// at most the API's limit of rows).
func (d *DuckDB) Begin(ctx context.Context, _ WindowInfo, cols []schemas.Column) error {
	if err := d.Abort(ctx); err != nil {
		return err
	}
	d.cols = cols
	clear(d.ids)
	clear(d.dupIDs)
	if d.ids == nil {
		d.ids, d.dupIDs = map[string]struct{}{}, map[string]struct{}{}
	}
	d.dups, d.idsAll = false, true
	return nil
}

// Write keeps one batch of the window and notes whether an id repeats.
func (d *DuckDB) Write(_ context.Context, batch arrow.RecordBatch) error {
	if d.idsAll {
		if idx := batch.Schema().FieldIndices("id"); len(idx) > 0 {
			if ids, ok := batch.Column(idx[0]).(*array.String); ok {
				for i := 0; i < ids.Len(); i++ {
					id := ids.Value(i)
					if !canonicalUUID(id) {
						// Not as the transform writes them: two spellings
						// of one UUID would look like two ids.
						d.dups, d.idsAll = true, false
						break
					}
					if _, seen := d.ids[id]; seen {
						d.dups = true
						d.dupIDs[id] = struct{}{}
					}
					d.ids[id] = struct{}{} // points into the batch, retained until the window ends
				}
			} else {
				d.dups, d.idsAll = true, false // cannot tell: deduplicate anyway
			}
		}
	}
	b, err := idFirst(batch)
	if err != nil {
		return err
	}
	d.batches = append(d.batches, b)
	return nil
}

func (d *DuckDB) releaseBatches() {
	clear(d.ids) // its keys point into the batches
	clear(d.dupIDs)
	for _, b := range d.batches {
		b.Release()
	}
	d.batches = nil
}

// Abort drops the window's batches and rolls back an open transaction.
func (d *DuckDB) Abort(ctx context.Context) error {
	defer d.releaseBatches()
	// The idle timer's disconnect writes inTx under the mutex, perhaps
	// while a rate-limit wait ends and the next window begins.
	d.mu.Lock()
	inTx := d.inTx
	d.inTx = false
	d.mu.Unlock()
	if inTx {
		return d.exec(ctx, "ROLLBACK")
	}
	return nil
}

// withBatches runs q with the window's batches registered as the Arrow view
// batchView: DuckDB scans them columnar, no per-row work in Go. DuckDB's C
// API creates the view as a catalog object pointing into this process's
// memory; it is registered inside the open transaction and dropped before
// q's transaction commits, so it never reaches the file. A registered view
// can be read once, so each statement registers it afresh.
//
// DuckDB's Arrow stream scan ignores projections: a statement that reads
// some of the view's columns gets the stream's first columns in their
// place. Every statement on the view therefore reads a prefix of its
// columns (Write puts id first and _line is last): only id, every column
// but _line, or all of them.
func (d *DuckDB) withBatches(ctx context.Context, q string, args ...any) error {
	_, err := d.withBatchesDo(ctx, func() (int64, error) { return 0, d.exec(ctx, q, args...) })
	return err
}

// withBatchesCount is withBatches for a statement whose affected rows count.
func (d *DuckDB) withBatchesCount(ctx context.Context, q string, args ...any) (int64, error) {
	return d.withBatchesDo(ctx, func() (int64, error) { return d.execCount(ctx, q, args...) })
}

// withBatchesQuery is withBatches for a query of one row, read into dest.
func (d *DuckDB) withBatchesQuery(ctx context.Context, q string, dest ...any) error {
	_, err := d.withBatchesDo(ctx, func() (int64, error) {
		if err := d.conn.QueryRowContext(ctx, q).Scan(dest...); err != nil {
			return 0, fmt.Errorf("%s: %w", firstLine(q), err)
		}
		return 0, nil
	})
	return err
}

func (d *DuckDB) withBatchesDo(ctx context.Context, f func() (int64, error)) (int64, error) {
	return d.viewDo(ctx, d.batches, f)
}

// viewDo runs f with batches registered as batchView (see withBatches).
// f's statements must run on a context that is never cancelled. duckdb-go
// interrupts a statement whose context ends, and when the end comes after
// DuckDB has started the statement but before duckdb-go waits for it, it
// returns at once while DuckDB's worker threads go on scanning the view
// until the connection's next statement. release would then have freed the
// Arrow stream under them: a Go callback through a deleted cgo.Handle
// ("misuse of an invalid Handle", a panic) or a freed function pointer (a
// segmentation fault), seen in the ROLLBACK after an interrupted commit. An
// interrupt that lands while DuckDB plans the statement, or before its
// transaction starts, fails it with DuckDB's own error instead of the
// context's, or leaves a transaction open that nothing rolls back.
func (d *DuckDB) viewDo(ctx context.Context, batches []arrow.RecordBatch, f func() (int64, error)) (int64, error) {
	rr, err := array.NewRecordReader(batches[0].Schema(), batches)
	if err != nil {
		return 0, err
	}
	defer rr.Release()
	release, err := d.arrow.RegisterView(rr, batchView)
	if err != nil {
		return 0, fmt.Errorf("register Arrow batches: %w", err)
	}
	defer release()
	n, err := f()
	if err != nil {
		return 0, err
	}
	return n, d.exec(ctx, `DROP VIEW `+batchView)
}

// idFirst returns b with its id column moved to the front.
func idFirst(b arrow.RecordBatch) (arrow.RecordBatch, error) {
	idx := b.Schema().FieldIndices("id")
	if len(idx) == 0 {
		return nil, errors.New("a batch has no id column")
	}
	if idx[0] == 0 {
		b.Retain()
		return b, nil
	}
	fields, cols := b.Schema().Fields(), b.Columns()
	order := append([]int{idx[0]}, slices.DeleteFunc(slicesRange(len(fields)), func(i int) bool { return i == idx[0] })...)
	nf, nc := make([]arrow.Field, len(order)), make([]arrow.Array, len(order))
	for k, i := range order {
		nf[k], nc[k] = fields[i], cols[i]
	}
	return array.NewRecordBatch(arrow.NewSchema(nf, nil), nc, b.NumRows()), nil
}

func slicesRange(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// Commit upserts the window into contacts, marks the contacts it shows
// deleted, and records rejects, the window and the stream state, all in one
// transaction. A ctx that has ended stops it before it starts, or while
// it waits for readers to close the file; once the window's statements
// start, they run to the end (a window holds at most the API's limit of
// rows), as they must (see viewDo).
func (d *DuckDB) Commit(ctx context.Context, info WindowInfo, rejects []transform.Reject, stats WindowStats, st StreamState) (ch Changes, err error) {
	defer d.releaseBatches()
	if err := ctx.Err(); err != nil {
		return ch, err
	}
	err = d.with(ctx, func() error {
		ctx := context.WithoutCancel(ctx)
		if err := d.groupError(); err != nil {
			return err
		}
		if d.groupRows > 0 {
			var grouped bool
			if ch, grouped, err = d.commitGrouped(ctx, info, rejects, stats, st); err != nil || grouped {
				return err
			}
		} else if err := d.flushGroup(ctx); err != nil {
			return err
		}
		ch, err = d.commit(ctx, info, rejects, stats, st)
		return err
	})
	return ch, err
}

func (d *DuckDB) commit(ctx context.Context, info WindowInfo, rejects []transform.Reject, stats WindowStats, st StreamState) (ch Changes, err error) {
	if err := d.exec(ctx, "BEGIN TRANSACTION"); err != nil {
		return ch, err
	}
	d.inTx = true
	defer func() {
		if err != nil && d.inTx {
			d.inTx = false
			_ = d.exec(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	if d.groupRows > 0 {
		if err := d.checkKnown(ctx); err != nil {
			return ch, err
		}
	} else {
		// A sync: the fingerprints cost more than the joins they save
		// (a first sync of 500,000 contacts 2.30 s -> 2.48 s).
		d.known = nil
	}
	var added []string
	for _, c := range d.cols {
		if !d.table[c.Name] {
			if err := d.exec(ctx, fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", schemas.QuoteIdent(ContactsTable), schemas.QuoteIdent(c.Name), c.DuckDBType())); err != nil {
				return ch, err
			}
			added = append(added, c.Name)
		}
	}
	stored, err := d.guardStored(ctx, info)
	if err != nil {
		return ch, err
	}
	if len(d.batches) > 0 {
		if ch, err = d.upsert(ctx, info); err != nil {
			return ch, err
		}
	}
	if len(info.Deletes) > 0 {
		if ch.Deleted, err = d.markDeleted(ctx, info); err != nil {
			return ch, err
		}
		if err := info.DeleteGuard.check(info, ch.Deleted, stored); err != nil {
			return ch, err
		}
	}
	if err := d.recordWindow(ctx, info, rejects, stats, st); err != nil {
		return ch, err
	}
	var fp tableFingerprint
	if d.known != nil {
		if fp, err = d.fingerprint(ctx); err != nil {
			return ch, err
		}
	}
	if err := d.exec(ctx, "COMMIT"); err != nil {
		return ch, err
	}
	d.inTx = false
	for _, name := range added {
		d.table[name] = true
	}
	d.addKnown(fp)
	return ch, nil
}

// recordWindow stores a window's rejects, its record and the stream state
// it leaves, inside the commit's transaction.
func (d *DuckDB) recordWindow(ctx context.Context, info WindowInfo, rejects []transform.Reject, stats WindowStats, st StreamState) error {
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
	return d.saveState(ctx, st)
}

// tableFingerprint is what checkKnown compares: the contacts table's rows
// and the XOR of DuckDB's hashes of their ids (3 ms at a million rows).
type tableFingerprint struct {
	rows int64
	ids  uint64
}

func (d *DuckDB) fingerprint(ctx context.Context) (fp tableFingerprint, err error) {
	if err := d.conn.QueryRowContext(ctx, `SELECT count(*), coalesce(bit_xor(hash(id)), 0) FROM `+schemas.QuoteIdent(ContactsTable)).Scan(&fp.rows, &fp.ids); err != nil {
		return fp, fmt.Errorf("fingerprint contacts: %w", err)
	}
	return fp, nil
}

// checkKnown starts knowing the contacts table's ids when it is empty at
// the first commit, and stops when its fingerprint is not the one it had
// after the sink's last commit: someone else wrote to it (the file is
// closed between commits and during waits). It runs inside the commit's
// transaction.
func (d *DuckDB) checkKnown(ctx context.Context) error {
	if d.knownOff {
		return nil
	}
	fp, err := d.fingerprint(ctx)
	if err != nil {
		return err
	}
	switch {
	case d.known == nil && fp == (tableFingerprint{}):
		d.known, d.knownSeed, d.knownFP = map[uint64]bool{}, maphash.MakeSeed(), fp
	case d.known == nil || fp != d.knownFP:
		d.known, d.knownOff = nil, true
	}
	return nil
}

// maxKnownOverlap is the most ids of a window deleted by a list of
// literals; a window overlapping more deletes by a join with its batches.
const maxKnownOverlap = 2000

// knownOverlap returns, when the contacts table's ids are known, the
// window's ids that the table may hold (all it holds, perhaps a few more)
// and those that an open group may defer, and whether it could tell.
func (d *DuckDB) knownOverlap() (stored, deferred []string, ok bool) {
	if d.known == nil || !d.idsAll {
		return nil, nil, false
	}
	for id := range d.ids {
		pending, ok := d.known[maphash.String(d.knownSeed, id)]
		switch {
		case !ok:
		case pending:
			deferred = append(deferred, id)
		case len(stored) == maxKnownOverlap:
			return nil, nil, false
		default:
			stored = append(stored, id)
		}
	}
	return stored, deferred, true
}

// canonicalUUID reports whether s is a UUID as the transform writes them
// (lowercase 8-4-4-4-12 hex), safe to quote as a literal.
func canonicalUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}

// addKnown notes a committed window's ids and the table's fingerprint
// after it. Ids a hard delete removed stay in the set: they only cost a
// DELETE.
func (d *DuckDB) addKnown(fp tableFingerprint) {
	if d.known == nil {
		return
	}
	if !d.idsAll {
		d.known, d.knownOff = nil, true
		return
	}
	for id := range d.ids {
		d.known[maphash.String(d.knownSeed, id)] = false
	}
	d.knownFP = fp
}

// execCount runs q and returns the rows it affected.
func (d *DuckDB) execCount(ctx context.Context, q string, args ...any) (int64, error) {
	r, err := d.conn.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", firstLine(q), err)
	}
	return r.RowsAffected()
}

// upsert replaces the window's ids in contacts: delete, then insert, inside
// the caller's transaction. Not ON CONFLICT on a primary key: DuckDB
// rewrites a list column under an index as delete+insert, 25 times slower.
// An inserted row's _deleted_at is NULL: a contact that reappears is live.
func (d *DuckDB) upsert(ctx context.Context, info WindowInfo) (ch Changes, err error) {
	contacts := schemas.QuoteIdent(ContactsTable)
	// Latest wins: of ids repeated within the window (rare: Write noticed),
	// keep the last row.
	latest := `SELECT * EXCLUDE (_line) REPLACE (CAST(id AS UUID) AS id) FROM ` + batchView
	if d.dups {
		latest += ` QUALIFY row_number() OVER (PARTITION BY id ORDER BY _line DESC) = 1`
	}
	if ch.Revived, err = d.countRevived(ctx, info); err != nil {
		return ch, err
	}
	storedIDs := int64(-1) // the window's ids the table holds, when counted
	if info.Refresh {
		// Stored contacts the refresh finds different, or live again, and
		// how many of the window's ids are stored (in more rows than that
		// if some were stored more than once, outside the tool).
		var differ []string
		for _, c := range d.cols {
			if c.Name != "id" {
				differ = append(differ, fmt.Sprintf("s.%[1]s IS DISTINCT FROM o.%[1]s", schemas.QuoteIdent(c.Name)))
			}
		}
		differ = append(differ, "o."+schemas.DeletedAt+" IS NOT NULL")
		q := `SELECT count(DISTINCT o.id) FILTER (WHERE ` + strings.Join(differ, " OR ") + `), count(DISTINCT o.id) FROM (` + latest + `) AS s JOIN ` +
			contacts + ` AS o ON o.id = s.id`
		if err := d.withBatchesQuery(ctx, q, &ch.Changed, &storedIDs); err != nil {
			return ch, err
		}
	}
	lineage := `?::VARCHAR AS _request_id, ?::TIMESTAMPTZ AS _loaded_at`
	// Columns the table has but this window did not export (a --fields
	// subset, or extra fields an earlier sync added) keep their values.
	keep := d.columnsNotIn(d.cols)
	var inserted int64
	if len(keep) == 0 {
		overlap, _, known := d.knownOverlap()
		switch {
		case !known:
			if ch.Replaced, err = d.withBatchesCount(ctx, `DELETE FROM `+contacts+` WHERE id IN (SELECT CAST(id AS UUID) FROM `+batchView+`)`); err != nil {
				return ch, err
			}
		case len(overlap) > 0:
			// The few ids the table may hold already, by value: no join
			// of the whole table with the window.
			if ch.Replaced, err = d.execCount(ctx, `DELETE FROM `+contacts+` WHERE id IN ('`+strings.Join(overlap, "'::UUID, '")+`'::UUID)`); err != nil {
				return ch, err
			}
		}
		if inserted, err = d.withBatchesCount(ctx, `INSERT INTO `+contacts+` BY NAME SELECT s.*, `+lineage+` FROM (`+latest+`) AS s`, info.RequestID, info.LoadedAt.UTC()); err != nil {
			return ch, err
		}
		ch.Inserted = inserted - ch.Replaced
		ch.splitDuplicates(storedIDs)
		return ch, nil
	}
	var sel strings.Builder
	sel.WriteString(`SELECT s.*`)
	for _, c := range keep {
		fmt.Fprintf(&sel, ", o.%s", schemas.QuoteIdent(c))
	}
	if err := d.withBatches(ctx, `CREATE OR REPLACE TEMP TABLE `+mergedTable+` AS `+sel.String()+` FROM (`+latest+`) AS s LEFT JOIN `+
		contacts+` AS o ON o.id = s.id`); err != nil {
		return ch, err
	}
	if ch.Replaced, err = d.execCount(ctx, `DELETE FROM `+contacts+` WHERE id IN (SELECT id FROM `+mergedTable+`)`); err != nil {
		return ch, err
	}
	if inserted, err = d.execCount(ctx, `INSERT INTO `+contacts+` BY NAME SELECT s.*, `+lineage+` FROM `+mergedTable+` AS s`, info.RequestID, info.LoadedAt.UTC()); err != nil {
		return ch, err
	}
	ch.Inserted = inserted - ch.Replaced
	return ch, d.exec(ctx, `DROP TABLE `+mergedTable)
}

// splitDuplicates makes ch, whose Replaced counts the rows the upsert
// deleted, count an id stored more than once (written outside the tool)
// once in Replaced and its other rows in Duplicates. storedIDs is the
// window's ids the table held, when a refresh counted them, else -1: then
// duplicates show only where the window deleted more rows than it wrote,
// and a window that also brought new contacts may count some of them as
// written again.
func (ch *Changes) splitDuplicates(storedIDs int64) {
	if storedIDs >= 0 && ch.Replaced > storedIDs {
		ch.Duplicates = ch.Replaced - storedIDs
		ch.Inserted += ch.Duplicates
		ch.Replaced = storedIDs
	}
	if ch.Inserted < 0 {
		ch.Duplicates -= ch.Inserted
		ch.Replaced += ch.Inserted
		ch.Inserted = 0
	}
}

// markDeleted marks the stored contacts created in info.Deletes that the
// window did not return (its rows carry its lineage) deleted, or removes
// them with HardDelete, and returns how many.
func (d *DuckDB) markDeleted(ctx context.Context, info WindowInfo) (int64, error) {
	var scope []string
	var args []any
	for _, w := range info.Deletes {
		var cond []string
		if !w.From.IsZero() {
			cond, args = append(cond, "created_at >= ?"), append(args, w.From.UTC())
		}
		if !w.To.IsZero() {
			cond, args = append(cond, "created_at < ?"), append(args, w.To.UTC())
		}
		if len(cond) == 0 {
			cond = []string{"true"}
		}
		scope = append(scope, "("+strings.Join(cond, " AND ")+")")
	}
	notThisWindow := `(_loaded_at IS DISTINCT FROM ?::TIMESTAMPTZ OR _request_id IS DISTINCT FROM ?::VARCHAR)`
	args = append(args, info.LoadedAt.UTC(), info.RequestID)
	where := `(` + strings.Join(scope, " OR ") + `) AND ` + notThisWindow
	if info.HardDelete {
		return d.execCount(ctx, `DELETE FROM `+schemas.QuoteIdent(ContactsTable)+` WHERE `+where, args...)
	}
	n, err := d.execCount(ctx, `UPDATE `+schemas.QuoteIdent(ContactsTable)+` SET `+schemas.DeletedAt+` = ?::TIMESTAMPTZ WHERE `+
		schemas.DeletedAt+` IS NULL AND `+where, append([]any{info.LoadedAt.UTC()}, args...)...)
	if n > 0 {
		d.marks.note(info)
	}
	return n, err
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
