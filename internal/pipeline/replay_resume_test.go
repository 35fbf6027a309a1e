package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/leadlex/leadlex-etl/internal/archive"
	"github.com/leadlex/leadlex-etl/internal/fakeapi"
	"github.com/leadlex/leadlex-etl/internal/load"
	"github.com/leadlex/leadlex-etl/internal/pipeline"
)

// cancelAfter is a log handler that cancels a run right after the nth
// window it logs as committed: the event, not a timer, ends the run.
type cancelAfter struct {
	seen   *int
	n      int
	cancel context.CancelFunc
}

func (c cancelAfter) Enabled(context.Context, slog.Level) bool { return true }
func (c cancelAfter) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c cancelAfter) WithGroup(string) slog.Handler            { return c }
func (c cancelAfter) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "window committed" {
		if *c.seen++; *c.seen == c.n {
			c.cancel()
		}
	}
	return nil
}

// replayStopped replays arch into targets and cancels the replay right
// after its nth committed window; it checks that it stopped there.
func replayStopped(t *testing.T, arch *archive.Archive, n int, group int64, targets ...load.Target) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := 0
	res, err := pipeline.Replay(ctx, pipeline.ReplayOptions{Archive: arch, Targets: targets, GroupRows: group,
		Logger: slog.New(cancelAfter{seen: &seen, n: n, cancel: cancel})})
	if !errors.Is(err, context.Canceled) || res.Windows != n {
		t.Fatalf("the interrupted replay: %d windows, %v; want %d, cancelled", res.Windows, err, n)
	}
}

// resumeReplay replays arch into targets, which must hold its first
// resumed windows.
func resumeReplay(t *testing.T, arch *archive.Archive, resumed int, targets ...load.Target) pipeline.ReplayResult {
	t.Helper()
	res, err := pipeline.Replay(context.Background(), pipeline.ReplayOptions{Archive: arch, Targets: targets})
	if err != nil {
		t.Fatal(err)
	}
	if res.Resumed != resumed {
		t.Errorf("the replay resumed after %d windows, want %d", res.Resumed, resumed)
	}
	return res
}

// sameReplay fails unless the DuckDB files at a and b hold the same
// contacts, stream state, windows and rejects.
func sameReplay(t *testing.T, a, b string) {
	t.Helper()
	db := memDuckDB(t)
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(fmt.Sprintf("ATTACH '%s' AS a (READ_ONLY); ATTACH '%s' AS b (READ_ONLY)", a, b)); err != nil {
		t.Fatal(err)
	}
	defer db.Exec("DETACH a; DETACH b")
	for _, q := range []string{"SELECT * FROM %s.contacts", "SELECT * EXCLUDE (updated_at) FROM %s._leadlex_streams",
		"SELECT * FROM %s._leadlex_windows", "SELECT * FROM %s._leadlex_rejects"} {
		for _, x := range [][2]string{{"a", "b"}, {"b", "a"}} {
			var n int
			q := fmt.Sprintf("SELECT count(*) FROM ("+q+" EXCEPT ALL "+q+")", x[0], x[1])
			if err := db.QueryRow(q).Scan(&n); err != nil || n != 0 {
				t.Errorf("%s: %d rows (%v)", q, n, err)
			}
		}
	}
}

// sameLake fails unless the lakes at a and b hold the same contacts and
// stream state.
func sameLake(t *testing.T, a, b, streamID string) {
	t.Helper()
	db := memDuckDB(t)
	for _, x := range [][2]string{{a, b}, {b, a}} {
		var n int
		q := fmt.Sprintf("SELECT count(*) FROM (SELECT * FROM %s EXCEPT ALL SELECT * FROM %s)", lakeFrom(x[0]), lakeFrom(x[1]))
		if err := db.QueryRow(q).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s: %d rows (%v)", q, n, err)
		}
	}
	var states []load.StreamState
	for _, dir := range []string{a, b} {
		l := openLake(t, dir, load.LakeOptions{})
		st, err := l.LoadState(context.Background(), streamID, "")
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
		states = append(states, load.StreamState{Coverage: st.Coverage, Pending: st.Pending, PendingSince: st.PendingSince, PendingUntil: st.PendingUntil})
	}
	if !reflect.DeepEqual(states[0], states[1]) {
		t.Errorf("lake stream states differ:\n %+v\n %+v", states[0], states[1])
	}
}

