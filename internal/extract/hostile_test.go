package extract_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	syncpkg "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/fakeapi"
)

// logBuf collects JSON log lines from any goroutine.
type logBuf struct {
	mu syncpkg.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// records returns the log records whose message starts with msg.
func (l *logBuf) records(t testing.TB, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if m, _ := rec["msg"].(string); strings.HasPrefix(m, msg) {
			out = append(out, rec)
		}
	}
	return out
}

// hostile starts a loopback server answering with h and counting requests.
func hostile(t testing.TB, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h(w, r)
	}))
	t.Cleanup(hs.Close)
	return hs, &n
}

// hostileClient is a client of base with a JSON log, tiny backoffs and the
// secret key.
func hostileClient(base string, logs *logBuf) *extract.Client {
	return &extract.Client{
		BaseURL:        base,
		Key:            extract.NewAPIKey(secretKey),
		Retry:          extract.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond},
		RateLimitFloor: time.Millisecond,
		Logger:         slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

func readBody(r *extract.Response) error {
	_, err := io.Copy(io.Discard, r.Body)
	return err
}

const csvBody = "id,created_at\n123e4567-e89b-12d3-a456-426614174000,2024-01-01T00:00:00Z\n"

// checkNoKey fails if any of texts holds the key or a piece of it.
func checkNoKey(t testing.TB, texts ...string) {
	t.Helper()
	for _, s := range texts {
		if strings.Contains(s, secretKey) || strings.Contains(s, "S3CR3T") {
			t.Errorf("the API key leaked: %q", s)
		}
	}
}

func TestRateLimitedWithoutUsableReset(t *testing.T) {
	past := strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)
	for _, tc := range []struct {
		name    string
		headers map[string]string
	}{
		{"Retry-After 0", map[string]string{"Retry-After": "0", "X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "0"}},
		{"reset in the past", map[string]string{"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": past}},
		{"negative", map[string]string{"Retry-After": "-5", "X-RateLimit-Reset": "-30"}},
		{"unparsable", map[string]string{"Retry-After": "later", "X-RateLimit-Reset": "soon"}},
		{"NaN", map[string]string{"Retry-After": "NaN", "X-RateLimit-Reset": "NaN"}},
		{"absent", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs, requests := hostile(t, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.headers {
					w.Header().Set(k, v)
				}
				w.Header().Set("X-Request-ID", "req_429")
				w.WriteHeader(http.StatusTooManyRequests)
				fmt.Fprint(w, `{"error":{"code":"rate_limited","message":"slow down"}}`)
			})
			var logs logBuf
			c := hostileClient(hs.URL, &logs)
			c.MaxRateLimited = 6
			err := c.Export(context.Background(), extract.Query{}, readBody)
			var rl *extract.RateLimitError
			if !errors.As(err, &rl) || rl.InARow != 6 || rl.Saved || rl.RequestID != "req_429" {
				t.Fatalf("got %v (%+v), want a *RateLimitError after 6 429s in a row", err, rl)
			}
			if !strings.Contains(err.Error(), "429 (rate limited) to 6 requests in a row") {
				t.Errorf("message %q does not say why it stopped", err)
			}
			if requests.Load() != 6 || c.RateLimited() != 6 || c.Calls() != 0 {
				t.Errorf("%d requests, %d rate limited, %d calls; want 6, 6, 0", requests.Load(), c.RateLimited(), c.Calls())
			}
			// Each pause was at least the floor, doubling: the pace of a
			// hostile 429 is the client's, not the server's.
			var got []string
			for _, rec := range logs.records(t, "rate limited without a usable reset time") {
				got = append(got, fmt.Sprint(rec["backoff"]))
			}
			if want := []string{"1ms", "2ms", "4ms", "8ms", "16ms", "32ms"}; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("backoffs %v, want %v", got, want)
			}
		})
	}
}

// TestRateLimitedNowAndThen: MaxRateLimited counts 429s in a row, and any
// other answer starts the count again, so a long sync that meets the odd
// 429 is not ended by their total.
func TestRateLimitedNowAndThen(t *testing.T) {
	var n atomic.Int64
	hs, _ := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%2 == 1 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		fmt.Fprint(w, csvBody)
	})
	c := hostileClient(hs.URL, &logBuf{})
	c.MaxRateLimited = 2
	for i := range 3 {
		if err := c.Export(context.Background(), extract.Query{}, readBody); err != nil {
			t.Fatalf("export %d: %v", i+1, err)
		}
	}
	if c.RateLimited() != 3 || c.Calls() != 3 {
		t.Errorf("%d rate limited, %d calls; want 3 and 3", c.RateLimited(), c.Calls())
	}
}

