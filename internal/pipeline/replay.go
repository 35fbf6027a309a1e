package pipeline

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/leadlex/leadlex-etl/internal/archive"
	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/load"
	"github.com/leadlex/leadlex-etl/internal/transform"
	"github.com/leadlex/leadlex-etl/schemas"
)

// ReplayOptions configures a replay: the raw archive's windows of one
// stream loaded into destinations, with no API call.
type ReplayOptions struct {
	Archive *archive.Archive
	// StreamID picks the stream to replay; "" takes the archive's only one.
	StreamID string
	// Targets receive every window, as a sync's do. None may hold the
	// stream already: a replay rebuilds, it does not merge.
	Targets []load.Target
	// Transform's Alloc and BatchRows are used. The reject limits are not:
	// every archived window committed once, with its rejects.
	Transform transform.Options
	Logger    *slog.Logger
	// Now is the clock of the replay's own run record (nil: time.Now).
	Now func() time.Time
	// GroupRows: destinations that can (load.Grouper: DuckDB) commit the
	// windows in groups of about this many rows, with one INSERT each, held
	// in memory until then (a replay of 1M contacts peaked at about 800 MB,
	// 400 MB window by window). 0 means DefaultReplayGroupRows; less than 0,
	// window by window.
	GroupRows int64
}

// DefaultReplayGroupRows is how many rows a replay commits to DuckDB at
// once: one INSERT of the million rows of 21 windows took 1.2 to 1.5 s, 21
// INSERTs and commits 2.5 s (the same Arrow batches, 2026-11-27); 2^19
// rows made a replay of 1M contacts 2.85 s instead of 2.5 s, 2^18 3.7 s.
const DefaultReplayGroupRows = 1 << 20

// ReplayResult says what a replay did.
type ReplayResult struct {
	StreamID string
	Identity string
	RunID    string // the replay's run record
	Windows  int
	Rows     int64 // data rows of the bodies, duplicates at window edges included
	Rejects  int64
	Changes  load.Changes
	Coverage load.Coverage    // the stream's synced ranges after the replay
	Pending  []extract.Window // windows the last archived run had left to do
	// Resumed is how many of the archived windows every destination held
	// already (an interrupted replay of the archive committed them): the
	// replay went on after them.
	Resumed int
	// CanDelete says the destinations let the stream tell deletions, as a
	// sync of it into them would (see TellsDeletions): the archived
	// deletions are applied only then.
	CanDelete bool
	// UnappliedDeletes counts the replayed windows whose archived deletions
	// were not applied, as CanDelete is false.
	UnappliedDeletes int
	Elapsed          time.Duration
}

// StreamChoiceError says the raw archive holds windows of several streams
// and none was chosen, or not one it holds.
type StreamChoiceError struct {
	Dir     string
	Wanted  string // "" when none was chosen
	Streams []archive.Stream
}

func (e *StreamChoiceError) Error() string {
	var b strings.Builder
	for i, s := range e.Streams {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s (%d windows, %s)", s.ID, s.Windows, s.Identity)
	}
	switch {
	case len(e.Streams) == 0:
		return fmt.Sprintf("raw dir %s holds no archived window", e.Dir)
	case e.Wanted != "":
		return fmt.Sprintf("raw dir %s holds no window of stream %q; it holds %s", e.Dir, e.Wanted, b.String())
	}
	return fmt.Sprintf("raw dir %s holds windows of %d streams: %s; choose one", e.Dir, len(e.Streams), b.String())
}

