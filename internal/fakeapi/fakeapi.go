// Package fakeapi owns a faithful local stand-in for the LeadLex
// GET /v1/contacts/export endpoint: a deterministic generated workspace of
// contacts, the endpoint's parameters, CSV body, errors and rate limit, and
// the faults a real service shows (5xx, cut and slow bodies), so that the
// rest of leadlex-etl can be tested and demonstrated without the real API.
// It must not import the product's other packages nor reach any network
// beyond the listener it is given.
package fakeapi

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ExportPath is the only path the server answers with data.
const ExportPath = "/v1/contacts/export"

// Order is the row order of an export response.
type Order string

// The row orders.
const (
	OrderAsc    Order = "asc"    // created_at ascending, ties in dataset order
	OrderDesc   Order = "desc"   // the exact reverse of OrderAsc
	OrderRandom Order = "random" // a fixed pseudo-random permutation, independent of time
)

// Bounds says whether created_after and created_before include a contact
// created exactly at the bound.
type Bounds string

// The bound rules.
const (
	BoundsInclusive Bounds = "inclusive" // after <= t <= before
	BoundsExclusive Bounds = "exclusive" // after < t < before
	BoundsMixed     Bounds = "mixed"     // after <= t < before
)

// Precision is how finely the server keeps the created_after and
// created_before it is sent before comparing them with created_at: the spec
// says nothing of it.
type Precision string

// The bound precisions. A coarser one truncates the bound (towards the
// past) to its unit, as a service that parses bounds into whole seconds
// would, and then applies Bounds.
const (
	PrecisionExact       Precision = "exact"       // as sent, to the nanosecond
	PrecisionMicrosecond Precision = "microsecond" // truncated to the microsecond
	PrecisionMillisecond Precision = "millisecond" // truncated to the millisecond, as a JavaScript Date keeps it
	PrecisionSecond      Precision = "second"      // truncated to the whole second
)

// unit is the duration a bound is truncated to; 0 keeps it as sent.
func (p Precision) unit() time.Duration {
	switch p {
	case PrecisionMicrosecond:
		return time.Microsecond
	case PrecisionMillisecond:
		return time.Millisecond
	case PrecisionSecond:
		return time.Second
	}
	return 0
}

// ResetStyle is how X-RateLimit-Reset is expressed.
type ResetStyle string

// The reset styles.
const (
	ResetEpoch ResetStyle = "epoch" // unix seconds of the reset, rounded up
	ResetDelta ResetStyle = "delta" // seconds until the reset, rounded up, at least 1
)

// TimeFormat is how created_at is written in a response body.
type TimeFormat string

// The time formats.
const (
	TimeUTC    TimeFormat = "utc"    // 2026-04-15T09:00:00Z
	TimeOffset TimeFormat = "offset" // the same instant with a per-row UTC offset, 2026-04-15T11:00:00+02:00
)

// BadReset is how the rate-limit headers misstate when the budget resets, as
// a broken or hostile service might. It applies when RateLimit is on.
type BadReset string

// The bad resets.
const (
	BadResetNone BadReset = "none"     // the headers tell the truth
	BadResetZero BadReset = "zero"     // a 429 says Retry-After: 0, and X-RateLimit-Reset is now
	BadResetPast BadReset = "past"     // X-RateLimit-Reset is an hour ago; a 429 has no Retry-After
	BadResetFar  BadReset = "far"      // X-RateLimit-Reset is 50 years ahead; a 429 has no Retry-After
	BadResetDate BadReset = "far-date" // a 429 says Retry-After: Wed, 21 Oct 2099 07:28:00 GMT
)

// FarDate is the Retry-After of BadResetDate.
const FarDate = "Wed, 21 Oct 2099 07:28:00 GMT"

// Echo is a place where the server repeats the API key a request carried,
// as a service with a debugging leftover might.
type Echo string

// The echoes.
const (
	EchoErrors    Echo = "errors"     // every JSON error message ends with the request's Authorization header
	EchoRequestID Echo = "request-id" // X-Request-ID is the request's id, a dot and the key
	EchoBody      Echo = "body"       // a CSV body's first row has full_name "echo " and the Authorization header; its second row's id is the key
)

// StallHeaders is Config.StallAfter for a server that accepts the request
// and never sends even the headers.
const StallHeaders = -1

// OverrunEndless is Config.Overrun for a body that never ends.
const OverrunEndless = -1

