//go:build duckdb_arrow

package load

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/duckdb/duckdb-go/v2"

	"github.com/leadlex/leadlex-etl/schemas"
)

// ShapeError says a DuckDB file's tables are not as leadlex-etl made them:
// contacts dropped while its streams say their contacts are synced, a
// column retyped or dropped, a table replaced by a view. Something other
// than the tool changed the file; a sync would take what it finds there
// for synced data, or store new rows wrongly, so nothing is written and no
// API call is made until it is fixed.
type ShapeError struct {
	Path     string
	Problems []string // each names a table or column, what it is and what the tool made
	Fix      string   // what to do
}

func (e *ShapeError) Error() string {
	return fmt.Sprintf("DuckDB file %s was changed outside leadlex-etl: %s; nothing was written. %s", e.Path, strings.Join(e.Problems, "; "), e.Fix)
}

// noFetchSettings turn off what would make DuckDB download or load code at
// run time: the automatic install and load of known extensions (DuckDB
// fetches sqlite_scanner to open a SQLite file it is given, httpfs for a
// URL in a query) and community extensions; and they keep extensions in
// noExtensionDir, so that an INSTALL (from any repository or URL) fails
// before it downloads anything, and no extension installed in the user's
// ~/.duckdb is found by LOAD. The extensions the tool uses (parquet, json,
// icu) are built in. External access (reading other files) stays on:
// query reads Parquet lakes, and so do the tests through a sink's DB (the
// connections of query lock it down further: userSQLSettings).
const noFetchSettings = "autoinstall_known_extensions=false&autoload_known_extensions=false&allow_community_extensions=false" +
	"&extension_directory=" + noExtensionDir + "&custom_extension_repository=" + noExtensionDir + "&autoinstall_extension_repository=" + noExtensionDir

// noExtensionDir is a path under /dev/null, which no one can make: DuckDB's
// install creates the extension folder first, and fails there.
const noExtensionDir = "/dev/null/leadlex-etl-installs-no-extensions"

// userSQLSettings make a database that runs a user's SQL (query) unable to
// load any extension (external access off: LOAD of a file refused, files
// still readable in every folder) and unable to undo noFetchSettings (the
// configuration locked, but for settings that change no more than a
// query's results or resources).
var userSQLSettings = []string{
	"SET allowed_directories = ['/']",
	"SET enable_external_access = false",
	"SET allowed_configs = ['TimeZone', 'Calendar', 'threads', 'memory_limit', 'temp_directory', 'search_path', " +
		"'default_order', 'default_null_order', 'preserve_insertion_order']",
	"SET lock_configuration = true",
}

