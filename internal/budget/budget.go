// Package budget keeps the export API's rate-limit budget that every run on
// the machine shares: a small JSON file under the user's state directory
// ($XDG_STATE_HOME/leadlex-etl/budgets.json, else
// ~/.local/state/leadlex-etl/budgets.json), keyed by a hash of the API key's
// fingerprint and the base URL (never the key), locked while it is read and
// written. Two cron jobs that sync one workspace into two destinations thus
// know what the other spent, and claim the spare calls of the hour rather
// than both assume them. It must not import the sinks or the pipeline.
//
// The file is a hint, and input like any other: what it says is believed
// only as far as an answer of the API could have said it (a reset at most
// extract.MaxResetAhead after it was seen, seen no later than now), it is
// read up to MaxFileBytes and holds at most MaxEntries entries, and it is
// written inside its folder without following a symbolic link; a
// budgets.json that is a link is refused (ErrSymlink).
package budget

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/leadlex/leadlex-etl/internal/extract"
)

// MaxFileBytes is the most of the file that is read: a larger file is a
// hint lost (with a warning), replaced at the next write. An entry takes
// about 150 bytes, so MaxEntries fit many times over.
const MaxFileBytes = 1 << 20

// MaxEntries is the most entries (keys and base URLs) the file keeps: a
// write drops the least recently seen beyond it.
const MaxEntries = 1000

// maxClaims is the most claims one entry keeps, the latest expiring first.
const maxClaims = 64

// ErrSymlink says budgets.json (or its lock file) is a symbolic link: the
// store neither reads, writes through nor replaces it.
var ErrSymlink = errors.New("is a symbolic link; the shared rate-limit budget is not read or written through it (remove it, or replace it with a regular file)")

// Store is the shared budget file. Its methods lock the file for the time
// they take, so runs in several processes can use it at once.
type Store struct {
	dir, name string
	now       func() time.Time
	// Warn, if set, is told what a read found wrong but could go on from
	// (a file over MaxFileBytes, a file that does not parse). Set it before
	// the store is used.
	Warn func(msg string, args ...any)

	// What the store read and wrote, for tests.
	reads, writes           atomic.Int64
	bytesRead, bytesWritten atomic.Int64
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
	return &Store{dir: filepath.Dir(path), name: filepath.Base(path), now: time.Now}, nil
}

// Path returns the file's path.
func (s *Store) Path() string { return filepath.Join(s.dir, s.name) }

// entry is one budget in the file: what the API last said of it, and the
// calls runs claimed of it.
type entry struct {
	Limit     int              `json:"limit"`
	Remaining int              `json:"remaining"`
	Reset     time.Time        `json:"reset"`
	UpdatedAt time.Time        `json:"updated_at"`
	Claims    map[string]claim `json:"claims,omitempty"`
}

// claim is calls of an entry's hour a run means to spend.
type claim struct {
	Calls   int       `json:"calls"`
	Expires time.Time `json:"expires"`
}

type file struct {
	Budgets map[string]entry `json:"budgets"`
}

// believable says whether an answer of the API could have left e: seen no
// later than now, with a reset no further from when it was seen than the
// API's window. The file is a hint a stepped-back clock or another program
// may have left with times that block syncs for days.
func believable(e entry, now time.Time) bool {
	return !e.UpdatedAt.After(now) && !e.Reset.After(e.UpdatedAt.Add(extract.MaxResetAhead))
}

// live says whether e says something now: believable, and its hour not over.
func live(e entry, now time.Time) bool {
	return believable(e, now) && e.Reset.After(now)
}

// claimed is the sum of e's live claims but except's.
func claimed(e entry, except string, now time.Time) int {
	n := 0
	for id, c := range e.Claims {
		if id != except && c.Calls > 0 && c.Expires.After(now) && !c.Expires.After(now.Add(extract.MaxResetAhead)) {
			n += c.Calls
		}
	}
	return n
}

// Load returns the budget saved under key and when it was seen; a budget
// whose reset has passed, or that no answer of the API could have left,
// says nothing and is not returned.
func (s *Store) Load(key string) (b extract.RateLimit, seen time.Time, err error) {
	err = s.locked(key, func(f *file, now time.Time) bool {
		if e, ok := f.Budgets[key]; ok && live(e, now) {
			b, seen = extract.RateLimit{Limit: e.Limit, Remaining: e.Remaining, Reset: e.Reset, Known: true}, e.UpdatedAt
		}
		return false
	})
	return b, seen, err
}

// Claimed returns the calls runs have claimed of the budget under key and
// not released (none once its reset has passed).
func (s *Store) Claimed(key string) (n int, err error) {
	err = s.locked(key, func(f *file, now time.Time) bool {
		if e, ok := f.Budgets[key]; ok && live(e, now) {
			n = claimed(e, "", now)
		}
		return false
	})
	return n, err
}

