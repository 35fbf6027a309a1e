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
	// exact marks the edges the planner asks to the microsecond, its last
	// resort (see Planner), and unsure those of them that no answer can
	// show were kept as sent. Only the planner sets them; a window saved
	// and read back is asked with whole seconds again.
	exact, unsure edges
}

// edges is a set of a window's edges.
type edges uint8

const (
	exactFrom edges = 1 << iota
	exactTo
)

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

// Apply sets q's created_after and created_before for w. The spec says
// neither how finely the API keeps these bounds nor whether they include
// the instant they name, so they are sent as whole seconds, which every
// precision keeps as they are (truncated or rounded, to the second or
// finer): created_after is the last whole second before From, so a row
// created exactly at From is in under either bound rule, and
// created_before is the first whole second not before To. Whatever the
// API's rules, a complete answer then holds every row of [From, To), and
// at most the rows of the second before From and of the instant To besides,
// which belong to the neighbours (the upsert absorbs the duplicates).
//
// An edge the planner marked exact is asked to the microsecond instead:
// created_after one microsecond before From, created_before To.
func (w Window) Apply(q Query) Query {
	q.CreatedAfter, q.CreatedBefore = time.Time{}, time.Time{}
	s := toSpan(w)
	if s.lo != minTime {
		q.CreatedAfter = time.UnixMicro(reqAfter(s.lo, w.exact)).UTC()
	}
	if s.hi != maxTime {
		q.CreatedBefore = time.UnixMicro(reqBefore(s.hi, w.exact)).UTC()
	}
	return q
}

// Certain returns the part of w that a complete answer to w's request
// certainly holds whatever the API's bound precision and rule: w itself,
// less, at an edge asked to the microsecond that no answer could check,
// the second it lies in. Only it tells which stored contacts are gone.
func (w Window) Certain() Window {
	s := toSpan(w)
	if w.unsure&exactFrom != 0 && s.lo != minTime {
		// created_after may have been taken as the whole second after it.
		s.lo = max(s.lo, floorSec(s.lo-1)+second+1)
	}
	if w.unsure&exactTo != 0 && s.hi != maxTime {
		s.hi = min(s.hi, floorSec(s.hi))
	}
	if s.lo >= s.hi {
		s.hi = s.lo // empty
	}
	return s.window()
}

// reqAfter is the created_after sent for a window starting at lo.
func reqAfter(lo int64, exact edges) int64 {
	if lo != minTime && exact&exactFrom != 0 {
		return lo - 1
	}
	return afterBound(lo)
}

// reqBefore is the created_before sent for a window ending at hi.
func reqBefore(hi int64, exact edges) int64 {
	if hi != maxTime && exact&exactTo != 0 {
		return hi
	}
	return beforeBound(hi)
}

// second is a second in microseconds.
const second = int64(time.Second / time.Microsecond)

// floorSec returns the whole second at or before us (Unix microseconds).
func floorSec(us int64) int64 {
	r := us % second
	if r < 0 {
		r += second
	}
	return us - r
}

// afterBound is the created_after sent for a window starting at lo: the last
// whole second before it.
func afterBound(lo int64) int64 {
	if lo == minTime {
		return minTime
	}
	return floorSec(lo - 1)
}

