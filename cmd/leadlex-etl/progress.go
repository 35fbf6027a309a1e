package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/pipeline"
)

// progress shows how a sync advances, on stderr: on a terminal a live line
// (windows done of planned, rows, rows/s, calls, the hour's budget, and a
// countdown while the run waits for the rate-limit reset) drawn by mpb,
// with the log printed above it; elsewhere a log line every interval; with
// -q only a warning when a wait for the reset starts. It is the sync's
// pipeline.Progress, and its wait method is the client's OnWait.
type progress struct {
	log      *slog.Logger
	client   *extract.Client
	quiet    bool
	live     bool          // draw the live line
	interval time.Duration // between log lines, when not live (0: none)
	stderr   io.Writer
	logw     *switchWriter // the log's writer: through mpb while the line is live

	mu        sync.Mutex
	started   bool
	start     time.Time
	planned   int
	windows   int
	rows      int64
	calls     int
	refresh   bool
	waitUntil time.Time

	p    *mpb.Progress
	bar  *mpb.Bar
	stop chan struct{} // ends the periodic log lines
	done chan struct{} // closed when they have ended
}

// newProgress returns the progress display of a sync logging through log,
// whose writer is logw, and calling the API with client.
func newProgress(stderr io.Writer, logw *switchWriter, log *slog.Logger, client *extract.Client, quiet bool, interval time.Duration) *progress {
	return &progress{log: log, client: client, quiet: quiet, live: !quiet && isTerminal(stderr), interval: interval, stderr: stderr, logw: logw}
}

// isTerminal says whether w is a terminal that can draw a live line.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	return isatty.IsTerminal(f.Fd())
}

var _ pipeline.Progress = (*progress)(nil)

// Start implements pipeline.Progress: the live line or the periodic log
// lines begin.
func (r *progress) Start(windows int) {
	r.mu.Lock()
	if r.started {
		r.mu.Unlock()
		return
	}
	r.started, r.start, r.planned = true, time.Now(), windows
	r.mu.Unlock()
	switch {
	case r.live:
		r.p = mpb.New(mpb.WithOutput(r.stderr), mpb.WithRefreshRate(200*time.Millisecond))
		r.bar = r.p.New(0, mpb.BarStyle(),
			mpb.BarWidth(24),
			mpb.PrependDecorators(decor.Any(func(decor.Statistics) string { return r.head() })),
			mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return r.tail() })))
		r.bar.SetTotal(int64(windows), false)
		r.logw.set(r.p)
	case !r.quiet && r.interval > 0:
		r.stop, r.done = make(chan struct{}), make(chan struct{})
		go r.tick()
	}
}

// Window implements pipeline.Progress.
func (r *progress) Window(w pipeline.WindowProgress) {
	r.mu.Lock()
	r.windows, r.rows, r.calls, r.refresh = w.Windows, w.Rows, w.Calls, w.Refresh
	r.planned = max(r.planned, w.Windows+w.Pending)
	if !w.Refresh {
		r.planned = w.Windows + w.Pending
	}
	planned, done := r.planned, r.windows
	r.mu.Unlock()
	if r.bar != nil {
		r.bar.SetTotal(int64(planned), false)
		r.bar.SetCurrent(int64(done))
	}
}

// Refresh implements pipeline.Progress.
func (r *progress) Refresh(_ extract.Window, windows int) {
	r.mu.Lock()
	r.refresh = true
	r.planned = r.windows + windows
	planned := r.planned
	r.mu.Unlock()
	if r.bar != nil {
		r.bar.SetTotal(int64(planned), false)
	}
}

// wait is the client's OnWait: a pause for the rate limit until until
// starts. The client logs it; with -q, which hides that, it is the one
// line progress prints.
func (r *progress) wait(until time.Time) {
	r.mu.Lock()
	r.waitUntil = until
	r.mu.Unlock()
	if r.quiet {
		r.log.Warn("waiting for the rate-limit reset", "until", until.UTC().Format(time.RFC3339), "wait", ceilSecond(time.Until(until)).String())
	}
}

// finish ends the live line (complete says the run is) or the periodic log
// lines; the log goes straight to stderr again.
func (r *progress) finish(complete bool) {
	if r.p != nil {
		if complete {
			r.bar.SetTotal(-1, true)
		} else {
			r.bar.Abort(false)
		}
		r.logw.set(r.stderr)
		r.p.Wait()
		r.p = nil
	}
	if r.stop != nil {
		close(r.stop)
		<-r.done
		r.stop = nil
	}
}

// tick logs the progress every interval until finish.
func (r *progress) tick() {
	defer close(r.done)
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.logLine()
		}
	}
}

// logLine logs where the run stands.
func (r *progress) logLine() {
	r.mu.Lock()
	phase, planned, done, rows, calls, rate := r.phase(), r.planned, r.windows, r.rows, r.calls, r.rate()
	until := r.waitUntil
	r.mu.Unlock()
	attrs := []any{"phase", phase, "windows", done, "planned", planned, "rows", rows, "rows_per_s", rate, "calls", calls}
	if b := r.client.Budget(); b.Known && b.Limit > 0 {
		attrs = append(attrs, "hour_calls_used", b.Limit-b.Remaining, "hour_limit", b.Limit)
	}
	if left := time.Until(until); left > 0 {
		attrs = append(attrs, "waiting_until", until.UTC().Format(time.RFC3339), "wait_left", ceilSecond(left).String())
	}
	r.log.Info("progress", attrs...)
}

// phase names what the run is doing; r.mu is held.
func (r *progress) phase() string {
	if r.refresh {
		return "refresh"
	}
	return "sync"
}

// rate is rows a second since the start, waits included; r.mu is held.
func (r *progress) rate() int64 {
	d := time.Since(r.start).Seconds()
	if d <= 0 {
		return 0
	}
	return int64(float64(r.rows) / d)
}

// head is the live line's text before the bar.
func (r *progress) head() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.phase()
}

// tail is the live line's text after the bar.
func (r *progress) tail() string {
	r.mu.Lock()
	planned, done, rows, calls, rate, until := r.planned, r.windows, r.rows, r.calls, r.rate(), r.waitUntil
	r.mu.Unlock()
	s := fmt.Sprintf("%d/%d windows | %s rows | %s rows/s | %s", done, planned, thousands(rows), thousands(rate), plural(calls, "call"))
	if b := r.client.Budget(); b.Known && b.Limit > 0 {
		s += fmt.Sprintf(" (hour: %d/%d used)", b.Limit-b.Remaining, b.Limit)
	}
	if left := time.Until(until); left > 0 {
		s += fmt.Sprintf(" | waiting for the reset: %s left", ceilSecond(left))
	}
	return s
}

// ceilSecond rounds a wait up to whole seconds, so a countdown never
// shows 0s while it lasts.
func ceilSecond(d time.Duration) time.Duration {
	return (d + time.Second - 1).Truncate(time.Second)
}

// thousands writes n with commas between groups of three digits.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	var b []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			b = append(b, ',')
		}
		b = append(b, s[i])
	}
	if neg {
		return "-" + string(b)
	}
	return string(b)
}

// switchWriter writes to one writer, which can be switched: the log goes
// through mpb (printed above the live line) while the line is live.
type switchWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *switchWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *switchWriter) set(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.w = w
}
