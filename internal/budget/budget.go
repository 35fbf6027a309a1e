// Package budget keeps the export API's rate-limit budget that every run on
// the machine shares: a small JSON file under the user's state directory
// ($XDG_STATE_HOME/leadlex-etl/budgets.json, else
// ~/.local/state/leadlex-etl/budgets.json), keyed by a hash of the API key's
// fingerprint and the base URL (never the key), locked while it is read and
// written. Two cron jobs that sync one workspace into two destinations thus
// know what the other spent. It must not import the sinks or the pipeline.
package budget

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/leadlex/leadlex-etl/internal/extract"
)

// Store is the shared budget file. Its methods lock the file for the time
// they take, so runs in several processes can use it at once.
type Store struct {
	path string
	now  func() time.Time
}

// DefaultPath is where the file lives: under $XDG_STATE_HOME, or
// ~/.local/state when that is unset, as the XDG base directories say.
func DefaultPath() (string, error) {
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" || !filepath.IsAbs(dir) {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no state directory: set XDG_STATE_HOME or HOME: %w", err)
		}
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "leadlex-etl", "budgets.json"), nil
}

// Open returns the store at path, creating its folder (mode 0700).
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("shared budget file: %w", err)
	}
	return &Store{path: path, now: time.Now}, nil
}

// Path returns the file's path.
func (s *Store) Path() string { return s.path }

// entry is one budget in the file.
type entry struct {
	Limit     int       `json:"limit"`
	Remaining int       `json:"remaining"`
	Reset     time.Time `json:"reset"`
	UpdatedAt time.Time `json:"updated_at"`
}

type file struct {
	Budgets map[string]entry `json:"budgets"`
}

// Load returns the budget saved under key and when it was seen; a budget
// whose reset has passed says nothing any more and is not returned.
func (s *Store) Load(key string) (b extract.RateLimit, seen time.Time, err error) {
	err = s.locked(func(f *file) bool {
		e, ok := f.Budgets[key]
		if !ok || !e.Reset.After(s.now()) {
			return false
		}
		b, seen = extract.RateLimit{Limit: e.Limit, Remaining: e.Remaining, Reset: e.Reset, Known: true}, e.UpdatedAt
		return false
	})
	return b, seen, err
}

// Save records what the API last said of the budget under key, unless the
// file holds something seen later. Entries whose reset passed a day ago are
// dropped.
func (s *Store) Save(key string, b extract.RateLimit, seen time.Time) error {
	if !b.Known {
		return nil
	}
	return s.locked(func(f *file) bool {
		if e, ok := f.Budgets[key]; ok && e.UpdatedAt.After(seen) {
			return false
		}
		f.Budgets[key] = entry{Limit: b.Limit, Remaining: b.Remaining, Reset: b.Reset.UTC(), UpdatedAt: seen.UTC()}
		for k, e := range f.Budgets {
			if s.now().Sub(e.Reset) > 24*time.Hour {
				delete(f.Budgets, k)
			}
		}
		return true
	})
}

// locked reads the file under an exclusive lock, calls f, and writes the
// file back (atomically) when f says it changed it. A file that does not
// parse is treated as empty: it holds nothing but hints.
func (s *Store) locked(f func(*file) bool) error {
	lock, err := os.OpenFile(s.path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("shared budget file: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("shared budget file: lock: %w", err)
	}
	var data file
	b, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("shared budget file: %w", err)
	default:
		if json.Unmarshal(b, &data) != nil {
			data = file{}
		}
	}
	if data.Budgets == nil {
		data.Budgets = map[string]entry{}
	}
	if !f(&data) {
		return nil
	}
	out, err := json.MarshalIndent(data, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, out, 0o600); err != nil {
		return fmt.Errorf("shared budget file: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("shared budget file: %w", err)
	}
	return nil
}