// beforeBound is the created_before sent for a window ending at hi: the
// first whole second at or after it.
func beforeBound(hi int64) int64 {
	if hi == maxTime {
		return maxTime
	}
	if f := floorSec(hi); f != hi {
		return f + second
	}
	return hi
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
// says how many rows each of them stands for. exact marks the edges asked
// to the microsecond; witnessLo and witnessHi (noWitness: none) are
// instants just inside them known to hold rows, which a complete answer
// must hold if the API kept the bound as sent.
type pending struct {
	s                    span
	sample               []int64
	dens                 *density
	exact                edges
	witnessLo, witnessHi int64
}

// noWitness is pending.witnessLo or witnessHi when there is none.
const noWitness = minTime

func (pd pending) window() Window {
	w := pd.s.window()
	w.exact = pd.exact
	if pd.witnessLo == noWitness {
		w.unsure |= pd.exact & exactFrom
	}
	if pd.witnessHi == noWitness {
		w.unsure |= pd.exact & exactTo
	}
	return w
}

func (pd pending) after() int64  { return reqAfter(pd.s.lo, pd.exact) }
func (pd pending) before() int64 { return reqBefore(pd.s.hi, pd.exact) }

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
// Windows are asked for with whole seconds (see Window.Apply), so they are
// cut and continued where that makes progress: the rest of an ascending
// window is asked from the whole second before its last instant, pieces of
// an unordered one start at whole seconds. When the limit's rows lie in one
// second, or in it and the instants at the edges of a whole-second bound,
// no such window makes progress. The planner then asks once more with the
// edge it needs to the microsecond (the rest of an ascending window from
// its last instant, of a descending one up to it, an unordered window's one
// instant cut out), and believes the answer only if it holds the rows at
// that instant, which it does if the API kept the bound as sent. If it does
// not, or still no window makes progress, an *OverflowError names the
// second: the API has not shown it keeps bounds finer than whole seconds.
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
		// Exact edges are not handed on: their witnesses are not.
		p.queue = append(p.queue, pending{s: toSpan(w), witnessLo: noWitness, witnessHi: noWitness})
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
		out[i] = q.window()
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
	return p.queue[0].window(), true
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

// cutAt splits pd so that pieces start at whole seconds near sample[i]
// for each i in idx (see wholeCut). Cuts that would leave a piece without a
// sampled instant, or outside the window, are dropped. The first piece
// keeps pd's lower edge as it was asked, the last its upper edge.
func cutAt(pd pending, idx []int) []pending {
	var out []pending
	cur := pending{s: pd.s, dens: pd.dens, exact: pd.exact & exactFrom, witnessLo: pd.witnessLo, witnessHi: noWitness}
	start := 0
	for _, i := range idx {
		if i >= len(pd.sample) || start >= len(pd.sample) {
			break
		}
		c, ok := wholeCut(pd.sample, start, max(i, start), cur.after(), pd.s.hi)
		if !ok {
			break
		}
		j, _ := slices.BinarySearch(pd.sample, c)
		cur.s.hi, cur.sample = c, pd.sample[start:j]
		out = append(out, cur)
		cur = pending{s: span{c, pd.s.hi}, dens: pd.dens, witnessLo: noWitness, witnessHi: noWitness}
		start = j
	}
	cur.sample = pd.sample[start:]
	cur.exact |= pd.exact & exactTo
	cur.witnessHi = pd.witnessHi
	return append(out, cur)
}

// wholeCut returns where to end a piece asked with created_after after,
// whose sampled instants begin at sample[start], so that the next piece
// starts near sample[i]: at a whole second (a cut inside a second would be
// asked with bounds the API may keep only to the second, see Window.Apply),
// before the second of sample[i] and after the sampled second before it,
// midway between the two where they are apart, so that the pieces' edges
// fall where no sampled row is. When that would leave the piece without a
// sampled instant, or start a piece asked with no later created_after,
// the cut moves on to the next sampled second. It reports false when no
// such cut is left before hi.
func wholeCut(sample []int64, start, i int, after, hi int64) (int64, bool) {
	minCut := floorSec(sample[start]) + second
	if after != minTime {
		// The next piece's created_after, a second before the cut, must be
		// later than this piece's, after.
		minCut = max(minCut, floorSec(after)+2*second)
	}
	v := floorSec(sample[i])
	if v < minCut {
		j, _ := slices.BinarySearch(sample, minCut)
		if j >= len(sample) {
			return 0, false
		}
		v = floorSec(sample[j])
	}
	j, _ := slices.BinarySearch(sample, v) // first sampled instant of v's second
	low := max(floorSec(sample[j-1])+second, minCut)
	c := low + (v-low)/second/2*second
	if c >= hi {
		return 0, false
	}
	return c, true
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

	asc, desc := order(t.Times)
	err := outside(pd, t)
	if err == nil {
		err = p.verify(pd, t, asc, desc)
	}
	if err != nil {
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
	rest, err := p.remainder(pd, t, asc, desc)
	if err != nil {
		// Keep the window pending: nothing of it is known to be complete.
		p.queue = slices.Insert(p.queue, 0, pd)
		return err
	}
	p.queue = slices.Insert(p.queue, 0, rest...)
	return nil
}

// order reports whether times ascend and whether they descend.
func order(times []int64) (asc, desc bool) {
	asc, desc = true, true
	for i := 1; i < len(times); i++ {
		asc = asc && times[i-1] <= times[i]
		desc = desc && times[i-1] >= times[i]
	}
	return asc, desc
}

// verify checks the answer for a window with an exact edge: it must hold
// the rows at the edge's witness, as it does if the API kept the bound to
// the microsecond, and then every row inside the edge is in (a bound
// includes the instants on one side of it). An answer that cannot lack them
// otherwise (complete, or in the order that puts them first) and lacks
// them shows that the API keeps the bound coarser, or excludes the instant
// it names: the rows at the witness cannot be split from their neighbours
// safely, and the error says so.
func (p *Planner) verify(pd pending, t Tally, asc, desc bool) error {
	complete := t.Rows < p.Limit
	for _, e := range []struct {
		edge       edges
		witness    int64
		conclusive bool
	}{{exactFrom, pd.witnessLo, complete || asc}, {exactTo, pd.witnessHi, complete || desc}} {
		if pd.exact&e.edge != 0 && e.witness != noWitness && e.conclusive && !slices.Contains(t.Times, e.witness) {
			return p.secondOverflow(e.witness)
		}
	}
	return nil
}

// BoundSlack is how far outside the requested bounds a row may lie before
// the API is taken to ignore them. Bounds are sent as whole seconds, which
// any precision keeps; the slack tolerates a server that keeps them coarser
// still by a little (or, with an older state, windows cut inside a second),
// so that imprecision is not taken for ignored bounds, which would stop
// every incremental sync for good.
const BoundSlack = time.Second

// outside returns a *ProtocolError when t holds a row created outside what
// the request for pd asked (Window.Apply), each bound inclusive or not, by
// more than BoundSlack. Such rows mean the API ignores the bounds, and no
// window can be trusted to hold what it should: the planner would only go
// round in circles.
func outside(pd pending, t Tally) error {
	q := pd.window().Apply(Query{})
	lo, hi := int64(minTime), int64(maxTime)
	if !q.CreatedAfter.IsZero() {
		lo = q.CreatedAfter.UnixMicro() - BoundSlack.Microseconds()
	}
	if !q.CreatedBefore.IsZero() {
		hi = q.CreatedBefore.UnixMicro() + BoundSlack.Microseconds()
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
func (p *Planner) remainder(pd pending, t Tally, asc, desc bool) ([]pending, error) {
	if len(t.Times) == 0 {
		return nil, fmt.Errorf("window %s returned %d rows (the limit) but no created_at parsed, so it cannot be split", pd.s.window(), t.Rows)
	}
	lo, hi := slices.Min(t.Times), slices.Max(t.Times)
	last := t.Times[len(t.Times)-1]
	if lo == hi {
		return nil, &OverflowError{At: time.UnixMicro(lo).UTC(), Limit: p.Limit}
	}
	keep := func(s span) []int64 { // the earlier sample's instants inside s
		i, _ := slices.BinarySearch(pd.sample, s.lo)
		j, _ := slices.BinarySearch(pd.sample, s.hi)
		return pd.sample[i:j]
	}
	rest := func(s span, exact edges, witnessLo, witnessHi int64) []pending {
		return []pending{{s: s, sample: keep(s), dens: pd.dens, exact: exact, witnessLo: witnessLo, witnessHi: witnessHi}}
	}
	switch {
	case asc:
		// Every row before last is in; rows at last may be cut off. The
		// rest is asked from the whole second before last, unless that
		// asks for no less than this window did: then from last itself,
		// to the microsecond.
		if last >= pd.s.hi {
			return nil, nil
		}
		s := span{last, pd.s.hi}
		hiEdge := pd.exact & exactTo
		switch {
		case afterBound(last) > pd.after():
			return rest(s, hiEdge, noWitness, pd.witnessHi), nil
		case last-1 > pd.after():
			return rest(s, hiEdge|exactFrom, last, pd.witnessHi), nil
		}
		return nil, p.secondOverflow(last)
	case desc:
		// Every row after last is in; the rest is asked up to the whole
		// second after last, or else to last itself.
		if last < pd.s.lo {
			return nil, nil
		}
		s := span{pd.s.lo, last + 1}
		loEdge := pd.exact & exactFrom
		switch {
		case beforeBound(last+1) < pd.before():
			return rest(s, loEdge, pd.witnessLo, noWitness), nil
		case last+1 < pd.before():
			return rest(s, loEdge|exactTo, pd.witnessLo, last), nil
		}
		return nil, p.secondOverflow(last)
	}
	// Unordered: the rows are a sample of the window.
	sample := make([]int64, 0, len(t.Times))
	for _, ts := range t.Times {
		if ts >= pd.s.lo && ts < pd.s.hi {
			sample = append(sample, ts)
		}
	}
	slices.Sort(sample)
	next := pd
	next.sample, next.dens = sample, &density{}
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
	if len(pieces) < 2 {
		var ok bool
		if pieces, ok = cutOut(next, lo < pd.s.lo, hi >= pd.s.hi); !ok {
			pieces = nil
		}
	}
	if len(pieces) == 0 {
		// No whole second inside the window to cut at: the rows are in
		// one second, or at the edges a bound at a whole second adds.
		// Name the second most of them share.
		secs := make([]int64, len(t.Times))
		for i, ts := range t.Times {
			secs[i] = floorSec(ts)
		}
		slices.Sort(secs)
		return nil, p.secondOverflow(mode(secs))
	}
	return pieces, nil
}

// cutOut splits an unordered window whose sampled rows inside it are all at
// one instant, and which came back truncated with rows outside it (below
// it: below; at or above its end: above), around that instant, to the
// microsecond: so that the rows at the edges, which a bound at a whole
// second adds, come in other pieces than the instant's. The piece holding
// the instant starts at it, if there are rows below, and ends just after
// it, if there are rows above, each such edge exact with the instant as
// witness. It reports false when that asks for no less than pd did.
func cutOut(pd pending, below, above bool) ([]pending, bool) {
	if len(pd.sample) == 0 || pd.sample[0] != pd.sample[len(pd.sample)-1] {
		return nil, false
	}
	at := pd.sample[0]
	var out []pending
	mid := pd
	if below {
		if at > pd.s.lo {
			out = append(out, pending{s: span{pd.s.lo, at}, dens: pd.dens, exact: pd.exact & exactFrom, witnessLo: pd.witnessLo, witnessHi: noWitness})
		}
		mid.s.lo, mid.exact, mid.witnessLo = at, mid.exact|exactFrom, at
	}
	// created_after is a microsecond before a piece's start, so the rest
	// starts two microseconds after the instant to leave it out.
	if above && at+2 < pd.s.hi {
		rest := pending{s: span{at + 2, pd.s.hi}, dens: pd.dens, exact: pd.exact&exactTo | exactFrom, witnessLo: noWitness, witnessHi: pd.witnessHi}
		mid.s.hi, mid.exact, mid.witnessHi = at+2, mid.exact|exactTo, at
		return append(out, mid, rest), true
	}
	out = append(out, mid)
	return out, len(out) > 1 || mid.after() > pd.after()
}

// secondOverflow says that the limit's rows are in the second of at (or
// at the edges of a window around it), which a window asked with whole
// seconds cannot split.
func (p *Planner) secondOverflow(at int64) error {
	return &OverflowError{At: time.UnixMicro(floorSec(at)).UTC(), Limit: p.Limit, Second: true}
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
