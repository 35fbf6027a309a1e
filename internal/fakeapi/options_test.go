package fakeapi

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func parseFlags(args ...string) (Options, error) {
	var o Options
	fs := pflag.NewFlagSet("fake-api", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.AddFlags(fs)
	return o, fs.Parse(args)
}

func TestFlagDefaults(t *testing.T) {
	o, err := parseFlags()
	if err != nil {
		t.Fatal(err)
	}
	want := Options{Addr: "127.0.0.1:8787", Config: Config{
		Contacts: 10000, Seed: 1, Order: OrderAsc, Bounds: BoundsInclusive, RateLimit: 10,
		Hour: time.Hour, ResetStyle: ResetEpoch, TimeFormat: TimeUTC, SlowDelay: 50 * time.Millisecond, BadReset: BadResetNone,
	}}
	if o.Addr != want.Addr || !sameConfig(o.Config, want.Config) {
		t.Errorf("defaults %+v, want %+v", o, want)
	}
	fs := pflag.NewFlagSet("fake-api", pflag.ContinueOnError)
	o.AddFlags(fs)
	fs.VisitAll(func(f *pflag.Flag) {
		if len(f.Usage) < 40 {
			t.Errorf("--%s help %q does not explain itself", f.Name, f.Usage)
		}
	})
}

func TestFlagValues(t *testing.T) {
	o, err := parseFlags("--addr", "127.0.0.1:0", "--contacts", "500", "--seed", "-7", "--order", "random",
		"--bounds", "mixed", "--rate-limit", "0", "--hour", "2s", "--reset-style", "delta", "--time-format", "offset",
		"--fail-rate", "0.1", "--cut-rate", "0.2", "--slow-rate", "1", "--slow-delay", "5ms",
		"--bad-reset", "far-date", "--redirect-to", "http://127.0.0.1:9/x", "--stall-after", "5", "--overrun", "endless",
		"--ignore-bounds", "--echo-key", "errors,body", "--echo-key", "request-id")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Contacts: 500, Seed: -7, Order: OrderRandom, Bounds: BoundsMixed, RateLimit: 0, Hour: 2 * time.Second,
		ResetStyle: ResetDelta, TimeFormat: TimeOffset, FailRate: 0.1, CutRate: 0.2, SlowRate: 1, SlowDelay: 5 * time.Millisecond,
		BadReset: BadResetDate, RedirectTo: "http://127.0.0.1:9/x", StallAfter: 5, Overrun: OverrunEndless, IgnoreBounds: true,
		EchoKey: []Echo{EchoErrors, EchoBody, EchoRequestID}}
	if o.Addr != "127.0.0.1:0" || !sameConfig(o.Config, want) {
		t.Errorf("parsed %+v, want %+v", o.Config, want)
	}
	// The words and counts read back as they were given.
	o, err = parseFlags("--stall-after", "headers", "--overrun", "3")
	if err != nil || o.Config.StallAfter != StallHeaders || o.Config.Overrun != 3 {
		t.Errorf("--stall-after headers --overrun 3: %+v, %v", o.Config, err)
	}
}

func TestFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		flag string
	}{
		{[]string{"--contacts", "-1"}, "--contacts"},
		{[]string{"--contacts", "many"}, "--contacts"},
		{[]string{"--contacts", "60000000"}, "--contacts"},
		{[]string{"--order", "newest"}, "--order"},
		{[]string{"--bounds", "closed"}, "--bounds"},
		{[]string{"--rate-limit", "-1"}, "--rate-limit"},
		{[]string{"--hour", "0"}, "--hour"},
		{[]string{"--hour", "-1s"}, "--hour"},
		{[]string{"--hour", "soon"}, "--hour"},
		{[]string{"--reset-style", "iso"}, "--reset-style"},
		{[]string{"--time-format", "local"}, "--time-format"},
		{[]string{"--fail-rate", "1.5"}, "--fail-rate"},
		{[]string{"--cut-rate", "-0.1"}, "--cut-rate"},
		{[]string{"--slow-rate", "NaN"}, "--slow-rate"},
		{[]string{"--slow-delay", "-5ms"}, "--slow-delay"},
		{[]string{"--bad-reset", "later"}, "--bad-reset"},
		{[]string{"--redirect-to", "ftp://x"}, "--redirect-to"},
		{[]string{"--redirect-to", "/relative"}, "--redirect-to"},
		{[]string{"--stall-after", "-2"}, "--stall-after"},
		{[]string{"--stall-after", "body"}, "--stall-after"},
		{[]string{"--overrun", "forever"}, "--overrun"},
		{[]string{"--echo-key", "logs"}, "--echo-key"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := parseFlags(tt.args...)
			if err == nil || !strings.Contains(err.Error(), `"`+tt.flag+`"`) {
				t.Fatalf("error %v, want one naming %s", err, tt.flag)
			}
		})
	}
}

func TestServe(t *testing.T) {
	o, err := parseFlags("--addr", "127.0.0.1:0", "--contacts", "100", "--slow-rate", "1", "--slow-delay", "1h")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		errc <- Serve(ctx, o, pw)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the listening line: %v", err)
	}
	go io.Copy(io.Discard, pr)
	m := regexp.MustCompile(`^fake LeadLex API listening on (http://127\.0\.0\.1:[1-9][0-9]*) \(100 contacts, key wbk_demo_key\)\n$`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("listening line %q", line)
	}
	req, _ := http.NewRequest("GET", m[1]+ExportPath+"?limit=3", nil)
	req.Header.Set("Authorization", "Bearer "+DemoKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-RateLimit-Limit") != "10" {
		t.Fatalf("status %d, X-RateLimit-Limit %q", resp.StatusCode, resp.Header.Get("X-RateLimit-Limit"))
	}
	// The body is slow (an hour between chunks): shutting down must cancel
	// it rather than wait.
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatalf("reading the header row: %v", err)
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Serve returned %v after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

func TestServeBadAddr(t *testing.T) {
	err := Serve(context.Background(), Options{Addr: "127.0.0.1:99999"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--addr") {
		t.Fatalf("error %v, want one naming --addr", err)
	}
}

// sameConfig compares configs that have no Keys or Now.
func sameConfig(a, b Config) bool {
	return a.Contacts == b.Contacts && a.Seed == b.Seed && a.Order == b.Order && a.Bounds == b.Bounds &&
		a.RateLimit == b.RateLimit && a.Hour == b.Hour && a.ResetStyle == b.ResetStyle && a.TimeFormat == b.TimeFormat &&
		a.FailRate == b.FailRate && a.CutRate == b.CutRate && a.SlowRate == b.SlowRate && a.SlowDelay == b.SlowDelay &&
		a.BadReset == b.BadReset && a.RedirectTo == b.RedirectTo && a.StallAfter == b.StallAfter && a.Overrun == b.Overrun &&
		a.IgnoreBounds == b.IgnoreBounds && slices.Equal(a.EchoKey, b.EchoKey) &&
		a.Keys == nil && b.Keys == nil && a.Now == nil && b.Now == nil
}
