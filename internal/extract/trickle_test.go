package extract_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/fakeapi"
)

// TestTrickleFailsTheAttempt: a body that comes a byte at a time never
// lets the idle timeout fire, but comes slower than Timeouts.MinRate: each
// attempt fails like a stalled body, is counted and backed off, and the
// last one ends the call with a clear error. A body that comes in chunks
// with pauses between them, slow but honest, is read whole under the same
// timeouts.
func TestTrickleFailsTheAttempt(t *testing.T) {
	// 200 bytes a second against a floor of 20,000 over each 100 ms of
	// waiting: a hundredfold apart, whatever the machine's load.
	timeouts := extract.Timeouts{Idle: 100 * time.Millisecond, MinRate: 20_000}
	srv, hs := newFake(t, fakeapi.Config{Contacts: 100, Seed: 4, Trickle: 5 * time.Millisecond})
	var logs bytes.Buffer
	c := newClient(hs, secretKey, &logs)
	c.Timeouts, c.Retry.MaxAttempts = timeouts, 3
	// Five rows, about a kilobyte: without a floor, each attempt would
	// take seconds and succeed.
	err := c.Export(context.Background(), extract.Query{Limit: 5}, func(r *extract.Response) error {
		_, err := extract.TallyCSV(r.Body)
		return err
	})
	var se *extract.StreamError
	if !errors.Is(err, extract.ErrTimeout) || !errors.As(err, &se) || !strings.Contains(err.Error(), "gave up after 3 attempts") {
		t.Fatalf("got %v, want a timed-out stream after 3 attempts", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "slower than the floor of 20000 bytes a second") || !strings.Contains(msg, se.RequestID) {
		t.Errorf("message %q does not say the body trickled, nor name the request", msg)
	}
	if c.Calls() != 3 || srv.Calls() != 3 || strings.Count(logs.String(), "export call failed, retrying") != 2 {
		t.Errorf("client counted %d calls, server %d; want 3 (each attempt spends one), retried twice", c.Calls(), srv.Calls())
	}

	// Slow but honest: 64 KiB chunks with pauses between them.
	_, hs = newFake(t, fakeapi.Config{Contacts: 2000, Seed: 4, SlowRate: 1, SlowDelay: 20 * time.Millisecond})
	c = newClient(hs, secretKey, nil)
	c.Timeouts = timeouts
	var tally extract.Tally
	err = c.Export(context.Background(), extract.Query{}, func(r *extract.Response) error {
		var err error
		tally, err = extract.TallyCSV(r.Body)
		return err
	})
	if err != nil || tally.Rows != 2000 || c.Calls() != 1 {
		t.Errorf("a slow body: %v after %d calls, %d rows; want 2000 rows in one call", err, c.Calls(), tally.Rows)
	}
}
