// Package pipeline runs a sync: it works out which created_at range a run
// must cover from the stream's saved state, drives the extractor over it,
// streams each response through the transform into the sinks, and commits
// each window together with the state a resumed run starts from. It holds
// the wiring and the state rules, and leaves HTTP to extract, parsing to
// transform and storage to load.
package pipeline

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/leadlex/leadlex-etl/internal/archive"
	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/load"
	"github.com/leadlex/leadlex-etl/internal/transform"
	"github.com/leadlex/leadlex-etl/schemas"
)

// Options configures one sync.
type Options struct {
	Client *extract.Client
	// Query holds the filters, the fields and the limit; its created_after
	// and created_before are set per window.
	Query extract.Query
	// Since and Until bound the run (zero: from the saved cursor, or all
	// history on a first run; until now).
	Since, Until time.Time
	// Lookback re-exports this much before the saved cursor.
	Lookback time.Duration
	// MaxCalls stops the run after this many API calls (0: no cap).
	MaxCalls int
	// IgnoreSavedBudget skips the rate-limit budget earlier runs saved: the
	// run asks the API, whatever they remembered.
	IgnoreSavedBudget bool
	// Targets receive every window; one extract feeds them all, because API
	// calls are the scarce resource. Each keeps its own state; a run covers
	// what the least advanced one needs, and commits each window to all.
	Targets []load.Target
	// Transform's RequestID is set per response, and its MaxRows to the
	// query's limit.
	Transform transform.Options
	// HardDelete removes contacts found deleted at the source instead of
	// setting their _deleted_at.
	HardDelete bool
	// MaxDeleteRatio guards deletions: a window whose complete export would
	// mark or remove more than this share of the contacts stored for its
	// range, once the run has deleted more than DeletesAllowed, commits
	// nothing and fails with a *load.DeleteGuardError (see
	// load.DeleteGuard). 0 or 1: no guard.
	MaxDeleteRatio float64
	// Refresh says how the run spends the calls its incremental part left.
	Refresh RefreshPolicy
	// Progress, if set, is told how the run advances (nil: nothing is).
	Progress Progress
	// Budgets is the rate-limit budget every run on the machine shares
	// (nil: only the destinations' copies).
	Budgets SharedBudget
	// NewStream allows a run that starts a new stream from the beginning
	// of time next to the destinations' other streams (a *NewStreamError
	// otherwise).
	NewStream bool
	// KeyRotated says the API key is a new key of the workspace the stream
	// was synced with: the run continues the stream and records the key
	// (a *KeyMismatchError otherwise, when the stream keeps another key's
	// fingerprint). With NewStream instead, the key is taken for another
	// workspace's, whose stream starts next to the other.
	KeyRotated bool
	// RotatedStream names the stream KeyRotated continues, when the
	// destinations hold several of these filters (several workspaces'):
	// the key cannot tell which is its workspace's.
	RotatedStream string
	// Siblings are the identities (as StreamIdentity gives them) of the
	// streams run together with this one, a config file's: a new stream
	// next to none but these is expected, and needs no NewStream.
	Siblings []string
	Logger   *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Archive, when set, keeps every committed response body and what a
	// replay needs to load it again (sync --raw-dir): written before the
	// window commits, so a destination never holds a window it lacks.
	Archive *archive.Archive
}

// Progress is told how a run advances, for a live progress line or
// periodic log lines. Its methods are called on the goroutine that runs
// Sync, between API calls; they must return quickly and must not call into
// the run. Rate-limit pauses are extract.Client.OnWait's to tell.
type Progress interface {
	// Start is called once, before the first call, with the windows the run
	// starts with (a truncated answer splits a window into more, which
	// Window's Pending then counts).
	Start(windows int)
	// Window is called after each committed window.
	Window(WindowProgress)
	// Refresh is called when the rolling refresh starts re-exporting the
	// covered range r as windows windows.
	Refresh(r extract.Window, windows int)
}

// WindowProgress is where a run stands after a committed window.
type WindowProgress struct {
	Window  extract.Window // the window just committed
	Windows int            // windows committed by the run so far
	Pending int            // windows still to fetch in the current phase (new data, or the refresh's range)
	Rows    int64          // data rows received by the run so far, duplicates at window edges included
	Calls   int            // export calls the run has spent so far (answered with anything but 429)
	Refresh bool           // the window was the rolling refresh's
}

// SharedBudget is what budget.Store does: the rate-limit budget of a
// workspace key and base URL, shared by every run on the machine, and the
// calls of its hour that runs have claimed for their refresh.
type SharedBudget interface {
	// Load returns the budget last seen under key, and when; not Known when
	// none is, or none can be believed.
	Load(key string) (b extract.RateLimit, seen time.Time, err error)
	// Save records what an answer of the API said of the budget at seen.
	Save(key string, b extract.RateLimit, seen time.Time) error
	// Claim records b (the run's latest answer, seen at seen) and that run
	// id means to spend up to want calls of the budget, and returns how many
	// it may: at most the calls left less reserve and less what other runs
	// claimed. It replaces id's earlier claim.
	Claim(key, id string, want, reserve int, b extract.RateLimit, seen time.Time) (int, error)
	// Release records b (the run's latest answer, seen at seen) and gives
	// back what is left of id's claim, at once.
	Release(key, id string, b extract.RateLimit, seen time.Time) error
	// Claimed returns the calls runs have claimed of the budget and not
	// released.
	Claimed(key string) (int, error)
}

// RefreshPolicy is how a run re-verifies covered ranges with the calls of
// the rate-limit hour the incremental part left (rolling refresh).
type RefreshPolicy struct {
	// Calls is the most calls the refresh may spend; RefreshAuto (the
	// default) spends what the API says is left less ReserveCalls, 0 turns
	// refresh off.
	Calls int
	// ReserveCalls are left to other users of the workspace's key when
	// Calls is RefreshAuto.
	ReserveCalls int
	// MinAge: a range verified less than this ago is not exported again.
	MinAge time.Duration
}

// DeletesAllowed is how many contacts a run marks or removes as deleted
// before the deletion guard weighs its windows' deletions against what they
// had stored (Options.MaxDeleteRatio): a few legitimate deletions in a
// small range (the lookback hour of a quiet workspace) never trip it, while
// an empty answer or another workspace's contacts trip it as soon as a run
// would delete more, at the latest on the first refresh window, which holds
// up to 45,000 stored contacts. Counted over the run, not per window, so
// that many small windows cannot slip a broken answer's deletions under it.
const DeletesAllowed = 10

