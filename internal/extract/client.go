package extract

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ExportPath is the export endpoint, relative to the base URL.
const ExportPath = "/v1/contacts/export"

// MaxLimit is the most rows the API returns in one call.
const MaxLimit = 50000

// Query is one export request's parameters.
type Query struct {
	Limit         int       // rows per call; 0 lets the API choose (10000)
	CreatedAfter  time.Time // zero: no lower bound
	CreatedBefore time.Time // zero: no upper bound
	ListID        string
	Tags          []string // every tag must match
	Fields        []string // nil: the API's default set
}

// Values encodes q as URL query parameters. Instants are sent in UTC with
// microsecond precision and no trailing zeros.
func (q Query) Values() url.Values {
	v := url.Values{}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if !q.CreatedAfter.IsZero() {
		v.Set("created_after", FormatTime(q.CreatedAfter))
	}
	if !q.CreatedBefore.IsZero() {
		v.Set("created_before", FormatTime(q.CreatedBefore))
	}
	if q.ListID != "" {
		v.Set("list_id", q.ListID)
	}
	for _, t := range q.Tags {
		v.Add("tag", t)
	}
	if len(q.Fields) > 0 {
		v.Set("fields", strings.Join(q.Fields, ","))
	}
	return v
}

// FormatTime renders t as the API expects it: RFC 3339 in UTC, microsecond
// precision, trailing zeros dropped.
func FormatTime(t time.Time) string {
	return t.UTC().Truncate(time.Microsecond).Format("2006-01-02T15:04:05.999999Z07:00")
}

// RateLimit is what the API last said about the workspace's export budget.
type RateLimit struct {
	Limit     int       // calls per window, from X-RateLimit-Limit
	Remaining int       // calls left, from X-RateLimit-Remaining
	Reset     time.Time // when Remaining goes back to Limit
	Known     bool      // false until a response carried the headers
}

// Response is one successful export response. Body streams the CSV with
// every occurrence of the API key replaced by Redacted; reading it never
// buffers the whole export. A read error other than io.EOF comes back as a
// *StreamError, also when no byte arrived for Timeouts.Idle (it then matches
// ErrTimeout).
type Response struct {
	Body io.Reader
	// RequestID is the response's X-Request-ID when it is a short token, or
	// a marker ("invalid-request-id-" and a hash) when it is not.
	RequestID string
	RateLimit RateLimit
	// Header is the response's header as received: untrusted, it may even
	// repeat the key. Nothing from it may be logged or stored unchecked.
	Header http.Header
}

// RetryPolicy says how often and how patiently 5xx answers, broken streams
// and network errors are retried. Every retry spends an API call.
type RetryPolicy struct {
	MaxAttempts int           // total attempts per window; 0 -> 4
	BaseDelay   time.Duration // first backoff; 0 -> 2s
	MaxDelay    time.Duration // backoff cap; 0 -> 1m
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 4
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = 2 * time.Second
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = time.Minute
	}
	return p
}

// backoff returns the pause before attempt n+1 (n >= 1): exponential with
// full jitter, so that many clients retrying at once spread out.
func (p RetryPolicy) backoff(n int) time.Duration {
	d := p.BaseDelay << min(n-1, 20)
	if d <= 0 || d > p.MaxDelay {
		d = p.MaxDelay
	}
	return d/2 + rand.N(d/2+1)
}

// Timeouts bound the phases of one export call. A call that runs out of one
// fails with an error matching ErrTimeout and is retried like a 5xx answer:
// it counts as an attempt and is backed off. A zero field takes its value
// from DefaultTimeouts. *Timeouts is a pflag.Value written
// "connect,headers,idle", e.g. 30s,2m,2m; MinRate is not part of it.
type Timeouts struct {
	Connect time.Duration // to connect, TLS handshake included
	Headers time.Duration // from the request sent to the response headers
	Idle    time.Duration // without a byte of the body, whether its start or the middle of it
	// MinRate is the slowest a body may come, in bytes a second on average
	// over each Idle of waiting for it: a server that sends a byte now and
	// then resets the idle clock each time, and would hold the call (and
	// the destination) for as long as it likes. Only the time spent
	// waiting inside a read counts, so a slow consumer is never taken for
	// a slow server. Negative: no floor.
	MinRate int
}