// ErrorBodyEndless is Config.ErrorBody for error bodies that never end.
const ErrorBodyEndless = -1

// The default API keys, both of workspace "demo".
const (
	DemoKey   = "wbk_demo_key"    // has read:contacts
	NoReadKey = "wbk_demo_noread" // lacks read:contacts
)

// Key is an API key the server accepts.
type Key struct {
	Token        string
	Workspace    string // rate limits are kept per workspace
	ReadContacts bool   // the read:contacts permission
}

// Workspace is a workspace with contacts of its own (Config.Workspaces).
type Workspace struct {
	Name     string
	Contacts int   // 0 means Config.Contacts
	Seed     int64 // seed of its contacts: another seed than Config.Seed gives other contacts
}

// MaxExtraColumns is the most columns ExtraColumns adds.
const MaxExtraColumns = 8

// MaxContacts is the largest dataset New builds.
const MaxContacts = 50_000_000

// Config describes the server's dataset and behaviour. The zero value is a
// valid configuration of 10,000 contacts with no rate limit and no faults.
type Config struct {
	Contacts   int           // dataset size; 0 means 10000
	Seed       int64         // seed of the dataset and of the random faults
	Order      Order         // "" means OrderAsc
	Bounds     Bounds        // "" means BoundsInclusive
	RateLimit  int           // counted calls per Hour per workspace; 0 means no limit
	Hour       time.Duration // length of a rate-limit window; 0 means one hour
	ResetStyle ResetStyle    // "" means ResetEpoch
	TimeFormat TimeFormat    // "" means TimeUTC
	Keys       []Key         // nil means DemoKey and NoReadKey
	// Workspaces gives workspaces contacts of their own: a key of a
	// workspace listed here exports that workspace's contacts, any other
	// key the main ones (Contacts, Seed), which Append, Edit and Delete
	// change. A destination synced with two workspaces' keys is how a
	// client learns to tell them apart.
	Workspaces []Workspace

	FailRate  float64       // probability that a counted call answers 500, 502 or 503
	CutRate   float64       // probability that a body is cut off mid-row and the connection dropped
	CutStyle  CutStyle      // how a cut body ends; "" means CutChunked
	SlowRate  float64       // probability that a body is streamed slowly
	SlowDelay time.Duration // pause between flushed chunks of a slow body; 0 means 50ms

	// Misbehaviour, to test what a client does with a broken or hostile API.
	BadReset BadReset // "" means BadResetNone
	// RedirectTo answers every export request with 302 Found to this base
	// URL followed by the request's path and query; "" never redirects.
	RedirectTo string
	// StallAfter makes every 200 body stop after this many data rows (or
	// before its end, if it has fewer) and hold the connection open, silent,
	// until the client goes away; StallHeaders sends not even the headers.
	// 0 never stalls.
	StallAfter int
	// Overrun makes a 200 body with rows go on past them by this many more,
	// repeating them from the first, as a server that ignores limit would;
	// OverrunEndless never ends. 0 keeps to the limit.
	Overrun int
	// IgnoreBounds checks created_after and created_before, then ignores
	// them: every call answers as if they were absent.
	IgnoreBounds bool
	// EchoKey lists where the server repeats the key a request carried.
	EchoKey []Echo
	// ShuffleColumns writes the columns of every response in its own
	// pseudo-random order instead of the order fields asked for.
	ShuffleColumns bool
	// Control serves MutatePath, a control endpoint that edits, deletes and
	// adds contacts, for demos of a workspace that changes.
	Control bool
	// Trickle makes every 200 body come one byte at a time, this long
	// apart, however long that takes; 0 streams it normally.
	Trickle time.Duration
	// ErrorBody pads the message of every JSON error body with this many
	// bytes of text; ErrorBodyEndless never ends the body. 0 sends the
	// error as it is.
	ErrorBody int
	// ExtraColumns adds this many columns nobody asked for to every
	// response, at pseudo-random places: the first holds a UUID (the kind
	// of value a reader that maps columns by position mistakes for the id),
	// the others text. At most 8.
	ExtraColumns int

	// BoundPrecision is how finely created_after and created_before are
	// kept before they are compared; "" means PrecisionExact.
	BoundPrecision Precision
	// SubSecond gives contacts creation times with microseconds: the
	// contacts of one second spread over it, some at the whole second,
	// some sharing one instant. Without it every contact is created at a
	// whole second.
	SubSecond bool

	Now func() time.Time // clock of the rate limiter; nil means time.Now
	// ClockSkew puts the server's clock this far ahead of Now (behind, if
	// negative), as on a server whose clock is off: its rate-limit
	// windows, X-RateLimit-Reset as epoch seconds and the Date header
	// follow it. At most MaxClockSkew either way.
	ClockSkew time.Duration
}

