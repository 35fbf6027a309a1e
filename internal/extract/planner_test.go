package extract

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// simAPI answers windows from an in-memory sorted list of instants the way
// the export API may: with either bound rule and any row order. It lets the
// planner be checked on many datasets without HTTP; the HTTP tests in
// extract_test.go run the same logic against the fake API.
type simAPI struct {
	times  []int64 // sorted, Unix microseconds
	rank   []uint64
	order  string // asc, desc, random
	bounds string // inclusive, exclusive, mixed
	limit  int
	calls  int
	seen   []bool
	// unit is the precision the bounds are kept at, in microseconds (0:
	// as sent); round says how: "" truncates, "nearest" rounds half up,
	// "ceil" rounds up.
	unit  int64
	round string
	last  []int // the rows of the last answer
}

// coarse keeps a bound at the API's precision.
func (s *simAPI) coarse(us int64) int64 {
	if s.unit <= 1 || us == minTime || us == maxTime {
		return us
	}
	f := us - ((us%s.unit)+s.unit)%s.unit
	switch {
	case s.round == "nearest" && us-f >= s.unit/2, s.round == "ceil" && us != f:
		return f + s.unit
	}
	return f
}

func (s *simAPI) export(w Window) Tally {
	s.calls++
	q := w.Apply(Query{})
	lo, hi := int64(minTime), int64(maxTime)
	if !q.CreatedAfter.IsZero() {
		lo = s.coarse(q.CreatedAfter.UnixMicro())
	}
	if !q.CreatedBefore.IsZero() {
		hi = s.coarse(q.CreatedBefore.UnixMicro())
	}
	// Rows with after <= t (inclusive, mixed) or after < t (exclusive), and
	// t <= before (inclusive) or t < before (exclusive, mixed).
	first, _ := slices.BinarySearch(s.times, lo)
	if s.bounds == "exclusive" {
		for first < len(s.times) && s.times[first] == lo {
			first++
		}
	}
	end, _ := slices.BinarySearch(s.times, hi)
	if s.bounds == "inclusive" {
		for end < len(s.times) && s.times[end] == hi {
			end++
		}
	}
	var idx []int
	for i := first; i < end; i++ {
		idx = append(idx, i)
	}
	switch s.order {
	case "desc":
		slices.Reverse(idx)
	case "random":
		slices.SortFunc(idx, func(a, b int) int { return cmpInt(int64(s.rank[a]>>1), int64(s.rank[b]>>1)) })
	}
	if len(idx) > s.limit {
		idx = idx[:s.limit]
	}
	s.last = idx
	var t Tally
	for _, i := range idx {
		s.seen[i] = true
		t.Rows++
		t.Times = append(t.Times, s.times[i])
	}
	return t
}

func (s *simAPI) run(p *Planner) error {
	for {
		w, ok := p.Next()
		if !ok {
			return nil
		}
		if s.calls > 10*len(s.times)/s.limit+100 {
			return errors.New("planner loops")
		}
		if err := p.Done(s.export(w)); err != nil {
			return err
		}
	}
}

func largestGroup(sorted []int64) int {
	best, n := 0, 0
	for i := range sorted {
		if i > 0 && sorted[i] == sorted[i-1] {
			n++
		} else {
			n = 1
		}
		best = max(best, n)
	}
	return best
}

// synth makes n sorted instants: groups sharing one second, most of one row,
// some of a few, rare bursts of up to burst rows, over about a year.
func synth(r *rand.Rand, n, burst int) []int64 {
	t := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	out := make([]int64, 0, n)
	for len(out) < n {
		size := 1
		switch x := r.Float64(); {
		case x < 0.002 && burst > 1:
			size = 1 + r.IntN(burst)
		case x < 0.3:
			size = 2 + r.IntN(8)
		}
		for k := 0; k < size && len(out) < n; k++ {
			out = append(out, t)
		}
		t += int64(1+r.IntN(120)) * 1e6
	}
	return out
}