// DefaultMinRate is the default Timeouts.MinRate: 512 bytes a second, a
// 50,000-row body (about 10 MB) in under 6 hours. An honest body comes in
// chunks of kilobytes, each far above it over a span as long as Idle.
const DefaultMinRate = 512

// DefaultTimeouts suit a slow 50,000-row export: the API may think a while
// before it answers, and between chunks.
var DefaultTimeouts = Timeouts{Connect: 30 * time.Second, Headers: 2 * time.Minute, Idle: 2 * time.Minute, MinRate: DefaultMinRate}

// maxTimeout bounds each of Timeouts when set from text: waiting longer than
// the rate-limit hour for one answer makes no sense.
const maxTimeout = time.Hour

func (t Timeouts) withDefaults() Timeouts {
	if t.Connect <= 0 {
		t.Connect = DefaultTimeouts.Connect
	}
	if t.Headers <= 0 {
		t.Headers = DefaultTimeouts.Headers
	}
	if t.Idle <= 0 {
		t.Idle = DefaultTimeouts.Idle
	}
	if t.MinRate == 0 {
		t.MinRate = DefaultMinRate
	}
	return t
}

// String renders t the way Set reads it.
func (t *Timeouts) String() string {
	if t == nil {
		return ""
	}
	return shortDuration(t.Connect) + "," + shortDuration(t.Headers) + "," + shortDuration(t.Idle)
}

// Set reads three positive durations of at most an hour, "connect,headers,idle".
func (t *Timeouts) Set(s string) error {
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return fmt.Errorf("%q is not three durations connect,headers,idle such as 30s,2m,2m", s)
	}
	var d [3]time.Duration
	for i, name := range []string{"connect", "headers", "idle"} {
		v, err := time.ParseDuration(strings.TrimSpace(parts[i]))
		switch {
		case err != nil:
			return fmt.Errorf("%s timeout %q is not a duration such as 30s or 2m", name, strings.TrimSpace(parts[i]))
		case v <= 0:
			return fmt.Errorf("%s timeout %s must be positive", name, v)
		case v > maxTimeout:
			return fmt.Errorf("%s timeout %s is longer than %s", name, v, shortDuration(maxTimeout))
		}
		d[i] = v
	}
	*t = Timeouts{Connect: d[0], Headers: d[1], Idle: d[2], MinRate: t.MinRate}
	return nil
}

// Type names the value's form in --help.
func (t *Timeouts) Type() string { return "connect,headers,idle" }

// shortDuration prints 2m rather than 2m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// roundDuration rounds a pause for a log line: to the millisecond below ten
// seconds, to the second above.
func roundDuration(d time.Duration) string {
	if d < 10*time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// MaxResetAhead is the furthest ahead a rate-limit reset is believed: the
// API's hourly window and a margin for clocks that disagree. A reset said to
// lie further ahead, by a broken or hostile answer or by a budget saved from
// one, is capped to it (and the log says so), so that it cannot stop syncs
// for longer.
const MaxResetAhead = time.Hour + 5*time.Minute

// DefaultMaxRateLimited is how many 429 answers in a row end a run unless
// Client.MaxRateLimited says otherwise.
const DefaultMaxRateLimited = 10

// The pause after a 429 is never shorter than a floor that starts at
// Client.RateLimitFloor (default 1s) and doubles with each 429 in a row, up
// to maxRateLimitFloor, whatever the answer says.
const (
	defaultRateLimitFloor = time.Second
	maxRateLimitFloor     = time.Minute
)

// Client calls the export endpoint. A Client is safe for concurrent use; its
// zero value is not usable, set BaseURL and Key. Its fields must not change
// once it has made a call.
type Client struct {
	BaseURL string // e.g. https://data.leadlex.com/functions/v1/api-gateway
	Key     APIKey
	// HTTP sends the requests; nil means a client whose transport applies
	// Timeouts.Connect and Timeouts.Headers. Either way its CheckRedirect is
	// replaced by the Client's redirect policy (a redirect to another origin
	// is never followed) and Timeouts.Idle bounds every body read.
	HTTP     *http.Client
	Retry    RetryPolicy
	Timeouts Timeouts
	// NoWait makes a spent budget an immediate *RateLimitError instead of a
	// pause until the reset.
	NoWait bool
	// MaxWait bounds one pause for the budget; 0 means 2 hours.
	MaxWait time.Duration
	// RateLimitFloor is the shortest pause after a 429, whatever its
	// Retry-After or X-RateLimit-Reset say (0, past, missing): it doubles
	// with each 429 in a row, up to a minute. 0 means 1s.
	RateLimitFloor time.Duration
	// MaxRateLimited is how many 429 answers in a row end the export with a
	// *RateLimitError; 0 means DefaultMaxRateLimited.
	MaxRateLimited int
	Logger         *slog.Logger // nil: discard
	// UserAgent is sent as User-Agent.
	UserAgent string
	// OnWait, if set, is called before every pause for the rate limit (a
	// spent budget, or after a 429) with when the pause ends, on the
	// goroutine that calls Export; it must return quickly. Backoffs between
	// retries of failed calls do not call it.
	OnWait func(until time.Time)

	setup sync.Once
	hc    *http.Client
	red   *redactor

	mu          sync.Mutex
	budget      RateLimit
	saved       bool // budget is what SetBudget seeded; no answer has told it since
	calls       int
	rateLimited int
	inARow      int // 429 answers since the last other answer
	badIDWarned bool
	skewWarned  bool // the log has said what the Date header told of the API's clock
}

// Calls returns how many export requests reached the API and were answered
// with anything but 429: the calls that spend budget.
func (c *Client) Calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

// RateLimited returns how many requests were answered 429.
func (c *Client) RateLimited() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rateLimited
}

