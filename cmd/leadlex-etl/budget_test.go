package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/fakeapi"
	"github.com/leadlex/leadlex-etl/internal/pipeline"
)

// TestASymlinkedBudgetFileIsRefused makes budgets.json a symbolic link to a
// file that says the key's hour is spent: sync --no-wait neither believes
// nor writes through it, says why, and syncs; the link stays a link.
func TestASymlinkedBudgetFileIsRefused(t *testing.T) {
	srv, url := fake(t, fakeapi.Config{Contacts: 500, Seed: 4, RateLimit: 10, Hour: time.Hour})
	cliEnv(t) // makes states[t]
	dir := filepath.Join(states[t], "leadlex-etl")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	spent, err := json.Marshal(map[string]any{"budgets": map[string]any{pipeline.BudgetKey(extract.NewAPIKey(cliKey).Fingerprint(), url): map[string]any{
		"limit": 10, "remaining": 0, "reset": now.Add(30 * time.Minute), "updated_at": now.Add(-time.Minute)}}})
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "elsewhere.json")
	if err := os.WriteFile(target, spent, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "budgets.json")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	r := cli(t, []string{"LEADLEX_API_KEY=" + cliKey}, "sync", "--base-url", url, "--duckdb", filepath.Join(t.TempDir(), "w.duckdb"), "--no-wait")
	if r.code != 0 || srv.Calls() == 0 {
		t.Fatalf("sync next to a linked budget file: exit %d after %d calls: %s", r.code, srv.Calls(), r.stderr)
	}
	if !strings.Contains(r.stderr, "symbolic link") || !strings.Contains(r.stderr, link) {
		t.Errorf("the sync does not say the budget file is a link it ignores:\n%s", r.stderr)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("budgets.json is no longer the link: %v %v", fi, err)
	}
	if b, _ := os.ReadFile(target); string(b) != string(spent) {
		t.Errorf("the link's target was written:\n%s", b)
	}
}