func TestResetsAreCapped(t *testing.T) {
	far := strconv.FormatInt(time.Now().AddDate(50, 0, 0).Unix(), 10)
	spent := map[string]string{"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "0"}
	with := func(m map[string]string, k, v string) map[string]string {
		out := map[string]string{k: v}
		for a, b := range m {
			out[a] = b
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		status  int
		headers map[string]string
		want    time.Duration // how far ahead the next call is
		capped  bool
	}{
		{"429, reset epoch 50 years ahead", 429, with(spent, "X-RateLimit-Reset", far), extract.MaxResetAhead, true},
		{"429, reset 31 years of seconds ahead", 429, with(spent, "X-RateLimit-Reset", "999999999"), extract.MaxResetAhead, true},
		{"429, Retry-After in 2099", 429, map[string]string{"Retry-After": fakeapi.FarDate}, extract.MaxResetAhead, true},
		{"429, Retry-After 1e15 seconds", 429, map[string]string{"Retry-After": "1e15"}, extract.MaxResetAhead, true},
		{"200 spent, reset epoch 50 years ahead", 200, with(spent, "X-RateLimit-Reset", far), extract.MaxResetAhead, true},
		{"429, an honest hour", 429, map[string]string{"Retry-After": "3600"}, time.Hour, false},
		{"429, Retry-After 0 falls back to the floor", 429, map[string]string{"Retry-After": "0"}, time.Second, false},
		{"429, Retry-After sooner than the floor waits the floor", 429, map[string]string{"Retry-After": "0.2"}, time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs, requests := hostile(t, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.headers {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tc.status)
				if tc.status == 200 {
					fmt.Fprint(w, csvBody)
				}
			})
			var logs logBuf
			c := hostileClient(hs.URL, &logs)
			c.RateLimitFloor = 0 // the default, 1s
			c.NoWait = true
			before := time.Now()
			err := c.Export(context.Background(), extract.Query{}, readBody)
			if tc.status == 200 {
				if err != nil {
					t.Fatal(err)
				}
				// The budget is known to be spent: no request is made.
				err = c.Export(context.Background(), extract.Query{}, readBody)
			}
			after := time.Now()
			var rl *extract.RateLimitError
			if !errors.As(err, &rl) {
				t.Fatalf("got %v, want a *RateLimitError", err)
			}
			if rl.ResumeAt.Before(before.Add(tc.want)) || rl.ResumeAt.After(after.Add(tc.want)) {
				t.Errorf("resume at %s, %s from now; want %s", rl.ResumeAt, time.Until(rl.ResumeAt).Round(time.Second), tc.want)
			}
			if requests.Load() != 1 {
				t.Errorf("%d requests, want 1", requests.Load())
			}
			if capped := len(logs.records(t, "rate-limit reset lies further ahead")) > 0; capped != tc.capped {
				t.Errorf("log says capped: %v, want %v:\n%s", capped, tc.capped, logs.String())
			}
		})
	}
}

// TestResetStyles reads X-RateLimit-Reset both ways the API may send it,
// epoch seconds or seconds until the reset, from a 200 that spends the
// budget: the next call waits for the same instant either way.
func TestResetStyles(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reset func(now time.Time) string
	}{
		{"epoch seconds", func(now time.Time) string { return strconv.FormatInt(now.Add(30*time.Second).Unix()+1, 10) }},
		{"seconds until", func(time.Time) string { return "30" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs, requests := hostile(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-RateLimit-Limit", "10")
				w.Header().Set("X-RateLimit-Remaining", "0")
				w.Header().Set("X-RateLimit-Reset", tc.reset(time.Now()))
				fmt.Fprint(w, csvBody)
			})
			c := hostileClient(hs.URL, &logBuf{})
			c.NoWait = true
			before := time.Now()
			if err := c.Export(context.Background(), extract.Query{}, readBody); err != nil {
				t.Fatal(err)
			}
			after := time.Now()
			err := c.Export(context.Background(), extract.Query{}, readBody)
			var rl *extract.RateLimitError
			if !errors.As(err, &rl) || requests.Load() != 1 {
				t.Fatalf("got %v after %d requests, want a *RateLimitError without a second request", err, requests.Load())
			}
			// Epoch seconds are whole: up to a second later than 30 s.
			if lo, hi := before.Add(30*time.Second), after.Add(31*time.Second); rl.ResumeAt.Before(lo) || rl.ResumeAt.After(hi) {
				t.Errorf("resume at %s, %s from now; want 30 s after the answer", rl.ResumeAt, time.Until(rl.ResumeAt).Round(time.Second))
			}
		})
	}
}

