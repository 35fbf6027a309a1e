package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"

	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/leadlex/leadlex-etl/internal/archive"
	"github.com/leadlex/leadlex-etl/internal/budget"
	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/load"
	"github.com/leadlex/leadlex-etl/internal/parquetio"
	"github.com/leadlex/leadlex-etl/internal/pipeline"
	"github.com/leadlex/leadlex-etl/internal/transform"
	"github.com/leadlex/leadlex-etl/schemas"
)

// syncOptions holds the flags of `leadlex-etl sync`.
type syncOptions struct {
	API               apiOptions
	DuckDB            string
	Parquet           string
	PartitionBy       load.Partitioning
	ParquetCompress   parquetio.Compression
	ParquetTarget     load.ByteSize
	ParquetRowGroup   int
	Since, Until      string
	Tags              []string
	ListID            string
	Fields            []string
	Limit             int
	Lookback          time.Duration
	MaxCalls          int
	Wait, NoWait      bool
	MemoryLimit       string
	Threads           int
	RejectRatio       float64
	RejectsAllowed    int
	MaxRateLimited    int
	IgnoreSavedBudget bool
	RefreshCalls      refreshCalls
	ReserveCalls      int
	RefreshMinAge     time.Duration
	Deletes           deleteMode
	MaxDeleteRatio    float64
	NewStream         bool
	KeyRotated        keyRotated
	SummaryJSON       string
	ProgressInterval  time.Duration
	Log               logOptions
	Config            configOptions
	RawDir            string
}

// AddFlags registers the sync flags; environment variables give defaults.
func (o *syncOptions) AddFlags(fs *pflag.FlagSet) {
	o.API.AddFlags(fs)
	fs.StringVar(&o.DuckDB, "duckdb", "", "DuckDB file to upsert contacts into (created if missing)")
	fs.StringVar(&o.Parquet, "parquet", "", "folder of Hive-partitioned Parquet files to upsert contacts into (alone or with --duckdb: one extract feeds both)")
	fs.Var(&o.PartitionBy, "partition-by", "Parquet partitions of created_at (UTC): month (contacts/year=2024/month=4), day or year (default: the lake's own; month for a new lake)")
	o.ParquetCompress = parquetio.DefaultCompression
	fs.Var(&o.ParquetCompress, "parquet-compression", "Parquet compression")
	o.ParquetTarget = load.DefaultTargetFileBytes
	fs.Var(&o.ParquetTarget, "parquet-target-size", "size a Parquet file grows to before another is started (at least 1MB); smaller files are merged when their partition is next written")
	fs.IntVar(&o.ParquetRowGroup, "parquet-row-group-rows", parquetio.DefaultRowGroupRows, "rows per Parquet row group (bounds the writer's memory and each reader's unit of work)")
	fs.StringVar(&o.Since, "since", "", "sync contacts created at or after this ISO 8601 instant or date (default: the saved cursor less --lookback, or all history on a first run)")
	fs.StringVar(&o.Until, "until", "", "sync contacts created before this ISO 8601 instant or date (default: now)")
	fs.StringArrayVar(&o.Tags, "tag", nil, "only contacts carrying this tag; repeat to require several (a filtered sync keeps its own cursor)")
	fs.StringVar(&o.ListID, "list-id", "", "only contacts on this list (a filtered sync keeps its own cursor)")
	fs.StringSliceVar(&o.Fields, "fields", nil, "comma-separated fields to export (default: the API's standard set); id and created_at are always added; extra fields become text columns")
	fs.IntVar(&o.Limit, "limit", extract.MaxLimit, "rows per API call, 1 to 50000; fewer rows a call means more of the 10 calls an hour")
	fs.DurationVar(&o.Lookback, "lookback", time.Hour, "re-export this much before the saved cursor, to pick up late or edited contacts")
	fs.IntVar(&o.MaxCalls, "max-calls", 0, "stop after this many API calls and save progress (0: no cap); the next run resumes")
	fs.BoolVar(&o.Wait, "wait", true, "when the rate limit is spent, wait for the reset")
	fs.BoolVar(&o.NoWait, "no-wait", false, "when the rate limit is spent, save progress and exit 75, printing when to resume")
	fs.IntVar(&o.MaxRateLimited, "max-429", extract.DefaultMaxRateLimited, "stop (exit 75) after this many 429 answers in a row; between them the wait is what the API says, at least 1s doubling each time up to a minute, at most an hour and 5 minutes")
	o.RefreshCalls = refreshCalls(pipeline.RefreshAuto)
	fs.Var(&o.RefreshCalls, "refresh-calls", "after the new data, re-export the ranges verified longest ago with this many calls at most, to catch edits and deletions: auto spends what the API says is left this hour less --reserve-calls (never waiting for a reset); 0 turns refresh off")
	fs.IntVar(&o.ReserveCalls, "reserve-calls", 2, "with --refresh-calls auto, leave this many of the hour's calls to other users of the workspace key")
	fs.DurationVar(&o.RefreshMinAge, "refresh-min-age", time.Hour, "do not re-export a range verified less than this ago (0s allows it, for tests with a short rate-limit hour)")
	o.Deletes = deleteSoft
	fs.Var(&o.Deletes, "deletes", "contacts a complete export no longer has: soft sets their _deleted_at (NULL while live), hard removes them")
	fs.Float64Var(&o.MaxDeleteRatio, "max-delete-ratio", 0.2, fmt.Sprintf("a window whose complete export would mark or remove more than this share of the contacts stored for its range is not applied (once the run has deleted more than %d): the run keeps what it has and exits 1, since an empty answer or another workspace's key look like that; 1 applies such deletions, once you have checked them", pipeline.DeletesAllowed))
	fs.BoolVar(&o.NewStream, "new-stream", false, "allow a sync that starts a new stream (other filters, fields or base URL, or an API key of another workspace) from the beginning next to a destination's existing streams; without it, such a run asks on a terminal and is refused (exit 2) otherwise, before any call")
	fs.Var(&o.KeyRotated, "key-rotated", "the API key is a new key of the workspace the stream was synced with: continue the stream and remember the new key (=ID names the stream, when the destination holds several workspaces' of these flags); a key that is not the stream's is refused (exit 2) before any call without it, or --new-stream if it is another workspace's")
	fs.Lookup("key-rotated").NoOptDefVal = "true"
	fs.StringVar(&o.RawDir, "raw-dir", "", "keep every committed response body here, zstd-compressed, with what leadlex-etl replay needs to rebuild a destination without the API (created if missing; may be shared by runs)")
	fs.BoolVar(&o.IgnoreSavedBudget, "ignore-saved-budget", false, "ask the API even if an earlier run saved that the rate limit is spent (it is saved per key and base URL, and forgotten at its reset)")
	fs.StringVar(&o.MemoryLimit, "memory-limit", "2GB", "DuckDB memory_limit")
	fs.IntVar(&o.Threads, "threads", 0, "DuckDB threads (default: number of CPUs)")
	fs.Float64Var(&o.RejectRatio, "reject-ratio", 0.01, "fail a window (load none of it) when more than this share of its rows do not parse; bad rows of windows that load go to _leadlex_rejects")
	fs.IntVar(&o.RejectsAllowed, "rejects-allowed", 10, "a window with at most this many bad rows never fails, whatever --reject-ratio says, so a few bad contacts do not block small incremental windows")
	fs.StringVar(&o.SummaryJSON, "summary-json", "", "write the run's outcome as a JSON object to this file (replaced atomically; a FIFO or a character device such as /dev/stdout is written into), whatever the outcome, even a failure; only a usage error (exit 2) writes none; a summary that cannot be written fails a run that went well (exit 1)")
	fs.DurationVar(&o.ProgressInterval, "progress-interval", 15*time.Second, "when stderr is not a terminal, log the run's progress this often (0: never); on a terminal a live line shows it")
	o.Log.AddFlags(fs)
	o.Config.AddFlags(fs)
}

