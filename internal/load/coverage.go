package load

import (
	"math"
	"slices"
	"time"
)

// Segment is a created_at range of a stream known to be synced: every
// contact the API returned for it is stored. VerifiedAt is when it was last
// exported completely (by the run that first synced it, or by a refresh);
// Rows is how many contacts that export held, an estimate of what the next
// refresh of it costs.
type Segment struct {
	From, To   time.Time // [From, To); a zero From is the beginning of time, a zero To no end
	VerifiedAt time.Time
	Rows       int64
}

// Coverage is a stream's synced created_at ranges: segments sorted by From,
// disjoint. Adjacent segments may touch.
type Coverage []Segment

// Open bounds in Unix microseconds.
const (
	negInf = math.MinInt64
	posInf = math.MaxInt64
)

func lo(t time.Time) int64 {
	if t.IsZero() {
		return negInf
	}
	return t.UnixMicro()
}

func hi(t time.Time) int64 {
	if t.IsZero() {
		return posInf
	}
	return t.UnixMicro()
}

func fromMicro(us int64) time.Time {
	if us == negInf || us == posInf {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

// Frontier is where the stream's synced history ends when it begins at the
// beginning of time: FrontierFrom(time.Time{}).
func (c Coverage) Frontier() time.Time { return c.FrontierFrom(time.Time{}) }

// FrontierFrom is where the synced history that begins at start ends: the
// end of the first segment that ends after start, and of those that follow
// it without a gap. An incremental run continues there, less its lookback:
// a gap after it is one a run with a later --since skipped, which the next
// run fills; ranges before start are backfills (--since and --until before
// the history), which neither pull the cursor back to their end nor make a
// plain run export the gap the user left between them and the history.
// Zero when no segment ends after start.
func (c Coverage) FrontierFrom(start time.Time) time.Time {
	i := 0
	for i < len(c) && !start.IsZero() && !c[i].To.IsZero() && !c[i].To.After(start) {
		i++
	}
	if i == len(c) {
		return time.Time{}
	}
	end := c[i].To
	for _, s := range c[i+1:] {
		if end.IsZero() || s.From.After(end) {
			break
		}
		end = s.To
	}
	return end
}

// Add returns c with s added: s replaces whatever part of c it overlaps (it
// is the newer export). Parts of a segment that s cuts keep its
// VerifiedAt, with Rows shared out by the time each part spans.
func (c Coverage) Add(s Segment) Coverage {
	sl, sh := lo(s.From), hi(s.To)
	if sl >= sh {
		return c
	}
	out := make(Coverage, 0, len(c)+2)
	for _, o := range c {
		ol, oh := lo(o.From), hi(o.To)
		if oh <= sl || ol >= sh {
			out = append(out, o)
			continue
		}
		if ol < sl {
			out = append(out, part(o, ol, sl))
		}
		if oh > sh {
			out = append(out, part(o, sh, oh))
		}
	}
	out = append(out, s)
	slices.SortFunc(out, func(a, b Segment) int { return cmpMicro(lo(a.From), lo(b.From)) })
	return out
}

// part is the piece [l, h) of o, with its share of o's rows.
func part(o Segment, l, h int64) Segment {
	p := Segment{From: fromMicro(l), To: fromMicro(h), VerifiedAt: o.VerifiedAt}
	ol, oh := lo(o.From), hi(o.To)
	if ol == negInf || oh == posInf || oh <= ol {
		p.Rows = o.Rows / 2
	} else {
		p.Rows = int64(math.Round(float64(o.Rows) * float64(h-l) / float64(oh-ol)))
	}
	return p
}

func cmpMicro(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Compact merges touching segments verified within tolerance of each
// other while the merged one holds at most maxRows rows, so that hourly
// incremental runs do not grow the state without end. A merged segment is
// as old as the older of the two.
func (c Coverage) Compact(maxRows int64, tolerance time.Duration) Coverage {
	out := make(Coverage, 0, len(c))
	for _, s := range c {
		if n := len(out); n > 0 {
			last := &out[n-1]
			gap := last.VerifiedAt.Sub(s.VerifiedAt)
			if !last.To.IsZero() && last.To.Equal(s.From) && last.Rows+s.Rows <= maxRows && gap <= tolerance && -gap <= tolerance {
				last.To, last.Rows = s.To, last.Rows+s.Rows
				if s.VerifiedAt.Before(last.VerifiedAt) {
					last.VerifiedAt = s.VerifiedAt
				}
				continue
			}
		}
		out = append(out, s)
	}
	return out
}

// Intersect returns the ranges both c and d cover, each part as old as the
// older of the two and with the smaller row estimate.
func (c Coverage) Intersect(d Coverage) Coverage {
	var out Coverage
	for _, a := range c {
		for _, b := range d {
			l, h := max(lo(a.From), lo(b.From)), min(hi(a.To), hi(b.To))
			if l >= h {
				continue
			}
			s := Segment{From: fromMicro(l), To: fromMicro(h), VerifiedAt: a.VerifiedAt, Rows: min(a.Rows, b.Rows)}
			if b.VerifiedAt.Before(s.VerifiedAt) {
				s.VerifiedAt = b.VerifiedAt
			}
			out = append(out, s)
		}
	}
	return out
}

// Oldest returns the earliest VerifiedAt of c, zero when c is empty: the
// worst staleness of the stream's copy.
func (c Coverage) Oldest() time.Time {
	var t time.Time
	for _, s := range c {
		if t.IsZero() || s.VerifiedAt.Before(t) {
			t = s.VerifiedAt
		}
	}
	return t
}

// Span returns [From, To) covering every segment; zero when c is empty.
func (c Coverage) Span() (from, to time.Time) {
	if len(c) == 0 {
		return time.Time{}, time.Time{}
	}
	return c[0].From, c[len(c)-1].To
}

// Contains reports whether t lies in a segment.
func (c Coverage) Contains(t time.Time) bool {
	u := t.UnixMicro()
	for _, s := range c {
		if lo(s.From) <= u && u < hi(s.To) {
			return true
		}
	}
	return false
}
