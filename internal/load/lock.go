package load

import (
	"fmt"
	"os"
	"syscall"
)

// fileLock is an exclusive advisory lock (flock) on a file, held while a
// sync writes a destination. The operating system drops it when the process
// dies, so a killed sync never leaves a destination locked.
type fileLock struct{ f *os.File }

// lockPath takes the lock on the file at path (creating it), or fails at
// once with a *LockedError naming the destination (kind, dest) when another
// process holds it.
func lockPath(path, kind, dest string) (*fileLock, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", path, err)
	}
	return lockOpenFile(f, kind, dest, path)
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
