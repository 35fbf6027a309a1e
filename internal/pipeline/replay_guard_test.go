package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leadlex/leadlex-etl/internal/archive"
	"github.com/leadlex/leadlex-etl/internal/fakeapi"
	"github.com/leadlex/leadlex-etl/internal/load"
	"github.com/leadlex/leadlex-etl/internal/pipeline"
)

// entriesOf returns the archive's entries of its only stream.
func entriesOf(t *testing.T, arch *archive.Archive) []archive.Entry {
	t.Helper()
	streams, err := arch.Streams()
	if err != nil || len(streams) != 1 {
		t.Fatalf("streams %v %v", streams, err)
	}
	es, err := arch.Entries(streams[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// editMeta edits an entry's metadata file as a hand would, saving it as a
// file of format 1 (which carries no digest), so that what the edit changes
// is what the replay's checks of the metadata itself must find.
func editMeta(t *testing.T, raw string, e archive.Entry, f func(m map[string]any)) string {
	t.Helper()
	p := filepath.Join(raw, e.MetaPath())
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["format"] = 1
	delete(m, "digest")
	delete(m, "body_sha256")
	f(m)
	if b, err = json.MarshalIndent(m, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestReplayRefusesARowCountTheBodyDoesNotHold edits the number of rows an
// archived window says it held: the replay stops at that window, naming
// its body, and loads nothing of it.
func TestReplayRefusesARowCountTheBodyDoesNotHold(t *testing.T) {
	_, url := startFake(t, fakeapi.Config{Contacts: 2500, Seed: 4})
	dir := t.TempDir()
	raw := filepath.Join(dir, "raw")
	arch := openArchive(t, raw)
	archivedSync(t, url, arch, 1000, false, 0, openDB(t, filepath.Join(dir, "src.duckdb")))
	es := entriesOf(t, arch)
	// The last window is complete (fewer rows than the limit): one row less
	// is as plausible a count as the true one.
	last := len(es) - 1
	if len(es) < 2 || es[last].Rows >= int64(es[last].Query.Limit) || es[last].Rows < 2 {
		t.Fatalf("entries %+v", es)
	}
	editMeta(t, raw, es[last], func(m map[string]any) { m["rows"] = es[last].Rows - 1 })
	dst := openDB(t, filepath.Join(dir, "dst.duckdb"))
	res, err := pipeline.Replay(context.Background(), pipeline.ReplayOptions{Archive: arch, Targets: []load.Target{dst}})
	var ce *archive.CorruptError
	if !errors.As(err, &ce) || ce.Path != filepath.Join(raw, es[last].Path) || !strings.Contains(err.Error(), "rows") {
		t.Fatalf("replay: %v; want a CorruptError naming %s and its rows", err, es[last].Path)
	}
	if res.Windows != last {
		t.Errorf("%d windows replayed, want %d", res.Windows, last)
	}
	var n int
	if err := dst.DB().QueryRow(`SELECT count(*) FROM contacts WHERE _request_id = ?`, es[last].RequestID).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d rows of the refused window loaded (%v)", n, err)
	}
}

// TestReplayTellsDeletionsAsASyncWould replays, into a DuckDB file that
// holds another API's stream, an archive whose refresh found deletions: a
// sync of the archived stream into that file would not tell deletions (the
// other stream's contacts are not its to judge), so neither does the
// replay: the other stream's 1,500 contacts stay as they were, removed by
// no hard delete and marked by no soft one.
func TestReplayTellsDeletionsAsASyncWould(t *testing.T) {
	for _, hard := range []bool{true, false} {
		t.Run(fmt.Sprintf("hard=%v", hard), func(t *testing.T) {
			srv, url := startFake(t, fakeapi.Config{Contacts: 3000, Seed: 9})
			_, otherURL := startFake(t, fakeapi.Config{Contacts: 1500, Seed: 11})
			dir := t.TempDir()
			arch := openArchive(t, filepath.Join(dir, "raw"))
			src := openDB(t, filepath.Join(dir, "src.duckdb"))
			archivedSync(t, url, arch, 1000, hard, 0, src)
			srv.Delete(1, 2, 3, 500, 2999)
			if res := archivedSync(t, url, arch, 1000, hard, 10, src); res.Refresh.Changes.Deleted != 5 {
				t.Fatalf("the refresh found %d deletions, want 5", res.Refresh.Changes.Deleted)
			}
			b := openDB(t, filepath.Join(dir, "b.duckdb"))
			if _, err := runSync(t, otherURL, b, syncArgs{limit: 1000}); err != nil {
				t.Fatal(err)
			}
			rr, err := pipeline.Replay(context.Background(), pipeline.ReplayOptions{Archive: arch, Targets: []load.Target{b}})
			if err != nil {
				t.Fatal(err)
			}
			if rr.Changes.Deleted != 0 || rr.CanDelete || rr.UnappliedDeletes == 0 {
				t.Errorf("the replay told deletions: %+v", rr)
			}
			var total, deleted int
			if err := b.DB().QueryRow(`SELECT count(*), count(_deleted_at) FROM contacts`).Scan(&total, &deleted); err != nil {
				t.Fatal(err)
			}
			// Every contact of both streams, the archived stream's deleted
			// ones included, as a sync into this file would have left them.
			if total != 1500+3000 || deleted != 0 {
				t.Errorf("b.duckdb holds %d contacts, %d marked deleted; want %d, none", total, deleted, 1500+3000)
			}
		})
	}
}

// TestReplayRefusesAlteredMetadata edits the metadata of one archived
// window at a time, as files of format 1 (which carry no digest), so that
// only what the replay derives and cross-checks can find the edit: each is
// refused before anything loads, naming the file and the field. The first
// two are the edits that made a replay lose 2,000 contacts and a rebuilt
// file stop syncing. A file of format 2 edited by hand is refused for its
// digest.
func TestReplayRefusesAlteredMetadata(t *testing.T) {
	srv, url := startFake(t, fakeapi.Config{Contacts: 3000, Seed: 6, Order: fakeapi.OrderDesc})
	dir := t.TempDir()
	raw := filepath.Join(dir, "raw")
	arch := openArchive(t, raw)
	src := openDB(t, filepath.Join(dir, "src.duckdb"))
	archivedSync(t, url, arch, 1000, false, 0, src)
	srv.Delete(5, 6, 7, 1500, 2500)
	if res := archivedSync(t, url, arch, 1000, false, 10, src); res.Refresh.Changes.Deleted != 5 {
		t.Fatalf("the refresh found %d deletions, want 5", res.Refresh.Changes.Deleted)
	}
	es := entriesOf(t, arch)
	find := func(what string, ok func(i int, e archive.Entry) bool) archive.Entry {
		t.Helper()
		for i := len(es) - 1; i >= 0; i-- {
			if ok(i, es[i]) {
				return es[i]
			}
		}
		t.Fatalf("no archived window is %s", what)
		return archive.Entry{}
	}
	run1 := func(e archive.Entry) bool { return e.RunID == es[0].RunID }
	cut := func(e archive.Entry) bool {
		return len(e.Pending) > 0 && e.Pending[0].To.After(e.Window.From) && e.Pending[0].From.Before(e.Window.To)
	}
	second := find("the first run's second", func(i int, e archive.Entry) bool { return i == 1 && run1(e) })
	complete := find("complete", func(_ int, e archive.Entry) bool {
		return run1(e) && e.Rows < int64(e.Query.Limit) && len(e.Deletes) > 0
	})
	truncated := find("cut off with deletions", func(_ int, e archive.Entry) bool { return cut(e) && len(e.Deletes) > 0 })
	refreshed := find("a refresh's last with deletions", func(_ int, e archive.Entry) bool { return e.Refresh && len(e.Deletes) > 0 })
	nRefresh := 0
	for _, e := range es {
		if e.Refresh && len(e.Deletes) > 0 {
			nRefresh++
		}
	}
	if nRefresh < 2 {
		t.Fatalf("%d refresh windows with deletions; the test needs 2", nRefresh)
	}
	ts := func(x time.Time) string { return x.UTC().Format(time.RFC3339Nano) }
	for _, tc := range []struct {
		name string
		e    archive.Entry
		edit func(m map[string]any)
		now  time.Time
		want string
	}{
		{"unbounded hard deletions", complete, func(m map[string]any) {
			m["deletes"] = []any{map[string]any{"from": "", "to": ""}}
			m["hard_delete"] = true
		}, time.Time{}, "deletes"},
		{"a window ending in 2030", second, func(m map[string]any) {
			m["window"].(map[string]any)["to"] = "2030-01-01T00:00:00Z"
			m["request"].(map[string]any)["created_before"] = "2030-01-01T00:00:00Z"
		}, time.Time{}, "window"},
		{"deletions beyond the complete part", truncated, func(m map[string]any) {
			m["deletes"] = []any{m["window"]}
		}, time.Time{}, "deletes"},
		{"a complete window with a part pending", complete, func(m map[string]any) {
			m["pending"] = []any{m["window"]}
			m["deletes"] = []any{}
		}, time.Time{}, "pending"},
		{"a sequence number repeated", second, func(m map[string]any) { m["seq"] = es[0].Seq }, time.Time{}, "seq"},
		{"hard deletions unlike the run's", refreshed, func(m map[string]any) { m["hard_delete"] = true }, time.Time{}, "hard_delete"},
		{"new data after the refresh", refreshed, func(m map[string]any) { m["refresh"] = false }, time.Time{}, "refresh"},
		{"a run range unlike the run's", second, func(m map[string]any) { m["run_since"] = "2000-01-01T00:00:00Z" }, time.Time{}, "run_since"},
		{"a run start unlike the run's", second, func(m map[string]any) { m["run_started_at"] = ts(second.RunStartedAt.Add(-time.Second)) }, time.Time{}, "run_started_at"},
		{"a refresh age unlike the run's", second, func(m map[string]any) { m["refresh_min_age"] = "1h0m0s" }, time.Time{}, "refresh_min_age"},
		{"fields the stream does not ask for", second, func(m map[string]any) { m["request"].(map[string]any)["fields"] = []any{"id", "email"} }, time.Time{}, "request.fields"},
		{"another stream identity", second, func(m map[string]any) { m["identity"] = `{"base_url":"http://localhost:1"}` }, time.Time{}, "identity"},
		{"a limit unlike the run's", second, func(m map[string]any) { m["request"].(map[string]any)["limit"] = 2000 }, time.Time{}, "request.limit"},
		{"a filter the stream does not have", second, func(m map[string]any) { m["request"].(map[string]any)["tags"] = []any{"lead"} }, time.Time{}, "request.tags"},
		{"committed after the replay's clock", es[0], func(map[string]any) {}, time.Now().Add(-72 * time.Hour), "loaded_at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(raw, tc.e.MetaPath())
			saved, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.WriteFile(p, saved, 0o644) })
			editMeta(t, raw, tc.e, tc.edit)
			dst := openDB(t, filepath.Join(t.TempDir(), "dst.duckdb"))
			o := pipeline.ReplayOptions{Archive: arch, Targets: []load.Target{dst}}
			if !tc.now.IsZero() {
				o.Now = func() time.Time { return tc.now }
			}
			res, err := pipeline.Replay(context.Background(), o)
			var ce *archive.CorruptError
			if !errors.As(err, &ce) || ce.Path != p || !strings.Contains(ce.Detail, tc.want) {
				t.Fatalf("replay: %v; want a CorruptError naming %s and %q", err, p, tc.want)
			}
			var n int
			if err := dst.DB().QueryRow(`SELECT count(*) FROM contacts`).Scan(&n); err != nil || n != 0 || res.Windows != 0 {
				t.Errorf("the refused replay loaded %d windows, %d contacts (%v)", res.Windows, n, err)
			}
			t.Logf("%s", err)
		})
	}
	t.Run("rows outside their window", func(t *testing.T) {
		e := complete
		p := filepath.Join(raw, e.MetaPath())
		saved, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.WriteFile(p, saved, 0o644) })
		// The window's last hour only: its rows before are outside it.
		from := e.Window.To.Add(-time.Hour)
		editMeta(t, raw, e, func(m map[string]any) {
			m["window"].(map[string]any)["from"] = ts(from)
			m["request"].(map[string]any)["created_after"] = ts(from.Add(-time.Microsecond))
			m["deletes"] = []any{map[string]any{"from": ts(from), "to": ts(e.Window.To)}}
		})
		dst := openDB(t, filepath.Join(t.TempDir(), "dst.duckdb"))
		_, err = pipeline.Replay(context.Background(), pipeline.ReplayOptions{Archive: arch, Targets: []load.Target{dst}})
		var ce *archive.CorruptError
		if !errors.As(err, &ce) || ce.Path != filepath.Join(raw, e.Path) || !strings.Contains(ce.Detail, "outside its window") {
			t.Fatalf("replay: %v; want a CorruptError naming %s", err, e.Path)
		}
	})
	t.Run("an edit without its digest", func(t *testing.T) {
		p := filepath.Join(raw, second.MetaPath())
		saved, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.WriteFile(p, saved, 0o644) })
		if err := os.WriteFile(p, []byte(strings.Replace(string(saved), `"hard_delete": false`, `"hard_delete": true`, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		dst := openDB(t, filepath.Join(t.TempDir(), "dst.duckdb"))
		_, err = pipeline.Replay(context.Background(), pipeline.ReplayOptions{Archive: arch, Targets: []load.Target{dst}})
		var ce *archive.CorruptError
		if !errors.As(err, &ce) || ce.Path != p || !strings.Contains(ce.Detail, "digest") {
			t.Fatalf("replay: %v; want a CorruptError naming %s and its digest", err, p)
		}
	})
	// Restored, the archive replays.
	dst := openDB(t, filepath.Join(dir, "dst.duckdb"))
	if _, err := pipeline.Replay(context.Background(), pipeline.ReplayOptions{Archive: arch, Targets: []load.Target{dst}}); err != nil {
		t.Fatal(err)
	}
}
