package archive

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
)

// ErrNotWritable is matched by a *NotWritableError.
var ErrNotWritable = errors.New("raw dir not writable")

// NotWritableError says a sync cannot write a folder of the raw dir: the
// raw dir itself, or the folder of the stream in it. Dir is the folder as
// the user knows it, Err what creating a file there returned.
type NotWritableError struct {
	Dir string
	Err error
}

func (e *NotWritableError) Error() string {
	return fmt.Sprintf("cannot write in %s (%v): a sync keeps every response body there; give a folder this user can write to, or make it writable", e.Dir, e.Err)
}

func (e *NotWritableError) Unwrap() error { return e.Err }

// Is reports whether target is ErrNotWritable.
func (e *NotWritableError) Is(target error) bool { return target == ErrNotWritable }

// CheckWritable checks, by creating and removing a file in each, that a
// sync can write the raw dir and, when streamID is set and its folder
// exists, the stream's folder, so that a raw dir it cannot write is found
// before any call rather than after the first. Its error is a
// *NotWritableError.
func (a *Archive) CheckWritable(streamID string) error {
	dirs := []string{"."}
	if streamID != "" {
		if err := checkStream(streamID); err != nil {
			return err
		}
		if fi, err := a.root.Stat(streamID); err == nil && fi.IsDir() {
			dirs = append(dirs, streamID)
		}
	}
	for _, d := range dirs {
		name := path.Join(d, tempPrefix+randomHex()+".probe")
		f, err := a.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			err = f.Close()
			if rerr := a.root.Remove(name); err == nil {
				err = rerr
			}
		}
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err // the name is a probe's, of no use to the user
			}
			return &NotWritableError{Dir: a.display(d), Err: err}
		}
	}
	return nil
}
