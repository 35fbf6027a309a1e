package load

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/leadlex/leadlex-etl/internal/parquetio"
	"github.com/leadlex/leadlex-etl/schemas"
)

// LakeOptions configures a Parquet lake.
type LakeOptions struct {
	// PartitionBy is the lake's partitioning. A new lake takes it ("" means
	// DefaultPartitioning); an existing lake keeps its own, and a different
	// non-empty value is a *ConflictError.
	PartitionBy Partitioning
	// TargetFileBytes is the size a data file grows to before another is
	// started; 0 -> DefaultTargetFileBytes. Files below half of it are merged
	// again when their partition is next touched, so partitions keep few files.
	TargetFileBytes ByteSize
	Parquet         parquetio.Options
	// Alloc is the Arrow allocator; nil -> memory.DefaultAllocator.
	Alloc memory.Allocator
}

// The lake's layout: data under dataDir, Hive-partitioned; the tool's own
// files under metaDir, outside the data root, so that readers pointed at
// LAKE/contacts need no option to skip them.
const (
	metaDir     = "_leadlex"
	dataDir     = ContactsTable
	stateFile   = metaDir + "/state.json"
	journalFile = metaDir + "/journal.json"
	lockFile    = metaDir + "/lock"
	rejectsDir  = metaDir + "/rejects"
)

// ConflictError says an option contradicts what an existing destination was
// made with.
type ConflictError struct {
	Path    string
	Setting string // e.g. "partitioning"
	Have    string // what the destination has
	Want    string // what was asked for
	Hint    string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s has %s %s, not %s: %s", e.Path, e.Setting, e.Have, e.Want, e.Hint)
}

// Lake is the Parquet sink and state store: a folder whose contacts/
// subfolder holds Hive-partitioned Parquet files and whose _leadlex/ holds
// the sync state (state.json), rejects and a lock. A window is committed by
// writing replacement files under hidden temporary names, recording in
// _leadlex/journal.json what to rename, delete and which state to write,
// then doing it; a crash at any point is completed (or, before the journal,
// undone) when the lake is next opened. One process at a time writes a lake.
//
// A lake is untrusted input (it may have been copied from anywhere): every
// file operation goes through an os.Root confined to the lake's folder, and
// a journal that names a path outside the data and metadata files it may
// touch is refused before anything is changed.
type Lake struct {
	dir   string
	root  *os.Root
	opts  LakeOptions
	lock  *fileLock
	state lakeState

	cols    []schemas.Column
	batches []arrow.RecordBatch // the current window's, retained
	broken  error               // a journaled commit failed half-way
	ids     *idIndex            // built by the first commit
	marks   runMarks            // of the deletions the current run marked

	readOnly   bool // OpenLakeReadOnly: no lock, no write
	hasJournal bool // read-only: a commit is being applied, or was interrupted
	filesNoted bool // the manifest noted a new time or checksum of a file: save it
}

// errReadOnlyLake is what writing a lake opened read-only returns.
var errReadOnlyLake = errors.New("the lake was opened read-only")

// OpenLakeReadOnly opens an existing lake to read its state (status,
// plan): no lock is taken and nothing is written, so a running sync is not
// disturbed. A commit in progress or interrupted is not finished:
// InterruptedCommit says so.
func OpenLakeReadOnly(dir string) (*Lake, error) {
	if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(stateFile))); err != nil {
		return nil, fmt.Errorf("%s is not a leadlex-etl lake (no %s): %w", dir, stateFile, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open lake %s: %w", dir, err)
	}
	l := &Lake{dir: dir, root: root, readOnly: true, opts: LakeOptions{Alloc: memory.DefaultAllocator}}
	if err := l.readState(); err != nil {
		root.Close()
		return nil, err
	}
	if _, err := root.Stat(journalFile); err == nil {
		l.hasJournal = true
	}
	return l, nil
}

// InterruptedCommit reports whether a lake opened read-only has a journal:
// a commit being applied now, or one a crash interrupted, which the next
// sync finishes.
func (l *Lake) InterruptedCommit() bool { return l.hasJournal }

var _ Target = (*Lake)(nil)

// OpenLake opens (creating if needed) the lake in dir, finishing a commit a
// crash interrupted, converting a lake of the first layout, and removing
// files of windows that never committed.
func OpenLake(ctx context.Context, dir string, opts LakeOptions) (*Lake, error) {
	if opts.PartitionBy != "" && !slices.Contains(Partitionings, opts.PartitionBy) {
		return nil, fmt.Errorf("partitioning %q: want one of %s", opts.PartitionBy, (*Partitioning)(nil).Type())
	}
	if opts.TargetFileBytes <= 0 {
		opts.TargetFileBytes = DefaultTargetFileBytes
	}
	if opts.Alloc == nil {
		opts.Alloc = memory.DefaultAllocator
	}
	// Data files keep their rows sorted by (created_at, id), and say so;
	// a bloom filter on id lets readers skip files in a lookup by id.
	opts.Parquet.SortedBy = []string{"created_at", "id"}
	opts.Parquet.BloomFilters = []string{"id"}
	if err := checkLakeDir(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, metaDir), 0o755); err != nil {
		return nil, fmt.Errorf("create lake %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open lake %s: %w", dir, err)
	}
	l := &Lake{dir: dir, root: root, opts: opts}
	lf, err := root.OpenFile(lockFile, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("open lake %s: lock file: %w", dir, err)
	}
	if l.lock, err = lockOpenFile(lf, "lake", dir, filepath.Join(dir, lockFile)); err != nil {
		root.Close()
		return nil, err
	}
	if err := l.open(ctx); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// checkLakeDir refuses a folder that holds other things and is not a lake:
