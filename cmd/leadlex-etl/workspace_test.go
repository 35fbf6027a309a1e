package main

import (
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leadlex/leadlex-etl/internal/fakeapi"
	"github.com/leadlex/leadlex-etl/internal/pipeline"
)

// TestAnotherWorkspacesKeyIsAsked syncs a workspace into a DuckDB file and
// points the same command line at it with other keys: plan and status say
// the key is not the stream's; sync refuses another workspace's key (exit
// 2, before any request, naming --key-rotated and --new-stream); a config
// file's key-rotated lets a rotated key of the same workspace go on; and
// --new-stream syncs the other workspace as a stream of its own.
func TestAnotherWorkspacesKeyIsAsked(t *testing.T) {
	const rotatedKey, otherKey = "wbk_cli_S3CR3T_rotated_1234", "wbk_cli_S3CR3T_globex_5678"
	srv, err := fakeapi.New(fakeapi.Config{Contacts: 300, Seed: 3,
		Keys: []fakeapi.Key{{Token: cliKey, Workspace: "acme", ReadContacts: true}, {Token: rotatedKey, Workspace: "acme", ReadContacts: true},
			{Token: otherKey, Workspace: "globex", ReadContacts: true}},
		Workspaces: []fakeapi.Workspace{{Name: "globex", Contacts: 200, Seed: 33}}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	dir := t.TempDir()
	db := filepath.Join(dir, "w.duckdb")
	args := []string{"--base-url", hs.URL, "--duckdb", db}
	with := func(key string) []string { return []string{"LEADLEX_API_KEY=" + key} }
	if r := cli(t, with(cliKey), append([]string{"sync", "-q"}, args...)...); r.code != 0 {
		t.Fatalf("first sync: %d %s", r.code, r.stderr)
	}
	requests := srv.Requests()
	// plan and status say so.
	r := cli(t, with(otherKey), append([]string{"plan", "--json"}, args...)...)
	var p pipeline.PlanResult
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &p) != nil || !p.NeedsKeyConsent || p.Key != pipeline.KeyDiffers {
		t.Errorf("plan with another key: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r = cli(t, with(otherKey), append([]string{"plan"}, args...)...); !strings.Contains(r.stdout, "--key-rotated") {
		t.Errorf("plan's text does not say sync would refuse the key:\n%s", r.stdout)
	}
	r = cli(t, with(otherKey), "status", "--duckdb", db, "--json")
	var st statusReport
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil || len(st.Streams) != 1 || st.Streams[0].Key != pipeline.KeyDiffers {
		t.Errorf("status with another key: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r = cli(t, with(cliKey), "status", "--duckdb", db, "--json"); !strings.Contains(r.stdout, `"key": "matches"`) {
		t.Errorf("status with the stream's key:\n%s", r.stdout)
	}
	// sync refuses it, before any request.
	r = cli(t, with(otherKey), append([]string{"sync", "-q"}, args...)...)
	if r.code != 2 || !strings.Contains(r.stderr, "--key-rotated") || !strings.Contains(r.stderr, "--new-stream") || srv.Requests() != requests {
		t.Errorf("sync with another workspace's key: exit %d after %d requests: %s", r.code, srv.Requests()-requests, r.stderr)
	}
	if strings.Contains(r.stdout+r.stderr, otherKey) {
		t.Error("the key is in the output")
	}
	// A rotated key, said so in a config file: it goes on, and is known.
	cfg := filepath.Join(dir, "leadlex.toml")
	if err := os.WriteFile(cfg, []byte("base-url = \""+hs.URL+"\"\nduckdb = \"w.duckdb\"\n\n[streams.all]\nkey_rotated = true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r = cli(t, with(rotatedKey), "sync", "-q", "--config", cfg); r.code != 0 {
		t.Fatalf("sync --config with key_rotated: %d %s", r.code, r.stderr)
	}
	if r = cli(t, with(rotatedKey), append([]string{"sync", "-q"}, args...)...); r.code != 0 {
		t.Errorf("the rotated key once the stream took it: %d %s", r.code, r.stderr)
	}
	// The other workspace, as a stream of its own.
	if r = cli(t, with(otherKey), append([]string{"sync", "-q", "--new-stream"}, args...)...); r.code != 0 {
		t.Fatalf("--new-stream with the other workspace's key: %d %s", r.code, r.stderr)
	}
	if n := count(t, db, `SELECT count(*) FROM contacts WHERE _deleted_at IS NULL`); n != 500 {
		t.Errorf("%d live contacts, want the 300 of one workspace and the 200 of the other", n)
	}
}
