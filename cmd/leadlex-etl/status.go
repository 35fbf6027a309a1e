package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/pflag"

	"github.com/leadlex/leadlex-etl/internal/budget"
	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/load"
	"github.com/leadlex/leadlex-etl/internal/pipeline"
)

// destOptions names one destination: a DuckDB file or a lake.
type destOptions struct {
	DuckDB  string
	Parquet string
	// forStreams opens a DuckDB file whose contacts table was dropped by
	// hand, which streams lists and resets (the fix a sync names).
	forStreams bool
}

func (o *destOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.DuckDB, "duckdb", "", "a DuckDB file a sync wrote")
	fs.StringVar(&o.Parquet, "parquet", "", "a Parquet lake a sync wrote")
}

func (o *destOptions) validate() error {
	if (o.DuckDB == "") == (o.Parquet == "") {
		return usagef("give one destination: --duckdb PATH or --parquet DIR")
	}
	return nil
}

func (o *destOptions) path() string { return o.DuckDB + o.Parquet }

// openReadOnly opens the destination to read its state without taking its
// lock, so that a running sync is not disturbed.
func (o *destOptions) openReadOnly(ctx context.Context) (load.Target, error) {
	if o.DuckDB != "" {
		return load.OpenDuckDB(ctx, o.DuckDB, load.DuckDBOptions{ReadOnly: true, ContactsMayBeMissing: o.forStreams})
	}
	return load.OpenLakeReadOnly(o.Parquet)
}

// openWrite opens the destination for writing, taking its lock.
func (o *destOptions) openWrite(ctx context.Context) (load.Target, error) {
	if o.DuckDB != "" {
		if _, err := os.Stat(o.DuckDB); err != nil {
			return nil, fmt.Errorf("--duckdb: %w", err)
		}
		return load.OpenDuckDB(ctx, o.DuckDB, load.DuckDBOptions{ContactsMayBeMissing: o.forStreams})
	}
	if _, err := load.OpenLakeReadOnly(o.Parquet); err != nil {
		return nil, err
	}
	return load.OpenLake(ctx, o.Parquet, load.LakeOptions{})
}

// statusReport is what `status --json` prints.
type statusReport struct {
	Destination       string         `json:"destination"`
	Kind              string         `json:"kind"`
	Missing           bool           `json:"missing,omitempty"` // with --config: no sync has created it yet
	InterruptedCommit bool           `json:"interrupted_commit,omitempty"`
	Streams           []streamReport `json:"streams"`
	Runs              []runReport    `json:"runs"`
	Rejects           rejectsReport  `json:"rejects"`
	Budgets           []budgetReport `json:"budgets"`
}

type segmentReport struct {
	From       *time.Time `json:"from"` // null: the beginning
	To         *time.Time `json:"to"`   // null: no end
	VerifiedAt time.Time  `json:"verified_at"`
	Rows       int64      `json:"rows"`
}

type windowReport struct {
	From *time.Time `json:"from"`
	To   *time.Time `json:"to"`
}

type streamReport struct {
	ID             string          `json:"id"`
	Identity       json.RawMessage `json:"identity"`
	Cursor         *time.Time      `json:"cursor"`
	Contacts       int64           `json:"contacts"` // as counted when each range was last exported
	Coverage       []segmentReport `json:"coverage"`
	OldestVerified *time.Time      `json:"oldest_verified"`
	StalenessSec   float64         `json:"staleness_seconds"`
	Pending        []windowReport  `json:"pending"`
	TellsDeletions bool            `json:"tells_deletions"`
	// Key is how the API key at hand compares with the one the stream was
	// last synced with: "matches", "differs", "not recorded"; absent
	// without a key.
	Key pipeline.KeyCheck `json:"key,omitempty"`
}

type runReport struct {
	load.Run
	DurationSec float64 `json:"duration_seconds"`
}

type rejectsReport struct {
	Count int                 `json:"count"`
	Last  []load.StoredReject `json:"last"`
}

