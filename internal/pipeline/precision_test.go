package pipeline_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/fakeapi"
	"github.com/leadlex/leadlex-etl/internal/load"
	"github.com/leadlex/leadlex-etl/internal/pipeline"
)

// TestBoundsKeptToTheSecond syncs from an API that truncates
// created_after/created_before to whole seconds before it applies its bound
// rule, over contacts created at fractions of seconds, many sharing one,
// in every row order: the copy holds every contact and marks none deleted,
// after the first sync and after a second one that refreshes every range.
func TestBoundsKeptToTheSecond(t *testing.T) {
	for _, order := range []fakeapi.Order{fakeapi.OrderAsc, fakeapi.OrderDesc, fakeapi.OrderRandom} {
		for _, bounds := range []fakeapi.Bounds{fakeapi.BoundsInclusive, fakeapi.BoundsExclusive, fakeapi.BoundsMixed} {
			t.Run(string(order)+"/"+string(bounds), func(t *testing.T) {
				t.Parallel()
				const contacts, limit = 2000, 200
				srv, url := startFake(t, fakeapi.Config{Contacts: contacts, Seed: 77, Order: order, Bounds: bounds,
					BoundPrecision: fakeapi.PrecisionSecond, SubSecond: true})
				// A busy stretch: contacts in every second of 200 seconds, so
				// that windows are cut between neighbouring seconds.
				busy := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
				for k := range 200 {
					if err := srv.Append(1+k%4, busy.Add(time.Duration(k)*time.Second)); err != nil {
						t.Fatal(err)
					}
				}
				ds := srv.Dataset()
				if _, n := ds.LargestGroup(); n >= limit/2 {
					t.Fatalf("the dataset has %d contacts in one second, too close to the limit %d for this test", n, limit)
				}
				db := openDB(t, filepath.Join(t.TempDir(), "w.duckdb"))
				client := &extract.Client{BaseURL: url, Key: extract.NewAPIKey(testKey), Retry: extract.RetryPolicy{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}}
				sync := func(refresh int) pipeline.Result {
					t.Helper()
					res, err := pipeline.Sync(context.Background(), pipeline.Options{
						Client: client, Query: extract.Query{Limit: limit}, Lookback: time.Minute, Targets: []load.Target{db},
						Refresh: pipeline.RefreshPolicy{Calls: refresh},
					})
					if err != nil {
						t.Fatal(err)
					}
					return res
				}
				check := func(when string, res pipeline.Result) {
					t.Helper()
					if diff := datasetDiff(t, db.DB(), "contacts", ds, nil); diff != "" {
						t.Errorf("after %s: %s", when, diff)
					}
					if gone := deletedIDs(t, db, "contacts"); len(gone) > 0 {
						t.Errorf("after %s: %d live contacts marked deleted", when, len(gone))
					}
					t.Logf("%s: %d calls (minimum %d), %d rows received, refresh %d calls over %v", when, res.Calls, res.MinCalls, res.Rows, res.Refresh.Calls, res.Refresh.Ranges)
				}
				check("the first sync", sync(0))
				res := sync(2 * contacts / limit)
				if !res.Refresh.Verified || res.Refresh.Calls == 0 {
					t.Errorf("the refresh did not verify every range: %+v", res.Refresh)
				}
				check("a sync with refresh", res)
			})
		}
	}
}
