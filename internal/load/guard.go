package load

import (
	"fmt"

	"github.com/leadlex/leadlex-etl/internal/extract"
)

// DeleteGuard is the rule a window's deletions are applied under, as
// rsync's --max-delete: a complete export that lacks many of the contacts
// stored for its range is more often a broken answer (an empty body, a
// gateway's error page read as CSV, another workspace's key) than a mass
// deletion at the source. Every destination applies it in Commit: a window
// whose deletions trip it commits nothing (neither its rows nor its
// deletions nor the stream state) and fails with a *DeleteGuardError, so
// what is stored stays as it is until the user confirms.
type DeleteGuard struct {
	// MaxRatio is the largest share of the live contacts stored in the
	// window's Deletes ranges (before the window) that it may mark or
	// remove; 0 turns the guard off (the zero WindowInfo), and so does 1.
	MaxRatio float64
	// Allowed is how many deletions never trip the guard, whatever their
	// share: what the run's allowance (a few deletions, so that small
	// ranges with a legitimate deletion or two do not trip it) has left.
	Allowed int64
}

// Trips says whether marking or removing deleted of the stored live
// contacts of a window's ranges breaks the rule.
func (g DeleteGuard) Trips(deleted, stored int64) bool {
	return g.on() && deleted > g.Allowed && float64(deleted) > g.MaxRatio*float64(stored)
}

func (g DeleteGuard) on() bool { return g.MaxRatio > 0 && g.MaxRatio < 1 }

// check returns the *DeleteGuardError of window info when deleted of stored
// contacts break its rule.
func (g DeleteGuard) check(info WindowInfo, deleted, stored int64) error {
	if !g.Trips(deleted, stored) {
		return nil
	}
	return &DeleteGuardError{Window: info.Window, Deleted: deleted, Stored: stored, MaxRatio: g.MaxRatio, Hard: info.HardDelete}
}

// DeleteGuardError is a window whose deletions the DeleteGuard held back:
// nothing of it was committed.
type DeleteGuardError struct {
	Window          extract.Window
	Deleted, Stored int64 // the deletions it would have made, of the live contacts stored for its ranges
	MaxRatio        float64
	Hard            bool // they were removals (hard deletes), not marks
}

func (e *DeleteGuardError) Error() string {
	verb := "mark"
	if e.Hard {
		verb = "remove"
	}
	share := 100.0
	if e.Stored > 0 {
		share = 100 * float64(e.Deleted) / float64(e.Stored)
	}
	return fmt.Sprintf("window %s: its complete export would %s %d of the %d contacts stored for its range as deleted (%.0f%%, more than the %g allowed), "+
		"so it was not applied: what is stored stays as it was", e.Window, verb, e.Deleted, e.Stored, share, e.MaxRatio)
}