// Budget returns what the API last said about the rate limit, with its
// reset capped at MaxResetAhead from when it was said; after a 429, the
// reset is when the client will ask again.
func (c *Client) Budget() RateLimit {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.budget
}

// SetBudget seeds the budget with what an earlier run saved, so that a
// spent budget is waited out before the first call rather than discovered by
// a 429. Its reset is capped at MaxResetAhead from now. Until an answer
// tells the budget again, a *RateLimitError it causes says Saved.
func (c *Client) SetBudget(b RateLimit) {
	if b.Known {
		b.Reset = capReset(b.Reset, time.Now(), "saved budget", c.logger())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.budget, c.saved = b, true
}

func (c *Client) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

func (c *Client) maxRateLimited() int {
	if c.MaxRateLimited <= 0 {
		return DefaultMaxRateLimited
	}
	return c.MaxRateLimited
}

// rateLimitFloor is the shortest pause after the n-th 429 in a row.
func (c *Client) rateLimitFloor(n int) time.Duration {
	base := c.RateLimitFloor
	if base <= 0 {
		base = defaultRateLimitFloor
	}
	d := base << min(max(n-1, 0), 30)
	if d <= 0 || d > maxRateLimitFloor {
		d = max(base, maxRateLimitFloor)
	}
	return d
}

// init builds the HTTP client and the key's redactor on first use.
func (c *Client) init() {
	c.setup.Do(func() {
		c.red = newRedactor(c.Key)
		var hc http.Client
		if c.HTTP != nil {
			hc = *c.HTTP
		} else {
			hc.Transport = newTransport(c.Timeouts.withDefaults())
		}
		hc.CheckRedirect = c.checkRedirect
		c.hc = &hc
	})
}

func newTransport(t Timeouts) *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: t.Connect, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   t.Connect,
		ResponseHeaderTimeout: t.Headers,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
}

// checkRedirect follows a redirect only to the origin (scheme, host and
// port) of the first request, so that the key never travels elsewhere and
// the data never comes from elsewhere.
func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return &ProtocolError{Problem: fmt.Sprintf("the API redirected the export %d times in a row (last to %s): a loop; not retried", len(via), c.scrubURL(req.URL))}
	}
	if sameOrigin(via[0].URL, req.URL) {
		return nil
	}
	e := &RedirectError{Location: c.scrubURL(req.URL)}
	if r := req.Response; r != nil {
		e.Status = r.StatusCode
		e.RequestID = c.requestID(r.Header.Get("X-Request-ID"))
	}
	return e
}

// maxRedirects is how many same-origin redirects one call follows.
const maxRedirects = 10

func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Hostname(), b.Hostname()) && urlPort(a) == urlPort(b)
}

func urlPort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return "443"
	case "http":
		return "80"
	}
	return ""
}

// scrubURL renders a URL from the server for a message: no credentials, no
// query or fragment, the key redacted, clipped.
func (c *Client) scrubURL(u *url.URL) string {
	v := *u
	v.User = nil
	hadQuery := v.RawQuery != "" || v.ForceQuery
	v.RawQuery, v.ForceQuery, v.Fragment, v.RawFragment = "", false, "", ""
	s := v.String()
	if p := c.red.String(v.Path); p != v.Path {
		// The key was in the path, perhaps percent-encoded in String's form.
		s = v.Scheme + "://" + v.Host + p
	}
	if hadQuery {
		s += "?..."
	}
	return c.red.cleanText(s, maxText)
}