// parseInstant reads an ISO 8601 instant or a date (midnight UTC).
func parseInstant(flag, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, usagef("--%s %q is not an ISO 8601 instant (2026-04-15T09:00:00Z) or date (2026-04-15)", flag, s)
}

// validate checks the flags and reads the key, before any network call.
func (o *syncOptions) validate(fs *pflag.FlagSet) (key extract.APIKey, since, until time.Time, err error) {
	if o.DuckDB == "" && o.Parquet == "" {
		return key, since, until, usagef("no destination: give --duckdb PATH, --parquet DIR, or both")
	}
	if o.ParquetTarget < load.MinTargetFileBytes {
		return key, since, until, usagef("--parquet-target-size %s is below %s", o.ParquetTarget, load.MinTargetFileBytes)
	}
	if o.ParquetRowGroup < 1000 {
		return key, since, until, usagef("--parquet-row-group-rows %d must be at least 1000", o.ParquetRowGroup)
	}
	if o.Limit < 1 || o.Limit > extract.MaxLimit {
		return key, since, until, usagef("--limit %d must be between 1 and %d", o.Limit, extract.MaxLimit)
	}
	if o.Lookback < 0 {
		return key, since, until, usagef("--lookback %s must not be negative", o.Lookback)
	}
	if o.MaxCalls < 0 {
		return key, since, until, usagef("--max-calls %d must not be negative", o.MaxCalls)
	}
	if fs.Changed("wait") && o.Wait && o.NoWait {
		return key, since, until, usagef("--wait and --no-wait contradict each other")
	}
	if o.ReserveCalls < 0 {
		return key, since, until, usagef("--reserve-calls %d must not be negative", o.ReserveCalls)
	}
	if o.RefreshMinAge < 0 {
		return key, since, until, usagef("--refresh-min-age %s must not be negative", o.RefreshMinAge)
	}
	if o.MaxRateLimited < 1 {
		return key, since, until, usagef("--max-429 %d must be at least 1", o.MaxRateLimited)
	}
	if o.RejectsAllowed < 0 {
		return key, since, until, usagef("--rejects-allowed %d must not be negative", o.RejectsAllowed)
	}
	if !(o.MaxDeleteRatio > 0 && o.MaxDeleteRatio <= 1) {
		return key, since, until, usagef("--max-delete-ratio %g must be above 0 and at most 1 (1 applies every deletion)", o.MaxDeleteRatio)
	}
	if o.RejectRatio < 0 || o.RejectRatio > 1 {
		return key, since, until, usagef("--reject-ratio %g must be between 0 and 1", o.RejectRatio)
	}
	if o.ProgressInterval < 0 {
		return key, since, until, usagef("--progress-interval %s must not be negative", o.ProgressInterval)
	}
	if o.SummaryJSON != "" {
		dir := filepath.Dir(o.SummaryJSON)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return key, since, until, usagef("--summary-json %s: the folder %s does not exist", o.SummaryJSON, dir)
		}
		if _, err := summaryInPlace(o.SummaryJSON); err != nil {
			return key, since, until, usagef("--summary-json %s %v", o.SummaryJSON, err)
		}
	}
	if err := o.Log.validate(); err != nil {
		return key, since, until, err
	}
	for _, t := range o.Tags {
		if strings.TrimSpace(t) == "" {
			return key, since, until, usagef("--tag must not be empty")
		}
	}
	for _, f := range o.Fields {
		f = strings.TrimSpace(f)
		if err := schemas.ValidName(f); err != nil {
			return key, since, until, usagef("--fields: %v", err)
		}
		if o.Parquet != "" && slices.Contains(load.AllPartitionColumns, f) {
			return key, since, until, usagef("--fields %s: a lake (--parquet) cannot hold a field of that name: year, month and day are the names of its partition folders", f)
		}
	}
	if since, err = parseInstant("since", o.Since); err != nil {
		return
	}
	if until, err = parseInstant("until", o.Until); err != nil {
		return
	}
	if !since.IsZero() && !until.IsZero() && !until.After(since) {
		return key, since, until, usagef("--until %s is not after --since %s", o.Until, o.Since)
	}
	if !until.IsZero() && until.After(time.Now().Add(time.Minute)) {
		return key, since, until, usagef("--until %s is in the future: contacts created before it could still appear and would be missed", o.Until)
	}
	key, err = o.API.validate(fs)
	return key, since, until, err
}

