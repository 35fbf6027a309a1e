package load

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/transform"
	"github.com/leadlex/leadlex-etl/schemas"
)

// A Grouper is a Target that can commit windows in groups: one
// transaction, and one INSERT of all their rows, for many windows. A
// replay uses it, as its windows need not be durable one by one (a failed
// replay leaves a destination to rebuild anyway); a sync never does.
type Grouper interface {
	// GroupCommits makes Commit defer windows' rows until the deferred
	// windows hold maxRows rows, or until Flush: Commit then returns the
	// window's changes, but the window is durable only after the group's
	// transaction commits. A failure rolls back every window of the group.
	GroupCommits(maxRows int64)
	// Flush commits the deferred windows. The other writes (runs, budget,
	// forgetting a stream), DB() and Close commit them first too.
	Flush(ctx context.Context) error
}

var _ Grouper = (*DuckDB)(nil)

// group is the DuckDB sink's open group of windows: a transaction holding
// their deletions, rejects and state, and their rows, waiting for one
// INSERT.
type group struct {
	open    bool
	windows int
	rows    int64
	batches []arrow.RecordBatch // the windows' batches with lineage columns, retained
	schema  *arrow.Schema       // of every batch: one INSERT reads them all
	pending []uint64            // the known hashes of the deferred ids
	dupIDs  map[string]struct{} // ids that may repeat across or within the windows; keys point into batches
	spans   []extract.Window    // created_at of each batch's rows, [min, max]
}

// GroupCommits implements Grouper.
func (d *DuckDB) GroupCommits(maxRows int64) { d.groupRows = maxRows }

