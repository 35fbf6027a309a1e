package fakeapi

import (
	"cmp"
	"slices"
	"sort"
	"time"
)

// Move changes the created_at of the contacts at the given indexes to t
// (to the microsecond): the API's spec does not promise that a contact's
// created_at never changes, so an export of t's range returns them and
// an export of their old one no longer does. Their index, id and other
// fields stay.
func (s *Server) Move(t time.Time, idx ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ds.Store(s.ds.Load().movedTo(idx, t.UnixMicro()))
}

// movedTo returns d with the contacts at idx created at t (Unix µs).
func (d *Dataset) movedTo(idx []int, t int64) *Dataset {
	next := d.clone()
	next.moved = make(map[int32]int64, len(d.moved)+len(idx))
	for k, v := range d.moved {
		next.moved[k] = v
	}
	for _, i := range idx {
		next.moved[int32(i)] = t
	}
	return next
}

// createdOf returns contact i's creation time in Unix µs, moved or not
// (at is where it sits in the order of the dataset).
func (d *Dataset) createdOf(i int) int64 {
	if t, ok := d.moved[int32(i)]; ok {
		return t
	}
	return d.at(i)
}

// inRange returns the indexes of the contacts created within the inclusive
// bounds [lo, hi] (Unix µs), moved ones at their new time, ascending by
// creation time, ties in dataset order.
func (d *Dataset) inRange(lo, hi int64) []int32 {
	from, to := d.search(lo, hi)
	var moved []int32
	for i, t := range d.moved {
		if t >= lo && t <= hi {
			moved = append(moved, i)
		}
	}
	order := func(a, b int32) int {
		return cmp.Or(cmp.Compare(d.createdOf(int(a)), d.createdOf(int(b))), cmp.Compare(a, b))
	}
	slices.SortFunc(moved, order)
	out := make([]int32, 0, to-from+len(moved))
	for i := from; i < to; i++ {
		if _, ok := d.moved[int32(i)]; ok {
			continue
		}
		for len(moved) > 0 && order(moved[0], int32(i)) < 0 {
			out, moved = append(out, moved[0]), moved[1:]
		}
		out = append(out, int32(i))
	}
	return append(out, moved...)
}

// selectMoved is selectRows for a dataset with moved contacts.
func (s *Server) selectMoved(d *Dataset, q query, match func(int) bool) []int32 {
	cands := d.inRange(q.lo, q.hi)
	cands = slices.DeleteFunc(cands, func(i int32) bool { return !match(int(i)) })
	switch s.cfg.Order {
	case OrderDesc:
		slices.Reverse(cands)
	case OrderRandom:
		sort.SliceStable(cands, func(a, b int) bool { return d.rank(int(cands[a])) < d.rank(int(cands[b])) })
	}
	return cands[:min(len(cands), q.limit)]
}
