package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/leadlex/leadlex-etl/internal/archive"
	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/fakeapi"
	"github.com/leadlex/leadlex-etl/internal/load"
	"github.com/leadlex/leadlex-etl/internal/pipeline"
)

// archivedSync syncs url into targets, keeping the raw archive arch.
func archivedSync(t *testing.T, url string, arch *archive.Archive, limit int, hard bool, refresh int, targets ...load.Target) pipeline.Result {
	t.Helper()
	c := &extract.Client{BaseURL: url, Key: extract.NewAPIKey(testKey)}
	res, err := pipeline.Sync(context.Background(), pipeline.Options{
		Client: c, Query: extract.Query{Limit: limit}, Targets: targets, Archive: arch, HardDelete: hard,
		Refresh: pipeline.RefreshPolicy{Calls: refresh},
	})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func openArchive(t *testing.T, dir string) *archive.Archive {
	t.Helper()
	a, err := archive.Open(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// TestReplayAppliesArchivedDeletions replays syncs whose refresh found
// deletions, soft and hard: the rebuilt file equals the original, every
// column of every contact, and so does the stream state.
func TestReplayAppliesArchivedDeletions(t *testing.T) {
	for _, hard := range []bool{false, true} {
		t.Run(fmt.Sprintf("hard=%v", hard), func(t *testing.T) {
			srv, url := startFake(t, fakeapi.Config{Contacts: 4000, Seed: 9, Order: fakeapi.OrderDesc})
			dir := t.TempDir()
			arch := openArchive(t, filepath.Join(dir, "raw"))
			src := openDB(t, filepath.Join(dir, "src.duckdb"))
			archivedSync(t, url, arch, 1000, hard, 0, src)
			srv.Delete(1, 2, 3, 500, 1500, 3999)
			srv.Edit(10, 20, 30)
			res := archivedSync(t, url, arch, 1000, hard, 10, src)
			if res.Refresh.Changes.Deleted != 6 {
				t.Fatalf("the refresh found %d deletions, want 6", res.Refresh.Changes.Deleted)
			}
			src.Close()
			// Window by window, in groups of about 1,500 rows (of windows of
			// 1,000), and in one group.
			for _, group := range []int64{-1, 1500, 0} {
				dstPath := filepath.Join(dir, fmt.Sprintf("dst%d.duckdb", group))
				dst := openDB(t, dstPath)
				rr, err := pipeline.Replay(context.Background(), pipeline.ReplayOptions{Archive: arch, Targets: []load.Target{dst}, GroupRows: group})
				if err != nil {
					t.Fatal(err)
				}
				if rr.Changes.Deleted != 6 || rr.Windows == 0 {
					t.Errorf("group %d: the replay: %+v", group, rr)
				}
				dst.Close()
				db := memDuckDB(t)
				if _, err := db.Exec(fmt.Sprintf("ATTACH '%s' AS a (READ_ONLY); ATTACH '%s' AS b (READ_ONLY)", filepath.Join(dir, "src.duckdb"), dstPath)); err != nil {
					t.Fatal(err)
				}
				for _, q := range []string{
					"SELECT * FROM a.contacts EXCEPT ALL SELECT * FROM b.contacts",
					"SELECT * FROM b.contacts EXCEPT ALL SELECT * FROM a.contacts",
					"SELECT * EXCLUDE (updated_at) FROM a._leadlex_streams EXCEPT SELECT * EXCLUDE (updated_at) FROM b._leadlex_streams",
					"SELECT * FROM a._leadlex_windows EXCEPT ALL SELECT * FROM b._leadlex_windows",
					// The replay's one run did what the original runs did.
					"SELECT 1 WHERE (SELECT count(*) FROM b._leadlex_runs) <> 1",
					"SELECT * FROM b._leadlex_runs WHERE (inserted, replaced, deleted) IS DISTINCT FROM (SELECT (sum(inserted), sum(replaced), sum(deleted)) FROM a._leadlex_runs)",
				} {
					var n int
					if err := db.QueryRow("SELECT count(*) FROM (" + q + ")").Scan(&n); err != nil || n != 0 {
						t.Errorf("group %d: %s: %d rows (%v)", group, q, n, err)
					}
				}
			}
		})
	}
}

// TestReplayLoadsNothingOfABadWindow alters the third archived body: the
// replay fails naming its file, with the two windows before it committed
// and nothing of it.
func TestReplayLoadsNothingOfABadWindow(t *testing.T) {
	_, url := startFake(t, fakeapi.Config{Contacts: 5000, Seed: 3})
	dir := t.TempDir()
	raw := filepath.Join(dir, "raw")
	arch := openArchive(t, raw)
	archivedSync(t, url, arch, 1000, false, 0, openDB(t, filepath.Join(dir, "src.duckdb")))
	streams, err := arch.Streams()
	if err != nil || len(streams) != 1 {
		t.Fatalf("streams %v %v", streams, err)
	}
	es, err := arch.Entries(streams[0].ID)
	if err != nil || len(es) < 4 {
		t.Fatalf("%d entries, %v", len(es), err)
	}
	bad := filepath.Join(raw, es[2].Path)
	b, err := os.ReadFile(bad)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)*2/3] ^= 0x20
	if err := os.WriteFile(bad, b, 0o644); err != nil {
		t.Fatal(err)
	}
	dst := openDB(t, filepath.Join(dir, "dst.duckdb"))
	res, err := pipeline.Replay(context.Background(), pipeline.ReplayOptions{Archive: arch, Targets: []load.Target{dst}})
	var ce *archive.CorruptError
	if !errors.As(err, &ce) || ce.Path != bad {
		t.Fatalf("replay: %v; want a CorruptError naming %s", err, bad)
	}
	if res.Windows != 2 {
		t.Errorf("%d windows replayed, want 2", res.Windows)
	}
	db := dst.DB()
	var windows, fromBad, fromGood int
	if err := db.QueryRow(`SELECT count(*), count(*) FILTER (request_id = ?) FROM _leadlex_windows`, es[2].RequestID).Scan(&windows, &fromBad); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT count(*) FROM contacts WHERE _request_id IN (?, ?)`, es[0].RequestID, es[1].RequestID).Scan(&fromGood); err != nil {
		t.Fatal(err)
	}
	var total, status string
	if err := db.QueryRow(`SELECT count(*)::VARCHAR FROM contacts`).Scan(&total); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT status FROM _leadlex_runs`).Scan(&status); err != nil {
		t.Fatal(err)
	}
	if windows != 2 || fromBad != 0 || total != fmt.Sprint(fromGood) || fromGood == 0 || status != load.RunFailed {
		t.Errorf("after the failed replay: %d windows (%d of the bad one), %s contacts of which %d from the good windows, run %s",
			windows, fromBad, total, fromGood, status)
	}
}
