package pipeline_test

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/fakeapi"
	"github.com/leadlex/leadlex-etl/internal/load"
	"github.com/leadlex/leadlex-etl/internal/pipeline"
)

// mutate edits, deletes and adds contacts of the fake workspace, as users
// of LeadLex do between two syncs, and returns the deleted indexes.
func mutate(t *testing.T, srv *fakeapi.Server, seed uint64, edits, deletes, adds int, at time.Time) map[int]bool {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	n := srv.Dataset().Len()
	var ed []int
	for range edits {
		ed = append(ed, r.IntN(n))
	}
	srv.Edit(ed...)
	gone := map[int]bool{}
	var del []int
	for len(del) < deletes {
		if i := r.IntN(n); !gone[i] {
			gone[i] = true
			del = append(del, i)
		}
	}
	srv.Delete(del...)
	if err := srv.Append(adds, at); err != nil {
		t.Fatal(err)
	}
	return gone
}

// liveFrom is the contacts of a sink that are not marked deleted.
func liveFrom(from string) string {
	return "(SELECT * FROM " + from + " WHERE _deleted_at IS NULL)"
}

// deletedIDs returns the ids marked deleted in from.
func deletedIDs(t *testing.T, db *load.DuckDB, from string) map[string]bool {
	t.Helper()
	rows, err := db.DB().Query("SELECT id::VARCHAR FROM " + from + " WHERE _deleted_at IS NOT NULL")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		out[id] = true
	}
	return out
}

// TestRollingRefreshConverges syncs a workspace, then edits, deletes and
// adds contacts at the fake API, and runs scheduled syncs with --no-wait,
// one per (short) rate-limit hour, each spending the hour's spare calls on
// refresh: both sinks converge to the workspace exactly, deleted contacts
// marked, within the rounds the budget allows, and no call is answered 429.
func TestRollingRefreshConverges(t *testing.T) {
	for _, order := range []fakeapi.Order{fakeapi.OrderAsc, fakeapi.OrderDesc, fakeapi.OrderRandom} {
		for _, bounds := range []fakeapi.Bounds{fakeapi.BoundsInclusive, fakeapi.BoundsExclusive, fakeapi.BoundsMixed} {
			t.Run(string(order)+"/"+string(bounds), func(t *testing.T) {
				t.Parallel()
				const contacts, limit, perHour = 4000, 500, 10
				srv, url := startFake(t, fakeapi.Config{Contacts: contacts, Seed: 41, Order: order, Bounds: bounds, RateLimit: perHour, Hour: 2 * time.Second})
				dir := t.TempDir()
				db := openDB(t, filepath.Join(dir, "w.duckdb"))
				lake := openLake(t, filepath.Join(dir, "lake"), load.LakeOptions{})
				lakeData := lakeFrom(filepath.Join(dir, "lake"))
				client := &extract.Client{BaseURL: url, Key: extract.NewAPIKey(testKey), RateLimitFloor: time.Millisecond,
					Retry: extract.RetryPolicy{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}}
				sync := func(noWait bool) pipeline.Result {
					t.Helper()
					client.NoWait = noWait
					res, err := pipeline.Sync(context.Background(), pipeline.Options{
						Client: client, Query: extract.Query{Limit: limit}, Lookback: time.Minute, Targets: []load.Target{db, lake},
						Refresh: pipeline.RefreshPolicy{Calls: pipeline.RefreshAuto, ReserveCalls: 2},
					})
					if err != nil {
						t.Fatal(err)
					}
					return res
				}
				// The next rate-limit hour: wait for the reset the API gave.
				nextHour := func() {
					if b := client.Budget(); b.Known {
						time.Sleep(time.Until(b.Reset) + 50*time.Millisecond)
					}
				}
				sync(false) // the first full sync may wait for a reset
				nextHour()
				gone := mutate(t, srv, 1, 150, 60, 40, time.Now().Add(-time.Second))
				ds := srv.Dataset()
				live := func(c fakeapi.Contact) bool { return !c.Deleted }
				rl0 := client.RateLimited()
				// Each hour refreshes 7 calls (10, less 1 for the new data and
				// 2 in reserve) of up to 450 contacts: the 4,000 need 2 hours;
				// a third is slack for estimates that were off.
				const maxRounds = 3
				rounds := 0
				for ; rounds < maxRounds; rounds++ {
					res := sync(true)
					t.Logf("round %d: %d calls; refresh of %v: %d calls, complete %v, %+v", rounds, res.Calls, res.Refresh.Ranges, res.Refresh.Calls, res.Refresh.Verified, res.Refresh.Changes)
					if res.Refresh.Calls == 0 {
						t.Fatalf("round %d spent no call on refresh: %s", rounds, res.Refresh.Skipped)
					}
					nextHour()
					if datasetDiff(t, db.DB(), liveFrom("contacts"), ds, live) == "" &&
						datasetDiff(t, db.DB(), liveFrom(lakeData), ds, live) == "" &&
						len(deletedIDs(t, db, "contacts")) == len(gone) && len(deletedIDs(t, db, lakeData)) == len(gone) {
						break
					}
				}
				if rounds == maxRounds {
					t.Errorf("not converged after %d rounds", maxRounds)
				}
				t.Logf("converged in %d round(s)", rounds+1)
				checkEqualsDatasetFrom(t, db.DB(), liveFrom("contacts"), ds, live)
				checkEqualsDatasetFrom(t, db.DB(), liveFrom(lakeData), ds, live)
				for _, from := range []string{"contacts", lakeData} {
					marked := deletedIDs(t, db, from)
					for i := range gone {
						if id := ds.Contact(i).ID; !marked[id] {
							t.Errorf("%s: deleted contact %s is not marked", from, id)
						}
					}
					if len(marked) != len(gone) {
						t.Errorf("%s: %d contacts marked deleted, want %d", from, len(marked), len(gone))
					}
				}
				if n := client.RateLimited() - rl0; n != 0 {
					t.Errorf("the scheduled runs got %d 429 answers", n)
				}
			})
		}
	}
}

