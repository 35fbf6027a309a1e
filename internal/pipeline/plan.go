package pipeline

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/load"
)

// PlanResult is what Plan predicts a sync with the same options would do.
type PlanResult struct {
	StreamID, Identity string
	NewStream          bool               // the destinations do not hold the stream yet
	Others             []load.StreamState // the destinations' other streams
	// NeedsConsent: sync would refuse to start the new stream without
	// Options.NewStream, next to streams that are not its siblings.
	NeedsConsent bool
	// Key is how the API key compares with the one the stream was last
	// synced with; NeedsKeyConsent: sync would refuse it, as maybe another
	// workspace's, without Options.KeyRotated or NewStream.
	Key             KeyCheck
	NeedsKeyConsent bool
	Since, Until    time.Time        // the range the new-data part covers
	Resume          bool             // it resumes an interrupted run's pending windows
	Windows         []extract.Window // the new-data part's windows before any split
	// Rows estimates the contacts the new-data part exports, from the
	// rows the stream's covered ranges held (RowsKnown false: nothing to go
	// by, as for a first export).
	Rows      int64
	RowsKnown bool
	Calls     int // expected calls of the new-data part: at least one a window
	// Refresh are the windows the rolling refresh would re-export, one
	// call each; RefreshSkipped says why there are none.
	Refresh        []extract.Window
	RefreshSkipped string
	Budget         extract.RateLimit // believed left before the run
	BudgetFrom     string            // where that belief comes from ("" unknown)
	TotalCalls     int
	// LastCallAt is when the last of TotalCalls can be made at the budget
	// (10 calls an hour unless the API said otherwise); zero: now.
	LastCallAt time.Time
}

// Plan works out, from the destinations' state and the budget saved for
// the key, what Sync with the same options would do, without an API call.
func Plan(ctx context.Context, o Options) (PlanResult, error) {
	now, log := clockAndLog(o.Now, o.Logger)
	start := now().UTC()
	pr, err := prepare(ctx, &o, start, log)
	if err != nil {
		return PlanResult{}, err
	}
	limit := o.Query.Limit
	if limit <= 0 {
		limit = extract.MaxLimit
	}
	p := PlanResult{StreamID: pr.streamID, Identity: pr.identity, NewStream: !pr.found, Others: pr.others, NeedsConsent: pr.needsConsent(&o),
		Key: pr.key, NeedsKeyConsent: pr.key == KeyDiffers && !o.KeyRotated,
		Since: pr.runSince, Until: pr.runUntil, Resume: len(pr.st.Pending) > 0, Windows: pr.windows,
		Budget: o.Client.Budget(), BudgetFrom: pr.budgetFrom}
	p.RowsKnown = true
	for _, w := range pr.windows {
		rows, known := estimateRows(pr.st.Coverage, pr.st.Cursor(), w)
		p.Rows += rows
		p.RowsKnown = p.RowsKnown && known
		p.Calls += max(1, int(math.Ceil(float64(rows)/float64(limit))))
	}
	// The refresh, after the new data: the calls the budget then leaves.
	cov := pr.st.Coverage
	for _, w := range pr.windows {
		cov = cov.Add(load.Segment{From: w.From, To: w.To, VerifiedAt: start})
	}
	p.Refresh, p.RefreshSkipped = planRefresh(&o, pr, cov, p.Budget, p.Calls, start, limit)
	p.TotalCalls = p.Calls + len(p.Refresh)
	if o.MaxCalls > 0 {
		// The run stops there, as Sync's extractor does.
		p.TotalCalls = min(p.TotalCalls, o.MaxCalls)
	}
	p.LastCallAt = lastCallAt(p.TotalCalls, p.Budget, start)
	return p, nil
}