// requestID returns raw when it is a short token without the key, and
// otherwise a marker, warning once per Client.
func (c *Client) requestID(raw string) string {
	if raw == "" {
		return ""
	}
	red := c.red.String(raw)
	if red == raw && validRequestID(raw) {
		return raw
	}
	m := requestIDMarker(red)
	c.mu.Lock()
	warned := c.badIDWarned
	c.badIDWarned = true
	c.mu.Unlock()
	if !warned {
		reason := "it is not a short token of letters, digits and ._:/+=-"
		switch {
		case red != raw:
			reason = "it holds the API key"
		case len(raw) > maxRequestID:
			reason = fmt.Sprintf("it is %d bytes long, more than %d", len(raw), maxRequestID)
		}
		c.logger().Warn("the API sent an X-Request-ID that is not kept: it is logged and stored as a marker instead (said once)", "reason", reason, "marker", m)
	}
	return m
}

// Export sends q and calls fn with the streamed response. 5xx answers, network
// errors, timeouts, and bodies that break off or stall while fn reads them
// (fn's error wraps a *StreamError) are retried with backoff and jitter,
// calling fn again from the start: fn must discard whatever it kept of an
// earlier attempt. A 429, or a budget already known to be spent, is waited
// out until the reset (or returned as a *RateLimitError with NoWait, or once
// MaxRateLimited 429s came in a row). 400, 401 and 403 are returned at once
// as *APIError, a redirect to another origin as *RedirectError. Any other
// error from fn is returned as is. The body is drained and closed on every
// path. No error's text holds the key.
func (c *Client) Export(ctx context.Context, q Query, fn func(*Response) error) error {
	c.init()
	return c.scrub(c.export(ctx, q, fn))
}

func (c *Client) export(ctx context.Context, q Query, fn func(*Response) error) error {
	pol := c.Retry.withDefaults()
	attempt := 0
	for {
		if err := c.awaitBudget(ctx); err != nil {
			return err
		}
		attempt++
		err := c.once(ctx, q, fn)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		var apiErr *APIError
		if errors.As(err, &apiErr) && apiErr.Status == http.StatusTooManyRequests {
			// Not a spent call; the next awaitBudget pauses until the
			// reset it set, or at least the floor.
			attempt--
			c.mu.Lock()
			resume, n := c.budget.Reset, c.inARow
			c.mu.Unlock()
			if c.NoWait {
				return &RateLimitError{ResumeAt: resume, RequestID: apiErr.RequestID}
			}
			if n >= c.maxRateLimited() {
				return &RateLimitError{ResumeAt: resume, RequestID: apiErr.RequestID, InARow: n}
			}
			continue
		}
		if !retryable(err) {
			return err
		}
		if attempt >= pol.MaxAttempts {
			return fmt.Errorf("gave up after %d attempts: %w", attempt, err)
		}
		d := pol.backoff(attempt)
		c.logger().Warn("export call failed, retrying", "attempt", attempt, "backoff", d.String(), "err", c.red.String(err.Error()))
		if err := sleep(ctx, d); err != nil {
			return err
		}
	}
}

func retryable(err error) bool {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.Retryable()
	}
	var se *StreamError
	if errors.As(err, &se) {
		return true
	}
	var ne *netError
	return errors.As(err, &ne)
}

// netError marks a failure to get any response (connection refused, reset
// before headers, timeout): worth retrying. text is err's message, scrubbed.
type netError struct {
	err  error
	text string
}

func (e *netError) Error() string { return e.text }
func (e *netError) Unwrap() error { return e.err }

func (c *Client) netError(err error) error {
	err = redactURLError(err)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		err = fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return &netError{err: err, text: c.red.cleanText(err.Error(), 1000)}
}

// scrubbedError shows an error's text with the key redacted; errors.As and
// errors.Is still see the error.
type scrubbedError struct {
	err  error
	text string
}

func (e *scrubbedError) Error() string { return e.text }
func (e *scrubbedError) Unwrap() error { return e.err }

