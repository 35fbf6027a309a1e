package load

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// journal is _leadlex/journal.json: a commit decided but maybe not done.
// Paths are lake-relative, with slashes.
type journal struct {
	Renames [][2]string `json:"renames"` // from -> to
	Deletes []string    `json:"deletes"` // data files replaced
	State   lakeState   `json:"state"`
}

// testHookCommit lets tests stop a commit at a named step, as a crash would.
var testHookCommit = func(step string) error { return nil }

// dataFileName is the name of every data file the lake writes.
var dataFileName = regexp.MustCompile(`^part-[0-9]{8,}-[0-9a-f]{12}\.parquet$`)

// rejectsFileName is the name of every rejects file the lake writes.
var rejectsFileName = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}\.jsonl$`)

// partitionPath matches the partition folders of the current layout
// (unpadded values) and, with pad, of the first one.
var (
	partitionPath    = regexp.MustCompile(`^year=[1-9][0-9]{0,3}(/month=([1-9]|1[0-2])(/day=([1-9]|[12][0-9]|3[01]))?)?$`)
	oldPartitionPath = regexp.MustCompile(`^year=[0-9]{4}(/month=[0-9]{2}(/day=[0-9]{2})?)?$`)
)

// checkDataPath reports whether rel is a data file of the current layout:
// contacts/<partition>/part-*.parquet.
func checkDataPath(rel string) error {
	dir, name := path.Split(rel)
	part, ok := strings.CutPrefix(strings.TrimSuffix(dir, "/"), dataDir+"/")
	if !fs.ValidPath(rel) || !ok || !partitionPath.MatchString(part) || !dataFileName.MatchString(name) {
		return fmt.Errorf("%q is not a data file of the lake (%s/year=Y[/month=M[/day=D]]/part-N-X.parquet)", rel, dataDir)
	}
	return nil
}

// checkOldDataPath reports whether rel is a data file of the first layout.
func checkOldDataPath(rel string) error {
	dir, name := path.Split(rel)
	if !fs.ValidPath(rel) || !oldPartitionPath.MatchString(strings.TrimSuffix(dir, "/")) || !dataFileName.MatchString(name) {
		return fmt.Errorf("%q is not a data file of a first-layout lake", rel)
	}
	return nil
}

// tempOf is the hidden temporary name a file is written under before a
// journal renames it into place.
func tempOf(rel string) string {
	dir, name := path.Split(rel)
	return dir + "." + name + ".tmp"
}

// check refuses a journal that would touch anything but the lake's own
// files: renames of a temporary file to the data file or rejects file it
// stands for (or, converting a first-layout lake, of an old data file to its
// new place), and deletions of data files. A lake copied from elsewhere is
// untrusted: nothing is done unless every step passes.
func (j *journal) check() error {
	// A journal an older version left names files of its own layout.
	dataPath := checkDataPath
	if j.State.Format < lakeFormat {
		dataPath = checkOldDataPath
	}
	for _, r := range j.Renames {
		from, to := r[0], r[1]
		if _, name := path.Split(to); path.Dir(to) == rejectsDir && rejectsFileName.MatchString(name) {
			if from != tempOf(to) {
				return fmt.Errorf("rename %q -> %q: not the rejects file's temporary name", from, to)
			}
			continue
		}
		if err := dataPath(to); err != nil {
			return fmt.Errorf("rename to %w", err)
		}
		if from == tempOf(to) {
			continue
		}
		if j.State.Format < lakeFormat || checkOldDataPath(from) != nil || path.Base(from) != path.Base(to) {
			return fmt.Errorf("rename %q -> %q: neither a temporary file nor a first-layout data file moved to its new place", from, to)
		}
	}
	for _, d := range j.Deletes {
		if err := dataPath(d); err != nil {
			return fmt.Errorf("delete %w", err)
		}
	}
	return j.State.check()
}

// checkNoLinks refuses a journal whose paths pass through a symbolic link:
// the lake never makes one, and os.Root would refuse one leading outside
// half-way through the commit.
func (l *Lake) checkNoLinks(j journal) error {
	paths := slices.Clone(j.Deletes)
	for _, r := range j.Renames {
		paths = append(paths, r[0], r[1])
	}
	for _, p := range paths {
		for d := p; d != "." && d != "/"; d = path.Dir(d) {
			fi, err := l.root.Lstat(d)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			if fi.Mode()&fs.ModeSymlink != 0 {
				return fmt.Errorf("%q passes through the symbolic link %q", p, d)
			}
		}
	}
	return nil
}

// writeFileAtomic writes data to rel through a temporary file, fsyncs it,
// renames it into place and fsyncs the folder.
func (l *Lake) writeFileAtomic(rel string, data []byte) (err error) {
	tmp := tempOf(rel)
	f, err := l.root.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = l.root.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := l.root.Rename(tmp, rel); err != nil {
		return err
	}
	return l.syncDir(path.Dir(rel))
}

// syncDir fsyncs a lake-relative folder, so that renames in it are durable.
func (l *Lake) syncDir(dir string) error {
	d, err := l.root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// recover completes a journaled commit and removes temporary files no
// journal names (windows that died before deciding to commit).
func (l *Lake) recover() error {
	b, err := l.root.ReadFile(journalFile)
	switch {
	case err == nil:
		var j journal
		if err := json.Unmarshal(b, &j); err != nil {
			return &UntrustedError{Path: l.rootPath(journalFile), Detail: err.Error()}
		}
		if err := j.check(); err != nil {
			return &UntrustedError{Path: l.rootPath(journalFile), Detail: err.Error()}
		}
		if err := l.checkNoLinks(j); err != nil {
			return &UntrustedError{Path: l.rootPath(journalFile), Detail: err.Error()}
		}
		if err := l.apply(j); err != nil {
			return err
		}
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	var stale []string
	err = fs.WalkDir(l.root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && strings.HasPrefix(d.Name(), ".") && strings.HasSuffix(d.Name(), ".tmp") {
			stale = append(stale, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range stale {
		if err := l.root.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// apply carries out a checked journal; every step may already have been
// done (a crash during an earlier apply).
func (l *Lake) apply(j journal) error {
	dirs := map[string]bool{}
	var moved []string // folders files were moved out of
	for _, r := range j.Renames {
		if err := l.root.MkdirAll(path.Dir(r[1]), 0o755); err != nil {
			return err
		}
		err := l.root.Rename(r[0], r[1])
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := testHookCommit("after-a-rename"); err != nil {
			return err
		}
		dirs[path.Dir(r[1])] = true
		if path.Dir(r[0]) != path.Dir(r[1]) {
			moved = append(moved, r[0])
		}
	}
	for d := range dirs {
		if err := l.syncDir(d); err != nil {
			return err
		}
	}
	if err := testHookCommit("after-renames"); err != nil {
		return err
	}
	for _, rel := range j.Deletes {
		if err := l.root.Remove(rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	// Drop partition folders left empty, up to the data root (or the lake's
	// top for files a conversion moved).
	for _, rel := range append(j.Deletes, moved...) {
		for d := path.Dir(rel); d != "." && d != dataDir; d = path.Dir(d) {
			if l.root.Remove(d) != nil {
				break
			}
		}
	}
	if err := l.saveState(j.State); err != nil {
		return err
	}
	if err := l.root.Remove(journalFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return l.syncDir(metaDir)
}

// commitJournal makes j the commit point, then carries it out. Once the
// journal is on disk the commit is decided: a failure after that leaves the
// lake broken for this process, and the next open finishes the commit.
func (l *Lake) commitJournal(j journal) error {
	if l.readOnly {
		return errReadOnlyLake
	}
	if err := j.check(); err != nil {
		return fmt.Errorf("internal error: a commit would leave the lake's files: %w", err)
	}
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	if err := testHookCommit("before-journal"); err != nil {
		return err
	}
	if err := l.writeFileAtomic(journalFile, b); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	if err := testHookCommit("after-journal"); err != nil {
		return err
	}
	if err := l.apply(j); err != nil {
		l.broken = fmt.Errorf("lake %s: a commit could not be completed (the next run finishes it): %w", l.dir, err)
		return l.broken
	}
	return nil
}

// convert moves a first-layout lake's data files to the current layout
// (contacts/ with unpadded partition values) in one journaled commit.
func (l *Lake) convert(ctx interface{ Err() error }) error {
	var j journal
	err := fs.WalkDir(l.root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			if p != "." && (strings.HasPrefix(d.Name(), "_") || strings.HasPrefix(d.Name(), ".") || p == dataDir) {
				return fs.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".parquet") || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		if err := checkOldDataPath(p); err != nil || !d.Type().IsRegular() {
			return fmt.Errorf("unexpected file %s in a first-layout lake; move it away and run again", p)
		}
		folder, err := unpad(path.Dir(p))
		if err != nil {
			return err
		}
		j.Renames = append(j.Renames, [2]string{p, path.Join(dataDir, folder, path.Base(p))})
		return nil
	})
	if err != nil {
		return err
	}
	next, err := cloneState(l.state)
	if err != nil {
		return err
	}
	next.Format = lakeFormat
	j.State = next
	return l.commitJournal(j)
}

// unpad turns a first-layout partition folder (year=2024/month=04) into the
// current form (year=2024/month=4).
func unpad(folder string) (string, error) {
	parts := strings.Split(folder, "/")
	for i, p := range parts {
		k, v, _ := strings.Cut(p, "=")
		n, err := strconv.Atoi(v)
		if err != nil {
			return "", fmt.Errorf("partition folder %q", folder)
		}
		parts[i] = k + "=" + strconv.Itoa(n)
	}
	return strings.Join(parts, "/"), nil
}
