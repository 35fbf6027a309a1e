package fakeapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// MaxLimit is the largest limit an export request may ask for.
const MaxLimit = 50000

// DefaultLimit is the limit of a request that does not give one.
const DefaultLimit = 10000

// flushEvery is how many body bytes the server buffers before flushing a
// chunk to the client.
const flushEvery = 64 << 10

var listIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ServeHTTP answers GET /v1/contacts/export as the spec describes, 404 for
// any other path and 405 for other methods on the export path. A cut fault
// aborts the connection with panic(http.ErrAbortHandler), which net/http's
// server handles; call ServeHTTP through an http.Server, not a bare
// ResponseRecorder, when faults are enabled.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := s.requestID()
	s.setDate(w.Header())
	auth := r.Header.Get("Authorization")
	if _, token, ok := strings.Cut(auth, " "); ok && s.echoes(EchoRequestID) {
		id += "." + token
	}
	w.Header().Set("X-Request-ID", id)
	fail := func(status int, code, msg string) {
		if s.echoes(EchoErrors) {
			msg += fmt.Sprintf(" (request had Authorization: %s)", auth)
		}
		s.writeError(w, r, id, status, code, msg)
	}
	if r.URL.Path == MutatePath && s.cfg.Control {
		s.serveMutate(w, r, id)
		return
	}
	if r.URL.Path != ExportPath {
		fail(http.StatusNotFound, "not_found", fmt.Sprintf("no such endpoint: %s (the export is GET %s)", clip(r.URL.Path), ExportPath))
		return
	}
	s.requests.Add(1)
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		fail(http.StatusMethodNotAllowed, "method_not_allowed", fmt.Sprintf("method %s is not allowed on %s; use GET", clip(r.Method), ExportPath))
		return
	}
	if s.cfg.RedirectTo != "" {
		http.Redirect(w, r, strings.TrimRight(s.cfg.RedirectTo, "/")+r.URL.RequestURI(), http.StatusFound)
		return
	}

	key, msg := s.authenticate(auth)
	if msg != "" {
		fail(http.StatusUnauthorized, "invalid_key", msg)
		return
	}
	if !key.ReadContacts {
		fail(http.StatusForbidden, "insufficient_permissions", "this API key lacks the read:contacts permission needed to export contacts")
		return
	}

	lim := s.admit(key.Workspace)
	if s.cfg.RateLimit > 0 {
		s.setLimitHeaders(w.Header(), lim)
	}
	if !lim.admitted {
		wait := ceilSeconds(lim.reset.Sub(lim.now))
		switch s.cfg.BadReset {
		case BadResetZero:
			w.Header().Set("Retry-After", "0")
		case BadResetPast, BadResetFar:
		case BadResetDate:
			w.Header().Set("Retry-After", FarDate)
		default:
			w.Header().Set("Retry-After", strconv.FormatInt(wait, 10))
		}
		fail(http.StatusTooManyRequests, "rate_limited",
			fmt.Sprintf("export is rate-limited to %d calls per %s per workspace; retry in %d s", s.cfg.RateLimit, hourName(s.cfg.Hour), wait))
		return
	}

	dec := s.nextDecision()
	if dec.status != 0 {
		fail(dec.status, "internal_error", fmt.Sprintf("internal error (HTTP %d); retry later", dec.status))
		return
	}
	q, err := s.parseQuery(r.URL.RawQuery)
	if err != nil {
		fail(http.StatusBadRequest, "validation_error", err.Error())
		return
	}
	if s.cfg.StallAfter == StallHeaders {
		<-r.Context().Done()
		return
	}
	s.stream(w, r, s.WorkspaceDataset(key.Workspace), q, dec)
}

// authenticate returns the key named by an Authorization header, or the
// message of a 401. The message never repeats the token.
func (s *Server) authenticate(header string) (Key, string) {
	if header == "" {
		return Key{}, `missing Authorization header; send "Authorization: Bearer <api key>"`
	}
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || strings.ContainsAny(token, " \t") {
		return Key{}, `malformed Authorization header; expected "Bearer <api key>"`
	}
	key, ok := s.keys[token]
	if !ok {
		return Key{}, "invalid or expired API key"
	}
	return key, ""
}