func TestSavedBudget(t *testing.T) {
	hs, requests := hostile(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, csvBody) })
	var logs logBuf
	c := hostileClient(hs.URL, &logs)
	c.NoWait = true
	// A poisoned budget an earlier run saved: spent for 50 years.
	c.SetBudget(extract.RateLimit{Limit: 10, Remaining: 0, Reset: time.Now().AddDate(50, 0, 0), Known: true})
	err := c.Export(context.Background(), extract.Query{}, readBody)
	var rl *extract.RateLimitError
	if !errors.As(err, &rl) || !rl.Saved || rl.InARow != 0 {
		t.Fatalf("got %v, want a *RateLimitError from the saved budget", err)
	}
	if time.Until(rl.ResumeAt) > extract.MaxResetAhead || !strings.Contains(err.Error(), "budget an earlier run saved") {
		t.Errorf("resume at %s; message %q", rl.ResumeAt, err)
	}
	if requests.Load() != 0 {
		t.Errorf("%d requests, want none", requests.Load())
	}
	if len(logs.records(t, "rate-limit reset lies further ahead")) != 1 {
		t.Errorf("the log does not say the saved reset was capped:\n%s", logs.String())
	}
	// One that has passed holds nothing back.
	c.SetBudget(extract.RateLimit{Limit: 10, Remaining: 0, Reset: time.Now().Add(-time.Minute), Known: true})
	if err := c.Export(context.Background(), extract.Query{}, readBody); err != nil || requests.Load() != 1 {
		t.Errorf("got %v after %d requests, want a call", err, requests.Load())
	}
}

func TestRedirectsStayOnTheOrigin(t *testing.T) {
	// elsewhere is a real export API at another origin: following a
	// redirect there would send it the key and load its data.
	srv, elsewhere := newFake(t, fakeapi.Config{Contacts: 10})
	var sawKey atomic.Bool
	spy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawKey.Store(sawKey.Load() || strings.Contains(r.Header.Get("Authorization"), secretKey))
		elsewhere.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(spy.Close)
	spyURL, _ := url.Parse(spy.URL)
	redirect := func(location string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Location", location)
			w.Header().Set("X-Request-ID", "req_302")
			w.WriteHeader(http.StatusFound)
		}
	}
	tests := []struct {
		name     string
		tls      bool
		handler  func(self string) http.HandlerFunc
		location string // what RedirectError.Location must start with; "" when followed
	}{
		{"another port", false, func(string) http.HandlerFunc { return redirect(spy.URL + extract.ExportPath) }, spy.URL + extract.ExportPath},
		{"another host, same port", false, func(self string) http.HandlerFunc {
			u, _ := url.Parse(self)
			return redirect("http://localhost:" + u.Port() + extract.ExportPath)
		}, "http://localhost:"},
		{"https to http", true, func(self string) http.HandlerFunc {
			u, _ := url.Parse(self)
			return redirect("http://" + u.Host + extract.ExportPath)
		}, "http://127.0.0.1:"},
		{"credentials, key and query scrubbed", false, func(string) http.HandlerFunc {
			return redirect("http://user:pw@" + spyURL.Host + "/leak/" + secretKey + "?token=" + secretKey)
		}, "http://" + spyURL.Host + "/leak/[REDACTED]?..."},
		{"same origin is followed", false, func(string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == extract.ExportPath {
					http.Redirect(w, r, "/moved"+extract.ExportPath+"?"+r.URL.RawQuery, http.StatusTemporaryRedirect)
					return
				}
				if r.Header.Get("Authorization") != "Bearer "+secretKey {
					w.WriteHeader(401)
					return
				}
				fmt.Fprint(w, csvBody)
			}
		}, ""},
	}
	t.Run("a same-origin loop", func(t *testing.T) {
		hs, requests := hostile(t, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, r.URL.RequestURI(), http.StatusFound)
		})
		c := hostileClient(hs.URL, &logBuf{})
		err := c.Export(context.Background(), extract.Query{}, readBody)
		var pe *extract.ProtocolError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), "redirected the export 10 times in a row") {
			t.Fatalf("got %v, want a *ProtocolError naming the loop", err)
		}
		if requests.Load() != 10 {
			t.Errorf("%d requests, want 10 (one attempt: a loop is not retried)", requests.Load())
		}
	})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var self *httptest.Server
			var requests atomic.Int64
			var h http.HandlerFunc
			handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { requests.Add(1); h(w, r) })
			if tc.tls {
				self = httptest.NewTLSServer(handler)
			} else {
				self = httptest.NewServer(handler)
			}
			t.Cleanup(self.Close)
			h = tc.handler(self.URL)
			var logs logBuf
			c := hostileClient(self.URL, &logs)
			if tc.tls {
				c.HTTP = self.Client()
			}
			before := srv.Requests()
			var body []byte
			err := c.Export(context.Background(), extract.Query{Limit: 5}, func(r *extract.Response) error {
				var err error
				body, err = io.ReadAll(r.Body)
				return err
			})
			if tc.location == "" {
				if err != nil || string(body) != csvBody || requests.Load() != 2 || c.Calls() != 1 {
					t.Fatalf("got %v, body %q after %d requests, %d calls; want the data in one call", err, body, requests.Load(), c.Calls())
				}
				return
			}
			var re *extract.RedirectError
			if !errors.As(err, &re) {
				t.Fatalf("got %v, want a *RedirectError", err)
			}
			if re.Status != 302 || re.RequestID != "req_302" || !strings.HasPrefix(re.Location, tc.location) {
				t.Errorf("got %+v, want 302 to %s...", re, tc.location)
			}
			if !strings.Contains(err.Error(), "another origin") || !strings.Contains(err.Error(), re.Location) {
				t.Errorf("message %q does not say what happened", err)
			}
			if requests.Load() != 1 || srv.Requests() != before || sawKey.Load() {
				t.Errorf("%d requests here, %d elsewhere, key seen elsewhere %v; want 1, 0, false", requests.Load(), srv.Requests()-before, sawKey.Load())
			}
			checkNoKey(t, err.Error(), logs.String())
			if strings.Contains(err.Error(), "pw@") || strings.Contains(err.Error(), "token") {
				t.Errorf("message %q holds credentials or the query", err)
			}
		})
	}
}