func TestPlannerCoversEveryRow(t *testing.T) {
	for _, order := range []string{"asc", "desc", "random"} {
		for _, bounds := range []string{"inclusive", "exclusive", "mixed"} {
			for _, tc := range []struct{ n, limit, burst int }{
				{0, 100, 1}, {99, 100, 1}, {100, 100, 1}, {101, 100, 1},
				{5000, 100, 40}, {20000, 1000, 300}, {12345, 500, 1},
			} {
				name := fmt.Sprintf("%s/%s/n=%d,limit=%d", order, bounds, tc.n, tc.limit)
				t.Run(name, func(t *testing.T) {
					r := rand.New(rand.NewPCG(uint64(tc.n), 7))
					api := &simAPI{times: synth(r, tc.n, tc.burst), order: order, bounds: bounds, limit: tc.limit}
					api.rank = make([]uint64, tc.n)
					for i := range api.rank {
						api.rank[i] = r.Uint64()
					}
					api.seen = make([]bool, tc.n)
					p := NewPlanner(tc.limit, Window{To: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)})
					if err := api.run(p); err != nil {
						t.Fatal(err)
					}
					for i, ok := range api.seen {
						if !ok {
							t.Fatalf("row %d at %s never fetched", i, time.UnixMicro(api.times[i]).UTC())
						}
					}
					if len(p.Pending()) != 0 {
						t.Fatalf("pending after completion: %v", p.Pending())
					}
					// Ordered responses are continued from their last instant: one
					// call more than the minimum at worst, for the rows re-fetched
					// at each edge. Unordered ones are sampled; at these small
					// limits the samples are too coarse for a call-count bound
					// (TestPlannerCallsAtScale has one at the real limit).
					// Each truncated call re-fetches the rows at its last instant,
					// at most the largest group, so it moves on by at least
					// limit minus that.
					bound := MinCalls(tc.n, tc.limit-largestGroup(api.times)) + 1
					t.Logf("calls %d, minimum %d", api.calls, MinCalls(tc.n, tc.limit))
					if order != "random" && api.calls > bound {
						t.Errorf("%s order used %d calls for %d rows at limit %d; want at most %d", order, api.calls, tc.n, tc.limit, bound)
					}
				})
			}
		}
	}
}

func TestPlannerOverflow(t *testing.T) {
	base := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, order := range []string{"asc", "desc", "random"} {
		for _, bounds := range []string{"inclusive", "exclusive", "mixed"} {
			t.Run(order+"/"+bounds, func(t *testing.T) {
				// 50 spread rows, then 150 rows in one second, then 50 more.
				var times []int64
				for i := 0; i < 50; i++ {
					times = append(times, base.Add(time.Duration(i-60)*time.Minute).UnixMicro())
				}
				for i := 0; i < 150; i++ {
					times = append(times, base.UnixMicro())
				}
				for i := 0; i < 50; i++ {
					times = append(times, base.Add(time.Duration(i+1)*time.Minute).UnixMicro())
				}
				r := rand.New(rand.NewPCG(1, 2))
				api := &simAPI{times: times, order: order, bounds: bounds, limit: 100, seen: make([]bool, len(times))}
				for range times {
					api.rank = append(api.rank, r.Uint64())
				}
				p := NewPlanner(100, Window{})
				err := api.run(p)
				var oe *OverflowError
				if !errors.As(err, &oe) || !errors.Is(err, ErrTimestampOverflow) {
					t.Fatalf("got %v, want an *OverflowError", err)
				}
				if !oe.At.Equal(base) {
					t.Errorf("overflow names %s, want %s", oe.At, base)
				}
				// 13: under an inclusive bound a window that ends on the
				// burst's second first tries the cut right after the one
				// instant inside it (TestPlannerAdjacentBursts needs it),
				// which costs one call before the overflow shows.
				if api.calls > 13 {
					t.Errorf("took %d calls to find the overflow", api.calls)
				}
				if len(p.Pending()) == 0 {
					t.Error("the failed window is not pending any more")
				}
			})
		}
	}
}

func TestPlannerResumesFromPending(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	api := &simAPI{times: synth(r, 3000, 20), order: "asc", bounds: "exclusive", limit: 250}
	api.seen = make([]bool, len(api.times))
	p := NewPlanner(250, Window{})
	for range 4 {
		w, _ := p.Next()
		if err := p.Done(api.export(w)); err != nil {
			t.Fatal(err)
		}
	}
	// A new process resumes from what the first one would have saved.
	p2 := NewPlanner(250, p.Pending()...)
	if err := api.run(p2); err != nil {
		t.Fatal(err)
	}
	for i, ok := range api.seen {
		if !ok {
			t.Fatalf("row %d never fetched after resume", i)
		}
	}
}