// RefreshAuto is RefreshPolicy.Calls's default: the calls left in the hour,
// less the reserve.
const RefreshAuto = -1

// Result says what a sync did.
type Result struct {
	extract.Summary
	StreamID  string
	RunID     string
	Since     time.Time // zero: from the beginning
	Until     time.Time
	Rejects   int64
	Complete  bool             // the range is fully synced
	Pending   []extract.Window // what a next run resumes with
	Cursor    time.Time        // where the stream's synced history ends after the run
	Coverage  load.Coverage    // the stream's synced ranges after the run
	Distinct  int              // distinct ids loaded (Rows counts the duplicates at window edges too)
	MinCalls  int              // ceil(Distinct / limit): the fewest calls those rows could have taken
	WasResume bool             // the run finished an interrupted one
	// PendingSaved says the destinations hold Pending, so that the next run
	// resumes them: a window of this run committed them, or an earlier run did.
	PendingSaved bool
	// Changes counts what the run did to the stored contacts (the first
	// destination's count, if several).
	Changes load.Changes
	// CanDelete says the stream can tell deletions (see Sync).
	CanDelete bool
	// Refresh is what the rolling refresh did.
	Refresh RefreshResult
	// Archived counts the windows the run added to the raw archive.
	Archived int
}

// RefreshResult is what a run's rolling refresh did.
type RefreshResult struct {
	Calls    int              // calls spent on it
	Ranges   []extract.Window // the covered ranges it re-exported
	Verified bool             // every range was re-exported completely
	Changes  load.Changes     // what it changed: contacts edited, new, deleted
	Skipped  string           // why there was none, when there was none
}

// Identity describes a stream: the same base URL, filters and fields make
// the same stream, whose cursor a sync with other filters never moves.
type Identity struct {
	BaseURL string   `json:"base_url"`
	ListID  string   `json:"list_id,omitempty"`
	Tags    []string `json:"tags,omitempty"`
	Fields  []string `json:"fields,omitempty"`
	// Workspace tells apart the streams of two workspaces that share the
	// base URL, filters and fields in one destination: a label --new-stream
	// gives the stream of a key that is not the existing stream's. Empty
	// for the first workspace's.
	Workspace string `json:"workspace,omitempty"`
}

// StreamIdentity returns the identity of q's stream against baseURL, as
// canonical JSON, and a short id derived from it. Trivial differences of
// the command line make no new stream: see Identity.Canonical.
func StreamIdentity(baseURL string, q extract.Query) (id, identity string) {
	return Identity{BaseURL: baseURL, ListID: q.ListID, Tags: q.Tags, Fields: q.Fields}.ID()
}

// ID returns id's canonical JSON and the short id derived from it.
func (id Identity) ID() (streamID, identity string) {
	b, _ := json.Marshal(id.Canonical())
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8]), string(b)
}

// Canonical returns id without the differences that change nothing the API
// returns: the base URL's case, default port, trailing slashes and loopback
// alias (CanonicalBaseURL); the order and repeats of tags and fields; and
// a field list that is the API's default set spelled out (with or without
// id and created_at, which are always asked for).
func (id Identity) Canonical() Identity {
	id.BaseURL = CanonicalBaseURL(id.BaseURL)
	id.Tags = slices.Compact(slices.Sorted(slices.Values(id.Tags)))
	fields := make([]string, 0, len(id.Fields)+2)
	for _, f := range id.Fields {
		if f = strings.TrimSpace(f); f != "" {
			fields = append(fields, f)
		}
	}
	if len(fields) > 0 {
		fields = append(fields, "id", "created_at")
	}
	fields = slices.Compact(slices.Sorted(slices.Values(fields)))
	if slices.Equal(fields, slices.Sorted(slices.Values(schemas.Names(schemas.Contacts)))) {
		fields = nil
	}
	id.Fields = fields
	if len(id.Tags) == 0 {
		id.Tags = nil
	}
	return id
}