func (s *Server) setLimitHeaders(h http.Header, lim limitState) {
	h.Set("X-RateLimit-Limit", strconv.Itoa(s.cfg.RateLimit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(lim.remaining))
	at := lim.reset
	switch s.cfg.BadReset {
	case BadResetZero:
		at = lim.now
	case BadResetPast:
		at = lim.now.Add(-time.Hour)
	case BadResetFar:
		at = lim.now.AddDate(50, 0, 0)
	}
	var reset int64
	switch {
	case s.cfg.ResetStyle == ResetDelta && !at.After(lim.now):
		reset = int64(at.Sub(lim.now) / time.Second) // 0 or negative: a lie a client must survive
	case s.cfg.ResetStyle == ResetDelta:
		reset = ceilSeconds(at.Sub(lim.now))
	case s.cfg.BadReset == BadResetZero || s.cfg.BadReset == BadResetPast:
		reset = at.Unix() // rounded down: not even a fraction of a second ahead
	default:
		reset = at.Unix()
		if at.Nanosecond() > 0 {
			reset++
		}
	}
	h.Set("X-RateLimit-Reset", strconv.FormatInt(reset, 10))
}

// ceilSeconds returns d in whole seconds, rounded up, at least 1.
func ceilSeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

func hourName(d time.Duration) string {
	if d == time.Hour {
		return "hour"
	}
	return d.String()
}

// errorBody is the JSON body of every error response.
type errorBody struct {
	Error struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		RequestID string `json:"request_id"`
	} `json:"error"`
}

// writeError writes an error response of the export endpoint, its message
// padded by Config.ErrorBody, and counts its bytes.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, id string, status int, code, msg string) {
	if s.cfg.ErrorBody == 0 {
		s.errorBytes.Add(int64(writeError(w, id, status, code, msg)))
		return
	}
	// The message comes last and is left open for the padding.
	head, _ := json.Marshal(struct {
		Code      string `json:"code"`
		RequestID string `json:"request_id"`
	}{code, id})
	quoted, _ := json.Marshal(msg + " ")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	rc := http.NewResponseController(w)
	write := func(b []byte) bool {
		n, err := w.Write(b)
		s.errorBytes.Add(int64(n))
		return err == nil && rc.Flush() == nil && r.Context().Err() == nil
	}
	if !write([]byte(`{"error":` + string(head[:len(head)-1]) + `,"message":` + string(quoted[:len(quoted)-1]))) {
		return
	}
	pad := bytes.Repeat([]byte("padding "), 4096)
	for left := s.cfg.ErrorBody; left != 0; {
		chunk := pad
		if left > 0 {
			chunk = pad[:min(left, len(pad))]
			left -= len(chunk)
		}
		if !write(chunk) {
			return
		}
	}
	write([]byte("\"}}\n"))
}

// writeError writes a JSON error response and returns the bytes of its body
// written.
func writeError(w http.ResponseWriter, id string, status int, code, msg string) int {
	var b errorBody
	b.Error.Code, b.Error.Message, b.Error.RequestID = code, msg, id
	body, _ := json.Marshal(b) // cannot fail for strings
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	n, _ := w.Write(append(body, '\n'))
	return n
}

// query is a validated export request.
type query struct {
	limit   int
	lo, hi  int64 // creation time bounds in Unix microseconds, both inclusive
	tags    uint16
	list    uint32
	nothing bool // a filter no contact can match (unknown tag or list)
	fields  []field
}

// clip shortens a client-supplied value for an error message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

