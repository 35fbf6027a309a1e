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
	"time"
)

// janFile returns the lake-relative path of the January data file of a
// shapeLake.
func janFile(files []string) string {
	return files[slices.IndexFunc(files, func(f string) bool { return strings.Contains(f, "month=1/") })]
}

// openLakeRefused opens the lake in dir to sync, which must fail, and
// returns the error; the lake's state must be what it was.
func openLakeRefused(t *testing.T, dir string) error {
	t.Helper()
	state, _ := os.ReadFile(filepath.Join(dir, stateFile))
	l, err := OpenLake(context.Background(), dir, LakeOptions{})
	if err == nil {
		n := len(l.state.Files)
		l.Close()
		t.Fatalf("the lake opened (with %d data files in its list)", n)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, stateFile)); string(after) != string(state) {
		t.Errorf("the refused open changed %s", stateFile)
	}
	return err
}

// TestLakeRefusesSymbolicLinksInItsDataFolder replaces a partition folder,
// a data file and the data folder itself by symbolic links to their
// contents moved elsewhere (a user making room on a disk): opening the lake
// to sync refuses each before any API call, naming the link and how to put
// the contents back. Before, the sync took the linked folder's files for
// gone, dropped them from the lake's list and said complete, and every
// later refresh failed with "path escapes from parent". Doing what the
// error says makes the lake open with every contact.
func TestLakeRefusesSymbolicLinksInItsDataFolder(t *testing.T) {
	for _, tc := range []struct {
		name string
		link func(files []string) string // lake-relative
	}{
		{"a partition folder", func(files []string) string { return filepath.Dir(janFile(files)) }},
		{"a data file", janFile},
		{"the data folder", func([]string) string { return dataDir }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, files := shapeLake(t)
			rel := tc.link(files)
			link := filepath.Join(dir, rel)
			moved := filepath.Join(t.TempDir(), "moved")
			if err := os.Rename(link, moved); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(moved, link); err != nil {
				t.Fatal(err)
			}
			err := openLakeRefused(t, dir)
			var le *LinkError
			msg := err.Error()
			if !errors.As(err, &le) || !strings.Contains(msg, link) || !strings.Contains(msg, "symbolic link") ||
				!strings.Contains(msg, "replace the link") || !strings.Contains(msg, "run again") {
				t.Fatalf("error %q (%T): want a *LinkError naming %s and how to replace the link", msg, err, link)
			}
			// The fix the error gives.
			if err := os.Remove(link); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(moved, link); err != nil {
				t.Fatal(err)
			}
			l, err := OpenLake(context.Background(), dir, LakeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if got := lakeRows(t, l); len(got) != 3 {
				t.Errorf("%d contacts after the link was replaced, want 3", len(got))
			}
		})
	}
}

// corruptInPlace flips a byte in the middle of the file at path, keeping
// its size, as a disk or a careless edit does; its modification time moves
// on, as every write moves it.
func corruptInPlace(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(b[len(b)/2:len(b)/2+1], int64(len(b)/2)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	later := time.Now().Add(time.Minute) // past the file system's clock granularity
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
}

// TestLakeRefusesADataFileChangedAtTheSameSize corrupts a data file in
// place, keeping its size: opening the lake to sync refuses it before any
// API call, saying what to do. Before, the check compared sizes only: a
// call was spent, then a raw Parquet error, and later runs said complete
// while the file could not be read. A file whose modification time changed
// while its content did not (copied back from a backup, touched) opens.
func TestLakeRefusesADataFileChangedAtTheSameSize(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before func(t *testing.T, dir string) // run on the lake before the damage
	}{
		{"a lake of this version", func(*testing.T, string) {}},
		{"a list of files with sizes only (an earlier version)", func(t *testing.T, dir string) {
			// Opening once records what the list lacks.
			editState(t, dir, func(st map[string]any) {
				for _, f := range st["files"].(map[string]any) {
					f := f.(map[string]any)
					for k := range f {
						if k != "size" {
							delete(f, k)
						}
					}
				}
			})
			l, err := OpenLake(context.Background(), dir, LakeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			l.Close()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, files := shapeLake(t)
			tc.before(t, dir)
			jan := filepath.Join(dir, janFile(files))
			backup := filepath.Join(t.TempDir(), "backup.parquet")
			copyFile(t, jan, backup)
			corruptInPlace(t, jan)
			err := openLakeRefused(t, dir)
			var fe *ForeignFileError
			msg := err.Error()
			if !errors.As(err, &fe) || !strings.Contains(msg, jan) || !strings.Contains(msg, "changed after leadlex-etl wrote it") ||
				!strings.Contains(msg, "restore it from a backup") {
				t.Fatalf("error %q (%T): want a *ForeignFileError naming %s and what to do", msg, err, jan)
			}
			// Restored from a backup by a copy: same content, a new time.
			copyFile(t, backup, jan)
			later := time.Now().Add(2 * time.Minute)
			if err := os.Chtimes(jan, later, later); err != nil {
				t.Fatal(err)
			}
			l, err := OpenLake(context.Background(), dir, LakeOptions{})
			if err != nil {
				t.Fatalf("the lake with the file restored: %v", err)
			}
			defer l.Close()
			if got := lakeRows(t, l); len(got) != 3 {
				t.Errorf("%d contacts, want 3", len(got))
			}
			if err := lakeWindow(t, l, lD+",D,,,,,,,2024-01-09T00:00:00Z\n", StreamState{StreamID: "s", Identity: "{}"}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// editState rewrites the lake's state.json through edit.
func editState(t *testing.T, dir string, edit func(map[string]any)) {
	t.Helper()
	path := filepath.Join(dir, stateFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	edit(st)
	b, _ = json.Marshal(st)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLakeSaysWhatToDoWithADataFileItCannotRead damages the first page of a
// data file and puts its modification time back, as a failing disk does
// (the check before any call cannot see it without reading every file): a
// commit that reads the file fails, naming it and what to do, where it gave
// a raw Parquet error.
func TestLakeSaysWhatToDoWithADataFileItCannotRead(t *testing.T) {
	dir, files := shapeLake(t)
	jan := filepath.Join(dir, janFile(files))
	fi, err := os.Stat(jan)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(jan, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 64), 4); err != nil { // the first page's header, after the magic
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chtimes(jan, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	l, err := OpenLake(context.Background(), dir, LakeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	err = lakeWindow(t, l, lD+",D,,,,,,,2024-01-09T00:00:00Z\n", StreamState{StreamID: "s", Identity: "{}"})
	if err == nil || !strings.Contains(err.Error(), jan) || !strings.Contains(err.Error(), "restore it from a backup, or remove it") {
		t.Fatalf("commit into the partition of an unreadable file: %v, want an error naming %s and what to do", err, jan)
	}
}