// Save records what the API said of the budget under key at seen, unless
// the file holds a believable answer seen later. It keeps the claims of the
// entry's hour.
func (s *Store) Save(key string, b extract.RateLimit, seen time.Time) error {
	if !b.Known {
		return nil
	}
	return s.locked(key, func(f *file, now time.Time) bool {
		return observe(f, key, b, seen, now)
	})
}

// sameHourSlack is how far apart two resets of one rate-limit hour may
// be: an API that says the seconds until the reset rounds them.
const sameHourSlack = 5 * time.Second

// observe records b seen at seen under key in f, and says whether f changed.
// Within one hour (the same reset) the calls left only go down, so the
// lower count is the later answer, whichever process saved first; across
// hours the answer seen later wins. An answer of the API replaces any entry
// no answer could have left; a time ahead of the clock is taken as now.
func observe(f *file, key string, b extract.RateLimit, seen, now time.Time) bool {
	if !b.Known {
		return false
	}
	if seen.After(now) {
		seen = now
	}
	if lim := seen.Add(extract.MaxResetAhead); b.Reset.After(lim) {
		b.Reset = lim
	}
	e, ok := f.Budgets[key]
	switch {
	case !ok || !believable(e, now):
		e = entry{}
	case e.Reset.Sub(b.Reset).Abs() <= sameHourSlack:
		if b.Remaining >= e.Remaining && b.Limit == e.Limit {
			return false
		}
		if e.UpdatedAt.After(seen) {
			seen = e.UpdatedAt
		}
	case e.UpdatedAt.After(seen):
		return false
	}
	e.Limit, e.Remaining, e.Reset, e.UpdatedAt = b.Limit, b.Remaining, b.Reset.UTC(), seen.UTC()
	f.Budgets[key] = e
	return true
}

// Claim records that run id means to spend up to want calls of the budget
// under key, after recording b (the run's own latest answer, seen at seen),
// and returns how many it may: at most the calls left, less reserve and
// less what other runs claimed and have not released. A claim replaces the
// run's earlier one and expires at the reset of its hour, so that a run
// that dies holds nothing past it. With no budget known for the key there
// is nothing to share, and the run may spend what it asked.
func (s *Store) Claim(key, id string, want, reserve int, b extract.RateLimit, seen time.Time) (granted int, err error) {
	err = s.locked(key, func(f *file, now time.Time) bool {
		changed := observe(f, key, b, seen, now)
		e, ok := f.Budgets[key]
		if !ok || !live(e, now) {
			granted = max(want, 0)
			return changed
		}
		granted = max(min(want, e.Remaining-reserve-claimed(e, id, now)), 0)
		_, had := e.Claims[id]
		switch {
		case granted > 0:
			if e.Claims == nil {
				e.Claims = map[string]claim{}
			}
			e.Claims[id] = claim{Calls: granted, Expires: e.Reset}
		case had:
			delete(e.Claims, id)
		default:
			return changed
		}
		f.Budgets[key] = e
		return true
	})
	return granted, err
}

// Release records b (the run's latest answer, seen at seen) and gives
// back what is left of run id's claim on the budget under key, in one
// write: the calls the run spent are then in what the file says is left,
// as they leave its claim.
func (s *Store) Release(key, id string, b extract.RateLimit, seen time.Time) error {
	return s.locked(key, func(f *file, now time.Time) bool {
		changed := observe(f, key, b, seen, now)
		e, ok := f.Budgets[key]
		if _, had := e.Claims[id]; !ok || !had {
			return changed
		}
		delete(e.Claims, id)
		f.Budgets[key] = e
		return true
	})
}