// lockUserSQL applies userSQLSettings to a new connection's database,
// unless an earlier connection did (the settings are the database's, and
// once locked, unchangeable).
func lockUserSQL(ctx context.Context, ex driver.ExecerContext) error {
	if q, ok := ex.(driver.QueryerContext); ok {
		rows, err := q.QueryContext(ctx, `SELECT current_setting('lock_configuration')`, nil)
		if err != nil {
			return err
		}
		v := make([]driver.Value, 1)
		err = rows.Next(v)
		rows.Close()
		if err != nil {
			return err
		}
		if locked, _ := v[0].(bool); locked {
			return nil
		}
	}
	for _, s := range userSQLSettings {
		if _, err := ex.ExecContext(ctx, s, nil); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// duckdbDSN is the DSN of every DuckDB database the tool opens: the file
// at path ("" in memory), read-only if asked, never fetching code.
func duckdbDSN(path string, readOnly bool) string {
	dsn := path + "?" + noFetchSettings
	if readOnly {
		dsn += "&access_mode=read_only"
	}
	return dsn
}

// duckdbShape is what a DuckDB file's catalog says of its main schema:
// which names are views, and the types of the tables' columns, as
// duckdb_columns() names them.
type duckdbShape struct {
	views map[string]bool              // every table and view; true for a view
	cols  map[string]map[string]string // table -> column -> type
}

func readShape(ctx context.Context, conn *sql.Conn) (duckdbShape, error) {
	sh := duckdbShape{views: map[string]bool{}, cols: map[string]map[string]string{}}
	rows, err := conn.QueryContext(ctx, `SELECT table_name, false FROM duckdb_tables() WHERE schema_name = 'main' AND database_name = current_database()
		UNION ALL SELECT view_name, true FROM duckdb_views() WHERE schema_name = 'main' AND database_name = current_database() AND NOT internal`)
	if err != nil {
		return sh, err
	}
	for rows.Next() {
		var name string
		var view bool
		if err := rows.Scan(&name, &view); err != nil {
			rows.Close()
			return sh, err
		}
		sh.views[name] = view
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return sh, err
	}
	rows, err = conn.QueryContext(ctx, `SELECT c.table_name, c.column_name, c.data_type FROM duckdb_columns() AS c
		JOIN duckdb_tables() AS t USING (database_name, schema_name, table_name)
		WHERE c.schema_name = 'main' AND c.database_name = current_database()`)
	if err != nil {
		return sh, err
	}
	defer rows.Close()
	for rows.Next() {
		var table, col, typ string
		if err := rows.Scan(&table, &col, &typ); err != nil {
			return sh, err
		}
		if sh.cols[table] == nil {
			sh.cols[table] = map[string]string{}
		}
		sh.cols[table][col] = typ
	}
	return sh, rows.Err()
}

// referenceShape is the shape of the tables the tool makes: createTables
// run on an empty database in memory, so that the one definition of the
// tables is also what a file is checked against.
var referenceShape = sync.OnceValues(func() (duckdbShape, error) {
	ctx := context.Background()
	connector, err := duckdb.NewConnector(duckdbDSN("", false), nil)
	if err != nil {
		return duckdbShape{}, err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return duckdbShape{}, err
	}
	defer conn.Close()
	ref := &DuckDB{path: ":memory:", conn: conn}
	if err := ref.createTables(ctx); err != nil {
		return duckdbShape{}, fmt.Errorf("the tables leadlex-etl makes: %w", err)
	}
	return readShape(ctx, conn)
})

// checkShape compares the file's tables with those the tool makes, before
// anything is written or any API call is made. Tables missing are fine
// (createTables makes them, and a file of an older version lacks some
// columns of the tool's tables), except contacts when a stream says its
// contacts are synced; a contacts table not made by the tool is refused.
func (d *DuckDB) checkShape(ctx context.Context) error {
	want, err := referenceShape()
	if err != nil {
		return err
	}
	have, err := readShape(ctx, d.conn)
	if err != nil {
		return fmt.Errorf("read the tables of %s: %w", d.path, err)
	}
	if _, ok := have.views[ContactsTable]; !ok {
		if err := d.checkNoContacts(ctx, have); err != nil {
			return err
		}
	}
	if cols := have.cols[ContactsTable]; cols != nil {
		for _, c := range []string{"_request_id", "_loaded_at"} {
			if _, ok := cols[c]; !ok {
				return fmt.Errorf("table %s in %s was not made by leadlex-etl (it has no %s column), and a sync would write into it: "+
					"give another file (a new path is created), or rename your table; nothing was changed", ContactsTable, d.path, c)
			}
		}
	}
	fields, err := d.streamFields(ctx, have)
	if err != nil {
		return err
	}
	var problems []string
	for _, table := range slices.Sorted(maps.Keys(want.cols)) {
		view, ok := have.views[table]
		switch {
		case !ok:
			continue
		case view:
			problems = append(problems, fmt.Sprintf("%s is a view, not the table leadlex-etl made (drop the view and put the table back)", table))
			continue
		}
		problems = append(problems, columnProblems(table, want.cols[table], have.cols[table], fields)...)
	}
	if len(problems) == 0 {
		return nil
	}
	return &ShapeError{Path: d.path, Problems: problems, Fix: "Change them back, restore the file from a backup, or sync into a new file: " +
		"rows written into a changed column would be stored wrongly (lists as text, times shifted to local time)."}
}

// columnProblems compares the columns of one table with those the tool
// makes. Of the columns it does not know, those a stream asks for (fields)
// are extra fields of contacts, text; others are the user's own columns in
// contacts, which upserts keep, and columns of a newer version in the
// tool's tables.
func columnProblems(table string, want, have map[string]string, fields map[string]bool) []string {
	var out []string
	for _, col := range slices.Sorted(maps.Keys(have)) {
		typ := have[col]
		wantType, known := want[col]
		if !known {
			if table != ContactsTable || !fields[col] {
				continue
			}
			wantType = "VARCHAR"
		}
		if typ != wantType {
			out = append(out, fmt.Sprintf("column %s.%s is %s, but leadlex-etl made it %s (ALTER TABLE %s ALTER %s TYPE %s changes it back; check the values after)",
				table, col, typ, wantType, schemas.QuoteIdent(table), schemas.QuoteIdent(col), wantType))
		}
	}
	if table != ContactsTable {
		return out
	}
	for _, col := range slices.Sorted(maps.Keys(want)) {
		if _, ok := have[col]; ok || col == schemas.DeletedAt { // _deleted_at came later: createTables adds it
			continue
		}
		out = append(out, fmt.Sprintf("column %s.%s is missing (ALTER TABLE %s ADD COLUMN %s %s adds it back; its values return as the refresh re-exports each range, or at once after streams reset)",
			table, col, schemas.QuoteIdent(table), schemas.QuoteIdent(col), want[col]))
	}
	return out
}

// streamFields returns the fields the file's streams ask for beyond the
// standard set (their identities say which): the extra columns of
// contacts the tool made.
func (d *DuckDB) streamFields(ctx context.Context, have duckdbShape) (map[string]bool, error) {
	fields := map[string]bool{}
	if _, ok := have.cols["_leadlex_streams"]["identity"]; !ok {
		return fields, nil
	}
	rows, err := d.conn.QueryContext(ctx, `SELECT identity FROM _leadlex_streams`)
	if err != nil {
		return nil, fmt.Errorf("read streams of %s: %w", d.path, err)
	}
	defer rows.Close()
	for rows.Next() {
		var identity sql.NullString
		if err := rows.Scan(&identity); err != nil {
			return nil, fmt.Errorf("read streams of %s: %w", d.path, err)
		}
		var id struct {
			Fields []string `json:"fields"`
		}
		_ = json.Unmarshal([]byte(identity.String), &id) // an identity of another form names no field
		for _, f := range id.Fields {
			fields[f] = true
		}
	}
	return fields, rows.Err()
}

// checkNoContacts refuses a file without contacts whose streams say
// contacts are synced: the table was dropped, and a sync would make it
// again empty and report everything covered. The fix is forgetting what
// the streams synced (streams reset), which opens the file with
// ContactsMayBeMissing.
func (d *DuckDB) checkNoContacts(ctx context.Context, have duckdbShape) error {
	if d.opts.ContactsMayBeMissing {
		return nil
	}
	cols := have.cols["_leadlex_streams"]
	if cols == nil {
		return nil
	}
	coverage, cursor := "NULL::VARCHAR", "NULL::TIMESTAMPTZ"
	if _, ok := cols["coverage"]; ok {
		coverage = "coverage"
	}
	if _, ok := cols["cursor"]; ok {
		cursor = "cursor"
	}
	rows, err := d.conn.QueryContext(ctx, `SELECT stream_id, `+coverage+`, `+cursor+` IS NOT NULL FROM _leadlex_streams ORDER BY stream_id`)
	if err != nil {
		return fmt.Errorf("read streams of %s: %w", d.path, err)
	}
	defer rows.Close()
	var synced []string
	for rows.Next() {
		var id string
		var cov sql.NullString
		var hasCursor bool
		if err := rows.Scan(&id, &cov, &hasCursor); err != nil {
			return fmt.Errorf("read streams of %s: %w", d.path, err)
		}
		c, err := decodeCoverage(cov.String)
		if hasCursor || len(c) > 0 || err != nil {
			synced = append(synced, id)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(synced) == 0 {
		return nil
	}
	var fix strings.Builder
	fix.WriteString("To export all history again into a new contacts table, forget what the streams synced, then sync again:")
	for _, id := range synced {
		fmt.Fprintf(&fix, "\n  leadlex-etl streams reset %s --duckdb %s --yes", shellQuote(id), shellQuote(d.path))
	}
	fix.WriteString("\n(restoring the file from a backup instead costs no API calls)")
	say := "stream " + synced[0] + " says its"
	if len(synced) > 1 {
		say = "streams " + strings.Join(synced, ", ") + " say their"
	}
	return &ShapeError{Path: d.path, Fix: fix.String(), Problems: []string{fmt.Sprintf(
		"table %s is gone, but %s contacts are synced (was it dropped by hand?); a sync would make it again, empty, and count every synced range as there",
		ContactsTable, say)}}
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_./:=@%+,-]+$`)

// shellQuote quotes s for a POSIX shell, if it needs it.
func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
