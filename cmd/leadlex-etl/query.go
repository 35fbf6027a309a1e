package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"github.com/leadlex/leadlex-etl/internal/load"
)

func runQuery(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var path string
	var maxRows int
	fs := newFlagSet("query", `Run SQL against a DuckDB file the sync wrote (opened read-only) and print
the result as a table, for machines without the duckdb CLI. Parquet lakes
can be queried too, with read_parquet('DIR/**/*.parquet', hive_partitioning = true).

Examples:
  leadlex-etl query "SELECT count(*) FROM read_parquet('lake/**/*.parquet', hive_partitioning = true)"
  leadlex-etl query --duckdb warehouse.duckdb \
    "SELECT tag, count(*) AS contacts FROM (SELECT unnest(tags) AS tag FROM contacts) GROUP BY tag ORDER BY 2 DESC"`, stdout)
	fs.StringVar(&path, "duckdb", "", "DuckDB file to query (default: an empty in-memory database, for querying a Parquet lake)")
	fs.IntVar(&maxRows, "max-rows", 100, "print at most this many rows")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() != 1 {
		return usagef("usage: leadlex-etl query [--duckdb PATH] \"SQL\"")
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
	return printQuery(ctx, stdout, db, fs.Arg(0), maxRows)
}

// printQuery runs q and prints its rows aligned in columns.
func printQuery(ctx context.Context, w io.Writer, db *sql.DB, q string, maxRows int) error {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	n := 0
	for rows.Next() {
		if n++; n > maxRows {
			continue
		}
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		cells := make([]string, len(vals))
		for i, v := range vals {
			switch v := v.(type) {
			case nil:
				cells[i] = "NULL"
			case []byte:
				cells[i] = fmt.Sprintf("%x", v)
			default:
				cells[i] = strings.ReplaceAll(fmt.Sprint(v), "\n", `\n`)
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if n > maxRows {
		fmt.Fprintf(w, "(%d rows, %d shown)\n", n, maxRows)
	}
	return nil
}
