package load

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// shapeLake makes a lake partitioned by month with contacts in January and
// February 2024 and returns its folder and its data files (lake-relative).
func shapeLake(t *testing.T) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	l, err := OpenLake(context.Background(), dir, LakeOptions{PartitionBy: "month"})
	if err != nil {
		t.Fatal(err)
	}
	st := StreamState{StreamID: "s", Identity: "{}"}
	if err := lakeWindow(t, l, lA+",A,,,,,,,2024-01-05T00:00:00Z\n"+lB+",B,,,,,,,2024-01-06T00:00:00Z\n"+lC+",C,,,,,,,2024-02-01T00:00:00Z\n", st); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, dataFilesIn(t, dir)
}

// dataFilesIn lists the .parquet files under dir/contacts, lake-relative.
func dataFilesIn(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(dir, dataDir), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".parquet") {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// hiddenFiles lists the files under dir whose name starts with a dot.
func hiddenFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasPrefix(d.Name(), ".") {
			out = append(out, p)
		}
		return err
	})
	return out
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLakeRefusesFilesItDidNotWrite puts into a lake's data folder what
// users and other tools put there: a copy of January's rows in a
// zero-padded month=01 folder, an extra.parquet, January's rows under a
// name like the lake's in February's folder and in January's own, a data
// file that grew. Opening the lake to sync (before any API call) refuses
// each with an error that names the file and says how to fix it, and
// changes nothing; before, the lake took them for its data, kept duplicates,
// and failed every commit that touched them.
func TestLakeRefusesFilesItDidNotWrite(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, dir, jan string) string // returns the planted file, lake-relative
		want  string                                     // in the error
	}{
		{"a zero-padded folder", func(t *testing.T, dir, jan string) string {
			rel := "contacts/year=2024/month=01/" + filepath.Base(jan)
			copyFile(t, filepath.Join(dir, jan), filepath.Join(dir, rel))
			return rel
		}, "is not a partition folder the lake writes"},
		{"extra.parquet", func(t *testing.T, dir, jan string) string {
			rel := "contacts/year=2024/month=1/extra.parquet"
			copyFile(t, filepath.Join(dir, jan), filepath.Join(dir, rel))
			return rel
		}, "its name is not one the lake gives its files"},
		{"a lake-style name in the wrong partition", func(t *testing.T, dir, jan string) string {
			rel := "contacts/year=2024/month=2/part-00000099-0123456789ab.parquet"
			copyFile(t, filepath.Join(dir, jan), filepath.Join(dir, rel))
			return rel
		}, "does not name it"},
		{"a lake-style name in the right partition", func(t *testing.T, dir, jan string) string {
			rel := "contacts/year=2024/month=1/part-00000099-0123456789ab.parquet"
			copyFile(t, filepath.Join(dir, jan), filepath.Join(dir, rel))
			return rel
		}, "does not name it"},
		{"a data file that changed", func(t *testing.T, dir, jan string) string {
			f, err := os.OpenFile(filepath.Join(dir, jan), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString("more")
			f.Close()
			return jan
		}, "changed after leadlex-etl wrote it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, files := shapeLake(t)
			jan := files[slices.IndexFunc(files, func(f string) bool { return strings.Contains(f, "month=1/") })]
			planted := tc.plant(t, dir, jan)
			before := dataFilesIn(t, dir)
			state, _ := os.ReadFile(filepath.Join(dir, stateFile))
			l, err := OpenLake(context.Background(), dir, LakeOptions{})
			if err == nil {
				l.Close()
				t.Fatalf("the lake opened with %s in it", planted)
			}
			msg := err.Error()
			if !strings.Contains(msg, filepath.Join(dir, planted)) || !strings.Contains(msg, tc.want) || !strings.Contains(msg, "run again") {
				t.Errorf("error %q: want it to name %s, say %q and what to do", msg, planted, tc.want)
			}
			var fe *ForeignFileError
			if !errors.As(err, &fe) {
				t.Errorf("error %T, want a *ForeignFileError", err)
			}
			after, _ := os.ReadFile(filepath.Join(dir, stateFile))
			if !slices.Equal(dataFilesIn(t, dir), before) || string(after) != string(state) {
				t.Errorf("the refused open changed the lake")
			}
		})
	}
}

