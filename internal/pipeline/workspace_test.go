package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/fakeapi"
	"github.com/leadlex/leadlex-etl/internal/load"
	"github.com/leadlex/leadlex-etl/internal/pipeline"
)

// The keys of TestAnotherWorkspacesKey: two of workspace acme (the second
// a rotated one) and one of globex, whose contacts are its own.
const (
	acmeKey    = "wbk_acme_S3CR3T_first"
	acmeKey2   = "wbk_acme_S3CR3T_rotated"
	globexKey  = "wbk_globex_S3CR3T_other"
	globexSize = 700
)

// TestAnotherWorkspacesKey syncs a stream with one workspace's key, then
// runs the same flags with other keys into the same DuckDB file and lake:
// another workspace's key is refused before any call unless the run says
// it is a rotated key (continue the stream) or another workspace
// (NewStream: a stream of its own, which exports its whole history and
// marks none of the first one's contacts deleted); a stream an earlier
// version saved takes the next run's key; the key itself is kept nowhere.
func TestAnotherWorkspacesKey(t *testing.T) {
	srv, err := fakeapi.New(fakeapi.Config{Contacts: 1500, Seed: 4,
		Keys: []fakeapi.Key{{Token: acmeKey, Workspace: "acme", ReadContacts: true}, {Token: acmeKey2, Workspace: "acme", ReadContacts: true},
			{Token: globexKey, Workspace: "globex", ReadContacts: true}},
		Workspaces: []fakeapi.Workspace{{Name: "globex", Contacts: globexSize, Seed: 99}}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	dir := t.TempDir()
	db := openDB(t, filepath.Join(dir, "w.duckdb"))
	lake := openLake(t, filepath.Join(dir, "lake"), load.LakeOptions{})
	var logs bytes.Buffer
	sync := func(key string, o pipeline.Options) (pipeline.Result, error) {
		t.Helper()
		o.Client = &extract.Client{BaseURL: hs.URL, Key: extract.NewAPIKey(key)}
		o.Query = extract.Query{Limit: 1000}
		o.Targets = []load.Target{db, lake}
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		return pipeline.Sync(context.Background(), o)
	}
	live := func() int64 {
		t.Helper()
		var n int64
		if err := db.DB().QueryRow(`SELECT count(*) FROM contacts WHERE _deleted_at IS NULL`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	first, err := sync(acmeKey, pipeline.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Another workspace's key: refused before any request.
	requests := srv.Requests()
	_, err = sync(globexKey, pipeline.Options{})
	var km *pipeline.KeyMismatchError
	if !errors.As(err, &km) || km.StreamID != first.StreamID || srv.Requests() != requests {
		t.Fatalf("another workspace's key: %v after %d requests; want a *KeyMismatchError naming stream %s and none", err, srv.Requests()-requests, first.StreamID)
	}
	for _, want := range []string{"--key-rotated", "--new-stream"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not name %s: %v", want, err)
		}
	}
	// As another workspace: a stream of its own, all its history, and no
	// contact of the first marked deleted.
	other, err := sync(globexKey, pipeline.Options{NewStream: true})
	if err != nil {
		t.Fatal(err)
	}
	if other.StreamID == first.StreamID || other.Distinct != globexSize || other.CanDelete {
		t.Errorf("the other workspace's first run: stream %s (the first is %s), %d contacts (want %d), tells deletions %v",
			other.StreamID, first.StreamID, other.Distinct, globexSize, other.CanDelete)
	}
	if n := live(); n != 1500+globexSize {
		t.Errorf("%d live contacts after the other workspace's run, want %d", n, 1500+globexSize)
	}
	// Each key continues its own stream from now on, and neither tells
	// deletions beside the other's.
	for _, k := range []struct {
		key, stream string
	}{{acmeKey, first.StreamID}, {globexKey, other.StreamID}} {
		res, err := sync(k.key, pipeline.Options{})
		if err != nil || res.StreamID != k.stream || res.Calls != 1 || res.CanDelete || res.Changes.Deleted != 0 {
			t.Errorf("an incremental run: %v, stream %s (want %s), %d calls, tells deletions %v, %d deleted", err, res.StreamID, k.stream, res.Calls, res.CanDelete, res.Changes.Deleted)
		}
	}
	// A rotated key of the first workspace: refused, then accepted with
	// KeyRotated, then known.
	if _, err := sync(acmeKey2, pipeline.Options{}); !errors.As(err, &km) {
		t.Fatalf("a rotated key without KeyRotated: %v", err)
	}
	var rs *pipeline.RotatedStreamError
	requests = srv.Requests()
	if _, err := sync(acmeKey2, pipeline.Options{KeyRotated: true}); !errors.As(err, &rs) || len(rs.Streams) != 2 || srv.Requests() != requests {
		t.Fatalf("a rotated key that does not name which of two workspaces' streams it continues: %v", err)
	}
	for i, o := range []pipeline.Options{{KeyRotated: true, RotatedStream: first.StreamID}, {}} {
		if res, err := sync(acmeKey2, o); err != nil || res.StreamID != first.StreamID || res.Calls != 1 {
			t.Errorf("run %d with the rotated key: %v, stream %s (want %s), %d calls", i, err, res.StreamID, first.StreamID, res.Calls)
		}
	}
	if _, err := sync(acmeKey, pipeline.Options{}); !errors.As(err, &km) {
		t.Errorf("the key before the rotation, once the stream took the new one: %v", err)
	}
	// A stream an earlier version saved keeps no fingerprint: it takes the
	// next run's key, and says so.
	if _, err := db.DB().Exec(`UPDATE _leadlex_streams SET key_fingerprint = NULL WHERE stream_id = ?`, first.StreamID); err != nil {
		t.Fatal(err)
	}
	if err := lake.Close(); err != nil {
		t.Fatal(err)
	}
	statePath := filepath.Join(dir, "lake", "_leadlex", "state.json")
	b, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	var state map[string]any
	if err := json.Unmarshal(b, &state); err != nil {
		t.Fatal(err)
	}
	delete(state["streams"].(map[string]any)[first.StreamID].(map[string]any), "key_fingerprint")
	if b, err = json.Marshal(state); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(statePath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	lake = openLake(t, filepath.Join(dir, "lake"), load.LakeOptions{})
	logs.Reset()
	if res, err := sync(acmeKey, pipeline.Options{}); err != nil || res.StreamID != first.StreamID {
		t.Fatalf("a stream without a fingerprint: %v, stream %s", err, res.StreamID)
	}
	if !strings.Contains(logs.String(), "keeps no fingerprint") {
		t.Errorf("the run does not say the stream took its key:\n%s", logs.String())
	}
	if _, err := sync(acmeKey2, pipeline.Options{}); !errors.As(err, &km) {
		t.Errorf("another key after the stream took one: %v", err)
	}
	// Nothing of a key is kept where it could be recognised by: not the
	// key, not its (unsalted) budget fingerprint.
	if err := lake.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{filepath.Join(dir, "w.duckdb"), statePath} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{acmeKey, acmeKey2, globexKey} {
			if bytes.Contains(b, []byte(k)) || bytes.Contains(b, []byte(extract.NewAPIKey(k).Fingerprint())) {
				t.Errorf("%s holds a key or its fingerprint", f)
			}
		}
	}
}