// merging would treat its Parquet files as the lake's and replace them.
func checkLakeDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open lake %s: %w", dir, err)
	}
	if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(stateFile))); err == nil {
		return nil
	}
	for _, e := range entries {
		if e.Name() != metaDir {
			return fmt.Errorf("%s is not empty and is not a leadlex-etl lake (no %s): give a new or empty folder, so no file of yours is taken for lake data", dir, stateFile)
		}
	}
	return nil
}

func (l *Lake) open(ctx context.Context) (err error) {
	if err := l.readState(); err != nil {
		return err
	}
	if err := l.recover(); err != nil {
		return fmt.Errorf("finish the interrupted commit in %s: %w", l.dir, err)
	}
	if l.state.PartitionBy == "" {
		// A state that does not say: the files do.
		if l.state.PartitionBy, err = l.partitioningOnDisk(); err != nil {
			return err
		}
	}
	switch {
	case l.state.PartitionBy == "":
		l.state.PartitionBy = cmpOr(l.opts.PartitionBy, DefaultPartitioning)
	case l.opts.PartitionBy != "" && l.state.PartitionBy != l.opts.PartitionBy:
		return &ConflictError{Path: l.dir, Setting: "partitioning", Have: string(l.state.PartitionBy), Want: string(l.opts.PartitionBy),
			Hint: "omit --partition-by (a lake keeps the partitioning it was made with), or write to a new folder to change it"}
	}
	if l.state.Format < lakeFormat {
		if err := l.convert(ctx); err != nil {
			return fmt.Errorf("convert lake %s to the current layout: %w", l.dir, err)
		}
	}
	adopting := l.state.Files == nil
	if err := l.checkShape(); err != nil {
		return err
	}
	if adopting || l.filesNoted {
		l.filesNoted = false
		return l.saveState(l.state)
	}
	return nil
}

func cmpOr[T comparable](vals ...T) T {
	var zero T
	for _, v := range vals {
		if v != zero {
			return v
		}
	}
	return zero
}

// PartitionBy returns the lake's partitioning.
func (l *Lake) PartitionBy() Partitioning { return l.state.PartitionBy }

// Close releases the lake's lock and any staged batches.
func (l *Lake) Close() error {
	l.releaseBatches()
	err := l.lock.release()
	l.lock = nil
	if l.root != nil {
		err = errors.Join(err, l.root.Close())
		l.root = nil
	}
	return err
}

func (l *Lake) releaseBatches() {
	releaseAll(l.batches)
	l.batches = nil
}

// Begin starts a window; batches are kept until Commit (a window holds at
// most the API's limit of rows). A column named like a partition column is
// refused: readers would see the folder's value in its place.
func (l *Lake) Begin(_ context.Context, _ WindowInfo, cols []schemas.Column) error {
	l.releaseBatches()
	for _, c := range cols {
		if slices.Contains(AllPartitionColumns, c.Name) {
			return &ColumnNameError{Name: c.Name, Reason: "it is a partition column of the lake (year, month and day are in its folder names)"}
		}
	}
	l.cols = cols
	return nil
}

// AllPartitionColumns are the names a lake's partition folders may use; no
// field of that name can be stored in a lake.
var AllPartitionColumns = []string{"year", "month", "day"}

// ColumnNameError says a field cannot be stored under its name.
type ColumnNameError struct {
	Name   string
	Reason string
}

func (e *ColumnNameError) Error() string {
	return fmt.Sprintf("field %q cannot be stored in a Parquet lake: %s; leave it out of --fields", e.Name, e.Reason)
}

// Write keeps a batch of the current window.
func (l *Lake) Write(_ context.Context, batch arrow.RecordBatch) error {
	batch.Retain()
	l.batches = append(l.batches, batch)
	return nil
}

// Abort drops the current window.
func (l *Lake) Abort(context.Context) error {
	l.releaseBatches()
	return nil
}

// dataFile is an existing data file of a partition.
type dataFile struct {
	rel  string // lake-relative, with slashes
	size int64
}

// listFiles returns the data files under rel (a partition folder, or the
// data root), skipping hidden and "_" names. A file the lake's manifest
// does not list as it is is a *ForeignFileError.
func (l *Lake) listFiles(rel string) ([]dataFile, error) {
	for _, dir := range []string{dataDir, rel} {
		if err := l.checkNotLink(dir); err != nil {
			return nil, err
		}
	}
	var out []dataFile
	err := fs.WalkDir(l.root.FS(), rel, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == rel {
			return fs.SkipAll
		}
		if err != nil {
			return err
		}
		if name := d.Name(); d.IsDir() && p != rel && (strings.HasPrefix(name, "_") || strings.HasPrefix(name, ".")) {
			return fs.SkipDir
		}
		f, ok, err := l.diskFileOf(p, d)
		if !ok || err != nil {
			return err
		}
		// A file that appeared since the lake was opened is not taken
		// for its data.
		if e := l.foreign(f); e != nil && l.state.Files != nil {
			return e
		}
		out = append(out, dataFile{rel: p, size: f.size})
		return nil
	})
	slices.SortFunc(out, func(a, b dataFile) int { return strings.Compare(a.rel, b.rel) })
	return out, err
}

// partitionDir returns the lake-relative folder of partition folder p.
func partitionDir(p string) string { return path.Join(dataDir, p) }
