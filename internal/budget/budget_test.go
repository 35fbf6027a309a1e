package budget

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/leadlex/leadlex-etl/internal/extract"
)

func TestStore(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_STATE_HOME", dir)
	path, err := DefaultPath()
	if err != nil || path != filepath.Join(dir, "leadlex-etl", "budgets.json") {
		t.Fatalf("DefaultPath %q %v", path, err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	b := extract.RateLimit{Limit: 10, Remaining: 3, Reset: now.Add(30 * time.Minute), Known: true}
	if err := s.Save("k1", b, now); err != nil {
		t.Fatal(err)
	}
	// An older observation does not overwrite a newer one.
	if err := s.Save("k1", extract.RateLimit{Limit: 10, Remaining: 9, Reset: now.Add(time.Hour), Known: true}, now.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	got, seen, err := s.Load("k1")
	if err != nil || got.Remaining != 3 || !got.Known || seen.Sub(now).Abs() > time.Millisecond {
		t.Errorf("Load: %+v seen %s (%v)", got, seen, err)
	}
	if got, _, _ := s.Load("other"); got.Known {
		t.Errorf("an unknown key: %+v", got)
	}
	// A budget whose reset passed says nothing.
	if err := s.Save("k2", extract.RateLimit{Limit: 10, Remaining: 0, Reset: now.Add(-time.Second), Known: true}, now); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.Load("k2"); got.Known {
		t.Errorf("an expired budget: %+v", got)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v (%v)", fi.Mode(), err)
	}
	// A file that does not parse holds nothing, and is rewritten.
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _, err := s.Load("k1"); err != nil || got.Known {
		t.Errorf("a corrupt file: %+v %v", got, err)
	}
	// Many processes' worth of writers at once lose nothing.
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := string(rune('a' + i))
			if err := s.Save(key, b, now); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i := range 20 {
		if got, _, _ := s.Load(string(rune('a' + i))); !got.Known {
			t.Errorf("key %c lost", 'a'+i)
		}
	}
}
