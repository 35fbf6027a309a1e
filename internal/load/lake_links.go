package load

import (
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
)

// LinkError says the lake's data folder is, or holds, a symbolic link (to
// a folder or a file). The lake confines every file operation to its own
// folder: it cannot follow a link out of it and would take the files behind
// it for gone, while readers of the lake follow it. Nothing is synced until
// the link is replaced by what it points to. Nothing was changed.
type LinkError struct {
	Path   string // the link
	Target string // what it points to, as the link says
}

func (e *LinkError) Error() string {
	target := e.Target
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(e.Path), target)
	}
	return fmt.Sprintf("%s is a symbolic link (to %s) in the lake's data folder: the lake keeps its data files inside its own folder and does not follow links, "+
		"so it would take the files behind this one for gone. Nothing is synced until it is replaced: replace the link by the folder or file it points to "+
		"(for example: rm '%s' && cp -a '%s' '%s'), then run again; nothing was changed", e.Path, e.Target, e.Path, target, e.Path)
}

// linkError returns a *LinkError for the lake-relative rel if it is a
// symbolic link, or nil.
func (l *Lake) linkError(rel string, mode fs.FileMode) error {
	if mode&fs.ModeSymlink == 0 {
		return nil
	}
	target, err := l.root.Readlink(rel)
	if err != nil {
		target = "?"
	}
	return &LinkError{Path: l.rootPath(rel), Target: target}
}

// checkNotLink refuses a lake-relative folder that is a symbolic link (a
// walk from it would follow it); a missing one is fine.
func (l *Lake) checkNotLink(rel string) error {
	fi, err := l.root.Lstat(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return l.linkError(rel, fi.Mode())
}

// diskFileOf returns the diskFile of the walked entry p, or a *LinkError
// when it is a symbolic link (of any name: readers follow links to
// folders), or ok false when a reader does not take it for data (a folder,
// a hidden file, a name not ending in .parquet).
func (l *Lake) diskFileOf(p string, d fs.DirEntry) (f diskFile, ok bool, err error) {
	if err := l.linkError(p, d.Type()); err != nil {
		return f, false, err
	}
	name := d.Name()
	if d.IsDir() || strings.HasPrefix(name, ".") || !strings.HasSuffix(strings.ToLower(name), ".parquet") {
		return f, false, nil
	}
	f = diskFile{rel: p, regular: d.Type().IsRegular()}
	if f.regular {
		info, err := d.Info()
		if err != nil {
			return f, false, err
		}
		f.size, f.mtime = info.Size(), info.ModTime().UnixNano()
	}
	return f, true, nil
}

// changedInPlace says how a data file of the manifest's size changed since
// the lake wrote it, or "" when it did not. A file whose modification time
// is the one noted is taken as it is; one whose time moved (copied back
// from a backup, touched, or written) is read and compared with the
// checksum noted, and its new time noted if it is the same. An entry of an
// earlier version's list (a size only) is completed from the file.
func (l *Lake) changedInPlace(f diskFile, rec lakeFile) string {
	if rec.MTime == f.mtime && rec.CRC32C != "" {
		return ""
	}
	sum, err := l.fileChecksum(f.rel)
	if err != nil {
		return fmt.Sprintf("it cannot be read (%v)", err)
	}
	if rec.CRC32C != "" && sum != rec.CRC32C {
		return fmt.Sprintf("it was changed after leadlex-etl wrote it (same size, other bytes: checksum %s, written as %s)", sum, rec.CRC32C)
	}
	rec.MTime, rec.CRC32C = f.mtime, sum
	l.state.Files[f.rel] = rec
	l.filesNoted = true
	return ""
}

// fileChecksum returns the CRC-32C of a lake-relative file's bytes.
func (l *Lake) fileChecksum(rel string) (string, error) {
	f, err := l.root.Open(rel)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := newChecksum()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return checksumString(h), nil
}

// crc32c is the table of the lake's file checksums (CRC-32C, which CPUs
// compute in hardware).
var crc32c = crc32.MakeTable(crc32.Castagnoli)

func newChecksum() hash.Hash32 { return crc32.New(crc32c) }

func checksumString(h hash.Hash32) string { return fmt.Sprintf("%08x", h.Sum32()) }
