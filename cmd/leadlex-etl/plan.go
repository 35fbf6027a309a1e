package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/spf13/pflag"

	"github.com/leadlex/leadlex-etl/internal/budget"
	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/load"
	"github.com/leadlex/leadlex-etl/internal/pipeline"
	"github.com/leadlex/leadlex-etl/internal/transform"
	"github.com/leadlex/leadlex-etl/schemas"
)

// planOptions are the flags of plan: sync's, and --json.
type planOptions struct {
	syncOptions
	JSON bool
}

func newPlanFlagSet(o *planOptions, out io.Writer) *pflag.FlagSet {
	fs := newFlagSet("plan", `Say what 'leadlex-etl sync' with the same flags would do, without an API
call and without writing anything: the windows of new data and the calls
they are expected to take (estimated from the contacts the stream's synced
ranges held; a first export cannot be estimated before its first call), the
refresh the spare calls would do, the rate-limit budget believed left and
when it resets (from the budget earlier runs saved for the key and base
URL), when the last call could be made at that budget, and whether the run
starts a new stream next to the destination's others.

With --config, plan shows each of the file's streams (or the --stream ones)
in turn, each from the budget as it is now, and --json prints one JSON
object per line.

Examples:
  leadlex-etl plan --duckdb warehouse.duckdb --parquet lake
  leadlex-etl plan --config leadlex.toml`, out)
	o.AddFlags(fs)
	fs.BoolVar(&o.JSON, "json", false, "print JSON instead of text")
	return fs
}

func runPlan(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	runs, err := configRuns(args, func() (*pflag.FlagSet, *configOptions) {
		o := new(planOptions)
		return newPlanFlagSet(o, stdout), &o.Config
	})
	if err != nil {
		return err
	}
	type job struct {
		name         string
		o            *planOptions
		key          extract.APIKey
		since, until time.Time
	}
	jobs := make([]job, len(runs))
	for i, r := range runs {
		j := job{name: r.name, o: new(planOptions)}
		fs := newPlanFlagSet(j.o, io.Discard)
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if err := r.apply(fs); err != nil {
			return err
		}
		// plan writes no summary, so the folder a sync would write one
		// into need not exist yet.
		j.o.SummaryJSON = ""
		if j.key, j.since, j.until, err = j.o.validate(fs); err != nil {
			if r.name != "" {
				return fmt.Errorf("stream %s: %w", r.name, err)
			}
			return err
		}
		jobs[i] = j
	}
	siblings, err := configSiblings(args, runs[0].file, func() (*pflag.FlagSet, *syncOptions) {
		o := new(planOptions)
		return newPlanFlagSet(o, io.Discard), &o.syncOptions
	})
	if err != nil {
		return err
	}
	withConfig := runs[0].file != nil
	for i, j := range jobs {
		if i > 0 && !j.o.JSON {
			fmt.Fprintln(stdout)
		}
		if j.name != "" && !j.o.JSON {
			fmt.Fprintf(stdout, "stream %s:\n", j.name)
		}
		if err := planOne(ctx, j.name, j.o, j.key, j.since, j.until, siblings, stdout, withConfig); err != nil {
			if j.name != "" {
				return fmt.Errorf("stream %s: %w", j.name, err)
			}
			return err
		}
	}
	return nil
}

// planOne prints the plan of one stream.
func planOne(ctx context.Context, name string, o *planOptions, key extract.APIKey, since, until time.Time, siblings []string, stdout io.Writer, jsonLines bool) error {
	targets, dests, err := openReadOnlyTargets(ctx, o.DuckDB, o.Parquet)
	defer func() {
		for _, t := range targets {
			_ = t.Close()
		}
	}()
	if err != nil {
		return err
	}
	var budgets pipeline.SharedBudget
	if path, err := budget.DefaultPath(); err == nil {
		if store, err := budget.Open(path); err == nil {
			budgets = store
		}
	}
	client := &extract.Client{BaseURL: o.API.BaseURL, Key: key}
	p, err := pipeline.Plan(ctx, pipeline.Options{Siblings: siblings,
		Client: client, Query: o.query(), Since: since, Until: until, Lookback: o.Lookback, MaxCalls: o.MaxCalls,
		IgnoreSavedBudget: o.IgnoreSavedBudget, Budgets: budgets, Targets: targets, NewStream: o.NewStream, KeyRotated: o.KeyRotated.on, RotatedStream: o.KeyRotated.stream,
		Refresh: pipeline.RefreshPolicy{Calls: int(o.RefreshCalls), ReserveCalls: o.ReserveCalls, MinAge: o.RefreshMinAge},
	})
	if err != nil {
		return err
	}
	if o.JSON {
		enc := json.NewEncoder(stdout)
		if !jsonLines {
			enc.SetIndent("", "  ")
		}
		return enc.Encode(struct {
			ConfigStream string   `json:"config_stream,omitempty"` // the stream's name in the config file
			Destinations []string `json:"destinations"`
			pipeline.PlanResult
		}{name, dests, p})
	}
	printPlan(stdout, p, strings.Join(dests, " and "), o.NewStream, time.Now())
	return nil
}