// Fault is a failure the server can be told to show on a call.
type Fault int

// The faults. FaultNone lets a queued call through normally.
const (
	FaultNone Fault = iota
	Fault500
	Fault503
	FaultCut
	FaultSlow
	Fault502
)

// String returns the fault's name.
func (f Fault) String() string {
	switch f {
	case FaultNone:
		return "none"
	case Fault500:
		return "500"
	case Fault502:
		return "502"
	case Fault503:
		return "503"
	case FaultCut:
		return "cut"
	case FaultSlow:
		return "slow"
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

// Server is the fake export API. It is safe for concurrent use.
type Server struct {
	cfg Config
	ds  atomic.Pointer[Dataset] // the workspace now; a mutation swaps in a new one
	// others are the contacts of Config.Workspaces, by name; they do not change.
	others map[string]*Dataset
	keys   map[string]Key
	now    func() time.Time
	// seq numbers the requests for their ids; idBase mixes in the seed.
	seq    atomic.Uint64
	idBase uint64

	requests   atomic.Int64
	calls      atomic.Int64
	errorBytes atomic.Int64  // bytes of error bodies written
	layouts    atomic.Uint64 // responses laid out with shuffled or extra columns

	mu        sync.Mutex
	mutations uint64             // MutatePath calls so far, for their random picks
	windows   map[string]*window // rate-limit windows by workspace
	queue     []Fault            // injected faults, next first
	faultRNG  *rand.Rand
}

// window is one workspace's current fixed rate-limit window.
type window struct {
	reset time.Time
	used  int
}

// New validates cfg, fills in its defaults and builds the dataset.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Contacts == 0 {
		cfg.Contacts = 10000
	}
	if cfg.Order == "" {
		cfg.Order = OrderAsc
	}
	if cfg.Bounds == "" {
		cfg.Bounds = BoundsInclusive
	}
	if cfg.BoundPrecision == "" {
		cfg.BoundPrecision = PrecisionExact
	}
	if cfg.Hour == 0 {
		cfg.Hour = time.Hour
	}
	if cfg.ResetStyle == "" {
		cfg.ResetStyle = ResetEpoch
	}
	if cfg.TimeFormat == "" {
		cfg.TimeFormat = TimeUTC
	}
	if cfg.SlowDelay == 0 {
		cfg.SlowDelay = 50 * time.Millisecond
	}
	if cfg.BadReset == "" {
		cfg.BadReset = BadResetNone
	}
	if cfg.CutStyle == "" {
		cfg.CutStyle = CutChunked
	}
	if cfg.Keys == nil {
		cfg.Keys = []Key{
			{Token: DemoKey, Workspace: "demo", ReadContacts: true},
			{Token: NoReadKey, Workspace: "demo"},
		}
	}
	s := &Server{
		cfg:      cfg,
		keys:     make(map[string]Key, len(cfg.Keys)),
		now:      cfg.Now,
		idBase:   mix64(uint64(cfg.Seed) ^ 0x5851f42d4c957f2d),
		windows:  make(map[string]*window),
		faultRNG: rand.New(rand.NewPCG(uint64(cfg.Seed), 0xfa17fa17fa17fa17)),
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.now = skewedClock(s.now, cfg.ClockSkew)
	ds := newDataset(cfg.Contacts, cfg.Seed)
	if cfg.SubSecond {
		ds = ds.withFractions()
	}
	s.ds.Store(ds)
	for _, w := range cfg.Workspaces {
		if s.others == nil {
			s.others = map[string]*Dataset{}
		}
		n := w.Contacts
		if n == 0 {
			n = cfg.Contacts
		}
		other := newDataset(n, w.Seed)
		if cfg.SubSecond {
			other = other.withFractions()
		}
		s.others[w.Name] = other
	}
	for _, k := range cfg.Keys {
		s.keys[k.Token] = k
	}
	return s, nil
}

func (c *Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("fakeapi: "+format, args...))
	}
	if c.Contacts < 0 || c.Contacts > MaxContacts {
		bad("Contacts %d out of range [0, %d]", c.Contacts, MaxContacts)
	}
	switch c.Order {
	case "", OrderAsc, OrderDesc, OrderRandom:
	default:
		bad("unknown Order %q (want asc, desc or random)", c.Order)
	}
	switch c.Bounds {
	case "", BoundsInclusive, BoundsExclusive, BoundsMixed:
	default:
		bad("unknown Bounds %q (want inclusive, exclusive or mixed)", c.Bounds)
	}
	switch c.BoundPrecision {
	case "", PrecisionExact, PrecisionMicrosecond, PrecisionMillisecond, PrecisionSecond:
	default:
		bad("unknown BoundPrecision %q (want exact, microsecond, millisecond or second)", c.BoundPrecision)
	}
	switch c.CutStyle {
	case "", CutChunked, CutClose:
	default:
		bad("unknown CutStyle %q (want chunked or mid-row-close)", c.CutStyle)
	}
	if c.ClockSkew > MaxClockSkew || c.ClockSkew < -MaxClockSkew {
		bad("ClockSkew %s is more than %s either way", c.ClockSkew, MaxClockSkew)
	}
	if c.Trickle < 0 {
		bad("negative Trickle %s", c.Trickle)
	}
	if c.ErrorBody < ErrorBodyEndless {
		bad("ErrorBody %d is neither a byte count nor ErrorBodyEndless", c.ErrorBody)
	}
	switch c.ResetStyle {
	case "", ResetEpoch, ResetDelta:
	default:
		bad("unknown ResetStyle %q (want epoch or delta)", c.ResetStyle)
	}
	switch c.TimeFormat {
	case "", TimeUTC, TimeOffset:
	default:
		bad("unknown TimeFormat %q (want utc or offset)", c.TimeFormat)
	}
	if c.RateLimit < 0 {
		bad("negative RateLimit %d", c.RateLimit)
	}
	if c.Hour < 0 {
		bad("negative Hour %s", c.Hour)
	}
	if c.SlowDelay < 0 {
		bad("negative SlowDelay %s", c.SlowDelay)
	}
	switch c.BadReset {
	case "", BadResetNone, BadResetZero, BadResetPast, BadResetFar, BadResetDate:
	default:
		bad("unknown BadReset %q (want none, zero, past, far or far-date)", c.BadReset)
	}
	if c.RedirectTo != "" {
		if u, err := url.Parse(c.RedirectTo); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("RedirectTo %q is not an http(s) URL", c.RedirectTo)
		}
	}
	if c.StallAfter < StallHeaders {
		bad("StallAfter %d is neither a row count nor StallHeaders", c.StallAfter)
	}
	if c.Overrun < OverrunEndless {
		bad("Overrun %d is neither a row count nor OverrunEndless", c.Overrun)
	}
	if c.ExtraColumns < 0 || c.ExtraColumns > MaxExtraColumns {
		bad("ExtraColumns %d must be between 0 and %d", c.ExtraColumns, MaxExtraColumns)
	}
	for _, e := range c.EchoKey {
		switch e {
		case EchoErrors, EchoRequestID, EchoBody:
		default:
			bad("unknown EchoKey %q (want errors, request-id or body)", e)
		}
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"FailRate", c.FailRate}, {"CutRate", c.CutRate}, {"SlowRate", c.SlowRate}} {
		if math.IsNaN(r.v) || r.v < 0 || r.v > 1 {
			bad("%s %v outside [0, 1]", r.name, r.v)
		}
	}
	names := map[string]bool{}
	for i, w := range c.Workspaces {
		switch {
		case w.Name == "":
			bad("Workspaces[%d] has an empty Name", i)
		case names[w.Name]:
			bad("Workspaces[%d] repeats the Name %q", i, w.Name)
		case w.Contacts < 0 || w.Contacts > MaxContacts:
			bad("Workspaces[%d] Contacts %d out of range [0, %d]", i, w.Contacts, MaxContacts)
		}
		names[w.Name] = true
	}
	seen := make(map[string]bool, len(c.Keys))
	for i, k := range c.Keys {
		switch {
		case k.Token == "":
			bad("Keys[%d] has an empty Token", i)
		case seen[k.Token]:
			bad("Keys[%d] repeats a Token", i)
		case k.Workspace == "":
			bad("Keys[%d] has an empty Workspace", i)
		}
		seen[k.Token] = true
	}
	return errors.Join(errs...)
}

