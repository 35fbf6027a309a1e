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

// synthDense makes n sorted instants in groups that share a second, in
// neighbouring seconds: some groups at the whole second, some at one
// instant within it, most spread over it to the microsecond; a group has
// at most burst rows.
func synthDense(r *rand.Rand, n, burst int) []int64 {
	t := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	out := make([]int64, 0, n)
	for len(out) < n {
		size := 1
		switch x := r.Float64(); {
		case x < 0.05:
			size = 1 + r.IntN(burst)
		case x < 0.5:
			size = 2 + r.IntN(min(8, burst))
		}
		size = min(size, n-len(out))
		g := make([]int64, size)
		switch x := r.Float64(); {
		case x < 0.25:
			for k := range g {
				g[k] = t
			}
		case x < 0.4:
			f := t + r.Int64N(second)
			for k := range g {
				g[k] = f
			}
		default:
			for k := range g {
				g[k] = t + r.Int64N(second)
			}
		}
		slices.Sort(g)
		out = append(out, g...)
		t += int64(1+r.IntN(3)) * second
	}
	return out
}

// runChecked drives p against s like run, and checks after every answer
// that the part of the window it is taken to have exported completely
// (the window less what stays pending, within Window.Certain: what tells
// deletions) holds no row the answer lacked.
func (s *simAPI) runChecked(p *Planner) error {
	for {
		w, ok := p.Next()
		if !ok {
			return nil
		}
		if s.calls > 10*len(s.times)/s.limit+100 {
			return errors.New("planner loops")
		}
		t := s.export(w)
		got := map[int]bool{}
		for _, i := range s.last {
			got[i] = true
		}
		if err := p.Done(t); err != nil {
			return err
		}
		c := toSpan(w.Certain())
		for i, ts := range s.times {
			if ts < c.lo || ts >= c.hi || got[i] {
				continue
			}
			pendingHas := false
			for _, pw := range p.Pending() {
				if ps := toSpan(pw); ts >= ps.lo && ts < ps.hi {
					pendingHas = true
				}
			}
			if !pendingHas {
				return fmt.Errorf("window %s (asked %v) is taken as complete, but its answer lacks the row at %s: a false deletion",
					w, w.Apply(Query{}).Values(), time.UnixMicro(ts).UTC().Format(time.RFC3339Nano))
			}
		}
	}
}

// TestPlannerBoundsKeptCoarsely runs the planner against simulated APIs
// that keep created_after/created_before to the second or the millisecond
// (truncated, rounded to the nearest or up) or as sent, with every bound
// rule and row order, on instants within neighbouring seconds: no row is
// ever lost, and no range is taken as exported completely that the answer
// did not cover. Groups small enough to be split at whole seconds are
// always exported; larger ones may end in an *OverflowError naming their
// second, never in a loss.
func TestPlannerBoundsKeptCoarsely(t *testing.T) {
	type precision struct {
		unit  int64
		round string
	}
	precisions := []precision{{0, ""}, {1000, ""}, {second, ""}, {second, "nearest"}, {second, "ceil"}}
	for _, pr := range precisions {
		for _, order := range []string{"asc", "desc", "random"} {
			for _, bounds := range []string{"inclusive", "exclusive", "mixed"} {
				for _, tc := range []struct{ n, limit, burst int }{{3000, 100, 20}, {3000, 200, 20}, {5000, 100, 60}} {
					name := fmt.Sprintf("unit=%d%s/%s/%s/n=%d,limit=%d,burst=%d", pr.unit, pr.round, order, bounds, tc.n, tc.limit, tc.burst)
					t.Run(name, func(t *testing.T) {
						r := rand.New(rand.NewPCG(uint64(tc.n+tc.limit), uint64(tc.burst)))
						api := &simAPI{times: synthDense(r, tc.n, tc.burst), order: order, bounds: bounds, limit: tc.limit, unit: pr.unit, round: pr.round}
						api.rank = make([]uint64, tc.n)
						for i := range api.rank {
							api.rank[i] = r.Uint64()
						}
						api.seen = make([]bool, tc.n)
						p := NewPlanner(tc.limit, Window{To: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)})
						err := api.runChecked(p)
						var oe *OverflowError
						switch {
						case err == nil:
						case errors.As(err, &oe) && 3*tc.burst > tc.limit:
							t.Logf("%v after %d calls", err, api.calls)
							return
						default:
							t.Fatal(err)
						}
						for i, ok := range api.seen {
							if !ok {
								t.Fatalf("row %d at %s never fetched", i, time.UnixMicro(api.times[i]).UTC().Format(time.RFC3339Nano))
							}
						}
						t.Logf("%d calls, minimum %d", api.calls, MinCalls(tc.n, tc.limit))
					})
				}
			}
		}
	}
}

