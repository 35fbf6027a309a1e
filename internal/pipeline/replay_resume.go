package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/leadlex/leadlex-etl/internal/archive"
	"github.com/leadlex/leadlex-etl/internal/load"
)

// StreamHeldError says a destination holds the stream a replay would
// rebuild, in a state that replaying no part of the archive leaves (it was
// synced, or replayed from another archive), or in one that several
// windows leave so that the replay cannot tell where to go on: a replay
// rebuilds a destination, or resumes one an interrupted replay of the same
// archive left, and never merges.
type StreamHeldError struct {
	StreamID string
	Target   int // the destination's index in ReplayOptions.Targets
	// From and To, when set (From < To), are the windows (counted from 1)
	// after each of which the destination's state is what the replay
	// leaves: it cannot tell which of them the destination committed.
	From, To int
}

func (e *StreamHeldError) Error() string {
	if e.To > e.From {
		return fmt.Sprintf("the destination holds stream %s as a replay of this archive leaves it after window %d, and after %d, which changes nothing of the stream state, "+
			"so the replay cannot tell which of them it committed and will not resume: replay into a new destination", e.StreamID, e.From, e.To)
	}
	return fmt.Sprintf("the destination already holds stream %s, in a state no part of this archive leaves (it was synced, or replayed from other files): "+
		"a replay rebuilds a destination, or resumes one a replay of this archive was interrupted in; it does not merge: replay into a new destination", e.StreamID)
}

// heldWindows tells, for each target, how many of the archived windows it
// holds already, and returns the stream state after the fewest of them,
// from which the replay goes on. A target that does not hold the stream
// holds none. One that holds it must hold it as replaying the archive's
// first k windows leaves it: its stream state (what stateDigest covers) is
// the state after window k, and after no other window, as a replay
// computes them; it then holds those k windows, since each window commits
// its rows and the state together. The states are computed by reading the
// bodies up to the last such window, with no commit. Any other target is a
// *StreamHeldError.
func heldWindows(ctx context.Context, o *ReplayOptions, entries []archive.Entry, id, identity string) ([]int, load.StreamState, error) {
	held := make([]int, len(o.Targets))
	empty := load.StreamState{StreamID: id, Identity: identity}
	want := map[int]string{} // the digest of each target's state that holds the stream
	for i, t := range o.Targets {
		st, err := t.LoadState(ctx, id, identity)
		if err != nil {
			return nil, empty, err
		}
		if len(st.Coverage) > 0 || len(st.Pending) > 0 {
			want[i] = stateDigest(st)
		}
	}
	if len(want) == 0 {
		return held, empty, nil
	}
	r := newReplayer(o.Transform, empty, slog.New(slog.DiscardHandler))
	found := map[int]int{}
	states := map[int]load.StreamState{0: empty}
	rctx, stop := context.WithCancel(ctx)
	ahead := readAheadWindows(rctx, o.Archive, entries, r.o.Transform)
	defer func() {
		stop()
		for ra := range ahead {
			ra.release()
		}
	}()
	k := 0
	for ra := range ahead {
		if ra.err != nil {
			return nil, empty, ra.err
		}
		r.advanceOnly(ra)
		ra.release()
		k++
		d := stateDigest(r.st)
		for t, w := range want {
			f, ok := found[t]
			switch {
			case ok && f == k-1 && d == w:
				// The states of a replay never come back once left: equal
				// ones are neighbours, and window k changed nothing.
				return nil, empty, &StreamHeldError{StreamID: id, Target: t, From: f, To: k}
			case !ok && d == w:
				found[t] = k
				states[k] = cloneState(r.st)
			}
		}
		if len(found) == len(want) && k > maxValue(found) {
			break
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, empty, context.Cause(ctx)
	}
	for t := range want {
		f, ok := found[t]
		if !ok {
			return nil, empty, &StreamHeldError{StreamID: id, Target: t}
		}
		held[t] = f
	}
	return held, states[slices.Min(held)], nil
}

func maxValue(m map[int]int) int {
	n := 0
	for _, v := range m {
		n = max(n, v)
	}
	return n
}

// cloneState is st with slices of its own.
func cloneState(st load.StreamState) load.StreamState {
	st.Coverage = slices.Clone(st.Coverage)
	st.Pending = slices.Clone(st.Pending)
	return st
}
