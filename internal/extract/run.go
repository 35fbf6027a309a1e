package extract

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Handler consumes the windows an Extractor fetches.
type Handler interface {
	// Consume reads one response body for window w to the end and returns
	// its Tally. It may be called again for the same window when the body
	// broke off (its error wrapping a *StreamError): each call must start
	// afresh and discard what an earlier call kept. It must not make the
	// window's rows durable; Commit does.
	Consume(ctx context.Context, w Window, resp *Response) (Tally, error)
	// Commit makes window w durable together with pending, the windows still
	// to fetch after it (what a resumed sync starts from). It is called once
	// per window, after the planner has learnt from the window's Tally.
	Commit(ctx context.Context, w Window, pending []Window) error
}

// Summary counts what a Run did.
type Summary struct {
	Windows     int           // windows fetched and committed
	Rows        int           // data rows received, duplicates across windows included
	Calls       int           // export calls answered with anything but 429 (retries included)
	RateLimited int           // calls answered 429
	Elapsed     time.Duration // wall time
}

// MinCalls is the fewest calls that could export rows at limit rows a call.
func MinCalls(rows, limit int) int {
	if rows <= 0 {
		return 1
	}
	return (rows + limit - 1) / limit
}

// Extractor drives a Planner with a Client: it asks the planner for a window,
// exports it, hands the body to a Handler, feeds the Tally back, and commits.
type Extractor struct {
	Client *Client
	Query  Query // filters, fields and Limit; its created_after/before are set per window
}

// Run exports every window p hands out until the range is complete, the
// context ends, or maxCalls calls have been spent (0 = no cap; stopping at
// the cap is not an error, and p.Pending says what is left).
func (e *Extractor) Run(ctx context.Context, p *Planner, h Handler, maxCalls int) (sum Summary, err error) {
	start := time.Now()
	calls0, rl0 := e.Client.Calls(), e.Client.RateLimited()
	defer func() {
		sum.Calls = e.Client.Calls() - calls0
		sum.RateLimited = e.Client.RateLimited() - rl0
		sum.Elapsed = time.Since(start)
	}()
	for {
		if maxCalls > 0 && e.Client.Calls()-calls0 >= maxCalls {
			return sum, nil
		}
		w, ok := p.Next()
		if !ok {
			return sum, nil
		}
		var t Tally
		var reqID string
		err := e.Client.Export(ctx, w.Apply(e.Query), func(resp *Response) error {
			var err error
			reqID = resp.RequestID
			t, err = h.Consume(ctx, w, resp)
			return err
		})
		if err != nil {
			p.abandon()
			return sum, fmt.Errorf("export window %s: %w", w, err)
		}
		if err := p.Done(t); err != nil {
			var pe *ProtocolError
			if errors.As(err, &pe) && pe.RequestID == "" {
				pe.RequestID = reqID
			}
			return sum, fmt.Errorf("export window %s: %w", w, err)
		}
		if err := h.Commit(ctx, w, p.Pending()); err != nil {
			return sum, fmt.Errorf("commit window %s: %w", w, err)
		}
		sum.Windows++
		sum.Rows += t.Rows
	}
}