func TestTimeoutsFailTheAttempt(t *testing.T) {
	block := func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	tests := []struct {
		name     string
		timeouts extract.Timeouts
		handler  http.HandlerFunc
		stream   bool // the body stalled (a *StreamError), not the answer
	}{
		{"no response headers", extract.Timeouts{Headers: 20 * time.Millisecond}, block, false},
		{"no byte of the body", extract.Timeouts{Idle: 20 * time.Millisecond}, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/csv")
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			block(w, r)
		}, true},
		{"stalled mid-body", extract.Timeouts{Idle: 20 * time.Millisecond}, func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, csvBody+csvBody[len("id,created_at\n"):])
			w.(http.Flusher).Flush()
			block(w, r)
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hs, requests := hostile(t, tc.handler)
			var logs logBuf
			c := hostileClient(hs.URL, &logs)
			c.Timeouts = tc.timeouts
			err := c.Export(context.Background(), extract.Query{}, func(r *extract.Response) error {
				_, err := extract.TallyCSV(r.Body)
				return err
			})
			if !errors.Is(err, extract.ErrTimeout) || !strings.Contains(err.Error(), "gave up after 2 attempts") {
				t.Fatalf("got %v, want a timeout after 2 attempts", err)
			}
			var se *extract.StreamError
			if errors.As(err, &se) != tc.stream {
				t.Errorf("got %v; a *StreamError: %v, want %v", err, !tc.stream, tc.stream)
			}
			if requests.Load() != 2 || len(logs.records(t, "export call failed, retrying")) != 1 {
				t.Errorf("%d requests, want 2 (a timeout is retried like a 5xx)", requests.Load())
			}
		})
	}
	// A stalled error body: what arrived is the message.
	hs, requests := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		fmt.Fprint(w, "upstream is thinking")
		w.(http.Flusher).Flush()
		block(w, r)
	})
	c := hostileClient(hs.URL, &logBuf{})
	c.Timeouts = extract.Timeouts{Idle: 20 * time.Millisecond}
	err := c.Export(context.Background(), extract.Query{}, readBody)
	var apiErr *extract.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 500 || apiErr.Message != "upstream is thinking" || requests.Load() != 2 {
		t.Errorf("got %v after %d requests, want the 500 twice", err, requests.Load())
	}
}

