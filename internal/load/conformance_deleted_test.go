package load_test

import (
	"time"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/load"
)

func init() {
	conformanceCases = append(conformanceCases, struct {
		name string
		run  func(c *conformance)
	}{"AlreadyDeletedAreNotMarkedAgain", func(c *conformance) {
		jan := []extract.Window{{From: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC)}}
		refresh := func(i *load.WindowInfo) { i.Deletes, i.Refresh = jan, true }
		stamps := func() map[string]string {
			out := map[string]string{}
			for id, r := range c.rows("id", "_deleted_at") {
				out[id] = r["_deleted_at"]
			}
			return out
		}
		if ch := c.commit(header+uA+",A,,,,,,,2024-01-02T00:00:00Z\n"+uB+",B,,,,,,,2024-01-03T00:00:00Z\n"+uX+",X,,,,,,,2024-01-05T00:00:00Z\n", st1); ch != (load.Changes{Inserted: 3}) {
			c.t.Errorf("first window: %+v, want 3 inserted", ch)
		}
		// A refresh of January finds only A: B and X are deleted.
		if ch := c.commitWith(header+uA+",A,,,,,,,2024-01-02T00:00:00Z\n", st1, refresh); ch != (load.Changes{Replaced: 1, Deleted: 2}) {
			c.t.Errorf("first refresh: %+v, want 1 replaced, 2 deleted", ch)
		}
		first := stamps()
		if first[uA] != "<null>" || first[uB] == "<null>" || first[uX] == "<null>" {
			c.t.Fatalf("after the first refresh: %v, want B and X marked deleted", first)
		}
		// The next refresh finds the same: the deleted are neither counted
		// nor stamped again (_deleted_at says when they were first missed).
		if ch := c.commitWith(header+uA+",A,,,,,,,2024-01-02T00:00:00Z\n", st1, refresh); ch != (load.Changes{Replaced: 1}) {
			c.t.Errorf("second refresh: %+v, want 1 replaced and no deletion", ch)
		}
		if got := stamps(); got[uB] != first[uB] || got[uX] != first[uX] {
			c.t.Errorf("_deleted_at after the second refresh: %v, want %v kept", got, first)
		}
		// B comes back; X is still missing and keeps its first stamp.
		c.reopen()
		if ch := c.commitWith(header+uA+",A,,,,,,,2024-01-02T00:00:00Z\n"+uB+",B,,,,,,,2024-01-03T00:00:00Z\n", st1, refresh); ch != (load.Changes{Replaced: 2, Changed: 1}) {
			c.t.Errorf("B back: %+v, want 2 replaced, 1 changed, no deletion", ch)
		}
		if got := stamps(); got[uB] != "<null>" || got[uX] != first[uX] {
			c.t.Errorf("_deleted_at with B back: %v, want B live and X's first stamp %s", got, first[uX])
		}
	}})
}
