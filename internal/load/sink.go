// Package load owns the sinks that make windows of contacts durable: DuckDB
// (an upsert and the sync state in one transaction) and, later, Parquet. A
// sink receives Arrow record batches that package transform produced and
// never talks to the API or parses CSV itself.
package load

import (
	"context"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/transform"
	"github.com/leadlex/leadlex-etl/schemas"
)

// TablePrefix starts the name of every table the tool keeps for itself, so
// none can collide with a user's table.
const TablePrefix = "_leadlex_"

// ContactsTable is the table (DuckDB) or folder (Parquet) the contacts go to.
const ContactsTable = "contacts"

// WindowInfo identifies one window attempt.
type WindowInfo struct {
	StreamID  string
	RunID     string
	Window    extract.Window
	RequestID string    // X-Request-ID of the response
	LoadedAt  time.Time // stamped on every row of the window
	// Deletes are the ranges of created_at this response exported
	// completely, for a stream that can tell deletions: a stored contact
	// created in one of them that the response did not return is gone at
	// the source. Empty for a stream that cannot tell (see the pipeline).
	Deletes []extract.Window
	// HardDelete removes such contacts; otherwise their _deleted_at is set.
	HardDelete bool
	// DeleteGuard is the rule those deletions are applied under (the zero
	// value: none); a window that trips it fails with a *DeleteGuardError
	// and commits nothing.
	DeleteGuard DeleteGuard
	// Refresh marks a window that re-exports a covered range: Commit counts
	// the stored contacts it changes.
	Refresh bool
}

// Changes is what a committed window did to the stored contacts.
type Changes struct {
	Inserted int64 // ids not stored before
	Replaced int64 // ids stored before, written again
	Changed  int64 // of Replaced, those whose values differ or that were marked deleted (counted for Refresh windows only)
	Deleted  int64 // contacts marked deleted (or removed) because the window's complete export lacked them
	// Revived counts, of Replaced, the contacts an earlier window of the
	// same run (WindowInfo.RunID) marked deleted: their created_at moved
	// from that window's range into this one's. The run's count of
	// deletions leaves them out (Changes.AddWindow).
	Revived int64
	// Duplicates are extra stored rows of ids stored more than once (not
	// by this tool: written by hand or by another program), removed when
	// the window wrote those ids again; each such id counts once in
	// Replaced. A refresh counts them exactly; another window only where
	// they outnumber its new contacts (see DuckDB's splitDuplicates).
	Duplicates int64
}

// Add adds c to ch.
func (ch *Changes) Add(c Changes) {
	ch.Inserted += c.Inserted
	ch.Replaced += c.Replaced
	ch.Changed += c.Changed
	ch.Deleted += c.Deleted
	ch.Revived += c.Revived
	ch.Duplicates += c.Duplicates
}

// AddWindow adds the changes of a window of a run to the run's, ch: a
// contact an earlier window marked deleted that c found again was moved,
// not deleted, and is no longer counted deleted.
func (ch *Changes) AddWindow(c Changes) {
	ch.Add(c)
	ch.Deleted -= min(c.Revived, ch.Deleted)
}

// StreamState is the sync progress of one stream (one base URL, filter set
// and field list). Coverage holds the created_at ranges synced, each with
// when it was last exported completely; Pending holds the windows an
// interrupted run had left, PendingSince and PendingUntil the range that
// run covered (zero PendingSince: from the beginning of time).
type StreamState struct {
	StreamID     string
	Identity     string // JSON description: base URL, filters, fields
	Coverage     Coverage
	Pending      []extract.Window
	PendingSince time.Time
	PendingUntil time.Time
	// Start is where the stream's synced history begins: the --since of its
	// first run (zero: the beginning of time). Ranges synced before it are
	// backfills, which do not move the cursor. A state saved by a version
	// without it starts where its coverage does.
	Start time.Time
	// KeyFingerprint is a salted one-way hash of the API key the stream was
	// last synced with (never the key), by which a run tells another
	// workspace's key; "" when a version before it saved the stream.
	KeyFingerprint string
}

// Cursor is where the stream's synced history ends
// (Coverage.FrontierFrom its Start): an incremental run starts there, less
// its lookback.
func (st StreamState) Cursor() time.Time { return st.Coverage.FrontierFrom(st.Start) }