// Replay rebuilds destinations from the raw archive, with no API call: it
// reads the archived windows of one stream in the order they committed,
// streams each body through the transform into the targets, and commits
// each with the request id, the commit time, the pending windows and the
// deletions it committed with the first time, through the handler a sync
// uses. The contacts then equal the original destination's, lineage
// included (_loaded_at and _deleted_at are the original commits' times),
// and so does the stream's coverage when the archive holds the stream's
// whole history. Before loading anything it reads and cross-checks every
// window's metadata (checkEntries) and checks each body's size; a body
// that does not decompress or holds other rows than archived fails its
// window (a *archive.CorruptError naming the file) and the replay stops
// there: the windows before it stay committed. A destination that holds
// the stream as a replay of this archive left it after some window (an
// interrupted one) is resumed after that window (see heldWindows); one
// that holds it otherwise is refused (*StreamHeldError). A cancelled ctx
// stops the replay between two windows, with context.Cause's error.
func Replay(ctx context.Context, o ReplayOptions) (res ReplayResult, err error) {
	now, log := clockAndLog(o.Now, o.Logger)
	start := now().UTC()
	if len(o.Targets) == 0 {
		return res, errors.New("no destination")
	}
	id, err := chooseStream(o.Archive, o.StreamID)
	if err != nil {
		return res, err
	}
	entries, identity, err := replayEntries(o.Archive, id, start, log)
	if err != nil {
		return res, err
	}
	res = ReplayResult{StreamID: id, Identity: identity, RunID: newRunID(start)}
	held, st, err := heldWindows(ctx, &o, entries, id, identity)
	if err != nil {
		return res, err
	}
	res.Resumed = slices.Min(held)
	if res.Resumed == len(entries) {
		log.Info("the destinations already hold every archived window of the stream: nothing to replay", "stream", id, "windows", len(entries))
		return res, nil
	}
	log = log.With("stream", id, "run", res.RunID)
	// Deletions are told by the rule a sync into these destinations would
	// follow now, whatever the archived run's destinations allowed.
	// A replay has no API key: a destination's other stream that recorded
	// one may be another workspace's, so it tells no deletion there.
	if res.CanDelete, err = canTellDeletions(ctx, o.Targets, id, identity, extract.APIKey{}, log); err != nil {
		return res, err
	}
	if !res.CanDelete {
		res.UnappliedDeletes = countDeletes(entries[res.Resumed:])
	}
	if res.UnappliedDeletes > 0 {
		log.Warn("a destination holds other streams that this stream's complete exports cannot judge, so a sync of it would tell no deletion there: the archived deletions are not applied")
	}
	run := load.Run{RunID: res.RunID, StreamID: id, StartedAt: start, Status: load.RunRunning}
	for _, t := range o.Targets {
		if err := t.StartRun(ctx, run); err != nil {
			return res, err
		}
	}
	log.Info("replay starting", "raw_dir", o.Archive.Dir(), "windows", len(entries), "identity", identity, "resuming_after", res.Resumed)
	groupRows := o.GroupRows
	if groupRows == 0 {
		groupRows = DefaultReplayGroupRows
	}
	var groupers []load.Grouper
	for _, t := range o.Targets {
		if g, ok := t.(load.Grouper); ok && groupRows > 0 {
			g.GroupCommits(groupRows)
			groupers = append(groupers, g)
		}
	}

	h := newReplayer(o.Transform, st, log)
	err = h.replayFrom(ctx, o.Archive, o.Targets, entries, held, res.CanDelete, &res)
	// The windows of open groups commit now, before the run record (which
	// commits them otherwise, after a failed window).
	for _, g := range groupers {
		if err == nil {
			err = g.Flush(ctx)
		}
		g.GroupCommits(0)
	}
	res.Changes, res.Rejects = h.changes, h.rejects
	res.Coverage, res.Pending = h.st.Coverage, h.st.Pending
	res.Elapsed = time.Since(start)
	if err == nil && stateDigest(h.st) != entries[len(entries)-1].StateAfter {
		log.Warn("the replayed stream state differs from what the last archived window committed: the archive does not hold the stream's whole history (was --raw-dir added later?), so the next sync may export some ranges again")
	}

	run.FinishedAt, run.Windows, run.Rows, run.Rejects = now().UTC(), res.Windows, res.Rows, res.Rejects
	run.Changes, run.RequestIDs = h.changes, h.requestIDs
	run.Status, run.Error = runStatus(err, true)
	bg := context.WithoutCancel(ctx)
	var finishErr error
	for _, t := range o.Targets {
		finishErr = errors.Join(finishErr, t.FinishRun(bg, run))
	}
	if err != nil {
		return res, err
	}
	log.Info("replay done", "windows", res.Windows, "rows", res.Rows, "elapsed", res.Elapsed.Round(time.Millisecond).String())
	return res, finishErr
}

// chooseStream returns the stream to replay: wanted, which the archive must
// hold, or its only one.
func chooseStream(arch *archive.Archive, wanted string) (string, error) {
	streams, err := arch.Streams()
	if err != nil {
		return "", err
	}
	switch {
	case wanted != "":
		for _, s := range streams {
			if s.ID == wanted {
				return wanted, nil
			}
		}
		return "", &StreamChoiceError{Dir: arch.Dir(), Wanted: wanted, Streams: streams}
	case len(streams) == 1:
		return streams[0].ID, nil
	}
	return "", &StreamChoiceError{Dir: arch.Dir(), Streams: streams}
}

