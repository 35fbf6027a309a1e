package pipeline_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/fakeapi"
	"github.com/leadlex/leadlex-etl/internal/load"
	"github.com/leadlex/leadlex-etl/internal/pipeline"
)

// TestAContactWhoseCreatedAtMovesStaysOne syncs a workspace into DuckDB and
// a lake, then moves one contact's created_at forward inside the synced
// history and another's past its end, and syncs again with a refresh of
// everything (in windows, oldest first: the first lacks the one moved
// forward, a later one has it). Each destination holds every id once, live,
// at its new time, and the run counts no deletion, whichever destination
// counts. Before, the lake kept both copies, and the run reported 1 (DuckDB)
// or 2 (the lake) contacts deleted.
func TestAContactWhoseCreatedAtMovesStaysOne(t *testing.T) {
	for _, lakeFirst := range []bool{false, true} {
		name := "DuckDB counts"
		if lakeFirst {
			name = "the lake counts"
		}
		t.Run(name, func(t *testing.T) {
			srv, url := startFake(t, fakeapi.Config{Contacts: 2000, Seed: 41})
			dir := t.TempDir()
			arch := openArchive(t, filepath.Join(dir, "raw"))
			db := openDB(t, filepath.Join(dir, "w.duckdb"))
			lake := openLake(t, filepath.Join(dir, "lake"), load.LakeOptions{})
			targets := []load.Target{db, lake}
			if lakeFirst {
				slices.Reverse(targets)
			}
			sync := func(now time.Time, refresh int) pipeline.Result {
				t.Helper()
				c := &extract.Client{BaseURL: url, Key: extract.NewAPIKey(testKey), Retry: extract.RetryPolicy{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}}
				res, err := pipeline.Sync(context.Background(), pipeline.Options{
					Client: c, Query: extract.Query{Limit: 500}, Targets: targets, Now: func() time.Time { return now }, NewStream: true,
					Refresh: pipeline.RefreshPolicy{Calls: refresh, MinAge: time.Hour}, Archive: arch,
				})
				if err != nil {
					t.Fatal(err)
				}
				return res
			}
			t1 := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
			sync(t1, 0)
			ds := srv.Dataset()
			forward, past := ds.Contact(100), ds.Contact(200)
			srv.Move(ds.CreatedAt(1800), 100)
			srv.Move(t1.Add(14*24*time.Hour), 200)
			res := sync(t1.AddDate(0, 1, 0), 10)
			t.Logf("second run: %d calls, refresh %d calls, %+v", res.Calls, res.Refresh.Calls, res.Changes)
			if res.Refresh.Calls < 3 || !res.Refresh.Verified {
				t.Fatalf("the refresh took %d calls, verified %v: the case needs it to cover the history in several windows", res.Refresh.Calls, res.Refresh.Verified)
			}
			if res.Changes.Deleted != 0 || res.Changes.Inserted != 0 {
				t.Errorf("the run reports %+v: the moves counted as deletions or new contacts", res.Changes)
			}
			ds = srv.Dataset()
			mdb := memDuckDB(t)
			for _, from := range []string{"contacts", lakeFrom(filepath.Join(dir, "lake"))} {
				q := db.DB()
				if from != "contacts" {
					q = mdb
				}
				checkMoved(t, q, from, ds, forward, past)
			}
			// A replay of the archive into a new lake does the same.
			replayed := openLake(t, filepath.Join(dir, "replayed"), load.LakeOptions{})
			rr, err := pipeline.Replay(context.Background(), pipeline.ReplayOptions{Archive: arch, Targets: []load.Target{replayed}})
			if err != nil {
				t.Fatal(err)
			}
			if rr.Changes.Deleted != 0 {
				t.Errorf("the replay reports %+v", rr.Changes)
			}
			checkMoved(t, mdb, lakeFrom(filepath.Join(dir, "replayed")), ds, forward, past)
		})
	}
}

// checkMoved checks that from holds the dataset, every id once and live,
// the moved contacts at their new time.
func checkMoved(t *testing.T, q *sql.DB, from string, ds *fakeapi.Dataset, moved ...fakeapi.Contact) {
	t.Helper()
	checkEqualsDatasetFrom(t, q, from, ds, nil)
	var rows, ids, deleted int
	if err := q.QueryRow(`SELECT count(*), count(DISTINCT id), count(_deleted_at) FROM `+from).Scan(&rows, &ids, &deleted); err != nil {
		t.Fatal(err)
	}
	if rows != 2000 || ids != 2000 || deleted != 0 {
		t.Errorf("%s: %d rows, %d ids, %d marked deleted; want 2000, 2000, 0", from, rows, ids, deleted)
	}
	for _, c := range moved {
		var n int
		if err := q.QueryRow(`SELECT count(*) FROM `+from+` WHERE id::VARCHAR = ? AND created_at = ?`, c.ID, ds.Contact(idx(ds, c.ID)).CreatedAt).Scan(&n); err != nil || n != 1 {
			t.Errorf("%s: %s at its new time: %d rows (%v)", from, c.ID, n, err)
		}
	}
}

func idx(ds *fakeapi.Dataset, id string) int {
	i, _ := ds.Index(id)
	return i
}
