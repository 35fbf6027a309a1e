package load

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/transform"
	"github.com/leadlex/leadlex-etl/schemas"
)

// LakeOptions configures a Parquet lake.
type LakeOptions struct {
	// PartitionBy is month (default), day or year: the Hive partitions of
	// created_at (UTC), year=YYYY[/month=MM[/day=DD]].
	PartitionBy string
	// TargetFileBytes is the size a data file grows to before another is
	// started; 0 -> 128 MiB. Files below half of it are merged again when
	// their partition is next touched, so partitions keep few files.
	TargetFileBytes int64
	Parquet         ParquetOptions
	// Alloc is the Arrow allocator; nil -> memory.DefaultAllocator.
	Alloc memory.Allocator
}

// metaDir is the lake's own folder: Spark, Hive and Trino skip names that
// start with "_", and no data glob (*.parquet) matches what is in it.
const metaDir = "_leadlex"

// Lake is the Parquet sink and state store: a folder of Hive-partitioned
// Parquet files with its sync state in _leadlex/state.json. A window is
// committed by writing replacement files under hidden temporary names,
// recording in _leadlex/journal.json what to rename, delete and which state
// to write, then doing it; a crash at any point is completed (or, before the
// journal, undone) when the lake is next opened. One process at a time
// writes a lake (a lock file enforces it).
type Lake struct {
	dir   string
	opts  LakeOptions
	lock  *os.File
	state lakeState

	cols    []schemas.Column
	batches []arrow.RecordBatch // the current window's, retained
	broken  error               // a journaled commit failed half-way
}

var _ Target = (*Lake)(nil)

// lakeState is _leadlex/state.json.
type lakeState struct {
	Format      int                   `json:"format"`
	PartitionBy string                `json:"partition_by"`
	Columns     []lakeColumn          `json:"columns"` // every file has exactly these
	Streams     map[string]streamJSON `json:"streams"`
	Budgets     map[string]budgetJSON `json:"budgets,omitempty"`
	Runs        []runJSON             `json:"runs,omitempty"` // the last maxRuns
	Seq         int64                 `json:"seq"`            // numbers data files
	Windows     int64                 `json:"windows"`        // committed so far
}

type lakeColumn struct {
	Name string       `json:"name"`
	Kind schemas.Kind `json:"kind"`
}

type streamJSON struct {
	Identity     string       `json:"identity"`
	Cursor       string       `json:"cursor,omitempty"`
	Pending      []windowJSON `json:"pending,omitempty"`
	PendingSince string       `json:"pending_since,omitempty"`
	PendingUntil string       `json:"pending_until,omitempty"`
	UpdatedAt    string       `json:"updated_at"`
}

type budgetJSON struct {
	Limit     int    `json:"limit"`
	Remaining int    `json:"remaining"`
	Reset     string `json:"reset,omitempty"`
	UpdatedAt string `json:"updated_at"`
}

type runJSON struct {
	RunID      string `json:"run_id"`
	StreamID   string `json:"stream_id"`
	StartedAt  string `json:"started_at"`
	FinishedAt string `json:"finished_at,omitempty"`
	Status     string `json:"status"`
	Since      string `json:"since,omitempty"`
	Until      string `json:"until,omitempty"`
	Windows    int    `json:"windows"`
	Rows       int64  `json:"rows"`
	Rejects    int64  `json:"rejects"`
	Calls      int    `json:"calls"`
	Error      string `json:"error,omitempty"`
}

const maxRuns = 100

// testHookCommit lets tests stop a commit at a named step, as a crash would.
var testHookCommit = func(step string) error { return nil }

// journal is _leadlex/journal.json: a commit decided but maybe not done.
type journal struct {
	Renames [][2]string `json:"renames"` // lake-relative temp -> final
	Deletes []string    `json:"deletes"` // lake-relative files replaced
	State   lakeState   `json:"state"`
}

