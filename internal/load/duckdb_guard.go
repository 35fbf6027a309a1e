//go:build duckdb_arrow

package load

import (
	"context"
	"strings"

	"github.com/leadlex/leadlex-etl/schemas"
)

// guardStored counts, when info's deletions are guarded, the contacts
// stored in its Deletes ranges before the window commits that markDeleted
// may count (the live ones; with HardDelete those marked deleted too, which
// it removes as well): what the DeleteGuard weighs its deletions against.
// It runs inside the commit's transaction, before the window's rows replace
// any.
func (d *DuckDB) guardStored(ctx context.Context, info WindowInfo) (int64, error) {
	if !info.DeleteGuard.on() || len(info.Deletes) == 0 {
		return 0, nil
	}
	var scope []string
	var args []any
	for _, w := range info.Deletes {
		cond := []string{"true"}
		if !w.From.IsZero() {
			cond, args = append(cond, "created_at >= ?"), append(args, w.From.UTC())
		}
		if !w.To.IsZero() {
			cond, args = append(cond, "created_at < ?"), append(args, w.To.UTC())
		}
		scope = append(scope, "("+strings.Join(cond, " AND ")+")")
	}
	live := schemas.DeletedAt + ` IS NULL`
	if info.HardDelete {
		live = "true"
	}
	var n int64
	err := d.conn.QueryRowContext(ctx, `SELECT count(*) FROM `+schemas.QuoteIdent(ContactsTable)+` WHERE `+live+` AND (`+
		strings.Join(scope, " OR ")+`)`, args...).Scan(&n)
	return n, err
}
