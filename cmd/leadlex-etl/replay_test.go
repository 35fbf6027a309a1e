package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leadlex/leadlex-etl/internal/archive"
	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/fakeapi"
	"github.com/leadlex/leadlex-etl/internal/load"
)

// spoilRows serves srv, but the first n export responses have the
// created_at of their second data row replaced by text that is no instant,
// so that those windows load with a reject each.
func spoilRows(srv http.Handler, n int32) http.Handler {
	var left atomic.Int32
	left.Store(n)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != extract.ExportPath || left.Add(-1) < 0 {
			srv.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if rec.Code == http.StatusOK {
			lines := bytes.SplitAfter(body, []byte("\r\n"))
			if len(lines) > 3 {
				l := lines[2]
				i := bytes.LastIndexByte(l, ',')
				lines[2] = append(append(slices.Clone(l[:i+1]), "yesterday"...), "\r\n"...)
				body = bytes.Join(lines, nil)
			}
		}
		for k, v := range rec.Header() {
			if k != "Content-Length" {
				w.Header()[k] = v
			}
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
	})
}

// attach opens an in-memory DuckDB with the given files attached read-only
// as a, b, ...
func attach(t *testing.T, files ...string) *sql.DB {
	t.Helper()
	db, err := load.OpenDuckDBReadOnly("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1) // ATTACH belongs to a connection
	for i, f := range files {
		if _, err := db.Exec(fmt.Sprintf("ATTACH '%s' AS %c (READ_ONLY)", f, 'a'+i)); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

func queryInt(t *testing.T, db *sql.DB, q string) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// sameRows fails unless the two queries return the same rows, value by
// value, as many times each.
func sameRows(t *testing.T, db *sql.DB, what, x, y string) {
	t.Helper()
	for _, q := range []string{"(" + x + ") EXCEPT ALL (" + y + ")", "(" + y + ") EXCEPT ALL (" + x + ")"} {
		if n := queryInt(t, db, "SELECT count(*) FROM ("+q+")"); n != 0 {
			t.Errorf("%s: %d rows differ (%s)", what, n, q)
		}
	}
}

// TestReplayRebuildsWithTheAPIGone syncs a workspace whose windows split,
// some with rejected rows, into DuckDB and a lake with --raw-dir; edits and
// deletes contacts at the source and syncs again with a refresh that finds
// the deletions; then stops the API and replays the archive into a new
// DuckDB file and a new lake. Both equal the originals value by value:
// every column of every contact (lineage and _deleted_at included), the
// stream's coverage, the windows and the rejects.
func TestReplayRebuildsWithTheAPIGone(t *testing.T) {
	srv, err := fakeapi.New(fakeapi.Config{Contacts: 6000, Seed: 7, Order: fakeapi.OrderRandom,
		Keys: []fakeapi.Key{{Token: cliKey, Workspace: "acme", ReadContacts: true}}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(spoilRows(srv, 2))
	defer hs.Close()
	dir := t.TempDir()
	db, lake, raw := filepath.Join(dir, "w.duckdb"), filepath.Join(dir, "lake"), filepath.Join(dir, "raw")
	env := []string{"LEADLEX_API_KEY=" + cliKey}
	args := []string{"sync", "--base-url", hs.URL, "--duckdb", db, "--parquet", lake, "--raw-dir", raw, "--limit", "1000", "-q"}
	r := cli(t, env, append(args, "--refresh-calls", "0")...)
	if r.code != 0 {
		t.Fatalf("first sync: %d %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "raw archive: ") {
		t.Errorf("the summary does not mention the archive:\n%s", r.stdout)
	}
	var edits, deletes []int
	for i := 3; i < 6000; i += 101 {
		edits = append(edits, i)
	}
	for i := 10; i < 6000; i += 149 {
		deletes = append(deletes, i)
	}
	srv.Edit(edits...)
	srv.Delete(deletes...)
	if err := srv.Append(40, time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if r := cli(t, env, append(args, "--refresh-calls", "30", "--refresh-min-age", "0s")...); r.code != 0 {
		t.Fatalf("refreshing sync: %d %s", r.code, r.stderr)
	}
	hs.Close() // the API is gone

	db2, lake2 := filepath.Join(dir, "rebuilt.duckdb"), filepath.Join(dir, "rebuilt-lake")
	r = cli(t, nil, "replay", "--raw-dir", raw, "--duckdb", db2, "--parquet", lake2, "--log-format", "json")
	if r.code != 0 {
		t.Fatalf("replay: %d %s", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, `"level":"WARN"`) {
		t.Errorf("the replay warned:\n%s", r.stderr)
	}
	t.Logf("replay: %s", strings.TrimSpace(r.stdout))
	// Window by window (--group-rows 0), into DuckDB only.
	db3 := filepath.Join(dir, "one-by-one.duckdb")
	if r := cli(t, nil, "replay", "--raw-dir", raw, "--duckdb", db3, "--group-rows", "0", "-q"); r.code != 0 {
		t.Fatalf("replay --group-rows 0: %d %s", r.code, r.stderr)
	}

	q := attach(t, db, db2, db3)
	// Not a trivial workspace: windows split, rows rejected, contacts deleted.
	if n := queryInt(t, q, "SELECT count(*) FROM a._leadlex_windows"); n < 10 {
		t.Errorf("only %d windows", n)
	}
	if n := queryInt(t, q, "SELECT count(*) FROM a._leadlex_rejects"); n != 2 {
		t.Errorf("%d rejects, want 2", n)
	}
	if n := queryInt(t, q, "SELECT count(*) FROM a.contacts WHERE _deleted_at IS NOT NULL"); n != int64(len(deletes)) {
		t.Errorf("%d contacts marked deleted, want %d", n, len(deletes))
	}
	if n := queryInt(t, q, "SELECT count(*) FROM b.contacts"); n != 6040 {
		t.Errorf("the rebuilt file has %d contacts, want 6040", n)
	}
	sameRows(t, q, "contacts", "SELECT * FROM a.contacts", "SELECT * FROM b.contacts")
	sameRows(t, q, "contacts window by window", "SELECT * FROM a.contacts", "SELECT * FROM c.contacts")
	sameRows(t, q, "windows window by window", "SELECT * FROM a._leadlex_windows", "SELECT * FROM c._leadlex_windows")
	sameRows(t, q, "stream state", "SELECT * EXCLUDE (updated_at) FROM a._leadlex_streams", "SELECT * EXCLUDE (updated_at) FROM b._leadlex_streams")
	sameRows(t, q, "windows", "SELECT * FROM a._leadlex_windows", "SELECT * FROM b._leadlex_windows")
	sameRows(t, q, "rejects", "SELECT * FROM a._leadlex_rejects", "SELECT * FROM b._leadlex_rejects")
	sameRows(t, q, "lake contacts", fmt.Sprintf("SELECT * FROM read_parquet('%s/contacts/**/*.parquet')", lake),
		fmt.Sprintf("SELECT * FROM read_parquet('%s/contacts/**/*.parquet')", lake2))
	sameRows(t, q, "lake and DuckDB", fmt.Sprintf("SELECT * EXCLUDE (year, month) FROM read_parquet('%s/contacts/**/*.parquet')", lake2),
		"SELECT * REPLACE (id::VARCHAR AS id) FROM b.contacts")
	sameRows(t, q, "lake rejects", fmt.Sprintf("SELECT * FROM read_json_auto('%s/_leadlex/rejects/*.jsonl')", lake),
		fmt.Sprintf("SELECT * FROM read_json_auto('%s/_leadlex/rejects/*.jsonl')", lake2))
	if a, b := lakeStreams(t, lake), lakeStreams(t, lake2); a != b {
		t.Errorf("lake stream state differs:\n original %s\n rebuilt  %s", a, b)
	}
	// The rebuilt destinations go on syncing from where the originals were:
	// no API is needed to see that, their state says it (compared above).

	// The key is in no file of the archive.
	checkNoKeyUnder(t, raw)
}

// lakeStreams is the lake's stream state without its update time.
func lakeStreams(t *testing.T, lake string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(lake, "_leadlex", "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Streams map[string]map[string]any `json:"streams"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Streams {
		delete(s, "updated_at")
	}
	out, _ := json.Marshal(st.Streams)
	return string(out)
}

func checkNoKeyUnder(t *testing.T, dir string) {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		if strings.Contains(p, "S3CR3T") {
			t.Errorf("a file name holds the key: %s", p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(cliKey)) || bytes.Contains(b, []byte("S3CR3T")) {
			t.Errorf("the key is in %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Error("the archive is empty")
	}
	// The bodies, decompressed.
	a, err := archive.Open(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	streams, err := a.Streams()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range streams {
		es, err := a.Entries(s.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			b, err := a.Open(e)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			_, err = buf.ReadFrom(b)
			b.Close()
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(buf.Bytes(), []byte(cliKey)) || bytes.Contains(buf.Bytes(), []byte("S3CR3T")) {
				t.Errorf("the key is in the body %s", e.Path)
			}
		}
	}
}

// TestKeyInNoArchiveFile syncs from an API that repeats the key in the
// body and in X-Request-ID: neither the bodies, nor their metadata, nor a
// file name hold it, and the echoed rows replay as they loaded.
func TestKeyInNoArchiveFile(t *testing.T) {
	_, url := fake(t, fakeapi.Config{Contacts: 2500, Seed: 3, EchoKey: []fakeapi.Echo{fakeapi.EchoBody, fakeapi.EchoRequestID}})
	dir := t.TempDir()
	db, raw := filepath.Join(dir, "w.duckdb"), filepath.Join(dir, "raw")
	if r := cli(t, []string{"LEADLEX_API_KEY=" + cliKey}, "sync", "--base-url", url, "--duckdb", db, "--raw-dir", raw, "--limit", "1000", "-q"); r.code != 0 {
		t.Fatalf("sync: %d %s", r.code, r.stderr)
	}
	checkNoKeyUnder(t, raw)
	db2 := filepath.Join(dir, "rebuilt.duckdb")
	if r := cli(t, nil, "replay", "--raw-dir", raw, "--duckdb", db2, "-q"); r.code != 0 {
		t.Fatalf("replay: %d %s", r.code, r.stderr)
	}
	q := attach(t, db, db2)
	if n := queryInt(t, q, "SELECT count(*) FROM b._leadlex_rejects WHERE contains(raw, '[REDACTED]')"); n == 0 {
		t.Error("the echoed rows were not replayed into rejects")
	}
	sameRows(t, q, "contacts", "SELECT * FROM a.contacts", "SELECT * FROM b.contacts")
	sameRows(t, q, "rejects", "SELECT * FROM a._leadlex_rejects", "SELECT * FROM b._leadlex_rejects")
}

// TestReplayUsage checks replay's help and its usage errors, which make no
// file.
func TestReplayUsage(t *testing.T) {
	r := cli(t, nil, "replay", "--help")
	for _, w := range []string{"--raw-dir", "--stream", "--duckdb", "--parquet", "--partition-by", "--group-rows", "no API call"} {
		if r.code != 0 || !strings.Contains(r.stdout, w) {
			t.Errorf("replay --help (exit %d) lacks %q", r.code, w)
		}
	}
	if r := cli(t, nil, "--help"); !strings.Contains(r.stdout, "replay") {
		t.Error("the command list lacks replay")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "out.duckdb")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--duckdb", out}, "--raw-dir"},
		{[]string{"--raw-dir", dir}, "no destination"},
		{[]string{"--raw-dir", filepath.Join(dir, "missing"), "--duckdb", out}, "--raw-dir"},
		{[]string{"--raw-dir", dir, "--duckdb", out, "--log-format", "xml"}, "--log-format"},
		{[]string{"--raw-dir", dir, "--duckdb", out, "--group-rows", "-1"}, "--group-rows"},
	} {
		r := cli(t, nil, append([]string{"replay"}, tc.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 naming %s", tc.args, r.code, r.stderr, tc.want)
		}
	}
	if r := cli(t, nil, "replay", "--raw-dir", dir, "--duckdb", out); r.code != 1 || !strings.Contains(r.stderr, "holds no archived window") {
		t.Errorf("an empty raw dir: exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a refused replay left its destination")
	}
}

// TestReplayRefuses checks what a replay will not do: guess among several
// streams, load a truncated or unreadable file, or merge into a destination
// that holds the stream. Each says why, naming the file or the streams, and
// leaves no destination of its own behind.
func TestReplayRefuses(t *testing.T) {
	_, url := fake(t, fakeapi.Config{Contacts: 3000, Seed: 2})
	dir := t.TempDir()
	db, raw := filepath.Join(dir, "w.duckdb"), filepath.Join(dir, "raw")
	env := []string{"LEADLEX_API_KEY=" + cliKey}
	// Two streams, each into a destination of its own, one raw dir.
	for _, x := range []struct {
		db    string
		extra []string
	}{{db, nil}, {filepath.Join(dir, "leads.duckdb"), []string{"--tag", "lead"}}} {
		if r := cli(t, env, append([]string{"sync", "--base-url", url, "--duckdb", x.db, "--raw-dir", raw, "--limit", "1000", "-q"}, x.extra...)...); r.code != 0 {
			t.Fatalf("sync %v: %d %s", x.extra, r.code, r.stderr)
		}
	}
	a, err := archive.Open(raw, false)
	if err != nil {
		t.Fatal(err)
	}
	streams, err := a.Streams()
	a.Close()
	if err != nil || len(streams) != 2 {
		t.Fatalf("streams %v %v", streams, err)
	}
	var plain archive.Stream
	for _, s := range streams {
		if !strings.Contains(s.Identity, "lead") {
			plain = s
		}
	}
	out := filepath.Join(dir, "out.duckdb")
	r := cli(t, nil, "replay", "--raw-dir", raw, "--duckdb", out)
	if r.code != 2 || !strings.Contains(r.stderr, streams[0].ID) || !strings.Contains(r.stderr, streams[1].ID) || !strings.Contains(r.stderr, "--stream") {
		t.Errorf("several streams: exit %d, stderr %q; want 2 listing both and naming --stream", r.code, r.stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a refused replay left its destination")
	}
	if r := cli(t, nil, "replay", "--raw-dir", raw, "--duckdb", out, "--stream", "0000000000000000"); r.code != 2 || !strings.Contains(r.stderr, "no window of stream") {
		t.Errorf("unknown stream: exit %d, stderr %q", r.code, r.stderr)
	}
	// The original holds every archived window: nothing to do. (Synced on
	// without the archive, below, it is refused.)
	if r := cli(t, nil, "replay", "--raw-dir", raw, "--duckdb", db, "--stream", plain.ID); r.code != 0 || !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("into the original: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := cli(t, nil, "replay", "--raw-dir", raw, "--duckdb", out, "--stream", plain.ID, "-q"); r.code != 0 {
		t.Fatalf("replay of one stream: %d %s", r.code, r.stderr)
	}
	q := attach(t, db, out)
	sameRows(t, q, "contacts", "SELECT * FROM a.contacts", "SELECT * FROM b.contacts")
	q.Close()
	// Synced on without the archive, the original holds the stream as no
	// replay of the archive leaves it: refused, naming it.
	if r := cli(t, env, "sync", "--base-url", url, "--duckdb", db, "--limit", "1000", "-q"); r.code != 0 {
		t.Fatalf("sync without the archive: %d %s", r.code, r.stderr)
	}
	if r := cli(t, nil, "replay", "--raw-dir", raw, "--duckdb", db, "--stream", plain.ID); r.code != 1 ||
		!strings.Contains(r.stderr, "replay into "+db+" refused") || !strings.Contains(r.stderr, "already holds stream") || !strings.Contains(r.stderr, "does not merge") {
		t.Errorf("into the original synced on: exit %d, stderr %q", r.code, r.stderr)
	}

	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, e archive.Entry)
		want  string
	}{
		{"truncated body", func(t *testing.T, e archive.Entry) {
			p := filepath.Join(raw, e.Path)
			fi, _ := os.Stat(p)
			if err := os.Truncate(p, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}, "truncated"},
		{"altered body", func(t *testing.T, e archive.Entry) {
			p := filepath.Join(raw, e.Path)
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 0x55
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}, ""},
		{"metadata of a later version", func(t *testing.T, e archive.Entry) {
			p := filepath.Join(raw, e.MetaPath())
			b, _ := os.ReadFile(p)
			if err := os.WriteFile(p, bytes.Replace(b, []byte(fmt.Sprintf(`"format": %d`, archive.Format)), []byte(fmt.Sprintf(`"format": %d`, archive.Format+1)), 1), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "not understood"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := archive.Open(raw, false)
			if err != nil {
				t.Fatal(err)
			}
			es, err := a.Entries(plain.ID)
			a.Close()
			if err != nil || len(es) < 3 {
				t.Fatalf("entries: %d %v", len(es), err)
			}
			e := es[1]
			saved := map[string][]byte{}
			for _, p := range []string{e.Path, e.MetaPath()} {
				saved[p], _ = os.ReadFile(filepath.Join(raw, p))
			}
			t.Cleanup(func() {
				for p, b := range saved {
					_ = os.WriteFile(filepath.Join(raw, p), b, 0o644)
				}
			})
			tc.spoil(t, e)
			out, lake := filepath.Join(t.TempDir(), "out.duckdb"), filepath.Join(t.TempDir(), "lake")
			r := cli(t, nil, "replay", "--raw-dir", raw, "--duckdb", out, "--parquet", lake, "--stream", plain.ID, "-q")
			named := filepath.Join(raw, e.Path)
			if strings.Contains(tc.name, "metadata") {
				named = filepath.Join(raw, e.MetaPath())
			}
			if r.code != 1 || !strings.Contains(r.stderr, named) || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 1 naming %s", r.code, r.stderr, named)
			}
			for _, p := range []string{out, lake} {
				if _, err := os.Stat(p); err == nil {
					t.Errorf("the failed replay left %s", p)
				}
			}
		})
	}
}

// TestKilledSyncArchivesWhatCommitted kills syncs with SIGKILL right after
// a window was archived (before it commits), after one committed, and after
// a call: after a final run, the archive holds exactly the windows DuckDB
// committed (the same request ids and commit times), and a replay of it
// equals the file.
func TestKilledSyncArchivesWhatCommitted(t *testing.T) {
	_, url := fake(t, fakeapi.Config{Contacts: 12000, Seed: 5, Order: fakeapi.OrderRandom})
	dir := t.TempDir()
	db, lake, raw := filepath.Join(dir, "w.duckdb"), filepath.Join(dir, "lake"), filepath.Join(dir, "raw")
	args := []string{"sync", "--base-url", url, "--duckdb", db, "--parquet", lake, "--raw-dir", raw, "--limit", "3000", "--refresh-calls", "0", "--log-format", "json"}
	for i, ev := range []string{"window archived", "window committed", "window archived", "export call", "window archived"} {
		if !killAfter(t, ev, 1+i%2, args...) {
			t.Fatalf("run %d finished before its kill; the test proves nothing", i)
		}
	}
	r := cli(t, []string{"LEADLEX_API_KEY=" + cliKey}, args...)
	if r.code != 0 {
		t.Fatalf("final run: %d %s", r.code, r.stderr)
	}
	// The last run was killed right after archiving a window: unless the
	// window committed before the kill landed, the final run took it out.
	t.Logf("the final run removed an uncommitted window from the archive: %v", strings.Contains(r.stderr, "removed from the raw archive"))
	a, err := archive.Open(raw, false)
	if err != nil {
		t.Fatal(err)
	}
	streams, err := a.Streams()
	if err != nil || len(streams) != 1 {
		t.Fatalf("streams %v %v", streams, err)
	}
	es, err := a.Entries(streams[0].ID)
	a.Close()
	if err != nil {
		t.Fatal(err)
	}
	var archived []string
	for _, e := range es {
		archived = append(archived, fmt.Sprintf("%s %d", e.RequestID, e.LoadedAt.UnixMicro()))
	}
	q := attach(t, db)
	rows, err := q.Query("SELECT request_id, epoch_us(committed_at) FROM a._leadlex_windows ORDER BY committed_at")
	if err != nil {
		t.Fatal(err)
	}
	var committed []string
	for rows.Next() {
		var id string
		var us int64
		if err := rows.Scan(&id, &us); err != nil {
			t.Fatal(err)
		}
		committed = append(committed, fmt.Sprintf("%s %d", id, us))
	}
	rows.Close()
	if !slices.Equal(archived, committed) {
		t.Errorf("the archive holds %d windows, DuckDB committed %d:\n archived  %v\n committed %v", len(archived), len(committed), archived, committed)
	}
	q.Close()
	db2 := filepath.Join(dir, "rebuilt.duckdb")
	if r := cli(t, nil, "replay", "--raw-dir", raw, "--duckdb", db2, "-q"); r.code != 0 {
		t.Fatalf("replay: %d %s", r.code, r.stderr)
	}
	q = attach(t, db, db2)
	if n := queryInt(t, q, "SELECT count(DISTINCT id) FROM b.contacts"); n != 12000 {
		t.Errorf("the rebuilt file has %d contacts, want 12000", n)
	}
	sameRows(t, q, "contacts", "SELECT * FROM a.contacts", "SELECT * FROM b.contacts")
	sameRows(t, q, "stream state", "SELECT * EXCLUDE (updated_at) FROM a._leadlex_streams", "SELECT * EXCLUDE (updated_at) FROM b._leadlex_streams")
}