func (s *Server) parseQuery(raw string) (query, error) {
	q := query{limit: DefaultLimit, lo: math.MinInt64, hi: math.MaxInt64, fields: defaultFieldIDs}
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return q, fmt.Errorf("malformed query string: %v", err)
	}
	single := func(name string) (string, bool, error) {
		vs, ok := vals[name]
		if !ok {
			return "", false, nil
		}
		if len(vs) > 1 {
			return "", false, fmt.Errorf("%s must be given at most once, got %d values", name, len(vs))
		}
		return vs[0], true, nil
	}

	if v, ok, err := single("limit"); err != nil {
		return q, err
	} else if ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			return q, fmt.Errorf("limit must be an integer between 1 and %d, got %q", MaxLimit, clip(v))
		}
		if n < 1 || n > MaxLimit {
			return q, fmt.Errorf("limit must be between 1 and %d, got %d", MaxLimit, n)
		}
		q.limit = n
	}

	var after, before time.Time
	var hasAfter, hasBefore bool
	if v, ok, err := single("created_after"); err != nil {
		return q, err
	} else if ok {
		if after, err = parseTimeParam("created_after", v); err != nil {
			return q, err
		}
		hasAfter = true
	}
	if v, ok, err := single("created_before"); err != nil {
		return q, err
	} else if ok {
		if before, err = parseTimeParam("created_before", v); err != nil {
			return q, err
		}
		hasBefore = true
	}
	if hasAfter && hasBefore && after.After(before) {
		return q, fmt.Errorf("created_after (%s) must not be later than created_before (%s)",
			after.Format(time.RFC3339Nano), before.Format(time.RFC3339Nano))
	}
	// The bounds are kept at the server's precision, then made inclusive
	// bounds in microseconds, the precision of created_at.
	if unit := s.cfg.BoundPrecision.unit(); unit > 0 {
		after, before = after.Truncate(unit), before.Truncate(unit)
	}
	if hasAfter {
		q.lo = ceilMicro(after)
		if s.cfg.Bounds == BoundsExclusive {
			q.lo = after.UnixMicro() + 1
		}
	}
	if hasBefore {
		q.hi = before.UnixMicro()
		if s.cfg.Bounds != BoundsInclusive {
			q.hi = ceilMicro(before) - 1
		}
	}
	if s.cfg.IgnoreBounds {
		q.lo, q.hi = math.MinInt64, math.MaxInt64
	}

	if v, ok, err := single("list_id"); err != nil {
		return q, err
	} else if ok {
		if !listIDPattern.MatchString(v) {
			return q, fmt.Errorf("list_id must match %s, got %q", listIDPattern, clip(v))
		}
		if k := slices.Index(listIDs, v); k >= 0 {
			q.list = 1 << k
		} else {
			q.nothing = true
		}
	}

	for _, v := range vals["tag"] {
		if v == "" {
			return q, fmt.Errorf("tag must not be empty")
		}
		if k := slices.Index(tagVocabulary, v); k >= 0 {
			q.tags |= 1 << k
		} else {
			q.nothing = true
		}
	}

	if v, ok, err := single("fields"); err != nil {
		return q, err
	} else if ok {
		if v == "" {
			return q, fmt.Errorf("fields must not be empty; omit it for the default set (%s)", strings.Join(DefaultFields, ","))
		}
		names := strings.Split(v, ",")
		q.fields = make([]field, 0, len(names))
		var seen [numFields]bool
		for k, n := range names {
			f, ok := fieldByName[n]
			switch {
			case n == "":
				return q, fmt.Errorf("fields has an empty name at position %d in %q", k+1, clip(v))
			case !ok:
				return q, fmt.Errorf("fields has unknown field %q; known fields: %s", clip(n), strings.Join(fieldNames[:], ","))
			case seen[f]:
				return q, fmt.Errorf("fields names %q more than once", n)
			}
			seen[f] = true
			q.fields = append(q.fields, f)
		}
	}
	return q, nil
}

// ceilMicro returns t in Unix microseconds, rounded up.
func ceilMicro(t time.Time) int64 {
	us := t.UnixMicro()
	if t.Nanosecond()%1000 != 0 {
		us++
	}
	return us
}

