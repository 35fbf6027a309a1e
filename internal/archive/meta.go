package archive

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"time"

	"github.com/leadlex/leadlex-etl/internal/extract"
)

// metaJSON is the metadata file: instants in RFC 3339 UTC with
// nanoseconds, "" for an open bound. Format 2 adds BodySHA256 and Digest.
type metaJSON struct {
	Format       int    `json:"format"`
	StreamID     string `json:"stream_id"`
	Identity     string `json:"identity"`
	RunID        string `json:"run_id"`
	RunStartedAt string `json:"run_started_at"`
	RunSince     string `json:"run_since"`
	RunUntil     string `json:"run_until"`
	Seq          int    `json:"seq"`

	Window  windowJSON  `json:"window"`
	Request requestJSON `json:"request"`

	RequestID  string `json:"request_id"`
	ReceivedAt string `json:"received_at"`
	LoadedAt   string `json:"loaded_at"`

	Rows    int64 `json:"rows"`
	Rejects int64 `json:"rejects"`
	Calls   int   `json:"calls"`

	Pending       []windowJSON `json:"pending"`
	Refresh       bool         `json:"refresh"`
	Deletes       []windowJSON `json:"deletes"`
	HardDelete    bool         `json:"hard_delete"`
	RefreshMinAge string       `json:"refresh_min_age"`
	StateAfter    string       `json:"state_after"`
	// Absent from the archives of versions before them.
	HistoryStart   string  `json:"history_start,omitempty"`
	KeyFingerprint string  `json:"key_fingerprint,omitempty"`
	MaxDeleteRatio float64 `json:"max_delete_ratio,omitempty"`
	DeletesAllowed int64   `json:"deletes_allowed,omitempty"`

	Body       string `json:"body"`
	Bytes      int64  `json:"bytes"`
	ZstdBytes  int64  `json:"zstd_bytes"`
	BodySHA256 string `json:"body_sha256,omitempty"`
	// Digest is the SHA-256 of the metadata itself (see digest).
	Digest string `json:"digest,omitempty"`
}