// scrub hides the key in err's text, should anything have let it in.
func (c *Client) scrub(err error) error {
	if err == nil {
		return nil
	}
	if s := err.Error(); c.red.String(s) != s {
		return &scrubbedError{err: err, text: c.red.String(s)}
	}
	return err
}

func (c *Client) once(ctx context.Context, q Query, fn func(*Response) error) error {
	tm := c.Timeouts.withDefaults()
	u := strings.TrimRight(c.BaseURL, "/") + ExportPath
	if enc := q.Values().Encode(); enc != "" {
		u += "?" + enc
	}
	// The request's own context: the idle watchdog ends it, with a cause
	// matching ErrTimeout, when the body stalls.
	reqCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("build export request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Key.v)
	req.Header.Set("Accept", "text/csv")
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var re *RedirectError
		if errors.As(err, &re) {
			c.mu.Lock()
			c.calls++ // answered, so perhaps counted
			c.inARow = 0
			c.mu.Unlock()
			c.logger().Warn("export call redirected to another origin, not followed", "status", re.Status, "location", re.Location, "request_id", re.RequestID)
			return re
		}
		var pe *ProtocolError
		if errors.As(err, &pe) { // a redirect loop
			c.mu.Lock()
			c.calls++
			c.inARow = 0
			c.mu.Unlock()
			return pe
		}
		return c.netError(err)
	}
	idle := newIdleReader(resp.Body, tm.Idle, tm.MinRate, cancel)
	body := newRedactReader(idle, c.red)
	defer func() {
		// Drain a little so the connection can be reused, then close.
		_, _ = io.Copy(io.Discard, io.LimitReader(idle, 256<<10))
		idle.stop()
		_ = resp.Body.Close()
	}()
	now := time.Now()
	reqID := c.requestID(resp.Header.Get("X-Request-ID"))
	log := c.logger().With("request_id", reqID, "status", resp.StatusCode)
	skew := c.serverSkew(resp.Header, now, log)
	reset := capReset(parseReset(resp.Header.Get("X-RateLimit-Reset"), now, skew), now, "X-RateLimit-Reset", log)
	rl := parseRateLimit(resp.Header, reset)

	c.mu.Lock()
	if resp.StatusCode == http.StatusTooManyRequests {
		c.rateLimited++
		c.inARow++
	} else {
		c.calls++
		c.inARow = 0
	}
	inARow := c.inARow
	if rl.Known {
		c.budget, c.saved = rl, false
	}
	c.mu.Unlock()
	if resp.StatusCode == http.StatusTooManyRequests {
		// The next awaitBudget pauses until then, even if the headers
		// were missing or said to go on at once.
		resume := c.after429(resp.Header, reset, now, skew, inARow, log)
		c.mu.Lock()
		c.budget = RateLimit{Limit: rl.Limit, Remaining: 0, Reset: resume, Known: true}
		c.saved = false
		c.mu.Unlock()
	}

	if rl.Known {
		log = log.With("ratelimit_remaining", rl.Remaining, "ratelimit_reset", rl.Reset.UTC().Format(time.RFC3339))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		apiErr := c.readAPIError(body, resp.StatusCode, reqID)
		if apiErr.Status == http.StatusTooManyRequests {
			apiErr.ResetAt = c.Budget().Reset
		}
		log.Warn("export call refused", "code", apiErr.Code, "message", apiErr.Message)
		return apiErr
	}
	log.Info("export call", "after", q.Values().Get("created_after"), "before", q.Values().Get("created_before"), "limit", q.Limit, "headers_in", time.Since(start).Round(time.Millisecond).String())
	return fn(&Response{
		Body:      &streamReader{r: body, reqID: reqID, ctx: reqCtx},
		RequestID: reqID,
		RateLimit: rl,
		Header:    resp.Header,
	})
}

// after429 decides when to ask again after the n-th 429 in a row: when the
// answer says (Retry-After, else X-RateLimit-Reset, already capped), capped
// at MaxResetAhead, and never sooner than the floor for n. skew is how far
// the API's clock is ahead of this machine's (serverSkew).
func (c *Client) after429(h http.Header, reset, now time.Time, skew time.Duration, n int, log *slog.Logger) time.Time {
	floor := c.rateLimitFloor(n)
	said := retryAfter(h, now, skew)
	if said.After(now) {
		said = capReset(said, now, "Retry-After", log)
	} else {
		said = reset
	}
	if !said.After(now) {
		log.Warn("rate limited without a usable reset time (Retry-After and X-RateLimit-Reset missing, past or unparsable): backing off", "backoff", roundDuration(floor), "in_a_row", n)
		return now.Add(floor)
	}
	if floorAt := now.Add(floor); floorAt.After(said) {
		log.Warn("rate limited again soon after the reset the API gave: backing off longer", "backoff", roundDuration(floor), "in_a_row", n)
		return floorAt
	}
	return said
}