// refreshCalls is --refresh-calls: a number of calls, or auto.
type refreshCalls int

func (r refreshCalls) String() string {
	if r == pipeline.RefreshAuto {
		return "auto"
	}
	return strconv.Itoa(int(r))
}

func (r *refreshCalls) Set(s string) error {
	if s == "auto" {
		*r = pipeline.RefreshAuto
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return fmt.Errorf("%q is not auto or a number of calls", s)
	}
	*r = refreshCalls(n)
	return nil
}

func (*refreshCalls) Type() string { return "N|auto" }

// keyRotated is --key-rotated[=STREAM]: off; on, for the one stream of
// these flags; or on for the stream with this id.
type keyRotated struct {
	on     bool
	stream string
}

// streamIDPattern is what a stream id looks like.
var streamIDPattern = regexp.MustCompile(`^[0-9a-f]{16}$`)

func (k keyRotated) String() string {
	switch {
	case !k.on:
		return "false"
	case k.stream != "":
		return k.stream
	}
	return "true"
}

func (k *keyRotated) Set(s string) error {
	switch s = strings.TrimSpace(s); s {
	case "true", "":
		*k = keyRotated{on: true}
	case "false":
		*k = keyRotated{}
	default:
		if !streamIDPattern.MatchString(s) {
			return fmt.Errorf("%q is not a stream id (16 hexadecimal digits, as leadlex-etl status shows)", s)
		}
		*k = keyRotated{on: true, stream: s}
	}
	return nil
}

// Type is empty, so that help shows --key-rotated[=true]: the usual form.
func (*keyRotated) Type() string { return "" }

// deleteMode is --deletes.
type deleteMode string

const (
	deleteSoft deleteMode = "soft"
	deleteHard deleteMode = "hard"
)

func (d deleteMode) String() string { return string(d) }

func (d *deleteMode) Set(s string) error {
	switch deleteMode(s) {
	case deleteSoft, deleteHard:
		*d = deleteMode(s)
		return nil
	}
	return fmt.Errorf("%q is not soft or hard", s)
}

func (*deleteMode) Type() string { return "soft|hard" }