// prune keeps what f's entries still say: live entries and claims, at most
// maxClaims claims an entry (the latest expiring) and MaxEntries entries
// (the most recently seen, keep's always).
func prune(f *file, keep string, now time.Time) {
	for k, e := range f.Budgets {
		if !live(e, now) {
			delete(f.Budgets, k)
			continue
		}
		for id, c := range e.Claims {
			if c.Calls <= 0 || !c.Expires.After(now) || c.Expires.After(now.Add(extract.MaxResetAhead)) {
				delete(e.Claims, id)
			}
		}
		if len(e.Claims) > maxClaims {
			ids := slices.SortedFunc(maps.Keys(e.Claims), func(a, b string) int { return e.Claims[b].Expires.Compare(e.Claims[a].Expires) })
			for _, id := range ids[maxClaims:] {
				delete(e.Claims, id)
			}
		}
		if len(e.Claims) == 0 {
			e.Claims = nil
		}
		f.Budgets[k] = e
	}
	if len(f.Budgets) <= MaxEntries {
		return
	}
	keys := slices.SortedFunc(maps.Keys(f.Budgets), func(a, b string) int {
		return cmp.Or(cmp.Compare(boolInt(b == keep), boolInt(a == keep)), f.Budgets[b].UpdatedAt.Compare(f.Budgets[a].UpdatedAt), cmp.Compare(a, b))
	})
	for _, k := range keys[MaxEntries:] {
		delete(f.Budgets, k)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// locked reads the file under an exclusive lock, calls fn with it and the
// time, and when fn says it changed it, writes it back atomically, pruned
// (key's entry kept).
// Every path is opened inside the file's folder (os.Root) and neither the
// file nor its lock may be a symbolic link. A file that does not parse, or
// is over MaxFileBytes, is treated as empty: it holds nothing but hints.
func (s *Store) locked(key string, fn func(f *file, now time.Time) bool) error {
	root, err := os.OpenRoot(s.dir)
	if err != nil {
		return fmt.Errorf("shared budget file: %w", err)
	}
	defer root.Close()
	lock, err := s.openLock(root)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("shared budget file: lock: %w", err)
	}
	data, err := s.read(root)
	if err != nil {
		return err
	}
	now := s.now()
	if !fn(&data, now) {
		return nil
	}
	prune(&data, key, now)
	return s.write(root, data)
}

// openLock opens (creating it) the lock file beside the file, refusing a
// symbolic link: O_EXCL creates no file through one, and an existing one is
// looked at before it is opened.
func (s *Store) openLock(root *os.Root) (*os.File, error) {
	name := s.name + ".lock"
	lock, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if errors.Is(err, fs.ErrExist) {
		if err := s.notLink(root, name); err != nil {
			return nil, err
		}
		lock, err = root.OpenFile(name, os.O_RDWR, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("shared budget file: %w", err)
	}
	return lock, nil
}

// notLink returns an error wrapping ErrSymlink when name is a symbolic link.
func (s *Store) notLink(root *os.Root, name string) error {
	fi, err := root.Lstat(name)
	switch {
	case err != nil:
		return fmt.Errorf("shared budget file: %w", err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("shared budget file %s %w", filepath.Join(s.dir, name), ErrSymlink)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("shared budget file %s is not a regular file; remove it", filepath.Join(s.dir, name))
	}
	return nil
}

// read returns what the file holds, up to MaxFileBytes: nothing when it
// does not exist, does not parse or is larger.
func (s *Store) read(root *os.Root) (file, error) {
	data := file{Budgets: map[string]entry{}}
	if err := s.notLink(root, s.name); errors.Is(err, fs.ErrNotExist) {
		return data, nil
	} else if err != nil {
		return data, err
	}
	f, err := root.Open(s.name)
	if err != nil {
		return data, fmt.Errorf("shared budget file: %w", err)
	}
	defer f.Close()
	// What was opened is what was looked at, not a link put there since.
	if fi, lfi, err := statBoth(root, f, s.name); err != nil || !os.SameFile(fi, lfi) {
		return data, fmt.Errorf("shared budget file %s %w", s.Path(), ErrSymlink)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	s.reads.Add(1)
	s.bytesRead.Add(int64(len(b)))
	if err != nil {
		return data, fmt.Errorf("shared budget file: %w", err)
	}
	if len(b) > MaxFileBytes {
		s.warn("the shared rate-limit budget file is larger than it can be: what it says is ignored, and the next save replaces it",
			"file", s.Path(), "max_bytes", MaxFileBytes)
		return data, nil
	}
	if err := json.Unmarshal(b, &data); err != nil {
		s.warn("the shared rate-limit budget file does not parse: what it says is ignored, and the next save replaces it", "file", s.Path(), "err", err.Error())
		data = file{}
	}
	if data.Budgets == nil {
		data.Budgets = map[string]entry{}
	}
	return data, nil
}

func statBoth(root *os.Root, f *os.File, name string) (fs.FileInfo, fs.FileInfo, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	lfi, err := root.Lstat(name)
	return fi, lfi, err
}

// write replaces the file with data: a temporary file created anew beside
// it (a link left at its name is removed, never followed), renamed over it.
func (s *Store) write(root *os.Root, data file) error {
	out, err := json.MarshalIndent(data, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.name + ".tmp"
	if err := root.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("shared budget file: %w", err)
	}
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("shared budget file: %w", err)
	}
	_, err = f.Write(out)
	if err = errors.Join(err, f.Close()); err != nil {
		_ = root.Remove(tmp)
		return fmt.Errorf("shared budget file: %w", err)
	}
	s.writes.Add(1)
	s.bytesWritten.Add(int64(len(out)))
	if err := root.Rename(tmp, s.name); err != nil {
		_ = root.Remove(tmp)
		return fmt.Errorf("shared budget file: %w", err)
	}
	return nil
}

func (s *Store) warn(msg string, args ...any) {
	if s.Warn != nil {
		s.Warn(msg, args...)
	}
}
