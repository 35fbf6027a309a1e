package fakeapi

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCutStyleClose cuts bodies that have no Content-Length: the server
// closes the connection mid-row, and the client reads a clean end of a
// body that is a prefix of the whole one, ending inside a row.
func TestCutStyleClose(t *testing.T) {
	fields := "fields=" + strings.Join(append(slices.Clone(DefaultFields), ExtraFields...), ",")
	_, whole := newTestServer(t, Config{Contacts: 3000, Seed: 12})
	_, normal, err := doRequest(t, whole, "GET", ExportPath, fields, "Bearer "+DemoKey)
	if err != nil {
		t.Fatal(err)
	}
	srv, ts := newTestServer(t, Config{Contacts: 3000, Seed: 12, CutStyle: CutClose})
	srv.InjectFault(FaultCut, FaultCut, FaultNone)
	for _, tc := range []struct{ name, query string }{{"rows", fields}, {"empty export", "created_after=2030-01-01"}, {"whole", fields}} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body, err := doRequest(t, ts, "GET", ExportPath, tc.query, "Bearer "+DemoKey)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, read error %v; want 200 and a clean end", resp.StatusCode, err)
			}
			if tc.name == "whole" {
				if string(body) != string(normal) || resp.ContentLength >= 0 && resp.ContentLength != int64(len(body)) {
					t.Errorf("a call after the cuts: %d bytes, want the whole body of %d", len(body), len(normal))
				}
				return
			}
			if resp.ContentLength != -1 || len(resp.TransferEncoding) != 0 || !resp.Close {
				t.Errorf("Content-Length %d, Transfer-Encoding %v, close %v; want a body that ends with the connection", resp.ContentLength, resp.TransferEncoding, resp.Close)
			}
			if len(body) == 0 || strings.HasSuffix(string(body), "\n") {
				t.Errorf("cut body of %d bytes ends at a line boundary", len(body))
			}
			if tc.name == "rows" && (len(body) < len(normal)/4 || len(body) > len(normal)*3/4 || !strings.HasPrefix(string(normal), string(body))) {
				t.Errorf("cut body has %d of %d bytes or is not a prefix", len(body), len(normal))
			}
		})
	}
}

// TestClockSkew runs the server's clock ahead of and behind its Now: the
// Date header and the epoch reset follow the server's clock, a delta reset
// is the same either way.
func TestClockSkew(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, skew := range []time.Duration{10 * time.Minute, -10 * time.Minute, 0} {
		for _, style := range []ResetStyle{ResetEpoch, ResetDelta} {
			t.Run(skew.String()+"/"+string(style), func(t *testing.T) {
				clock := newFakeClock(t0)
				_, ts := newTestServer(t, Config{Contacts: 10, RateLimit: 10, ResetStyle: style, ClockSkew: skew, Now: clock.Now})
				resp, _, err := doRequest(t, ts, "GET", ExportPath, "", "Bearer "+DemoKey)
				if err != nil || resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d, %v", resp.StatusCode, err)
				}
				server := t0.Add(skew)
				if skew != 0 {
					if got, want := resp.Header.Get("Date"), server.Format(http.TimeFormat); got != want {
						t.Errorf("Date %q, want %q", got, want)
					}
				} else if d, err := http.ParseTime(resp.Header.Get("Date")); err != nil || time.Since(d) > time.Minute {
					t.Errorf("Date %q, want the machine's time", resp.Header.Get("Date"))
				}
				want := strconv.FormatInt(server.Add(time.Hour).Unix(), 10)
				if style == ResetDelta {
					want = "3600"
				}
				if got := resp.Header.Get("X-RateLimit-Reset"); got != want {
					t.Errorf("X-RateLimit-Reset %q, want %q", got, want)
				}
			})
		}
	}
}

func TestTransportOptions(t *testing.T) {
	o, err := parseFlags()
	if err != nil || o.Config.CutStyle != CutChunked || o.Config.ClockSkew != 0 {
		t.Errorf("defaults: CutStyle %q, ClockSkew %s, %v", o.Config.CutStyle, o.Config.ClockSkew, err)
	}
	o, err = parseFlags("--cut-style", "mid-row-close", "--clock-skew", "-10m")
	if err != nil || o.Config.CutStyle != CutClose || o.Config.ClockSkew != -10*time.Minute {
		t.Errorf("CutStyle %q, ClockSkew %s, %v", o.Config.CutStyle, o.Config.ClockSkew, err)
	}
	for _, args := range [][]string{{"--cut-style", "rst"}, {"--clock-skew", "49h"}, {"--clock-skew", "-49h"}, {"--clock-skew", "soon"}} {
		if _, err := parseFlags(args...); err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: error %v, want one naming %s", args, err, args[0])
		}
	}
	for _, cfg := range []Config{{CutStyle: "rst"}, {ClockSkew: 49 * time.Hour}, {ClockSkew: -49 * time.Hour}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted it", cfg)
		}
	}
}
