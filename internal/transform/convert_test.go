package transform

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestParseTimestampAgreesWithTime formats random instants with random
// offsets and precisions and checks that parseTimestamp reads them as the
// time package does, truncated to the microsecond.
func TestParseTimestampAgreesWithTime(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 7))
	layouts := []string{
		time.RFC3339, time.RFC3339Nano,
		"2006-01-02T15:04:05.000Z07:00",
		"2006-01-02 15:04:05.999999999-0700",
		"2006-01-02T15:04:05-07",
	}
	lo := time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	hi := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC).Unix()
	for range 20000 {
		at := time.Unix(lo+rnd.Int64N(hi-lo), rnd.Int64N(1e9)).UTC()
		off := (rnd.IntN(2*(24*60-1)+1) - (24*60 - 1)) * 60 // up to ±23:59
		layout := layouts[rnd.IntN(len(layouts))]
		if layout == "2006-01-02T15:04:05-07" {
			off -= off % 3600
		}
		zone := time.FixedZone("", off)
		s := at.In(zone).Format(layout)
		want, err := time.Parse(layout, s)
		if err != nil {
			continue // the time package cannot read its own output for every zone
		}
		got, ok := parseTimestamp([]byte(s))
		if !ok || got != want.Truncate(time.Microsecond).UnixMicro() {
			t.Fatalf("%s: got %d, %v; want %d", s, got, ok, want.Truncate(time.Microsecond).UnixMicro())
		}
	}
}

func TestParseTimestampRefuses(t *testing.T) {
	for _, s := range []string{
		"", "2026-04-15", "2026-04-15T09:00:00", "2026-04-15T09:00:00+", "2026-04-15T09:00:00+1",
		"2026-04-15T09:00:00+01:", "2026-04-15T09:00:00+01:6", "2026-04-15T09:00:00+24:00",
		"2026-04-15T09:00:00+01:60", "2026-04-15T09:00:00.Z", "2026-04-15T24:00:00Z", "2026-04-15T09:60:00Z",
		"2026-04-15T09:00:00ZZ", "2026-04-15X09:00:00Z", "2026-4-15T09:00:00Z", "2026-04-31T09:00:00Z",
		"1900-02-29T09:00:00Z", "2026-00-10T09:00:00Z", "2026-04-00T09:00:00Z", "+2026-04-15T09:00:00Z",
		"2026-04-15T09:00:0Z", " 2026-04-15T09:00:00Z", "2026-04-15T09:00:00Z ",
	} {
		t.Run(s, func(t *testing.T) {
			if got, ok := parseTimestamp([]byte(s)); ok {
				t.Errorf("accepted as %d", got)
			}
		})
	}
}
