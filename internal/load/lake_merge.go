package load

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/parquetio"
	"github.com/leadlex/leadlex-etl/internal/transform"
	"github.com/leadlex/leadlex-etl/schemas"
)

// RowRef picks one row of one of several batches.
type RowRef = parquetio.RowRef

// partitionOf returns the partition folder of an instant (Unix µs).
func (l *Lake) partitionOf(us int64) string {
	return l.state.PartitionBy.Folder(time.UnixMicro(us))
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

// holdsDeleted reports whether a data file holds a live contact created in
// m's deletion ranges (which the window, lacking it, shows deleted),
// reading only its created_at and _deleted_at columns.
func (l *Lake) holdsDeleted(ctx context.Context, rel string, m *merge) (bool, error) {
	f, err := l.root.Open(rel)
	if err != nil {
		return false, err
	}
	defer f.Close()
	rdr, err := file.NewParquetReader(f)
	if err != nil {
		return false, err
	}
	defer rdr.Close()
	sc := rdr.MetaData().Schema
	tsIdx, delIdx := sc.ColumnIndexByName("created_at"), sc.ColumnIndexByName(schemas.DeletedAt)
	if tsIdx < 0 {
		return false, fmt.Errorf("%s has no created_at column", rel)
	}
	cols := []int{tsIdx}
	if delIdx >= 0 {
		cols = append(cols, delIdx)
	}
	fr, err := pqarrow.NewFileReader(rdr, pqarrow.ArrowReadProperties{BatchSize: 64 << 10}, l.opts.Alloc)
	if err != nil {
		return false, err
	}
	// nil row groups: all of them.
	rr, err := fr.GetRecordReader(ctx, cols, nil)
	if err != nil {
		return false, err
	}
	defer rr.Release()
	for rr.Next() {
		b := rr.RecordBatch()
		ts, ok := b.Column(0).(*array.Timestamp)
		if !ok {
			return false, fmt.Errorf("%s: created_at column is %s", rel, b.Column(0).DataType())
		}
		live := func(int) bool { return true }
		if len(cols) > 1 {
			live = b.Column(1).IsNull
		}
		for i := 0; i < ts.Len(); i++ {
			if live(i) && m.inScope(int64(ts.Value(i))) {
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

// Commit merges the window into the partitions its rows fall in, removes
// the stored rows of its ids from any other partition (a contact whose
// created_at moved), marks the contacts it shows deleted, and saves the
// stream state, atomically as described on Lake. Of an id repeated in the
// window, the last row wins, whatever partition each falls in.
func (l *Lake) Commit(ctx context.Context, info WindowInfo, rejects []transform.Reject, _ WindowStats, st StreamState) (ch Changes, err error) {
	defer l.releaseBatches()
	if l.broken != nil {
		return ch, l.broken
	}
	next, err := cloneState(l.state)
	if err != nil {
		return ch, err
	}
	setStream(&next, st)
	next.Windows++
	cols := lakeColumns(l.state.Columns, l.cols)
	schemaChanged := len(l.state.Columns) > 0 && len(cols) != len(l.state.Columns)
	next.Columns = toLakeColumns(cols)

	// The window's batches, with lineage columns, and their keys.
	src, err := withLineage(l.batches, info, l.opts.Alloc)
	if err != nil {
		return ch, err
	}
	defer releaseAll(src)
	m := merge{info: info, cols: cols, window: src, scope: toSpans(info.Deletes), rewriteAll: schemaChanged, next: &next,
		latest: make(map[string]RowRef, windowRows(src)), incoming: map[string]map[string]RowRef{}, added: map[string][]uint64{}}
	for bi, b := range src {
		ids, ts, err := rowKeys(b)
		if err != nil {
			return ch, err
		}
		m.windowKeys = append(m.windowKeys, batchKeys{ids, ts})
		for r := range ids {
			m.latest[ids[r]] = RowRef{Batch: int32(bi), Row: int32(r)} // later rows win
		}
	}
	incoming := m.incoming
	for id, ref := range m.latest {
		p := l.partitionOf(m.windowKeys[ref.Batch].ts[ref.Row])
		if incoming[p] == nil {
			incoming[p] = map[string]RowRef{}
		}
		incoming[p][id] = ref
	}
	defer func() { releaseAll(m.movedSrc) }()
	var j journal
	defer func() {
		if err != nil && !l.decided() {
			l.removeTemps(j)
		}
	}()
	parts, err := l.partsToMerge(ctx, &m, incoming)
	if err != nil {
		return ch, err
	}
	for _, p := range parts {
		if err := ctx.Err(); err != nil {
			return ch, err
		}
		renames, deletes, pch, err := l.mergePartition(ctx, p, &m, incoming[p])
		j.Renames = append(j.Renames, renames...)
		if err != nil {
			return ch, fmt.Errorf("partition %s: %w", p, err)
		}
		ch.Add(pch)
		j.Deletes = append(j.Deletes, deletes...)
	}
	if err := info.DeleteGuard.check(info, ch.Deleted, ch.Deleted+m.keptInScope); err != nil {
		return ch, err // the deferred removeTemps removes what the commit wrote
	}
	for _, rel := range j.Deletes {
		delete(next.Files, rel)
	}
	if len(rejects) > 0 {
		rel, err := l.writeRejects(info, rejects)
		if rel != "" {
			j.Renames = append(j.Renames, [2]string{tempOf(rel), rel})
		}
		if err != nil {
			return ch, err
		}
	}
	j.State = next
	if err := l.commitJournal(j); err != nil {
		return ch, err
	}
	if err := l.ids.update(j.Deletes, m.added); err != nil {
		l.ids = nil // the next commit builds it again
	}
	if ch.Deleted > 0 && !info.HardDelete {
		l.marks.note(info)
	}
	return ch, nil
}

// windowRows counts the rows of batches.
func windowRows(batches []arrow.RecordBatch) int {
	var n int
	for _, b := range batches {
		n += int(b.NumRows())
	}
	return n
}

// partsToMerge returns the partitions a commit rewrites, in order: those
// the window's rows fall in, those holding stored rows of its ids (whose
// rows it reads into m: see readMoved), those its deletions may reach, or
// all of them when a new column appears (every file carries every column).
func (l *Lake) partsToMerge(ctx context.Context, m *merge, incoming map[string]map[string]RowRef) ([]string, error) {
	x, err := l.idIndex(ctx)
	if err != nil {
		return nil, err
	}
	parts := map[string]bool{}
	for p := range incoming {
		parts[p] = true
	}
	// The files holding the window's ids: in the id's partition, merged
	// there; in another, read first for the stored values.
	m.holding = map[string]bool{}
	away := map[string]bool{}
	var holders []string
	for _, k := range m.windowKeys {
		for _, id := range k.ids {
			if holders = x.holders(holders[:0], x.sum(id)); len(holders) == 0 {
				continue // a new contact
			}
			for _, rel := range holders {
				m.holding[rel] = true
				if _, home := incoming[filePartition(rel)][id]; !home {
					away[rel] = true
				}
			}
		}
	}
	for rel := range away {
		parts[filePartition(rel)] = true
	}
	if err := l.readMoved(slices.Sorted(maps.Keys(away)), m); err != nil {
		return nil, err
	}
	if m.rewriteAll || len(m.scope) > 0 {
		all, err := l.listFiles(dataDir)
		if err != nil {
			return nil, err
		}
		for _, f := range all {
			if p := filePartition(f.rel); m.rewriteAll || m.reaches(p) {
				parts[p] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(parts)), nil
}

// filePartition is the partition folder of a data file (lake-relative).
func filePartition(rel string) string {
	return strings.TrimPrefix(path.Dir(rel), dataDir+"/")
}

// readMoved reads the files, of partitions other than their ids', that hold
// stored rows of the window's ids, and keeps those rows in m.moved: the
// partition the id moved to replaces them, and keeps their values of the
// columns the window lacks.
func (l *Lake) readMoved(files []string, m *merge) error {
	m.moved = map[string]RowRef{}
	for _, rel := range files {
		batches, err := l.readDataFile(rel)
		if err != nil {
			return fmt.Errorf("read %s: %w", rel, err)
		}
		for _, b := range batches {
			bi := int32(len(m.window) + len(m.movedSrc))
			m.movedSrc = append(m.movedSrc, b)
			if err := m.keepMoved(b, bi, filePartition(rel)); err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
		}
	}
	return nil
}

// keepMoved notes the rows of b, the source bi of a file of partition p,
// whose ids the window puts in another partition. Of several stored rows
// of an id (duplicates an earlier version left), a live one.
func (m *merge) keepMoved(b arrow.RecordBatch, bi int32, p string) error {
	ids, ts, err := rowKeys(b)
	if err != nil {
		return err
	}
	m.movedKeys = append(m.movedKeys, batchKeys{ids, ts})
	live := liveRows(b)
	for r, id := range ids {
		if _, ok := m.latest[id]; !ok {
			continue
		}
		if _, home := m.incoming[p][id]; home {
			continue
		}
		if old, seen := m.moved[id]; seen && (!live(r) || m.movedLive(old)) {
			continue
		}
		m.moved[id] = RowRef{Batch: bi, Row: int32(r)}
	}
	return nil
}

// movedLive reports whether a row of m.moved is live.
func (m *merge) movedLive(ref RowRef) bool {
	return liveRows(m.movedSrc[int(ref.Batch)-len(m.window)])(int(ref.Row))
}

// decided reports whether a commit's journal is on disk: the commit is
// then decided, and the next open finishes it if this process cannot.
func (l *Lake) decided() bool {
	_, err := l.root.Stat(journalFile)
	return err == nil
}

// removeTemps removes the temporary files a commit that failed before its
// journal wrote.
func (l *Lake) removeTemps(j journal) {
	for _, r := range j.Renames {
		if r[0] == tempOf(r[1]) {
			_ = l.root.Remove(r[0])
		}
	}
}

// merge is what every partition of one Commit shares.
type merge struct {
	info       WindowInfo
	cols       []schemas.Column
	window     []arrow.RecordBatch // with lineage
	windowKeys []batchKeys
	latest     map[string]RowRef            // each id of the window: its last row
	incoming   map[string]map[string]RowRef // the same by partition
	holding    map[string]bool              // data files that (may) hold an id of the window
	// The stored rows of ids the window puts in another partition, in
	// movedSrc, which come after window in a partition's sources.
	moved      map[string]RowRef
	movedSrc   []arrow.RecordBatch
	movedKeys  []batchKeys
	scope      []span // info.Deletes in µs
	rewriteAll bool
	next       *lakeState
	added      map[string][]uint64 // the files written: their ids' hashes, for the index
	// keptInScope counts the live stored contacts in scope that the window
	// returned (those it lacks are Changes.Deleted), wherever it puts them:
	// with them, what the DeleteGuard weighs the deletions against.
	keptInScope int64
}

// span is a created_at range in Unix µs, [lo, hi).
type span struct{ lo, hi int64 }

func toSpans(ws []extract.Window) []span {
	out := make([]span, len(ws))
	for i, w := range ws {
		out[i] = span{lo(w.From), hi(w.To)}
	}
	return out
}

// inScope reports whether the instant us is in a deletion range.
func (m *merge) inScope(us int64) bool {
	for _, s := range m.scope {
		if s.lo <= us && us < s.hi {
			return true
		}
	}
	return false
}

// reaches reports whether partition folder p may hold instants of the
// deletion ranges.
func (m *merge) reaches(p string) bool {
	from, to, ok := partitionRange(p)
	if !ok {
		return true
	}
	for _, s := range m.scope {
		if s.lo < to && from < s.hi {
			return true
		}
	}
	return false
}

// partitionRange is the created_at range, in µs, of a partition folder of
// the current layout (year=2024/month=4[/day=7]).
func partitionRange(p string) (from, to int64, ok bool) {
	y, mo, d := 0, 0, 0
	for _, kv := range strings.Split(p, "/") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, 0, false
		}
		switch k {
		case "year":
			y = n
		case "month":
			mo = n
		case "day":
			d = n
		default:
			return 0, 0, false
		}
	}
	start := time.Date(y, time.January, 1, 0, 0, 0, 0, time.UTC)
	end := start.AddDate(1, 0, 0)
	if mo > 0 {
		start = time.Date(y, time.Month(mo), 1, 0, 0, 0, 0, time.UTC)
		end = start.AddDate(0, 1, 0)
	}
	if d > 0 {
		start = time.Date(y, time.Month(mo), d, 0, 0, 0, 0, time.UTC)
		end = start.AddDate(0, 0, 1)
	}
	return start.UnixMicro(), end.UnixMicro(), true
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
// that must be rewritten: those holding an id of the window or a contact
// the window shows deleted, those under half the target size, or all when
// the columns changed. Stored rows of an id the window puts in another
// partition are dropped. It writes the winning rows, sorted by created_at
// then id, to new files under temporary names, and returns the renames that
// publish them (those written so far, on an error too), the files they
// replace, and what changed.
func (l *Lake) mergePartition(ctx context.Context, p string, m *merge, in map[string]RowRef) (renames [][2]string, deletes []string, ch Changes, err error) {
	pm := partMerge{src: slices.Concat(m.window, m.movedSrc), winners: map[string]RowRef{}, stored: map[string]RowRef{}}
	pm.keys = slices.Concat(m.windowKeys, m.movedKeys)
	defer func() { releaseAll(pm.loaded) }()
	if deletes, err = l.readPartition(ctx, p, m, in, &pm); err != nil {
		return nil, nil, pm.ch, err
	}
	// An id moved here from another partition: its stored row is there.
	for id := range in {
		if _, ok := pm.stored[id]; !ok {
			if old, ok := m.moved[id]; ok {
				pm.stored[id] = old
			}
		}
	}
	for id, ref := range in {
		pm.winners[id] = ref
	}
	pm.count(m, in, &l.marks)
	// Columns the window did not export keep the values stored for its ids.
	if len(pm.stored) > 0 {
		patched, err := keepStoredValues(pm.src, len(m.window), m.cols, in, pm.stored, l.opts.Alloc)
		if err != nil {
			return nil, nil, pm.ch, err
		}
		pm.loaded = append(pm.loaded, patched...)
	}
	renames, err = l.writePartition(p, m, &pm)
	return renames, deletes, pm.ch, err
}

// partMerge is the merge of one partition: its sources (the window's
// batches, the moved rows', then those of the files read), the keys of
// each, the rows that win, and the stored rows of the ids coming in.
type partMerge struct {
	src     []arrow.RecordBatch
	keys    []batchKeys
	loaded  []arrow.RecordBatch // released after the merge
	winners map[string]RowRef
	stored  map[string]RowRef
	ch      Changes
}

// readPartition reads the files of partition p that the merge rewrites into
// pm and returns them.
func (l *Lake) readPartition(ctx context.Context, p string, m *merge, in map[string]RowRef, pm *partMerge) (read []string, err error) {
	files, err := l.listFiles(partitionDir(p))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		dirty := m.rewriteAll || f.size < int64(l.opts.TargetFileBytes)/2 || m.holding[f.rel]
		if !dirty && len(m.scope) > 0 {
			if dirty, err = l.holdsDeleted(ctx, f.rel, m); err != nil {
				return nil, fmt.Errorf("read %s: %w", f.rel, err)
			}
		}
		if !dirty {
			continue
		}
		batches, err := l.readDataFile(f.rel)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f.rel, err)
		}
		pm.loaded = append(pm.loaded, batches...)
		for _, b := range batches {
			if err := l.mergeStored(b, m, in, pm); err != nil {
				return nil, fmt.Errorf("%s: %w", f.rel, err)
			}
		}
		read = append(read, f.rel)
	}
	return read, nil
}

// mergeStored adds the stored rows of b to the partition's merge: a row of
// an id coming in is replaced (or dropped, when its id goes to another
// partition); a live row in the deletion ranges is marked deleted (or
// dropped, with HardDelete); the others stay.
func (l *Lake) mergeStored(b arrow.RecordBatch, m *merge, in map[string]RowRef, pm *partMerge) error {
	ids, ts, err := rowKeys(b)
	if err != nil {
		return err
	}
	live := liveRows(b)
	var marks []int // rows to mark deleted now
	bi := int32(len(pm.src))
	for r, id := range ids {
		_, newer := in[id]
		_, moved := m.latest[id]
		if (newer || moved) && live(r) && m.inScope(ts[r]) {
			m.keptInScope++
		}
		if newer {
			pm.stored[id] = RowRef{Batch: bi, Row: int32(r)}
			continue
		}
		if moved {
			continue // the partition it moved to counts it
		}
		if live(r) && m.inScope(ts[r]) {
			// The window exported this range completely and lacks it.
			pm.ch.Deleted++
			if m.info.HardDelete {
				continue
			}
			marks = append(marks, r)
		}
		pm.winners[id] = RowRef{Batch: bi, Row: int32(r)}
	}
	if len(marks) > 0 {
		mb, err := markDeleted(b, marks, arrow.Timestamp(m.info.LoadedAt.UnixMicro()), l.opts.Alloc)
		if err != nil {
			return err
		}
		pm.loaded, b = append(pm.loaded, mb), mb
	}
	pm.src, pm.keys = append(pm.src, b), append(pm.keys, batchKeys{ids, ts})
	return nil
}

// count counts the ids coming in: new, replaced, changed (in a refresh),
// and revived (marked deleted by an earlier window of the run).
func (pm *partMerge) count(m *merge, in map[string]RowRef, marks *runMarks) {
	pm.ch.Replaced = int64(len(pm.stored))
	pm.ch.Inserted = int64(len(in)) - pm.ch.Replaced
	for id, old := range pm.stored {
		s, ref := pm.src[old.Batch], in[id]
		moved := pm.keys[old.Batch].ts[old.Row] != pm.keys[ref.Batch].ts[ref.Row]
		if moved && revived(s, int(old.Row), m.info, marks) {
			pm.ch.Revived++
		}
		if m.info.Refresh && rowChanged(pm.src[ref.Batch], int(ref.Row), s, int(old.Row)) {
			pm.ch.Changed++
		}
	}
}

// revived reports whether row r of the stored batch s was marked deleted
// by an earlier window of the run of info.
func revived(s arrow.RecordBatch, r int, info WindowInfo, marks *runMarks) bool {
	idx := s.Schema().FieldIndices(schemas.DeletedAt)
	if len(idx) == 0 || s.Column(idx[0]).IsNull(r) {
		return false
	}
	at, ok := s.Column(idx[0]).(*array.Timestamp)
	return ok && marks.revives(info, time.UnixMicro(int64(at.Value(r))))
}

// writePartition writes the partition's winners, sorted by created_at then
// id, to new files under temporary names, and returns the renames that
// publish them (those written so far, on an error too). It notes the ids
// of each file in m.added.
func (l *Lake) writePartition(p string, m *merge, pm *partMerge) (renames [][2]string, err error) {
	if len(pm.winners) == 0 {
		return nil, nil
	}
	keys := pm.keys
	refs := slices.Collect(maps.Values(pm.winners))
	slices.SortFunc(refs, func(a, b RowRef) int {
		ka, kb := keys[a.Batch], keys[b.Batch]
		if c := cmp.Compare(ka.ts[a.Row], kb.ts[b.Row]); c != 0 {
			return c
		}
		return cmp.Compare(ka.ids[a.Row], kb.ids[b.Row])
	})
	dir := partitionDir(p)
	if err := l.root.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	chunk := l.opts.Parquet.RowGroupRows
	if chunk <= 0 {
		chunk = parquetio.DefaultRowGroupRows
	}
	x := l.ids
	for start := 0; start < len(refs); {
		m.next.Seq++
		name := fmt.Sprintf("part-%08d-%s.parquet", m.next.Seq, randomSuffix())
		final := path.Join(dir, name)
		renames = append(renames, [2]string{tempOf(final), final})
		first := start
		written, err := l.writeDataFile(tempOf(final), m.cols, pm.src, refs, &start, chunk)
		if err != nil {
			return renames, err
		}
		m.next.Files[final] = written
		hs := make([]uint64, 0, start-first)
		for _, ref := range refs[first:start] {
			hs = append(hs, x.sum(keys[ref.Batch].ids[ref.Row]))
		}
		m.added[final] = hs
	}
	return renames, nil
}

// liveRows returns whether row r of b is live: its _deleted_at is NULL
// (or b has none).
func liveRows(b arrow.RecordBatch) func(r int) bool {
	idx := b.Schema().FieldIndices(schemas.DeletedAt)
	if len(idx) == 0 {
		return func(int) bool { return true }
	}
	col := b.Column(idx[0])
	return col.IsNull
}

// markDeleted returns b with _deleted_at set to at in the given rows (and
// added, if b has none). The caller releases it.
func markDeleted(b arrow.RecordBatch, rows []int, at arrow.Timestamp, alloc memory.Allocator) (arrow.RecordBatch, error) {
	tsType := &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
	n := int(b.NumRows())
	var old *array.Timestamp
	idx := b.Schema().FieldIndices(schemas.DeletedAt)
	if len(idx) > 0 {
		var ok bool
		if old, ok = b.Column(idx[0]).(*array.Timestamp); !ok {
			return nil, fmt.Errorf("%s is %s", schemas.DeletedAt, b.Column(idx[0]).DataType())
		}
	}
	bld := array.NewTimestampBuilder(alloc, tsType)
	defer bld.Release()
	bld.Reserve(n)
	mark := make(map[int]bool, len(rows))
	for _, r := range rows {
		mark[r] = true
	}
	for r := 0; r < n; r++ {
		switch {
		case mark[r]:
			bld.Append(at)
		case old != nil && !old.IsNull(r):
			bld.Append(old.Value(r))
		default:
			bld.AppendNull()
		}
	}
	arr := bld.NewArray()
	defer arr.Release()
	fields, cols := slices.Clone(b.Schema().Fields()), slices.Clone(b.Columns())
	if len(idx) > 0 {
		cols[idx[0]] = arr
		fields[idx[0]] = arrow.Field{Name: schemas.DeletedAt, Type: tsType, Nullable: true}
	} else {
		fields = append(fields, arrow.Field{Name: schemas.DeletedAt, Type: tsType, Nullable: true})
		cols = append(cols, arr)
	}
	return array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, int64(n)), nil
}

// rowChanged reports whether the window's row wr of w differs from the
// stored row sr of s in a column the window has (lineage aside), or the
// stored row is marked deleted.
func rowChanged(w arrow.RecordBatch, wr int, s arrow.RecordBatch, sr int) bool {
	if idx := s.Schema().FieldIndices(schemas.DeletedAt); len(idx) > 0 && !s.Column(idx[0]).IsNull(sr) {
		return true
	}
	for i, f := range w.Schema().Fields() {
		if strings.HasPrefix(f.Name, "_") || f.Name == "id" {
			continue
		}
		idx := s.Schema().FieldIndices(f.Name)
		if len(idx) == 0 {
			return true
		}
		if !sameValue(w.Column(i), wr, s.Column(idx[0]), sr) {
			return true
		}
	}
	return false
}

// sameValue compares a[i] and b[j] of the kinds the lake stores.
func sameValue(a arrow.Array, i int, b arrow.Array, j int) bool {
	if a.IsNull(i) || b.IsNull(j) {
		return a.IsNull(i) == b.IsNull(j)
	}
	switch x := a.(type) {
	case *array.String:
		y, ok := b.(*array.String)
		return ok && x.Value(i) == y.Value(j)
	case *array.Timestamp:
		y, ok := b.(*array.Timestamp)
		return ok && x.Value(i) == y.Value(j)
	case *array.Int64:
		y, ok := b.(*array.Int64)
		return ok && x.Value(i) == y.Value(j)
	case *array.List:
		y, ok := b.(*array.List)
		if !ok {
			return false
		}
		xs, xe := x.ValueOffsets(i)
		ys, ye := y.ValueOffsets(j)
		if xe-xs != ye-ys {
			return false
		}
		for k := int64(0); k < xe-xs; k++ {
			if !sameValue(x.ListValues(), int(xs+k), y.ListValues(), int(ys+k)) {
				return false
			}
		}
		return true
	}
	return false
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
func (l *Lake) writeDataFile(rel string, cols []schemas.Column, src []arrow.RecordBatch, refs []RowRef, start *int, chunk int) (written lakeFile, err error) {
	f, err := l.root.OpenFile(rel, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return written, err
	}
	defer f.Close()
	sum := newChecksum()
	w, err := parquetio.NewWriter(io.MultiWriter(f, sum), cols, l.opts.Parquet)
	if err != nil {
		return written, err
	}
	for *start < len(refs) {
		end := min(*start+chunk, len(refs))
		if err := w.Write(src, refs[*start:end]); err != nil {
			return written, fmt.Errorf("write %s: %w", rel, err)
		}
		*start = end
		if w.Size() >= int64(l.opts.TargetFileBytes) {
			break
		}
	}
	if err := w.Close(); err != nil {
		return written, fmt.Errorf("write %s: %w", rel, err)
	}
	if err := f.Sync(); err != nil {
		return written, err
	}
	fi, err := f.Stat()
	if err != nil {
		return written, err
	}
	// Renaming it into place keeps its modification time.
	written = lakeFile{Size: fi.Size(), MTime: fi.ModTime().UnixNano(), CRC32C: checksumString(sum)}
	return written, f.Close()
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
		db := array.NewTimestampBuilder(alloc, tsType)
		db.AppendNulls(rows) // the window's contacts are live
		reqArr, loadArr, delArr := rb.NewArray(), lb.NewArray(), db.NewArray()
		rb.Release()
		lb.Release()
		db.Release()
		fields := append(slices.Clone(b.Schema().Fields()),
			arrow.Field{Name: "_request_id", Type: arrow.BinaryTypes.String, Nullable: true},
			arrow.Field{Name: "_loaded_at", Type: tsType, Nullable: true},
			arrow.Field{Name: schemas.DeletedAt, Type: tsType, Nullable: true})
		cols := append(slices.Clone(b.Columns()), reqArr, loadArr, delArr)
		out[i] = array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, int64(rows))
		reqArr.Release()
		loadArr.Release()
		delArr.Release()
	}
	return out, nil
}

// writeRejects writes a window's rejects as JSON lines under
// _leadlex/rejects/, under a temporary name; the journal publishes it.
func (l *Lake) writeRejects(info WindowInfo, rejects []transform.Reject) (string, error) {
	if err := l.root.MkdirAll(rejectsDir, 0o755); err != nil {
		return "", err
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	for _, r := range rejects {
		if err := enc.Encode(rejectJSON{
			StreamID: info.StreamID, RunID: info.RunID, RequestID: r.RequestID,
			WindowFrom: fmtTime(info.Window.From), WindowTo: fmtTime(info.Window.To),
			Line: r.Line, Raw: strings.ToValidUTF8(r.Raw, "\uFFFD"), Reason: r.Reason, RejectedAt: fmtTime(info.LoadedAt),
		}); err != nil {
			return "", err
		}
	}
	rel := fmt.Sprintf("%s/%s-%s.jsonl", rejectsDir, safeName(info.RunID), randomSuffix())
	f, err := l.root.OpenFile(tempOf(rel), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return "", err
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return rel, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return rel, err
	}
	return rel, f.Close()
}

// safeName keeps the characters of s a file name may safely hold.
func safeName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
	if s == "" || len(s) > 64 {
		s = "run"
	}
	return s
}

// readDataFile reads a whole data file of the lake; a file that does not
// read as Parquet is an error saying what to do.
func (l *Lake) readDataFile(rel string) ([]arrow.RecordBatch, error) {
	f, err := l.root.Open(rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	_, batches, err := parquetio.Read(f, l.rootPath(rel), l.opts.Alloc)
	if err != nil {
		return nil, fmt.Errorf("%w: the lake cannot read this data file of its own (damaged?): %s, then run again", err, changedFileFix)
	}
	return batches, nil
}
