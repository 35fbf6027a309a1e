// Package archive owns the raw archive (sync --raw-dir): every committed
// export response body, compressed with zstd, beside a JSON file of what a
// replay needs to load it again exactly as the sync did (the request, the
// request id, when it was loaded, the window's completeness and deletions,
// the stream). It writes an attempt under a temporary name while the body
// streams in and moves it into place when the window commits; it lists and
// checks what a replay reads. It never talks to the API or to a destination,
// and never parses the CSV: the pipeline does both.
//
// Layout, under the raw dir:
//
//	<stream_id>/<YYYYMMDD>/<loaded_at unix µs>-<request id or its hash>.csv.zst
//	<stream_id>/<YYYYMMDD>/<loaded_at unix µs>-<request id or its hash>.json
//	<stream_id>/.tmp-*   attempts in progress (removed when stale)
//
// The date is the commit's (UTC). A body without its JSON file is not part
// of the archive (a crash came between the two renames, before the window
// could commit).
package archive

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/leadlex/leadlex-etl/internal/extract"
)

// Format is the version of the metadata this package writes; it reads every
// version up to it. A file of a later version is refused: it may mean
// something this version does not know how to replay. Format 2 added the
// body's SHA-256 and the metadata's own digest.
const Format = 2

// MaxMetaBytes bounds the metadata file a reader accepts.
const MaxMetaBytes = 1 << 20

// StaleTemp is how old an attempt's temporary file must be before Clean
// removes it: older than any download (each byte of a body comes within
// the idle timeout, at most an hour), so that it never takes the file of a
// run in progress that shares the folder.
const StaleTemp = 3 * time.Hour

const (
	bodySuffix = ".csv.zst"
	metaSuffix = ".json"
	tempPrefix = ".tmp-"
)

var (
	streamIDRe = regexp.MustCompile(`^[0-9a-f]{16}$`)
	dayRe      = regexp.MustCompile(`^[0-9]{8}$`)
	baseRe     = regexp.MustCompile(`^[0-9]{1,20}-[A-Za-z0-9._-]{1,80}(-[0-9]{1,4})?$`)
	safeIDRe   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

// Meta is what the archive keeps of one committed window, beside its body.
type Meta struct {
	StreamID string // the stream's id (folder name)
	Identity string // the stream's identity, JSON
	RunID    string // the run that committed the window
	// RunStartedAt, RunSince and RunUntil are the run's start and the range
	// it covered in one piece (what a resumed run's pending windows are
	// saved with).
	RunStartedAt       time.Time
	RunSince, RunUntil time.Time
	Seq                int // the window's number within its run, from 1

	Window    extract.Window // the window's created_at range
	Query     extract.Query  // the request as sent: created_after, created_before, limit, list, tags, fields
	RequestID string         // the response's X-Request-ID (or the client's marker for an odd one)
	// ReceivedAt is when the response's headers had arrived; LoadedAt is
	// when the window committed: its rows' _loaded_at, its deletions'
	// _deleted_at, and its coverage's verification time.
	ReceivedAt, LoadedAt time.Time

	Rows    int64 // data rows in the body, parsed or not
	Rejects int64 // of which rejected
	Calls   int   // API calls the window took, retries included

	// Pending are the windows still to fetch after this one, as committed.
	Pending []extract.Window
	// Refresh marks a window of the rolling refresh.
	Refresh bool
	// Deletes are the ranges the window exported completely and that told
	// deletions (WindowInfo.Deletes); HardDelete removes instead of marking.
	Deletes    []extract.Window
	HardDelete bool
	// RefreshMinAge is the run's --refresh-min-age, which decides how its
	// coverage was compacted.
	RefreshMinAge time.Duration
	// StateAfter is a digest of the stream state the window committed (see
	// the pipeline): a later sync compares it with a destination's state to
	// learn whether a killed run's last archived window committed.
	StateAfter string
	// HistoryStart and KeyFingerprint are the stream state's Start and
	// KeyFingerprint (see load.StreamState), which a replay restores.
	HistoryStart   time.Time
	KeyFingerprint string
	// MaxDeleteRatio and DeletesAllowed are the deletion guard the window's
	// deletions passed (load.DeleteGuard): 1 when the user confirmed them
	// with --max-delete-ratio 1, which a replay applies again.
	MaxDeleteRatio float64
	DeletesAllowed int64

	// Bytes is the size of the body, uncompressed.
	Bytes int64
	// BodySHA256 is the SHA-256 of the body, uncompressed, in hex (""
	// in metadata of format 1).
	BodySHA256 string
}

// Entry is one archived window: its metadata and where its files are.
type Entry struct {
	Meta
	// Path is the body's path relative to the raw dir, with slashes
	// (<stream>/<day>/<base>.csv.zst); the metadata is beside it.
	Path string
	// ZstdBytes is the size of the compressed body file.
	ZstdBytes int64
}

// MetaPath is the metadata file's path, relative to the raw dir.
func (e Entry) MetaPath() string { return strings.TrimSuffix(e.Path, bodySuffix) + metaSuffix }

// Archive is an open raw dir. Its methods are safe for concurrent use.
type Archive struct {
	dir  string
	root *os.Root

	mu  sync.Mutex
	enc *zstd.Encoder // reused by attempts, one at a time
	dec *zstd.Decoder // reused by bodies, one at a time
}

// Open opens the raw dir at dir, creating it when create is set.
func Open(dir string, create bool) (*Archive, error) {
	if create {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("raw dir %s: %w", dir, err)
		}
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("raw dir %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("raw dir %s is not a folder", dir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("raw dir %s: %w", dir, err)
	}
	return &Archive{dir: dir, root: root}, nil
}

// Dir is the raw dir's path as given to Open.
func (a *Archive) Dir() string { return a.dir }

// Close releases the raw dir.
func (a *Archive) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.enc != nil {
		_ = a.enc.Close()
		a.enc = nil
	}
	if a.dec != nil {
		a.dec.Close()
		a.dec = nil
	}
	return a.root.Close()
}