// replayEntries reads and checks the stream's archived windows and returns
// them with the stream's identity.
func replayEntries(arch *archive.Archive, id string, now time.Time, log *slog.Logger) ([]archive.Entry, string, error) {
	entries, err := arch.Entries(id)
	if err != nil {
		return nil, "", err
	}
	identity := entries[0].Identity
	same, err := checkIdentity(id, identity)
	if err != nil {
		return nil, "", &archive.CorruptError{Path: path.Join(arch.Dir(), entries[0].MetaPath()), Detail: err.Error()}
	}
	if !same {
		log.Warn("this version derives another stream id from the archived identity (it was written by another version): the replayed state keeps the archived id, which a sync of this version may not find",
			"stream", id, "identity", identity)
	}
	for _, e := range entries {
		if e.Identity != identity {
			return nil, "", &archive.CorruptError{Path: path.Join(arch.Dir(), e.MetaPath()),
				Detail: fmt.Sprintf("stream identity %s differs from the stream's first window's %s", e.Identity, identity)}
		}
	}
	return entries, identity, checkEntries(arch, entries, identity, now)
}

// replayer is a handler that replays archived windows. Its clock is the
// archived commit's: rows, deletions and coverage get the times the
// original run gave them.
type replayer struct {
	*handler
	at time.Time // the LoadedAt of the window in hand
}

// newReplayer returns a replayer that goes on from state st, with no
// target yet.
func newReplayer(topts transform.Options, st load.StreamState, log *slog.Logger) *replayer {
	ho := &Options{Transform: topts, Logger: log}
	// Every archived window committed once, rejects and all.
	ho.Transform.MaxRejectRatio = 2
	r := &replayer{}
	r.handler = &handler{o: ho, st: st, log: log, now: func() time.Time { return r.at }}
	return r
}

// enter sets what the handler knows of the run and request of e, the
// window in hand.
func (r *replayer) enter(e archive.Entry) {
	r.at = e.LoadedAt
	r.runID, r.runSince, r.runUntil, r.refreshing = e.RunID, e.RunSince, e.RunUntil, e.Refresh
	r.o.Query = extract.Query{Limit: e.Query.Limit, ListID: e.Query.ListID, Tags: e.Query.Tags, Fields: e.Query.Fields}
	r.o.Refresh.MinAge, r.o.HardDelete = e.RefreshMinAge, e.HardDelete
	// Where the stream's history starts, and its key's fingerprint, as the
	// window committed them.
	r.st.Start, r.st.KeyFingerprint = e.HistoryStart, e.KeyFingerprint
}

// advanceOnly moves the stream state on by a window read ahead, as
// replaying it would, and commits nothing.
func (r *replayer) advanceOnly(ra *readAhead) {
	r.enter(ra.e)
	r.times, r.rejected, r.rows = ra.tally.Times, ra.rejects, ra.rows
	r.advance(ra.e.Window, ra.e.Pending)
}

// replayFrom replays entries into targets, where target i already holds
// the first held[i] of them, from the first window one of them lacks: each
// window goes to the targets that lack it. It counts what it did in res,
// and stops between two windows when ctx ends.
func (r *replayer) replayFrom(ctx context.Context, arch *archive.Archive, targets []load.Target, entries []archive.Entry, held []int, canDelete bool, res *ReplayResult) error {
	first := slices.Min(held)
	// The next window is decompressed and transformed while the targets
	// commit this one.
	rctx, stop := context.WithCancel(ctx)
	ahead := readAheadWindows(rctx, arch, entries[first:], r.o.Transform)
	defer func() {
		stop()
		for ra := range ahead {
			ra.release()
		}
	}()
	i := first
	for ra := range ahead {
		if ctx.Err() != nil {
			ra.release()
			return context.Cause(ctx)
		}
		r.o.Targets = r.o.Targets[:0]
		for t, n := range held {
			if n <= i {
				r.o.Targets = append(r.o.Targets, targets[t])
			}
		}
		// The window in hand commits even if ctx ends meanwhile.
		err := r.replayWindow(context.WithoutCancel(ctx), ra, canDelete)
		ra.release()
		if err != nil {
			return err
		}
		res.Windows++
		res.Rows += r.rows
		i++
	}
	if i < len(entries) {
		// The read-ahead stops early only when ctx ends.
		return cmp.Or(context.Cause(ctx), errors.New("internal error: the archived windows stopped coming"))
	}
	return nil
}