// TestWindowApply checks the bounds a window is asked with: whole seconds,
// the one before From and the first not before To, which no precision the
// API may keep them at changes.
func TestWindowApply(t *testing.T) {
	from := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	to := time.Date(2024, 2, 1, 0, 0, 0, 0, time.FixedZone("x", 3600))
	for _, tc := range []struct {
		w             Window
		after, before string
	}{
		{Window{From: from, To: to}, "2024-01-02T03:04:04Z", "2024-01-31T23:00:00Z"},
		{Window{From: from.Add(500 * time.Millisecond), To: to.Add(time.Microsecond)}, "2024-01-02T03:04:05Z", "2024-01-31T23:00:01Z"},
		{Window{From: from.Add(time.Microsecond), To: to.Add(-time.Microsecond)}, "2024-01-02T03:04:05Z", "2024-01-31T23:00:00Z"},
	} {
		v := tc.w.Apply(Query{Limit: 5}).Values()
		if got := v.Get("created_after"); got != tc.after {
			t.Errorf("%s: created_after = %s, want %s", tc.w, got, tc.after)
		}
		if got := v.Get("created_before"); got != tc.before {
			t.Errorf("%s: created_before = %s, want %s", tc.w, got, tc.before)
		}
	}
	if v := (Window{}).Apply(Query{}).Values(); v.Has("created_after") || v.Has("created_before") {
		t.Errorf("unbounded window sent bounds: %v", v)
	}
}

// TestPlannerCallsAtScale checks the planner's call count at the real limit on
// datasets of realistic size: 1,000,000 rows is 20 calls at best.
func TestPlannerCallsAtScale(t *testing.T) {
	for _, tc := range []struct {
		n, limit int
		order    string
		maxCalls int
	}{
		{1_000_000, 50_000, "asc", 21},
		{1_000_000, 50_000, "desc", 21},
		{1_000_000, 50_000, "random", 26},
		{120_000, 50_000, "random", 5},
		{60_000, 50_000, "random", 4},
		{49_999, 50_000, "random", 1},
	} {
		for _, bounds := range []string{"inclusive", "exclusive"} {
			t.Run(fmt.Sprintf("%s/%s/%d", tc.order, bounds, tc.n), func(t *testing.T) {
				r := rand.New(rand.NewPCG(uint64(tc.n), 11))
				api := &simAPI{times: synth(r, tc.n, 2000), order: tc.order, bounds: bounds, limit: tc.limit}
				api.rank = make([]uint64, tc.n)
				for i := range api.rank {
					api.rank[i] = r.Uint64()
				}
				api.seen = make([]bool, tc.n)
				if err := api.run(NewPlanner(tc.limit, Window{})); err != nil {
					t.Fatal(err)
				}
				if i := slices.Index(api.seen, false); i >= 0 {
					t.Fatalf("row %d never fetched", i)
				}
				t.Logf("%d rows, limit %d, %s order: %d calls (minimum %d)", tc.n, tc.limit, tc.order, api.calls, MinCalls(tc.n, tc.limit))
				if api.calls > tc.maxCalls {
					t.Errorf("%d calls, want at most %d", api.calls, tc.maxCalls)
				}
			})
		}
	}
}

