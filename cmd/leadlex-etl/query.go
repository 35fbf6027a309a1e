package main

import (
	"context"
	"database/sql"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/spf13/pflag"

	"github.com/leadlex/leadlex-etl/internal/load"
)

// queryFormat is how query prints its result.
type queryFormat string

const (
	formatTable queryFormat = "table"
	formatCSV   queryFormat = "csv"
	formatJSON  queryFormat = "json"
)

var queryFormats = []queryFormat{formatTable, formatCSV, formatJSON}

func (f queryFormat) String() string { return string(f) }

func (f *queryFormat) Set(s string) error {
	for _, v := range queryFormats {
		if string(v) == s {
			*f = v
			return nil
		}
	}
	return fmt.Errorf("%q is not one of table, csv or json", s)
}

func (*queryFormat) Type() string { return "table|csv|json" }

// queryExamples are the examples of `query --help`; a test runs each of them
// against a synced DuckDB file and lake, so they keep working.
var queryExamples = []string{
	`leadlex-etl query --duckdb warehouse.duckdb "SELECT full_name, email, created_at FROM contacts ORDER BY created_at DESC LIMIT 5"`,
	`leadlex-etl query --duckdb warehouse.duckdb "SELECT tag, count(*) AS contacts FROM (SELECT unnest(tags) AS tag FROM contacts) GROUP BY tag ORDER BY contacts DESC"`,
	`leadlex-etl query --format csv "SELECT year, month, count(*) AS contacts FROM read_parquet('lake/contacts/**/*.parquet') GROUP BY ALL ORDER BY ALL"`,
	`leadlex-etl query --duckdb warehouse.duckdb --format json "SELECT run_id, status, windows, calls FROM _leadlex_runs ORDER BY started_at DESC LIMIT 3"`,
}

func runQuery(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var path string
	var maxRows int
	format := formatTable
	fs := newFlagSet("query", `Run SQL against a DuckDB file the sync wrote (opened read-only, so a
running sync is not disturbed) or, without --duckdb, in an empty in-memory
DuckDB, for querying a Parquet lake; for machines without the duckdb CLI.
Values print as DuckDB's CLI prints them: hyphenated UUIDs, timestamps as
2025-12-31 21:30:16+00 (UTC), lists as [a, b c, 'd,e'], NULL as NULL.

--format csv prints a header and RFC 4180 rows (NULL is an empty field);
--format json prints a JSON array of one object per row, with numbers,
lists and NULLs as JSON numbers, arrays and null. Both print every row.

Examples:
  `+strings.Join(queryExamples, "\n  "), stdout)
	fs.StringVar(&path, "duckdb", "", "DuckDB file to query (default: an empty in-memory database, for querying a Parquet lake)")
	fs.Var(&format, "format", "output format")
	fs.IntVar(&maxRows, "max-rows", 100, "print at most this many rows as a table (0: all); csv and json print all")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() != 1 {
		return usagef("usage: leadlex-etl query [--duckdb PATH] [--format table|csv|json] \"SQL\"")
	}
	if maxRows < 0 {
		return usagef("--max-rows %d must not be negative", maxRows)
	}
	if st := extensionStatement(fs.Arg(0)); st != "" {
		return usagef("query does not run %q: leadlex-etl never downloads or loads DuckDB extensions, so that it runs no code it did not ship "+
			"(Parquet, JSON and time zones are built in); use the duckdb CLI for other extensions", st)
	}
	if path != "" {
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("--duckdb: %w", err)
		}
	}
	db, err := load.OpenDuckDBReadOnly(path)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "SET TimeZone = 'UTC'"); err != nil {
		return err
	}
	if format != formatTable {
		maxRows = 0
	}
	return printQuery(ctx, stdout, db, strings.TrimRight(strings.TrimSpace(fs.Arg(0)), ";"), format, maxRows)
}

// printQuery runs q and prints its result in format, at most maxRows rows
// (0: all). DuckDB renders the values: each column is cast to VARCHAR (or
// the row to JSON) around q; a statement that cannot be wrapped (a PRAGMA)
// runs as it is, its values printed by Go.
func printQuery(ctx context.Context, w io.Writer, db *sql.DB, q string, format queryFormat, maxRows int) error {
	wrapped := `SELECT COLUMNS(*)::VARCHAR FROM (` + q + "\n) AS _q"
	if format == formatJSON {
		wrapped = `SELECT to_json(_q)::VARCHAR FROM (` + q + "\n) AS _q"
	}
	rows, err := db.QueryContext(ctx, wrapped)
	if err != nil {
		// Not wrappable, or wrong: run it as it is, for its own error.
		raw, rerr := db.QueryContext(ctx, q)
		if rerr != nil {
			return rerr
		}
		rows = raw
		if format == formatJSON {
			raw.Close()
			return fmt.Errorf("--format json needs a query that can stand in FROM ( ... ): %w", err)
		}
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	if format == formatJSON {
		return printJSON(w, rows)
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var out rowWriter
	switch format {
	case formatCSV:
		out = &csvRows{w: csv.NewWriter(w)}
	default:
		out = &tableRows{w: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	}
	if err := out.header(cols); err != nil {
		return err
	}
	n := 0
	for rows.Next() {
		if n++; maxRows > 0 && n > maxRows {
			continue
		}
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		if err := out.row(vals); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if err := out.flush(); err != nil {
		return err
	}
	if maxRows > 0 && n > maxRows {
		fmt.Fprintf(w, "(%d rows, %d shown; --max-rows 0 shows all)\n", n, maxRows)
	}
	return nil
}

func printJSON(w io.Writer, rows *sql.Rows) error {
	var b strings.Builder
	b.WriteString("[")
	n := 0
	for rows.Next() {
		var obj sql.NullString
		if err := rows.Scan(&obj); err != nil {
			return err
		}
		if n > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n  ")
		b.WriteString(obj.String)
		n++
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if n > 0 {
		b.WriteString("\n")
	}
	b.WriteString("]\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// rowWriter prints rows of values as query scans them.
type rowWriter interface {
	header(cols []string) error
	row(vals []any) error
	flush() error
}

// text renders a value DuckDB has already cast to VARCHAR, or, for a
// statement that could not be wrapped, a Go value.
func text(v any) (string, bool) {
	switch v := v.(type) {
	case nil:
		return "", false
	case string:
		return v, true
	case []byte:
		if utf8.Valid(v) {
			return string(v), true
		}
		return fmt.Sprintf("\\x%x", v), true
	default:
		return fmt.Sprint(v), true
	}
}

type tableRows struct{ w *tabwriter.Writer }

func (t *tableRows) header(cols []string) error {
	_, err := fmt.Fprintln(t.w, strings.Join(cols, "\t"))
	return err
}

func (t *tableRows) row(vals []any) error {
	cells := make([]string, len(vals))
	for i, v := range vals {
		s, ok := text(v)
		if !ok {
			s = "NULL"
		}
		cells[i] = strings.NewReplacer("\n", `\n`, "\t", `\t`, "\r", `\r`).Replace(s)
	}
	_, err := fmt.Fprintln(t.w, strings.Join(cells, "\t"))
	return err
}

func (t *tableRows) flush() error { return t.w.Flush() }

type csvRows struct{ w *csv.Writer }

func (c *csvRows) header(cols []string) error { return c.w.Write(cols) }

func (c *csvRows) row(vals []any) error {
	rec := make([]string, len(vals))
	for i, v := range vals {
		rec[i], _ = text(v)
	}
	return c.w.Write(rec)
}

func (c *csvRows) flush() error {
	c.w.Flush()
	return c.w.Error()
}
