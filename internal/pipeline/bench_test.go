package pipeline_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/leadlex/leadlex-etl/internal/archive"
	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/fakeapi"
	"github.com/leadlex/leadlex-etl/internal/load"
	"github.com/leadlex/leadlex-etl/internal/pipeline"
	"github.com/leadlex/leadlex-etl/internal/transform"
)

// benchRows is the dataset size of BenchmarkStages; LEADLEX_BENCH_ROWS
// overrides it.
func benchRows() int {
	var n int
	if _, err := fmt.Sscan(os.Getenv("LEADLEX_BENCH_ROWS"), &n); err == nil && n > 0 {
		return n
	}
	return 500_000
}

// writeDatasetCSV writes the dataset as the API would export it.
func writeDatasetCSV(tb testing.TB, ds *fakeapi.Dataset, path string) int64 {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	w := csv.NewWriter(bw)
	w.UseCRLF = true
	_ = w.Write(fakeapi.DefaultFields)
	rec := make([]string, len(fakeapi.DefaultFields))
	for i := 0; i < ds.Len(); i++ {
		c := ds.Contact(i)
		for k, name := range fakeapi.DefaultFields {
			rec[k], _ = c.Field(name)
		}
		_ = w.Write(rec)
	}
	w.Flush()
	if err := bw.Flush(); err != nil {
		tb.Fatal(err)
	}
	st, _ := f.Stat()
	f.Close()
	return st.Size()
}

// referenceTypedSelect is DuckDB's own CSV path doing the work the
// transform does: UUIDs checked, tags split and trimmed, instants parsed.
func referenceTypedSelect(path string) string {
	return fmt.Sprintf(`SELECT id::UUID AS id, full_name, email, phone, job_title, company_name, linkedin_url,
		list_filter(list_transform(string_split(coalesce(tags, ''), ','), x -> trim(x)), x -> x <> '') AS tags,
		created_at::TIMESTAMPTZ AS created_at
		FROM read_csv('%s', header = true, all_varchar = true)`, path)
}

func timeIt(b *testing.B, f func()) time.Duration {
	b.Helper()
	start := time.Now()
	f()
	return time.Since(start)
}

func mustExec(b *testing.B, db *sql.DB, q string) {
	b.Helper()
	if _, err := db.Exec(q); err != nil {
		b.Fatalf("%s: %v", q, err)
	}
}