// TestLakeTakesItsPartitioningFromItsFiles edits partition_by in
// state.json from month to day: opening the lake refuses it, naming the
// setting, what the files say, and the fix; before, a refresh wrote every
// row again into day folders.
func TestLakeTakesItsPartitioningFromItsFiles(t *testing.T) {
	dir, _ := shapeLake(t)
	path := filepath.Join(dir, stateFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	st["partition_by"] = "day"
	b, _ = json.Marshal(st)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, opt := range []Partitioning{"", ByDay} {
		l, err := OpenLake(context.Background(), dir, LakeOptions{PartitionBy: opt})
		if err == nil {
			l.Close()
			t.Fatalf("--partition-by %q: the lake opened with partition_by edited", opt)
		}
		if msg := err.Error(); !strings.Contains(msg, `"partition_by": "day"`) || !strings.Contains(msg, "partitioned by month") || !strings.Contains(msg, `back to "month"`) {
			t.Errorf("--partition-by %q: error %q", opt, msg)
		}
	}
}

// TestLakeStateWithoutPartitioningTakesTheFiles opens a lake of day
// partitions whose state.json does not say how it is partitioned: it
// takes the files' partitioning, not the default.
func TestLakeStateWithoutPartitioningTakesTheFiles(t *testing.T) {
	dir := t.TempDir()
	l, err := OpenLake(context.Background(), dir, LakeOptions{PartitionBy: ByDay})
	if err != nil {
		t.Fatal(err)
	}
	if err := lakeWindow(t, l, lA+",A,,,,,,,2024-01-05T00:00:00Z\n", StreamState{StreamID: "s", Identity: "{}"}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	path := filepath.Join(dir, stateFile)
	b, _ := os.ReadFile(path)
	var st map[string]any
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	delete(st, "partition_by")
	b, _ = json.Marshal(st)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err = OpenLake(context.Background(), dir, LakeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.PartitionBy() != ByDay {
		t.Errorf("partitioning %s, want day, as the files are", l.PartitionBy())
	}
}

// TestLakeWithoutAManifestIsCheckedAndAdopted opens a lake whose state has
// no list of data files, as earlier versions wrote it: its own files are
// adopted, and a file of January's rows in February's folder, named like
// the lake's, is refused by what its rows say.
func TestLakeWithoutAManifestIsCheckedAndAdopted(t *testing.T) {
	dropManifest := func(t *testing.T, dir string) {
		path := filepath.Join(dir, stateFile)
		b, _ := os.ReadFile(path)
		var st map[string]any
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatal(err)
		}
		delete(st, "files")
		b, _ = json.Marshal(st)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dir, files := shapeLake(t)
	dropManifest(t, dir)
	rel := "contacts/year=2024/month=2/part-00000099-0123456789ab.parquet"
	copyFile(t, filepath.Join(dir, files[0]), filepath.Join(dir, rel))
	_, err := OpenLake(context.Background(), dir, LakeOptions{})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, rel)) || !strings.Contains(err.Error(), "outside its folder") {
		t.Fatalf("error %v, want %s refused for its rows", err, rel)
	}
	os.Remove(filepath.Join(dir, rel))
	l, err := OpenLake(context.Background(), dir, LakeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if len(l.state.Files) != len(files) {
		t.Errorf("adopted %v, want %v", l.state.Files, files)
	}
	if err := lakeWindow(t, l, lD+",D,,,,,,,2024-01-09T00:00:00Z\n", StreamState{StreamID: "s", Identity: "{}"}); err != nil {
		t.Fatal(err)
	}
	if got := lakeRows(t, l); len(got) != 4 {
		t.Errorf("%d contacts, want 4", len(got))
	}
}

// TestAFailedCommitLeavesNoTemporaryFiles fails commits before their
// journal, by a file planted in a partition they reach after writing
// others and by an error at the last step: the commit names the planted
// file, and nothing of the commit (no hidden temporary file) is left.
func TestAFailedCommitLeavesNoTemporaryFiles(t *testing.T) {
	st := StreamState{StreamID: "s", Identity: "{}"}
	window := lA + ",A 2,,,,,,,2024-01-05T00:00:00Z\n" + lC + ",C 2,,,,,,,2024-02-01T00:00:00Z\n" + lD + ",D,,,,,,,2024-03-01T00:00:00Z\n"
	t.Run("a file planted after the lake was opened", func(t *testing.T) {
		dir, files := shapeLake(t)
		l, err := OpenLake(context.Background(), dir, LakeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		rel := "contacts/year=2024/month=2/extra.parquet"
		copyFile(t, filepath.Join(dir, files[0]), filepath.Join(dir, rel))
		err = lakeWindow(t, l, window, st)
		if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, rel)) {
			t.Errorf("commit: %v, want the planted file named", err)
		}
		if left := hiddenFiles(t, dir); len(left) > 0 {
			t.Errorf("the failed commit left %v", left)
		}
	})
	t.Run("an error before the journal", func(t *testing.T) {
		defer func() { testHookCommit = func(string) error { return nil } }()
		dir, _ := shapeLake(t)
		l, err := OpenLake(context.Background(), dir, LakeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		errStop := errors.New("stop")
		testHookCommit = func(s string) error {
			if s == "before-journal" {
				return errStop
			}
			return nil
		}
		if err := lakeWindow(t, l, window, st); !errors.Is(err, errStop) {
			t.Fatalf("commit: %v", err)
		}
		if left := hiddenFiles(t, dir); len(left) > 0 {
			t.Errorf("the failed commit left %v", left)
		}
		testHookCommit = func(string) error { return nil }
		if err := lakeWindow(t, l, window, st); err != nil {
			t.Fatal(err)
		}
		if got := lakeRows(t, l); len(got) != 4 || got[lA] != "A 2" {
			t.Errorf("after the next commit: %v", got)
		}
	})
}

// TestLakeRepairsDuplicatesAnEarlierVersionLeft opens a lake of an earlier
// version that holds an id twice, in January and in March (a contact whose
// created_at moved, which such versions kept twice): the next window with
// the id leaves one row of it, wherever the window puts it.
func TestLakeRepairsDuplicatesAnEarlierVersionLeft(t *testing.T) {
	for _, at := range []string{"2024-01-05", "2024-03-07", "2024-05-09"} {
		t.Run(at, func(t *testing.T) {
			dir := t.TempDir()
			st := StreamState{StreamID: "s", Identity: "{}"}
			other := filepath.Join(t.TempDir(), "other")
			for _, w := range []struct{ dir, csv string }{
				{dir, lA + ",A in January,,,,,,,2024-01-05T00:00:00Z\n" + lB + ",B,,,,,,,2024-01-06T00:00:00Z\n"},
				{other, lA + ",A in March,,,,,,,2024-03-07T00:00:00Z\n"},
			} {
				l, err := OpenLake(context.Background(), w.dir, LakeOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if err := lakeWindow(t, l, w.csv, st); err != nil {
					t.Fatal(err)
				}
				l.Close()
			}
			march := dataFilesIn(t, other)[0]
			copyFile(t, filepath.Join(other, march), filepath.Join(dir, march))
			path := filepath.Join(dir, stateFile)
			b, _ := os.ReadFile(path)
			var sj map[string]any
			if err := json.Unmarshal(b, &sj); err != nil {
				t.Fatal(err)
			}
			delete(sj, "files")
			b, _ = json.Marshal(sj)
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			l, err := OpenLake(context.Background(), dir, LakeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if err := lakeWindow(t, l, lA+",A again,,,,,,,"+at+"T00:00:00Z\n", st); err != nil {
				t.Fatal(err)
			}
			if got := lakeRows(t, l); len(got) != 2 || got[lA] != "A again" {
				t.Errorf("%v, want A once, and B", got)
			}
		})
	}
}

// TestIDIndex checks the lake's index of ids as commits change files: a
// hash names the files that hold it, and no file a commit removed, before
// and after the entries of removed files are dropped and their numbers
// given to new files.
func TestIDIndex(t *testing.T) {
	x := &idIndex{num: map[string]uint64{}}
	top := func(b, low uint64) uint64 { return b<<(64-bucketBits) | low<<8 }
	h1, h2, h3 := top(1, 1), top(1, 2), top(7, 1)
	update := func(removed []string, added map[string][]uint64) {
		t.Helper()
		if err := x.update(removed, added); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string, h uint64, want ...string) {
		t.Helper()
		got := x.holders(nil, h)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: holders of %x: %v, want %v", when, h, got, want)
		}
	}
	var many []uint64
	for i := range uint64(40) {
		many = append(many, top(100+i, 5))
	}
	update(nil, map[string][]uint64{"a": {h1, h2}, "b": {h3, h1}, "many": many})
	check("first", h1, "a", "b")
	check("first", h2, "a")
	check("first", h3, "b")
	check("first", top(1, 3))
	check("first", h1|1, "a", "b") // bits an entry does not keep: a false match
	update([]string{"a"}, map[string][]uint64{"c": {h2}})
	if x.dead != 2 {
		t.Fatalf("%d dead entries, want a's 2, kept while they are few", x.dead)
	}
	check("a replaced by c", h1, "b")
	check("a replaced by c", h2, "c")
	update([]string{"many"}, map[string][]uint64{"d": {h3}})
	if x.dead != 0 || x.live != 4 || len(x.free) != 2 {
		t.Errorf("after many went: dead %d, live %d, free %v; want 0, 4, two numbers", x.dead, x.live, x.free)
	}
	check("many removed", h1, "b")
	check("many removed", h3, "b", "d")
	check("many removed", many[0])
	update([]string{"b"}, map[string][]uint64{"e": {h1}, "f": {many[0]}})
	check("b replaced by e and f in freed numbers", h1, "e")
	check("b replaced by e and f in freed numbers", many[0], "f")
	check("b replaced by e and f in freed numbers", h3, "d")
}
