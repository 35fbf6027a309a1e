package extract

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
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

// Response is one successful export response. Body streams the CSV; reading
// it never buffers the whole export. A read error other than io.EOF comes back
// as a *StreamError.
type Response struct {
	Body      io.Reader
	RequestID string
	RateLimit RateLimit
	Header    http.Header
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

// Client calls the export endpoint. A Client is safe for concurrent use; its
// zero value is not usable, set BaseURL and Key.
type Client struct {
	BaseURL string // e.g. https://data.leadlex.com/functions/v1/api-gateway
	Key     APIKey
	HTTP    *http.Client // nil: a client with connect and header timeouts, no body timeout
	Retry   RetryPolicy
	// NoWait makes a spent budget an immediate *RateLimitError instead of a
	// pause until the reset.
	NoWait bool
	// MaxWait bounds one pause for the budget; 0 means 2 hours.
	MaxWait time.Duration
	Logger  *slog.Logger // nil: discard
	// UserAgent is sent as User-Agent.
	UserAgent string

	mu          sync.Mutex
	budget      RateLimit
	calls       int
	rateLimited int
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

// Budget returns what the API last said about the rate limit.
func (c *Client) Budget() RateLimit {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.budget
}

// SetBudget seeds the budget, e.g. with what an earlier run remembered, so a
// spent budget is waited out before the first call rather than discovered by
// a 429.
func (c *Client) SetBudget(b RateLimit) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.budget = b
}

func (c *Client) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTP
}

var defaultHTTP = &http.Client{Transport: &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	TLSHandshakeTimeout:   30 * time.Second,
	ResponseHeaderTimeout: 5 * time.Minute,
	MaxIdleConnsPerHost:   2,
	IdleConnTimeout:       90 * time.Second,
	ForceAttemptHTTP2:     true,
}}

