package pipeline

import (
	"encoding/json"
	"fmt"
	"math"
	"path"
	"slices"
	"time"

	"github.com/leadlex/leadlex-etl/internal/archive"
	"github.com/leadlex/leadlex-etl/internal/extract"
)

// checkEntries checks the archived windows of one stream against each
// other and against what the pipeline derives from them, before a replay
// loads any (the archive checks each file on its own): no window committed
// after now (the replay's clock, with archive.ClockSlack); the request's
// filters are the stream identity's; each run's windows share its start,
// range, limit and refresh age, have distinct sequence numbers in commit
// order, refresh only after the run's new data, and delete hard or soft
// alike; a window with fewer rows than the limit has no part pending, and
// its deletions are its complete part. The
// error is a *archive.CorruptError naming the metadata file and the field.
func checkEntries(arch *archive.Archive, entries []archive.Entry, identity string, now time.Time) error {
	var ident Identity
	if err := json.Unmarshal([]byte(identity), &ident); err != nil {
		return err
	}
	ident = ident.Canonical()
	runs := map[string]*archive.Entry{} // each run's last window so far
	for i := range entries {
		e := &entries[i]
		fail := func(format string, a ...any) error {
			return &archive.CorruptError{Path: path.Join(arch.Dir(), e.MetaPath()), Detail: fmt.Sprintf(format, a...)}
		}
		if e.LoadedAt.After(now.Add(archive.ClockSlack)) {
			return fail("loaded_at %s is after the replay's clock (%s): a window cannot have committed yet", fmtTime(e.LoadedAt, ""), fmtTime(now, ""))
		}
		if err := sameFilters(ident, e.Query); err != "" {
			return fail("%s", err)
		}
		if err := runAgrees(runs[e.RunID], e); err != "" {
			return fail("%s", err)
		}
		runs[e.RunID] = e
		if err := cutAsCounted(e); err != "" {
			return fail("%s", err)
		}
	}
	return nil
}

// sameFilters says how q's filters differ from the stream identity's, or "".
func sameFilters(ident Identity, q extract.Query) string {
	got := Identity{BaseURL: ident.BaseURL, ListID: q.ListID, Tags: q.Tags, Fields: q.Fields}.Canonical()
	switch {
	case got.ListID != ident.ListID:
		return fmt.Sprintf("request.list_id %q is not the stream identity's %q", q.ListID, ident.ListID)
	case !slices.Equal(got.Tags, ident.Tags):
		return fmt.Sprintf("request.tags %q are not the stream identity's %q", q.Tags, ident.Tags)
	case !slices.Equal(got.Fields, ident.Fields):
		return fmt.Sprintf("request.fields %q are not the stream identity's %q", q.Fields, ident.Fields)
	}
	return ""
}

// runAgrees says how window e disagrees with prev, the window of its run
// committed before it (nil: none), or "".
func runAgrees(prev, e *archive.Entry) string {
	if prev == nil {
		return ""
	}
	switch {
	case !e.RunStartedAt.Equal(prev.RunStartedAt):
		return fmt.Sprintf("run_started_at %s differs from the run's other windows' %s", fmtTime(e.RunStartedAt, ""), fmtTime(prev.RunStartedAt, ""))
	case !e.RunSince.Equal(prev.RunSince) || !e.RunUntil.Equal(prev.RunUntil):
		return fmt.Sprintf("run_since and run_until [%s, %s) differ from the run's other windows' [%s, %s)",
			fmtTime(e.RunSince, "the beginning"), fmtTime(e.RunUntil, ""), fmtTime(prev.RunSince, "the beginning"), fmtTime(prev.RunUntil, ""))
	case e.Query.Limit != prev.Query.Limit:
		return fmt.Sprintf("request.limit %d differs from the run's other windows' %d", e.Query.Limit, prev.Query.Limit)
	case e.RefreshMinAge != prev.RefreshMinAge:
		return fmt.Sprintf("refresh_min_age %s differs from the run's other windows' %s", e.RefreshMinAge, prev.RefreshMinAge)
	case e.Seq <= prev.Seq:
		return fmt.Sprintf("seq %d is not after %d, the seq of the run's window committed before it", e.Seq, prev.Seq)
	case prev.Refresh && !e.Refresh:
		return "refresh is not set, but the run's window before it was a refresh: a run refreshes after its new data, never before"
	case len(e.Deletes) > 0 && len(prev.Deletes) > 0 && e.HardDelete != prev.HardDelete:
		return fmt.Sprintf("hard_delete %v differs from the run's other windows' %v", e.HardDelete, prev.HardDelete)
	}
	return ""
}

// cutAsCounted says how e's pending windows and deletions disagree with its
// row count, or "": a response with fewer rows than the limit is complete,
// so no pending window overlaps the window (one with the limit's rows may
// be complete too, when its last rows lie beyond the window); the
// deletions, when there are any, are the window's complete part, as
// handler.advance derives them.
func cutAsCounted(e *archive.Entry) string {
	complete := subtract(e.Window, e.Pending)
	whole := sameWindows(complete, []extract.Window{e.Window})
	switch {
	case e.Rows < int64(e.Query.Limit) && !whole:
		return fmt.Sprintf("pending %s overlaps the window %s, whose %d rows (fewer than the limit %d) say it was exported completely",
			windowsText(e.Pending), e.Window, e.Rows, e.Query.Limit)
	case len(e.Deletes) > 0 && !sameWindows(e.Deletes, complete):
		return fmt.Sprintf("deletes %s are not the window's complete part %s", windowsText(e.Deletes), windowsText(complete))
	}
	return ""
}

// sameWindows says whether a and b are the same windows, in order.
func sameWindows(a, b []extract.Window) bool {
	return slices.EqualFunc(a, b, func(x, y extract.Window) bool { return x.From.Equal(y.From) && x.To.Equal(y.To) })
}

func windowsText(ws []extract.Window) string {
	if len(ws) == 0 {
		return "[]"
	}
	s := ""
	for i, w := range ws {
		if i > 0 {
			s += " "
		}
		s += w.String()
	}
	return s
}

// outsideWindow returns the first of times (Unix µs) outside w as the
// planner bounds a response's rows (extract.BoundSlack beyond the bounds
// the window's request asked, which lie up to a second outside the window),
// and whether there is one: no committed window held such a row.
func outsideWindow(times []int64, w extract.Window) (time.Time, bool) {
	q := w.Apply(extract.Query{})
	lo, hi := micros(q.CreatedAfter, math.MinInt64), micros(q.CreatedBefore, math.MaxInt64)
	if lo != math.MinInt64 {
		lo -= extract.BoundSlack.Microseconds()
	}
	if hi != math.MaxInt64 {
		hi += extract.BoundSlack.Microseconds()
	}
	for _, t := range times {
		if t < lo || t > hi {
			return time.UnixMicro(t).UTC(), true
		}
	}
	return time.Time{}, false
}
