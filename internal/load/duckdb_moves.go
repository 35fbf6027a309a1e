package load

import (
	"context"
	"fmt"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/leadlex/leadlex-etl/schemas"
)

// runMarks is what a sink remembers of the contacts the current run marked
// deleted: the run, and the load time of its first window that marked any
// (the _deleted_at it gave them; its later windows give later ones).
type runMarks struct {
	run   string
	since time.Time
}

// note records that the window info marked contacts deleted.
func (m *runMarks) note(info WindowInfo) {
	if m.run != info.RunID {
		*m = runMarks{run: info.RunID, since: info.LoadedAt}
	}
}

// revives reports whether a stored row marked deleted at deletedAt, found
// again by the window info, was marked by an earlier window of its run.
func (m *runMarks) revives(info WindowInfo, deletedAt time.Time) bool {
	return m.run == info.RunID && !deletedAt.Before(m.since)
}

// countRevived counts the stored contacts of the window's ids that an
// earlier window of the run marked deleted and that come back with another
// created_at: they moved into the window's range (see Changes.Revived). It
// costs a query only in a run that marked some; the query reads only the
// window's ids (see withBatches), and the created_at are compared here.
func (d *DuckDB) countRevived(ctx context.Context, info WindowInfo) (n int64, err error) {
	if d.marks.run != info.RunID || len(d.batches) == 0 {
		return 0, nil
	}
	q := `SELECT id::VARCHAR, created_at FROM ` + schemas.QuoteIdent(ContactsTable) + ` WHERE ` + schemas.DeletedAt +
		` >= ?::TIMESTAMPTZ AND id IN (SELECT CAST(id AS UUID) FROM ` + batchView + `)`
	stored := map[string]time.Time{}
	_, err = d.withBatchesDo(ctx, func() (int64, error) {
		rows, err := d.conn.QueryContext(ctx, q, d.marks.since.UTC())
		if err != nil {
			return 0, err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var at time.Time
			if err := rows.Scan(&id, &at); err != nil {
				return 0, err
			}
			stored[id] = at
		}
		return 0, rows.Err()
	})
	if err != nil {
		return 0, fmt.Errorf("find the contacts moved into the window: %w", err)
	}
	for id, at := range windowCreated(d.batches, stored) {
		if !at.Equal(stored[id]) {
			n++
		}
	}
	return n, nil
}

// windowCreated returns the created_at of the window's last row of each id
// of want.
func windowCreated(batches []arrow.RecordBatch, want map[string]time.Time) map[string]time.Time {
	out := map[string]time.Time{}
	for _, b := range batches {
		ids, ts, err := rowKeys(b)
		if err != nil {
			continue
		}
		for r, id := range ids {
			if _, ok := want[id]; ok {
				out[id] = time.UnixMicro(ts[r])
			}
		}
	}
	return out
}
