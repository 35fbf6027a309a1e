package load

import (
	"reflect"
	"testing"
	"time"
)

func TestCoverage(t *testing.T) {
	at := func(h int) time.Time { return time.Date(2025, 1, 1, h, 0, 0, 0, time.UTC) }
	v1, v2 := at(100), at(200)
	var c Coverage
	c = c.Add(Segment{To: at(10), VerifiedAt: v1, Rows: 100})
	c = c.Add(Segment{From: at(20), To: at(30), VerifiedAt: v1, Rows: 10})
	if f := c.Frontier(); !f.Equal(at(10)) {
		t.Errorf("frontier %s, want the end of the first run of segments", f)
	}
	// A newer export over part of the first segment splits it.
	c = c.Add(Segment{From: at(5), To: at(15), VerifiedAt: v2, Rows: 30})
	want := Coverage{
		{To: at(5), VerifiedAt: v1, Rows: 50},
		{From: at(5), To: at(15), VerifiedAt: v2, Rows: 30},
		{From: at(20), To: at(30), VerifiedAt: v1, Rows: 10},
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("after Add:\n got  %v\n want %v", c, want)
	}
	if f := c.Frontier(); !f.Equal(at(15)) {
		t.Errorf("frontier %s, want %s", f, at(15))
	}
	// Filling the gap joins the runs of segments.
	c = c.Add(Segment{From: at(15), To: at(20), VerifiedAt: v2, Rows: 5})
	if f := c.Frontier(); !f.Equal(at(30)) {
		t.Errorf("frontier %s after filling the gap, want %s", f, at(30))
	}
	if o := c.Oldest(); !o.Equal(v1) {
		t.Errorf("oldest %s", o)
	}
	// Compact merges touching segments up to a row count, keeping the older
	// time, and only those verified about together.
	if got := c.Compact(1000, time.Hour); len(got) != 3 {
		t.Errorf("Compact with a tolerance of an hour merged segments verified 100 hours apart: %v", got)
	}
	got := c.Compact(40, 1000*time.Hour)
	want = Coverage{
		{To: at(5), VerifiedAt: v1, Rows: 50},
		{From: at(5), To: at(20), VerifiedAt: v2, Rows: 35},
		{From: at(20), To: at(30), VerifiedAt: v1, Rows: 10},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Compact(40):\n got  %v\n want %v", got, want)
	}
	if got := c.Compact(1000, 1000*time.Hour); len(got) != 1 || !got[0].VerifiedAt.Equal(v1) || got[0].Rows != 95 || !got[0].To.Equal(at(30)) {
		t.Errorf("Compact(1000): %v", got)
	}
	// An open-ended segment replaces everything after its start.
	open := c.Add(Segment{From: at(25), VerifiedAt: v2, Rows: 1})
	if last := open[len(open)-1]; !last.To.IsZero() || !last.From.Equal(at(25)) {
		t.Errorf("open-ended Add: %v", open)
	}
	if !open.Contains(at(1000)) || open.Contains(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)) == false {
		t.Errorf("an open end contains every later instant: %v", open)
	}
	// Intersect keeps what both cover, as old as the older.
	d := Coverage{{From: at(3), To: at(25), VerifiedAt: at(50), Rows: 7}}
	inter := c.Intersect(d)
	if from, to := inter.Span(); !from.Equal(at(3)) || !to.Equal(at(25)) || !inter.Oldest().Equal(at(50)) {
		t.Errorf("Intersect: %v", inter)
	}
	if len(Coverage(nil).Intersect(d)) != 0 || !Coverage(nil).Frontier().IsZero() {
		t.Error("an empty coverage intersects to nothing and has no frontier")
	}
	// A history that begins at 20 ends at 30, whatever was synced before
	// it; one that begins in a gap ends where the segments after it do.
	gaps := Coverage{{To: at(5)}, {From: at(5), To: at(15)}, {From: at(20), To: at(30)}}
	for start, want := range map[int]time.Time{20: at(30), 25: at(30), 17: at(30), 30: {}, 3: at(15)} {
		if f := gaps.FrontierFrom(at(start)); !f.Equal(want) {
			t.Errorf("frontier from %d: %s, want %s", start, f, want)
		}
	}
}

// TestCoverageFromTheOldCursor reads states written before coverage: a
// cursor means everything before it, as of the state's last update.
func TestCoverageFromTheOldCursor(t *testing.T) {
	cursor := time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC)
	updated := time.Date(2025, 5, 1, 0, 0, 1, 0, time.UTC)
	got, err := decodeCoverage("")
	if err != nil || got != nil {
		t.Fatal(got, err)
	}
	if c := coverageFromCursor(cursor, updated); !reflect.DeepEqual(c, Coverage{{To: cursor, VerifiedAt: updated}}) {
		t.Errorf("coverage from a cursor: %v", c)
	}
	for _, bad := range []string{
		`[{"from":"2025-01-02T00:00:00Z","to":"2025-01-01T00:00:00Z","verified_at":""}]`,
		`[{"to":"2025-01-05T00:00:00Z","verified_at":""},{"from":"2025-01-04T00:00:00Z","verified_at":""}]`,
		`[{"from":"yesterday","verified_at":""}]`,
		`[{"to":"2025-01-05T00:00:00Z","verified_at":"","rows":-1}]`,
	} {
		if c, err := decodeCoverage(bad); err == nil {
			t.Errorf("%s read as %v, want an error", bad, c)
		}
	}
}