// fields returns the requested fields with id and created_at added, each
// once: the API refuses a field named twice, and a repeat asks for nothing
// more (nor makes another stream: see pipeline.Identity.Canonical).
func (o *syncOptions) fields() []string {
	if len(o.Fields) == 0 {
		return nil
	}
	var out []string
	for _, must := range []string{"id", "created_at"} {
		found := false
		for _, f := range o.Fields {
			found = found || strings.TrimSpace(f) == must
		}
		if !found {
			out = append(out, must)
		}
	}
	for _, f := range o.Fields {
		if f = strings.TrimSpace(f); f != "" && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

func newSyncFlagSet(o *syncOptions, out io.Writer) *pflag.FlagSet {
	fs := newFlagSet("sync", `Export contacts from LeadLex and upsert them into a DuckDB file and/or a
folder of Hive-partitioned Parquet files, window by window. Each window's rows are committed together with the sync state, so a
run killed at any point loses nothing and the next run resumes; ids stay
unique. A first run exports all history; later runs export what is new since
the saved cursor (less --lookback). API calls are scarce (10 an hour per
workspace): the planner asks for 50,000 rows a call and splits windows only
as the data requires.

The API key comes from LEADLEX_API_KEY or --api-key-file, never a flag value.

A summary is printed to stdout and logs go to stderr. On a terminal a live
line shows windows done of planned, rows, rows/s, calls and, while the run
waits for the rate-limit reset, a countdown; elsewhere a progress line is
logged every --progress-interval. --summary-json PATH writes the summary's
numbers, the exit code and, after exit 75, resume_at, as a JSON object, for
schedulers; the log's last event, "run finished", has the same fields.

Exit codes: 0 ok (also when --max-calls stopped the run; run again to go
on), 1 error (also deletions the guard held back: see --max-delete-ratio),
2 bad usage, 3 key refused (401/403), 75 rate-limited with
--no-wait (the message says when to resume), 130/143 interrupted by
SIGINT/SIGTERM (committed windows are kept; run again to resume).

Example:
  export LEADLEX_API_KEY=wbk_...
  leadlex-etl sync --duckdb warehouse.duckdb --parquet lake
  `+queryExamples[1]+`
  leadlex-etl sync --duckdb warehouse.duckdb --no-wait --summary-json last.json
  leadlex-etl sync --config leadlex.toml --stream vip`, out)
	o.AddFlags(fs)
	return fs
}

// query is the export query of the flags.
func (o *syncOptions) query() extract.Query {
	return extract.Query{Limit: o.Limit, ListID: o.ListID, Tags: o.Tags, Fields: o.fields()}
}

// configSiblings returns the identities of every stream of the config file
// c (nil: none), with the command line's flags (newFS parses them).
func configSiblings(args []string, c *configFile, newFS func() (*pflag.FlagSet, *syncOptions)) ([]string, error) {
	if c == nil {
		return nil, nil
	}
	var ids []string
	for _, st := range c.streams {
		fs, o := newFS()
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		if err := c.apply(fs, st); err != nil {
			return nil, err
		}
		_, id := pipeline.StreamIdentity(o.API.BaseURL, o.query())
		ids = append(ids, id)
	}
	return ids, nil
}

func runSync(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	runs, err := configRuns(args, func() (*pflag.FlagSet, *configOptions) {
		o := new(syncOptions)
		return newSyncFlagSet(o, stdout), &o.Config
	})
	if err != nil {
		return err
	}
	// Every stream's flags are checked before the first call.
	jobs := make([]syncJob, len(runs))
	summaries := map[string]string{}
	for i, r := range runs {
		j := syncJob{name: r.name, o: new(syncOptions)}
		fs := newSyncFlagSet(j.o, io.Discard)
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if err := r.apply(fs); err != nil {
			return err
		}
		if r.file != nil && r.name == "" && strings.Contains(j.o.SummaryJSON, "{stream}") {
			return usagef("--summary-json %s: {stream} names a stream of the config file, and %s has no [streams.NAME]", j.o.SummaryJSON, r.file.path)
		}
		if sj := j.o.SummaryJSON; sj != "" && r.name != "" {
			if len(runs) > 1 && !strings.Contains(sj, "{stream}") {
				return usagef("--summary-json %s: with several streams the path must contain {stream}, which becomes each stream's name", sj)
			}
			j.o.SummaryJSON = strings.ReplaceAll(sj, "{stream}", r.name)
			if other, dup := summaries[j.o.SummaryJSON]; dup {
				return usagef("--summary-json: streams %s and %s would write the same file %s", other, r.name, j.o.SummaryJSON)
			}
			summaries[j.o.SummaryJSON] = r.name
		}
		if j.key, j.since, j.until, err = j.o.validate(fs); err != nil {
			if r.name != "" {
				return fmt.Errorf("stream %s: %w", r.name, err)
			}
			return err
		}
		jobs[i] = j
	}
	siblings, err := configSiblings(args, runs[0].file, func() (*pflag.FlagSet, *syncOptions) {
		o := new(syncOptions)
		return newSyncFlagSet(o, io.Discard), o
	})
	if err != nil {
		return err
	}
	for i := range jobs {
		jobs[i].siblings = siblings
	}
	if len(jobs) == 1 {
		return jobs[0].run(ctx, stdout, stderr)
	}
	// What would stop a later stream after earlier ones spent calls is
	// checked first: a destination that does not open, a new stream that
	// needs consent.
	for i := range jobs {
		if err := jobs[i].preflight(ctx, stderr); err != nil {
			return fmt.Errorf("stream %s: %w", jobs[i].name, err)
		}
	}
	// Streams run one after another, sharing the budget. A failed stream
	// does not stop the next; the worst outcome is the command's.
	var failed []string
	var worst error
	worstRank := 0
	for i, j := range jobs {
		fmt.Fprintf(stdout, "stream %s:\n", j.name)
		err := j.run(ctx, stdout, stderr)
		if err == nil {
			continue
		}
		err = fmt.Errorf("stream %s: %w", j.name, err)
		if ctx.Err() != nil {
			// Interrupted: what failed before is said again, and the
			// streams not run wait for the next run.
			if worst != nil {
				fmt.Fprintf(stderr, "leadlex-etl: before the interruption: %v\n", worst)
			}
			if rest := jobs[i+1:]; len(rest) > 0 {
				names := make([]string, len(rest))
				for k, r := range rest {
					names[k] = r.name
				}
				fmt.Fprintf(stderr, "leadlex-etl: streams not run: %s\n", strings.Join(names, ", "))
			}
			return err
		}
		fmt.Fprintf(stderr, "leadlex-etl: %v\n", err)
		failed = append(failed, j.name)
		if rank := severity(ctx, err); rank > worstRank {
			worst, worstRank = err, rank
		}
	}
	if worst == nil {
		return nil
	}
	return &streamsFailed{failed: failed, of: len(jobs), worst: worst}
}

// streamsFailed is the outcome of a run of several streams of which some
// failed (each error printed as it happened); its exit code is the worst's.
type streamsFailed struct {
	failed []string
	of     int
	worst  error
}

func (e *streamsFailed) Error() string {
	return fmt.Sprintf("%d of %d streams failed (%s), see above", len(e.failed), e.of, strings.Join(e.failed, ", "))
}
func (e *streamsFailed) Unwrap() error { return e.worst }

// preflight checks, without a call, what would stop the stream's run: its
// destinations open, and a new stream next to others has consent.
func (j *syncJob) preflight(ctx context.Context, stderr io.Writer) error {
	targets, _, err := openReadOnlyTargets(ctx, j.o.DuckDB, j.o.Parquet)
	defer func() {
		for _, t := range targets {
			_ = t.Close()
		}
	}()
	if err != nil {
		return err
	}
	p, err := pipeline.Plan(ctx, pipeline.Options{
		Client: &extract.Client{BaseURL: j.o.API.BaseURL, Key: j.key}, Query: j.o.query(),
		Since: j.since, Until: j.until, Lookback: j.o.Lookback, Targets: targets, Siblings: j.siblings,
		NewStream: j.o.NewStream, KeyRotated: j.o.KeyRotated.on, RotatedStream: j.o.KeyRotated.stream,
	})
	if err != nil {
		return err
	}
	if p.NeedsKeyConsent {
		return usageError{&pipeline.KeyMismatchError{StreamID: p.StreamID, Identity: p.Identity}}
	}
	if p.NeedsConsent && !j.o.NewStream {
		ns := &pipeline.NewStreamError{StreamID: p.StreamID, Identity: p.Identity, Existing: p.Others}
		if !confirmNewStream(stderr, ns) {
			return usageError{ns}
		}
		j.o.NewStream = true
	}
	return nil
}

// severity ranks a failed run's outcome: bad usage, then a refused key,
// then other errors, then a rate limit (try again later).
func severity(ctx context.Context, err error) int {
	switch code, _ := exitStatus(ctx, err); code {
	case exitOK:
		return 0
	case exitRateLimited:
		return 1
	case exitAuth:
		return 3
	case exitUsage:
		return 4
	}
	return 2
}

// syncJob is one stream's sync, its flags checked.
type syncJob struct {
	name         string   // its name in the config file, if any
	siblings     []string // the identities of the config file's streams
	o            *syncOptions
	key          extract.APIKey
	since, until time.Time
}

func (j syncJob) run(ctx context.Context, stdout, stderr io.Writer) error {
	o, key, since, until := *j.o, j.key, j.since, j.until
	started := time.Now()
	logw := &switchWriter{w: stderr}
	log := o.Log.logger(logw)
	if j.name != "" {
		log = log.With("config_stream", j.name)
	}
	for _, w := range o.API.warnings {
		log.Warn(w)
	}
	client := o.API.client(key, log)
	client.NoWait, client.MaxRateLimited = o.NoWait, o.MaxRateLimited
	prog := newProgress(stderr, logw, log, client, o.Log.Quiet, o.ProgressInterval)
	client.OnWait = prog.wait

	s := &syncRun{o: &o, log: log, client: client, progress: prog, stderr: stderr, siblings: j.siblings}
	runErr := s.run(ctx, since, until)
	prog.finish(runErr == nil && len(s.res.Pending) == 0)
	if s.ran {
		printSummary(stdout, s.res, runErr, strings.Join(s.names, " and "), s.removed, o.Deletes == deleteHard)
		if o.RawDir != "" && s.res.Archived > 0 {
			fmt.Fprintf(stdout, "raw archive: %d response bodies kept in %s\n", s.res.Archived, o.RawDir)
		}
	}
	err := explain(runErr)
	if code, _ := exitStatus(ctx, err); code == exitUsage {
		return err
	}
	rep := newReport(ctx, s.res, runErr, err, s.names, s.removed, started)
	b, jerr := json.MarshalIndent(rep, "", "  ")
	if jerr != nil {
		return errors.Join(err, jerr)
	}
	if attrs, aerr := jsonAttrs(b); aerr == nil {
		log.LogAttrs(context.WithoutCancel(ctx), slog.LevelInfo, "run finished", attrs...)
	}
	if o.SummaryJSON != "" {
		if werr := writeSummary(o.SummaryJSON, append(b, '\n')); werr != nil {
			werr = fmt.Errorf("--summary-json %s: %w", o.SummaryJSON, werr)
			if err == nil {
				return werr
			}
			log.Error(werr.Error())
		}
	}
	return err
}

// syncRun is one sync's work, once the flags are checked.
type syncRun struct {
	o        *syncOptions
	log      *slog.Logger
	client   *extract.Client
	progress pipeline.Progress
	stderr   io.Writer // where to ask for consent
	siblings []string  // the identities of the config file's streams

	ran     bool            // pipeline.Sync ran: there is a summary to print
	res     pipeline.Result // what it did
	names   []string        // the destinations
	removed []string        // of which removed again: created by the run, nothing committed
}

// run opens the destinations and syncs into them.
func (s *syncRun) run(ctx context.Context, since, until time.Time) error {
	o, log := s.o, s.log
	var arch *archive.Archive
	if o.RawDir != "" {
		var err error
		if arch, err = archive.Open(o.RawDir, true); err != nil {
			return usageError{fmt.Errorf("--raw-dir: %w", err)}
		}
		defer arch.Close()
		if err := arch.CheckWritable(""); err != nil {
			return usageError{fmt.Errorf("--raw-dir: %w", err)}
		}
	}
	for _, name := range []string{o.DuckDB, o.Parquet} {
		if name != "" {
			s.names = append(s.names, name)
		}
	}
	targets, dests, err := openTargets(ctx, o.DuckDB, load.DuckDBOptions{MemoryLimit: o.MemoryLimit, Threads: o.Threads, Logger: log},
		o.Parquet, load.LakeOptions{PartitionBy: o.PartitionBy, TargetFileBytes: o.ParquetTarget,
			Parquet: parquetio.Options{Compression: o.ParquetCompress, RowGroupRows: o.ParquetRowGroup}})
	defer func() {
		for _, t := range targets {
			_ = t.Close()
		}
	}()
	if err != nil {
		return err
	}
	var budgets pipeline.SharedBudget
	if path, err := budget.DefaultPath(); err != nil {
		log.Warn("no shared rate-limit budget: each destination keeps its own", "err", err.Error())
	} else if store, err := budget.Open(path); err != nil {
		log.Warn("no shared rate-limit budget: each destination keeps its own", "err", err.Error())
	} else {
		store.Warn = log.Warn
		budgets = store
	}
	q := o.query()
	popts := pipeline.Options{
		Client: s.client, Query: q, Since: since, Until: until, Lookback: o.Lookback, MaxCalls: o.MaxCalls, IgnoreSavedBudget: o.IgnoreSavedBudget,
		HardDelete: o.Deletes == deleteHard, MaxDeleteRatio: o.MaxDeleteRatio, Budgets: budgets, NewStream: o.NewStream, KeyRotated: o.KeyRotated.on, RotatedStream: o.KeyRotated.stream, Siblings: s.siblings,
		Refresh: pipeline.RefreshPolicy{Calls: int(o.RefreshCalls), ReserveCalls: o.ReserveCalls, MinAge: o.RefreshMinAge},
		Targets: targets, Transform: transform.Options{MaxRejectRatio: o.RejectRatio, RejectsAllowed: o.RejectsAllowed}, Logger: log,
		Progress: s.progress, Archive: arch,
	}
	res, err := pipeline.Sync(ctx, popts)
	if km, rs := (*pipeline.KeyMismatchError)(nil), (*pipeline.RotatedStreamError)(nil); errors.As(err, &km) || errors.As(err, &rs) {
		return usageError{err}
	}
	if errors.Is(err, archive.ErrNotWritable) {
		err = usageError{fmt.Errorf("--raw-dir: %w", err)}
	}
	var ns *pipeline.NewStreamError
	if errors.As(err, &ns) {
		if !confirmNewStream(s.stderr, ns) {
			return usageError{err}
		}
		popts.NewStream = true
		res, err = pipeline.Sync(ctx, popts)
	}
	s.ran, s.res = true, res
	// A destination this run created and committed nothing to is removed
	// on failure, so a mistake (a refused key, a bad --fields) leaves no
	// debris. One stopped by the rate limit stays: it remembers the budget.
	var rl *extract.RateLimitError
	if err != nil && res.Windows == 0 && !errors.As(err, &rl) {
		for _, t := range targets {
			_ = t.Close()
		}
		targets = nil
		for _, d := range dests {
			if d.created {
				d.remove()
				s.removed = append(s.removed, d.path)
			}
		}
	}
	return err
}

// explain adds to a run's error what the user can do about it.
func explain(err error) error {
	var rl *extract.RateLimitError
	if errors.As(err, &rl) {
		if rl.Saved {
			return fmt.Errorf("%w; progress is saved, run again after %s to resume, or pass --ignore-saved-budget to ask the API now", err, rl.ResumeAt.UTC().Format(time.RFC3339))
		}
		return fmt.Errorf("%w; progress is saved, run again after %s to resume", err, rl.ResumeAt.UTC().Format(time.RFC3339))
	}
	var apiErr *extract.APIError
	if errors.As(err, &apiErr) && apiErr.Status == 400 {
		return fmt.Errorf("%w%s", err, badRequestHint(apiErr.Message))
	}
	if ge := (*load.DeleteGuardError)(nil); errors.As(err, &ge) {
		return fmt.Errorf("%w; if those contacts were deleted at the source, run again with --max-delete-ratio 1 to apply it; "+
			"if not, the API answered wrongly or the key or --base-url is not this stream's (an empty answer, another workspace)", err)
	}
	return err
}

// confirmNewStream asks on the terminal whether to start the new stream ns
// describes; without a terminal on stdin it says no.
func confirmNewStream(stderr io.Writer, ns *pipeline.NewStreamError) bool {
	if !stdinIsTerminal() {
		return false
	}
	fmt.Fprintf(stderr, "This sync starts a new stream %s %s and exports all history (10 calls an hour);\nthe destination already has:\n", ns.StreamID, ns.Identity)
	for _, st := range ns.Existing {
		fmt.Fprintf(stderr, "  %s %s\n", st.StreamID, st.Identity)
	}
	fmt.Fprint(stderr, "Start it? [y/N] ")
	var answer string
	_, _ = fmt.Fscanln(os.Stdin, &answer)
	return strings.EqualFold(strings.TrimSpace(answer), "y") || strings.EqualFold(strings.TrimSpace(answer), "yes")
}

// badRequestHint names the flags behind the query parameters a 400's
// message mentions.
func badRequestHint(msg string) string {
	var flags []string
	for _, p := range []struct{ param, flag string }{
		{"fields", "--fields"}, {"tag", "--tag"}, {"list_id", "--list-id"}, {"limit", "--limit"},
		{"created_after", "--since (or the saved cursor)"}, {"created_before", "--until"},
	} {
		if regexp.MustCompile(`\b` + p.param + `\b`).MatchString(msg) {
			flags = append(flags, p.flag)
		}
	}
	if len(flags) == 0 {
		return "; the API refused the request's parameters: check --fields, --tag, --list-id and --limit"
	}
	return "; the API refused " + strings.Join(flags, " and ") + ": fix it and run again"
}

// destination is a path a sync writes, and whether this run created it.
type destination struct {
	path    string
	extra   []string // files beside it that belong to it
	created bool     // missing, or an empty folder, before the run
	existed bool     // it was there (an empty folder)
}

// openTargets opens the DuckDB file at duckdbPath and the lake at lakePath,
// either of which may be "", and notes for each whether this run creates
// it. It returns the targets it opened even with an error, for the caller
// to close; a lake made with other partitions is a usage error. When one
// does not open, those this call created are removed again (a new DuckDB
// file beside a folder refused as a lake, say).
func openTargets(ctx context.Context, duckdbPath string, dbo load.DuckDBOptions, lakePath string, lo load.LakeOptions) (targets []load.Target, dests []destination, err error) {
	defer func() {
		if err == nil {
			return
		}
		// Removed while their locks are held, so that no other sync
		// starts on them meanwhile.
		for _, d := range dests {
			if d.created {
				d.remove()
			}
		}
		for _, t := range targets {
			_ = t.Close()
		}
		targets = nil
	}()
	if duckdbPath != "" {
		d := newDestination(duckdbPath)
		db, err := load.OpenDuckDB(ctx, duckdbPath, dbo)
		if err != nil {
			return targets, dests, err
		}
		// The file behind any symbolic link, with what lies beside it.
		d.path, d.extra = db.Path(), []string{db.Path() + ".wal", db.Path() + load.LockSuffix}
		targets, dests = append(targets, db), append(dests, d)
	}
	if lakePath != "" {
		d := newDestination(lakePath)
		lake, err := load.OpenLake(ctx, lakePath, lo)
		var conflict *load.ConflictError
		if errors.As(err, &conflict) {
			return targets, dests, usageError{err}
		}
		if err != nil {
			return targets, dests, err
		}
		targets, dests = append(targets, lake), append(dests, d)
	}
	return targets, dests, nil
}

func newDestination(path string, extra ...string) destination {
	d := destination{path: path, extra: extra}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		d.created = true
	case err == nil && fi.IsDir():
		entries, err := os.ReadDir(path)
		d.created, d.existed = err == nil && len(entries) == 0, true
	}
	return d
}

// remove deletes what the run created: a new file with the files beside
// it, or the contents of a new or empty folder.
func (d destination) remove() {
	fi, err := os.Stat(d.path)
	if err == nil && fi.IsDir() {
		entries, _ := os.ReadDir(d.path)
		for _, e := range entries {
			_ = os.RemoveAll(filepath.Join(d.path, e.Name()))
		}
		if !d.existed {
			_ = os.Remove(d.path)
		}
		return
	}
	for _, p := range append([]string{d.path}, d.extra...) {
		_ = os.Remove(p)
	}
}

func printSummary(w io.Writer, r pipeline.Result, err error, dest string, removed []string, hard bool) {
	_, state := outcome(r, err)
	fmt.Fprintf(w, "sync %s: %s: %d contacts (%d rows received) in %s with %s (minimum %d), %d rejected, %s\n",
		dest, state, r.Distinct, r.Rows, plural(r.Windows, "window"), plural(r.Calls, "API call"), r.MinCalls, r.Rejects, r.Elapsed.Round(time.Millisecond))
	switch {
	case err == nil && len(r.Pending) == 0:
		if r.Since.IsZero() {
			fmt.Fprintf(w, "synced: contacts created before %s\n", r.Until.UTC().Format(time.RFC3339))
		} else {
			fmt.Fprintf(w, "synced: contacts created from %s to %s\n", r.Since.UTC().Format(time.RFC3339), r.Until.UTC().Format(time.RFC3339))
		}
	case len(removed) > 0:
		fmt.Fprintf(w, "nothing was committed; %s, which this run created, was removed\n", strings.Join(removed, " and "))
	case r.Windows == 0 && !r.PendingSaved:
		fmt.Fprintln(w, "nothing was committed")
	case r.PendingSaved && (err == nil || extract.Transient(err) || errors.Is(err, context.Canceled)):
		fmt.Fprintf(w, "kept: %s committed; the next run resumes with the %s still to do\n", plural(r.Windows, "window"), plural(len(r.Pending), "window"))
	case r.PendingSaved:
		fmt.Fprintf(w, "kept: %s committed; %s still to do, which the next run resumes once the error below is fixed\n", plural(r.Windows, "window"), plural(len(r.Pending), "window"))
	default:
		fmt.Fprintf(w, "kept: %s committed\n", plural(r.Windows, "window"))
	}
	if r.Windows == 0 {
		return
	}
	c := r.Changes
	deleted := "marked deleted"
	if hard {
		deleted = "removed as deleted"
	}
	dups := ""
	if c.Duplicates > 0 {
		dups = fmt.Sprintf(", %d duplicate rows removed (of ids stored more than once, not by leadlex-etl)", c.Duplicates)
	}
	fmt.Fprintf(w, "contacts: %d new, %d written again%s, %d %s%s\n", c.Inserted, c.Replaced, byRefresh(r.Refresh), c.Deleted, deleted, dups)
	switch rf := r.Refresh; {
	case len(rf.Ranges) > 0:
		done := "re-exported"
		if !rf.Verified {
			done = "partly re-exported (the rest comes next time)"
		}
		texts := make([]string, len(rf.Ranges))
		for i, rg := range rf.Ranges {
			texts[i] = rangeText(rg)
		}
		fmt.Fprintf(w, "refresh: %s %s with %s: %d changed, %d new, %d %s\n",
			done, strings.Join(texts, "; "), plural(rf.Calls, "spare call"), rf.Changes.Changed, rf.Changes.Inserted, rf.Changes.Deleted, deleted)
	case rf.Skipped != "":
		fmt.Fprintf(w, "refresh: none, %s\n", rf.Skipped)
	}
	if !r.CanDelete {
		fmt.Fprintln(w, "deletions: not tracked for this stream (it is filtered, or its destination holds streams of another API or another key)")
	}
	if oldest := r.Coverage.Oldest(); !oldest.IsZero() {
		fmt.Fprintf(w, "staleness: every synced contact was exported completely since %s (%s ago)\n",
			oldest.UTC().Format(time.RFC3339), time.Since(oldest).Round(time.Second))
	}
}

// rangeText renders a created_at range for people.
func rangeText(w extract.Window) string {
	from, to := "the beginning", "now"
	if !w.From.IsZero() {
		from = w.From.UTC().Format(time.RFC3339)
	}
	if !w.To.IsZero() {
		to = w.To.UTC().Format(time.RFC3339)
	}
	return "contacts created from " + from + " to " + to
}

// plural writes n and a noun, adding an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