// replayWindow loads one archived window, read ahead, through the
// handler into its targets, as the original run did: same state rules, then the archived
// deletions if canDelete.
func (r *replayer) replayWindow(ctx context.Context, ra *readAhead, canDelete bool) error {
	if ra.err != nil {
		return ra.err
	}
	e := ra.e
	r.enter(e)
	if _, err := r.load(ctx, e.Window, e.RequestID, ra); err != nil {
		return fmt.Errorf("replay %s: %w", ra.file, err)
	}
	info := r.advance(e.Window, e.Pending)
	// The window's deletions as the original run applied them, where the
	// destinations let the stream tell them.
	info.Deletes, info.HardDelete = nil, false
	if canDelete {
		info.Deletes, info.HardDelete = e.Deletes, e.HardDelete
		// The deletion guard the window passed when it was synced.
		info.DeleteGuard = load.DeleteGuard{MaxRatio: e.MaxDeleteRatio, Allowed: e.DeletesAllowed}
	}
	stats := load.WindowStats{Rows: r.rows, Rejects: int64(len(r.rejected)), Calls: e.Calls}
	if _, err := r.commitTargets(ctx, e.Window, info, stats, len(e.Pending)); err != nil {
		return fmt.Errorf("replay %s: commit window %s: %w", ra.file, e.Window, err)
	}
	return nil
}

// countDeletes counts the archived windows that told deletions.
func countDeletes(entries []archive.Entry) int {
	n := 0
	for _, e := range entries {
		if len(e.Deletes) > 0 {
			n++
		}
	}
	return n
}

// readAhead is an archived window read, checked and transformed ahead of
// loading: its batches, retained, and what the transform said of them. It
// implements batches for handler.load.
type readAhead struct {
	e       archive.Entry
	file    string
	err     error // the window is unusable: nothing of it may load
	cols    []schemas.Column
	ignored []string
	bs      []arrow.RecordBatch
	next    int
	rows    int64
	rejects []transform.Reject
	tally   extract.Tally
}

func (ra *readAhead) Columns() []schemas.Column { return ra.cols }
func (ra *readAhead) Ignored() []string         { return ra.ignored }
func (ra *readAhead) Next() bool {
	if ra.next >= len(ra.bs) {
		return false
	}
	ra.next++
	return true
}
func (ra *readAhead) RecordBatch() arrow.RecordBatch { return ra.bs[ra.next-1] }
func (ra *readAhead) Err() error                     { return nil }
func (ra *readAhead) Rows() int64                    { return ra.rows }
func (ra *readAhead) Rejects() []transform.Reject    { return ra.rejects }
func (ra *readAhead) Tally() extract.Tally           { return ra.tally }

func (ra *readAhead) release() {
	for _, b := range ra.bs {
		b.Release()
	}
	ra.bs = nil
}

// readAheadWindows reads the entries' bodies in order, one window ahead of
// the caller, until the last, the first that fails (which it sends, with
// its error), or ctx's end. The caller releases every window it receives,
// and after cancelling ctx drains the channel.
func readAheadWindows(ctx context.Context, arch *archive.Archive, entries []archive.Entry, topts transform.Options) <-chan *readAhead {
	ch := make(chan *readAhead, 1)
	go func() {
		defer close(ch)
		for _, e := range entries {
			ra := readWindow(arch, e, transformOptions(topts, e.RequestID, e.Query))
			select {
			case ch <- ra:
			case <-ctx.Done():
				ra.release()
				return
			}
			if ra.err != nil {
				return
			}
		}
	}()
	return ch
}

// readWindow reads and transforms one archived body, checking that it is
// whole: it decompresses, holds the bytes archived (and their SHA-256),
// the rows and rejects the original run counted, and no row created
// outside its window.
func readWindow(arch *archive.Archive, e archive.Entry, topts transform.Options) *readAhead {
	ra := &readAhead{e: e, file: path.Join(arch.Dir(), e.Path)}
	fail := func(err error) *readAhead {
		ra.release()
		ra.err = err
		return ra
	}
	body, err := arch.Open(e)
	if err != nil {
		return fail(err)
	}
	defer body.Close()
	rd, err := transform.NewReader(body, topts)
	if err != nil {
		if errors.Is(err, archive.ErrCorrupt) {
			return fail(err)
		}
		return fail(&archive.CorruptError{Path: ra.file, Detail: err.Error()})
	}
	defer rd.Release()
	for rd.Next() {
		b := rd.RecordBatch()
		b.Retain()
		ra.bs = append(ra.bs, b)
	}
	if err := rd.Err(); err != nil {
		if errors.Is(err, archive.ErrCorrupt) {
			return fail(err)
		}
		return fail(&archive.CorruptError{Path: ra.file, Detail: err.Error()})
	}
	// The transform read to the end; reading on checks the size.
	if n, err := io.Copy(io.Discard, body); err != nil || n > 0 {
		if err == nil {
			err = &archive.CorruptError{Path: ra.file, Detail: "the CSV ends before the body does"}
		}
		return fail(err)
	}
	ra.cols, ra.ignored, ra.rows, ra.rejects, ra.tally = rd.Columns(), rd.Ignored(), rd.Rows(), rd.Rejects(), rd.Tally()
	if int64(ra.tally.Rows) != e.Rows || int64(len(ra.rejects)) != e.Rejects {
		return fail(&archive.CorruptError{Path: ra.file,
			Detail: fmt.Sprintf("holds %d rows (%d rejected), but %d (%d rejected) were archived", ra.tally.Rows, len(ra.rejects), e.Rows, e.Rejects)})
	}
	if at, ok := outsideWindow(ra.tally.Times, e.Window); ok {
		return fail(&archive.CorruptError{Path: ra.file,
			Detail: fmt.Sprintf("holds a contact created at %s, outside its window %s, where no sync commits one: not this window's body, or altered", at.Format(time.RFC3339Nano), e.Window)})
	}
	return ra
}

