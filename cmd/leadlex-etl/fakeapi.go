package main

import (
	"context"
	"io"

	"github.com/leadlex/leadlex-etl/internal/fakeapi"
)

func runFakeAPI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o fakeapi.Options
	fs := newFlagSet("fake-api", `Serve GET /v1/contacts/export the way the LeadLex API specifies it, on a
deterministic synthetic dataset, until interrupted. The things the real
service leaves open (row order, bound inclusivity, the rate-limit reset
header's form), faults (5xx, cut-off and slow bodies) and misbehaviour (bad
resets, cross-origin redirects, stalls, overlong bodies, ignored bounds, an
echoed key) are flags, so the tool can be tested against each. Keys: wbk_demo_key (read:contacts) and
wbk_demo_noread (without it).

Example:
  leadlex-etl fake-api --addr 127.0.0.1:0 --contacts 300000 --order random
  curl -H 'Authorization: Bearer wbk_demo_key' -H 'Accept: text/csv' \
    'http://127.0.0.1:PORT/v1/contacts/export?limit=5&created_after=2021-01-01T00:00:00Z'`, stdout)
	o.AddFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return fakeapi.Serve(ctx, o, stdout)
}