// Flush implements Grouper. A ctx that has ended before the flush starts
// fails it, rolling the group back; once started, it runs to the end.
func (d *DuckDB) Flush(ctx context.Context) error {
	return d.with(ctx, func() error {
		if err := d.groupError(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil && d.grp.open {
			return d.failGroup(ctx, err)
		}
		return d.flushGroup(ctx)
	})
}

// groupError returns, once, the error of a group DB() flushed.
func (d *DuckDB) groupError() error {
	err := d.grpErr
	d.grpErr = nil
	return err
}

// commitGrouped adds the current window to the open group, opening one,
// and reports whether it did; a window it cannot group (a refresh, new or
// missing columns, a table whose ids are not known) is committed alone by
// the caller after the group is flushed.
func (d *DuckDB) commitGrouped(ctx context.Context, info WindowInfo, rejects []transform.Reject, stats WindowStats, st StreamState) (ch Changes, grouped bool, err error) {
	aug, spans, ok := d.groupable(info)
	defer releaseAll(aug)
	if !ok {
		return ch, false, d.flushGroup(ctx)
	}
	// A window whose deletions reach deferred rows it lacks must see them
	// stored. (Its neighbour's rows at the instant they share reach it
	// often; the window returns most of them.)
	if d.deletesDeferred(info.Deletes) {
		if err := d.flushGroup(ctx); err != nil {
			return ch, false, err
		}
	}
	if !d.grp.open {
		if err := d.exec(ctx, "BEGIN TRANSACTION"); err != nil {
			return ch, false, err
		}
		d.grp.open = true
		if err := d.checkKnown(ctx); err != nil {
			return ch, false, d.failGroup(ctx, err)
		}
		if d.known == nil {
			// The table changed behind the sink's back: nothing is done in
			// the transaction yet; commit windows one by one from now on.
			d.groupRows = 0
			return ch, false, d.failGroup(ctx, nil)
		}
	}
	// Stored rows of the window's ids go now, so that its deletions do not
	// count them; deferred rows of its ids lose to its rows at the INSERT.
	overlap, deferred, known := d.knownOverlap()
	if !known {
		// More than a few stored ids: the window commits alone.
		return ch, false, d.flushGroup(ctx)
	}
	defer func() {
		if err != nil {
			err = d.failGroup(ctx, err)
		}
	}()
	stored, err := d.guardStored(ctx, info)
	if err != nil {
		return ch, false, err
	}
	if len(overlap) > 0 {
		if ch.Revived, err = d.countRevived(ctx, info); err != nil {
			return ch, false, err
		}
		if ch.Replaced, err = d.execCount(ctx, `DELETE FROM `+schemas.QuoteIdent(ContactsTable)+` WHERE id IN ('`+strings.Join(overlap, "'::UUID, '")+`'::UUID)`); err != nil {
			return ch, false, err
		}
	}
	if d.grp.dupIDs == nil {
		d.grp.dupIDs = map[string]struct{}{}
	}
	// (Two ids of one hash, about one chance in 40 million at a million
	// ids, would count a row replaced that was not: the rows stay right.)
	ch.Replaced += int64(len(deferred))
	ch.Inserted = int64(len(d.ids)) - ch.Replaced
	if len(info.Deletes) > 0 {
		if ch.Deleted, err = d.markDeleted(ctx, info); err != nil {
			return ch, false, err
		}
		if err := info.DeleteGuard.check(info, ch.Deleted, stored); err != nil {
			return ch, false, err
		}
	}
	if err := d.recordWindow(ctx, info, rejects, stats, st); err != nil {
		return ch, false, err
	}
	// The group takes the window's rows: their ids' keys point into them.
	for _, b := range aug {
		b.Retain()
		d.grp.batches = append(d.grp.batches, b)
		d.grp.rows += b.NumRows()
	}
	for _, id := range deferred {
		d.grp.dupIDs[id] = struct{}{}
	}
	maps.Copy(d.grp.dupIDs, d.dupIDs)
	for id := range d.ids {
		h := maphash.String(d.knownSeed, id)
		d.known[h] = true
		d.grp.pending = append(d.grp.pending, h)
	}
	d.grp.spans = append(d.grp.spans, spans...)
	if len(aug) > 0 {
		d.grp.schema = aug[0].Schema()
	}
	d.grp.windows++
	if d.grp.rows >= d.groupRows {
		err = d.flushGroup(ctx)
	}
	return ch, true, err
}

// groupable says whether the current window can join the group and, if
// so, returns its batches with the lineage and window columns a group's
// INSERT reads (released by the caller) and the span of each one's
// created_at.
func (d *DuckDB) groupable(info WindowInfo) ([]arrow.RecordBatch, []extract.Window, bool) {
	var spans []extract.Window
	if info.Refresh || !d.idsAll || (d.known == nil && (d.knownOff || d.grp.open)) {
		return nil, nil, false
	}
	for _, c := range d.cols {
		if !d.table[c.Name] {
			return nil, nil, false
		}
	}
	if len(d.columnsNotIn(d.cols)) > 0 {
		return nil, nil, false
	}
	var aug []arrow.RecordBatch
	for _, b := range d.batches {
		a, s, ok := groupBatch(b, info)
		if !ok || (d.grp.schema != nil && !a.Schema().Equal(d.grp.schema)) || (len(aug) > 0 && !a.Schema().Equal(aug[0].Schema())) {
			if a != nil {
				a.Release()
			}
			releaseAll(aug)
			return nil, nil, false
		}
		aug, spans = append(aug, a), append(spans, s)
	}
	return aug, spans, true
}

// deletesDeferred reports whether a deferred row, created in one of the
// deletion ranges, has an id the current window lacks.
func (d *DuckDB) deletesDeferred(deletes []extract.Window) bool {
	for i, b := range d.grp.batches {
		for _, w := range deletes {
			if !spansMeet(d.grp.spans[i], w) {
				continue
			}
			ids := b.Column(0).(*array.String)
			ts := b.Column(b.Schema().FieldIndices("created_at")[0]).(*array.Timestamp)
			for r := 0; r < ids.Len(); r++ {
				t := time.UnixMicro(int64(ts.Value(r)))
				if (w.From.IsZero() || !t.Before(w.From)) && (w.To.IsZero() || t.Before(w.To)) {
					if _, ok := d.ids[ids.Value(r)]; !ok {
						return true
					}
				}
			}
		}
	}
	return false
}

// groupBatch returns b (id first, _line last) with the window's request
// id and load time added before _line, and the span of its created_at; ok
// is false for a batch of another shape.
func groupBatch(b arrow.RecordBatch, info WindowInfo) (arrow.RecordBatch, extract.Window, bool) {
	var span extract.Window
	n := int(b.NumCols())
	if n < 2 || b.Schema().Field(n-1).Name != "_line" {
		return nil, span, false
	}
	idx := b.Schema().FieldIndices("created_at")
	if len(idx) != 1 {
		return nil, span, false
	}
	ts, ok := b.Column(idx[0]).(*array.Timestamp)
	if !ok || ts.DataType().(*arrow.TimestampType).Unit != arrow.Microsecond || ts.NullN() > 0 {
		return nil, span, false
	}
	for i := 0; i < ts.Len(); i++ {
		t := time.UnixMicro(int64(ts.Value(i))).UTC()
		if span.From.IsZero() || t.Before(span.From) {
			span.From = t
		}
		if t.After(span.To) {
			span.To = t
		}
	}
	rows := int(b.NumRows())
	mem := memory.DefaultAllocator
	// The request id as a dictionary of one: DuckDB reads it as one
	// string, not one a row.
	reqType := &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}
	dict := array.NewStringBuilder(mem)
	defer dict.Release()
	dict.Append(info.RequestID)
	dictArr := dict.NewArray()
	defer dictArr.Release()
	reqIdx := array.NewInt32Builder(mem)
	defer reqIdx.Release()
	loadedType := &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
	loaded := array.NewTimestampBuilder(mem, loadedType)
	defer loaded.Release()
	reqIdx.Reserve(rows)
	loaded.Reserve(rows)
	at := arrow.Timestamp(info.LoadedAt.UTC().UnixMicro())
	for i := 0; i < rows; i++ {
		reqIdx.Append(0)
		loaded.Append(at)
	}
	reqIdxArr := reqIdx.NewArray()
	defer reqIdxArr.Release()
	extra := []arrow.Array{array.NewDictionaryArray(reqType, reqIdxArr, dictArr), loaded.NewArray()}
	defer func() {
		for _, a := range extra {
			a.Release()
		}
	}()
	fields := slices.Clone(b.Schema().Fields()[:n-1])
	fields = append(fields,
		arrow.Field{Name: "_request_id", Type: reqType, Nullable: true},
		arrow.Field{Name: "_loaded_at", Type: loadedType, Nullable: true},
		b.Schema().Field(n-1))
	cols := slices.Clone(b.Columns()[:n-1])
	cols = append(cols, extra...)
	cols = append(cols, b.Column(n-1))
	return array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, b.NumRows()), span, true
}