// capReset returns t, or now+MaxResetAhead when t lies further ahead, and
// says so in the log.
func capReset(t, now time.Time, source string, log *slog.Logger) time.Time {
	if lim := now.Add(MaxResetAhead); t.After(lim) {
		log.Warn("rate-limit reset lies further ahead than the API's hourly window allows: capped",
			"source", source, "said", t.UTC().Format(time.RFC3339), "capped_to", lim.UTC().Format(time.RFC3339))
		return lim
	}
	return t
}

// redactURLError drops the query string from a *url.Error's URL; it holds no
// key (the key travels in a header), but it keeps messages short.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			u.RawQuery = ""
			u.User = nil
			return &url.Error{Op: ue.Op, URL: u.String(), Err: ue.Err}
		}
	}
	return err
}

// idleReader ends the request (through its context) when one Read waits
// longer than idle for a byte, or when the body comes slower than minRate
// bytes a second over a span of idle spent waiting in Read (a trickle).
// The clocks run only inside Read, so a slow consumer between reads is
// never taken for a stalled or trickling server.
type idleReader struct {
	r       io.Reader
	idle    time.Duration
	timer   *time.Timer
	minRate int // bytes a second; <= 0: no floor
	cancel  context.CancelCauseFunc
	waited  time.Duration // inside Read since the span began
	got     int64         // bytes read since the span began
}

func newIdleReader(r io.Reader, idle time.Duration, minRate int, cancel context.CancelCauseFunc) *idleReader {
	ir := &idleReader{r: r, idle: idle, minRate: minRate, cancel: cancel}
	ir.timer = time.AfterFunc(idle, func() {
		cancel(fmt.Errorf("%w: no byte of the response body for %s", ErrTimeout, shortDuration(idle)))
	})
	ir.timer.Stop()
	return ir
}

func (ir *idleReader) Read(p []byte) (int, error) {
	ir.timer.Reset(ir.idle)
	start := time.Now()
	n, err := ir.r.Read(p)
	ir.timer.Stop()
	if ir.minRate <= 0 || err != nil {
		return n, err // a body that ended or broke is judged by that
	}
	ir.waited += time.Since(start)
	ir.got += int64(n)
	if ir.waited < ir.idle {
		return n, err
	}
	if want := int64(float64(ir.minRate) * ir.waited.Seconds()); ir.got < want {
		cause := fmt.Errorf("%w: the response body came at %d bytes in %s of waiting, slower than the floor of %d bytes a second",
			ErrTimeout, ir.got, roundDuration(ir.waited), ir.minRate)
		ir.cancel(cause)
		return n, cause
	}
	ir.waited, ir.got = 0, 0
	return n, err
}

func (ir *idleReader) stop() { ir.timer.Stop() }

// streamReader turns read errors into *StreamError so the retry logic can
// recognise them through any wrapping the body's consumer adds. ctx is the
// request's: when the idle watchdog ended it, the error says so.
type streamReader struct {
	r     io.Reader
	reqID string
	ctx   context.Context
}

func (s *streamReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		if cause := context.Cause(s.ctx); errors.Is(cause, ErrTimeout) {
			return n, &StreamError{RequestID: s.reqID, Err: cause}
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return n, err
		}
		return n, &StreamError{RequestID: s.reqID, Err: err}
	}
	return n, err
}

// readAPIError reads an error body: the API's JSON error, or the start of
// any other body, with the key redacted and control characters removed.
func (c *Client) readAPIError(body io.Reader, status int, reqID string) *APIError {
	e := &APIError{Status: status, RequestID: reqID}
	raw, _ := io.ReadAll(io.LimitReader(body, 64<<10))
	var nested struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	var flat struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Error   string `json:"error"`
	}
	var code, msg string
	switch {
	case json.Unmarshal(raw, &nested) == nil && nested.Error.Code != "":
		code, msg = nested.Error.Code, nested.Error.Message
	case json.Unmarshal(raw, &flat) == nil && (flat.Code != "" || flat.Message != "" || flat.Error != ""):
		code, msg = flat.Code, flat.Message
		if msg == "" {
			msg = flat.Error
		}
	default:
		msg = string(raw)
	}
	// Decoded JSON may spell the key with escapes the body's redaction
	// could not see: redact again.
	e.Code = c.red.cleanText(code, 64)
	e.Message = c.red.cleanText(msg, maxText)
	return e
}