// TestAFilteredStreamNeverDeletes syncs an unfiltered and a tag-filtered
// stream into one destination, then changes tags at the source so that
// contacts leave the filter: neither stream marks a live contact deleted,
// and the unfiltered one marks the truly deleted.
func TestAFilteredStreamNeverDeletes(t *testing.T) {
	srv, url := startFake(t, fakeapi.Config{Contacts: 3000, Seed: 42})
	dir := t.TempDir()
	db := openDB(t, filepath.Join(dir, "w.duckdb"))
	lake := openLake(t, filepath.Join(dir, "lake"), load.LakeOptions{})
	lakeData := lakeFrom(filepath.Join(dir, "lake"))
	run := func(tags []string) pipeline.Result {
		t.Helper()
		c := &extract.Client{BaseURL: url, Key: extract.NewAPIKey(testKey)}
		res, err := pipeline.Sync(context.Background(), pipeline.Options{
			Client: c, Query: extract.Query{Limit: 5000, Tags: tags}, Targets: []load.Target{db, lake},
			Refresh: pipeline.RefreshPolicy{Calls: 10, MinAge: 0}, NewStream: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	run(nil)
	if res := run([]string{"vip"}); res.CanDelete {
		t.Error("a filtered stream beside an unfiltered one says it can tell deletions")
	}
	// Edits change tags: many vip contacts are vip no more; some go.
	gone := mutate(t, srv, 2, 600, 25, 0, time.Now())
	for _, tags := range [][]string{{"vip"}, {"vip"}} {
		res := run(tags)
		if res.Changes.Deleted != 0 {
			t.Fatalf("the filtered stream marked %d contacts deleted", res.Changes.Deleted)
		}
	}
	for _, from := range []string{"contacts", lakeData} {
		if n := len(deletedIDs(t, db, from)); n != 0 {
			t.Fatalf("%s: %d contacts marked deleted by the filtered stream", from, n)
		}
	}
	res := run(nil)
	if !res.CanDelete || res.Changes.Deleted != int64(len(gone)) {
		t.Errorf("the unfiltered stream: can delete %v, marked %d, want %d", res.CanDelete, res.Changes.Deleted, len(gone))
	}
	ds := srv.Dataset()
	for _, from := range []string{"contacts", lakeData} {
		checkEqualsDatasetFrom(t, db.DB(), liveFrom(from), ds, func(c fakeapi.Contact) bool { return !c.Deleted })
		if n := len(deletedIDs(t, db, from)); n != len(gone) {
			t.Errorf("%s: %d marked deleted, want %d", from, n, len(gone))
		}
	}
}
