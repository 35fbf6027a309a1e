package load

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/metadata"
)

// lakeFile is an entry of the lake's manifest (lakeState.Files): a data
// file the lake wrote, its size, and what tells a change at the same size
// cheaply: its modification time when the lake last saw it as written and
// a checksum of its bytes (empty in the lists of earlier versions, whose
// entries are completed when the lake next opens).
type lakeFile struct {
	Size   int64  `json:"size"`
	MTime  int64  `json:"mtime_ns,omitempty"` // Unix nanoseconds
	CRC32C string `json:"crc32c,omitempty"`   // hex
}

// ForeignFileError says the lake's data folder holds a file the lake did
// not write there, or one changed since it did. Readers of the folder would
// take it for contacts, and a commit would take it for the lake's data, so
// nothing is synced until it is moved out. Nothing was changed.
type ForeignFileError struct {
	Path   string // the file
	Reason string // why it is not the lake's
	Fix    string // what to do
	Others int    // more files like it
}

func (e *ForeignFileError) Error() string {
	more := ""
	if e.Others > 0 {
		more = fmt.Sprintf(" (and %d more file(s) like it)", e.Others)
	}
	return fmt.Sprintf("%s is not a data file leadlex-etl wrote into this lake: %s%s. Readers of the lake would take it for contacts, so nothing is synced until it is gone: %s, then run again; nothing was changed",
		e.Path, e.Reason, more, e.Fix)
}

// diskFile is a file under the data root that a reader may take for data:
// a name ending in .parquet, not hidden.
type diskFile struct {
	rel     string
	size    int64
	mtime   int64 // Unix nanoseconds
	regular bool
}

// diskDataFiles lists, in order, every file under the data root that a
// reader may take for data, in any folder. A symbolic link there (or the
// data root one) is a *LinkError.
func (l *Lake) diskDataFiles() ([]diskFile, error) {
	if err := l.checkNotLink(dataDir); err != nil {
		return nil, err
	}
	var out []diskFile
	err := fs.WalkDir(l.root.FS(), dataDir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == dataDir {
			return fs.SkipAll
		}
		if err != nil {
			return err
		}
		f, ok, err := l.diskFileOf(p, d)
		if ok {
			out = append(out, f)
		}
		return err
	})
	return out, err
}

// checkShape compares what the data root holds with what the lake wrote,
// before anything is synced: every data file must be in the manifest, at
// the size written, in a partition folder of the lake's partitioning. A
// file of the manifest that is gone is dropped from it (the rolling refresh
// exports its rows again). A lake an earlier version wrote has no manifest:
// its files are checked one by one (name, folder, and the created_at of
// their rows) and adopted.
func (l *Lake) checkShape() error {
	disk, err := l.diskDataFiles()
	if errors.As(err, new(*LinkError)) {
		return err
	}
	if err != nil {
		return fmt.Errorf("list the data files of %s: %w", l.dir, err)
	}
	if l.state.Files == nil {
		return l.adopt(disk)
	}
	var foreign []*ForeignFileError
	have := map[string]bool{}
	for _, f := range disk {
		have[f.rel] = true
		if e := l.foreign(f); e != nil {
			foreign = append(foreign, e)
		}
	}
	if err := firstForeign(foreign); err != nil {
		return err
	}
	for rel := range l.state.Files {
		if !have[rel] {
			delete(l.state.Files, rel)
		}
	}
	return l.checkPartitioning()
}

// foreign says why f is not a data file of the lake's manifest, or nil.
func (l *Lake) foreign(f diskFile) *ForeignFileError {
	rec, ok := l.state.Files[f.rel]
	switch {
	case ok && f.regular && rec.Size == f.size:
		why := l.changedInPlace(f, rec)
		if why == "" {
			return nil
		}
		e := l.foreignFile(f, why)
		e.Fix = changedFileFix
		return e
	case ok && f.regular:
		e := l.foreignFile(f, fmt.Sprintf("it was changed after leadlex-etl wrote it (%d bytes, written as %d)", f.size, rec.Size))
		e.Fix = changedFileFix
		return e
	}
	if e := l.misplaced(f); e != nil {
		return e
	}
	return l.foreignFile(f, "the lake's list of its data files ("+stateFile+") does not name it")
}

// changedFileFix is what to do with a data file of the lake that changed.
const changedFileFix = "restore it from a backup, or remove it (the rolling refresh exports its contacts again)"

// misplaced says why f cannot be a data file of the lake by its kind and
// place, or nil.
func (l *Lake) misplaced(f diskFile) *ForeignFileError {
	switch {
	case !f.regular:
		return l.foreignFile(f, "it is not a regular file (a symbolic link?)")
	case !partitionPath.MatchString(filePartition(f.rel)) || !strings.HasPrefix(f.rel, dataDir+"/"):
		return l.foreignFile(f, fmt.Sprintf("its folder %s is not a partition folder the lake writes (%s, with unpadded numbers: year=2024/month=1)",
			path.Dir(f.rel), strings.Join(l.state.PartitionBy.Columns(), "/")))
	case checkDataPath(f.rel) != nil:
		return l.foreignFile(f, "its name is not one the lake gives its files (part-N-X.parquet)")
	}
	return nil
}