// TestRowsOutsideTheWindow checks that rows the request did not ask for
// (the API ignores created_after/created_before) stop the planner with a
// *ProtocolError, and that the edges either bound rule returns do not.
func TestRowsOutsideTheWindow(t *testing.T) {
	from := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
	to := from.Add(time.Hour)
	us := func(d time.Duration) int64 { return from.Add(d).UnixMicro() }
	tests := []struct {
		name   string
		w      Window
		times  []int64
		rows   int // 0: len(times)
		bad    bool
		wantAt string // the first row outside, as the message names it
	}{
		{"inside", Window{From: from, To: to}, []int64{us(0), us(time.Minute)}, 0, false, ""},
		{"inclusive edges", Window{From: from, To: to}, []int64{us(-time.Microsecond), us(time.Hour)}, 0, false, ""},
		{"bounds kept to the second", Window{From: from.Add(500 * time.Millisecond), To: to.Add(500 * time.Millisecond)}, []int64{us(0), us(time.Hour + time.Second)}, 0, false, ""},
		{"before created_after", Window{From: from, To: to}, []int64{us(time.Minute), us(-2*time.Second - 2*time.Microsecond)}, 0, true, "2024-02-29T23:59:57.999998Z"},
		{"after created_before", Window{From: from, To: to}, []int64{us(time.Hour + time.Second + time.Microsecond)}, 0, true, "2024-03-01T01:00:01.000001Z"},
		{"no lower bound", Window{To: to}, []int64{us(-24 * time.Hour)}, 0, false, ""},
		{"no upper bound", Window{From: from}, []int64{us(24 * time.Hour)}, 0, false, ""},
		{"a truncated window", Window{From: from, To: to}, []int64{us(time.Minute), us(-time.Hour), us(2 * time.Minute)}, 3, true, "2024-02-29T23:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewPlanner(3, tt.w)
			if _, ok := p.Next(); !ok {
				t.Fatal("no window")
			}
			rows := tt.rows
			if rows == 0 {
				rows = len(tt.times)
			}
			err := p.Done(Tally{Rows: rows, Times: tt.times})
			if !tt.bad {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var pe *ProtocolError
			if !errors.As(err, &pe) || !errors.Is(err, ErrProtocol) {
				t.Fatalf("got %v, want a *ProtocolError", err)
			}
			for _, s := range []string{"outside the requested window", "seems to ignore created_after/created_before", tt.wantAt, FormatTime(from.Add(-time.Second))} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message %q lacks %q", err, s)
				}
			}
			// The window stays pending: nothing of it is known.
			if got := p.Pending(); len(got) != 1 || !got[0].From.Equal(tt.w.From) || !got[0].To.Equal(tt.w.To) {
				t.Errorf("pending %v, want %v", got, tt.w)
			}
		})
	}
}

// TestPlannerAdjacentBursts covers bursts in consecutive seconds that
// together pass the limit while each fits: a window ending on the second
// burst's instant gets both under an inclusive bound, with only the first
// inside it. It must split right after that instant, not give up.
func TestPlannerAdjacentBursts(t *testing.T) {
	base := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, order := range []string{"asc", "desc", "random"} {
		for _, bounds := range []string{"inclusive", "exclusive", "mixed"} {
			t.Run(order+"/"+bounds, func(t *testing.T) {
				var times []int64
				for i := 0; i < 40; i++ {
					times = append(times, base.Add(time.Duration(i-60)*time.Minute).UnixMicro())
				}
				for s := 0; s < 3; s++ {
					for i := 0; i < 75; i++ {
						times = append(times, base.Add(time.Duration(s)*time.Second).UnixMicro())
					}
				}
				for i := 0; i < 40; i++ {
					times = append(times, base.Add(time.Duration(i+1)*time.Minute).UnixMicro())
				}
				r := rand.New(rand.NewPCG(3, 4))
				api := &simAPI{times: times, order: order, bounds: bounds, limit: 100, seen: make([]bool, len(times))}
				for range times {
					api.rank = append(api.rank, r.Uint64())
				}
				// Windows that end exactly on a burst, as a resumed or
				// incremental run's do.
				for _, w := range []Window{{}, {To: base.Add(time.Second)}, {From: base.Add(-time.Hour), To: base.Add(2 * time.Second)}} {
					clear(api.seen)
					api.calls = 0
					p := NewPlanner(100, w)
					if err := api.run(p); err != nil {
						t.Fatalf("window %s: %v", w, err)
					}
					for i, ts := range times {
						if (w.From.IsZero() || ts >= w.From.UnixMicro()) && (w.To.IsZero() || ts < w.To.UnixMicro()) && !api.seen[i] {
							t.Fatalf("window %s: row %d at %s never fetched", w, i, time.UnixMicro(ts).UTC())
						}
					}
				}
			})
		}
	}
}

// TestCutsLeaveNoEmptyPiece cuts samples with repeated instants at every
// spacing: no piece may be empty (a saved empty window made the next run
// refuse its destination).
func TestCutsLeaveNoEmptyPiece(t *testing.T) {
	for _, sample := range [][]int64{{10, 10, 10, 20, 20, 30}, {5, 5, 5, 5}, {1, 2, 2, 2, 2, 3, 3, 9}} {
		pd := pending{s: span{0, 100}, sample: sample, dens: &density{}}
		for n := 1; n <= len(sample); n++ {
			pieces := cutEvery(pd, n)
			lo := pd.s.lo
			for _, piece := range pieces {
				if piece.s.lo >= piece.s.hi || piece.s.lo != lo {
					t.Errorf("sample %v, every %d: pieces %v are not a tiling of non-empty pieces", sample, n, pieces)
					break
				}
				lo = piece.s.hi
			}
			if lo != pd.s.hi {
				t.Errorf("sample %v, every %d: pieces %v do not end at %d", sample, n, pieces, pd.s.hi)
			}
		}
	}
}