// WindowStats is what a committed window held.
type WindowStats struct {
	Rows    int64 // data rows in the response
	Rejects int64
	Calls   int // API calls the window took, retries included
}

// Sink makes windows durable. Calls for one window come in the order Begin,
// Write*, then Commit or Abort; a window may be begun again after Abort (a
// retried download).
type Sink interface {
	// Begin starts a window attempt with the given columns (header order),
	// discarding anything an earlier attempt left uncommitted.
	Begin(ctx context.Context, info WindowInfo, cols []schemas.Column) error
	// Write adds one batch of the current window; its schema is
	// schemas.ArrowSchema(cols) plus a last int64 column "_line". The caller
	// owns batch and releases it after Write returns.
	Write(ctx context.Context, batch arrow.RecordBatch) error
	// Commit makes the window's rows, its rejects, its deletions and the
	// stream's new state durable together: after a crash either all of them
	// are there or none. Ids repeated within the window keep their last row
	// (highest _line); ids already stored are replaced, live again if they
	// were marked deleted; columns the window lacks keep their stored
	// values. Stored contacts in info.Deletes the window lacks are marked
	// deleted (or removed with HardDelete), unless that trips
	// info.DeleteGuard: then nothing is committed.
	Commit(ctx context.Context, info WindowInfo, rejects []transform.Reject, stats WindowStats, state StreamState) (Changes, error)
	// Abort discards the current window attempt.
	Abort(ctx context.Context) error
}

// StateStore keeps sync state and run history beside the data.
type StateStore interface {
	// LoadState returns the state of a stream; a stream never synced has
	// only StreamID and Identity set.
	LoadState(ctx context.Context, streamID, identity string) (StreamState, error)
	// Streams returns the state of every stream the destination holds,
	// sorted by StreamID.
	Streams(ctx context.Context) ([]StreamState, error)
	// ForgetStream removes a stream's state (its coverage, pending windows);
	// the contacts stay. The next sync of the stream starts from the
	// beginning. Forgetting an unknown stream is not an error.
	ForgetStream(ctx context.Context, streamID string) error
	// StartRun records a run's start.
	StartRun(ctx context.Context, run Run) error
	// FinishRun records a run's outcome.
	FinishRun(ctx context.Context, run Run) error
	// LoadBudget returns the remembered rate-limit budget of a workspace key.
	LoadBudget(ctx context.Context, keyFingerprint string) (extract.RateLimit, error)
	// SaveBudget remembers the budget.
	SaveBudget(ctx context.Context, keyFingerprint string, b extract.RateLimit) error
	// Runs returns the recorded runs, newest first; at most limit of them
	// when limit > 0.
	Runs(ctx context.Context, limit int) ([]Run, error)
	// Rejects returns the stored rejected rows, oldest first; at most limit
	// of the newest when limit > 0.
	Rejects(ctx context.Context, limit int) ([]StoredReject, error)
}

// StoredReject is a rejected row as a destination keeps it.
type StoredReject struct {
	StreamID   string
	RunID      string
	RequestID  string
	Window     extract.Window
	Line       int64
	Raw        string
	Reason     string
	RejectedAt time.Time
}

// Target is a destination: a sink that keeps its sync state beside its data.
type Target interface {
	Sink
	StateStore
	// Close releases the destination (its file lock among others).
	Close() error
}

// Run is one invocation of sync for one stream.
type Run struct {
	RunID      string
	StreamID   string
	StartedAt  time.Time
	FinishedAt time.Time
	Status     string // running, ok, partial (stopped at --max-calls), failed
	Since      time.Time
	Until      time.Time
	Windows    int
	Rows       int64
	Rejects    int64
	Calls      int
	Error      string
	// What the run did to the stored contacts, and what its refresh spent.
	Changes      Changes
	RefreshCalls int
	// RequestIDs are the X-Request-IDs of the responses the run committed,
	// the last 20 at most, for quoting to LeadLex support.
	RequestIDs []string
}

// MaxRunRequestIDs is how many request ids a Run keeps.
const MaxRunRequestIDs = 20