func (l *Lake) foreignFile(f diskFile, reason string) *ForeignFileError {
	return &ForeignFileError{Path: l.rootPath(f.rel), Reason: reason,
		Fix: fmt.Sprintf("move it out of %s (for example: mv '%s' /some/other/folder/)", l.rootPath(dataDir), l.rootPath(f.rel))}
}

// firstForeign returns the first of the errors, counting the others, or
// nil.
func firstForeign(errs []*ForeignFileError) error {
	if len(errs) == 0 {
		return nil
	}
	e := errs[0]
	e.Others = len(errs) - 1
	return e
}

// checkPartitioning refuses a state whose partition_by is not what the
// data files' folders say: state.json was edited, and a commit would write
// every row again into other folders.
func (l *Lake) checkPartitioning() error {
	for _, rel := range slices.Sorted(maps.Keys(l.state.Files)) {
		kind, ok := partitioningOf(filePartition(rel))
		if ok && kind == l.state.PartitionBy {
			continue
		}
		says := "no partitioning leadlex-etl writes"
		if ok {
			says = "partitioned by " + string(kind)
		}
		return &UntrustedError{Path: l.rootPath(stateFile), Detail: fmt.Sprintf(
			`it says "partition_by": %q, but the lake's data files are %s (%s): set "partition_by" back to %q (a lake keeps the partitioning it was made with; to change it, sync into a new folder with --partition-by)`,
			l.state.PartitionBy, says, l.rootPath(rel), kind)}
	}
	return nil
}

// partitioningOnDisk returns the partitioning of the first data file
// under the data root that lies in a partition folder, or "" if none does.
func (l *Lake) partitioningOnDisk() (Partitioning, error) {
	disk, err := l.diskDataFiles()
	if err != nil {
		return "", fmt.Errorf("list the data files of %s: %w", l.dir, err)
	}
	for _, f := range disk {
		if p, ok := partitioningOf(filePartition(f.rel)); ok {
			return p, nil
		}
	}
	return "", nil
}

// partitioningOf returns the partitioning a partition folder of the
// current layout is of.
func partitioningOf(folder string) (Partitioning, bool) {
	if !partitionPath.MatchString(folder) {
		return "", false
	}
	switch strings.Count(folder, "/") {
	case 0:
		return ByYear, true
	case 1:
		return ByMonth, true
	}
	return ByDay, true
}

// adopt checks the data files of a lake without a manifest and makes them
// its manifest: each must have the name the lake gives its files, lie in a
// partition folder of the lake's partitioning, and hold only rows created
// in that folder's range.
func (l *Lake) adopt(disk []diskFile) error {
	var foreign []*ForeignFileError
	files := map[string]lakeFile{}
	for _, f := range disk {
		e := l.misplaced(f)
		if e == nil {
			if why := l.outsideItsFolder(f.rel); why != "" {
				e = l.foreignFile(f, why)
			}
		}
		if e != nil {
			foreign = append(foreign, e)
			continue
		}
		sum, err := l.fileChecksum(f.rel)
		if err != nil {
			return fmt.Errorf("read %s: %w", l.rootPath(f.rel), err)
		}
		files[f.rel] = lakeFile{Size: f.size, MTime: f.mtime, CRC32C: sum}
	}
	if err := firstForeign(foreign); err != nil {
		return err
	}
	l.state.Files = files
	return l.checkPartitioning()
}

// outsideItsFolder says why the rows of a data file do not belong to its
// partition folder, or "" when they do: the created_at statistics of its
// row groups (every file the lake writes has them) lie in the folder's
// range.
func (l *Lake) outsideItsFolder(rel string) string {
	from, to, ok := partitionRange(filePartition(rel))
	if !ok {
		return "its folder is not a partition folder"
	}
	lo, hi, err := l.createdRange(rel)
	if err != nil {
		return fmt.Sprintf("it cannot be read as a data file of the lake (%v)", err)
	}
	if lo < from || hi >= to {
		return fmt.Sprintf("it holds contacts created from %s to %s, outside its folder %s", fmtMicros(lo), fmtMicros(hi), filePartition(rel))
	}
	return ""
}

func fmtMicros(us int64) string { return time.UnixMicro(us).UTC().Format(time.RFC3339) }

// createdRange returns the least and greatest created_at of a data file's
// rows (Unix µs), from its row groups' statistics.
func (l *Lake) createdRange(rel string) (lo, hi int64, err error) {
	f, err := l.root.Open(rel)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	rdr, err := file.NewParquetReader(f)
	if err != nil {
		return 0, 0, err
	}
	defer rdr.Close()
	md := rdr.MetaData()
	col := md.Schema.ColumnIndexByName("created_at")
	if col < 0 {
		return 0, 0, errors.New("no created_at column")
	}
	first := true
	for g := 0; g < md.NumRowGroups(); g++ {
		cc, err := md.RowGroup(g).ColumnChunk(col)
		if err != nil {
			return 0, 0, err
		}
		st, err := cc.Statistics()
		if err != nil {
			return 0, 0, err
		}
		s, ok := st.(*metadata.Int64Statistics)
		if !ok || !s.HasMinMax() {
			return 0, 0, errors.New("no statistics of created_at")
		}
		if first || s.Min() < lo {
			lo = s.Min()
		}
		if first || s.Max() > hi {
			hi = s.Max()
		}
		first = false
	}
	return lo, hi, nil
}
