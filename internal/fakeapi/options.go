package fakeapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// DefaultAddr is where the fake API listens unless told otherwise: loopback
// only, since it has no real security.
const DefaultAddr = "127.0.0.1:8787"

// Options holds the flags of the `leadlex-etl fake-api` command.
type Options struct {
	Addr   string // host:port to listen on; port 0 picks a free port
	Config Config
}

// AddFlags registers the options' flags on fs and sets their defaults. Bad
// values are rejected when fs is parsed, with an error naming the flag.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.Addr = DefaultAddr
	fs.StringVar(&o.Addr, "addr", DefaultAddr,
		"host:port to listen on; port 0 picks a free port and the printed URL shows the real one (keep it on loopback: the fake has no real security)")

	c := &o.Config
	c.Contacts = 10000
	fs.Var(&intValue{p: &c.Contacts, max: MaxContacts}, "contacts",
		"number of contacts in the generated workspace, spread over 2020-2025 with shared timestamps and bulk imports like a real one")
	c.Seed = 1
	fs.Int64Var(&c.Seed, "seed", 1, "seed of the generated contacts and of the random faults: the same seed gives the same data")

	c.Order = OrderAsc
	fs.Var(&enumValue[Order]{p: &c.Order, allowed: []Order{OrderAsc, OrderDesc, OrderRandom}}, "order",
		"row order of a response: asc (oldest first), desc (newest first) or random; the real API does not document its order, so an exporter must not rely on one")
	c.Bounds = BoundsInclusive
	fs.Var(&enumValue[Bounds]{p: &c.Bounds, allowed: []Bounds{BoundsInclusive, BoundsExclusive, BoundsMixed}}, "bounds",
		"whether created_after/created_before include a contact created exactly at the bound: inclusive (after <= t <= before), exclusive (after < t < before) or mixed (after <= t < before); the real API does not document it")
	c.BoundPrecision = PrecisionExact
	fs.Var(&enumValue[Precision]{p: &c.BoundPrecision, allowed: []Precision{PrecisionExact, PrecisionMicrosecond, PrecisionMillisecond, PrecisionSecond}}, "bound-precision",
		"how finely created_after/created_before are kept before --bounds applies: exact (as sent), or truncated to the microsecond, millisecond or whole second, as a service that parses them coarsely would; the real API does not document it")
	fs.BoolVar(&c.SubSecond, "sub-second", false,
		"give contacts created_at with microseconds: the contacts of one second spread over it, some at the whole second, some sharing one instant (without it every contact is created at a whole second)")

	c.RateLimit = 10
	fs.Var(&intValue{p: &c.RateLimit, max: math.MaxInt32}, "rate-limit",
		"export calls allowed per --hour per workspace, like the real API's 10 calls an hour; over it a call gets 429 rate_limited with Retry-After; 0 turns limiting off")
	c.Hour = time.Hour
	fs.Var(&durationValue{p: &c.Hour, positive: true}, "hour",
		"length of a rate-limit window, which starts at the first counted call; shorten it (e.g. 5s) to exercise waiting for a reset")
	c.ResetStyle = ResetEpoch
	fs.Var(&enumValue[ResetStyle]{p: &c.ResetStyle, allowed: []ResetStyle{ResetEpoch, ResetDelta}}, "reset-style",
		"how X-RateLimit-Reset is written: epoch (unix seconds when the window resets) or delta (seconds until it resets); the real API does not say which")
	c.TimeFormat = TimeUTC
	fs.Var(&enumValue[TimeFormat]{p: &c.TimeFormat, allowed: []TimeFormat{TimeUTC, TimeOffset}}, "time-format",
		"how created_at is written: utc (2026-04-15T09:00:00Z) or offset (the same instant with a per-row UTC offset such as +02:00, as a service rendering local times might)")

	fs.Var(&rateValue{p: &c.FailRate}, "fail-rate",
		"probability (0..1) that a counted call fails with a 500, 502 or 503 JSON error, as a gateway or function hiccup would")
	fs.Var(&rateValue{p: &c.CutRate}, "cut-rate",
		"probability (0..1) that a CSV body is cut off mid-row and the connection dropped, as a gateway timeout would")
	c.CutStyle = CutChunked
	fs.Var(&enumValue[CutStyle]{p: &c.CutStyle, allowed: []CutStyle{CutChunked, CutClose}}, "cut-style",
		"how a body cut by --cut-rate ends: chunked (the connection drops inside a chunked body, so the client sees an unexpected EOF) or mid-row-close (the body has no Content-Length and the server closes the connection mid-row, so the client sees a clean EOF after a last row without its line ending)")
	fs.Var(&rateValue{p: &c.SlowRate}, "slow-rate",
		"probability (0..1) that a CSV body trickles out, pausing --slow-delay between 64 KiB chunks, as a loaded service would")
	c.SlowDelay = 50 * time.Millisecond
	fs.Var(&durationValue{p: &c.SlowDelay}, "slow-delay",
		"pause between chunks of a slow body (see --slow-rate)")

	// Misbehaviour: what a broken or hostile service might do.
	c.BadReset = BadResetNone
	fs.Var(&enumValue[BadReset]{p: &c.BadReset, allowed: []BadReset{BadResetNone, BadResetZero, BadResetPast, BadResetFar, BadResetDate}}, "bad-reset",
		"misstate when the rate limit resets (with --rate-limit on): none; zero (a 429 says Retry-After: 0 and X-RateLimit-Reset is now); past (X-RateLimit-Reset an hour ago, no Retry-After); far (X-RateLimit-Reset 50 years ahead, no Retry-After); far-date (a 429 says Retry-After: "+FarDate+")")
	fs.Var(&signedDurationValue{p: &c.ClockSkew, max: MaxClockSkew}, "clock-skew",
		"run the server's clock this far ahead of the machine's (e.g. 10m; negative: behind): its rate-limit windows, X-RateLimit-Reset as epoch seconds (--reset-style epoch) and the Date header follow it")
	fs.Var(&urlValue{p: &c.RedirectTo}, "redirect-to",
		"answer every export call with 302 Found to this base URL plus the call's path and query, e.g. another fake's URL: a client must not follow it to another origin")
	fs.Var(&countOrValue{p: &c.StallAfter, word: "headers", wordValue: StallHeaders}, "stall-after",
		"every 200 body stops after N data rows (or before its end, if shorter) and the connection stays open, silent, until the client gives up; 'headers' never sends even the headers; 0 never stalls")
	fs.Var(&countOrValue{p: &c.Overrun, word: "endless", wordValue: OverrunEndless}, "overrun",
		"every 200 body goes on N rows past the limit, repeating its rows from the first, as a server that ignores limit would; 'endless' never ends; 0 keeps to the limit")
	fs.Var(&durationValue{p: &c.Trickle}, "trickle",
		"every 200 body comes one byte at a time, this long apart (e.g. 2s), however long that takes, as a service that keeps a connection alive without delivering; 0 streams normally")
	fs.Var(&countOrValue{p: &c.ErrorBody, word: "endless", wordValue: ErrorBodyEndless}, "error-body",
		"pad the message of every JSON error body with N bytes of text; 'endless' never ends the body; 0 sends errors as they are")
	fs.BoolVar(&c.IgnoreBounds, "ignore-bounds", false,
		"check created_after and created_before, then ignore them: every call answers as if they were absent, as a broken service might")
	fs.BoolVar(&c.Control, "control", false,
		"serve POST "+MutatePath+"?edit=N&delete=N&append=N&move=N (with the key): edit and delete N random contacts, add N created now, and move the created_at of N to move_to (default now), to show how syncs follow a workspace that changes")
	fs.BoolVar(&c.ShuffleColumns, "shuffle-columns", false,
		"write the columns of every response in its own random order, not the order fields asked for: a client must map columns by header name")
	fs.Var(&intValue{p: &c.ExtraColumns, max: MaxExtraColumns}, "extra-columns",
		"add this many columns nobody asked for (unrequested_1, ...) to every response; the first holds a UUID and stands before id unless the columns are shuffled")
	fs.Var(&echoValue{p: &c.EchoKey}, "echo-key",
		"repeat the API key a request carried, comma-separated places: errors (appended to every JSON error message), request-id (X-Request-ID is the id, a dot and the key), body (the first CSV row's full_name is 'echo ' and the Authorization header; the second row's id is the key)")
}

