package load_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leadlex/leadlex-etl/internal/load"
	"github.com/leadlex/leadlex-etl/internal/transform"
)

// tryWindow commits csv (header included) as one window and returns the
// commit's error.
func tryWindow(t *testing.T, db *load.DuckDB, csv, reqID string, st load.StreamState) error {
	t.Helper()
	ctx := context.Background()
	rd, err := transform.NewReader(strings.NewReader(csv), transform.Options{RequestID: reqID})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Release()
	info := load.WindowInfo{StreamID: st.StreamID, RunID: "run1", RequestID: reqID, LoadedAt: time.Now()}
	if err := db.Begin(ctx, info, rd.Columns()); err != nil {
		t.Fatal(err)
	}
	for rd.Next() {
		if err := db.Write(ctx, rd.RecordBatch()); err != nil {
			t.Fatal(err)
		}
	}
	if err := rd.Err(); err != nil {
		t.Fatal(err)
	}
	_, err = db.Commit(ctx, info, nil, load.WindowStats{Rows: rd.Rows(), Calls: 1}, st)
	return err
}

// fileCounts reads, read-only, how many contacts and window records the
// DuckDB file at path holds.
func fileCounts(t *testing.T, path string) (contacts, windows int) {
	t.Helper()
	db, err := load.OpenDuckDBReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow(`SELECT (SELECT count(*) FROM contacts), (SELECT count(*) FROM _leadlex_windows)`).Scan(&contacts, &windows); err != nil {
		t.Fatal(err)
	}
	return contacts, windows
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestReopenRefusesAFileChangedBetweenCommits changes the DuckDB file while
// the sink has it closed between two windows (as between two downloads,
// or during a wait for the rate limit): a backup restored over it (by mv,
// or copied into it), its tags column retyped, the file moved away. The
// next commit refuses, with an error naming what changed and what to do,
// before anything is written: the file keeps what it held, and no new
// file appears where one was moved away.
func TestReopenRefusesAFileChangedBetweenCommits(t *testing.T) {
	st := load.StreamState{StreamID: "s", Identity: "{}"}
	rowA := header + idA + ",A,,,,,,\"a,b\",2024-01-01T00:00:00Z\n"
	rowB := header + idB + ",B,,,,,,\"c\",2024-01-02T00:00:00Z\n"
	rowC := header + idC + ",C,,,,,,\"d\",2024-01-03T00:00:00Z\n"
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, path, backup string)
		check  func(t *testing.T, err error, path string)
	}{
		{"backup restored by mv", func(t *testing.T, path, backup string) {
			copyFile(t, backup, path+".new")
			if err := os.Rename(path+".new", path); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, err error, path string) {
			var fc *load.FileChangedError
			if !errors.As(err, &fc) || !strings.Contains(err.Error(), "replaced") || !strings.Contains(err.Error(), "sync again") {
				t.Fatalf("commit after the file was replaced: %v, want a *FileChangedError saying it was replaced and to sync again", err)
			}
			if c, w := fileCounts(t, path); c != 1 || w != 1 {
				t.Errorf("the restored file holds %d contacts and %d windows, want the backup's 1 and 1: the sync wrote into it", c, w)
			}
		}},
		{"backup copied into the file", func(t *testing.T, path, backup string) {
			copyFile(t, backup, path) // same inode, other content
		}, func(t *testing.T, err error, path string) {
			var fc *load.FileChangedError
			if !errors.As(err, &fc) || !strings.Contains(err.Error(), "last committed") || !strings.Contains(err.Error(), "sync again") {
				t.Fatalf("commit after a backup was copied into the file: %v, want a *FileChangedError saying it lacks what the sync committed", err)
			}
			if c, w := fileCounts(t, path); c != 1 || w != 1 {
				t.Errorf("the restored file holds %d contacts and %d windows, want the backup's 1 and 1: the sync wrote into it", c, w)
			}
		}},
		{"tags retyped", func(t *testing.T, path, _ string) {
			handEdit(t, path, `ALTER TABLE contacts ALTER tags TYPE VARCHAR`)
		}, func(t *testing.T, err error, path string) {
			var se *load.ShapeError
			if !errors.As(err, &se) || !strings.Contains(err.Error(), "contacts.tags is VARCHAR") {
				t.Fatalf("commit after tags was retyped: %v, want a *ShapeError naming contacts.tags", err)
			}
			if c, _ := fileCounts(t, path); c != 2 {
				t.Errorf("the file holds %d contacts, want the 2 committed before the change", c)
			}
			if typ := columnType(t, path, "contacts", "tags"); typ != "VARCHAR" {
				t.Errorf("tags is %s after the refused commit", typ)
			}
		}},
		{"file moved away", func(t *testing.T, path, _ string) {
			if err := os.Rename(path, path+".moved"); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, err error, path string) {
			var fc *load.FileChangedError
			if !errors.As(err, &fc) || !strings.Contains(err.Error(), "gone") || !strings.Contains(err.Error(), "put it back") {
				t.Fatalf("commit after the file was moved away: %v, want a *FileChangedError saying it is gone and to put it back", err)
			}
			if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a file was created where the DuckDB file was moved away from (%v)", err)
			}
			if c, w := fileCounts(t, path+".moved"); c != 2 || w != 2 {
				t.Errorf("the moved file holds %d contacts and %d windows, want 2 and 2", c, w)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "w.duckdb")
			db := open(t, path)
			window(t, db, rowA, "req1", st, false)
			db.CloseIdle()
			backup := path + ".backup"
			copyFile(t, path, backup)
			window(t, db, rowB, "req2", st, false)
			db.CloseIdle()
			tc.change(t, path, backup)
			err := tryWindow(t, db, rowC, "req3", st)
			// Every later use of the file refuses too.
			if err2 := db.FinishRun(context.Background(), load.Run{RunID: "run1", StreamID: "s", Status: "ok", FinishedAt: time.Now()}); err2 == nil {
				t.Error("FinishRun wrote into the changed file")
			}
			db.Close()
			tc.check(t, err, path)
		})
	}
}

// TestReopenAcceptsWhatReadersDo opens the file between two commits as
// analysts do (reading it; adding a table and a column of their own): the
// next commit goes on.
func TestReopenAcceptsWhatReadersDo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.duckdb")
	st := load.StreamState{StreamID: "s", Identity: "{}"}
	db := open(t, path)
	window(t, db, header+idA+",A,,,,,,,2024-01-01T00:00:00Z\n", "req1", st, false)
	db.CloseIdle()
	fileCounts(t, path)
	handEdit(t, path, `CREATE TABLE my_notes (note VARCHAR)`, `ALTER TABLE contacts ADD COLUMN score INTEGER`, `UPDATE contacts SET score = 7`)
	window(t, db, header+idB+",B,,,,,,,2024-01-02T00:00:00Z\n", "req2", st, false)
	db.CloseIdle()
	fileCounts(t, path)
	window(t, db, header+idA+",A again,,,,,,,2024-01-01T00:00:00Z\n", "req3", st, false)
	var score int
	if err := db.DB().QueryRow(`SELECT score FROM contacts WHERE id = '` + idA + `'`).Scan(&score); err != nil || score != 7 {
		t.Errorf("the user's column added between commits: score %d (%v), want 7 kept by the upsert", score, err)
	}
	if got := names(t, db); len(got) != 2 {
		t.Errorf("got %v", got)
	}
}