// TestInterruptedReplayResumes stops replays right after a committed
// window, into new and existing destinations, window by window and in
// groups, into DuckDB and a lake together and each alone at different
// windows, and runs each again: the replay goes on after the windows the
// destinations hold, and leaves exactly what one uninterrupted replay
// leaves (contacts, stream state, windows, rejects, deletions). Run once
// more, it has nothing to do.
func TestInterruptedReplayResumes(t *testing.T) {
	srv, url := startFake(t, fakeapi.Config{Contacts: 2000, Seed: 12, Order: fakeapi.OrderDesc})
	_, otherURL := startFake(t, fakeapi.Config{Contacts: 700, Seed: 13})
	dir := t.TempDir()
	arch := openArchive(t, filepath.Join(dir, "raw"))
	src := openDB(t, filepath.Join(dir, "src.duckdb"))
	archivedSync(t, url, arch, 250, false, 0, src)
	srv.Delete(3, 30, 300, 1999)
	srv.Edit(4, 40, 400)
	if res := archivedSync(t, url, arch, 250, false, 10, src); res.Refresh.Changes.Deleted != 4 {
		t.Fatalf("the refresh found %d deletions, want 4", res.Refresh.Changes.Deleted)
	}
	src.Close()
	es := entriesOf(t, arch)
	n := len(es)
	if n < 12 {
		t.Fatalf("only %d archived windows", n)
	}
	streamID := es[0].StreamID
	ref, refLake := filepath.Join(dir, "ref.duckdb"), filepath.Join(dir, "ref-lake")
	refDB, refL := openDB(t, ref), openLake(t, refLake, load.LakeOptions{PartitionBy: load.ByYear})
	resumeReplay(t, arch, 0, refDB, refL)
	refDB.Close()
	refL.Close()

	t.Run("window by window", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "w.duckdb")
		db := openDB(t, p)
		replayStopped(t, arch, 3, -1, db)
		if res := resumeReplay(t, arch, 3, db); res.Windows != n-3 {
			t.Errorf("the resumed replay committed %d windows, want %d", res.Windows, n-3)
		}
		// Once more: nothing to do, nothing written.
		if res := resumeReplay(t, arch, n, db); res.Windows != 0 {
			t.Errorf("a replay of a complete destination committed %d windows", res.Windows)
		}
		db.Close()
		sameReplay(t, ref, p)
	})
	t.Run("in groups, twice", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "g.duckdb")
		db := openDB(t, p)
		replayStopped(t, arch, 2, 600, db)
		ctx, cancel := context.WithCancel(context.Background())
		seen := 0
		res, err := pipeline.Replay(ctx, pipeline.ReplayOptions{Archive: arch, Targets: []load.Target{db}, GroupRows: 600,
			Logger: slog.New(cancelAfter{seen: &seen, n: 4, cancel: cancel})})
		cancel()
		if !errors.Is(err, context.Canceled) || res.Resumed != 2 || res.Windows != 4 {
			t.Fatalf("the second interrupted replay: %+v, %v", res, err)
		}
		resumeReplay(t, arch, 6, db)
		db.Close()
		sameReplay(t, ref, p)
	})
	t.Run("DuckDB and a lake, each stopped elsewhere", func(t *testing.T) {
		tmp := t.TempDir()
		p, lake := filepath.Join(tmp, "w.duckdb"), filepath.Join(tmp, "lake")
		db, l := openDB(t, p), openLake(t, lake, load.LakeOptions{PartitionBy: load.ByYear})
		replayStopped(t, arch, 5, -1, db, l)
		replayStopped(t, arch, 2, -1, l)  // the lake goes on alone: 7
		replayStopped(t, arch, 1, -1, db) // DuckDB: 6
		resumeReplay(t, arch, 6, db, l)
		db.Close()
		l.Close()
		sameReplay(t, ref, p)
		sameLake(t, refLake, lake, streamID)
	})
	t.Run("into a file holding another stream", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "b.duckdb")
		db := openDB(t, p)
		if _, err := runSync(t, otherURL, db, syncArgs{limit: 1000}); err != nil {
			t.Fatal(err)
		}
		replayStopped(t, arch, 4, 0, db)
		resumeReplay(t, arch, 4, db)
		var other, deleted int
		if err := db.DB().QueryRow(`SELECT count(*) FILTER (_request_id NOT IN (SELECT request_id FROM _leadlex_windows WHERE stream_id = ?)), count(_deleted_at) FROM contacts`,
			streamID).Scan(&other, &deleted); err != nil {
			t.Fatal(err)
		}
		if other != 700 || deleted != 0 {
			t.Errorf("the other stream has %d contacts, %d contacts are marked deleted; want 700, none", other, deleted)
		}
	})
}