// Dataset returns the contacts the server exports (to the keys of
// workspaces without contacts of their own).
func (s *Server) Dataset() *Dataset { return s.ds.Load() }

// WorkspaceDataset returns the contacts a key of workspace name exports.
func (s *Server) WorkspaceDataset(name string) *Dataset {
	if d := s.others[name]; d != nil {
		return d
	}
	return s.ds.Load()
}

// Append adds n contacts created at t (whole seconds), which must not be
// before the workspace's last contact: a workspace that grows, as the real
// one does between two syncs. Appended contacts take the next indexes.
func (s *Server) Append(n int, t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next, err := s.ds.Load().appended(n, t.Unix())
	if err != nil {
		return err
	}
	s.ds.Store(next)
	return nil
}

// Edit changes the contacts at the given indexes: each edit gives a contact
// new text fields (name, email, title, company, ...) and tags; its id and
// created_at stay. Editing a deleted contact brings it back.
func (s *Server) Edit(idx ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ds.Store(s.ds.Load().edited(idx))
}

// Delete removes the contacts at the given indexes from every export.
func (s *Server) Delete(idx ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ds.Store(s.ds.Load().without(idx))
}

// Calls returns the number of export requests that passed authentication and
// the rate limiter, and so counted against the limit (when there is one).
// Calls answered 400 or with an injected 5xx count too.
func (s *Server) Calls() int64 { return s.calls.Load() }

