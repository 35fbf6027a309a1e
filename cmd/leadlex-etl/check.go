package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/leadlex/leadlex-etl/internal/budget"
	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/pipeline"
)

// checkOptions holds the flags of `leadlex-etl check`.
type checkOptions struct {
	API apiOptions
	Log logOptions
}

func (o *checkOptions) AddFlags(fs *pflag.FlagSet) {
	o.API.AddFlags(fs)
	o.Log.AddFlags(fs)
}

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o checkOptions
	fs := newFlagSet("check", `Check that the API key and the base URL work before a sync depends on
them: one export call asking for one contact (limit=1). It costs one of the
workspace's export calls this hour (10 an hour), and says so before it
calls. A 5xx answer or a network error is retried as sync would
(--attempts), each try spending a call; a spent rate limit is never waited
for.

It prints the request id and the rate-limit budget the API reports after
the call (calls left of the hour's limit, and when it resets), and saves
that budget where syncs on this machine read it.

Exit codes: 0 the key works, 3 the key is refused (401/403), 75 rate-limited
now (the message says when calls resume), 1 anything else (the base URL
does not answer as the LeadLex export API, a network error, a 5xx), 2 bad
usage.

Example:
  export LEADLEX_API_KEY=wbk_...
  leadlex-etl check`, stdout)
	o.AddFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := o.Log.validate(); err != nil {
		return err
	}
	key, err := o.API.validate(fs)
	if err != nil {
		return err
	}
	log := o.Log.logger(stderr)
	for _, w := range o.API.warnings {
		log.Warn(w)
	}
	client := o.API.client(key, log)
	client.NoWait = true // a check never waits for a reset
	if !o.Log.Quiet {
		fmt.Fprintf(stderr, "check: asking %s%s for one contact; this spends one of the workspace's export calls this hour\n",
			strings.TrimRight(o.API.BaseURL, "/"), extract.ExportPath)
	}
	var reqID string
	err = client.Export(ctx, extract.Query{Limit: 1}, func(resp *extract.Response) error {
		reqID = resp.RequestID
		return checkHeader(resp)
	})
	b := client.Budget()
	if b.Known {
		saveBudget(log, client, b)
	}
	var rl *extract.RateLimitError
	switch {
	case errors.As(err, &rl):
		return &rateLimitedNow{rl}
	case err != nil:
		return err
	}
	fmt.Fprintf(stdout, "ok: the API accepted the key (request %s)\n", reqID)
	if b.Known {
		fmt.Fprintf(stdout, "rate limit: %d of %d calls left this hour, reset at %s (in %s)\n",
			b.Remaining, b.Limit, b.Reset.UTC().Format(time.RFC3339), time.Until(b.Reset).Round(time.Second))
	} else {
		fmt.Fprintln(stdout, "rate limit: the API sent no X-RateLimit-Limit/Remaining headers")
	}
	return nil
}

// checkHeader reads the CSV header of a check's answer: an export has id
// and created_at columns, any other 200 answer is not the export API.
func checkHeader(resp *extract.Response) error {
	cr := csv.NewReader(io.LimitReader(resp.Body, 64<<10))
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err == nil && slices.Contains(header, "id") && slices.Contains(header, "created_at") {
		return nil
	}
	var se *extract.StreamError
	if errors.As(err, &se) {
		return err // retried like any broken body
	}
	return &extract.ProtocolError{RequestID: resp.RequestID,
		Problem: "the answer is not a CSV export with id and created_at columns: is --base-url the LeadLex API (before /v1/contacts/export)?"}
}

// saveBudget saves the budget the check saw where every sync on the
// machine reads it; a failure is only logged.
func saveBudget(log interface{ Warn(string, ...any) }, c *extract.Client, b extract.RateLimit) {
	path, err := budget.DefaultPath()
	if err == nil {
		var store *budget.Store
		if store, err = budget.Open(path); err == nil {
			err = store.Save(pipeline.BudgetKey(c.Key.Fingerprint(), c.BaseURL), b, time.Now())
		}
	}
	if err != nil {
		log.Warn("the shared rate-limit budget could not be saved", "err", err.Error())
	}
}

// rateLimitedNow is a check's 429: exit 75, as a sync's.
type rateLimitedNow struct{ rl *extract.RateLimitError }

func (e *rateLimitedNow) Error() string {
	s := "rate-limited now: the API answered 429"
	if e.rl.RequestID != "" {
		s += " (request " + e.rl.RequestID + ")"
	}
	return s + "; calls resume at " + e.rl.ResumeAt.UTC().Format(time.RFC3339)
}

func (e *rateLimitedNow) Unwrap() error { return e.rl }
