package pipeline

import (
	"fmt"
	"time"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/load"
)

// believed says whether a budget an earlier run saved says something at
// start: its reset is ahead, and no further than an answer of the API could
// have put it (extract.MaxResetAhead). A reset beyond is no answer's (a
// clock that stepped back, a hostile file or table) and is not believed,
// rather than capped: capped, it would stop every run for the cap again.
func believed(b extract.RateLimit, start time.Time) bool {
	return b.Known && b.Reset.After(start) && !b.Reset.After(start.Add(extract.MaxResetAhead))
}

// sameBudget says whether a and b say the same.
func sameBudget(a, b extract.RateLimit) bool {
	return a.Known == b.Known && a.Limit == b.Limit && a.Remaining == b.Remaining && a.Reset.Equal(b.Reset)
}

// budgetNews says whether b, a run's latest answer, tells the other runs of
// the key something they must know at once, rather than at the run's end,
// when the shared file holds shared: the first word of an hour, another
// limit, a new hour (more calls left than shared), or that the hour's calls
// are spent. Each answer of a run changes the calls left; writing the file
// at each would cost every window a read and a write of it. Runs that
// refresh claim their calls (SharedBudget.Claim), with their own latest
// answer, so they do not depend on the count in between.
func budgetNews(shared, b extract.RateLimit) bool {
	switch {
	case !b.Known:
		return false
	case !shared.Known, b.Limit != shared.Limit, b.Remaining > shared.Remaining:
		return true
	}
	return b.Remaining == 0 && shared.Remaining > 0
}

// noteBudget takes in what the client last heard of the budget, and when:
// by the machine's clock, the client's and the shared file's, not the run's
// (Options.Now).
func (h *handler) noteBudget() {
	if b := h.o.Client.Budget(); !sameBudget(b, h.heard) {
		h.heard, h.heardAt = b, time.Now()
	}
}

// shareBudget, after a committed window, saves the client's latest answer
// where every run on the machine reads it, when it is news to them
// (budgetNews).
func (h *handler) shareBudget() {
	h.noteBudget()
	if !h.heardAt.IsZero() && budgetNews(h.shared, h.heard) {
		h.saveBudget()
	}
}

// flushBudget, at the end of a run, saves the client's latest answer when
// the shared file may not hold it. A run that heard no answer saves
// nothing: what it started from is not news.
func (h *handler) flushBudget() {
	h.noteBudget()
	if !h.heardAt.IsZero() && h.heard.Known && !sameBudget(h.heard, h.shared) {
		h.saveBudget()
	}
}

func (h *handler) saveBudget() {
	if h.o.Budgets == nil {
		return
	}
	if err := h.o.Budgets.Save(h.budgetKey, h.heard, h.heardAt); err != nil {
		h.warnBudget("the shared rate-limit budget could not be saved", err)
		return
	}
	h.shared = h.heard
}

// warnBudget logs a failure of the shared budget file, once a run: the
// budget is a hint, the run goes on without it.
func (h *handler) warnBudget(msg string, err error) {
	if !h.budgetWarned {
		h.budgetWarned = true
		h.log.Warn(msg, "err", err.Error())
	}
}

// claimRefresh claims want calls of the hour for the refresh in the shared
// budget file, with the client's latest answer, and returns how many the
// refresh may spend: want, less the reserve and what other runs of the key
// claimed. Without the file, or when it fails, it returns fallback.
func (h *handler) claimRefresh(want, fallback int) int {
	if h.o.Budgets == nil {
		return fallback
	}
	heard := h.answer()
	n, err := h.o.Budgets.Claim(h.budgetKey, h.runID, want, h.o.Refresh.reserve(), heard, h.heardAt)
	if err != nil {
		h.warnBudget("the refresh could not claim its calls in the shared rate-limit budget", err)
		return fallback
	}
	h.claiming = true
	if heard.Known {
		h.shared = heard
	}
	h.log.Info("refresh calls claimed in the shared rate-limit budget", "wanted", want, "granted", n)
	return n
}

// releaseRefresh gives back the calls the refresh claimed and did not
// spend, saving the client's latest answer with it: released before the
// file knows of the calls spent, they would seem free to another run.
func (h *handler) releaseRefresh() {
	heard := h.answer()
	if err := h.o.Budgets.Release(h.budgetKey, h.runID, heard, h.heardAt); err != nil {
		h.warnBudget("the refresh could not release its calls in the shared rate-limit budget", err)
	} else if heard.Known {
		h.shared = heard
	}
	h.claiming = false
}

// answer is the client's latest answer of the run (not Known: none yet).
func (h *handler) answer() extract.RateLimit {
	h.noteBudget()
	if h.heardAt.IsZero() {
		return extract.RateLimit{} // what the run started from, not an answer
	}
	return h.heard
}

// reserve is what a refresh leaves of the hour's calls to other users of the
// key: ReserveCalls with RefreshAuto; none when Calls names a number.
func (pol RefreshPolicy) reserve() int {
	if pol.Calls == RefreshAuto {
		return pol.ReserveCalls
	}
	return 0
}

// notAfter is the latest verification a refresh at now re-exports: a range
// verified since is younger than MinAge.
func (pol RefreshPolicy) notAfter(now time.Time) time.Time {
	return now.Add(-pol.MinAge)
}

// refreshCalls is the most calls a refresh under pol may spend with the
// budget b believed left, and left calls the run may still make (negative:
// no cap), or why it may spend none. Sync and Plan both decide with it.
func refreshCalls(pol RefreshPolicy, b extract.RateLimit, left int) (int, string) {
	calls := pol.Calls
	switch {
	case pol.Calls == 0:
		return 0, "turned off (--refresh-calls 0)"
	case pol.Calls == RefreshAuto && !b.Known:
		return 0, "the API said nothing of the calls left this hour"
	case pol.Calls == RefreshAuto:
		calls = b.Remaining - pol.ReserveCalls
	case b.Known:
		calls = min(calls, b.Remaining)
	}
	if left >= 0 {
		calls = min(calls, left)
	}
	if calls <= 0 {
		return 0, fmt.Sprintf("no spare call this hour (%d left, %d reserved)", b.Remaining, pol.reserve())
	}
	return calls, ""
}

// refreshWindows is what a refresh of at most calls calls at now
// re-exports of coverage c, range after range as pickRefresh chooses them
// (notAfter is pol.notAfter(now)), one call a window.
func refreshWindows(c load.Coverage, notAfter, now time.Time, calls, limit int) []extract.Window {
	var out []extract.Window
	for len(out) < calls {
		ws, ok := pickRefresh(c, notAfter, now, calls-len(out), limit)
		if !ok {
			break
		}
		out = append(out, ws...)
		for _, w := range ws {
			c = c.Add(load.Segment{From: w.From, To: w.To, VerifiedAt: now.Add(time.Nanosecond)})
		}
	}
	return out
}