func printPlan(w io.Writer, p pipeline.PlanResult, dest string, newStreamOK bool, now time.Time) {
	state := "existing"
	if p.NewStream {
		state = "new"
	}
	fmt.Fprintf(w, "plan for %s: stream %s %s (%s)\n", dest, p.StreamID, p.Identity, state)
	switch {
	case p.NeedsKeyConsent:
		fmt.Fprintln(w, "  key: NOT the one the stream was synced with, so maybe another workspace's: sync would refuse it without --key-rotated (a new key of the same workspace) or --new-stream (another workspace)")
	case p.Key == pipeline.KeyDiffers:
		fmt.Fprintln(w, "  key: a new key of the stream's workspace (--key-rotated): sync remembers it")
	case p.Key == pipeline.KeyUnrecorded:
		fmt.Fprintln(w, "  key: the stream keeps none (an earlier version saved it): sync remembers this one")
	}
	rows := fmt.Sprintf("about %d contacts", p.Rows)
	if !p.RowsKnown {
		rows = "an unknown number of contacts (the stream's synced ranges do not tell for this range: the first call does)"
	}
	fmt.Fprintf(w, "  new data: %s in %s: %s, %s at least\n", rangeText(extract.Window{From: p.Since, To: p.Until}), plural(len(p.Windows), "window"),
		rows, plural(p.Calls, "call"))
	if p.Resume {
		fmt.Fprintln(w, "  it resumes the windows an interrupted run left")
	}
	if len(p.Refresh) > 0 {
		fmt.Fprintf(w, "  refresh: %s re-exporting the ranges verified longest ago, %s\n", plural(len(p.Refresh), "spare call"),
			rangeText(extract.Window{From: p.Refresh[0].From, To: p.Refresh[len(p.Refresh)-1].To}))
	} else {
		fmt.Fprintf(w, "  refresh: none, %s\n", p.RefreshSkipped)
	}
	if p.Budget.Known {
		fmt.Fprintf(w, "  budget: %d of %d calls left until %s (in %s), as %s last saw it\n", p.Budget.Remaining, p.Budget.Limit,
			p.Budget.Reset.UTC().Format(time.RFC3339), p.Budget.Reset.Sub(now).Round(time.Second), p.BudgetFrom)
	} else {
		fmt.Fprintln(w, "  budget: unknown (no run saved it for this key and base URL); 10 calls an hour assumed")
	}
	when := "all within the budget left now"
	if !p.LastCallAt.IsZero() {
		when = fmt.Sprintf("the last at %s (in %s) at the budget", p.LastCallAt.UTC().Format(time.RFC3339), p.LastCallAt.Sub(now).Round(time.Minute))
	}
	fmt.Fprintf(w, "  calls: %d expected, %s\n", p.TotalCalls, when)
	if len(p.Others) > 0 {
		fmt.Fprintln(w, "  the destination's other streams:")
		for _, st := range p.Others {
			fmt.Fprintf(w, "    %s %s\n", st.StreamID, st.Identity)
		}
		if p.NeedsConsent && !newStreamOK {
			fmt.Fprintln(w, "  sync would refuse to start this new stream without --new-stream")
		}
	}
}

// openReadOnlyTargets opens the destinations read-only, one that does not
// exist yet as an empty one.
func openReadOnlyTargets(ctx context.Context, duckdb, parquet string) (targets []load.Target, paths []string, err error) {
	for _, d := range []destOptions{{DuckDB: duckdb}, {Parquet: parquet}} {
		if d.path() == "" {
			continue
		}
		paths = append(paths, d.path())
		t, err := d.openReadOnly(ctx)
		if err != nil {
			if _, serr := os.Stat(d.path()); errors.Is(serr, os.ErrNotExist) {
				targets = append(targets, emptyDestination{})
				continue
			}
			return targets, paths, err
		}
		targets = append(targets, t)
	}
	return targets, paths, nil
}

// emptyDestination stands for a destination that does not exist yet: no
// stream, no run, no budget. Plan only reads it.
type emptyDestination struct{}

var errNotWritable = errors.New("a destination that does not exist yet is not written by plan")

func (emptyDestination) Begin(context.Context, load.WindowInfo, []schemas.Column) error {
	return errNotWritable
}
func (emptyDestination) Write(context.Context, arrow.RecordBatch) error { return errNotWritable }
func (emptyDestination) Commit(context.Context, load.WindowInfo, []transform.Reject, load.WindowStats, load.StreamState) (load.Changes, error) {
	return load.Changes{}, errNotWritable
}
func (emptyDestination) Abort(context.Context) error { return nil }
func (emptyDestination) LoadState(_ context.Context, id, identity string) (load.StreamState, error) {
	return load.StreamState{StreamID: id, Identity: identity}, nil
}
func (emptyDestination) Streams(context.Context) ([]load.StreamState, error) { return nil, nil }
func (emptyDestination) ForgetStream(context.Context, string) error          { return errNotWritable }
func (emptyDestination) StartRun(context.Context, load.Run) error            { return errNotWritable }
func (emptyDestination) FinishRun(context.Context, load.Run) error           { return errNotWritable }
func (emptyDestination) LoadBudget(context.Context, string) (extract.RateLimit, error) {
	return extract.RateLimit{}, nil
}
func (emptyDestination) SaveBudget(context.Context, string, extract.RateLimit) error {
	return errNotWritable
}
func (emptyDestination) Runs(context.Context, int) ([]load.Run, error) { return nil, nil }
func (emptyDestination) Rejects(context.Context, int) ([]load.StoredReject, error) {
	return nil, nil
}
func (emptyDestination) Close() error { return nil }

var _ load.Target = emptyDestination{}