// ErrorBytes returns how many bytes of error bodies the server has written
// to its clients (as far as their connections took them).
func (s *Server) ErrorBytes() int64 { return s.errorBytes.Load() }

// Requests returns the number of requests to the export path, whatever their
// outcome, including 401, 403, 405 and 429.
func (s *Server) Requests() int64 { return s.requests.Load() }

// InjectFault queues faults for the next counted calls, one per call in
// order; a queued fault takes precedence over the random rates. A queued
// 5xx answers the call before its parameters are checked; a cut or slow
// fault consumed by a call that answers 400 has no effect.
func (s *Server) InjectFault(f ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = append(s.queue, f...)
}

// decision is what a counted call does wrong, if anything.
type decision struct {
	status    int // 500, 502 or 503; 0 for a normal answer
	cut, slow bool
}

// nextDecision takes the next queued fault, or draws one from the rates.
func (s *Server) nextDecision() decision {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) > 0 {
		f := s.queue[0]
		s.queue = s.queue[1:]
		switch f {
		case Fault500:
			return decision{status: 500}
		case Fault502:
			return decision{status: 502}
		case Fault503:
			return decision{status: 503}
		case FaultCut:
			return decision{cut: true}
		case FaultSlow:
			return decision{slow: true}
		}
		return decision{}
	}
	var d decision
	if s.cfg.FailRate > 0 && s.faultRNG.Float64() < s.cfg.FailRate {
		d.status = []int{500, 502, 503}[s.faultRNG.IntN(3)]
		return d
	}
	d.cut = s.cfg.CutRate > 0 && s.faultRNG.Float64() < s.cfg.CutRate
	d.slow = s.cfg.SlowRate > 0 && s.faultRNG.Float64() < s.cfg.SlowRate
	return d
}

// limitState is the rate-limit outcome of one call.
type limitState struct {
	admitted  bool
	remaining int
	reset     time.Time
	now       time.Time
}

// admit counts a call against its workspace's window, starting a new window
// when there is none or the last one has reset.
func (s *Server) admit(workspace string) limitState {
	if s.cfg.RateLimit == 0 {
		s.calls.Add(1)
		return limitState{admitted: true}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	w := s.windows[workspace]
	if w == nil || !now.Before(w.reset) {
		w = &window{reset: now.Add(s.cfg.Hour)}
		s.windows[workspace] = w
	}
	if w.used >= s.cfg.RateLimit {
		return limitState{reset: w.reset, now: now}
	}
	w.used++
	s.calls.Add(1)
	return limitState{admitted: true, remaining: s.cfg.RateLimit - w.used, reset: w.reset, now: now}
}

// requestID returns a new unique request id: a bijective mix of a counter
// and the seed.
func (s *Server) requestID() string {
	n := mix64(s.idBase + s.seq.Add(1)*golden)
	const hexdig = "0123456789abcdef"
	b := []byte("req_0000000000000000")
	for k := 0; k < 16; k++ {
		b[4+k] = hexdig[n>>(60-4*k)&0xf]
	}
	return string(b)
}

// echoes reports whether the server repeats the key at e.
func (s *Server) echoes(e Echo) bool { return slices.Contains(s.cfg.EchoKey, e) }