// TestPlannerSizesPieces follows an unordered, truncated window through
// its split: a probe of 1/64 of the sample first, then the rest cut, when
// the probe's density says it holds more than the limit less half the
// margin Fill leaves, into pieces sized for Fill of the limit. Only the
// probe's rows inside it count towards the density (an inclusive bound adds
// the rows at its end instant, which belong to the next piece). A piece
// that comes back truncated all the same is cut for a quarter more rows than
// it held.
func TestPlannerSizesPieces(t *testing.T) {
	const limit = 1000
	from := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	// Instants step apart from start, in pairs swapped: neither ascending
	// nor descending, so the planner takes a full response as a sample.
	unordered := func(start int64, n int, step int64) []int64 {
		out := make([]int64, n)
		for i := range out {
			j := i ^ 1
			if j >= n {
				j = i
			}
			out[i] = start + int64(j)*step
		}
		return out
	}
	first := unordered(from.UnixMicro(), limit, 1e6) // one a second
	sorted := slices.Sorted(slices.Values(first))
	const probeN = limit / 64 // the probe's sampled instants: 15
	tests := []struct {
		name       string
		fill       float64
		probeRows  func(instants []int64, end int64) []int64 // the probe's answer
		wantPieces int                                       // the rest (985 sampled instants) is cut into
		// If set, the first piece then comes back truncated with limit
		// rows of its own, and is cut into this many.
		wantRecut int
	}{
		{"one row an instant: 985 rows, over 95% of the limit", 0,
			func(in []int64, _ int64) []int64 { return in }, 2, 0},
		{"rows at the probe's end instant do not count", 0,
			func(in []int64, end int64) []int64 {
				for range 30 {
					in = append(in, end)
				}
				return in
			}, 2, 0},
		{"four rows in five instants: 788 rows, fetched whole", 0,
			func(in []int64, _ int64) []int64 { return in[:12] }, 1, 0},
		{"two rows an instant: 1970 rows, three pieces", 0,
			func(in []int64, _ int64) []int64 { return append(slices.Clone(in), in...) }, 3, 0},
		{"a truncated piece is cut for a quarter more than the limit", 0.6,
			func(in []int64, _ int64) []int64 { return in }, 2, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := Window{From: from, To: from.Add(2 * limit * time.Second)}
			p := NewPlanner(limit, w)
			p.Fill = tt.fill
			if _, ok := p.Next(); !ok {
				t.Fatal("no window")
			}
			if err := p.Done(Tally{Rows: limit, Times: first}); err != nil {
				t.Fatal(err)
			}
			probe, _ := p.Next()
			// The probe ends at a whole second after the 15th sampled
			// instant, midway to the 16th's second where they are apart:
			// here, a second apart, at the 16th.
			end := sorted[probeN]
			if !probe.From.Equal(w.From) || probe.To.UnixMicro() != end {
				t.Fatalf("probe %s, want [%s, %s)", probe, w.From, time.UnixMicro(end).UTC())
			}
			rows := tt.probeRows(slices.Clone(sorted[:probeN]), end)
			if err := p.Done(Tally{Rows: len(rows), Times: rows}); err != nil {
				t.Fatal(err)
			}
			piece, _ := p.Next()
			pieces := p.Pending()
			if len(pieces) != tt.wantPieces {
				t.Fatalf("the rest is cut into %d pieces %v, want %d", len(pieces), pieces, tt.wantPieces)
			}
			if pieces[0].From.UnixMicro() != end || !pieces[len(pieces)-1].To.Equal(w.To) {
				t.Errorf("pieces %v do not cover the rest [%s, %s)", pieces, time.UnixMicro(end).UTC(), w.To)
			}
			if tt.wantRecut == 0 {
				return
			}
			// limit rows, every 400 ms of the piece's first 400 seconds.
			again := unordered(piece.From.UnixMicro(), limit, 4e5)
			if err := p.Done(Tally{Rows: limit, Times: again}); err != nil {
				t.Fatal(err)
			}
			if got := len(p.Pending()) - (len(pieces) - 1); got != tt.wantRecut {
				t.Errorf("the truncated piece is cut into %d pieces %v, want %d", got, p.Pending(), tt.wantRecut)
			}
		})
	}
}
