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
			if rr.Changes.Deleted != 0 || rr.CanDelete {
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
