package load_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/fakeapi"
	"github.com/leadlex/leadlex-etl/internal/load"
	"github.com/leadlex/leadlex-etl/internal/transform"
)

// datasetCSV is contacts [from, to) of ds as the API exports them.
func datasetCSV(ds *fakeapi.Dataset, from, to int) string {
	var b strings.Builder
	b.WriteString(strings.Join(fakeapi.DefaultFields, ",") + "\n")
	rec := make([]string, len(fakeapi.DefaultFields))
	for i := from; i < to; i++ {
		c := ds.Contact(i)
		for k, name := range fakeapi.DefaultFields {
			v, _ := c.Field(name)
			if strings.ContainsAny(v, ",\"\n\r") {
				v = `"` + strings.ReplaceAll(v, `"`, `""`) + `"`
			}
			rec[k] = v
		}
		b.WriteString(strings.Join(rec, ",") + "\n")
	}
	return b.String()
}

// commitCSV commits csv as one window of the lake, with info.
func commitCSV(tb testing.TB, l *load.Lake, csv string, info load.WindowInfo) load.Changes {
	tb.Helper()
	ctx := context.Background()
	rd, err := transform.NewReader(strings.NewReader(csv), transform.Options{BatchRows: 50000})
	if err != nil {
		tb.Fatal(err)
	}
	defer rd.Release()
	if err := l.Begin(ctx, info, rd.Columns()); err != nil {
		tb.Fatal(err)
	}
	for rd.Next() {
		if err := l.Write(ctx, rd.RecordBatch()); err != nil {
			tb.Fatal(err)
		}
	}
	if err := rd.Err(); err != nil {
		tb.Fatal(err)
	}
	ch, err := l.Commit(ctx, info, rd.Rejects(), load.WindowStats{Rows: rd.Rows(), Calls: 1}, load.StreamState{StreamID: "s1", Identity: "{}"})
	if err != nil {
		tb.Fatal(err)
	}
	return ch
}

// BenchmarkLakeCommit measures the commit of one 50,000-row window into a
// lake of LEADLEX_BENCH_ROWS contacts (default 500,000), in a fresh copy of
// the lake each time: the next incremental window (new contacts, at the end
// of the history) and a refresh of 50,000 stored contacts (with its
// deletion range), each as the first window a process commits and as its
// second. Run it with
//
//	go test -tags duckdb_arrow -run '^$' -bench BenchmarkLakeCommit -benchtime 3x ./internal/load/
func BenchmarkLakeCommit(b *testing.B) {
	rows := 500_000
	if _, err := fmt.Sscan(os.Getenv("LEADLEX_BENCH_ROWS"), &rows); err != nil {
		rows = 500_000
	}
	const window = 50_000
	srv, err := fakeapi.New(fakeapi.Config{Contacts: rows + window, Seed: 7})
	if err != nil {
		b.Fatal(err)
	}
	ds := srv.Dataset()
	base := filepath.Join(b.TempDir(), "base")
	l, err := load.OpenLake(context.Background(), base, load.LakeOptions{})
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for from := 0; from < rows; from += window {
		commitCSV(b, l, datasetCSV(ds, from, min(from+window, rows)), load.WindowInfo{StreamID: "s1", RunID: "build", RequestID: "r", LoadedAt: t0})
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	mid := rows / 2
	for _, tc := range []struct {
		name     string
		from, to int
		deletes  bool
		second   bool // the second window of the process: a first, of one row, came before
	}{
		{"incremental", rows, rows + window, false, false},
		{"refresh", mid, mid + window, true, false},
		{"incremental-second", rows, rows + window, false, true},
		{"refresh-second", mid, mid + window, true, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			csv := datasetCSV(ds, tc.from, tc.to)
			info := load.WindowInfo{StreamID: "s1", RunID: "bench", RequestID: "r2", LoadedAt: t0.Add(time.Hour), Refresh: tc.deletes}
			if tc.deletes {
				info.Deletes = []extract.Window{{From: ds.CreatedAt(tc.from), To: ds.CreatedAt(tc.to - 1).Add(time.Microsecond)}}
			}
			var cpu time.Duration
			defer func() { b.ReportMetric(cpu.Seconds()*1000/float64(b.N), "cpu-ms/op") }()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dir := filepath.Join(b.TempDir(), "lake")
				if out, err := exec.Command("cp", "-r", base, dir).CombinedOutput(); err != nil {
					b.Fatalf("%v: %s", err, out)
				}
				l, err := load.OpenLake(context.Background(), dir, load.LakeOptions{})
				if err != nil {
					b.Fatal(err)
				}
				if tc.second {
					commitCSV(b, l, datasetCSV(ds, 0, 1), load.WindowInfo{StreamID: "s1", RunID: "bench", RequestID: "r1", LoadedAt: t0.Add(time.Minute)})
				}
				cpu0 := cpuTime()
				b.StartTimer()
				ch := commitCSV(b, l, csv, info)
				b.StopTimer()
				cpu += cpuTime() - cpu0
				if ch.Inserted+ch.Replaced != int64(tc.to-tc.from) {
					b.Fatalf("%+v", ch)
				}
				l.Close()
			}
		})
	}
}

// cpuTime is the CPU time the process has used, which other processes on
// a shared machine do not inflate as they do wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
