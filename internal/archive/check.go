package archive

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/leadlex/leadlex-etl/internal/extract"
)

// ClockSlack is how far the instants of one window may stray from the
// order a sync gives them (the run starts, the response comes, the window
// commits, and a refreshed range ended before its response came) before
// the metadata is taken for altered: a day, for a clock stepped back.
const ClockSlack = 24 * time.Hour

// MaxUntilAhead is how far after its start a run's range may end: sync
// refuses an --until more than a minute ahead, and the rest is the moments
// between that check and the run's start.
const MaxUntilAhead = 2 * time.Minute

var sha256Re = regexp.MustCompile(`^[0-9a-f]{64}$`)

// checkMeta checks that the fields of one window's metadata agree with
// each other as a sync writes them: the instants in order, the window and
// the ranges it names inside the run's range and before the response, the
// request the window's, no more rows than the limit, deletions only inside
// the window and never with rejected rows. The error names the field. (What only the body or the other windows can tell
// is the replay's to check.)
func checkMeta(m *Meta) error {
	if err := checkInstants(m); err != nil {
		return err
	}
	// A refresh re-exports a range earlier runs covered, which ended before
	// this response came; the other windows are the run's own.
	latest, of := m.RunUntil, "run_until"
	if m.Refresh {
		latest, of = m.ReceivedAt.Add(ClockSlack), "received_at"
	}
	if err := ends("window", m.Window, latest, of); err != nil {
		return err
	}
	for i, w := range m.Pending {
		if err := ends(fmt.Sprintf("pending[%d]", i), w, latest, of); err != nil {
			return err
		}
	}
	for i, w := range m.Deletes {
		if !within(w, m.Window) {
			return fmt.Errorf("deletes[%d] %s is not inside the window %s: a window tells deletions only in what it exported", i, w, m.Window)
		}
	}
	if err := checkRequest(m); err != nil {
		return err
	}
	switch {
	case m.Rows > int64(m.Query.Limit):
		return fmt.Errorf("rows %d is more than request.limit %d", m.Rows, m.Query.Limit)
	case m.Rejects > 0 && len(m.Deletes) > 0:
		return fmt.Errorf("deletes is set, but %d rows were rejected: a window with rejected rows tells no deletion", m.Rejects)
	}
	return nil
}

// checkInstants checks the run's and the window's instants: set, in the
// order a sync takes them, and the run's range ending when it started.
func checkInstants(m *Meta) error {
	switch {
	case m.RunStartedAt.IsZero() || m.ReceivedAt.IsZero() || m.RunUntil.IsZero():
		return errors.New("run_started_at, received_at and run_until must be set")
	case m.ReceivedAt.Before(m.RunStartedAt.Add(-ClockSlack)):
		return fmt.Errorf("received_at %s is before run_started_at %s", fmtTime(m.ReceivedAt), fmtTime(m.RunStartedAt))
	case m.LoadedAt.Before(m.ReceivedAt.Add(-ClockSlack)):
		return fmt.Errorf("loaded_at %s is before received_at %s", fmtTime(m.LoadedAt), fmtTime(m.ReceivedAt))
	case m.RunUntil.After(m.RunStartedAt.Add(MaxUntilAhead)):
		return fmt.Errorf("run_until %s is after the run started (run_started_at %s): no run exports contacts created after it", fmtTime(m.RunUntil), fmtTime(m.RunStartedAt))
	case !m.RunSince.IsZero() && !m.RunSince.Before(m.RunUntil):
		return fmt.Errorf("run_since %s is not before run_until %s", fmtTime(m.RunSince), fmtTime(m.RunUntil))
	}
	return nil
}

// checkRequest checks that the request asked for the window: each bound
// where the window's is, or at most extract.BoundSlack further out (what
// the planner sends lies in between).
func checkRequest(m *Meta) error {
	w, q := m.Window, m.Query
	lo, hi := w.From.Add(-extract.BoundSlack), w.To.Add(extract.BoundSlack)
	if w.From.IsZero() != q.CreatedAfter.IsZero() || (!w.From.IsZero() && (q.CreatedAfter.After(w.From) || q.CreatedAfter.Before(lo))) {
		return fmt.Errorf("request.created_after %q does not ask for the window %s", fmtTime(q.CreatedAfter), w)
	}
	if w.To.IsZero() != q.CreatedBefore.IsZero() || (!w.To.IsZero() && (q.CreatedBefore.Before(w.To) || q.CreatedBefore.After(hi))) {
		return fmt.Errorf("request.created_before %q does not ask for the window %s", fmtTime(q.CreatedBefore), w)
	}
	return nil
}

// ends checks that w ends, no later than latest (the field named of).
func ends(name string, w extract.Window, latest time.Time, of string) error {
	switch {
	case w.To.IsZero():
		return fmt.Errorf("%s %s has no end: every window a sync exports ends when its run started at the latest", name, w)
	case w.To.After(latest):
		return fmt.Errorf("%s %s ends after %s %s: no contact created then was exported", name, w, of, fmtTime(latest))
	}
	return nil
}

// within says whether w lies inside x (a zero From is the beginning of
// time, a zero To no end).
func within(w, x extract.Window) bool {
	starts := x.From.IsZero() || (!w.From.IsZero() && !w.From.Before(x.From))
	endsIn := x.To.IsZero() || (!w.To.IsZero() && !w.To.After(x.To))
	return starts && endsIn
}