// Export sends q and calls fn with the streamed response. 5xx answers, network
// errors, and bodies that break off while fn reads them (fn's error wraps a
// *StreamError) are retried with backoff and jitter, calling fn again from
// the start: fn must discard whatever it kept of an earlier attempt. A 429, or
// a budget already known to be spent, is waited out until the reset (or
// returned as a *RateLimitError with NoWait). 400, 401 and 403 are returned
// at once as *APIError. Any other error from fn is returned as is. The body is
// drained and closed on every path.
func (c *Client) Export(ctx context.Context, q Query, fn func(*Response) error) error {
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
			// Not a spent call; the next awaitBudget pauses until the reset.
			attempt--
			if c.NoWait {
				return &RateLimitError{ResumeAt: c.Budget().Reset, RequestID: apiErr.RequestID}
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
		c.logger().Warn("export call failed, retrying", "attempt", attempt, "backoff", d.String(), "err", err.Error())
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
// before headers, timeout): worth retrying.
type netError struct{ err error }

func (e *netError) Error() string { return e.err.Error() }
func (e *netError) Unwrap() error { return e.err }

func (c *Client) once(ctx context.Context, q Query, fn func(*Response) error) error {
	u := strings.TrimRight(c.BaseURL, "/") + ExportPath
	if enc := q.Values().Encode(); enc != "" {
		u += "?" + enc
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("build export request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Key.v)
	req.Header.Set("Accept", "text/csv")
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	start := time.Now()
	resp, err := c.httpClient().Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &netError{err: redactURLError(err)}
	}
	defer func() {
		// Drain a little so the connection can be reused, then close.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 256<<10))
		_ = resp.Body.Close()
	}()
	reqID := resp.Header.Get("X-Request-ID")
	rl := parseRateLimit(resp.Header, time.Now())
	c.mu.Lock()
	if resp.StatusCode == http.StatusTooManyRequests {
		c.rateLimited++
	} else {
		c.calls++
	}
	if rl.Known {
		c.budget = rl
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		// Make sure the next awaitBudget pauses even if the headers were missing.
		reset := retryAfter(resp.Header, time.Now())
		if reset.IsZero() {
			reset = rl.Reset
		}
		if reset.IsZero() {
			reset = time.Now().Add(time.Minute)
		}
		c.budget = RateLimit{Limit: rl.Limit, Remaining: 0, Reset: reset, Known: true}
	}
	c.mu.Unlock()

	log := c.logger().With("request_id", reqID, "status", resp.StatusCode)
	if rl.Known {
		log = log.With("ratelimit_remaining", rl.Remaining, "ratelimit_reset", rl.Reset.UTC().Format(time.RFC3339))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		apiErr := readAPIError(resp, reqID)
		if apiErr.Status == http.StatusTooManyRequests {
			apiErr.ResetAt = c.Budget().Reset
		}
		log.Warn("export call refused", "code", apiErr.Code, "message", apiErr.Message)
		return apiErr
	}
	log.Info("export call", "after", q.Values().Get("created_after"), "before", q.Values().Get("created_before"), "limit", q.Limit, "headers_in", time.Since(start).Round(time.Millisecond).String())
	return fn(&Response{
		Body:      &streamReader{r: resp.Body, reqID: reqID},
		RequestID: reqID,
		RateLimit: rl,
		Header:    resp.Header,
	})
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

// streamReader turns read errors into *StreamError so the retry logic can
// recognise them through any wrapping the body's consumer adds.
type streamReader struct {
	r     io.Reader
	reqID string
}

func (s *streamReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return n, err
		}
		return n, &StreamError{RequestID: s.reqID, Err: err}
	}
	return n, err
}

func readAPIError(resp *http.Response, reqID string) *APIError {
	e := &APIError{Status: resp.StatusCode, RequestID: reqID}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
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
	switch {
	case json.Unmarshal(body, &nested) == nil && nested.Error.Code != "":
		e.Code, e.Message = nested.Error.Code, nested.Error.Message
	case json.Unmarshal(body, &flat) == nil && (flat.Code != "" || flat.Message != "" || flat.Error != ""):
		e.Code, e.Message = flat.Code, flat.Message
		if e.Message == "" {
			e.Message = flat.Error
		}
	default:
		msg := strings.TrimSpace(string(body))
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		e.Message = msg
	}
	return e
}

// parseRateLimit reads X-RateLimit-*. X-RateLimit-Reset may be epoch seconds
// or seconds until the reset; values above 1e9 are taken as epoch seconds.
func parseRateLimit(h http.Header, now time.Time) RateLimit {
	var rl RateLimit
	lim, err1 := strconv.Atoi(strings.TrimSpace(h.Get("X-RateLimit-Limit")))
	rem, err2 := strconv.Atoi(strings.TrimSpace(h.Get("X-RateLimit-Remaining")))
	if err1 != nil || err2 != nil {
		return rl
	}
	rl.Limit, rl.Remaining, rl.Known = lim, rem, true
	rl.Reset = parseReset(h.Get("X-RateLimit-Reset"), now)
	return rl
}

func parseReset(s string, now time.Time) time.Time {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f < 0 {
		return time.Time{}
	}
	if f > 1e9 {
		sec := int64(f)
		return time.Unix(sec, int64((f-float64(sec))*1e9))
	}
	return now.Add(time.Duration(f * float64(time.Second)))
}

// retryAfter reads Retry-After (seconds or an HTTP date).
func retryAfter(h http.Header, now time.Time) time.Time {
	s := strings.TrimSpace(h.Get("Retry-After"))
	if s == "" {
		return time.Time{}
	}
	if n, err := strconv.ParseFloat(s, 64); err == nil && n >= 0 {
		return now.Add(time.Duration(n * float64(time.Second)))
	}
	if t, err := http.ParseTime(s); err == nil {
		return t
	}
	return time.Time{}
}

// awaitBudget pauses until the reset when the budget is known to be spent.
func (c *Client) awaitBudget(ctx context.Context) error {
	b := c.Budget()
	if !b.Known || b.Remaining > 0 || b.Reset.IsZero() {
		return nil
	}
	wait := time.Until(b.Reset)
	if wait <= 0 {
		return nil
	}
	if c.NoWait {
		return &RateLimitError{ResumeAt: b.Reset}
	}
	maxWait := c.MaxWait
	if maxWait <= 0 {
		maxWait = 2 * time.Hour
	}
	if wait > maxWait {
		return fmt.Errorf("rate limit resets in %s, longer than the longest wait allowed (%s): %w", wait.Round(time.Second), maxWait, &RateLimitError{ResumeAt: b.Reset})
	}
	// A little past the reset, so clocks that disagree slightly still agree.
	wait += 250*time.Millisecond + rand.N(250*time.Millisecond)
	c.logger().Info("export budget spent, waiting for the reset", "until", b.Reset.UTC().Format(time.RFC3339), "wait", wait.Round(time.Second).String())
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