// display is a raw-dir-relative path as the user would type it.
func (a *Archive) display(rel string) string { return path.Join(a.dir, rel) }

// CorruptError says a file of the archive cannot be trusted: missing,
// truncated, altered, or of a form this version does not understand.
// Nothing of its window is loaded.
type CorruptError struct {
	Path   string // as the user knows it: the raw dir joined with the file's path
	Detail string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("raw archive file %s: %s", e.Path, e.Detail)
}

// ErrCorrupt matches every *CorruptError.
var ErrCorrupt = errors.New("raw archive file corrupt")

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

func (a *Archive) corrupt(rel, format string, args ...any) error {
	return &CorruptError{Path: a.display(rel), Detail: fmt.Sprintf(format, args...)}
}

// checkStream refuses a stream id that is not one the pipeline makes, so
// that no text from elsewhere becomes a path.
func checkStream(id string) error {
	if !streamIDRe.MatchString(id) {
		return fmt.Errorf("stream id %q is not 16 hexadecimal digits", id)
	}
	return nil
}

// baseName is the name an entry's files share: the commit's instant and
// the request id, when it is a short safe token, or a hash of it: the
// request id is text from the API, never a path unchecked.
func baseName(loadedAt time.Time, requestID string) string {
	id := requestID
	if !safeIDRe.MatchString(id) {
		sum := sha256.Sum256([]byte(requestID))
		id = "h" + hex.EncodeToString(sum[:8])
	}
	return strconv.FormatInt(loadedAt.UnixMicro(), 10) + "-" + id
}

// Attempt is one download of a window being written to the archive. Bytes
// written to it are compressed into a temporary file; Commit moves it into
// place with its metadata, Abort removes it.
type Attempt struct {
	a        *Archive
	stream   string
	tmp      string // temporary body, relative to the raw dir
	f        *os.File
	enc      *zstd.Encoder
	sum      hash.Hash // of what was written, uncompressed
	n        int64
	err      error
	finished bool
}

