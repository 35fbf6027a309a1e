package load

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/transform"
	"github.com/leadlex/leadlex-etl/schemas"
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
	_, err = l.Commit(ctx, info, rd.Rejects(), WindowStats{}, st)
	return err
}

// lakeRows returns id -> full_name of every row in the lake's data files.
func lakeRows(t *testing.T, l *Lake) map[string]string {
	t.Helper()
	files, err := l.listFiles(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range files {
		batches, err := l.readDataFile(f.rel)
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
	for _, step := range []string{"before-journal", "after-journal", "after-a-rename", "after-renames"} {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			l, err := OpenLake(context.Background(), dir, LakeOptions{PartitionBy: "month"})
			if err != nil {
				t.Fatal(err)
			}
			st := StreamState{StreamID: "s", Identity: "{}", Coverage: Coverage{{To: time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC), VerifiedAt: time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC)}}}
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
			testHookCommit = func(string) error { return nil }
			if step == "after-a-rename" || step == "after-renames" {
				// A failure while carrying out the journal (not a crash: the
				// process goes on) leaves the lake broken for this process:
				// another commit would write over the journal half done.
				err := lakeWindow(t, l, lA+",A again,,,,,,,2024-01-05T00:00:00Z\n", st2)
				if err == nil || !strings.Contains(err.Error(), "could not be completed") {
					t.Fatalf("a commit after the failed one returned %v, want the lake broken", err)
				}
			}
			l.Close()

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
	var conflict *ConflictError
	if !errors.As(err, &conflict) || !strings.Contains(err.Error(), "partitioning day, not month") {
		t.Errorf("reopening with month: %v, want a *ConflictError naming the lake's partitioning", err)
	}
	// Without a partitioning the lake keeps its own.
	l, err = OpenLake(context.Background(), dir, LakeOptions{})
	if err != nil || l.PartitionBy() != ByDay {
		t.Fatalf("reopening without a partitioning: %v", err)
	}
	l.Close()
	files, _ := filepath.Glob(filepath.Join(dir, "contacts", "year=2024", "month=1", "day=5", "*.parquet"))
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

// TestLakeRefusesAJournalThatLeavesTheLake plants journals a copied lake
// could carry, naming files outside the lake, and checks that opening the
// lake refuses them and touches nothing.
func TestLakeRefusesAJournalThatLeavesTheLake(t *testing.T) {
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(outside, "victim.txt")
	victimParquet := filepath.Join(outside, "part-00000001-aaaaaaaaaaaa.parquet")
	dir := filepath.Join(base, "lake")
	l, err := OpenLake(context.Background(), dir, LakeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := lakeWindow(t, l, lA+",A,,,,,,,2024-01-05T00:00:00Z\n", StreamState{StreamID: "s"}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	files, _ := filepath.Glob(filepath.Join(dir, "contacts", "year=2024", "month=1", "*.parquet"))
	if len(files) != 1 {
		t.Fatalf("data files %v", files)
	}
	own, _ := filepath.Rel(dir, files[0])
	own = filepath.ToSlash(own)
	// A symlinked partition folder pointing outside.
	if err := os.Symlink(outside, filepath.Join(dir, "contacts", "year=2023")); err != nil {
		t.Fatal(err)
	}
	state, err := os.ReadFile(filepath.Join(dir, "_leadlex", "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		renames string
		deletes string
	}{
		{"dot-dot delete", `[]`, `["../outside/victim.txt"]`},
		{"absolute delete", `[]`, `["` + victim + `"]`},
		{"delete through a symlinked folder", `[]`, `["contacts/year=2023/part-00000001-aaaaaaaaaaaa.parquet"]`},
		{"delete of the state", `[]`, `["_leadlex/state.json"]`},
		{"delete of a non-data file", `[]`, `["contacts/year=2024/month=1/notes.txt"]`},
		{"rename out of the lake", `[["` + own + `", "../outside/stolen.parquet"]]`, `[]`},
		{"rename over a file outside", `[["contacts/year=2024/month=1/.x.tmp", "../outside/victim.txt"]]`, `[]`},
		{"rename of a data file to another", `[["` + own + `", "contacts/year=2024/month=2/part-00000009-bbbbbbbbbbbb.parquet"]]`, `[]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, f := range []string{victim, victimParquet} {
				if err := os.WriteFile(f, []byte("keep me"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			j := `{"renames": ` + tc.renames + `, "deletes": ` + tc.deletes + `, "state": ` + string(state) + `}`
			if err := os.WriteFile(filepath.Join(dir, "_leadlex", "journal.json"), []byte(j), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := OpenLake(context.Background(), dir, LakeOptions{})
			var ue *UntrustedError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), "journal.json") {
				t.Errorf("open: %v, want an *UntrustedError naming the journal", err)
			}
			for _, f := range []string{victim, victimParquet, files[0]} {
				if _, err := os.Stat(f); err != nil {
					t.Errorf("%s is gone: %v", f, err)
				}
			}
		})
	}
	// Without the journal the symlinked folder is refused (its files
	// are not the lake's, and readers would follow it); without it, the
	// lake opens.
	if err := os.Remove(filepath.Join(dir, "_leadlex", "journal.json")); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLake(context.Background(), dir, LakeOptions{}); !errors.As(err, new(*LinkError)) {
		t.Fatalf("open with a symlinked partition folder: %v, want a *LinkError", err)
	}
	if err := os.Remove(filepath.Join(dir, "contacts", "year=2023")); err != nil {
		t.Fatal(err)
	}
	l, err = OpenLake(context.Background(), dir, LakeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := lakeRows(t, l); len(got) != 1 {
		t.Errorf("rows %v", got)
	}
}

// makeFirstLayout rewrites a lake of the current layout into the first one:
// data files at the top with zero-padded partition values, kinds of columns
// stored as numbers, format 1.
func makeFirstLayout(t *testing.T, dir string) []string {
	t.Helper()
	var moved []string
	err := filepath.WalkDir(filepath.Join(dir, "contacts"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(filepath.Join(dir, "contacts"), p)
		parts := strings.Split(filepath.ToSlash(filepath.Dir(rel)), "/")
		for i, part := range parts {
			k, v, _ := strings.Cut(part, "=")
			n, _ := strconv.Atoi(v)
			if k == "year" {
				parts[i] = fmt.Sprintf("%s=%04d", k, n)
			} else {
				parts[i] = fmt.Sprintf("%s=%02d", k, n)
			}
		}
		to := filepath.Join(dir, filepath.FromSlash(strings.Join(parts, "/")), d.Name())
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		moved = append(moved, filepath.ToSlash(strings.Join(parts, "/"))+"/"+d.Name())
		return os.Rename(p, to)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "contacts")); err != nil {
		t.Fatal(err)
	}
	sp := filepath.Join(dir, "_leadlex", "state.json")
	b, err := os.ReadFile(sp)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	st["format"] = 1
	for _, c := range st["columns"].([]any) {
		m := c.(map[string]any)
		k, err := schemas.ParseKind(m["kind"].(string))
		if err != nil {
			t.Fatal(err)
		}
		m["kind"] = int(k)
	}
	if b, err = json.Marshal(st); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return moved
}

// TestLakeOfTheFirstLayoutIsConverted opens a lake of the first layout,
// crashing the conversion after one file moved, then again, and checks that
// the lake ends in the current layout with every row once.
func TestLakeOfTheFirstLayoutIsConverted(t *testing.T) {
	defer func() { testHookCommit = func(string) error { return nil } }()
	dir := t.TempDir()
	l, err := OpenLake(context.Background(), dir, LakeOptions{PartitionBy: ByDay, TargetFileBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	st := StreamState{StreamID: "s", Identity: "{}", Coverage: Coverage{{To: time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC), VerifiedAt: time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC), Rows: 4}}}
	csv := lA + ",A,,,,,,,2024-01-05T00:00:00Z\n" + lB + ",B,,,,,,,2024-01-06T00:00:00Z\n" +
		lC + ",C,,,,,,,2024-03-01T00:00:00Z\n" + lD + ",D,,,,,,,2024-03-01T00:00:00Z\n"
	if err := lakeWindow(t, l, csv, st); err != nil {
		t.Fatal(err)
	}
	l.Close()
	old := makeFirstLayout(t, dir)
	if len(old) != 3 || !strings.HasPrefix(old[0], "year=2024/month=01/day=05/") {
		t.Fatalf("first-layout files %v", old)
	}
	errCrash := errors.New("simulated crash")
	for _, step := range []string{"after-a-rename", "after-renames", ""} {
		testHookCommit = func(s string) error {
			if s == step {
				return errCrash
			}
			return nil
		}
		l, err = OpenLake(context.Background(), dir, LakeOptions{})
		if step != "" {
			if !errors.Is(err, errCrash) {
				t.Fatalf("crash at %s: open returned %v", step, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	defer l.Close()
	if got := lakeRows(t, l); !maps.Equal(got, map[string]string{lA: "A", lB: "B", lC: "C", lD: "D"}) {
		t.Errorf("rows after conversion: %v", got)
	}
	if l.state.Format != lakeFormat || l.PartitionBy() != ByDay {
		t.Errorf("state format %d, partitioning %s", l.state.Format, l.PartitionBy())
	}
	got, err := l.LoadState(context.Background(), "s", "{}")
	if err != nil || !reflect.DeepEqual(got.Coverage, st.Coverage) {
		t.Errorf("stream state after conversion: %+v (%v)", got, err)
	}
	var left []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		rel, _ := filepath.Rel(dir, p)
		if err == nil && rel != "." && !strings.HasPrefix(rel, "contacts") && !strings.HasPrefix(rel, "_leadlex") {
			left = append(left, rel)
		}
		return err
	})
	if len(left) > 0 {
		t.Errorf("left outside contacts/ and _leadlex/: %v", left)
	}
	if _, err := os.Stat(filepath.Join(dir, "contacts", "year=2024", "month=3", "day=1")); err != nil {
		t.Errorf("unpadded partition folder: %v", err)
	}
	// The columns' kinds read back by name.
	b, _ := os.ReadFile(filepath.Join(dir, "_leadlex", "state.json"))
	if !strings.Contains(string(b), `"kind": "uuid"`) {
		t.Errorf("state.json does not store kinds by name:\n%s", b)
	}
}

// TestLakeOldCursorReadsAsCoverage reads a state.json stream of the versions
// that kept only a cursor.
func TestLakeOldCursorReadsAsCoverage(t *testing.T) {
	dir := t.TempDir()
	state := `{"format": 2, "partition_by": "month", "columns": [], "seq": 0, "windows": 0,
		"streams": {"old": {"identity": "{}", "cursor": "2025-05-01T00:00:00Z", "updated_at": "2025-05-01T00:00:01Z"}}}`
	if err := os.MkdirAll(filepath.Join(dir, "_leadlex"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "_leadlex", "state.json"), []byte(state), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := OpenLake(context.Background(), dir, LakeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	st, err := l.LoadState(context.Background(), "old", "{}")
	if err != nil {
		t.Fatal(err)
	}
	want := Coverage{{To: time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC), VerifiedAt: time.Date(2025, 5, 1, 0, 0, 1, 0, time.UTC)}}
	if !reflect.DeepEqual(st.Coverage, want) {
		t.Errorf("coverage %v, want %v", st.Coverage, want)
	}
}