func TestTimeoutsFlag(t *testing.T) {
	var v extract.Timeouts = extract.DefaultTimeouts
	if v.String() != "30s,2m,2m" || v.Type() != "connect,headers,idle" {
		t.Errorf("default %q (%s)", v.String(), v.Type())
	}
	for _, tc := range []struct {
		in   string
		want string // String after Set; "" for an error
	}{
		{"10s,1m,90s", "10s,1m,1m30s"},
		{" 5ms , 10ms , 1h", "5ms,10ms,1h"},
		{"30s,2m", ""},
		{"30s,2m,2m,2m", ""},
		{"30s,0s,2m", ""},
		{"30s,-1s,2m", ""},
		{"30s,soon,2m", ""},
		{"30s,2m,2h", ""},
		{"", ""},
	} {
		v := extract.DefaultTimeouts
		err := v.Set(tc.in)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("Set(%q) accepted: %s", tc.in, v.String())
		case tc.want != "" && (err != nil || v.String() != tc.want):
			t.Errorf("Set(%q) = %q, %v; want %q", tc.in, v.String(), err, tc.want)
		case tc.want == "" && v != extract.DefaultTimeouts:
			t.Errorf("a refused Set(%q) changed the value to %s", tc.in, v.String())
		}
	}
}

func TestRequestIDsAreTokensOrMarkers(t *testing.T) {
	ids := []string{"req_ok-1", strings.Repeat("r", 129), "req with space", "réq", "req_" + secretKey, "req_ok-2"}
	var n atomic.Int64
	hs, _ := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-ID", ids[n.Add(1)-1])
		fmt.Fprint(w, csvBody)
	})
	var logs logBuf
	c := hostileClient(hs.URL, &logs)
	var got []string
	for range ids {
		if err := c.Export(context.Background(), extract.Query{}, func(r *extract.Response) error {
			got = append(got, r.RequestID)
			return readBody(r)
		}); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range got {
		keep := i == 0 || i == len(ids)-1
		if keep && id != ids[i] || !keep && !strings.HasPrefix(id, "invalid-request-id-") {
			t.Errorf("X-Request-ID %q became %q", clip(ids[i]), id)
		}
	}
	if w := logs.records(t, "the API sent an X-Request-ID that is not kept"); len(w) != 1 {
		t.Errorf("%d warnings, want one", len(w))
	}
	checkNoKey(t, logs.String(), strings.Join(got, " "))
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func TestKeyEchoesAreRedacted(t *testing.T) {
	escaped := strings.ReplaceAll(secretKey, "w", `\u0077`)
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    string // in the error message or the body
	}{
		{"JSON error message", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(400)
			fmt.Fprintf(w, `{"error":{"code":"validation_error","message":"bad header %s"}}`, r.Header.Get("Authorization"))
		}, "bad header Bearer [REDACTED]"},
		{"JSON-escaped key", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(400)
			fmt.Fprintf(w, `{"error":{"code":"validation_error","message":"key %s"}}`, escaped)
		}, "key [REDACTED]"},
		{"key as the code", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(403)
			fmt.Fprintf(w, `{"code":%q}`, secretKey)
		}, "LeadLex API 403 [REDACTED]"},
		{"plain text split across writes", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(400)
			fmt.Fprint(w, "oops "+secretKey[:10])
			w.(http.Flusher).Flush()
			fmt.Fprint(w, secretKey[10:]+" end\n\x1b[2J")
		}, "oops [REDACTED] end"},
		{"clipped echo", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(401)
			fmt.Fprintf(w, `{"error":{"code":"invalid_key","message":"%s..."}}`, r.Header.Get("Authorization")[:30])
		}, "Bearer [REDACTED]..."},
		{"CSV body across flushes", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, "id,full_name,created_at\n123e4567-e89b-12d3-a456-426614174000,"+secretKey[:7])
			w.(http.Flusher).Flush()
			fmt.Fprint(w, secretKey[7:]+",2024-01-01T00:00:00Z\n")
		}, "426614174000,[REDACTED],2024"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hs, _ := hostile(t, tc.handler)
			var logs logBuf
			c := hostileClient(hs.URL, &logs)
			var body []byte
			err := c.Export(context.Background(), extract.Query{}, func(r *extract.Response) error {
				var err error
				body, err = io.ReadAll(r.Body)
				return err
			})
			text := string(body)
			if err != nil {
				text = err.Error()
			}
			if !strings.Contains(text, tc.want) {
				t.Errorf("got %q, want it to hold %q", text, tc.want)
			}
			checkNoKey(t, text, logs.String())
			if strings.ContainsAny(text, "\n\x1b") && err != nil {
				t.Errorf("the message %q holds control characters", text)
			}
		})
	}
}