// Begin starts an attempt for a window of the stream.
func (a *Archive) Begin(streamID string) (*Attempt, error) {
	if err := checkStream(streamID); err != nil {
		return nil, err
	}
	if err := a.root.MkdirAll(streamID, 0o755); err != nil {
		return nil, fmt.Errorf("raw dir %s: %w", a.dir, err)
	}
	tmp := path.Join(streamID, tempPrefix+randomHex()+bodySuffix)
	f, err := a.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("raw dir %s: %w", a.dir, err)
	}
	a.mu.Lock()
	enc := a.enc
	a.enc = nil
	a.mu.Unlock()
	if enc == nil {
		// The fastest level: about 5x on contacts' CSV, at several hundred
		// MB/s; the archive must never slow the sync down.
		enc, err = zstd.NewWriter(f, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(2), zstd.WithWindowSize(1<<22))
		if err != nil {
			_ = f.Close()
			_ = a.root.Remove(tmp)
			return nil, err
		}
	} else {
		enc.Reset(f)
	}
	return &Attempt{a: a, stream: streamID, tmp: tmp, f: f, enc: enc, sum: sha256.New()}, nil
}

func randomHex() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Write compresses p into the attempt's file.
func (t *Attempt) Write(p []byte) (int, error) {
	if t.err != nil {
		return 0, t.err
	}
	n, err := t.enc.Write(p)
	t.sum.Write(p[:n])
	t.n += int64(n)
	if err != nil {
		t.err = fmt.Errorf("raw archive: write %s: %w", t.a.display(t.tmp), err)
		return n, t.err
	}
	return n, nil
}

// Bytes is how much has been written, uncompressed.
func (t *Attempt) Bytes() int64 { return t.n }

// release hands the encoder back for the next attempt and closes the file.
func (t *Attempt) release() {
	if t.finished {
		return
	}
	t.finished = true
	_ = t.f.Close()
	t.a.mu.Lock()
	if t.a.enc == nil {
		t.a.enc = t.enc
	} else {
		_ = t.enc.Close()
	}
	t.a.mu.Unlock()
}

// Abort discards the attempt. It is safe to call after Commit, which it
// then leaves alone.
func (t *Attempt) Abort() {
	if t == nil || t.finished {
		return
	}
	_ = t.enc.Close()
	t.release()
	_ = t.a.root.Remove(t.tmp)
}

// Commit finishes the body, writes m beside it, and moves both into place,
// durably (files and folders fsynced): when it returns nil, the window is
// in the archive even if the machine stops the next instant. m.Bytes and
// m.BodySHA256 are set from what was written; m.StreamID must be the
// attempt's.
func (t *Attempt) Commit(m Meta) (Entry, error) {
	if t.finished {
		return Entry{}, errors.New("raw archive: attempt already finished")
	}
	if t.err != nil {
		t.Abort()
		return Entry{}, t.err
	}
	if m.StreamID != t.stream {
		t.Abort()
		return Entry{}, fmt.Errorf("raw archive: window of stream %s committed to an attempt of %s", m.StreamID, t.stream)
	}
	fail := func(err error) (Entry, error) {
		t.Abort()
		return Entry{}, fmt.Errorf("raw archive %s: %w", t.a.dir, err)
	}
	m.Bytes, m.BodySHA256 = t.n, hex.EncodeToString(t.sum.Sum(nil))
	if err := t.enc.Close(); err != nil {
		return fail(err)
	}
	if err := t.f.Sync(); err != nil {
		return fail(err)
	}
	fi, err := t.f.Stat()
	if err != nil {
		return fail(err)
	}
	day := m.LoadedAt.UTC().Format("20060102")
	dayDir := path.Join(t.stream, day)
	base := baseName(m.LoadedAt, m.RequestID)
	if _, err := t.a.root.Lstat(path.Join(dayDir, base+metaSuffix)); err == nil {
		// Two windows of one request id committed in one microsecond:
		// only a shared folder and a repeated id can do that.
		base += "-" + strconv.Itoa(int(time.Now().UnixNano()%1000)+1)
	}
	e := Entry{Meta: m, Path: path.Join(dayDir, base+bodySuffix), ZstdBytes: fi.Size()}
	mb, err := json.MarshalIndent(toJSON(e).sealed(), "", "  ")
	if err != nil {
		return fail(err)
	}
	mb = append(mb, '\n')
	tmpMeta := strings.TrimSuffix(t.tmp, bodySuffix) + metaSuffix
	if err := writeFileSync(t.a.root, tmpMeta, mb); err != nil {
		_ = t.a.root.Remove(tmpMeta)
		return fail(err)
	}
	_, statErr := t.a.root.Lstat(dayDir)
	if err := t.a.root.MkdirAll(dayDir, 0o755); err != nil {
		_ = t.a.root.Remove(tmpMeta)
		return fail(err)
	}
	t.release()
	// The body first: a body without metadata is not part of the archive.
	if err := t.a.root.Rename(t.tmp, e.Path); err != nil {
		_ = t.a.root.Remove(tmpMeta)
		_ = t.a.root.Remove(t.tmp)
		return Entry{}, fmt.Errorf("raw archive %s: %w", t.a.dir, err)
	}
	if err := t.a.root.Rename(tmpMeta, e.MetaPath()); err != nil {
		_ = t.a.root.Remove(tmpMeta)
		_ = t.a.root.Remove(e.Path)
		return Entry{}, fmt.Errorf("raw archive %s: %w", t.a.dir, err)
	}
	dirs := []string{dayDir}
	if statErr != nil {
		dirs = append(dirs, t.stream, ".") // the day's folder is new
	}
	for _, d := range dirs {
		if err := syncDir(t.a.root, d); err != nil {
			return Entry{}, fmt.Errorf("raw archive %s: %w", t.a.dir, err)
		}
	}
	return e, nil
}

