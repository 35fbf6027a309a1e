package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leadlex/leadlex-etl/internal/fakeapi"
)

// TestPlanNeedsNoSummaryFolder runs plan with a --summary-json whose folder
// does not exist, on the command line and from a config file: plan writes
// no summary, so it must not refuse the folder a later sync will write
// into, nor create it. A sync with the same flags still refuses it.
func TestPlanNeedsNoSummaryFolder(t *testing.T) {
	srv, url := fake(t, fakeapi.Config{Contacts: 100, Seed: 3})
	dir := t.TempDir()
	env := []string{"LEADLEX_API_KEY=" + cliKey}
	missing := filepath.Join(dir, "runs")
	args := []string{"--base-url", url, "--duckdb", filepath.Join(dir, "w.duckdb"), "--summary-json", filepath.Join(missing, "last.json")}
	if r := cli(t, env, append([]string{"plan"}, args...)...); r.code != 0 {
		t.Errorf("plan with the summary's folder missing exited %d: %s", r.code, r.stderr)
	}
	cfg := filepath.Join(dir, "leadlex.toml")
	body := "base-url = \"" + url + "\"\nduckdb = \"w.duckdb\"\nsummary-json = \"runs/{stream}.json\"\n[streams.vip]\ntag = [\"vip\"]\n"
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := cli(t, env, "plan", "--config", cfg); r.code != 0 {
		t.Errorf("plan --config with the summary's folder missing exited %d: %s", r.code, r.stderr)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("plan made the summary's folder (%v)", err)
	}
	if n := srv.Requests(); n != 0 {
		t.Errorf("plan made %d requests", n)
	}
	r := cli(t, env, append([]string{"sync"}, args...)...)
	if r.code != exitUsage || !strings.Contains(r.stderr, "does not exist") {
		t.Errorf("sync with the summary's folder missing: exit %d, %s", r.code, r.stderr)
	}
}