type budgetReport struct {
	BaseURL   string    `json:"base_url"`
	Limit     int       `json:"limit"`
	Remaining int       `json:"remaining"`
	Reset     time.Time `json:"reset"`
	Source    string    `json:"source"` // the shared file's path, or "destination"
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func windowsReport(ws []extract.Window) []windowReport {
	out := []windowReport{}
	for _, w := range ws {
		out = append(out, windowReport{From: timePtr(w.From), To: timePtr(w.To)})
	}
	return out
}

// optionalKey returns the API key from the variable keyEnv or keyFile, if one
// is there: status uses it only to find the budget saved for it.
func optionalKey(keyEnv, keyFile string) (extract.APIKey, bool) {
	raw := os.Getenv(keyEnv)
	if keyFile != "" {
		if b, err := os.ReadFile(keyFile); err == nil {
			raw = strings.TrimSpace(string(b))
		}
	}
	return extract.NewAPIKey(raw), raw != ""
}

// buildStatus reads a destination's state.
func buildStatus(ctx context.Context, d destOptions, tgt load.Target, keyEnv, keyFile string, now time.Time, runs int) (statusReport, error) {
	rep := statusReport{Destination: d.path(), Kind: "duckdb", Streams: []streamReport{}, Runs: []runReport{}, Budgets: []budgetReport{}}
	if l, ok := tgt.(*load.Lake); ok {
		rep.Kind, rep.InterruptedCommit = "lake", l.InterruptedCommit()
	}
	streams, err := tgt.Streams(ctx)
	if err != nil {
		return rep, err
	}
	key, haveKey := optionalKey(keyEnv, keyFile)
	for _, st := range streams {
		sr := streamReport{ID: st.StreamID, Identity: json.RawMessage(st.Identity), Cursor: timePtr(st.Cursor()),
			Coverage: []segmentReport{}, Pending: windowsReport(st.Pending)}
		if !json.Valid(sr.Identity) {
			sr.Identity, _ = json.Marshal(st.Identity)
		}
		for _, s := range st.Coverage {
			sr.Coverage = append(sr.Coverage, segmentReport{From: timePtr(s.From), To: timePtr(s.To), VerifiedAt: s.VerifiedAt.UTC(), Rows: s.Rows})
			sr.Contacts += s.Rows
		}
		if oldest := st.Coverage.Oldest(); !oldest.IsZero() {
			sr.OldestVerified, sr.StalenessSec = timePtr(oldest), now.Sub(oldest).Seconds()
		}
		sr.TellsDeletions = pipeline.TellsDeletions(st.Identity, streams)
		if haveKey {
			sr.Key = pipeline.StreamKey(st, key)
		}
		rep.Streams = append(rep.Streams, sr)
	}
	rr, err := tgt.Runs(ctx, runs)
	if err != nil {
		return rep, err
	}
	for _, r := range rr {
		x := runReport{Run: r}
		if !r.FinishedAt.IsZero() {
			x.DurationSec = r.FinishedAt.Sub(r.StartedAt).Seconds()
		}
		rep.Runs = append(rep.Runs, x)
	}
	rej, err := tgt.Rejects(ctx, 0)
	if err != nil {
		return rep, err
	}
	rep.Rejects = rejectsReport{Count: len(rej), Last: rej[max(0, len(rej)-5):]}
	// The budget is kept per key and base URL: with the key at hand, show
	// what the machine's shared file and the destination know of it.
	if !haveKey {
		return rep, nil
	}
	var store *budget.Store
	if path, err := budget.DefaultPath(); err == nil {
		store, _ = budget.Open(path)
	}
	seen := map[string]bool{}
	for _, st := range streams {
		var ident pipeline.Identity
		if json.Unmarshal([]byte(st.Identity), &ident) != nil || seen[ident.BaseURL] {
			continue
		}
		seen[ident.BaseURL] = true
		k := pipeline.BudgetKey(key.Fingerprint(), ident.BaseURL)
		if store != nil {
			if b, _, err := store.Load(k); err == nil && b.Known {
				rep.Budgets = append(rep.Budgets, budgetReport{BaseURL: ident.BaseURL, Limit: b.Limit, Remaining: b.Remaining, Reset: b.Reset.UTC(), Source: store.Path()})
				continue
			}
		}
		if b, err := tgt.LoadBudget(ctx, k); err == nil && b.Known && b.Reset.After(now) {
			rep.Budgets = append(rep.Budgets, budgetReport{BaseURL: ident.BaseURL, Limit: b.Limit, Remaining: b.Remaining, Reset: b.Reset.UTC(), Source: "destination"})
		}
	}
	return rep, nil
}

// statusOptions are the flags of status.
type statusOptions struct {
	Dest    destOptions
	JSON    bool
	Runs    int
	KeyFile string
	KeyEnv  string
	Config  configOptions
}

func newStatusFlagSet(o *statusOptions, out io.Writer) *pflag.FlagSet {
	fs := newFlagSet("status", `Show what a destination holds and how fresh it is, without an API call and
without disturbing a running sync (the destination is opened read-only):
each stream (base URL, filters, fields) with the created_at ranges it has
synced and when each was last exported completely, the worst staleness,
windows an interrupted run left; the last runs with what they did (contacts
new, written again, changed, deleted, rejected; calls; duration; request
ids); the rejected rows; and, with the API key at hand (LEADLEX_API_KEY or
--api-key-file), the rate-limit budget last seen and where it is kept.

Examples:
  leadlex-etl status --duckdb warehouse.duckdb
  leadlex-etl status --parquet lake --json | jq '.streams[].staleness_seconds'
  leadlex-etl status --config leadlex.toml

With --config, status shows each destination the file's streams (or the
--stream ones) name, once; --json then prints one JSON object per line.`, out)
	o.Dest.AddFlags(fs)
	fs.BoolVar(&o.JSON, "json", false, "print JSON instead of text")
	fs.IntVar(&o.Runs, "runs", 10, "how many of the last runs to show")
	fs.StringVar(&o.KeyFile, "api-key-file", "", "read the API key from this file to show its budget (default: the variable --api-key-env names); no call is made")
	fs.StringVar(&o.KeyEnv, "api-key-env", "LEADLEX_API_KEY", "the environment variable that holds the API key")
	o.Config.AddFlags(fs)
	return fs
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	runs, err := configRuns(args, func() (*pflag.FlagSet, *configOptions) {
		o := new(statusOptions)
		return newStatusFlagSet(o, stdout), &o.Config
	})
	if err != nil {
		return err
	}
	// Each destination the streams name, once, in their order.
	var shows []statusOptions
	seen := map[destOptions]bool{}
	for _, r := range runs {
		o := new(statusOptions)
		fs := newStatusFlagSet(o, io.Discard)
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if err := r.apply(fs); err != nil {
			return err
		}
		if o.Runs < 0 {
			return usagef("--runs %d must not be negative", o.Runs)
		}
		dests := []destOptions{o.Dest}
		if r.file != nil {
			// A stream of a config file may name both.
			dests = nil
			if o.Dest.DuckDB != "" {
				dests = append(dests, destOptions{DuckDB: o.Dest.DuckDB})
			}
			if o.Dest.Parquet != "" {
				dests = append(dests, destOptions{Parquet: o.Dest.Parquet})
			}
			if len(dests) == 0 {
				if r.name == "" {
					return usagef("%s names no destination (duckdb or parquet)", r.file.path)
				}
				return usagef("stream %s of %s names no destination (duckdb or parquet)", r.name, r.file.path)
			}
		}
		for _, d := range dests {
			if err := d.validate(); err != nil {
				return err
			}
			if !seen[d] {
				seen[d] = true
				show := *o
				show.Dest = d
				shows = append(shows, show)
			}
		}
	}
	withConfig := runs[0].file != nil
	for i, o := range shows {
		if i > 0 && !o.JSON {
			fmt.Fprintln(stdout)
		}
		if err := showStatus(ctx, o, stdout, withConfig); err != nil {
			return err
		}
	}
	return nil
}

// showStatus prints one destination's status.
func showStatus(ctx context.Context, o statusOptions, stdout io.Writer, withConfig bool) error {
	tgt, err := o.Dest.openReadOnly(ctx)
	if err != nil {
		if _, serr := os.Stat(o.Dest.path()); withConfig && errors.Is(serr, os.ErrNotExist) {
			// A stream of the file not synced yet: not a mistake.
			kind := "duckdb"
			if o.Dest.Parquet != "" {
				kind = "lake"
			}
			rep := statusReport{Destination: o.Dest.path(), Kind: kind, Missing: true,
				Streams: []streamReport{}, Runs: []runReport{}, Budgets: []budgetReport{}}
			if o.JSON {
				return json.NewEncoder(stdout).Encode(rep)
			}
			fmt.Fprintf(stdout, "destination: %s (%s): does not exist yet; the first sync creates it\n", rep.Destination, kind)
			return nil
		}
		return err
	}
	defer tgt.Close()
	now := time.Now()
	rep, err := buildStatus(ctx, o.Dest, tgt, o.KeyEnv, o.KeyFile, now, o.Runs)
	if err != nil {
		return err
	}
	if o.JSON {
		enc := json.NewEncoder(stdout)
		if !withConfig {
			enc.SetIndent("", "  ")
		}
		return enc.Encode(rep)
	}
	printStatus(stdout, rep, now)
	return nil
}

func fmtPtr(t *time.Time, zero string) string {
	if t == nil {
		return zero
	}
	return t.Format(time.RFC3339)
}

func printStatus(w io.Writer, rep statusReport, now time.Time) {
	fmt.Fprintf(w, "destination: %s (%s)\n", rep.Destination, rep.Kind)
	if rep.InterruptedCommit {
		fmt.Fprintln(w, "  a commit is in progress, or was interrupted: the next sync finishes it")
	}
	if len(rep.Streams) == 0 {
		fmt.Fprintln(w, "streams: none yet")
	}
	for _, s := range rep.Streams {
		fmt.Fprintf(w, "stream %s %s\n", s.ID, s.Identity)
		if len(s.Coverage) == 0 {
			fmt.Fprintln(w, "  covered: nothing yet")
		} else {
			ranges := coveredRanges(s.Coverage)
			fmt.Fprintf(w, "  covered: %s (%d contacts when last exported, in %d ranges)\n", strings.Join(ranges, ", "), s.Contacts, len(s.Coverage))
			fmt.Fprintf(w, "  freshness: every covered contact exported completely since %s (%s ago)\n",
				fmtPtr(s.OldestVerified, "?"), time.Duration(s.StalenessSec*float64(time.Second)).Round(time.Second))
		}
		if len(s.Pending) > 0 {
			fmt.Fprintf(w, "  pending: %d window(s) of an interrupted run, which the next sync resumes\n", len(s.Pending))
		}
		if !s.TellsDeletions {
			fmt.Fprintln(w, "  deletions: not tracked (a filtered stream beside others, or streams of another API or workspace)")
		}
		if s.Key == pipeline.KeyDiffers {
			fmt.Fprintln(w, "  key: NOT the one at hand, which may be another workspace's (sync asks for --key-rotated or --new-stream)")
		}
	}
	if len(rep.Runs) > 0 {
		fmt.Fprintf(w, "last %d run(s), newest first:\n", len(rep.Runs))
	}
	for _, r := range rep.Runs {
		// Only the refresh compares rows: a run without one counts no
		// changed contacts.
		changed := ""
		if r.RefreshCalls > 0 {
			changed = fmt.Sprintf(" (%d changed by the refresh)", r.Changes.Changed)
		}
		fmt.Fprintf(w, "  %s %s: started %s, %s; %d windows, %d calls (%d refresh); %d new, %d written again%s, %d deleted, %d rejected\n",
			r.RunID, r.Status, r.StartedAt.UTC().Format(time.RFC3339), time.Duration(r.DurationSec*float64(time.Second)).Round(time.Millisecond),
			r.Windows, r.Calls, r.RefreshCalls, r.Changes.Inserted, r.Changes.Replaced, changed, r.Changes.Deleted, r.Rejects)
		if r.Error != "" {
			fmt.Fprintf(w, "    error: %s\n", r.Error)
		}
		if len(r.RequestIDs) > 0 {
			fmt.Fprintf(w, "    requests: %s\n", strings.Join(r.RequestIDs, " "))
		}
	}
	fmt.Fprintf(w, "rejects: %d stored\n", rep.Rejects.Count)
	for _, r := range rep.Rejects.Last {
		fmt.Fprintf(w, "  line %d of %s: %s: %.80q\n", r.Line, r.RequestID, r.Reason, r.Raw)
	}
	if len(rep.Budgets) == 0 {
		fmt.Fprintln(w, "budget: unknown (set LEADLEX_API_KEY or --api-key-file to see what was last seen for the key)")
	}
	for _, b := range rep.Budgets {
		fmt.Fprintf(w, "budget of %s: %d of %d calls left until %s (in %s), as last seen (%s)\n",
			b.BaseURL, b.Remaining, b.Limit, b.Reset.Format(time.RFC3339), b.Reset.Sub(now).Round(time.Second), b.Source)
	}
}

// coveredRanges renders coverage as its runs of touching segments.
func coveredRanges(c []segmentReport) []string {
	var out []string
	for i := 0; i < len(c); {
		j := i
		for j+1 < len(c) && c[j].To != nil && c[j+1].From != nil && c[j].To.Equal(*c[j+1].From) {
			j++
		}
		out = append(out, fmt.Sprintf("[%s, %s)", fmtPtr(c[i].From, "the beginning"), fmtPtr(c[j].To, "no end")))
		i = j + 1
	}
	return out
}

func runStreams(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	d := destOptions{forStreams: true}
	var yes bool
	fs := newFlagSet("streams", `List the streams of a destination (a stream is one base URL, filter set and
field list, with its own synced ranges), or forget one:

  leadlex-etl streams --duckdb warehouse.duckdb
  leadlex-etl streams reset ID --duckdb warehouse.duckdb [--yes]

reset removes the stream's state (its synced ranges, pending windows); its
contacts stay, and its next sync exports all history again. It asks for
confirmation on a terminal; elsewhere it needs --yes. It waits for no sync:
a destination a sync is writing is refused as locked.`, stdout)
	d.AddFlags(fs)
	fs.BoolVar(&yes, "yes", false, "reset without asking")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if err := d.validate(); err != nil {
		return err
	}
	switch {
	case fs.NArg() == 0:
		tgt, err := d.openReadOnly(ctx)
		if err != nil {
			return err
		}
		defer tgt.Close()
		streams, err := tgt.Streams(ctx)
		if err != nil {
			return err
		}
		if len(streams) == 0 {
			fmt.Fprintln(stdout, "no streams")
		}
		for _, st := range streams {
			from, to := st.Coverage.Span()
			cov := "nothing covered yet"
			if len(st.Coverage) > 0 {
				cov = "covers " + rangeText(extract.Window{From: from, To: to})
			}
			pending := ""
			if len(st.Pending) > 0 {
				pending = fmt.Sprintf("; %d window(s) pending", len(st.Pending))
			}
			fmt.Fprintf(stdout, "%s  %s  %s%s\n", st.StreamID, st.Identity, cov, pending)
		}
		return nil
	case fs.NArg() == 2 && fs.Arg(0) == "reset":
		id := fs.Arg(1)
		tgt, err := d.openWrite(ctx)
		if err != nil {
			return err
		}
		defer tgt.Close()
		streams, err := tgt.Streams(ctx)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(streams, func(st load.StreamState) bool { return st.StreamID == id })
		if i < 0 {
			return usagef("%s has no stream %s (leadlex-etl streams lists them)", d.path(), id)
		}
		if !yes && !confirm(stderr, fmt.Sprintf("Forget stream %s %s? Its contacts stay; its next sync exports all history again. [y/N] ", id, streams[i].Identity)) {
			return usagef("not reset: confirm on a terminal, or pass --yes")
		}
		if err := tgt.ForgetStream(ctx, id); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "stream %s forgotten; its contacts stay in %s\n", id, d.path())
		return nil
	}
	return usagef("usage: leadlex-etl streams [reset ID] --duckdb PATH | --parquet DIR")
}

// stdinIsTerminal says someone may answer a question (/dev/null, a
// character device too, is not a terminal).
func stdinIsTerminal() bool {
	return isatty.IsTerminal(os.Stdin.Fd()) || isatty.IsCygwinTerminal(os.Stdin.Fd())
}

// confirm asks question on the terminal; without one on stdin it says no.
func confirm(w io.Writer, question string) bool {
	if !stdinIsTerminal() {
		return false
	}
	fmt.Fprint(w, question)
	var answer string
	_, _ = fmt.Fscanln(os.Stdin, &answer)
	answer = strings.ToLower(strings.TrimSpace(answer))
	return answer == "y" || answer == "yes"
}
