package extract_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/fakeapi"
)

// TestHugeErrorBodiesAreCut: an error answer whose body is huge or never
// ends is read only as far as its limit: the call returns the API's error
// (status and request id, the start of the body as its message) instead of
// reading on. The fake API counts what it could write; should the client
// read on, the call is stopped once that passes maxBytes, far beyond
// what the client's limit and the connection's buffers let through, so the
// test fails at once rather than fill the memory.
func TestHugeErrorBodiesAreCut(t *testing.T) {
	const maxBytes = 64 << 20
	for _, tc := range []struct {
		name string
		size int
	}{{"128 MiB", 128 << 20}, {"endless", fakeapi.ErrorBodyEndless}} {
		t.Run(tc.name, func(t *testing.T) {
			srv, hs := newFake(t, fakeapi.Config{Contacts: 10, ErrorBody: tc.size})
			c := newClient(hs, "wbk_nope_S3CR3T", nil)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				tick := time.NewTicker(time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-done:
						return
					case <-tick.C:
						if srv.ErrorBytes() > maxBytes {
							cancel()
							return
						}
					}
				}
			}()
			err := c.Export(ctx, extract.Query{}, func(*extract.Response) error { return nil })
			close(done)
			cancel()
			var apiErr *extract.APIError
			if !errors.As(err, &apiErr) || apiErr.Status != 401 || apiErr.RequestID == "" {
				t.Fatalf("got %v after the server wrote %d bytes; want the API's 401 at once", err, srv.ErrorBytes())
			}
			if n := len(apiErr.Message); n == 0 || n > 64<<10 {
				t.Errorf("the error's message is %d bytes long", n)
			}
			hs.Close() // waits for the handler, which stops once the client is gone
			if n := srv.ErrorBytes(); n > maxBytes {
				t.Errorf("the server wrote %d bytes of the error body: the client read on", n)
			}
			if srv.Requests() != 1 {
				t.Errorf("%d requests, want 1 (a 401 is not retried)", srv.Requests())
			}
		})
	}
}