// digest is the SHA-256, in hex, of the metadata as compact JSON with its
// Digest empty: a hand edit of any field that does not recompute it shows.
// It binds the metadata to its body through BodySHA256. It is no
// signature: whoever rewrites a file and its digest together can forge a
// window, as they could the CSV it came from.
func (j metaJSON) digest() string {
	j.Digest = ""
	b, _ := json.Marshal(j)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

type windowJSON struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// requestJSON is the export request as sent.
type requestJSON struct {
	CreatedAfter  string   `json:"created_after"`
	CreatedBefore string   `json:"created_before"`
	Limit         int      `json:"limit"`
	ListID        string   `json:"list_id"`
	Tags          []string `json:"tags"`
	Fields        []string `json:"fields"`
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func parseTime(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", name, err)
	}
	return t.UTC(), nil
}

func toWindowJSON(w extract.Window) windowJSON {
	return windowJSON{From: fmtTime(w.From), To: fmtTime(w.To)}
}

func toWindowsJSON(ws []extract.Window) []windowJSON {
	out := make([]windowJSON, len(ws))
	for i, w := range ws {
		out[i] = toWindowJSON(w)
	}
	return out
}

func fromWindowJSON(name string, j windowJSON) (extract.Window, error) {
	var w extract.Window
	var err error
	if w.From, err = parseTime(name+".from", j.From); err != nil {
		return w, err
	}
	if w.To, err = parseTime(name+".to", j.To); err != nil {
		return w, err
	}
	if !w.From.IsZero() && !w.To.IsZero() && !w.To.After(w.From) {
		return w, fmt.Errorf("%s ends before it starts", name)
	}
	return w, nil
}

func fromWindowsJSON(name string, js []windowJSON) ([]extract.Window, error) {
	var out []extract.Window
	for i, j := range js {
		w, err := fromWindowJSON(fmt.Sprintf("%s[%d]", name, i), j)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

func toJSON(e Entry) metaJSON {
	m := e.Meta
	_, name := path.Split(e.Path)
	return metaJSON{
		Format: Format, StreamID: m.StreamID, Identity: m.Identity, RunID: m.RunID,
		RunStartedAt: fmtTime(m.RunStartedAt), RunSince: fmtTime(m.RunSince), RunUntil: fmtTime(m.RunUntil), Seq: m.Seq,
		Window: toWindowJSON(m.Window),
		Request: requestJSON{
			CreatedAfter: fmtTime(m.Query.CreatedAfter), CreatedBefore: fmtTime(m.Query.CreatedBefore), Limit: m.Query.Limit,
			ListID: m.Query.ListID, Tags: m.Query.Tags, Fields: m.Query.Fields,
		},
		RequestID: m.RequestID, ReceivedAt: fmtTime(m.ReceivedAt), LoadedAt: fmtTime(m.LoadedAt),
		Rows: m.Rows, Rejects: m.Rejects, Calls: m.Calls,
		Pending: toWindowsJSON(m.Pending), Refresh: m.Refresh, Deletes: toWindowsJSON(m.Deletes), HardDelete: m.HardDelete,
		RefreshMinAge: m.RefreshMinAge.String(), StateAfter: m.StateAfter, HistoryStart: fmtTime(m.HistoryStart), KeyFingerprint: m.KeyFingerprint,
		MaxDeleteRatio: m.MaxDeleteRatio, DeletesAllowed: m.DeletesAllowed,
		Body: name, Bytes: m.Bytes, ZstdBytes: e.ZstdBytes, BodySHA256: m.BodySHA256,
	}
}

// sealed is j with its digest set.
func (j metaJSON) sealed() metaJSON {
	j.Digest = j.digest()
	return j
}

// fromJSON converts and checks metadata read back: its digest (from
// format 2), every instant parses, counts are not negative, the run and
// request are named, and the fields agree with each other (checkMeta).
func fromJSON(j metaJSON) (Entry, error) {
	switch {
	case j.Format < 1 || j.Format > Format:
		return Entry{}, fmt.Errorf("format %d, this version reads formats 1 to %d", j.Format, Format)
	case j.Format == 1 && (j.Digest != "" || j.BodySHA256 != ""):
		return Entry{}, errors.New("digest and body_sha256 are not fields of format 1")
	case j.Format >= 2 && !sha256Re.MatchString(j.BodySHA256):
		return Entry{}, fmt.Errorf("body_sha256 %q is not a SHA-256 in hex", j.BodySHA256)
	case j.Format >= 2 && j.Digest != j.digest():
		return Entry{}, errors.New("digest: the file's contents are not what its digest was computed from: it was altered")
	}
	var e Entry
	m := &e.Meta
	var err error
	m.StreamID, m.Identity, m.RunID, m.Seq, m.RequestID = j.StreamID, j.Identity, j.RunID, j.Seq, j.RequestID
	if err := checkStream(m.StreamID); err != nil {
		return e, err
	}
	if m.Identity == "" || m.RunID == "" || m.RequestID == "" {
		return e, errors.New("identity, run_id and request_id must be set")
	}
	if m.Seq < 1 || j.Rows < 0 || j.Rejects < 0 || j.Rejects > j.Rows || j.Calls < 0 || j.Bytes < 0 || j.ZstdBytes <= 0 {
		return e, errors.New("seq, rows, rejects, calls, bytes or zstd_bytes out of range")
	}
	for _, f := range []struct {
		dst  *time.Time
		name string
		s    string
	}{
		{&m.RunStartedAt, "run_started_at", j.RunStartedAt}, {&m.RunSince, "run_since", j.RunSince}, {&m.RunUntil, "run_until", j.RunUntil},
		{&m.ReceivedAt, "received_at", j.ReceivedAt}, {&m.LoadedAt, "loaded_at", j.LoadedAt}, {&m.HistoryStart, "history_start", j.HistoryStart},
		{&m.Query.CreatedAfter, "request.created_after", j.Request.CreatedAfter}, {&m.Query.CreatedBefore, "request.created_before", j.Request.CreatedBefore},
	} {
		if *f.dst, err = parseTime(f.name, f.s); err != nil {
			return e, err
		}
	}
	if m.LoadedAt.IsZero() {
		return e, errors.New("loaded_at must be set")
	}
	if m.Window, err = fromWindowJSON("window", j.Window); err != nil {
		return e, err
	}
	if m.Pending, err = fromWindowsJSON("pending", j.Pending); err != nil {
		return e, err
	}
	if m.Deletes, err = fromWindowsJSON("deletes", j.Deletes); err != nil {
		return e, err
	}
	if j.Request.Limit < 1 || j.Request.Limit > extract.MaxLimit {
		return e, fmt.Errorf("request.limit %d is not between 1 and %d", j.Request.Limit, extract.MaxLimit)
	}
	m.Query.Limit, m.Query.ListID, m.Query.Tags, m.Query.Fields = j.Request.Limit, j.Request.ListID, j.Request.Tags, j.Request.Fields
	if m.RefreshMinAge, err = time.ParseDuration(j.RefreshMinAge); err != nil || m.RefreshMinAge < 0 {
		return e, fmt.Errorf("refresh_min_age %q is not a duration", j.RefreshMinAge)
	}
	m.Rows, m.Rejects, m.Calls, m.Refresh, m.HardDelete, m.StateAfter, m.Bytes = j.Rows, j.Rejects, j.Calls, j.Refresh, j.HardDelete, j.StateAfter, j.Bytes
	m.KeyFingerprint = j.KeyFingerprint
	if j.MaxDeleteRatio < 0 || j.MaxDeleteRatio > 1 || j.DeletesAllowed < 0 {
		return e, errors.New("max_delete_ratio or deletes_allowed out of range")
	}
	m.MaxDeleteRatio, m.DeletesAllowed = j.MaxDeleteRatio, j.DeletesAllowed
	m.BodySHA256 = j.BodySHA256
	e.ZstdBytes = j.ZstdBytes
	return e, checkMeta(m)
}
