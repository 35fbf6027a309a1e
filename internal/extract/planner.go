package extract

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Window is a half-open range of created_at, [From, To). A zero From means no
// lower bound (all history); a zero To means no upper bound.
type Window struct {
	From, To time.Time
}

func (w Window) String() string {
	f, t := "-inf", "+inf"
	if !w.From.IsZero() {
		f = FormatTime(w.From)
	}
	if !w.To.IsZero() {
		t = FormatTime(w.To)
	}
	return "[" + f + ", " + t + ")"
}

// Overlap is how far before a window's From the request's created_after is
// placed: one microsecond, the finest precision timestamps are kept at. With
// it, a row created exactly at From is returned whether the API treats
// created_after as inclusive or exclusive, and created_before = To returns
// rows at To only when the bound is inclusive, in which case the next window
// fetches them again and the upsert absorbs the duplicate.
const Overlap = time.Microsecond

// Apply sets q's created_after and created_before for w.
func (w Window) Apply(q Query) Query {
	q.CreatedAfter, q.CreatedBefore = time.Time{}, time.Time{}
	if !w.From.IsZero() {
		q.CreatedAfter = w.From.Add(-Overlap)
	}
	if !w.To.IsZero() {
		q.CreatedBefore = w.To
	}
	return q
}

const (
	minTime = math.MinInt64
	maxTime = math.MaxInt64
)

// span is a window in Unix microseconds; lo == minTime / hi == maxTime stand
// for no bound.
type span struct{ lo, hi int64 }

func toSpan(w Window) span {
	s := span{minTime, maxTime}
	if !w.From.IsZero() {
		s.lo = w.From.UnixMicro()
	}
	if !w.To.IsZero() {
		s.hi = w.To.UnixMicro()
	}
	return s
}

func (s span) window() Window {
	var w Window
	if s.lo != minTime {
		w.From = time.UnixMicro(s.lo).UTC()
	}
	if s.hi != maxTime {
		w.To = time.UnixMicro(s.hi).UTC()
	}
	return w
}

// density estimates how many rows stand behind each timestamp of a sample
// taken from an unordered, truncated response. Windows split from that sample
// share one density; every complete window of the group refines it.
type density struct {
	rows, points int // summed over the group's complete windows
	// guess is used while no window of the group is complete: a truncated
	// one says only "at least limit rows", so it is taken as twice that.
	guessRows, guessPoints int
}

func (d *density) perPoint() (float64, bool) {
	switch {
	case d == nil:
		return 0, false
	case d.points > 0:
		return float64(d.rows) / float64(d.points), true
	case d.guessPoints > 0:
		return float64(d.guessRows) / float64(d.guessPoints), true
	}
	return 0, false
}

// pending is a window still to fetch. sample, when set, holds the timestamps
// of an earlier truncated response that fall in the window (sorted), and dens
// says how many rows each of them stands for.
type pending struct {
	s      span
	sample []int64
	dens   *density
}

// Planner decides which windows to export so that every row of a range is
// fetched at least once with as few calls as the data allows. It starts from
// one window for the whole range and learns from each response (its Tally):
//
//   - fewer than Limit rows: the window is complete;
//   - Limit rows in ascending created_at order: every row before the last
//     instant is in, so the rest of the window starts at that instant;
//   - descending order: the mirror image, the window now ends at the last instant;
//   - any other order: the response is a sample of the window. A small first
//     piece (1/64 of the sample) is fetched to learn how many rows each
//     sampled instant stands for, then the rest is cut at sample instants into
//     pieces expected to hold Fill of Limit rows;
//   - all rows at one instant, or no instant inside the window to cut at: an
//     *OverflowError, never a loop.
//
// Windows are handed out in created_at order. Pending returns what is left, so
// a sync can save it with each committed window and resume from it.
type Planner struct {
	Limit int
	// Fill is the share of Limit a piece of a split window is sized for
	// (0 -> 0.9): lower wastes calls on half-empty pieces, higher risks a
	// truncated piece, which costs extra calls to split again.
	Fill float64
	// ProbeShare is the share of a sample given to the first piece of an
	// unordered split (0 -> 1/64). It must be small enough to be complete
	// (under Limit rows) for windows up to 1/ProbeShare times Limit, and large
	// enough to estimate the density well (1/64 of 50,000 is 781 instants,
	// about 4% error).
	ProbeShare float64

	queue []pending // sorted by lo, disjoint
	cur   int       // index into queue of the window handed out, -1 if none
}