// spansMeet reports whether rows created in s (both ends included) may
// lie in the deletion range w (From included, To excluded; zero: open).
func spansMeet(s, w extract.Window) bool {
	return (w.From.IsZero() || !s.To.Before(w.From)) && (w.To.IsZero() || s.From.Before(w.To))
}

// flushGroup inserts the group's rows and commits its transaction, to the
// end whatever becomes of ctx (see viewDo).
func (d *DuckDB) flushGroup(ctx context.Context) (err error) {
	if !d.grp.open {
		return nil
	}
	ctx = context.WithoutCancel(ctx)
	defer func() {
		if err != nil {
			err = d.failGroup(ctx, err)
		}
	}()
	if len(d.grp.batches) > 0 {
		bs := latestRows(d.grp.batches, d.grp.dupIDs, transform.DefaultBatchRows)
		defer releaseAll(bs)
		q := `INSERT INTO ` + schemas.QuoteIdent(ContactsTable) + ` BY NAME SELECT * EXCLUDE (_line) REPLACE (CAST(id AS UUID) AS id) FROM ` + batchView
		if _, err := d.viewDo(ctx, bs, func() (int64, error) { return 0, d.exec(ctx, q) }); err != nil {
			return err
		}
	}
	fp, err := d.fingerprint(ctx)
	if err != nil {
		return err
	}
	if err := d.exec(ctx, "COMMIT"); err != nil {
		return err
	}
	for _, h := range d.grp.pending {
		d.known[h] = false
	}
	d.knownFP = fp
	d.releaseGroup()
	return nil
}

// failGroup rolls the group back and says so in err (nil: quietly).
func (d *DuckDB) failGroup(ctx context.Context, err error) error {
	windows := d.grp.windows
	if windows > 0 {
		// Which deferred ids were stored before is not kept.
		d.known, d.knownOff = nil, true
	}
	if d.grp.open {
		if rb := d.exec(context.WithoutCancel(ctx), "ROLLBACK"); rb != nil && err != nil {
			err = errors.Join(err, rb)
		}
	}
	d.releaseGroup()
	if err != nil && windows > 0 {
		return fmt.Errorf("%w (the %d window(s) committed since the last flush are rolled back)", err, windows)
	}
	return err
}

// latestRows returns batches without the rows that a later row of the same
// id replaces (of the ids in dups, only the last row stays), in order, as
// zero-copy slices of at most chunk rows, which the caller releases.
// DuckDB's Arrow scan shares batches among its threads: one INSERT of a
// million rows took 1.2 s in batches of 16,384 rows, 2.0 s in the 50,000 of
// a window.
func latestRows(batches []arrow.RecordBatch, dups map[string]struct{}, chunk int) []arrow.RecordBatch {
	type pos struct{ b, r int }
	last := map[string]pos{}
	if len(dups) > 0 {
		for bi, b := range batches {
			ids := b.Column(0).(*array.String)
			for r := 0; r < ids.Len(); r++ {
				if _, ok := dups[ids.Value(r)]; ok {
					last[ids.Value(r)] = pos{bi, r}
				}
			}
		}
	}
	var out []arrow.RecordBatch
	keep := func(b arrow.RecordBatch, from, to int) {
		for ; from < to; from += chunk {
			out = append(out, b.NewSlice(int64(from), int64(min(from+chunk, to))))
		}
	}
	for bi, b := range batches {
		ids := b.Column(0).(*array.String)
		start := 0
		for r := 0; r < ids.Len() && len(last) > 0; r++ {
			if p, ok := last[ids.Value(r)]; ok && p != (pos{bi, r}) {
				keep(b, start, r)
				start = r + 1
			}
		}
		keep(b, start, ids.Len())
	}
	return out
}

func (d *DuckDB) releaseGroup() {
	releaseAll(d.grp.batches)
	d.grp = group{}
}