// Serve builds the server from o.Config, listens on o.Addr, prints one line
// "fake LeadLex API listening on http://HOST:PORT (N contacts, key K)" to out
// and serves until ctx is done, then shuts down gracefully: requests in
// flight see their context cancelled and get a few seconds to finish.
func Serve(ctx context.Context, o Options, out io.Writer) error {
	srv, err := New(o.Config)
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return nil // done before it started
	}
	addr := o.Addr
	if addr == "" {
		addr = DefaultAddr
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("fakeapi: --addr: %w", err)
	}
	key := "none with read:contacts"
	for _, k := range srv.cfg.Keys {
		if k.ReadContacts {
			key = k.Token
			break
		}
	}
	if _, err := fmt.Fprintf(out, "fake LeadLex API listening on http://%s (%d contacts, key %s)\n",
		ln.Addr(), srv.Dataset().Len(), key); err != nil {
		_ = ln.Close()
		return err
	}

	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutCtx); err != nil {
		_ = hs.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// intValue is a non-negative integer flag with an upper bound.
type intValue struct {
	p   *int
	max int
}

func (v *intValue) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.Itoa(*v.p)
}

func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("not an integer")
	}
	if n < 0 || n > v.max {
		return fmt.Errorf("must be between 0 and %d", v.max)
	}
	*v.p = n
	return nil
}