// NewPlanner returns a planner for the given windows (usually one: the range
// to sync; or what Pending returned when a sync stopped).
func NewPlanner(limit int, windows ...Window) *Planner {
	p := &Planner{Limit: limit, cur: -1}
	for _, w := range windows {
		p.queue = append(p.queue, pending{s: toSpan(w)})
	}
	slices.SortFunc(p.queue, func(a, b pending) int { return cmpInt(a.s.lo, b.s.lo) })
	return p
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (p *Planner) fill() float64 {
	if p.Fill <= 0 || p.Fill > 1 {
		return 0.9
	}
	return p.Fill
}

func (p *Planner) probeShare() float64 {
	if p.ProbeShare <= 0 || p.ProbeShare >= 1 {
		return 1.0 / 64
	}
	return p.ProbeShare
}

// Pending returns the windows not yet known to be complete, in order,
// including the one handed out by Next and not yet reported by Done.
func (p *Planner) Pending() []Window {
	out := make([]Window, len(p.queue))
	for i, q := range p.queue {
		out[i] = q.s.window()
	}
	return out
}

// Next returns the next window to export, or false when the range is complete.
// Each window handed out must be reported with Done before Next is called again.
func (p *Planner) Next() (Window, bool) {
	if p.cur >= 0 {
		panic("extract: Planner.Next called twice without Done")
	}
	if len(p.queue) == 0 {
		return Window{}, false
	}
	head := p.queue[0]
	if per, ok := head.dens.perPoint(); ok && len(head.sample) > 0 {
		// Split when the window is expected to come back truncated, or too
		// close to it for comfort; pieces of equal size, each sized for
		// Fill of Limit (a piece cut earlier whose estimate grew a little as
		// the density was refined is left alone rather than split into a
		// full piece and a sliver).
		fill := p.fill()
		est := per * float64(len(head.sample))
		if est > (fill+(1-fill)/2)*float64(p.Limit) {
			k := int(math.Ceil(est / (fill * float64(p.Limit))))
			pieces := cutEvery(head, int(math.Ceil(float64(len(head.sample))/float64(k))))
			p.queue = slices.Replace(p.queue, 0, 1, pieces...)
		}
	}
	p.cur = 0
	return p.queue[0].s.window(), true
}

// cutEvery splits pd at every n-th sample instant, skipping cut points that
// would leave an empty or inverted piece.
func cutEvery(pd pending, n int) []pending {
	var cuts []int // indices into sample where a new piece starts
	for i := n; i < len(pd.sample); i += n {
		cuts = append(cuts, i)
	}
	return cutAt(pd, cuts)
}

// cutAt splits pd so that pieces start near sample[i] for each i in idx:
// just before that instant (midway from the sampled instant before it), so
// the piece before ends with the previous instant's whole run of equal
// values; or, if that would leave the piece before empty, before the next
// instant after the run. Cuts outside the window are dropped.
func cutAt(pd pending, idx []int) []pending {
	var out []pending
	lo, start := pd.s.lo, 0
	for _, i := range idx {
		if i >= len(pd.sample) {
			break
		}
		v := pd.sample[i]
		j, _ := slices.BinarySearch(pd.sample, v) // first index of v
		if j <= start || v <= lo {
			j, _ = slices.BinarySearch(pd.sample, v+1) // first index after v's run
			if j >= len(pd.sample) {
				break
			}
			v = pd.sample[j]
		}
		if v >= pd.s.hi {
			break
		}
		if v <= lo || j <= start {
			continue // the cut falls inside the piece before: no empty piece
		}
		// Cut midway between the instant before and v rather than at v:
		// the pieces' edges then fall where no sampled row is, so an
		// inclusive bound adds no rows at them (a burst at a piece's end
		// would be fetched twice and could truncate the piece).
		c := v
		if prev := pd.sample[j-1]; v-prev >= 2 {
			c = prev + (v-prev)/2
		}
		out = append(out, pending{s: span{lo, c}, sample: pd.sample[start:j], dens: pd.dens})
		lo, start = c, j
	}
	return append(out, pending{s: span{lo, pd.s.hi}, sample: pd.sample[start:], dens: pd.dens})
}

// Done reports the outcome of the window Next returned. It returns an
// *OverflowError when the window cannot be split any further, and a
// *ProtocolError when the window held rows created outside what was asked
// for (the API ignores created_after/created_before); either way the window
// stays pending.
func (p *Planner) Done(t Tally) error {
	if p.cur < 0 {
		panic("extract: Planner.Done called without Next")
	}
	pd := p.queue[p.cur]
	p.queue = slices.Delete(p.queue, p.cur, p.cur+1)
	p.cur = -1

	if err := outside(pd.s, t); err != nil {
		p.queue = slices.Insert(p.queue, 0, pd)
		return err
	}
	if t.Rows < p.Limit {
		if pd.dens != nil && len(pd.sample) > 0 {
			// Only rows inside the window: an inclusive bound adds rows at
			// the edges that belong to the neighbours.
			inside := 0
			for _, ts := range t.Times {
				if ts >= pd.s.lo && ts < pd.s.hi {
					inside++
				}
			}
			pd.dens.rows += inside
			pd.dens.points += len(pd.sample)
		}
		return nil
	}
	if pd.dens != nil && pd.dens.points == 0 && len(pd.sample) > 0 {
		pd.dens.guessRows += 2 * t.Rows
		pd.dens.guessPoints += len(pd.sample)
	}
	rest, err := p.remainder(pd, t)
	if err != nil {
		// Keep the window pending: nothing of it is known to be complete.
		p.queue = slices.Insert(p.queue, 0, pd)
		return err
	}
	p.queue = slices.Insert(p.queue, 0, rest...)
	return nil
}

// BoundSlack is how far outside the requested bounds a row may lie before
// the API is taken to ignore them. An API that keeps a bound to the second
// (or to the millisecond, as a JavaScript Date does) answers created_after
// 09:00:00.5 with rows from 09:00:00.0: that is imprecision, not ignored
// bounds, and taking it for the latter would stop every incremental sync
// (whose windows start at a fractional cursor) for good.
const BoundSlack = time.Second

// outside returns a *ProtocolError when t holds a row created outside what
// the request for s asked: created_after = lo - Overlap and created_before
// = hi, each inclusive or not, so rows in [lo - Overlap, hi] are fine, and
// so are rows within BoundSlack of that. Rows further out mean the API
// ignores the bounds, and no window can be trusted to hold what it should:
// the planner would only go round in circles.
func outside(s span, t Tally) error {
	lo, hi := s.lo, s.hi
	if lo != minTime {
		lo -= (Overlap + BoundSlack).Microseconds()
	}
	if hi != maxTime {
		hi += BoundSlack.Microseconds()
	}
	n, first := 0, int64(0)
	for _, ts := range t.Times {
		if ts < lo || ts > hi {
			if n == 0 {
				first = ts
			}
			n++
		}
	}
	if n == 0 {
		return nil
	}
	q := s.window().Apply(Query{})
	bound := func(t time.Time) string {
		if t.IsZero() {
			return "none"
		}
		return FormatTime(t)
	}
	return &ProtocolError{Rows: int64(t.Rows), Problem: fmt.Sprintf(
		"the API returned rows created outside the requested window (created_after %s, created_before %s), by more than %s: %d of %d rows, the first created at %s; it seems to ignore created_after/created_before, so no window can be exported reliably; nothing of this window was loaded",
		bound(q.CreatedAfter), bound(q.CreatedBefore), BoundSlack, n, len(t.Times), time.UnixMicro(first).UTC().Format(time.RFC3339Nano))}
}

// remainder returns what is left of a truncated window.
func (p *Planner) remainder(pd pending, t Tally) ([]pending, error) {
	if len(t.Times) == 0 {
		return nil, fmt.Errorf("window %s returned %d rows (the limit) but no created_at parsed, so it cannot be split", pd.s.window(), t.Rows)
	}
	asc, desc := true, true
	lo, hi := t.Times[0], t.Times[0]
	for i := 1; i < len(t.Times); i++ {
		a, b := t.Times[i-1], t.Times[i]
		asc = asc && a <= b
		desc = desc && a >= b
		lo, hi = min(lo, b), max(hi, b)
	}
	last := t.Times[len(t.Times)-1]
	overflow := func(at int64) error {
		return &OverflowError{At: time.UnixMicro(at).UTC(), Limit: p.Limit}
	}
	if lo == hi {
		return nil, overflow(lo)
	}
	keep := func(s span) []int64 { // the earlier sample's instants inside s
		i, _ := slices.BinarySearch(pd.sample, s.lo)
		j, _ := slices.BinarySearch(pd.sample, s.hi)
		return pd.sample[i:j]
	}
	switch {
	case asc:
		// Every row before last is in; rows at last may be cut off.
		if last >= pd.s.hi {
			return nil, nil
		}
		if last <= pd.s.lo {
			return nil, overflow(last)
		}
		s := span{last, pd.s.hi}
		return []pending{{s: s, sample: keep(s), dens: pd.dens}}, nil
	case desc:
		// Every row after last is in.
		if last < pd.s.lo {
			return nil, nil
		}
		if last+1 >= pd.s.hi {
			return nil, overflow(last)
		}
		s := span{pd.s.lo, last + 1}
		return []pending{{s: s, sample: keep(s), dens: pd.dens}}, nil
	}
	// Unordered: the rows are a sample of the window.
	sample := make([]int64, 0, len(t.Times))
	for _, ts := range t.Times {
		if ts >= pd.s.lo && ts < pd.s.hi {
			sample = append(sample, ts)
		}
	}
	slices.Sort(sample)
	next := pending{s: pd.s, sample: sample, dens: &density{}}
	var pieces []pending
	if per, ok := pd.dens.perPoint(); ok && len(pd.sample) > 0 {
		// The group's density says roughly how many rows this window holds;
		// it held more than it said, so size the pieces for a bit more.
		est := max(per*float64(len(pd.sample)), float64(p.Limit)) * 1.25
		next.dens = &density{guessRows: int(est), guessPoints: len(sample)}
		k := int(math.Ceil(est / (p.fill() * float64(p.Limit))))
		pieces = cutEvery(next, int(math.Ceil(float64(len(sample))/float64(k))))
	} else {
		pieces = cutAt(next, []int{int(float64(len(sample)) * p.probeShare())})
	}
	if len(pieces) < 2 && len(sample) > 0 && len(sample) < len(t.Times) && sample[0] == sample[len(sample)-1] {
		// One instant inside the window, and rows at the edges an
		// inclusive bound adds (a burst at the window's end, say): cut
		// just after that instant. Each piece's created_after is Overlap
		// before its start, so the cut is 2 µs after the instant to keep
		// it out of the second piece.
		if cut := sample[0] + 2*int64(Overlap/time.Microsecond); cut < pd.s.hi {
			return []pending{
				{s: span{pd.s.lo, cut}, sample: sample, dens: next.dens},
				{s: span{cut, pd.s.hi}, dens: next.dens},
			}, nil
		}
	}
	if len(pieces) < 2 {
		// No instant inside the window to cut at: the rows are at one
		// instant, or at the edges an inclusive bound adds. Name the
		// instant most of them share.
		all := slices.Clone(t.Times)
		slices.Sort(all)
		return nil, overflow(mode(all))
	}
	return pieces, nil
}

// mode returns the most frequent value of a sorted slice.
func mode(sorted []int64) int64 {
	var best, cur int64
	bestN, n := 0, 0
	for i, v := range sorted {
		if i == 0 || v != cur {
			cur, n = v, 0
		}
		n++
		if n > bestN {
			best, bestN = v, n
		}
	}
	return best
}

// abandon forgets the window handed out by Next without learning anything:
// it stays pending.
func (p *Planner) abandon() { p.cur = -1 }