// runsIn counts the run records of a DuckDB destination.
func runsIn(t *testing.T, db *load.DuckDB) int {
	t.Helper()
	runs, err := db.Runs(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return len(runs)
}

// TestReplayRefusesAStreamItDidNotLeave replays into destinations that
// hold the stream otherwise than a replay of the archive leaves it: the
// original, which holds every archived window (nothing to do, nothing
// written); the original after a sync the archive lacks (refused, naming
// the destination); and a replay stopped after a window of a refresh that
// changed nothing of the stream state (refused: which of the windows that
// leave that state it committed cannot be told).
func TestReplayRefusesAStreamItDidNotLeave(t *testing.T) {
	srv, url := startFake(t, fakeapi.Config{Contacts: 2000, Seed: 14, Order: fakeapi.OrderRandom})
	dir := t.TempDir()
	arch := openArchive(t, filepath.Join(dir, "raw"))
	src := openDB(t, filepath.Join(dir, "src.duckdb"))
	archivedSync(t, url, arch, 1000, false, 0, src)
	// Contacts the next sync does not export as new (no lookback) make
	// its refresh of their range come back cut off (1,200 rows at least,
	// none of its instants holding more than the limit): in random order,
	// the cut-off window leaves all of itself pending and the state as it
	// was.
	last := srv.Dataset().Contact(srv.Dataset().Len() - 1).CreatedAt
	for _, at := range []time.Time{last, last.Add(time.Second)} {
		if err := srv.Append(600, at); err != nil {
			t.Fatal(err)
		}
	}
	archivedSync(t, url, arch, 1000, false, 10, src)
	es := entriesOf(t, arch)
	neutral := 0
	for i, e := range es {
		if e.Refresh && i > 0 && e.StateAfter == es[i-1].StateAfter {
			neutral = i + 1
			break
		}
	}
	if neutral == 0 {
		t.Fatal("no archived refresh window left the state as it was; the test proves nothing")
	}

	runs := runsIn(t, src)
	res, err := pipeline.Replay(context.Background(), pipeline.ReplayOptions{Archive: arch, Targets: []load.Target{src}})
	if err != nil || res.Resumed != len(es) || res.Windows != 0 || runsIn(t, src) != runs {
		t.Errorf("a replay into the original: %+v, %v, %d runs recorded (%d before)", res, err, runsIn(t, src), runs)
	}
	if _, err := runSync(t, url, src, syncArgs{limit: 1000}); err != nil {
		t.Fatal(err)
	}
	runs = runsIn(t, src)
	_, err = pipeline.Replay(context.Background(), pipeline.ReplayOptions{Archive: arch, Targets: []load.Target{openDB(t, filepath.Join(dir, "new.duckdb")), src}})
	var held *pipeline.StreamHeldError
	if !errors.As(err, &held) || held.Target != 1 || held.To != 0 || runsIn(t, src) != runs {
		t.Errorf("a replay into the original synced on: %v; want a StreamHeldError for the second destination, and nothing written", err)
	}

	db := openDB(t, filepath.Join(dir, "stopped.duckdb"))
	replayStopped(t, arch, neutral, -1, db)
	_, err = pipeline.Replay(context.Background(), pipeline.ReplayOptions{Archive: arch, Targets: []load.Target{db}})
	if !errors.As(err, &held) || held.From != neutral-1 || held.To != neutral {
		t.Errorf("a replay stopped after a window that changed no state: %v; want a StreamHeldError naming windows %d and %d", err, neutral-1, neutral)
	}
	t.Log(err)
}