// CanonicalBaseURL returns the base URL with the scheme and host in lower
// case, no default port (80 for http, 443 for https), no trailing slash,
// and "localhost" for any loopback address (127.0.0.1, ::1, localhost), so
// that two spellings of one API make one stream.
func CanonicalBaseURL(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Host == "" {
		return strings.TrimRight(raw, "/")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		host = "localhost"
	} else if ip != nil && ip.To4() == nil {
		host = "[" + host + "]"
	}
	if (u.Scheme == "http" && port == "80") || (u.Scheme == "https" && port == "443") {
		port = ""
	}
	u.Host = host
	if port != "" {
		u.Host += ":" + port
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// NewStreamError says a sync would start a new stream, exporting all
// history, next to the streams a destination already holds: often a
// command line that differs by accident (another --fields, another base
// URL). It is refused unless Options.NewStream allows it.
type NewStreamError struct {
	StreamID string
	Identity string
	Existing []load.StreamState // the destinations' other streams
}

func (e *NewStreamError) Error() string {
	ids := make([]string, len(e.Existing))
	for i, st := range e.Existing {
		ids[i] = st.StreamID + " " + st.Identity
	}
	return fmt.Sprintf("this sync starts a new stream %s %s and exports all history, next to the destination's streams: %s; "+
		"pass --new-stream to go ahead, or the flags of an existing stream", e.StreamID, e.Identity, strings.Join(ids, "; "))
}

// candidate is a stream of the destinations that a run may continue, with
// its state in each destination that holds it.
type candidate struct {
	id, identity string
	states       []load.StreamState
}

// resolveStream finds the streams the run may continue: those of the
// destinations with synced ranges or pending windows whose identity is
// equivalent to identity but for the workspace (a stream an earlier version
// named by a less canonical identity keeps its id), and the destinations'
// other streams. Which one the run continues is the key's to say
// (chooseStream).
func resolveStream(ctx context.Context, targets []load.Target, streamID, identity string) (cands []candidate, others []load.StreamState, err error) {
	mine := canonicalIdentity(identity, true)
	seen := map[string]bool{}
	for _, t := range targets {
		streams, err := t.Streams(ctx)
		if err != nil {
			return nil, nil, err
		}
		for _, st := range streams {
			same := st.StreamID == streamID || canonicalIdentity(st.Identity, true) == mine
			switch {
			case same && (len(st.Coverage) > 0 || len(st.Pending) > 0):
				i := slices.IndexFunc(cands, func(c candidate) bool { return c.id == st.StreamID })
				if i < 0 {
					cands = append(cands, candidate{id: st.StreamID, identity: st.Identity})
					i = len(cands) - 1
				}
				cands[i].states = append(cands[i].states, st)
			case !same && !seen[st.StreamID]:
				seen[st.StreamID] = true
				others = append(others, st)
			}
		}
	}
	return cands, others, nil
}

// BudgetKey is what a remembered rate-limit budget is stored under: a hash
// of the API key's fingerprint and the base URL, so that what one API said
// never holds back calls to another.
func BudgetKey(keyFingerprint, baseURL string) string {
	sum := sha256.Sum256([]byte("leadlex-etl budget\x00" + keyFingerprint + "\x00" + CanonicalBaseURL(baseURL)))
	return hex.EncodeToString(sum[:8])
}

// PlanRun decides the windows of a run from the stream's state: an
// interrupted run's pending windows plus what is new since its end; else
// the range from since (or the cursor less the lookback, or the beginning)
// to until. runSince and runUntil are the range the run covers in one piece,
// which decides whether completing it moves the cursor.
func PlanRun(st load.StreamState, since, until time.Time, lookback time.Duration) (windows []extract.Window, runSince, runUntil time.Time) {
	if len(st.Pending) > 0 {
		from := st.PendingUntil
		runSince = st.PendingSince
		if !since.IsZero() {
			from, runSince = since, since
		}
		windows = slices.Clone(st.Pending)
		if until.After(from) {
			windows = append(windows, extract.Window{From: from, To: until})
		}
		return mergeWindows(windows), runSince, later(until, st.PendingUntil)
	}
	if cursor := st.Cursor(); since.IsZero() && !cursor.IsZero() {
		since = cursor.Add(-lookback)
	} else if since.IsZero() {
		since = st.Start // nothing of the history synced yet
	}
	if !since.IsZero() && !until.After(since) {
		return nil, since, until
	}
	return []extract.Window{{From: since, To: until}}, since, until
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// mergeWindows sorts windows and joins those that overlap or touch.
func mergeWindows(ws []extract.Window) []extract.Window {
	slices.SortFunc(ws, func(a, b extract.Window) int {
		switch {
		case a.From.Equal(b.From):
			return 0
		case a.From.IsZero() || (!b.From.IsZero() && a.From.Before(b.From)):
			return -1
		}
		return 1
	})
	var out []extract.Window
	for _, w := range ws {
		if n := len(out); n > 0 {
			last := &out[n-1]
			if last.To.IsZero() || !w.From.After(last.To) {
				if last.To.IsZero() || w.To.IsZero() {
					last.To = time.Time{}
				} else {
					last.To = later(last.To, w.To)
				}
				continue
			}
		}
		out = append(out, w)
	}
	return out
}

// needsConsent says the run starts a new stream from the beginning next
// to streams the destinations hold that are not its siblings.
func (pr *prepared) needsConsent(o *Options) bool {
	if pr.found || !o.Since.IsZero() {
		return false
	}
	siblings := map[string]bool{}
	for _, s := range o.Siblings {
		siblings[canonicalIdentity(s, false)] = true
	}
	for _, st := range pr.others {
		if !siblings[canonicalIdentity(st.Identity, false)] {
			return true
		}
	}
	return false
}

// canonicalIdentity is the canonical form of a stream identity, without its
// workspace label if anyWorkspace, or the identity itself when it does not
// parse.
func canonicalIdentity(identity string, anyWorkspace bool) string {
	var id Identity
	if err := json.Unmarshal([]byte(identity), &id); err != nil {
		return identity
	}
	if anyWorkspace {
		id.Workspace = ""
	}
	b, _ := json.Marshal(id.Canonical())
	return string(b)
}

// prepared is what a run knows before its first call: its stream, the
// windows it plans, the state it starts from, and the budget believed left.
type prepared struct {
	streamID, identity string
	found              bool               // the destinations hold the stream
	others             []load.StreamState // their other streams
	windows            []extract.Window
	st                 load.StreamState
	runSince, runUntil time.Time
	budgetKey          string
	budgetFrom         string            // where the budget the client was given came from ("" none)
	shared             extract.RateLimit // what the shared budget file said for the key
	key                KeyCheck
	keyFP              string // the fingerprint of the key the run records with the stream
}

// prepare works out, without an API call, what a run of o starting at
// start would do, and gives the client the budget saved for its key.
func prepare(ctx context.Context, o *Options, start time.Time, log *slog.Logger) (*prepared, error) {
	until := o.Until
	if until.IsZero() {
		until = start
	}
	// Instants are kept to the microsecond, as the API's are.
	until = until.Truncate(time.Microsecond)
	o.Since = o.Since.Truncate(time.Microsecond)
	if len(o.Targets) == 0 {
		return nil, errors.New("no destination")
	}
	pr := &prepared{}
	pr.streamID, pr.identity = StreamIdentity(o.Client.BaseURL, o.Query)
	cands, others, err := resolveStream(ctx, o.Targets, pr.streamID, pr.identity)
	if err != nil {
		return nil, err
	}
	pr.others = others
	if err := pr.chooseStream(cands, o); err != nil {
		return nil, err
	}
	pr.budgetKey = BudgetKey(o.Client.Key.Fingerprint(), o.Client.BaseURL)
	for i, t := range o.Targets {
		tst, err := t.LoadState(ctx, pr.streamID, pr.identity)
		if err != nil {
			return nil, err
		}
		if len(tst.Coverage) == 0 && len(tst.Pending) == 0 {
			// The stream's history begins with this run.
			tst.Start = o.Since
		}
		w, tSince, tUntil := PlanRun(tst, o.Since, until, o.Lookback)
		pr.windows = append(pr.windows, w...)
		if i == 0 {
			pr.st, pr.runSince, pr.runUntil = tst, tSince, tUntil
			continue
		}
		// The least advanced target decides: the earliest start, what
		// every target covers, the latest end.
		if tSince.IsZero() || (!pr.runSince.IsZero() && tSince.Before(pr.runSince)) {
			pr.runSince = tSince
		}
		if tst.Start.IsZero() || tst.Start.Before(pr.st.Start) {
			pr.st.Start = tst.Start
		}
		pr.st.Coverage = pr.st.Coverage.Intersect(tst.Coverage)
		pr.st.Pending = append(pr.st.Pending, tst.Pending...)
		pr.runUntil = later(pr.runUntil, tUntil)
	}
	pr.st.KeyFingerprint = pr.keyFP
	pr.windows = mergeWindows(pr.windows)
	if o.IgnoreSavedBudget {
		log.Info("ignoring the rate-limit budget earlier runs saved")
		return pr, nil
	}
	// The machine's shared budget is what the last run of any destination
	// saw; the destinations' copies stand in without one. A saved budget
	// whose reset has passed says nothing any more.
	if o.Budgets != nil {
		b, _, err := o.Budgets.Load(pr.budgetKey)
		if err != nil {
			log.Warn("the shared rate-limit budget could not be read", "err", err.Error())
		} else if believed(b, start) {
			o.Client.SetBudget(b)
			pr.budgetFrom, pr.shared = "the shared budget file", b
		}
	}
	for _, t := range o.Targets {
		if b, err := t.LoadBudget(ctx, pr.budgetKey); err != nil {
			return nil, err
		} else if pr.budgetFrom != "the shared budget file" && believed(b, start) && b.Reset.After(o.Client.Budget().Reset) {
			o.Client.SetBudget(b)
			pr.budgetFrom = "the destination"
		}
	}
	return pr, nil
}

// clockAndLog returns now, or time.Now, and log, or a logger that
// discards.
func clockAndLog(now func() time.Time, log *slog.Logger) (func() time.Time, *slog.Logger) {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return now, log
}

// Sync runs one sync and returns what it did. Windows committed before an
// error stay committed, and the state saved with them lets the next run
// resume where this one stopped.
func Sync(ctx context.Context, o Options) (res Result, err error) {
	now, log := clockAndLog(o.Now, o.Logger)
	start := now().UTC()
	pr, err := prepare(ctx, &o, start, log)
	if err != nil {
		return res, err
	}
	if err := pr.checkKey(&o, log); err != nil {
		return res, err
	}
	if pr.needsConsent(&o) && !o.NewStream {
		return res, &NewStreamError{StreamID: pr.streamID, Identity: pr.identity, Existing: pr.others}
	}
	if o.Archive != nil {
		if err := o.Archive.CheckWritable(pr.streamID); err != nil {
			return res, err // before any call, not after the first
		}
		if err := settleArchive(ctx, o.Archive, o.Targets, pr.streamID, pr.identity, start, log); err != nil {
			return res, err
		}
	}
	if b := o.Client.Budget(); pr.budgetFrom != "" && b.Known && b.Remaining <= 0 && b.Reset.After(start) {
		log.Warn("an earlier run saved that the export budget is spent: no call before it expires (--ignore-saved-budget asks the API anyway)",
			"expires", b.Reset.UTC().Format(time.RFC3339))
	}
	streamID, identity, windows, st, runSince, runUntil, budgetKey := pr.streamID, pr.identity, pr.windows, pr.st, pr.runSince, pr.runUntil, pr.budgetKey
	res = Result{StreamID: streamID, RunID: newRunID(start), Since: runSince, Until: runUntil, Cursor: st.Cursor(), WasResume: len(st.Pending) > 0}
	log = log.With("stream", streamID, "run", res.RunID)
	run := load.Run{RunID: res.RunID, StreamID: streamID, StartedAt: start, Status: load.RunRunning, Since: runSince, Until: runUntil}
	for _, t := range o.Targets {
		if err := t.StartRun(ctx, run); err != nil {
			return res, err
		}
	}
	log.Info("sync starting", "since", fmtTime(runSince, "the beginning"), "until", fmtTime(runUntil, "now"),
		"windows", len(windows), "resuming", res.WasResume, "identity", identity)

	limit := o.Query.Limit
	if limit <= 0 {
		limit = extract.MaxLimit
		o.Query.Limit = limit
	}
	canDelete, err := canTellDeletions(ctx, o.Targets, streamID, identity, o.Client.Key, log)
	if err != nil {
		return res, err
	}
	res.CanDelete = canDelete
	h := &handler{o: &o, st: st, runID: res.RunID, runSince: runSince, runUntil: runUntil, now: now, log: log, callsSeen: o.Client.Calls(),
		callsAtStart: o.Client.Calls(), canDelete: canDelete, budgetKey: budgetKey, arch: o.Archive, runStarted: start,
		shared: pr.shared, heard: o.Client.Budget()}
	defer h.discardAttempt()
	planner := extract.NewPlanner(limit, windows...)
	if o.Progress != nil {
		o.Progress.Start(len(planner.Pending()))
	}
	ex := &extract.Extractor{Client: o.Client, Query: o.Query}
	sum, runErr := ex.Run(ctx, planner, h, o.MaxCalls)
	if runErr == nil && len(planner.Pending()) == 0 {
		var rsum extract.Summary
		rsum, runErr = h.refresh(ctx, ex, &res, o.MaxCalls-sum.Calls)
		sum.Windows += rsum.Windows
		sum.Rows += rsum.Rows
		sum.Calls += rsum.Calls
		sum.RateLimited += rsum.RateLimited
		sum.Elapsed += rsum.Elapsed
	}
	if err := ctx.Err(); err != nil && !errors.Is(runErr, err) {
		// A run the context ended is interrupted: also when that came while
		// its last window committed (which runs to its end), or when DuckDB
		// said so with an error of its own.
		runErr = errors.Join(err, runErr)
	}
	res.Changes = h.changes
	res.Archived = h.archived
	res.Summary = sum
	res.Rejects = h.rejects
	res.Pending = planner.Pending()
	res.Complete = runErr == nil && len(res.Pending) == 0
	res.PendingSaved = len(res.Pending) > 0 && (sum.Windows > 0 || res.WasResume)
	res.Cursor = h.st.Cursor()
	res.Coverage = h.st.Coverage
	res.Distinct = distinct(h.runIDs)
	res.MinCalls = extract.MinCalls(res.Distinct, limit)

	run.FinishedAt, run.Windows, run.Rows, run.Rejects, run.Calls = now().UTC(), sum.Windows, int64(sum.Rows), h.rejects, sum.Calls
	run.Changes, run.RefreshCalls, run.RequestIDs = h.changes, res.Refresh.Calls, h.requestIDs
	run.Status, run.Error = runStatus(runErr, res.Complete)
	// Record the outcome even if ctx was cancelled.
	bg := context.WithoutCancel(ctx)
	var finishErr error
	for _, t := range o.Targets {
		finishErr = errors.Join(finishErr, t.FinishRun(bg, run), t.SaveBudget(bg, budgetKey, o.Client.Budget()))
	}
	h.flushBudget()
	if runErr != nil {
		return res, runErr
	}
	return res, finishErr
}

// runStatus is how a run that ended with err is recorded: interrupted
// when a signal (its context) ended it, failed on any other error, else ok
// or, stopped short of its range (--max-calls), partial.
func runStatus(err error, complete bool) (status, msg string) {
	switch {
	case errors.Is(err, context.Canceled):
		return load.RunInterrupted, err.Error()
	case err != nil:
		return load.RunFailed, err.Error()
	case complete:
		return load.RunOK, ""
	}
	return load.RunPartial, ""
}

func fmtTime(t time.Time, zero string) string {
	if t.IsZero() {
		return zero
	}
	return t.UTC().Format(time.RFC3339)
}

// newRunID names a run by its start and a random suffix.
func newRunID(t time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// handler streams each response through the transform into the sink and
// commits windows with the stream state.
type handler struct {
	o                  *Options
	st                 load.StreamState
	runID              string
	runSince, runUntil time.Time
	now                func() time.Time
	log                *slog.Logger

	reqID        string
	rows         int64
	rejected     []transform.Reject
	callsSeen    int
	callsAtStart int // the client's calls when the run started
	rejects      int64
	windows      int   // windows committed by the run
	runRows      int64 // rows of those windows

	// Hashes of the ids loaded: the attempt's, then the committed run's.
	// Windows overlap at their edges, so only these give the distinct row
	// count the minimum number of calls is judged against.
	attemptIDs, runIDs []uint64

	warnedIgnored bool // the run has said that columns were left out

	times []int64 // created_at of the last response's rows, for coverage

	requestIDs []string     // of the committed windows, the last MaxRunRequestIDs
	budgetKey  string       // where the shared budget is kept
	canDelete  bool         // the stream can tell deletions
	refreshing bool         // windows are the rolling refresh's
	changes    load.Changes // what the run's commits did
	refreshed  load.Changes // of which the refresh's

	// The budget as the shared file holds it (as far as the run knows), as
	// the client last heard it and when (zero: no answer has told it yet),
	// and whether the run holds a claim there and has warned of the file.
	shared, heard extract.RateLimit
	heardAt       time.Time
	claiming      bool
	budgetWarned  bool

	// The raw archive (nil: none) and the attempt whose body is being
	// archived; a retry discards it, Commit moves it into place.
	arch       *archive.Archive
	att        *archive.Attempt
	received   time.Time // when the attempt's response arrived
	runStarted time.Time
	seq        int // windows the run archived, to order them
	archived   int
}

var idSeed = maphash.MakeSeed()

// hashIDs appends a hash of every id of a batch to dst.
func hashIDs(dst []uint64, b arrow.RecordBatch) []uint64 {
	idx := b.Schema().FieldIndices("id")
	if len(idx) == 0 {
		return dst
	}
	ids, ok := b.Column(idx[0]).(*array.String)
	if !ok {
		return dst
	}
	for i := 0; i < ids.Len(); i++ {
		dst = append(dst, maphash.String(idSeed, ids.Value(i)))
	}
	return dst
}

// distinct counts the distinct values of hs, sorting it.
func distinct(hs []uint64) int {
	slices.Sort(hs)
	return len(slices.Compact(hs))
}

func (h *handler) info(w extract.Window) load.WindowInfo {
	return load.WindowInfo{StreamID: h.st.StreamID, RunID: h.runID, Window: w, RequestID: h.reqID, LoadedAt: h.now().UTC()}
}

// Consume implements extract.Handler. With a raw archive, the body is
// compressed into the archive's temporary file as the transform reads it.
func (h *handler) Consume(ctx context.Context, w extract.Window, resp *extract.Response) (extract.Tally, error) {
	h.discardAttempt()
	if h.arch != nil {
		att, err := h.arch.Begin(h.st.StreamID)
		if err != nil {
			return extract.Tally{}, err
		}
		h.att, h.received = att, h.now().UTC()
		resp = &extract.Response{Body: io.TeeReader(resp.Body, att), RequestID: resp.RequestID, RateLimit: resp.RateLimit, Header: resp.Header}
	}
	t, err := h.consume(ctx, w, resp)
	if err != nil {
		h.discardAttempt()
	}
	return t, err
}

// discardAttempt removes what the archive holds of an attempt that did not
// commit.
func (h *handler) discardAttempt() {
	h.att.Abort()
	h.att = nil
}

func (h *handler) consume(ctx context.Context, w extract.Window, resp *extract.Response) (extract.Tally, error) {
	h.reqID, h.rows, h.rejected, h.attemptIDs = resp.RequestID, 0, nil, h.attemptIDs[:0]
	rd, err := transform.NewReader(resp.Body, transformOptions(h.o.Transform, resp.RequestID, h.o.Query))
	if err != nil {
		return extract.Tally{}, fmt.Errorf("response %s: %w", resp.RequestID, err)
	}
	defer rd.Release()
	return h.load(ctx, w, resp.RequestID, rd)
}

// transformOptions are the transform's options for a response to q with
// the given request id.
func transformOptions(topts transform.Options, requestID string, q extract.Query) transform.Options {
	topts.RequestID = requestID
	// A body with more rows than asked for is broken: stop reading there.
	topts.MaxRows = q.Limit
	if topts.BatchRows == 0 {
		// A whole window in one batch where the limit allows: each batch is
		// one statement for DuckDB. A window holds at most 50,000 rows.
		topts.BatchRows = extract.MaxLimit
	}
	// Columns nobody asked for are left out, so a server that adds some
	// cannot change the destination's schema.
	topts.Fields = q.Fields
	if topts.Fields == nil {
		topts.Fields = schemas.Names(schemas.Contacts)
	}
	return topts
}

// batches is what load reads a window's rows from: a transform.Reader
// streaming a response, or a window a replay read ahead (readAhead).
type batches interface {
	Columns() []schemas.Column
	Ignored() []string
	// Next, RecordBatch and Err as array.RecordReader's: the batch belongs
	// to the source until the next call of Next.
	Next() bool
	RecordBatch() arrow.RecordBatch
	Err() error
	Rows() int64
	Rejects() []transform.Reject
	Tally() extract.Tally
}

// load begins window w in every target and writes it the batches of rd,
// the response with the given request id, to their end.
func (h *handler) load(ctx context.Context, w extract.Window, requestID string, rd batches) (extract.Tally, error) {
	h.reqID, h.rows, h.rejected, h.attemptIDs = requestID, 0, nil, h.attemptIDs[:0]
	if ign := rd.Ignored(); len(ign) > 0 && !h.warnedIgnored {
		h.warnedIgnored = true
		h.log.Warn("the API returned columns that were not asked for; they are left out (ask for them with --fields to keep them)",
			"columns", strings.Join(ign, ","), "request_id", requestID)
	}
	for _, t := range h.o.Targets {
		if err := t.Begin(ctx, h.info(w), rd.Columns()); err != nil {
			return extract.Tally{}, errors.Join(err, h.abort(ctx))
		}
	}
	for rd.Next() {
		h.attemptIDs = hashIDs(h.attemptIDs, rd.RecordBatch())
		for _, t := range h.o.Targets {
			if err := t.Write(ctx, rd.RecordBatch()); err != nil {
				return extract.Tally{}, errors.Join(err, h.abort(ctx))
			}
		}
	}
	if err := rd.Err(); err != nil {
		if pe := (*extract.ProtocolError)(nil); !errors.As(err, &pe) { // which names the response itself
			err = fmt.Errorf("response %s: %w", requestID, err)
		}
		return extract.Tally{}, errors.Join(err, h.abort(ctx))
	}
	h.rows, h.rejected = rd.Rows(), rd.Rejects()
	tally := rd.Tally()
	h.times = tally.Times
	return tally, nil
}

// subtract returns the parts of w that none of ws overlaps, in order.
func subtract(w extract.Window, ws []extract.Window) []extract.Window {
	parts := []extract.Window{w}
	for _, x := range ws {
		var next []extract.Window
		for _, p := range parts {
			pl, ph := micros(p.From, math.MinInt64), micros(p.To, math.MaxInt64)
			xl, xh := micros(x.From, math.MinInt64), micros(x.To, math.MaxInt64)
			if xh <= pl || xl >= ph {
				next = append(next, p)
				continue
			}
			if pl < xl {
				next = append(next, extract.Window{From: p.From, To: x.From})
			}
			if xh < ph {
				next = append(next, extract.Window{From: x.To, To: p.To})
			}
		}
		parts = next
	}
	return parts
}

// within returns the non-empty parts of ws inside c.
func within(ws []extract.Window, c extract.Window) []extract.Window {
	var out []extract.Window
	cl, ch := micros(c.From, math.MinInt64), micros(c.To, math.MaxInt64)
	for _, w := range ws {
		if micros(w.From, math.MinInt64) < cl {
			w.From = c.From
		}
		if micros(w.To, math.MaxInt64) > ch {
			w.To = c.To
		}
		if micros(w.From, math.MinInt64) < micros(w.To, math.MaxInt64) {
			out = append(out, w)
		}
	}
	return out
}

func micros(t time.Time, zero int64) int64 {
	if t.IsZero() {
		return zero
	}
	return t.UnixMicro()
}

// countIn counts the instants (Unix µs) inside w.
func countIn(times []int64, w extract.Window) int64 {
	lo, hi := micros(w.From, math.MinInt64), micros(w.To, math.MaxInt64)
	var n int64
	for _, t := range times {
		if t >= lo && t < hi {
			n++
		}
	}
	return n
}

// abort discards the current window in every target.
func (h *handler) abort(ctx context.Context) error {
	var err error
	for _, t := range h.o.Targets {
		err = errors.Join(err, t.Abort(context.WithoutCancel(ctx)))
	}
	return err
}

// Commit implements extract.Handler. The part of w that is complete (w
// less the windows still pending, which hold what a truncated response left
// of it) joins the stream's coverage, verified now. A refresh's pending
// windows are not saved: the next run starts a refresh of its own. With a
// raw archive, the body and what a replay needs are made durable there
// first; if no destination commits, they are taken out again.
func (h *handler) Commit(ctx context.Context, w extract.Window, pending []extract.Window) error {
	info := h.advance(w, pending)
	calls := h.o.Client.Calls()
	stats := load.WindowStats{Rows: h.rows, Rejects: int64(len(h.rejected)), Calls: calls - h.callsSeen}
	h.callsSeen = calls
	var entry archive.Entry
	if h.att != nil {
		var err error
		h.seq++
		entry, err = h.att.Commit(h.archiveMeta(w, pending, info, stats))
		h.att = nil
		if err != nil {
			return errors.Join(err, h.abort(ctx))
		}
		h.log.Info("window archived", "window", w.String(), "request_id", h.reqID, "file", path.Join(h.arch.Dir(), entry.Path), "bytes", entry.Bytes, "zstd_bytes", entry.ZstdBytes)
	}
	committed, err := h.commitTargets(ctx, w, info, stats, len(pending))
	if err != nil {
		if entry.Path != "" && committed == 0 {
			// No destination holds the window: neither may the archive.
			if rerr := h.arch.Remove(entry); rerr != nil {
				h.log.Warn("a window no destination committed stays in the raw archive", "file", path.Join(h.arch.Dir(), entry.Path), "err", rerr.Error())
			}
		}
		return err
	}
	if entry.Path != "" {
		h.archived++
	}
	h.shareBudget()
	if h.o.Progress != nil {
		h.o.Progress.Window(WindowProgress{Window: w, Windows: h.windows, Pending: len(pending), Rows: h.runRows,
			Calls: calls - h.callsAtStart, Refresh: h.refreshing})
	}
	return nil
}

// advance moves the stream state on by window w, whose response left
// pending to fetch, and returns what the targets commit it with.
func (h *handler) advance(w extract.Window, pending []extract.Window) load.WindowInfo {
	switch {
	case h.refreshing:
		// The stream's own pending windows (none: the incremental part
		// completed) stay as they are.
	case len(pending) == 0:
		h.st.Pending = nil
		h.st.PendingSince, h.st.PendingUntil = time.Time{}, time.Time{}
	default:
		h.st.Pending = pending
		h.st.PendingSince, h.st.PendingUntil = h.runSince, h.runUntil
	}
	info := h.info(w)
	complete := subtract(w, pending)
	for _, c := range complete {
		h.st.Coverage = h.st.Coverage.Add(load.Segment{From: c.From, To: c.To, VerifiedAt: info.LoadedAt, Rows: countIn(h.times, c)})
	}
	// Segments verified within the refresh's minimum age of each other are
	// one to the refresh: merge them, so the state stays small.
	h.st.Coverage = h.st.Coverage.Compact(int64(h.o.Query.Limit), h.o.Refresh.MinAge)
	// What the window exported completely, and its request certainly
	// covered whatever the API's bound precision and rule, tells which
	// stored contacts are gone at the source, unless a row did not parse:
	// its contact is there, but not known.
	certain := within(complete, w.Certain())
	switch {
	case !h.canDelete || len(certain) == 0:
	case len(h.rejected) > 0:
		h.log.Warn("rows of this window did not parse, so it tells no deletion", "window", w.String(), "rejects", len(h.rejected))
	default:
		info.Deletes, info.HardDelete = certain, h.o.HardDelete
		info.DeleteGuard = load.DeleteGuard{MaxRatio: h.o.MaxDeleteRatio, Allowed: max(0, DeletesAllowed-h.changes.Deleted)}
	}
	info.Refresh = h.refreshing
	return info
}

// archiveMeta is what the raw archive keeps of the window being committed.
func (h *handler) archiveMeta(w extract.Window, pending []extract.Window, info load.WindowInfo, stats load.WindowStats) archive.Meta {
	return archive.Meta{
		StreamID: h.st.StreamID, Identity: h.st.Identity, RunID: h.runID, RunStartedAt: h.runStarted,
		RunSince: h.runSince, RunUntil: h.runUntil, Seq: h.seq,
		Window: w, Query: w.Apply(h.o.Query), RequestID: h.reqID, ReceivedAt: h.received, LoadedAt: info.LoadedAt,
		Rows: stats.Rows, Rejects: stats.Rejects, Calls: stats.Calls,
		Pending: pending, Refresh: info.Refresh, Deletes: info.Deletes, HardDelete: info.HardDelete,
		RefreshMinAge: h.o.Refresh.MinAge, StateAfter: stateDigest(h.st), HistoryStart: h.st.Start, KeyFingerprint: h.st.KeyFingerprint,
		MaxDeleteRatio: info.DeleteGuard.MaxRatio, DeletesAllowed: info.DeleteGuard.Allowed,
	}
}

// commitTargets commits the prepared window to every target and returns
// how many committed.
func (h *handler) commitTargets(ctx context.Context, w extract.Window, info load.WindowInfo, stats load.WindowStats, pending int) (int, error) {
	// Each target commits atomically on its own. If the process dies
	// between two commits, the next run plans from the least advanced
	// target, and the one ahead absorbs the repeated window by upserting.
	h.log.Info("window committing", "window", w.String(), "request_id", h.reqID, "rows", h.rows, "refresh", h.refreshing)
	for i, t := range h.o.Targets {
		ch, err := t.Commit(ctx, info, h.rejected, stats, h.st)
		if err != nil {
			return i, errors.Join(err, h.abort(ctx))
		}
		if i == 0 {
			// A contact an earlier window marked deleted that this one
			// finds moved is not counted deleted.
			h.changes.AddWindow(ch)
			if h.refreshing {
				h.refreshed.AddWindow(ch)
			}
		}
	}
	h.rejects += int64(len(h.rejected))
	h.runIDs = append(h.runIDs, h.attemptIDs...)
	if h.requestIDs = append(h.requestIDs, h.reqID); len(h.requestIDs) > load.MaxRunRequestIDs {
		h.requestIDs = h.requestIDs[len(h.requestIDs)-load.MaxRunRequestIDs:]
	}
	h.windows++
	h.runRows += h.rows
	h.log.Info("window committed", "window", w.String(), "request_id", h.reqID, "rows", h.rows, "rejects", len(h.rejected), "pending", pending,
		"refresh", h.refreshing, "deleted", h.lastDeleted())
	return len(h.o.Targets), nil
}

// lastDeleted is a log helper: deletions so far in the run.
func (h *handler) lastDeleted() int64 { return h.changes.Deleted }

// refresh spends the calls the run may still make, within what the API
// says is left in the hour less the reserve, on re-exporting the covered
// range verified longest ago: edits reach the copy as upserts, and
// contacts missing from a complete re-export are found deleted. It never
// waits for the rate limit: a spent budget ends it quietly. With the shared
// budget file, it first claims the calls it means to spend there, so that
// runs of the key at once share the spare calls rather than each assume
// them, and releases what it did not spend at its end.
func (h *handler) refresh(ctx context.Context, ex *extract.Extractor, res *Result, callsLeft int) (extract.Summary, error) {
	pol := h.o.Refresh
	rr := &res.Refresh
	b := h.o.Client.Budget()
	if h.o.MaxCalls <= 0 {
		callsLeft = -1
	}
	ceiling, skipped := refreshCalls(pol, b, callsLeft)
	if skipped != "" {
		rr.Skipped = skipped
		return extract.Summary{}, nil
	}
	limit := h.o.Query.Limit
	now := h.now().UTC()
	notAfter := pol.notAfter(now)
	planned := refreshWindows(h.st.Coverage, notAfter, now, ceiling, limit)
	if len(planned) == 0 {
		rr.Skipped = fmt.Sprintf("every covered range was verified less than %s ago", pol.MinAge)
		return extract.Summary{}, nil
	}
	calls := h.claimRefresh(len(planned), ceiling)
	if h.claiming {
		defer h.releaseRefresh()
	}
	if calls <= 0 {
		rr.Skipped = fmt.Sprintf("the spare calls of this hour are claimed by other runs of the key (%d left, %d reserved)", b.Remaining, pol.reserve())
		return extract.Summary{}, nil
	}
	h.refreshing = true
	defer func() { h.refreshing = false }()
	noWait := h.o.Client.NoWait
	h.o.Client.NoWait = true
	defer func() { h.o.Client.NoWait = noWait }()
	var total extract.Summary
	rr.Verified = true
	// Range after range, the least recently verified first, until the calls
	// are spent or nothing older than the refresh remains.
	for total.Calls < calls {
		ws, ok := pickRefresh(h.st.Coverage, notAfter, now, calls-total.Calls, limit)
		if !ok {
			break
		}
		w := extract.Window{From: ws[0].From, To: ws[len(ws)-1].To}
		h.log.Info("refresh starting", "range", w.String(), "windows", len(ws), "calls", calls-total.Calls)
		if h.o.Progress != nil {
			h.o.Progress.Refresh(w, len(ws))
		}
		rr.Ranges = append(rr.Ranges, w)
		p := extract.NewPlanner(limit, ws...)
		var sum extract.Summary
		for {
			var err error
			sum, err = ex.Run(ctx, p, h, calls-total.Calls)
			total.Windows += sum.Windows
			total.Rows += sum.Rows
			total.Calls += sum.Calls
			total.RateLimited += sum.RateLimited
			total.Elapsed += sum.Elapsed
			rr.Calls, rr.Changes = total.Calls, h.refreshed
			var rl *extract.RateLimitError
			switch {
			case errors.As(err, &rl):
				rr.Verified = false
				h.log.Info("refresh stopped: the hour's calls are spent", "resume_at", rl.ResumeAt.UTC().Format(time.RFC3339))
				return total, nil
			case err != nil:
				rr.Verified = false
				return total, err
			}
			// A window held more than its counts said and split: claim calls
			// for the rest, within what the run may spend.
			if len(p.Pending()) == 0 || sum.Calls == 0 || !h.claiming || total.Calls >= ceiling {
				break
			}
			more := h.claimRefresh(min(len(p.Pending()), ceiling-total.Calls), 0)
			if more <= 0 {
				break
			}
			calls = total.Calls + more
		}
		if len(p.Pending()) > 0 || sum.Calls == 0 {
			rr.Verified = rr.Verified && len(p.Pending()) == 0
			return total, nil
		}
	}
	if len(rr.Ranges) == 0 {
		rr.Verified = false
		rr.Skipped = fmt.Sprintf("every covered range was verified less than %s ago", pol.MinAge)
	}
	return total, nil
}

// pickRefresh chooses what a refresh of calls calls re-exports: the
// covered segment verified longest ago (and before notAfter), grown with
// touching segments on either side, the older first, that are about as old
// (verified before the midpoint between it and now), while they fit the
// calls. It returns the range as windows of touching segments expected to
// hold at most 90% of the limit each (the segments' row counts are known),
// so that each window is complete in one call, whatever order the API
// returns rows in; at most calls windows. Policy: least recently verified
// first, so every range comes round in turn, and a refresh never spends
// calls again on a range a recent one verified.
func pickRefresh(c load.Coverage, notAfter, now time.Time, calls, limit int) ([]extract.Window, bool) {
	first := -1
	for i, s := range c {
		if s.VerifiedAt.After(notAfter) {
			continue
		}
		if first < 0 || s.VerifiedAt.Before(c[first].VerifiedAt) {
			first = i
		}
	}
	if first < 0 {
		return nil, false
	}
	oldest := c[first].VerifiedAt
	aboutAsOld := oldest.Add(now.Sub(oldest) / 2)
	per := int64(float64(limit) * 0.9)
	budget := int64(calls) * per
	rows := c[first].Rows
	lo, hi := first, first
	fits := func(i int) bool {
		s := c[i]
		return !s.VerifiedAt.After(notAfter) && !s.VerifiedAt.After(aboutAsOld) && rows+s.Rows <= budget
	}
	for {
		before := lo > 0 && !c[lo].From.IsZero() && c[lo-1].To.Equal(c[lo].From) && fits(lo-1)
		after := hi+1 < len(c) && !c[hi].To.IsZero() && c[hi+1].From.Equal(c[hi].To) && fits(hi+1)
		switch {
		case before && (!after || !c[hi+1].VerifiedAt.Before(c[lo-1].VerifiedAt)):
			lo--
			rows += c[lo].Rows
		case after:
			hi++
			rows += c[hi].Rows
		default:
			var ws []extract.Window
			var n int64
			for i := lo; i <= hi; i++ {
				if k := len(ws); k > 0 && n+c[i].Rows <= per {
					ws[k-1].To, n = c[i].To, n+c[i].Rows
					continue
				}
				// A segment of at least a call's rows (counted when it was
				// exported in pieces, or grown since) goes in pieces of equal
				// time, so that each likely completes in one call.
				pieces := 1
				if c[i].Rows >= int64(limit) {
					pieces = int((c[i].Rows + per - 1) / per)
				}
				if pieces <= 1 || c[i].From.IsZero() || c[i].To.IsZero() {
					ws, n = append(ws, extract.Window{From: c[i].From, To: c[i].To}), c[i].Rows
					continue
				}
				step := c[i].To.Sub(c[i].From) / time.Duration(pieces)
				for k := range pieces {
					from, to := c[i].From.Add(time.Duration(k)*step).Truncate(time.Microsecond), c[i].To
					if k < pieces-1 {
						to = c[i].From.Add(time.Duration(k+1) * step).Truncate(time.Microsecond)
					}
					if to.After(from) {
						ws = append(ws, extract.Window{From: from, To: to})
					}
				}
				n = per // the next segment starts a window of its own
			}
			return ws[:min(len(ws), calls)], true
		}
	}
}

// canTellDeletions says whether a complete export of the stream proves
// that a stored contact it lacks is gone at the source, for every target
// (see TellsDeletions): not when a destination holds a stream last synced
// with another key, which may be another workspace's.
func canTellDeletions(ctx context.Context, targets []load.Target, streamID, identity string, key extract.APIKey, log *slog.Logger) (bool, error) {
	for _, t := range targets {
		streams, err := t.Streams(ctx)
		if err != nil {
			return false, err
		}
		streams = slices.DeleteFunc(streams, func(st load.StreamState) bool { return st.StreamID == streamID })
		if !TellsDeletions(identity, streams) {
			return false, nil
		}
		for _, st := range streams {
			if st.KeyFingerprint != "" && !MatchesKey(st.KeyFingerprint, key) {
				log.Warn("deletions are not tracked: the destination holds a stream synced with another API key, which may be another workspace's (if it is this workspace's, sync it once with --key-rotated)",
					"other_stream", st.StreamID)
				return false, nil
			}
		}
	}
	return true, nil
}

// TellsDeletions says whether the stream of identity can tell deletions in
// a destination holding streams (it among them or not): when it is the only
// one, or when it has no filter (no tag, no list) and every other stream
// reads the same API and workspace. A filtered stream's export lacks
// contacts that only left its filter, and another API's or workspace's
// contacts are not this one's to judge.
func TellsDeletions(identity string, streams []load.StreamState) bool {
	var me Identity
	if err := json.Unmarshal([]byte(identity), &me); err != nil {
		return false
	}
	me = me.Canonical()
	unfiltered := me.ListID == "" && len(me.Tags) == 0
	for _, st := range streams {
		if st.Identity == identity {
			continue
		}
		var other Identity
		if err := json.Unmarshal([]byte(st.Identity), &other); err != nil {
			return false
		}
		if other = other.Canonical(); !unfiltered || other.BaseURL != me.BaseURL || other.Workspace != me.Workspace {
			return false
		}
	}
	return true
}