// parseRateLimit reads X-RateLimit-Limit and X-RateLimit-Remaining; reset is
// X-RateLimit-Reset as parseReset read it (and capped).
func parseRateLimit(h http.Header, reset time.Time) RateLimit {
	var rl RateLimit
	lim, err1 := strconv.Atoi(strings.TrimSpace(h.Get("X-RateLimit-Limit")))
	rem, err2 := strconv.Atoi(strings.TrimSpace(h.Get("X-RateLimit-Remaining")))
	if err1 != nil || err2 != nil {
		return rl
	}
	rl.Limit, rl.Remaining, rl.Known = lim, max(rem, 0), true
	rl.Reset = reset
	return rl
}

// maxHeaderSeconds bounds a number of seconds (from now, or since the
// epoch) read from a header before it becomes a time: about 285 years, far
// past any cap, so that the log can say what the header said, and short of
// overflowing a time.Duration.
const maxHeaderSeconds = 9e9

// parseReset reads X-RateLimit-Reset: epoch seconds or seconds until the
// reset; values above 1e9 are taken as epoch seconds, of the API's clock,
// which runs skew ahead of this machine's. It returns the zero time for a
// missing, negative or unparsable value.
func parseReset(s string, now time.Time, skew time.Duration) time.Time {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || f < 0 {
		return time.Time{}
	}
	if f > 1e9 {
		f = min(f, maxHeaderSeconds)
		sec := int64(f)
		return time.Unix(sec, int64((f-float64(sec))*1e9)).Add(-skew)
	}
	return now.Add(time.Duration(min(f, maxHeaderSeconds) * float64(time.Second)))
}

// retryAfter reads Retry-After (seconds or an HTTP date of the API's
// clock, which runs skew ahead of this machine's). It returns the zero time
// for a missing, negative or unparsable value.
func retryAfter(h http.Header, now time.Time, skew time.Duration) time.Time {
	s := strings.TrimSpace(h.Get("Retry-After"))
	if s == "" {
		return time.Time{}
	}
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(n) || n < 0 {
			return time.Time{}
		}
		return now.Add(time.Duration(min(n, maxHeaderSeconds) * float64(time.Second)))
	}
	if t, err := http.ParseTime(s); err == nil {
		return t.Add(-skew)
	}
	return time.Time{}
}

// awaitBudget pauses until the reset when the budget is known to be spent.
func (c *Client) awaitBudget(ctx context.Context) error {
	c.mu.Lock()
	b, saved := c.budget, c.saved
	c.mu.Unlock()
	if !b.Known || b.Remaining > 0 || b.Reset.IsZero() {
		return nil
	}
	wait := time.Until(b.Reset)
	if wait <= 0 {
		return nil
	}
	if c.NoWait {
		return &RateLimitError{ResumeAt: b.Reset, Saved: saved}
	}
	maxWait := c.MaxWait
	if maxWait <= 0 {
		maxWait = 2 * time.Hour
	}
	if wait > maxWait {
		return fmt.Errorf("rate limit resets in %s, longer than the longest wait allowed (%s): %w", wait.Round(time.Second), maxWait, &RateLimitError{ResumeAt: b.Reset, Saved: saved})
	}
	// A little past the reset, so clocks that disagree slightly still
	// agree; no more than a quarter of a short pause (a backoff floor).
	wait += min(250*time.Millisecond+rand.N(250*time.Millisecond), wait/4)
	msg := "export budget spent, waiting for the reset"
	if saved {
		msg = "export budget spent according to the budget an earlier run saved, waiting until it expires"
	}
	c.logger().Info(msg, "until", b.Reset.UTC().Format(time.RFC3339), "wait", roundDuration(wait))
	if c.OnWait != nil {
		c.OnWait(time.Now().Add(wait))
	}
	if err := sleep(ctx, wait); err != nil {
		return err
	}
	c.mu.Lock()
	if c.budget.Reset.Equal(b.Reset) {
		c.budget.Known = false // unknown until the next response says
	}
	c.mu.Unlock()
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