func writeFileSync(root *os.Root, name string, b []byte) error {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func syncDir(root *os.Root, name string) error {
	d, err := root.Open(name)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}

// Remove takes an entry out of the archive: the metadata first, so that a
// crash between leaves a body that is not part of it.
func (a *Archive) Remove(e Entry) error {
	if err := a.root.Remove(e.MetaPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("raw archive: %w", err)
	}
	if err := a.root.Remove(e.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("raw archive: %w", err)
	}
	return syncDir(a.root, path.Dir(e.Path))
}

// Clean removes what killed runs left of a stream: attempts' temporary
// files older than StaleTemp, and bodies without metadata as old.
func (a *Archive) Clean(streamID string, now time.Time) error {
	if err := checkStream(streamID); err != nil {
		return err
	}
	entries, err := fs.ReadDir(a.root.FS(), streamID)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	stale := func(rel string) bool {
		fi, err := a.root.Lstat(rel)
		return err == nil && fi.Mode().IsRegular() && now.Sub(fi.ModTime()) > StaleTemp
	}
	for _, de := range entries {
		rel := path.Join(streamID, de.Name())
		switch {
		case strings.HasPrefix(de.Name(), tempPrefix):
			if stale(rel) {
				_ = a.root.Remove(rel)
			}
		case de.IsDir() && dayRe.MatchString(de.Name()):
			files, err := fs.ReadDir(a.root.FS(), rel)
			if err != nil {
				return err
			}
			for _, f := range files {
				name := f.Name()
				if strings.HasSuffix(name, bodySuffix) && !slices.ContainsFunc(files, func(g fs.DirEntry) bool {
					return g.Name() == strings.TrimSuffix(name, bodySuffix)+metaSuffix
				}) && stale(path.Join(rel, name)) {
					_ = a.root.Remove(path.Join(rel, name))
				}
			}
		}
	}
	return nil
}

// Stream is one stream the archive holds windows of.
type Stream struct {
	ID       string
	Identity string // of its newest window
	Windows  int
}

// Streams lists the streams with at least one archived window, by id,
// without reading every window's metadata: the identity is the newest
// window's (or why it could not be read).
// Folders and files that are not the archive's are left alone.
func (a *Archive) Streams() ([]Stream, error) {
	top, err := fs.ReadDir(a.root.FS(), ".")
	if err != nil {
		return nil, fmt.Errorf("raw dir %s: %w", a.dir, err)
	}
	var out []Stream
	for _, de := range top {
		if !de.IsDir() || checkStream(de.Name()) != nil {
			continue
		}
		days, err := a.days(de.Name())
		if err != nil {
			return nil, err
		}
		n := 0
		for _, day := range days {
			files, err := fs.ReadDir(a.root.FS(), path.Join(de.Name(), day))
			if err != nil {
				return nil, fmt.Errorf("raw dir %s: %w", a.dir, err)
			}
			for _, f := range files {
				if base, ok := strings.CutSuffix(f.Name(), metaSuffix); ok && baseRe.MatchString(base) {
					n++
				}
			}
		}
		if n == 0 {
			continue
		}
		s := Stream{ID: de.Name(), Windows: n}
		if last, ok, err := a.Latest(de.Name()); err != nil {
			s.Identity = "identity unreadable: " + err.Error()
		} else if ok {
			s.Identity = last.Identity
		}
		out = append(out, s)
	}
	return out, nil
}

// Entries reads and checks the metadata of every archived window of the
// stream and returns them in the order they committed (by LoadedAt, then
// run and sequence). Any metadata that does not parse, is of another
// format, disagrees with its file's name, or whose body is missing or of
// another size is a *CorruptError naming the file.
func (a *Archive) Entries(streamID string) ([]Entry, error) {
	days, err := a.days(streamID)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, day := range days {
		es, err := a.dayEntries(streamID, day)
		if err != nil {
			return nil, err
		}
		out = append(out, es...)
	}
	sortEntries(out)
	return out, nil
}

// Latest returns the stream's newest archived window, reading only the
// newest day's metadata; false when there is none.
func (a *Archive) Latest(streamID string) (Entry, bool, error) {
	days, err := a.days(streamID)
	if err != nil {
		return Entry{}, false, err
	}
	for i := len(days) - 1; i >= 0; i-- {
		es, err := a.dayEntries(streamID, days[i])
		if err != nil {
			return Entry{}, false, err
		}
		if len(es) > 0 {
			sortEntries(es)
			return es[len(es)-1], true, nil
		}
	}
	return Entry{}, false, nil
}

func sortEntries(es []Entry) {
	slices.SortStableFunc(es, func(x, y Entry) int {
		if c := x.LoadedAt.Compare(y.LoadedAt); c != 0 {
			return c
		}
		if c := strings.Compare(x.RunID, y.RunID); c != 0 {
			return c
		}
		return x.Seq - y.Seq
	})
}

// days lists the stream's day folders, oldest first.
func (a *Archive) days(streamID string) ([]string, error) {
	if err := checkStream(streamID); err != nil {
		return nil, err
	}
	des, err := fs.ReadDir(a.root.FS(), streamID)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("raw dir %s: %w", a.dir, err)
	}
	var out []string
	for _, de := range des {
		if de.IsDir() && dayRe.MatchString(de.Name()) {
			out = append(out, de.Name())
		}
	}
	slices.Sort(out)
	return out, nil
}