func (v *intValue) Type() string { return "int" }

// rateValue is a probability flag.
type rateValue struct{ p *float64 }

func (v *rateValue) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.FormatFloat(*v.p, 'g', -1, 64)
}

func (v *rateValue) Set(s string) error {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > 1 {
		return errors.New("must be a probability between 0 and 1")
	}
	*v.p = f
	return nil
}

func (v *rateValue) Type() string { return "float" }

// durationValue is a non-negative (or, if positive is set, positive)
// duration flag.
type durationValue struct {
	p        *time.Duration
	positive bool
}

func (v *durationValue) String() string {
	if v.p == nil {
		return "0s"
	}
	return v.p.String()
}

func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return errors.New("not a duration such as 1h, 30s or 250ms")
	case v.positive && d <= 0:
		return errors.New("must be positive")
	case d < 0:
		return errors.New("must not be negative")
	}
	*v.p = d
	return nil
}

func (v *durationValue) Type() string { return "duration" }

// enumValue is a flag that takes one of a fixed set of words.
type enumValue[T ~string] struct {
	p       *T
	allowed []T
}

func (v *enumValue[T]) String() string {
	if v.p == nil {
		return ""
	}
	return string(*v.p)
}

func (v *enumValue[T]) Set(s string) error {
	for _, a := range v.allowed {
		if string(a) == s {
			*v.p = a
			return nil
		}
	}
	return fmt.Errorf("must be one of %s", v.Type())
}

func (v *enumValue[T]) Type() string {
	names := make([]string, len(v.allowed))
	for k, a := range v.allowed {
		names[k] = string(a)
	}
	return strings.Join(names, "|")
}

// urlValue is an http(s) URL flag; empty means unset.
type urlValue struct{ p *string }

func (v *urlValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

func (v *urlValue) Set(s string) error {
	if u, err := url.Parse(s); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("not an http(s) URL such as http://127.0.0.1:8788")
	}
	*v.p = s
	return nil
}

func (v *urlValue) Type() string { return "url" }

// countOrValue is a non-negative count flag that also takes one word,
// stored as wordValue.
type countOrValue struct {
	p         *int
	word      string
	wordValue int
}

func (v *countOrValue) String() string {
	switch {
	case v.p == nil:
		return "0"
	case *v.p == v.wordValue:
		return v.word
	}
	return strconv.Itoa(*v.p)
}

func (v *countOrValue) Set(s string) error {
	if s == v.word {
		*v.p = v.wordValue
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > math.MaxInt32 {
		return fmt.Errorf("must be a count of rows or %q", v.word)
	}
	*v.p = n
	return nil
}

func (v *countOrValue) Type() string { return "N|" + v.word }

// echoValue is a comma-separated set of Echo places; each use adds to it.
type echoValue struct{ p *[]Echo }

func (v *echoValue) String() string {
	if v.p == nil {
		return ""
	}
	names := make([]string, len(*v.p))
	for i, e := range *v.p {
		names[i] = string(e)
	}
	return strings.Join(names, ",")
}

func (v *echoValue) Set(s string) error {
	for _, name := range strings.Split(s, ",") {
		e := Echo(strings.TrimSpace(name))
		switch e {
		case EchoErrors, EchoRequestID, EchoBody:
		default:
			return fmt.Errorf("%q must be one of errors, request-id, body", name)
		}
		if !slices.Contains(*v.p, e) {
			*v.p = append(*v.p, e)
		}
	}
	return nil
}

func (v *echoValue) Type() string { return "errors,request-id,body" }