// parseTimeParam parses an ISO 8601 bound: RFC 3339 with optional fractional
// seconds, or a plain date meaning midnight UTC.
func parseTimeParam(name, v string) (time.Time, error) {
	if len(v) == len("2006-01-02") {
		if t, err := time.Parse(time.DateOnly, v); err == nil {
			return t, nil
		}
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err == nil {
		return t, nil
	}
	hint := ""
	if strings.Contains(v, " ") && strings.Contains(v, "T") {
		hint = ` (a "+" in a query string must be encoded as %2B)`
	}
	return time.Time{}, fmt.Errorf("%s must be an ISO 8601 date or date-time such as 2026-04-15 or 2026-04-15T09:00:00Z, got %q%s", name, clip(v), hint)
}

// selectRows returns the indexes of the rows to write, in order.
func (s *Server) selectRows(d *Dataset, q query) []int32 {
	if q.nothing || q.lo > q.hi {
		return nil
	}
	from, to := d.search(q.lo, q.hi)
	match := func(i int) bool {
		if d.deleted != nil && d.deleted[int32(i)] {
			return false
		}
		if q.tags != 0 {
			if m, _ := d.tagInfo(i); m&q.tags != q.tags {
				return false
			}
		}
		return q.list == 0 || d.listMask(i)&q.list != 0
	}
	if d.moved != nil {
		return s.selectMoved(d, q, match)
	}
	rows := make([]int32, 0, min(q.limit, to-from))
	switch s.cfg.Order {
	case OrderDesc:
		for i := to - 1; i >= from && len(rows) < q.limit; i-- {
			if match(i) {
				rows = append(rows, int32(i))
			}
		}
	case OrderRandom:
		rows = d.randomFirst(from, to, q.limit, match)
	default:
		for i := from; i < to && len(rows) < q.limit; i++ {
			if match(i) {
				rows = append(rows, int32(i))
			}
		}
	}
	return rows
}

// randomFirst returns the k matching indexes in [from, to) of smallest rank,
// by rank: the first k of the window in the random order. It keeps a
// max-heap of the best k seen.
func (d *Dataset) randomFirst(from, to, k int, match func(int) bool) []int32 {
	type item struct {
		rank uint64
		i    int32
	}
	h := make([]item, 0, min(k, to-from))
	down := func(j int) {
		for {
			c := 2*j + 1
			if c >= len(h) {
				return
			}
			if c+1 < len(h) && h[c+1].rank > h[c].rank {
				c++
			}
			if h[j].rank >= h[c].rank {
				return
			}
			h[j], h[c] = h[c], h[j]
			j = c
		}
	}
	for i := from; i < to; i++ {
		if !match(i) {
			continue
		}
		r := d.rank(i)
		if len(h) < k {
			h = append(h, item{r, int32(i)})
			for j := len(h) - 1; j > 0; {
				p := (j - 1) / 2
				if h[p].rank >= h[j].rank {
					break
				}
				h[p], h[j] = h[j], h[p]
				j = p
			}
		} else if r < h[0].rank {
			h[0] = item{r, int32(i)}
			down(0)
		}
	}
	slices.SortFunc(h, func(a, b item) int {
		if a.rank < b.rank {
			return -1
		}
		return 1
	})
	rows := make([]int32, len(h))
	for j, it := range h {
		rows[j] = it.i
	}
	return rows
}

// rowRenderer turns contacts into CSV records, reusing its buffers; a
// record is valid until the next call.
type rowRenderer struct {
	d    *Dataset
	tf   TimeFormat
	fs   []field
	p    parts
	buf  []byte
	ends []int
	rec  []string
}

func (rr *rowRenderer) record(i int) []string {
	rr.d.gen(i, &rr.p)
	rr.buf, rr.ends = rr.buf[:0], rr.ends[:0]
	for _, f := range rr.fs {
		rr.buf = rr.p.appendField(rr.buf, f, rr.tf)
		rr.ends = append(rr.ends, len(rr.buf))
	}
	// The record's strings alias buf, which the next call overwrites: the
	// caller must be done with them (csv.Writer.Write copies) by then.
	// Aliasing saves an allocation per row.
	start := 0
	for k, end := range rr.ends {
		if end > start {
			rr.rec[k] = unsafe.String(&rr.buf[start], end-start)
		} else {
			rr.rec[k] = ""
		}
		start = end
	}
	return rr.rec
}

// stream writes the 200 response: the header row, then the selected rows,
// flushing every flushEvery bytes, pausing between chunks when slow and
// dropping the connection half-way when cut; and, when configured, going on
// past the rows (Overrun), falling silent (StallAfter) or echoing the key
// (EchoBody).
func (s *Server) stream(w http.ResponseWriter, r *http.Request, d *Dataset, q query, dec decision) {
	rows := s.selectRows(d, q)
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="contacts-export.csv"`)
	if dec.cut && s.cfg.CutStyle == CutClose {
		closeDelimited(h)
	}
	w.WriteHeader(http.StatusOK)

	ctx := r.Context()
	rc := http.NewResponseController(w)
	var out io.Writer = w
	if s.cfg.Trickle > 0 {
		out = &trickleWriter{w: w, rc: rc, ctx: ctx, every: s.cfg.Trickle}
	}
	bw := bufio.NewWriterSize(out, 2*flushEvery)
	cw := csv.NewWriter(bw)
	cw.UseCRLF = true
	// flush sends what is buffered as a chunk; it reports false once the
	// client is gone.
	flush := func() bool {
		cw.Flush()
		if cw.Error() != nil || rc.Flush() != nil {
			return false
		}
		if dec.slow {
			t := time.NewTimer(s.cfg.SlowDelay)
			defer t.Stop()
			select {
			case <-ctx.Done():
				return false
			case <-t.C:
			}
		}
		return ctx.Err() == nil
	}

	rr := &rowRenderer{d: d, tf: s.cfg.TimeFormat, fs: q.fields, rec: make([]string, len(q.fields))}
	lay := s.layout(q.fields)
	header := lay.header()
	cut := len(rows)
	if dec.cut {
		cut = len(rows) / 2
	}
	if dec.cut && cut == 0 && len(rows) == 0 {
		s.abort(bw, rc, header)
	}
	// The first flush makes the response chunked even when it is small.
	if cw.Write(header) != nil || !flush() {
		return
	}
	n := cut
	if !dec.cut && len(rows) > 0 {
		switch {
		case s.cfg.Overrun == OverrunEndless:
			n = math.MaxInt
		case s.cfg.Overrun > 0:
			n += s.cfg.Overrun
		}
	}
	stall := -1
	if s.cfg.StallAfter > 0 {
		stall = min(s.cfg.StallAfter, n)
	}
	echo := s.echoes(EchoBody)
	auth := r.Header.Get("Authorization")
	_, token, _ := strings.Cut(auth, " ")
	for k := 0; k < n; k++ {
		if k == stall {
			flush()
			<-ctx.Done()
			return
		}
		rec := rr.record(int(rows[k%len(rows)]))
		if echo && k < 2 {
			for c, f := range q.fields {
				switch {
				case k == 0 && fieldNames[f] == "full_name":
					rec[c] = "echo " + auth
				case k == 1 && fieldNames[f] == "id":
					rec[c] = token
				}
			}
		}
		if writeRecord(cw, bw, lay.apply(rec, int(rows[k%len(rows)]))) != nil {
			return
		}
		if bw.Buffered() >= flushEvery && !flush() {
			return
		}
	}
	if n == stall {
		flush()
		<-ctx.Done()
		return
	}
	if dec.cut {
		cw.Flush()
		s.abort(bw, rc, lay.apply(rr.record(int(rows[cut])), int(rows[cut])))
	}
	flush()
}

// trickleWriter sends what is written to it one byte at a time, flushed,
// every apart, until the client goes away.
type trickleWriter struct {
	w     io.Writer
	rc    *http.ResponseController
	ctx   context.Context
	every time.Duration
}

func (t *trickleWriter) Write(p []byte) (int, error) {
	for i := range p {
		if _, err := t.w.Write(p[i : i+1]); err != nil {
			return i, err
		}
		if err := t.rc.Flush(); err != nil {
			return i + 1, err
		}
		tm := time.NewTimer(t.every)
		select {
		case <-t.ctx.Done():
			tm.Stop()
			return i + 1, t.ctx.Err()
		case <-tm.C:
		}
	}
	return len(p), nil
}

// columnLayout is the order of a response's columns: slot k holds the
// requested field slots[k], or, when slots[k] < 0, the extra column
// -slots[k]-1.
type columnLayout struct {
	fields []field
	slots  []int
	out    []string
}

// layout returns the columns of the next response: the requested fields in
// their order, or shuffled, with ExtraColumns added at random places.
func (s *Server) layout(fields []field) *columnLayout {
	l := &columnLayout{fields: fields}
	for k := range fields {
		l.slots = append(l.slots, k)
	}
	if !s.cfg.ShuffleColumns && s.cfg.ExtraColumns == 0 {
		return l
	}
	r := rand.New(rand.NewPCG(uint64(s.cfg.Seed), uint64(s.layouts.Add(1))))
	if s.cfg.ShuffleColumns {
		r.Shuffle(len(l.slots), func(i, j int) { l.slots[i], l.slots[j] = l.slots[j], l.slots[i] })
	}
	for e := 0; e < s.cfg.ExtraColumns; e++ {
		at := r.IntN(len(l.slots) + 1)
		if e == 0 && !s.cfg.ShuffleColumns {
			at = 0 // before id, where a positional reader looks for it
		}
		l.slots = slices.Insert(l.slots, at, -e-1)
	}
	l.out = make([]string, len(l.slots))
	return l
}

func (l *columnLayout) header() []string {
	h := make([]string, len(l.slots))
	for k, slot := range l.slots {
		if slot < 0 {
			h[k] = fmt.Sprintf("unrequested_%d", -slot)
		} else {
			h[k] = fieldNames[l.fields[slot]]
		}
	}
	return h
}

// apply returns rec, contact i's requested fields, in the layout's order.
func (l *columnLayout) apply(rec []string, i int) []string {
	if l.out == nil {
		return rec
	}
	for k, slot := range l.slots {
		switch {
		case slot >= 0:
			l.out[k] = rec[slot]
		case slot == -1:
			l.out[k] = fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i+1) // a UUID that is not the contact's
		default:
			l.out[k] = fmt.Sprintf("extra %d of %d", -slot, i)
		}
	}
	return l.out
}

// writeRecord writes one CSV record. encoding/csv writes a record of one
// empty field as an empty line, which readers skip; it is written as "" so
// that a single-column export keeps its empty rows. cw must write into bw
// itself (csv.NewWriter reuses a large enough *bufio.Writer), so the two
// writes stay in order.
func writeRecord(cw *csv.Writer, bw *bufio.Writer, rec []string) error {
	if len(rec) == 1 && rec[0] == "" {
		_, err := bw.WriteString("\"\"\r\n")
		return err
	}
	return cw.Write(rec)
}

// abort writes the first half of record, flushes it to the client and drops
// the connection, so that the client reads an unexpected EOF mid-row.
func (s *Server) abort(bw *bufio.Writer, rc *http.ResponseController, record []string) {
	var b bytes.Buffer
	cw := csv.NewWriter(&b)
	cw.UseCRLF = true
	_ = cw.Write(record)
	cw.Flush()
	line := b.Bytes()
	_, _ = bw.Write(line[:max(1, (len(line)-2)/2)])
	_ = bw.Flush()
	_ = rc.Flush()
	panic(http.ErrAbortHandler)
}

// MutatePath is the control endpoint that changes the workspace, served
// when Config.Control is set: POST with edit=N, delete=N and append=N to
// edit and delete N pseudo-random contacts and add N created now, and with
// move=N to change the created_at of N pseudo-random contacts to move_to
// (ISO 8601; default: now).
const MutatePath = "/_fake/mutate"

// serveMutate answers MutatePath with what it did, as JSON.
func (s *Server) serveMutate(w http.ResponseWriter, r *http.Request, id string) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, id, http.StatusMethodNotAllowed, "method_not_allowed", "use POST "+MutatePath+"?edit=N&delete=N&append=N&move=N")
		return
	}
	if _, msg := s.authenticate(r.Header.Get("Authorization")); msg != "" {
		writeError(w, id, http.StatusUnauthorized, "invalid_key", msg)
		return
	}
	n := map[string]int{}
	for _, name := range []string{"edit", "delete", "append", "move"} {
		v := r.URL.Query().Get(name)
		if v == "" {
			continue
		}
		k, err := strconv.Atoi(v)
		if err != nil || k < 0 || k > 1_000_000 {
			writeError(w, id, http.StatusBadRequest, "validation_error", fmt.Sprintf("%s must be a count between 0 and 1000000, got %q", name, clip(v)))
			return
		}
		n[name] = k
	}
	s.mu.Lock()
	r64 := rand.New(rand.NewPCG(uint64(s.cfg.Seed), s.mutations))
	s.mutations++
	s.mu.Unlock()
	total := s.Dataset().Len()
	pick := func(k int) []int {
		out := make([]int, 0, k)
		for range min(k, total) {
			out = append(out, r64.IntN(total))
		}
		return out
	}
	moveTo := s.now().Add(-time.Second)
	if v := r.URL.Query().Get("move_to"); v != "" {
		t, err := parseTimeParam("move_to", v)
		if err != nil {
			writeError(w, id, http.StatusBadRequest, "validation_error", err.Error())
			return
		}
		moveTo = t
	}
	edited, deleted, moved := pick(n["edit"]), pick(n["delete"]), pick(n["move"])
	s.Edit(edited...)
	s.Delete(deleted...)
	s.Move(moveTo, moved...)
	if err := s.Append(n["append"], s.now().Add(-time.Second)); err != nil {
		writeError(w, id, http.StatusBadRequest, "validation_error", err.Error())
		return
	}
	d := s.Dataset()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]int{"edited": len(edited), "deleted": len(deleted), "appended": n["append"], "moved": len(moved), "contacts": d.Len(), "live": d.Live()})
}
