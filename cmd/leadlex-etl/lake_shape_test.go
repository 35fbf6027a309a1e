package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leadlex/leadlex-etl/internal/fakeapi"
)

// TestAForeignFileInTheLakeIsRefusedBeforeAnyCall syncs a lake, then puts
// a copy of one of its files in a zero-padded month=01 style folder, as a
// user or another tool might: every sync, with a refresh or not, exits 1
// before any call with a message naming the file and the mv that fixes it,
// and leaves no temporary file; once the file is moved out, syncs go on.
// Before, each run with a refresh spent calls and failed at its commit with
// an internal error, leaving a hidden copy of the lake, and incremental runs
// reported complete with the copy's rows as duplicates.
func TestAForeignFileInTheLakeIsRefusedBeforeAnyCall(t *testing.T) {
	srv, url := fake(t, fakeapi.Config{Contacts: 500, Seed: 3})
	lake := filepath.Join(t.TempDir(), "lake")
	env := []string{"LEADLEX_API_KEY=" + cliKey}
	if r := cli(t, env, "sync", "--base-url", url, "--parquet", lake, "-q"); r.code != 0 {
		t.Fatalf("first sync: %d %s", r.code, r.stderr)
	}
	var first string
	_ = filepath.WalkDir(filepath.Join(lake, "contacts"), func(p string, d os.DirEntry, err error) error {
		if err == nil && first == "" && strings.HasSuffix(p, ".parquet") {
			first = p
		}
		return err
	})
	folder := filepath.Dir(first)
	parent, month := filepath.Split(folder)
	padded := filepath.Join(parent, strings.Replace(month, "month=", "month=0", 1))
	if err := os.Mkdir(padded, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	planted := filepath.Join(padded, filepath.Base(first))
	if err := os.WriteFile(planted, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{nil, {"--refresh-calls", "2", "--refresh-min-age", "0s"}} {
		before := srv.Requests()
		r := cli(t, env, append([]string{"sync", "--base-url", url, "--parquet", lake, "-q"}, args...)...)
		if r.code != 1 || !strings.Contains(r.stderr, planted) || !strings.Contains(r.stderr, "mv '"+planted+"'") {
			t.Errorf("sync %v: exit %d, stderr %q; want 1, naming %s and the mv that fixes it", args, r.code, r.stderr, planted)
		}
		if n := srv.Requests() - before; n != 0 {
			t.Errorf("sync %v made %d requests, want none", args, n)
		}
		_ = filepath.WalkDir(lake, func(p string, d os.DirEntry, err error) error {
			if err == nil && strings.HasPrefix(d.Name(), ".") {
				t.Errorf("left behind: %s", p)
			}
			return err
		})
	}
	if err := os.RemoveAll(padded); err != nil {
		t.Fatal(err)
	}
	if r := cli(t, env, "sync", "--base-url", url, "--parquet", lake, "-q", "--refresh-calls", "2", "--refresh-min-age", "0s"); r.code != 0 {
		t.Fatalf("sync once the file is gone: %d %s", r.code, r.stderr)
	}
}
