package load

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"unicode/utf8"
)

// NotDuckDBError says a path given as a DuckDB file holds something else (a
// SQLite database, a CSV file, a folder). It is refused before DuckDB reads
// it: DuckDB takes a CSV or any small file for a database of its own (and
// would write over it), and downloads an extension to open a SQLite file.
type NotDuckDBError struct {
	Path string
	What string // "a SQLite database", "a folder", ...
}

func (e *NotDuckDBError) Error() string {
	return fmt.Sprintf("%s is %s, not a DuckDB database, so leadlex-etl does not open it (as a database it could be overwritten): "+
		"give a new path, where a sync creates the file, or a DuckDB file that leadlex-etl wrote; nothing was changed", e.Path, e.What)
}

// duckdbMagic is what a DuckDB database file holds at byte 8 of its header.
const duckdbMagic = "DUCK"

// checkDuckDBFile refuses with a *NotDuckDBError a path that exists and is
// not a DuckDB database, before DuckDB opens it; a missing path is fine (a
// sync creates it).
func checkDuckDBFile(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("DuckDB file %s: %w", path, err)
	}
	switch {
	case fi.IsDir():
		return &NotDuckDBError{Path: path, What: "a folder"}
	case !fi.Mode().IsRegular():
		return &NotDuckDBError{Path: path, What: "not a regular file (a device, pipe or socket)"}
	case fi.Size() == 0:
		return &NotDuckDBError{Path: path, What: "an empty file"}
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("DuckDB file %s: %w", path, err)
	}
	defer f.Close()
	head := make([]byte, 512)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("DuckDB file %s: %w", path, err)
	}
	head = head[:n]
	if len(head) >= 12 && string(head[8:12]) == duckdbMagic {
		return nil
	}
	return &NotDuckDBError{Path: path, What: fileKind(head)}
}

// fileKind names what a file that begins with head seems to be.
func fileKind(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte("SQLite format 3\x00")):
		return "a SQLite database"
	case bytes.HasPrefix(head, []byte("PAR1")):
		return "a Parquet file"
	case bytes.HasPrefix(head, []byte("\x1f\x8b")), bytes.HasPrefix(head, []byte("\x28\xb5\x2f\xfd")), bytes.HasPrefix(head, []byte("PK\x03\x04")):
		return "a compressed file"
	case bytes.IndexByte(head, 0) < 0 && utf8.Valid(trimPartialRune(head)):
		return "a text file (CSV?)"
	}
	return "a file of another kind"
}

// trimPartialRune drops a UTF-8 sequence cut at the end of b.
func trimPartialRune(b []byte) []byte {
	for i := len(b) - 1; i >= 0 && i >= len(b)-3; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return b[:i]
			}
			break
		}
	}
	return b
}

// resolvePath returns path with its symbolic links resolved, so that every
// name of one file locks and opens that file (its lock file and WAL lie
// beside it, not beside a link). What does not exist yet keeps its name
// under its resolved folder; a link to a missing file resolves to that
// file, which a sync then creates.
func resolvePath(path string) (string, error) {
	path = filepath.Clean(path)
	for hops := 0; hops < 40; hops++ {
		r, err := filepath.EvalSymlinks(path)
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		if fi, err := os.Lstat(path); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(path)
			if err != nil {
				return "", err
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(filepath.Dir(path), target)
			}
			path = target
			continue
		}
		dir, base := filepath.Dir(path), filepath.Base(path)
		if dir == path || dir == "." {
			return path, nil
		}
		rdir, err := resolvePath(dir)
		if err != nil {
			return "", err
		}
		return filepath.Join(rdir, base), nil
	}
	return "", fmt.Errorf("%s: %w", path, syscall.ELOOP)
}

// notWritable explains an error met writing beside a destination (its
// folder, its lock file) when the folder is not writable.
func notWritable(kind, dest, doing string, err error) error {
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("cannot write in the folder of %s %s (%s: %w): a sync writes the destination and a lock file beside it; "+
			"give a path in a folder this user can write to, or make the folder writable", kind, dest, doing, err)
	}
	return fmt.Errorf("%s %s: %s: %w", kind, dest, doing, err)
}