// checkIdentity checks that identity is a stream identity, and reports
// whether this version derives the id id from it.
func checkIdentity(id, identity string) (bool, error) {
	var ident Identity
	dec := json.NewDecoder(strings.NewReader(identity))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ident); err != nil || ident.BaseURL == "" {
		return false, fmt.Errorf("stream identity %q not understood (%v)", identity, err)
	}
	got, canon := ident.ID()
	return got == id && canon == identity, nil
}

// stateDigest is a short hash of what a window commits of the stream state
// (coverage, pending windows and the range they belong to), to the
// microsecond as destinations keep instants. A sync compares the digest the
// archive kept of a killed run's last window with the destinations' state
// to learn whether that window committed.
func stateDigest(st load.StreamState) string {
	var b strings.Builder
	us := func(t time.Time) {
		if !t.IsZero() {
			b.WriteString(strconv.FormatInt(t.UnixMicro(), 10))
		}
		b.WriteByte(',')
	}
	b.WriteString("coverage:")
	for _, s := range st.Coverage {
		us(s.From)
		us(s.To)
		us(s.VerifiedAt)
		b.WriteString(strconv.FormatInt(s.Rows, 10))
		b.WriteByte(';')
	}
	b.WriteString("pending:")
	for _, w := range st.Pending {
		us(w.From)
		us(w.To)
		b.WriteByte(';')
	}
	b.WriteString("range:")
	us(st.PendingSince)
	us(st.PendingUntil)
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:16])
}

// settleArchive takes out of the raw archive the last window of a run that
// was killed after archiving it and before any destination committed it,
// so that the archive holds exactly what the destinations committed. It
// knows that window for certain only when no destination's state is the
// one the window committed and the last run any destination recorded of
// the stream is the window's run (nothing moved the state on since); in
// any other case the window stays. It also removes stale temporary files.
// A raw archive it cannot read is logged, not fatal: the sync goes on.
func settleArchive(ctx context.Context, arch *archive.Archive, targets []load.Target, streamID, identity string, now time.Time, log *slog.Logger) error {
	if err := arch.Clean(streamID, now); err != nil {
		log.Warn("the raw archive could not be cleaned", "raw_dir", arch.Dir(), "err", err.Error())
	}
	last, ok, err := arch.Latest(streamID)
	if err != nil {
		log.Warn("the raw archive's newest window could not be read; it stays as it is", "err", err.Error())
		return nil
	}
	if !ok {
		return nil
	}
	for _, t := range targets {
		st, err := t.LoadState(ctx, streamID, identity)
		if err != nil {
			return err
		}
		if stateDigest(st) == last.StateAfter {
			return nil // committed
		}
	}
	for _, t := range targets {
		runs, err := t.Runs(ctx, 500)
		if err != nil {
			return err
		}
		newest := ""
		for _, r := range runs {
			if r.StreamID == streamID {
				newest = r.RunID
				break
			}
		}
		if newest != last.RunID {
			return nil // the state may have moved on since: keep it
		}
	}
	file := path.Join(arch.Dir(), last.Path)
	if err := arch.Remove(last); err != nil {
		log.Warn("a window no destination committed stays in the raw archive", "file", file, "err", err.Error())
		return nil
	}
	log.Warn("removed from the raw archive a window that no destination committed (its run was stopped between archiving and committing it)",
		"file", file, "run", last.RunID, "request_id", last.RequestID)
	return nil
}