// TestPlannerOverflowOfOneSecond: more rows than the limit within one
// second, at distinct instants, from an API that keeps bounds to the
// second: an *OverflowError names the second after a few calls, in every
// order and bound rule, never a loop nor a window taken as complete that
// was not. From an API that keeps bounds as sent, the planner may get
// through by asking to the microsecond (it checks what it gets); if it
// cannot, it names the second too.
func TestPlannerOverflowOfOneSecond(t *testing.T) {
	base := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, unit := range []int64{second, 0} {
		for _, order := range []string{"asc", "desc", "random"} {
			for _, bounds := range []string{"inclusive", "exclusive", "mixed"} {
				t.Run(fmt.Sprintf("unit=%d/%s/%s", unit, order, bounds), func(t *testing.T) {
					r := rand.New(rand.NewPCG(5, 6))
					var times []int64
					for i := 0; i < 50; i++ {
						times = append(times, base.Add(time.Duration(i-60)*time.Minute).UnixMicro())
					}
					for i := 0; i < 150; i++ {
						times = append(times, base.UnixMicro()+r.Int64N(second))
					}
					for i := 0; i < 50; i++ {
						times = append(times, base.Add(time.Duration(i+1)*time.Minute).UnixMicro())
					}
					slices.Sort(times)
					api := &simAPI{times: times, order: order, bounds: bounds, limit: 100, unit: unit, seen: make([]bool, len(times))}
					for range times {
						api.rank = append(api.rank, r.Uint64())
					}
					p := NewPlanner(100, Window{})
					err := api.runChecked(p)
					var oe *OverflowError
					switch {
					case err == nil && unit == 0:
						if i := slices.Index(api.seen, false); i >= 0 {
							t.Fatalf("row %d never fetched", i)
						}
						t.Logf("exported in %d calls by asking to the microsecond", api.calls)
						return
					case !errors.As(err, &oe) || !errors.Is(err, ErrTimestampOverflow):
						t.Fatalf("got %v, want an *OverflowError", err)
					case !oe.Second || !oe.At.Equal(base):
						t.Errorf("overflow names %s (second: %v), want the second %s", oe.At, oe.Second, base)
					}
					if msg := err.Error(); !strings.Contains(msg, "within the second 2024-05-01T12:00:00Z") || !strings.Contains(msg, "finer than whole seconds") {
						t.Errorf("message %q does not name the second and why", msg)
					}
					if api.calls > 16 {
						t.Errorf("took %d calls to find the overflow", api.calls)
					}
					if len(p.Pending()) == 0 {
						t.Error("the failed window is not pending any more")
					}
					t.Logf("%d calls: %v", api.calls, err)
				})
			}
		}
	}
}

// TestWindowCertain: a window asked with whole seconds, or with an exact
// edge an answer has checked, is certain whole; an exact edge no answer
// could check loses its second, which a coarse API may have kept it as.
func TestWindowCertain(t *testing.T) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	us := func(d time.Duration) time.Time { return at.Add(d) }
	for _, tc := range []struct {
		name     string
		w        Window
		from, to time.Time
	}{
		{"whole seconds", Window{From: us(-time.Hour), To: us(time.Hour)}, us(-time.Hour), us(time.Hour)},
		{"fractions, asked with whole seconds", Window{From: us(1500 * time.Millisecond), To: us(time.Hour + 3*time.Microsecond)}, us(1500 * time.Millisecond), us(time.Hour + 3*time.Microsecond)},
		{"checked exact edges", Window{From: us(2 * time.Microsecond), To: us(time.Hour + 3*time.Microsecond), exact: exactFrom | exactTo}, us(2 * time.Microsecond), us(time.Hour + 3*time.Microsecond)},
		{"unchecked exact start", Window{From: us(2 * time.Microsecond), To: us(time.Hour), exact: exactFrom, unsure: exactFrom}, us(time.Second + time.Microsecond), us(time.Hour)},
		{"unchecked exact end", Window{From: us(-time.Hour), To: us(2 * time.Microsecond), exact: exactTo, unsure: exactTo}, us(-time.Hour), at},
		{"nothing certain", Window{From: us(2 * time.Microsecond), To: us(5 * time.Microsecond), exact: exactFrom | exactTo, unsure: exactFrom | exactTo}, us(time.Second + time.Microsecond), us(time.Second + time.Microsecond)},
		{"unbounded", Window{exact: exactFrom | exactTo, unsure: exactFrom | exactTo}, time.Time{}, time.Time{}},
	} {
		got := tc.w.Certain()
		if !got.From.Equal(tc.from) || !got.To.Equal(tc.to) {
			t.Errorf("%s: Certain(%s) = %s, want [%s, %s)", tc.name, tc.w, got, tc.from, tc.to)
		}
	}
	// The piece that starts just after an instant cut out of an unordered
	// window has no instant to check its start by: it is unsure there.
	p := NewPlanner(100, Window{From: at.Add(-time.Hour), To: at.Add(5 * time.Second)})
	p.Next()
	var times []int64
	for i := range 100 {
		if i%10 == 3 {
			times = append(times, at.Add(5*time.Second).UnixMicro()) // at the end, which an inclusive bound adds
		} else {
			times = append(times, at.UnixMicro())
		}
	}
	if err := p.Done(Tally{Rows: 100, Times: times}); err != nil {
		t.Fatal(err)
	}
	ws := p.Pending()
	if c := ws[0].Certain(); len(ws) != 2 || !c.From.Equal(ws[0].From) || !c.To.Equal(ws[0].To) || !ws[1].Certain().From.Equal(at.Add(time.Second+time.Microsecond)) {
		t.Errorf("pieces %v, certain %v and %v", ws, ws[0].Certain(), ws[len(ws)-1].Certain())
	}
}