// planRefresh is what the refresh of a sync of o would re-export of
// coverage cov after newCalls calls of new data, with the budget b believed
// left before them, and why nothing when nothing: Sync's rule
// (refreshCalls, refreshWindows), and its claim in the shared budget file,
// less what other runs of the key have claimed there.
func planRefresh(o *Options, pr *prepared, cov load.Coverage, b extract.RateLimit, newCalls int, start time.Time, limit int) ([]extract.Window, string) {
	pol := o.Refresh
	after := b
	after.Remaining -= newCalls
	left := -1
	if o.MaxCalls > 0 {
		left = o.MaxCalls - newCalls
	}
	calls, skipped := refreshCalls(pol, after, left)
	switch {
	case skipped != "" && pol.Calls == RefreshAuto && !b.Known:
		return nil, "the calls left this hour are not known yet (the first call tells)"
	case skipped != "":
		return nil, skipped
	}
	notAfter := pol.notAfter(start)
	planned := refreshWindows(cov, notAfter, start, calls, limit)
	if len(planned) == 0 {
		return nil, "every covered range was verified less than " + pol.MinAge.String() + " ago"
	}
	if o.Budgets == nil || !after.Known {
		return planned, ""
	}
	claimed, err := o.Budgets.Claimed(pr.budgetKey)
	if err != nil {
		return planned, ""
	}
	granted := min(len(planned), after.Remaining-pol.reserve()-claimed)
	if granted <= 0 {
		return nil, fmt.Sprintf("the spare calls of this hour are claimed by other runs of the key (%d left, %d reserved)", after.Remaining, pol.reserve())
	}
	return refreshWindows(cov, notAfter, start, granted, limit), ""
}

// estimateRows estimates the contacts of w from coverage: the rows of the
// segments it overlaps, shared out by time, and for the parts no segment
// covers the rate of the most recent covered segments. known is false when
// a part no segment covers cannot be judged by that rate: a part with no
// bound, one before frontier, where the synced history ends (a gap a
// backfill left, or the rest of a first export: their density is not the
// recent one), one longer than the time the rate was measured over, or no
// rate at all (a first export).
func estimateRows(c load.Coverage, frontier time.Time, w extract.Window) (rows int64, known bool) {
	wl, wh := micros(w.From, math.MinInt64), micros(w.To, math.MaxInt64)
	var covered float64
	segs := make([]extract.Window, 0, len(c))
	for _, s := range c {
		segs = append(segs, extract.Window{From: s.From, To: s.To})
		sl, sh := micros(s.From, math.MinInt64), micros(s.To, math.MaxInt64)
		l, h := max(sl, wl), min(sh, wh)
		switch {
		case l >= h:
		case sl == math.MinInt64 || sh == math.MaxInt64 || (l == sl && h == sh):
			covered += float64(s.Rows)
		default:
			covered += float64(s.Rows) * float64(h-l) / float64(sh-sl)
		}
	}
	// The rate of the most recent bounded segments, over up to 30 days.
	var rateRows float64
	var rateSpan int64
	for i := len(c) - 1; i >= 0 && rateSpan < int64(30*24*time.Hour/time.Microsecond); i-- {
		if s := c[i]; !s.From.IsZero() && !s.To.IsZero() {
			rateRows += float64(s.Rows)
			rateSpan += micros(s.To, 0) - micros(s.From, 0)
		}
	}
	end := micros(frontier, math.MinInt64)
	known = true
	for _, part := range subtract(w, segs) {
		span := micros(part.To, 0) - micros(part.From, 0)
		if part.From.IsZero() || part.To.IsZero() || rateSpan <= 0 || micros(part.From, 0) < end || span > rateSpan {
			known = false
			continue
		}
		covered += rateRows * float64(span) / float64(rateSpan)
	}
	return int64(math.Round(covered)), known
}

// lastCallAt is when the last of calls calls can be made at the budget b:
// the calls left now, then a full budget each reset (an hour apart).
func lastCallAt(calls int, b extract.RateLimit, now time.Time) time.Time {
	perHour := 10
	if b.Known && b.Limit > 0 {
		perHour = b.Limit
	}
	left, reset := perHour, now.Add(time.Hour)
	if b.Known {
		left, reset = max(b.Remaining, 0), b.Reset
	}
	if calls <= left {
		return time.Time{}
	}
	hours := (calls - left + perHour - 1) / perHour
	return reset.Add(time.Duration(hours-1) * time.Hour)
}
