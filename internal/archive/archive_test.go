package archive

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leadlex/leadlex-etl/internal/extract"
)

const stream = "0123456789abcdef"

var t0 = time.Date(2026, 5, 14, 9, 30, 0, 123456789, time.UTC)

func meta(loadedAt time.Time, reqID string, seq int) Meta {
	return Meta{
		StreamID: stream, Identity: `{"base_url":"http://127.0.0.1:1"}`, RunID: "run-1", RunStartedAt: t0.Add(-time.Minute),
		RunUntil: t0, Seq: seq, Window: extract.Window{To: t0}, Query: extract.Query{Limit: 1000, CreatedBefore: t0},
		RequestID: reqID, ReceivedAt: loadedAt.Add(-time.Second), LoadedAt: loadedAt, Rows: 2, Calls: 1,
		Pending: []extract.Window{{From: t0.Add(-time.Hour), To: t0}}, Deletes: []extract.Window{{To: t0.Add(-time.Hour)}},
		RefreshMinAge: time.Hour, StateAfter: "abc",
	}
}

func open(t *testing.T, dir string) *Archive {
	t.Helper()
	a, err := Open(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// put archives body as one committed window.
func put(t *testing.T, a *Archive, m Meta, body string) Entry {
	t.Helper()
	att, err := a.Begin(m.StreamID)
	if err != nil {
		t.Fatal(err)
	}
	// In small writes, as a transform's reads would come.
	for i := 0; i < len(body); i += 7 {
		if _, err := att.Write([]byte(body[i:min(i+7, len(body))])); err != nil {
			t.Fatal(err)
		}
	}
	e, err := att.Commit(m)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func readBody(a *Archive, e Entry) (string, error) {
	b, err := a.Open(e)
	if err != nil {
		return "", err
	}
	defer b.Close()
	out, err := io.ReadAll(b)
	return string(out), err
}

func TestWriteReadBack(t *testing.T) {
	a := open(t, t.TempDir())
	body := "id,created_at\r\n" + strings.Repeat("123e4567-e89b-12d3-a456-426614174000,2026-04-15T09:00:00Z\r\n", 2)
	// Committed out of order on purpose: entries come back by commit time.
	later := put(t, a, meta(t0.Add(time.Second), "req_b", 2), body)
	first := put(t, a, meta(t0, "req_a", 1), body)
	nextDay := put(t, a, meta(t0.Add(24*time.Hour), "req_c", 3), body)
	es, err := a.Entries(stream)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 3 || es[0].Path != first.Path || es[1].Path != later.Path || es[2].Path != nextDay.Path {
		t.Fatalf("entries %+v", es)
	}
	want := meta(t0, "req_a", 1)
	sum := sha256.Sum256([]byte(body))
	want.Bytes, want.BodySHA256 = int64(len(body)), hex.EncodeToString(sum[:])
	got := es[0].Meta
	if gj, wj := mustJSON(t, got), mustJSON(t, want); gj != wj {
		t.Errorf("metadata read back:\n got  %s\n want %s", gj, wj)
	}
	if es[0].Path != stream+"/20260514/"+"1778751000123456-req_a.csv.zst" {
		t.Errorf("path %s", es[0].Path)
	}
	for _, e := range es {
		if got, err := readBody(a, e); err != nil || got != body {
			t.Errorf("%s: body %q, %v", e.Path, got, err)
		}
	}
	if l, ok, err := a.Latest(stream); err != nil || !ok || l.Path != nextDay.Path {
		t.Errorf("latest %v %v %v", l.Path, ok, err)
	}
	streams, err := a.Streams()
	if err != nil || len(streams) != 1 || streams[0].ID != stream || streams[0].Windows != 3 {
		t.Errorf("streams %+v %v", streams, err)
	}
	// No temporary file is left, and removing an entry removes both files.
	tmps, _ := filepath.Glob(filepath.Join(a.Dir(), stream, tempPrefix+"*"))
	if len(tmps) > 0 {
		t.Errorf("temporary files left: %v", tmps)
	}
	if err := a.Remove(later); err != nil {
		t.Fatal(err)
	}
	if es, _ := a.Entries(stream); len(es) != 2 {
		t.Errorf("%d entries after a removal", len(es))
	}
	if _, err := os.Stat(filepath.Join(a.Dir(), later.Path)); err == nil {
		t.Error("the removed entry's body is still there")
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAbortLeavesNothing(t *testing.T) {
	a := open(t, t.TempDir())
	att, err := a.Begin(stream)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = att.Write([]byte("id,created_at\r\n"))
	att.Abort()
	att.Abort() // twice is harmless
	files, _ := filepath.Glob(filepath.Join(a.Dir(), stream, "*"))
	hidden, _ := filepath.Glob(filepath.Join(a.Dir(), stream, ".*"))
	if len(files)+len(hidden) > 0 {
		t.Errorf("an aborted attempt left %v %v", files, hidden)
	}
	// The encoder it used serves the next attempt.
	e := put(t, a, meta(t0, "req_a", 1), "id,created_at\r\n")
	if got, err := readBody(a, e); err != nil || got != "id,created_at\r\n" {
		t.Errorf("body %q %v", got, err)
	}
}

func TestRequestIDNeverAPath(t *testing.T) {
	a := open(t, t.TempDir())
	for _, id := range []string{"../../../etc/passwd", "a/b", "invalid-request-id-0123", ".hidden", strings.Repeat("x", 300), "req id with spaces", "ok_1.2-3"} {
		e := put(t, a, meta(t0, id, 1), "id,created_at\r\n")
		dir, name := filepath.Split(e.Path)
		if dir != stream+"/20260514/" || strings.ContainsAny(name, "/\\ ") || strings.HasPrefix(name, ".") || len(name) > 120 {
			t.Errorf("request id %q gave path %q", id, e.Path)
		}
		if err := a.Remove(e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Begin("../x"); err == nil {
		t.Error("a stream id that is a path was accepted")
	}
}

func TestCorruptionIsNamed(t *testing.T) {
	body := "id,created_at\r\n" + strings.Repeat("123e4567-e89b-12d3-a456-426614174000,2026-04-15T09:00:00Z\r\n", 50)
	for _, tc := range []struct {
		name   string
		spoil  func(t *testing.T, dir string, e Entry)
		atRead bool // found reading the body, not listing
		want   string
	}{
		{"truncated body", func(t *testing.T, dir string, e Entry) {
			p := filepath.Join(dir, e.Path)
			fi, _ := os.Stat(p)
			if err := os.Truncate(p, fi.Size()-5); err != nil {
				t.Fatal(err)
			}
		}, false, "truncated or altered"},
		{"missing body", func(t *testing.T, dir string, e Entry) { _ = os.Remove(filepath.Join(dir, e.Path)) }, false, "missing"},
		{"flipped byte", func(t *testing.T, dir string, e Entry) {
			p := filepath.Join(dir, e.Path)
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 0xff
			_ = os.WriteFile(p, b, 0o644)
		}, true, ""},
		{"unknown format", func(t *testing.T, dir string, e Entry) {
			editMeta(t, filepath.Join(dir, e.MetaPath()), func(m map[string]any) { m["format"] = 99; m["something_new"] = true })
		}, false, "format 99 is not understood"},
		{"unknown field", func(t *testing.T, dir string, e Entry) {
			editMeta(t, filepath.Join(dir, e.MetaPath()), func(m map[string]any) { m["surprise"] = 1 })
		}, false, "not understood"},
		{"other stream", func(t *testing.T, dir string, e Entry) {
			editMeta(t, filepath.Join(dir, e.MetaPath()), func(m map[string]any) { m["stream_id"] = "fedcba9876543210" })
		}, false, "folder of stream"},
		{"bad instant", func(t *testing.T, dir string, e Entry) {
			editMeta(t, filepath.Join(dir, e.MetaPath()), func(m map[string]any) { m["window"] = map[string]any{"from": "yesterday", "to": ""} })
		}, false, "window.from"},
		{"body elsewhere", func(t *testing.T, dir string, e Entry) {
			editMeta(t, filepath.Join(dir, e.MetaPath()), func(m map[string]any) { m["body"] = "../../secret.csv.zst" })
		}, false, "names body"},
		{"more bytes than archived", func(t *testing.T, dir string, e Entry) {
			editMeta(t, filepath.Join(dir, e.MetaPath()), func(m map[string]any) { m["bytes"] = 10 })
		}, true, "more than the 10 bytes"},
		{"fewer bytes than archived", func(t *testing.T, dir string, e Entry) {
			editMeta(t, filepath.Join(dir, e.MetaPath()), func(m map[string]any) { m["bytes"] = 1 << 20 })
		}, true, "truncated"},
		{"not JSON", func(t *testing.T, dir string, e Entry) {
			_ = os.WriteFile(filepath.Join(dir, e.MetaPath()), []byte("{"), 0o644)
		}, false, "not understood"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			a := open(t, dir)
			e := put(t, a, meta(t0, "req_a", 1), body)
			tc.spoil(t, dir, e)
			es, err := a.Entries(stream)
			if !tc.atRead {
				var ce *CorruptError
				if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("listing: %v; want a CorruptError saying %q", err, tc.want)
				}
				if !strings.Contains(ce.Path, dir) || !strings.Contains(ce.Path, "1778751000123456-req_a") {
					t.Errorf("the error names %q, not the file", ce.Path)
				}
				return
			}
			if err != nil || len(es) != 1 {
				t.Fatalf("listing: %v", err)
			}
			_, err = readBody(a, es[0])
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Path != filepath.Join(dir, e.Path) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("reading: %v; want a CorruptError naming %s saying %q", err, e.Path, tc.want)
			}
		})
	}
}

// editMeta edits a metadata file and gives it the digest of what it then
// holds, so that the checks behind the digest are what the edit meets.
func editMeta(t *testing.T, p string, f func(map[string]any)) {
	t.Helper()
	editMetaOnly(t, p, func(m map[string]any) {
		f(m)
		b, _ := json.Marshal(m)
		var j metaJSON
		_ = json.Unmarshal(b, &j)
		m["digest"] = j.digest()
	})
}

// editMetaOnly edits a metadata file and leaves its digest as it was.
func editMetaOnly(t *testing.T, p string, f func(map[string]any)) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, _ = json.Marshal(m)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCleanTakesOnlyStaleLeftovers(t *testing.T) {
	dir := t.TempDir()
	a := open(t, dir)
	e := put(t, a, meta(t0, "req_a", 1), "id,created_at\r\n")
	old, fresh := filepath.Join(dir, stream, tempPrefix+"old.csv.zst"), filepath.Join(dir, stream, tempPrefix+"fresh.csv.zst")
	orphan := filepath.Join(dir, stream, "20260514", "1778751000999999-req_z.csv.zst")
	for _, p := range []string{old, fresh, orphan} {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	for _, p := range []string{old, orphan} {
		if err := os.Chtimes(p, now.Add(-2*StaleTemp), now.Add(-2*StaleTemp)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Clean(stream, now); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{old: false, orphan: false, fresh: true, filepath.Join(dir, e.Path): true, filepath.Join(dir, e.MetaPath()): true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s: present %v, want %v", p, err == nil, want)
		}
	}
	// A body without metadata is not an entry.
	if es, err := a.Entries(stream); err != nil || len(es) != 1 {
		t.Errorf("entries %v %v", es, err)
	}
	// Nor does a file of someone else's in the raw dir bother it.
	_ = os.WriteFile(filepath.Join(dir, "README"), []byte("mine"), 0o644)
	if streams, err := a.Streams(); err != nil || len(streams) != 1 {
		t.Errorf("streams %v %v", streams, err)
	}
	if bytes.Contains([]byte(mustJSON(t, e)), []byte("..")) {
		t.Error("an entry path climbs")
	}
}

// TestMetadataIsChecked edits one field of a window's metadata at a time,
// with a digest recomputed to match, so that the file is refused by what
// the fields say: each edit is named by its field. Without the new digest,
// any edit is refused for the digest; and a body replaced by another of
// the same size is refused for its SHA-256.
func TestMetadataIsChecked(t *testing.T) {
	body := "id,created_at\r\n" + strings.Repeat("123e4567-e89b-12d3-a456-426614174000,2026-04-15T09:00:00Z\r\n", 5)
	at := func(d time.Duration) string { return t0.Add(d).Format(time.RFC3339Nano) }
	for _, tc := range []struct {
		name string
		edit func(m map[string]any)
		want string
	}{
		{"received before the run started", func(m map[string]any) { m["received_at"] = at(-72 * time.Hour) }, "received_at"},
		{"loaded before it was received", func(m map[string]any) { m["received_at"] = at(72 * time.Hour) }, "loaded_at"},
		{"a run ending after it started", func(m map[string]any) { m["run_until"] = "2030-01-01T00:00:00Z" }, "run_until"},
		{"a run starting after it ends", func(m map[string]any) { m["run_since"] = at(time.Hour) }, "run_since"},
		{"a window ending in 2030", func(m map[string]any) {
			m["window"] = map[string]any{"from": "", "to": "2030-01-01T00:00:00Z"}
			m["request"].(map[string]any)["created_before"] = "2030-01-01T00:00:00Z"
		}, "window"},
		{"a window without end", func(m map[string]any) {
			m["window"] = map[string]any{"from": "", "to": ""}
			m["request"].(map[string]any)["created_before"] = ""
			m["deletes"] = []any{}
			m["pending"] = []any{}
		}, "no end"},
		{"a refreshed range ending after its response", func(m map[string]any) {
			m["refresh"] = true
			m["window"] = map[string]any{"from": "", "to": at(72 * time.Hour)}
			m["request"].(map[string]any)["created_before"] = at(72 * time.Hour)
		}, "received_at"},
		{"a pending window after the run", func(m map[string]any) {
			m["pending"] = []any{map[string]any{"from": at(-time.Hour), "to": at(time.Hour)}}
		}, "pending[0]"},
		{"unbounded deletions", func(m map[string]any) {
			m["deletes"] = []any{map[string]any{"from": "", "to": ""}}
			m["hard_delete"] = true
		}, "deletes[0]"},
		{"deletions beyond the window", func(m map[string]any) {
			m["window"] = map[string]any{"from": at(-2 * time.Hour), "to": at(0)}
			m["request"].(map[string]any)["created_after"] = at(-2*time.Hour - time.Microsecond)
		}, "deletes[0]"},
		{"a request for another window", func(m map[string]any) { m["request"].(map[string]any)["created_before"] = at(-time.Hour) }, "request.created_before"},
		{"a request without the window's start", func(m map[string]any) {
			m["window"] = map[string]any{"from": at(-2 * time.Hour), "to": at(0)}
			m["deletes"] = []any{}
		}, "request.created_after"},
		{"more rows than the limit", func(m map[string]any) { m["rows"] = 1001 }, "rows"},
		{"deletions with rejected rows", func(m map[string]any) { m["rejects"] = 1 }, "rejected"},
		{"a digest in format 1", func(m map[string]any) { m["format"] = 1 }, "format 1"},
		{"a bad body digest", func(m map[string]any) { m["body_sha256"] = "xyz" }, "body_sha256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			a := open(t, dir)
			e := put(t, a, meta(t0, "req_a", 1), body)
			editMeta(t, filepath.Join(dir, e.MetaPath()), tc.edit)
			_, err := a.Entries(stream)
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Path != filepath.Join(dir, e.MetaPath()) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("listing: %v; want a CorruptError naming %s and saying %q", err, e.MetaPath(), tc.want)
			}
		})
	}
	t.Run("an edit without its digest", func(t *testing.T) {
		dir := t.TempDir()
		a := open(t, dir)
		e := put(t, a, meta(t0, "req_a", 1), body)
		editMetaOnly(t, filepath.Join(dir, e.MetaPath()), func(m map[string]any) { m["calls"] = 2 })
		if _, err := a.Entries(stream); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "digest") {
			t.Fatalf("listing: %v; want the digest named", err)
		}
	})
	t.Run("another body of the same size", func(t *testing.T) {
		dir := t.TempDir()
		a := open(t, dir)
		e := put(t, a, meta(t0, "req_a", 1), body)
		other := strings.Replace(body, "2026-04-15", "2026-04-16", 1)
		otherDir := t.TempDir()
		o := put(t, open(t, otherDir), meta(t0, "req_a", 1), other)
		b, err := os.ReadFile(filepath.Join(otherDir, o.Path))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Path), b, 0o644); err != nil {
			t.Fatal(err)
		}
		editMeta(t, filepath.Join(dir, e.MetaPath()), func(m map[string]any) { m["zstd_bytes"] = len(b) })
		es, err := a.Entries(stream)
		if err != nil || len(es) != 1 {
			t.Fatalf("listing: %v", err)
		}
		if _, err := readBody(a, es[0]); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "body_sha256") {
			t.Fatalf("reading: %v; want the body's SHA-256 named", err)
		}
	})
	t.Run("format 1, without digests", func(t *testing.T) {
		dir := t.TempDir()
		a := open(t, dir)
		e := put(t, a, meta(t0, "req_a", 1), body)
		editMetaOnly(t, filepath.Join(dir, e.MetaPath()), func(m map[string]any) {
			m["format"] = 1
			delete(m, "digest")
			delete(m, "body_sha256")
		})
		es, err := a.Entries(stream)
		if err != nil || len(es) != 1 || es[0].BodySHA256 != "" {
			t.Fatalf("listing: %+v %v", es, err)
		}
		if got, err := readBody(a, es[0]); err != nil || got != body {
			t.Fatalf("reading: %q %v", got, err)
		}
	})
}
