package budget

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leadlex/leadlex-etl/internal/extract"
)

// writeEntries writes a budgets.json of entries by hand, as a hostile
// process or an earlier clock could have left it.
func writeEntries(t *testing.T, path string, entries map[string]map[string]any) {
	t.Helper()
	b, err := json.Marshal(map[string]any{"budgets": entries})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func openStore(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "leadlex-etl", "budgets.json")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return s, path
}

// TestFutureEntriesAreNotBelieved writes entries no API answer of this hour
// could have left (a reset days ahead, a reset further from when it was seen
// than the API's window, an updated_at in the future, as after the clock
// stepped back): Load does not believe them, and an answer of the API
// replaces them, whatever their updated_at says.
func TestFutureEntriesAreNotBelieved(t *testing.T) {
	now := time.Now().UTC()
	for _, tc := range []struct {
		name             string
		reset, updatedAt time.Time
	}{
		{"a reset three days ahead", now.Add(72 * time.Hour), now.Add(-time.Minute)},
		{"updated_at three days ahead (the clock stepped back)", now.Add(30 * time.Minute), now.Add(72 * time.Hour)},
		{"both ahead", now.Add(73 * time.Hour), now.Add(72 * time.Hour)},
		{"a reset further from its updated_at than the API's window", now.Add(30 * time.Minute), now.Add(-2 * time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, path := openStore(t)
			writeEntries(t, path, map[string]map[string]any{"k": {"limit": 10, "remaining": 0, "reset": tc.reset, "updated_at": tc.updatedAt}})
			if b, _, err := s.Load("k"); err != nil || b.Known {
				t.Errorf("Load believed %+v (%v)", b, err)
			}
			answer := extract.RateLimit{Limit: 10, Remaining: 7, Reset: now.Add(40 * time.Minute), Known: true}
			if err := s.Save("k", answer, now); err != nil {
				t.Fatal(err)
			}
			b, seen, err := s.Load("k")
			if err != nil || !b.Known || b.Remaining != 7 || !b.Reset.Equal(answer.Reset) || !seen.Equal(now) {
				t.Errorf("after an answer of the API: %+v seen %s (%v)", b, seen, err)
			}
		})
	}
	// An answer seen "in the future" by a caller's clock is kept at now: the
	// file never holds a time ahead of the machine's clock.
	s, _ := openStore(t)
	if err := s.Save("k", extract.RateLimit{Limit: 10, Remaining: 3, Reset: now.Add(time.Hour), Known: true}, now.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if b, seen, err := s.Load("k"); err != nil || !b.Known || seen.After(time.Now()) {
		t.Errorf("an answer seen ahead of the clock: %+v seen %s (%v)", b, seen, err)
	}
}

// TestSymlinksAreNeverWrittenThrough plants symbolic links where the store
// writes: the temporary file and the lock file pointing at a file outside
// the folder are not written through (nor is a missing target created), and
// a budgets.json that is a link is refused with an error that names it,
// neither read, written through nor replaced.
func TestSymlinksAreNeverWrittenThrough(t *testing.T) {
	now := time.Now()
	b := extract.RateLimit{Limit: 10, Remaining: 4, Reset: now.Add(30 * time.Minute), Known: true}
	for _, name := range []string{"budgets.json.tmp", "budgets.json.lock"} {
		t.Run(name, func(t *testing.T) {
			s, path := openStore(t)
			outside := t.TempDir()
			victim := filepath.Join(outside, "victim")
			if err := os.WriteFile(victim, []byte("precious"), 0o600); err != nil {
				t.Fatal(err)
			}
			missing := filepath.Join(outside, "missing")
			for _, target := range []string{victim, missing} {
				link := filepath.Join(filepath.Dir(path), name)
				_ = os.Remove(link)
				if err := os.Symlink(target, link); err != nil {
					t.Fatal(err)
				}
				_ = s.Save("k", b, now) // may refuse; must not write through
				if got, err := os.ReadFile(victim); err != nil || string(got) != "precious" {
					t.Fatalf("the link's target was written: %q %v", got, err)
				}
				if _, err := os.Lstat(missing); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("the link's missing target was created: %v", err)
				}
			}
			if name == "budgets.json.tmp" {
				if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() {
					t.Fatalf("budgets.json: %v %v", fi, err)
				}
				if got, _, err := s.Load("k"); err != nil || got.Remaining != 4 {
					t.Errorf("Load after a planted temporary link: %+v %v", got, err)
				}
			}
		})
	}
	t.Run("budgets.json", func(t *testing.T) {
		s, path := openStore(t)
		target := filepath.Join(t.TempDir(), "elsewhere.json")
		writeEntries(t, target, map[string]map[string]any{"k": {"limit": 10, "remaining": 0, "reset": now.Add(30 * time.Minute), "updated_at": now}})
		before, _ := os.ReadFile(target)
		if err := os.Symlink(target, path); err != nil {
			t.Fatal(err)
		}
		got, _, err := s.Load("k")
		if err == nil || got.Known || !strings.Contains(err.Error(), "symbolic link") || !strings.Contains(err.Error(), path) {
			t.Errorf("Load through a link: %+v %v", got, err)
		}
		if err := s.Save("k", b, now); !errors.Is(err, ErrSymlink) || !strings.Contains(err.Error(), path) {
			t.Errorf("Save through a link: %v", err)
		}
		if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("the link was replaced: %v %v", fi, err)
		}
		if after, _ := os.ReadFile(target); string(after) != string(before) {
			t.Errorf("the link's target was written:\n%s", after)
		}
	})
}