func (a *Archive) dayEntries(streamID, day string) ([]Entry, error) {
	files, err := fs.ReadDir(a.root.FS(), path.Join(streamID, day))
	if err != nil {
		return nil, fmt.Errorf("raw dir %s: %w", a.dir, err)
	}
	var out []Entry
	for _, f := range files {
		base, ok := strings.CutSuffix(f.Name(), metaSuffix)
		if !ok || !baseRe.MatchString(base) {
			continue
		}
		e, err := a.readEntry(streamID, day, base)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func (a *Archive) readEntry(streamID, day, base string) (Entry, error) {
	rel := path.Join(streamID, day, base+metaSuffix)
	f, err := a.root.Open(rel)
	if err != nil {
		return Entry{}, a.corrupt(rel, "%v", err)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxMetaBytes+1))
	_ = f.Close()
	if err != nil {
		return Entry{}, a.corrupt(rel, "%v", err)
	}
	if len(b) > MaxMetaBytes {
		return Entry{}, a.corrupt(rel, "metadata larger than %d bytes", MaxMetaBytes)
	}
	var j metaJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		// A newer format may have fields this version does not know: say
		// so rather than name the field.
		var probe struct {
			Format int `json:"format"`
		}
		if json.Unmarshal(b, &probe) == nil && probe.Format > Format {
			return Entry{}, a.corrupt(rel, "metadata format %d is not understood by this version (it reads formats 1 to %d): replay with the leadlex-etl that wrote it, or newer", probe.Format, Format)
		}
		return Entry{}, a.corrupt(rel, "metadata not understood: %v", err)
	}
	e, err := fromJSON(j)
	if err != nil {
		return Entry{}, a.corrupt(rel, "metadata not understood: %v", err)
	}
	switch {
	case e.StreamID != streamID:
		return Entry{}, a.corrupt(rel, "metadata names stream %q, but the file is in the folder of stream %s", e.StreamID, streamID)
	case e.LoadedAt.UTC().Format("20060102") != day:
		return Entry{}, a.corrupt(rel, "metadata says it was loaded at %s, not on the day of its folder %s", e.LoadedAt.UTC().Format(time.RFC3339Nano), day)
	case !strings.HasPrefix(base, baseName(e.LoadedAt, e.RequestID)):
		return Entry{}, a.corrupt(rel, "metadata (loaded at %s, request %q) does not match the file's name", e.LoadedAt.UTC().Format(time.RFC3339Nano), e.RequestID)
	case j.Body != base+bodySuffix:
		return Entry{}, a.corrupt(rel, "metadata names body %q, not %q", j.Body, base+bodySuffix)
	}
	e.Path = path.Join(streamID, day, base+bodySuffix)
	fi, err := a.root.Lstat(e.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Entry{}, a.corrupt(e.Path, "missing (its metadata %s is there)", base+metaSuffix)
	case err != nil:
		return Entry{}, a.corrupt(e.Path, "%v", err)
	case !fi.Mode().IsRegular():
		return Entry{}, a.corrupt(e.Path, "not a regular file")
	case fi.Size() != e.ZstdBytes:
		return Entry{}, a.corrupt(e.Path, "%d bytes, but %d were archived: truncated or altered", fi.Size(), e.ZstdBytes)
	}
	return e, nil
}