func fmtT(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func parseT(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

// OpenLake opens (creating if needed) the lake in dir, finishing a commit a
// crash interrupted and removing files of windows that never committed.
func OpenLake(ctx context.Context, dir string, opts LakeOptions) (*Lake, error) {
	if opts.PartitionBy == "" {
		opts.PartitionBy = "month"
	}
	switch opts.PartitionBy {
	case "year", "month", "day":
	default:
		return nil, fmt.Errorf("partitioning %q: want year, month or day", opts.PartitionBy)
	}
	if opts.TargetFileBytes <= 0 {
		opts.TargetFileBytes = 128 << 20
	}
	if opts.Alloc == nil {
		opts.Alloc = memory.DefaultAllocator
	}
	if err := checkLakeDir(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, metaDir), 0o755); err != nil {
		return nil, fmt.Errorf("create lake %s: %w", dir, err)
	}
	lockPath := filepath.Join(dir, metaDir, "lock")
	lock, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", lockPath, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, &LockedError{Path: dir, Detail: "lock file " + lockPath + " is held"}
	}
	l := &Lake{dir: dir, opts: opts, lock: lock}
	if err := l.open(); err != nil {
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
	if _, err := os.Stat(filepath.Join(dir, metaDir, "state.json")); err == nil {
		return nil
	}
	for _, e := range entries {
		if e.Name() != metaDir {
			return fmt.Errorf("%s is not empty and is not a leadlex-etl lake (no %s/state.json): give a new or empty folder, so no file of yours is taken for lake data", dir, metaDir)
		}
	}
	return nil
}

func (l *Lake) open() error {
	if err := l.readState(); err != nil {
		return err
	}
	if l.state.PartitionBy == "" {
		l.state.PartitionBy = l.opts.PartitionBy
	} else if l.state.PartitionBy != l.opts.PartitionBy {
		return fmt.Errorf("lake %s is partitioned by %s; --partition-by %s would mix layouts (write to a new folder to change it)",
			l.dir, l.state.PartitionBy, l.opts.PartitionBy)
	}
	if err := l.recover(); err != nil {
		return fmt.Errorf("finish the interrupted commit in %s: %w", l.dir, err)
	}
	return nil
}

func (l *Lake) path(rel string) string { return filepath.Join(l.dir, filepath.FromSlash(rel)) }

func (l *Lake) readState() error {
	b, err := os.ReadFile(l.path(metaDir + "/state.json"))
	if errors.Is(err, fs.ErrNotExist) {
		l.state = lakeState{Format: 1, Streams: map[string]streamJSON{}}
		return nil
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &l.state); err != nil {
		return fmt.Errorf("lake state %s: %w", l.path(metaDir+"/state.json"), err)
	}
	if l.state.Format != 1 {
		return fmt.Errorf("lake state format %d is not one this version knows", l.state.Format)
	}
	if l.state.Streams == nil {
		l.state.Streams = map[string]streamJSON{}
	}
	return nil
}

// writeFileAtomic writes data to rel through a temporary file, fsyncs it,
// renames it into place and fsyncs the folder.
func (l *Lake) writeFileAtomic(rel string, data []byte) error {
	final := l.path(rel)
	tmp := filepath.Join(filepath.Dir(final), "."+filepath.Base(final)+".tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
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
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	return syncDir(filepath.Dir(final))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (l *Lake) saveState(st lakeState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := l.writeFileAtomic(metaDir+"/state.json", b); err != nil {
		return fmt.Errorf("write lake state: %w", err)
	}
	l.state = st
	return nil
}

// recover completes a journaled commit and removes temporary files no
// journal names (windows that died before deciding to commit).
func (l *Lake) recover() error {
	jpath := l.path(metaDir + "/journal.json")
	b, err := os.ReadFile(jpath)
	switch {
	case err == nil:
		var j journal
		if err := json.Unmarshal(b, &j); err != nil {
			return fmt.Errorf("journal %s: %w", jpath, err)
		}
		if err := l.apply(j); err != nil {
			return err
		}
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	return filepath.WalkDir(l.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasPrefix(d.Name(), ".") && strings.HasSuffix(d.Name(), ".tmp") {
			return os.Remove(p)
		}
		return nil
	})
}

// apply carries out a journal; every step may already have been done.
func (l *Lake) apply(j journal) error {
	dirs := map[string]bool{}
	for _, r := range j.Renames {
		err := os.Rename(l.path(r[0]), l.path(r[1]))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		dirs[filepath.Dir(l.path(r[1]))] = true
	}
	for d := range dirs {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	if err := testHookCommit("after-renames"); err != nil {
		return err
	}
	for _, rel := range j.Deletes {
		if err := os.Remove(l.path(rel)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		// Drop partition folders left empty.
		for d := filepath.Dir(l.path(rel)); d != filepath.Clean(l.dir); d = filepath.Dir(d) {
			if os.Remove(d) != nil {
				break
			}
		}
	}
	if err := l.saveState(j.State); err != nil {
		return err
	}
	if err := os.Remove(l.path(metaDir + "/journal.json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return syncDir(l.path(metaDir))
}

// Close releases the lake's lock and any staged batches.
func (l *Lake) Close() error {
	l.releaseBatches()
	if l.lock != nil {
		err := l.lock.Close()
		l.lock = nil
		return err
	}
	return nil
}

func (l *Lake) releaseBatches() {
	for _, b := range l.batches {
		b.Release()
	}
	l.batches = nil
}

// Begin starts a window; batches are kept until Commit (a window holds at
// most the API's limit of rows).
func (l *Lake) Begin(_ context.Context, _ WindowInfo, cols []schemas.Column) error {
	l.releaseBatches()
	l.cols = cols
	return nil
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

// partitionOf returns the Hive partition folder of an instant.
func (l *Lake) partitionOf(us int64) string {
	t := time.UnixMicro(us).UTC()
	switch l.state.PartitionBy {
	case "year":
		return fmt.Sprintf("year=%04d", t.Year())
	case "day":
		return fmt.Sprintf("year=%04d/month=%02d/day=%02d", t.Year(), t.Month(), t.Day())
	}
	return fmt.Sprintf("year=%04d/month=%02d", t.Year(), t.Month())
}

// colIndex finds a column by name in a batch, -1 if absent.
func colIndex(b arrow.RecordBatch, name string) int {
	idx := b.Schema().FieldIndices(name)
	if len(idx) == 0 {
		return -1
	}
	return idx[0]
}

// rowKeys reads the id and created_at of every row of a batch. The ids
// point into the batch's memory: they are valid while the batch is.
func rowKeys(b arrow.RecordBatch) (ids []string, ts []int64, err error) {
	ic, tc := colIndex(b, "id"), colIndex(b, "created_at")
	if ic < 0 || tc < 0 {
		return nil, nil, errors.New("batch lacks id or created_at")
	}
	idArr, ok1 := b.Column(ic).(interface{ Value(int) string })
	tsArr, ok2 := b.Column(tc).(*array.Timestamp)
	if !ok1 || !ok2 {
		return nil, nil, fmt.Errorf("id is %s and created_at %s", b.Column(ic).DataType(), b.Column(tc).DataType())
	}
	n := int(b.NumRows())
	ids, ts = make([]string, n), make([]int64, n)
	for i := 0; i < n; i++ {
		ids[i] = idArr.Value(i) // valid while b is
		ts[i] = int64(tsArr.Value(i))
	}
	return ids, ts, nil
}

// lakeColumns merges the columns every file has with a window's, standard
// columns first in schema order, then extras in the order first seen.
func lakeColumns(have []lakeColumn, window []schemas.Column) []schemas.Column {
	seen := map[string]bool{}
	var out []schemas.Column
	add := func(c schemas.Column) {
		if !seen[c.Name] {
			seen[c.Name] = true
			out = append(out, c)
		}
	}
	for _, c := range schemas.Contacts {
		add(c)
	}
	for _, c := range have {
		kc, ok := schemas.Known(c.Name)
		if !ok {
			kc = schemas.Column{Name: c.Name, Kind: c.Kind}
		}
		add(kc)
	}
	for _, c := range window {
		add(c)
	}
	for _, c := range schemas.Lineage {
		add(c)
	}
	return out
}

func toLakeColumns(cols []schemas.Column) []lakeColumn {
	out := make([]lakeColumn, len(cols))
	for i, c := range cols {
		out[i] = lakeColumn{Name: c.Name, Kind: c.Kind}
	}
	return out
}

// dataFile is an existing data file of a partition.
type dataFile struct {
	rel  string
	size int64
}

// listFiles returns the data files under rel (a partition folder, or "" for
// the whole lake).
func (l *Lake) listFiles(rel string) ([]dataFile, error) {
	root := l.path(rel)
	var out []dataFile
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == root {
			return fs.SkipAll
		}
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != root && (strings.HasPrefix(d.Name(), "_") || strings.HasPrefix(d.Name(), ".")) {
				return fs.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(d.Name(), ".parquet") && !strings.HasPrefix(d.Name(), ".") {
			info, err := d.Info()
			if err != nil {
				return err
			}
			r, _ := filepath.Rel(l.dir, p)
			out = append(out, dataFile{rel: filepath.ToSlash(r), size: info.Size()})
		}
		return nil
	})
	slices.SortFunc(out, func(a, b dataFile) int { return cmp.Compare(a.rel, b.rel) })
	return out, err
}

// holdsAnyOf reports whether a data file holds any of the ids, reading only
// its id column.
func (l *Lake) holdsAnyOf(ctx context.Context, rel string, ids map[string]RowRef) (bool, error) {
	rdr, err := file.OpenParquetFile(l.path(rel), false)
	if err != nil {
		return false, err
	}
	defer rdr.Close()
	idx := rdr.MetaData().Schema.ColumnIndexByName("id")
	if idx < 0 {
		return false, fmt.Errorf("%s has no id column", rel)
	}
	fr, err := pqarrow.NewFileReader(rdr, pqarrow.ArrowReadProperties{BatchSize: 64 << 10}, l.opts.Alloc)
	if err != nil {
		return false, err
	}
	// nil row groups: all of them.
	rr, err := fr.GetRecordReader(ctx, []int{idx}, nil)
	if err != nil {
		return false, err
	}
	defer rr.Release()
	for rr.Next() {
		col := rr.RecordBatch().Column(0)
		s, ok := col.(interface {
			Value(int) string
			Len() int
		})
		if !ok {
			return false, fmt.Errorf("%s: id column is %s", rel, col.DataType())
		}
		for i := 0; i < s.Len(); i++ {
			if _, ok := ids[s.Value(i)]; ok {
				return true, nil
			}
		}
	}
	return false, rr.Err()
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Commit merges the window into the partitions its rows fall in and saves
// the stream state, atomically as described on Lake.
func (l *Lake) Commit(ctx context.Context, info WindowInfo, rejects []transform.Reject, _ WindowStats, st StreamState) error {
	defer l.releaseBatches()
	if l.broken != nil {
		return l.broken
	}
	next, err := cloneState(l.state)
	if err != nil {
		return err
	}
	if err := setStream(&next, st); err != nil {
		return err
	}
	next.Windows++
	cols := lakeColumns(l.state.Columns, l.cols)
	schemaChanged := len(l.state.Columns) > 0 && len(cols) != len(l.state.Columns)
	next.Columns = toLakeColumns(cols)

	// The window's batches, with lineage columns, and their keys.
	src, err := withLineage(l.batches, info, l.opts.Alloc)
	if err != nil {
		return err
	}
	defer releaseAll(src)
	var keys []batchKeys
	incoming := map[string]map[string]RowRef{} // partition -> id -> row; later rows win
	for bi, b := range src {
		ids, ts, err := rowKeys(b)
		if err != nil {
			return err
		}
		keys = append(keys, batchKeys{ids, ts})
		for r := range ids {
			p := l.partitionOf(ts[r])
			if incoming[p] == nil {
				incoming[p] = map[string]RowRef{}
			}
			incoming[p][ids[r]] = RowRef{Batch: int32(bi), Row: int32(r)}
		}
	}
	// Partitions to rewrite: those the window touches, or all of them when
	// a new column appears (every file carries every column).
	parts := map[string]bool{}
	for p := range incoming {
		parts[p] = true
	}
	if schemaChanged {
		all, err := l.listFiles("")
		if err != nil {
			return err
		}
		for _, f := range all {
			parts[filepath.ToSlash(filepath.Dir(filepath.FromSlash(f.rel)))] = true
		}
	}
	var j journal
	for _, p := range slices.Sorted(maps.Keys(parts)) {
		if err := ctx.Err(); err != nil {
			return err
		}
		renames, deletes, err := l.mergePartition(ctx, p, cols, src, keys, incoming[p], schemaChanged, &next)
		if err != nil {
			return fmt.Errorf("partition %s: %w", p, err)
		}
		j.Renames = append(j.Renames, renames...)
		j.Deletes = append(j.Deletes, deletes...)
	}
	if len(rejects) > 0 {
		rel, err := l.writeRejects(info, rejects)
		if err != nil {
			return err
		}
		j.Renames = append(j.Renames, [2]string{rel, strings.Replace(strings.TrimSuffix(rel, ".tmp"), "/.", "/", 1)})
	}
	j.State = next
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	if err := testHookCommit("before-journal"); err != nil {
		return err
	}
	// The commit point: once the journal is on disk the window is committed.
	if err := l.writeFileAtomic(metaDir+"/journal.json", b); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	if err := testHookCommit("after-journal"); err != nil {
		return err
	}
	if err := l.apply(j); err != nil {
		// The journal stays; the next open finishes it. Until then no
		// other commit may overwrite it.
		l.broken = fmt.Errorf("lake %s: a commit could not be completed (the next run finishes it): %w", l.dir, err)
		return l.broken
	}
	return nil
}

// batchKeys are the ids and created_at of a batch's rows.
type batchKeys struct {
	ids []string
	ts  []int64
}

func releaseAll(bs []arrow.RecordBatch) {
	for _, b := range bs {
		b.Release()
	}
}

// mergePartition merges the incoming rows of partition p with the files
// that must be rewritten: those holding an incoming id, those under half the
// target size, or all when the columns changed. It writes the winning rows,
// sorted by created_at then id, to new files under temporary names, and
// returns the renames that publish them and the files they replace.
func (l *Lake) mergePartition(ctx context.Context, p string, cols []schemas.Column, window []arrow.RecordBatch, windowKeys []batchKeys,
	in map[string]RowRef, rewriteAll bool, next *lakeState) (renames [][2]string, deletes []string, err error) {
	files, err := l.listFiles(p)
	if err != nil {
		return nil, nil, err
	}
	src, keys := slices.Clone(window), slices.Clone(windowKeys)
	var loaded []arrow.RecordBatch
	defer func() { releaseAll(loaded) }()
	winners := map[string]RowRef{}
	stored := map[string]RowRef{} // incoming ids found in the files: their stored row
	for _, f := range files {
		dirty := rewriteAll || f.size < l.opts.TargetFileBytes/2
		if !dirty && len(in) > 0 {
			if dirty, err = l.holdsAnyOf(ctx, f.rel, in); err != nil {
				return nil, nil, fmt.Errorf("read ids of %s: %w", f.rel, err)
			}
		}
		if !dirty {
			continue
		}
		_, batches, err := ReadParquetFile(l.path(f.rel), l.opts.Alloc)
		if err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", f.rel, err)
		}
		loaded = append(loaded, batches...)
		for _, b := range batches {
			ids, ts, err := rowKeys(b)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", f.rel, err)
			}
			bi := int32(len(src))
			src, keys = append(src, b), append(keys, batchKeys{ids, ts})
			for r, id := range ids {
				if _, newer := in[id]; !newer {
					winners[id] = RowRef{Batch: bi, Row: int32(r)}
				} else {
					stored[id] = RowRef{Batch: bi, Row: int32(r)}
				}
			}
		}
		deletes = append(deletes, f.rel)
	}
	for id, ref := range in {
		winners[id] = ref
	}
	// Columns the window did not export keep the values stored for its ids.
	if len(stored) > 0 {
		patched, err := keepStoredValues(src, len(window), cols, in, stored, l.opts.Alloc)
		if err != nil {
			return nil, nil, err
		}
		loaded = append(loaded, patched...)
	}
	if len(winners) == 0 {
		return nil, deletes, nil
	}
	refs := slices.Collect(maps.Values(winners))
	slices.SortFunc(refs, func(a, b RowRef) int {
		ka, kb := keys[a.Batch], keys[b.Batch]
		if c := cmp.Compare(ka.ts[a.Row], kb.ts[b.Row]); c != 0 {
			return c
		}
		return cmp.Compare(ka.ids[a.Row], kb.ids[b.Row])
	})
	if err := os.MkdirAll(l.path(p), 0o755); err != nil {
		return nil, nil, err
	}
	chunk := l.opts.Parquet.RowGroupRows
	if chunk <= 0 {
		chunk = 131072
	}
	for start := 0; start < len(refs); {
		next.Seq++
		name := fmt.Sprintf("part-%08d-%s.parquet", next.Seq, randomSuffix())
		tmpRel := p + "/." + name + ".tmp"
		if err := l.writeDataFile(tmpRel, cols, src, refs, &start, chunk); err != nil {
			return nil, nil, err
		}
		renames = append(renames, [2]string{tmpRel, p + "/" + name})
	}
	return renames, deletes, nil
}

// keepStoredValues gives the window's batches (src[:nWindow]) the columns of
// cols they lack, filled for each incoming id of in with its stored value
// (the row stored names) and NULL elsewhere, replacing them in src. It
// returns the new batches, which the caller releases.
func keepStoredValues(src []arrow.RecordBatch, nWindow int, cols []schemas.Column, in, stored map[string]RowRef, alloc memory.Allocator) ([]arrow.RecordBatch, error) {
	have := map[string]bool{}
	for _, f := range src[0].Schema().Fields() {
		have[f.Name] = true
	}
	var missing []schemas.Column
	for _, c := range cols {
		if !have[c.Name] {
			missing = append(missing, c)
		}
	}
	if len(missing) == 0 {
		return nil, nil
	}
	// The stored row of each incoming window row, by batch and row.
	from := make([]map[int32]RowRef, nWindow)
	for id, ref := range in {
		if old, ok := stored[id]; ok {
			if from[ref.Batch] == nil {
				from[ref.Batch] = map[int32]RowRef{}
			}
			from[ref.Batch][ref.Row] = old
		}
	}
	var out []arrow.RecordBatch
	for bi := 0; bi < nWindow; bi++ {
		if from[bi] == nil {
			continue
		}
		b := src[bi]
		fields, arrs := slices.Clone(b.Schema().Fields()), slices.Clone(b.Columns())
		var made []arrow.Array
		for _, c := range missing {
			arr, err := gatherColumn(c, int(b.NumRows()), from[bi], src, alloc)
			if err != nil {
				releaseArrays(made)
				releaseAll(out)
				return nil, err
			}
			made = append(made, arr)
			fields = append(fields, arrow.Field{Name: c.Name, Type: arr.DataType(), Nullable: true})
			arrs = append(arrs, arr)
		}
		nb := array.NewRecordBatch(arrow.NewSchema(fields, nil), arrs, b.NumRows())
		releaseArrays(made)
		src[bi] = nb
		out = append(out, nb)
	}
	return out, nil
}

func releaseArrays(as []arrow.Array) {
	for _, a := range as {
		a.Release()
	}
}

// gatherColumn builds column c for n rows: row r holds the value of c in the
// stored row from[r] (a batch of src), or NULL when from has no entry or the
// stored batch lacks c.
func gatherColumn(c schemas.Column, n int, from map[int32]RowRef, src []arrow.RecordBatch, alloc memory.Allocator) (arrow.Array, error) {
	bld := array.NewBuilder(alloc, c.ArrowType())
	defer bld.Release()
	bld.Reserve(n)
	for r := 0; r < n; r++ {
		ref, ok := from[int32(r)]
		if !ok {
			bld.AppendNull()
			continue
		}
		sb := src[ref.Batch]
		idx := sb.Schema().FieldIndices(c.Name)
		if len(idx) == 0 {
			bld.AppendNull()
			continue
		}
		if err := appendValue(bld, sb.Column(idx[0]), int(ref.Row)); err != nil {
			return nil, fmt.Errorf("column %s: %w", c.Name, err)
		}
	}
	return bld.NewArray(), nil
}

// appendValue appends arr's value at i to b, of the same kind.
func appendValue(b array.Builder, arr arrow.Array, i int) error {
	if arr.IsNull(i) {
		b.AppendNull()
		return nil
	}
	switch a := arr.(type) {
	case *array.String:
		if sb, ok := b.(*array.StringBuilder); ok {
			sb.Append(a.Value(i))
			return nil
		}
	case *array.Timestamp:
		if tb, ok := b.(*array.TimestampBuilder); ok {
			tb.Append(a.Value(i))
			return nil
		}
	case *array.Int64:
		if ib, ok := b.(*array.Int64Builder); ok {
			ib.Append(a.Value(i))
			return nil
		}
	case *array.List:
		lb, ok := b.(*array.ListBuilder)
		vals, ok2 := a.ListValues().(*array.String)
		if !ok || !ok2 {
			break
		}
		if vb, ok := lb.ValueBuilder().(*array.StringBuilder); ok {
			lb.Append(true)
			start, end := a.ValueOffsets(i)
			for j := start; j < end; j++ {
				if vals.IsNull(int(j)) {
					vb.AppendNull()
				} else {
					vb.Append(vals.Value(int(j)))
				}
			}
			return nil
		}
	}
	return fmt.Errorf("cannot copy a stored %s value", arr.DataType())
}

// writeDataFile writes refs[*start:] to rel until the file reaches the
// target size, advancing *start, and fsyncs it.
func (l *Lake) writeDataFile(rel string, cols []schemas.Column, src []arrow.RecordBatch, refs []RowRef, start *int, chunk int) error {
	f, err := os.Create(l.path(rel))
	if err != nil {
		return err
	}
	defer f.Close()
	w, err := NewParquetFileWriter(f, cols, l.opts.Parquet)
	if err != nil {
		return err
	}
	for *start < len(refs) {
		end := min(*start+chunk, len(refs))
		if err := w.Write(src, refs[*start:end]); err != nil {
			return fmt.Errorf("write %s: %w", rel, err)
		}
		*start = end
		if w.Size() >= l.opts.TargetFileBytes {
			break
		}
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("write %s: %w", rel, err)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// withLineage returns the window's batches with _request_id and _loaded_at
// columns added. The caller releases them.
func withLineage(window []arrow.RecordBatch, info WindowInfo, alloc memory.Allocator) ([]arrow.RecordBatch, error) {
	out := make([]arrow.RecordBatch, len(window))
	loaded := arrow.Timestamp(info.LoadedAt.UnixMicro())
	tsType := &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
	for i, b := range window {
		rows := int(b.NumRows())
		rb := array.NewStringBuilder(alloc)
		lb := array.NewTimestampBuilder(alloc, tsType)
		rb.Reserve(rows)
		lb.Reserve(rows)
		for r := 0; r < rows; r++ {
			rb.Append(info.RequestID)
			lb.Append(loaded)
		}
		reqArr, loadArr := rb.NewArray(), lb.NewArray()
		rb.Release()
		lb.Release()
		fields := append(slices.Clone(b.Schema().Fields()),
			arrow.Field{Name: "_request_id", Type: arrow.BinaryTypes.String, Nullable: true},
			arrow.Field{Name: "_loaded_at", Type: tsType, Nullable: true})
		cols := append(slices.Clone(b.Columns()), reqArr, loadArr)
		out[i] = array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, int64(rows))
		reqArr.Release()
		loadArr.Release()
	}
	return out, nil
}

// writeRejects writes a window's rejects as JSON lines under
// _leadlex/rejects/, under a temporary name; the journal publishes it.
func (l *Lake) writeRejects(info WindowInfo, rejects []transform.Reject) (string, error) {
	dir := metaDir + "/rejects"
	if err := os.MkdirAll(l.path(dir), 0o755); err != nil {
		return "", err
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	for _, r := range rejects {
		if err := enc.Encode(rejectJSON{
			StreamID: info.StreamID, RunID: info.RunID, RequestID: r.RequestID,
			WindowFrom: fmtT(info.Window.From), WindowTo: fmtT(info.Window.To),
			Line: r.Line, Raw: strings.ToValidUTF8(r.Raw, "\uFFFD"), Reason: r.Reason, RejectedAt: fmtT(info.LoadedAt),
		}); err != nil {
			return "", err
		}
	}
	rel := fmt.Sprintf("%s/.%s-%s.jsonl.tmp", dir, info.RunID, randomSuffix())
	f, err := os.Create(l.path(rel))
	if err != nil {
		return "", err
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", err
	}
	return rel, f.Close()
}

func cloneState(s lakeState) (lakeState, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return s, err
	}
	var out lakeState
	err = json.Unmarshal(b, &out)
	if out.Streams == nil {
		out.Streams = map[string]streamJSON{}
	}
	return out, err
}

func setStream(s *lakeState, st StreamState) error {
	pending := make([]windowJSON, len(st.Pending))
	for i, w := range st.Pending {
		pending[i] = windowJSON{From: fmtT(w.From), To: fmtT(w.To)}
	}
	s.Streams[st.StreamID] = streamJSON{
		Identity: st.Identity, Cursor: fmtT(st.Cursor), Pending: pending,
		PendingSince: fmtT(st.PendingSince), PendingUntil: fmtT(st.PendingUntil), UpdatedAt: fmtT(time.Now()),
	}
	return nil
}

// LoadState reads a stream's state.
func (l *Lake) LoadState(_ context.Context, streamID, identity string) (StreamState, error) {
	st := StreamState{StreamID: streamID, Identity: identity}
	s, ok := l.state.Streams[streamID]
	if !ok {
		return st, nil
	}
	var err error
	if st.Cursor, err = parseT(s.Cursor); err != nil {
		return st, err
	}
	if st.PendingSince, err = parseT(s.PendingSince); err != nil {
		return st, err
	}
	if st.PendingUntil, err = parseT(s.PendingUntil); err != nil {
		return st, err
	}
	for _, w := range s.Pending {
		var win extract.Window
		if win.From, err = parseT(w.From); err != nil {
			return st, err
		}
		if win.To, err = parseT(w.To); err != nil {
			return st, err
		}
		st.Pending = append(st.Pending, win)
	}
	return st, nil
}

func (l *Lake) putRun(r Run) error {
	next, err := cloneState(l.state)
	if err != nil {
		return err
	}
	rj := runJSON{RunID: r.RunID, StreamID: r.StreamID, StartedAt: fmtT(r.StartedAt), FinishedAt: fmtT(r.FinishedAt), Status: r.Status,
		Since: fmtT(r.Since), Until: fmtT(r.Until), Windows: r.Windows, Rows: r.Rows, Rejects: r.Rejects, Calls: r.Calls, Error: r.Error}
	i := slices.IndexFunc(next.Runs, func(x runJSON) bool { return x.RunID == r.RunID })
	if i >= 0 {
		next.Runs[i] = rj
	} else {
		next.Runs = append(next.Runs, rj)
	}
	if len(next.Runs) > maxRuns {
		next.Runs = next.Runs[len(next.Runs)-maxRuns:]
	}
	return l.saveState(next)
}

// StartRun records a run as running.
func (l *Lake) StartRun(_ context.Context, r Run) error { return l.putRun(r) }

// FinishRun records a run's outcome.
func (l *Lake) FinishRun(_ context.Context, r Run) error { return l.putRun(r) }

// LoadBudget reads the remembered rate-limit budget of a key.
func (l *Lake) LoadBudget(_ context.Context, fp string) (extract.RateLimit, error) {
	b, ok := l.state.Budgets[fp]
	if !ok {
		return extract.RateLimit{}, nil
	}
	reset, err := parseT(b.Reset)
	return extract.RateLimit{Limit: b.Limit, Remaining: b.Remaining, Reset: reset, Known: true}, err
}

// SaveBudget remembers a key's rate-limit budget.
func (l *Lake) SaveBudget(_ context.Context, fp string, b extract.RateLimit) error {
	if !b.Known {
		return nil
	}
	next, err := cloneState(l.state)
	if err != nil {
		return err
	}
	if next.Budgets == nil {
		next.Budgets = map[string]budgetJSON{}
	}
	next.Budgets[fp] = budgetJSON{Limit: b.Limit, Remaining: b.Remaining, Reset: fmtT(b.Reset), UpdatedAt: fmtT(time.Now())}
	return l.saveState(next)
}

// Runs returns the recorded runs (the last 100), newest first.
func (l *Lake) Runs(_ context.Context, limit int) ([]Run, error) {
	var out []Run
	for i := len(l.state.Runs) - 1; i >= 0 && (limit <= 0 || len(out) < limit); i-- {
		rj := l.state.Runs[i]
		r := Run{RunID: rj.RunID, StreamID: rj.StreamID, Status: rj.Status, Windows: rj.Windows, Rows: rj.Rows,
			Rejects: rj.Rejects, Calls: rj.Calls, Error: rj.Error}
		var err error
		for _, f := range []struct {
			dst *time.Time
			src string
		}{{&r.StartedAt, rj.StartedAt}, {&r.FinishedAt, rj.FinishedAt}, {&r.Since, rj.Since}, {&r.Until, rj.Until}} {
			if *f.dst, err = parseT(f.src); err != nil {
				return nil, fmt.Errorf("lake state: run %s: %w", rj.RunID, err)
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// rejectJSON is one line of a _leadlex/rejects/*.jsonl file.
type rejectJSON struct {
	StreamID   string `json:"stream_id"`
	RunID      string `json:"run_id"`
	RequestID  string `json:"request_id"`
	WindowFrom string `json:"window_from"`
	WindowTo   string `json:"window_to"`
	Line       int64  `json:"line"`
	Raw        string `json:"raw"`
	Reason     string `json:"reason"`
	RejectedAt string `json:"rejected_at"`
}

// Rejects returns the stored rejected rows, oldest first.
func (l *Lake) Rejects(_ context.Context, limit int) ([]StoredReject, error) {
	files, err := filepath.Glob(l.path(metaDir + "/rejects/*.jsonl"))
	if err != nil {
		return nil, err
	}
	var out []StoredReject
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if line == "" {
				continue
			}
			var rj rejectJSON
			if err := json.Unmarshal([]byte(line), &rj); err != nil {
				return nil, fmt.Errorf("%s line %d: %w", f, i+1, err)
			}
			r := StoredReject{StreamID: rj.StreamID, RunID: rj.RunID, RequestID: rj.RequestID, Line: rj.Line, Raw: rj.Raw, Reason: rj.Reason}
			if r.Window.From, err = parseT(rj.WindowFrom); err == nil {
				if r.Window.To, err = parseT(rj.WindowTo); err == nil {
					r.RejectedAt, err = parseT(rj.RejectedAt)
				}
			}
			if err != nil {
				return nil, fmt.Errorf("%s line %d: %w", f, i+1, err)
			}
			out = append(out, r)
		}
	}
	slices.SortStableFunc(out, func(a, b StoredReject) int {
		return cmp.Or(a.RejectedAt.Compare(b.RejectedAt), cmp.Compare(a.RunID, b.RunID), cmp.Compare(a.Line, b.Line))
	})
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}