// benchReps is how many times BenchmarkStages times each stage and its
// reference; it reports medians. LEADLEX_BENCH_REPS overrides it.
func benchReps() int {
	var n int
	if _, err := fmt.Sscan(os.Getenv("LEADLEX_BENCH_REPS"), &n); err == nil && n > 0 {
		return n
	}
	return 5
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// BenchmarkStages measures each stage against DuckDB doing the same job on
// the same rows in the same run, and reports the ratio of the medians of
// several runs of each, alternated (ours / DuckDB's; lower is better), with
// each side's rows per second. make bench runs it.
func BenchmarkStages(b *testing.B) {
	n := benchRows()
	reps := benchReps()
	srv, url := startFake(b, fakeapi.Config{Contacts: n, Seed: 1})
	dir := b.TempDir()
	csvPath := filepath.Join(dir, "contacts.csv")
	size := writeDatasetCSV(b, srv.Dataset(), csvPath)
	body, err := os.ReadFile(csvPath)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%d rows, %.1f MB of CSV, medians of %d runs", n, float64(size)/1e6, reps)
	seq := 0
	// stage times ours and ref reps times each, alternating, and reports.
	stage := func(b *testing.B, ours, ref func(k int)) {
		var o, r []time.Duration
		for b.Loop() {
			for i := 0; i < reps; i++ {
				seq++
				o = append(o, timeIt(b, func() { ours(seq) }))
				r = append(r, timeIt(b, func() { ref(seq) }))
			}
		}
		mo, mr := median(o), median(r)
		b.ReportMetric(mo.Seconds()/mr.Seconds(), "x_duckdb")
		b.ReportMetric(float64(n)/mo.Seconds(), "rows/s")
		b.ReportMetric(float64(n)/mr.Seconds(), "duckdb_rows/s")
		b.ReportMetric(float64(size)/mo.Seconds()/1e6, "MB/s")
		b.Logf("ours %v (runs %v), DuckDB %v (runs %v)", mo.Round(time.Millisecond), o, mr.Round(time.Millisecond), r)
	}

	b.Run("transform_vs_read_csv", func(b *testing.B) {
		db := memDuckDB(b)
		stage(b, func(int) {
			rd, err := transform.NewReader(bytes.NewReader(body), transform.Options{})
			if err != nil {
				b.Fatal(err)
			}
			for rd.Next() {
			}
			if err := rd.Err(); err != nil {
				b.Fatal(err)
			}
			rd.Release()
		}, func(int) {
			mustExec(b, db, `CREATE OR REPLACE TABLE ref AS `+referenceTypedSelect(csvPath))
		})
	})

	b.Run("sync_duckdb_vs_read_csv_into_table", func(b *testing.B) {
		stage(b, func(k int) {
			db := openDB(b, filepath.Join(dir, fmt.Sprintf("sync%d.duckdb", k)))
			if _, err := runSync(b, url, db, syncArgs{}); err != nil {
				b.Fatal(err)
			}
			db.Close()
		}, func(k int) {
			db := openDB(b, filepath.Join(dir, fmt.Sprintf("ref%d.duckdb", k)))
			mustExec(b, db.DB(), `CREATE TABLE ref AS `+referenceTypedSelect(csvPath))
			db.Close()
		})
	})

	b.Run("resync_duckdb_vs_delete_insert", func(b *testing.B) {
		path := filepath.Join(dir, "resync.duckdb")
		db := openDB(b, path)
		if _, err := runSync(b, url, db, syncArgs{}); err != nil {
			b.Fatal(err)
		}
		mustExec(b, db.DB(), `CREATE TABLE ref AS `+referenceTypedSelect(csvPath))
		stage(b, func(int) {
			// Every row again: the upsert path, replacing all ids.
			if _, err := runSync(b, url, db, syncArgs{since: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)}); err != nil {
				b.Fatal(err)
			}
		}, func(int) {
			mustExec(b, db.DB(), `BEGIN; CREATE TEMP TABLE s AS `+referenceTypedSelect(csvPath)+`;
				DELETE FROM ref WHERE id IN (SELECT id FROM s); INSERT INTO ref SELECT * FROM s; DROP TABLE s; COMMIT`)
		})
	})

	b.Run("sync_parquet_vs_copy_partition_by", func(b *testing.B) {
		db := memDuckDB(b)
		stage(b, func(k int) {
			lake, err := load.OpenLake(context.Background(), filepath.Join(dir, fmt.Sprintf("lake%d", k)), load.LakeOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := syncTargets(b, url, syncArgs{}, lake); err != nil {
				b.Fatal(err)
			}
			lake.Close()
		}, func(k int) {
			mustExec(b, db, fmt.Sprintf(`COPY (SELECT *, year(created_at AT TIME ZONE 'UTC') AS year, month(created_at AT TIME ZONE 'UTC') AS month FROM (%s))
				TO '%s' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (year, month))`, referenceTypedSelect(csvPath), filepath.Join(dir, fmt.Sprintf("ref_lake%d", k))))
		})
	})

	b.Run("replay_duckdb_vs_read_csv", func(b *testing.B) {
		// One sync keeps the raw archive; each replay rebuilds a new DuckDB
		// file from it. The reference reads the archive's bodies,
		// decompressed to CSV files, into a table of a new file.
		raw := filepath.Join(dir, "raw")
		arch, err := archive.Open(raw, true)
		if err != nil {
			b.Fatal(err)
		}
		defer arch.Close()
		src := openDB(b, filepath.Join(dir, "replay-src.duckdb"))
		c := &extract.Client{BaseURL: url, Key: extract.NewAPIKey(testKey)}
		if _, err := pipeline.Sync(context.Background(), pipeline.Options{Client: c, Query: extract.Query{Limit: extract.MaxLimit},
			Targets: []load.Target{src}, Archive: arch}); err != nil {
			b.Fatal(err)
		}
		src.Close()
		bodies := filepath.Join(dir, "bodies")
		if err := os.Mkdir(bodies, 0o755); err != nil {
			b.Fatal(err)
		}
		streams, err := arch.Streams()
		if err != nil || len(streams) != 1 {
			b.Fatalf("streams %v %v", streams, err)
		}
		entries, err := arch.Entries(streams[0].ID)
		if err != nil {
			b.Fatal(err)
		}
		var zst int64
		for i, e := range entries {
			body, err := arch.Open(e)
			if err != nil {
				b.Fatal(err)
			}
			out, err := os.Create(filepath.Join(bodies, fmt.Sprintf("%04d.csv", i)))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(out, body); err != nil {
				b.Fatal(err)
			}
			out.Close()
			body.Close()
			zst += e.ZstdBytes
		}
		b.Logf("raw archive: %d bodies, %.1f MB compressed", len(entries), float64(zst)/1e6)
		stage(b, func(k int) {
			db := openDB(b, filepath.Join(dir, fmt.Sprintf("replay%d.duckdb", k)))
			if _, err := pipeline.Replay(context.Background(), pipeline.ReplayOptions{Archive: arch, Targets: []load.Target{db}}); err != nil {
				b.Fatal(err)
			}
			db.Close()
		}, func(k int) {
			db := openDB(b, filepath.Join(dir, fmt.Sprintf("replay-ref%d.duckdb", k)))
			mustExec(b, db.DB(), `CREATE TABLE ref AS `+referenceTypedSelect(filepath.Join(bodies, "*.csv")))
			db.Close()
		})
	})

	b.Run("extract_only_calls", func(b *testing.B) {
		// The API side alone: planner, HTTP and CSV scanning, no sink.
		for b.Loop() {
			c := &extract.Client{BaseURL: url, Key: extract.NewAPIKey(testKey)}
			e := &extract.Extractor{Client: c, Query: extract.Query{Limit: extract.MaxLimit}}
			h := tallyOnly{}
			sum, err := e.Run(context.Background(), extract.NewPlanner(extract.MaxLimit, extract.Window{To: time.Now()}), h, 0)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(sum.Calls), "calls")
			b.ReportMetric(float64(extract.MinCalls(n, extract.MaxLimit)), "min_calls")
			b.ReportMetric(float64(n)/sum.Elapsed.Seconds(), "rows/s")
		}
	})
}

type tallyOnly struct{}

func (tallyOnly) Consume(_ context.Context, _ extract.Window, r *extract.Response) (extract.Tally, error) {
	return extract.TallyCSV(r.Body)
}
func (tallyOnly) Commit(context.Context, extract.Window, []extract.Window) error { return nil }