// Body is an archived body being read back. Read returns the CSV as the
// API sent it (the key redacted); a file that does not decompress, or
// holds more or fewer bytes than archived, ends in a *CorruptError.
type Body struct {
	a    *Archive
	e    Entry
	f    *os.File
	dec  *zstd.Decoder
	sum  hash.Hash // nil: no digest archived (format 1)
	n    int64
	err  error
	done bool
}

// Open opens an entry's body for reading. The caller closes it.
func (a *Archive) Open(e Entry) (*Body, error) {
	f, err := a.root.Open(e.Path)
	if err != nil {
		return nil, a.corrupt(e.Path, "%v", err)
	}
	a.mu.Lock()
	dec := a.dec
	a.dec = nil
	a.mu.Unlock()
	if dec == nil {
		// Bounded memory whatever the file says of its window.
		dec, err = zstd.NewReader(f, zstd.WithDecoderConcurrency(2), zstd.WithDecoderMaxWindow(64<<20), zstd.WithDecoderMaxMemory(1<<30))
	} else {
		err = dec.Reset(f)
	}
	if err != nil {
		_ = f.Close()
		if dec != nil {
			dec.Close()
		}
		return nil, a.corrupt(e.Path, "%v", err)
	}
	b := &Body{a: a, e: e, f: f, dec: dec}
	if e.BodySHA256 != "" {
		b.sum = sha256.New()
	}
	return b, nil
}

// Read implements io.Reader.
func (b *Body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.done {
		return 0, io.EOF
	}
	// Never more than archived: a body that grows is not this one.
	if rest := b.e.Bytes - b.n + 1; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := b.dec.Read(p)
	b.n += int64(n)
	if b.sum != nil {
		b.sum.Write(p[:n])
	}
	switch {
	case b.n > b.e.Bytes:
		b.err = b.a.corrupt(b.e.Path, "holds more than the %d bytes archived", b.e.Bytes)
		return 0, b.err
	case err == io.EOF && b.n != b.e.Bytes:
		b.err = b.a.corrupt(b.e.Path, "holds %d bytes, %d were archived: truncated", b.n, b.e.Bytes)
		return n, b.err
	case err == io.EOF && b.sum != nil && hex.EncodeToString(b.sum.Sum(nil)) != b.e.BodySHA256:
		b.err = b.a.corrupt(b.e.Path, "its contents are not the body archived (their SHA-256 is not the metadata's body_sha256): altered, or not this window's")
		return n, b.err
	case err == io.EOF:
		b.done = true
	case err != nil:
		b.err = b.a.corrupt(b.e.Path, "%v", err)
		return n, b.err
	}
	return n, err
}

// Close releases the body.
func (b *Body) Close() error {
	if b.dec == nil {
		return nil
	}
	err := b.f.Close()
	dec := b.dec
	b.dec = nil
	if b.err != nil {
		// A decoder that met a broken stream starts afresh.
		dec.Close()
		return err
	}
	b.a.mu.Lock()
	if b.a.dec == nil {
		b.a.dec = dec
	} else {
		dec.Close()
	}
	b.a.mu.Unlock()
	return err
}
