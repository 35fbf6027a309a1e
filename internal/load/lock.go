package load

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// fileLock is an exclusive advisory lock (flock) on a file, held while a
// sync writes a destination. The operating system drops it when the process
// dies, so a killed sync never leaves a destination locked.
type fileLock struct {
	f       *os.File
	path    string // set by lockPath
	created bool   // lockPath made the file
}

// lockPath takes the lock on the file at path (creating it), or fails at
// once with a *LockedError naming the destination (kind, dest) when another
// process holds it. A lock file that a failed open removed while this one
// waited for it is taken again at path, so two processes never hold locks
// on two files of one name.
func lockPath(path, kind, dest string) (*fileLock, error) {
	for tries := 0; tries < 100; tries++ {
		created := true
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
		if errors.Is(err, fs.ErrExist) {
			created = false
			f, err = os.OpenFile(path, os.O_RDWR, 0)
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed meanwhile
			}
		}
		if err != nil && created {
			return nil, notWritable(kind, dest, "creating its lock file", err)
		}
		if err != nil {
			return nil, fmt.Errorf("cannot open the lock file %s of %s %s (%w): a sync needs to write it; make it writable by this user, or give another path", path, kind, dest, err)
		}
		l, err := lockOpenFile(f, kind, dest, path)
		if err != nil {
			return nil, err
		}
		if same, err := l.atPath(path); err != nil || !same {
			_ = l.release()
			continue
		}
		l.path, l.created = path, created
		return l, nil
	}
	return nil, fmt.Errorf("lock file %s of %s %s keeps being replaced by another process", path, kind, dest)
}

// atPath reports whether the locked file is still the file at path.
func (l *fileLock) atPath(path string) (bool, error) {
	held, err := l.f.Stat()
	if err != nil {
		return false, err
	}
	now, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(held, now), nil
}

// lockOpenFile takes the lock on f, an open file at path; it closes f when
// the lock is held elsewhere.
func lockOpenFile(f *os.File, kind, dest, path string) (*fileLock, error) {
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, &LockedError{Kind: kind, Path: dest, Detail: "lock file " + path + " is held"}
	}
	return &fileLock{f: f}, nil
}

// release drops the lock.
func (l *fileLock) release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// discard removes the lock file if lockPath made it, while the lock is
// still held, then drops the lock: an open that failed (a file that is
// not the tool's, say) leaves nothing of its own beside it.
func (l *fileLock) discard() error {
	if l == nil || l.f == nil {
		return nil
	}
	var err error
	if l.created {
		err = os.Remove(l.path)
	}
	return errors.Join(err, l.release())
}
