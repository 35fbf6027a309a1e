package load

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/transform"
)

const lakeHeader = "id,full_name,email,phone,job_title,company_name,linkedin_url,tags,created_at\n"

func lakeWindow(t *testing.T, l *Lake, csv string, st StreamState) error {
	t.Helper()
	ctx := context.Background()
	rd, err := transform.NewReader(strings.NewReader(lakeHeader+csv), transform.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Release()
	info := WindowInfo{StreamID: st.StreamID, RunID: "r", RequestID: "req", LoadedAt: time.Now()}
	if err := l.Begin(ctx, info, rd.Columns()); err != nil {
		t.Fatal(err)
	}
	for rd.Next() {
		if err := l.Write(ctx, rd.RecordBatch()); err != nil {
			t.Fatal(err)
		}
	}
	return l.Commit(ctx, info, rd.Rejects(), WindowStats{}, st)
}

// lakeRows returns id -> full_name of every row in the lake's data files.
func lakeRows(t *testing.T, l *Lake) map[string]string {
	t.Helper()
	files, err := l.listFiles("")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range files {
		_, batches, err := ReadParquetFile(l.path(f.rel), memory.DefaultAllocator)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range batches {
			ids := b.Column(b.Schema().FieldIndices("id")[0]).(*array.String)
			names := b.Column(b.Schema().FieldIndices("full_name")[0]).(*array.String)
			for i := 0; i < ids.Len(); i++ {
				if _, dup := out[ids.Value(i)]; dup {
					t.Errorf("id %s twice in the lake", ids.Value(i))
				}
				out[ids.Value(i)] = names.Value(i)
			}
			b.Release()
		}
	}
	return out
}

const (
	lA = "123e4567-e89b-12d3-a456-426614174000"
	lB = "223e4567-e89b-12d3-a456-426614174000"
	lC = "323e4567-e89b-12d3-a456-426614174000"
	lD = "423e4567-e89b-12d3-a456-426614174000"
)

// TestLakeRecoversFromACrashAtEachStep stops a commit at each step, as a
// crash would, reopens the lake and checks that every row is there exactly
// once: the old rows if the crash came before the journal, the new ones
// after it.
func TestLakeRecoversFromACrashAtEachStep(t *testing.T) {
	errCrash := errors.New("simulated crash")
	defer func() { testHookCommit = func(string) error { return nil } }()
	for _, step := range []string{"before-journal", "after-journal", "after-renames"} {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			l, err := OpenLake(context.Background(), dir, LakeOptions{PartitionBy: "month"})
			if err != nil {
				t.Fatal(err)
			}
			st := StreamState{StreamID: "s", Identity: "{}", Cursor: time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC)}
			if err := lakeWindow(t, l, lA+",A,,,,,,,2024-01-05T00:00:00Z\n"+lB+",B old,,,,,,,2024-01-06T00:00:00Z\n"+lC+",C,,,,,,,2024-03-01T00:00:00Z\n", st); err != nil {
				t.Fatal(err)
			}
			testHookCommit = func(s string) error {
				if s == step {
					return errCrash
				}
				return nil
			}
			st2 := st
			st2.Pending = []extract.Window{{From: time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)}}
			err = lakeWindow(t, l, lB+",B new,,,,,,,2024-01-06T00:00:00Z\n"+lD+",D,,,,,,,2024-01-07T00:00:00Z\n", st2)
			if !errors.Is(err, errCrash) {
				t.Fatalf("commit returned %v, want the simulated crash", err)
			}
			l.Close()
			testHookCommit = func(string) error { return nil }

			l, err = OpenLake(context.Background(), dir, LakeOptions{PartitionBy: "month"})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			got := lakeRows(t, l)
			want := map[string]string{lA: "A", lB: "B new", lC: "C", lD: "D"}
			wantPending := 1
			if step == "before-journal" {
				want = map[string]string{lA: "A", lB: "B old", lC: "C"}
				wantPending = 0
			}
			if !maps.Equal(got, want) {
				t.Errorf("after recovery: %v, want %v", got, want)
			}
			rs, err := l.LoadState(context.Background(), "s", "{}")
			if err != nil || len(rs.Pending) != wantPending {
				t.Errorf("state after recovery: %+v (%v), want %d pending", rs, err, wantPending)
			}
			var leftovers []string
			_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				if err == nil && (strings.HasSuffix(p, ".tmp") || strings.HasSuffix(p, "journal.json")) {
					leftovers = append(leftovers, p)
				}
				return err
			})
			if len(leftovers) > 0 {
				t.Errorf("left over after recovery: %v", leftovers)
			}
		})
	}
}

func TestLakeRefusesAnotherPartitioningAndASecondWriter(t *testing.T) {
	dir := t.TempDir()
	l, err := OpenLake(context.Background(), dir, LakeOptions{PartitionBy: "day"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLake(context.Background(), dir, LakeOptions{PartitionBy: "day"}); !errors.As(err, new(*LockedError)) {
		t.Errorf("second writer: %v, want a *LockedError", err)
	}
	if err := lakeWindow(t, l, lA+",A,,,,,,,2024-01-05T00:00:00Z\n", StreamState{StreamID: "s"}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	_, err = OpenLake(context.Background(), dir, LakeOptions{PartitionBy: "month"})
	if err == nil || !strings.Contains(err.Error(), "partitioned by day") {
		t.Errorf("reopening with month: %v, want an error naming the lake's partitioning", err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "year=2024", "month=01", "day=05", "*.parquet"))
	if len(files) != 1 {
		t.Errorf("day partition files: %v", files)
	}
}

func TestLakeRefusesAFolderThatIsNotALake(t *testing.T) {
	dir := t.TempDir()
	mine := filepath.Join(dir, "report.parquet")
	if err := os.WriteFile(mine, []byte("not ours"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := OpenLake(context.Background(), dir, LakeOptions{})
	if err == nil || !strings.Contains(err.Error(), "not a leadlex-etl lake") {
		t.Fatalf("got %v, want a refusal", err)
	}
	if b, err := os.ReadFile(mine); err != nil || string(b) != "not ours" {
		t.Errorf("the user's file was touched: %q %v", b, err)
	}
	// A new folder, an empty one, and an existing lake all open.
	for _, d := range []string{filepath.Join(dir, "new"), t.TempDir()} {
		l, err := OpenLake(context.Background(), d, LakeOptions{})
		if err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		if err := lakeWindow(t, l, lA+",A,,,,,,,2024-01-05T00:00:00Z\n", StreamState{StreamID: "s"}); err != nil {
			t.Fatal(err)
		}
		l.Close()
		l, err = OpenLake(context.Background(), d, LakeOptions{})
		if err != nil {
			t.Fatalf("reopen %s: %v", d, err)
		}
		l.Close()
	}
}
