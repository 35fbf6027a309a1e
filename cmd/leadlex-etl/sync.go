package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
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

// DefaultBaseURL is the LeadLex API gateway the documentation names.
const DefaultBaseURL = "https://data.leadlex.com/functions/v1/api-gateway"

// syncOptions holds the flags of `leadlex-etl sync`.
type syncOptions struct {
	BaseURL           string
	APIKeyFile        string
	apiKeyFlag        string // refused: keys do not belong on a command line
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
	AllowInsecureHTTP bool
	MemoryLimit       string
	Threads           int
	RejectRatio       float64
	RejectsAllowed    int
	Attempts          int
	Backoff           time.Duration
	Timeouts          extract.Timeouts
	MaxRateLimited    int
	IgnoreSavedBudget bool
	RefreshCalls      refreshCalls
	ReserveCalls      int
	RefreshMinAge     time.Duration
	Deletes           deleteMode
	RawDir            string
	LogFormat         string
	Quiet             bool

	warnings []string // found while validating, logged once there is a logger
}

// AddFlags registers the sync flags; environment variables give defaults.
func (o *syncOptions) AddFlags(fs *pflag.FlagSet) {
	baseDefault := DefaultBaseURL
	if env := os.Getenv("LEADLEX_BASE_URL"); env != "" {
		baseDefault = env
	}
	fs.StringVar(&o.BaseURL, "base-url", baseDefault, "LeadLex API base URL, before /v1/contacts/export (env LEADLEX_BASE_URL)")
	fs.StringVar(&o.APIKeyFile, "api-key-file", "", "read the API key from this file (default: env LEADLEX_API_KEY)")
	fs.StringVar(&o.apiKeyFlag, "api-key", "", "")
	_ = fs.MarkHidden("api-key")
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
	fs.BoolVar(&o.AllowInsecureHTTP, "allow-insecure-http", false, "allow a plain http:// base URL to a host that is not loopback (the key would travel in clear)")
	fs.IntVar(&o.Attempts, "attempts", 4, "tries per window on 5xx answers, broken-off bodies and network errors (each try spends an API call)")
	fs.DurationVar(&o.Backoff, "retry-backoff", 2*time.Second, "first pause between tries; it doubles each try (with jitter), up to a minute")
	o.Timeouts = extract.DefaultTimeouts
	fs.Var(&o.Timeouts, "timeouts", "how long to wait to connect, for the response headers, and for each next byte of a body; a call that runs out is retried like a 5xx (see --attempts)")
	fs.IntVar(&o.MaxRateLimited, "max-429", extract.DefaultMaxRateLimited, "stop (exit 75) after this many 429 answers in a row; between them the wait is what the API says, at least 1s doubling each time up to a minute, at most an hour and 5 minutes")
	o.RefreshCalls = refreshCalls(pipeline.RefreshAuto)
	fs.Var(&o.RefreshCalls, "refresh-calls", "after the new data, re-export the ranges verified longest ago with this many calls at most, to catch edits and deletions: auto spends what the API says is left this hour less --reserve-calls (never waiting for a reset); 0 turns refresh off")
	fs.IntVar(&o.ReserveCalls, "reserve-calls", 2, "with --refresh-calls auto, leave this many of the hour's calls to other users of the workspace key")
	fs.DurationVar(&o.RefreshMinAge, "refresh-min-age", time.Hour, "do not re-export a range verified less than this ago (0s allows it, for tests with a short rate-limit hour)")
	o.Deletes = deleteSoft
	fs.Var(&o.Deletes, "deletes", "contacts a complete export no longer has: soft sets their _deleted_at (NULL while live), hard removes them")
	fs.StringVar(&o.RawDir, "raw-dir", "", "keep every committed response body here, zstd-compressed, with what leadlex-etl replay needs to rebuild a destination without the API (created if missing; may be shared by runs)")
	fs.BoolVar(&o.IgnoreSavedBudget, "ignore-saved-budget", false, "ask the API even if an earlier run saved that the rate limit is spent (it is saved per key and base URL, and forgotten at its reset)")
	fs.StringVar(&o.MemoryLimit, "memory-limit", "2GB", "DuckDB memory_limit")
	fs.IntVar(&o.Threads, "threads", 0, "DuckDB threads (default: number of CPUs)")
	fs.Float64Var(&o.RejectRatio, "reject-ratio", 0.01, "fail a window (load none of it) when more than this share of its rows do not parse; bad rows of windows that load go to _leadlex_rejects")
	fs.IntVar(&o.RejectsAllowed, "rejects-allowed", 10, "a window with at most this many bad rows never fails, whatever --reject-ratio says, so a few bad contacts do not block small incremental windows")
	fs.StringVar(&o.LogFormat, "log-format", "text", "log format on stderr: text or json")
	fs.BoolVarP(&o.Quiet, "quiet", "q", false, "log warnings and errors only")
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

func isLoopback(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validate checks the flags and reads the key, before any network call.
func (o *syncOptions) validate(fs *pflag.FlagSet) (key extract.APIKey, since, until time.Time, err error) {
	if fs.Changed("api-key") {
		return key, since, until, usagef("--api-key is not accepted: a key on the command line shows in ps and shell history; set LEADLEX_API_KEY or use --api-key-file")
	}
	if o.DuckDB == "" && o.Parquet == "" {
		return key, since, until, usagef("no destination: give --duckdb PATH, --parquet DIR, or both")
	}
	if o.ParquetTarget < load.MinTargetFileBytes {
		return key, since, until, usagef("--parquet-target-size %s is below %s", o.ParquetTarget, load.MinTargetFileBytes)
	}
	if o.ParquetRowGroup < 1000 {
		return key, since, until, usagef("--parquet-row-group-rows %d must be at least 1000", o.ParquetRowGroup)
	}
	u, perr := url.Parse(o.BaseURL)
	if perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return key, since, until, usagef("--base-url %q is not an http(s) URL", o.BaseURL)
	}
	if u.User != nil {
		return key, since, until, usagef("--base-url must not carry credentials")
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) && !o.AllowInsecureHTTP {
		return key, since, until, usagef("--base-url %s is plain http to a host that is not loopback: the API key would travel in clear; use https, or pass --allow-insecure-http", o.BaseURL)
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
	if o.Attempts < 1 {
		return key, since, until, usagef("--attempts %d must be at least 1", o.Attempts)
	}
	if o.Backoff <= 0 {
		return key, since, until, usagef("--retry-backoff %s must be positive", o.Backoff)
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
	if o.RejectRatio < 0 || o.RejectRatio > 1 {
		return key, since, until, usagef("--reject-ratio %g must be between 0 and 1", o.RejectRatio)
	}
	if o.LogFormat != "text" && o.LogFormat != "json" {
		return key, since, until, usagef("--log-format %q must be text or json", o.LogFormat)
	}
	for _, t := range o.Tags {
		if strings.TrimSpace(t) == "" {
			return key, since, until, usagef("--tag must not be empty")
		}
	}
	for _, f := range o.Fields {
		if err := schemas.ValidName(strings.TrimSpace(f)); err != nil {
			return key, since, until, usagef("--fields: %v", err)
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
	raw := os.Getenv("LEADLEX_API_KEY")
	src := "LEADLEX_API_KEY"
	if o.APIKeyFile != "" {
		b, rerr := os.ReadFile(o.APIKeyFile)
		if rerr != nil {
			return key, since, until, usagef("--api-key-file: %v", rerr)
		}
		raw, src = strings.TrimSpace(string(b)), "--api-key-file "+o.APIKeyFile
		if fi, err := os.Stat(o.APIKeyFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
			o.warnings = append(o.warnings, fmt.Sprintf("the API key file %s is readable by other users (mode %04o); restrict it with chmod 600 %s",
				o.APIKeyFile, fi.Mode().Perm(), o.APIKeyFile))
		}
	}
	if raw == "" {
		return key, since, until, usagef("no API key: set LEADLEX_API_KEY or use --api-key-file")
	}
	if strings.ContainsAny(raw, " \t\r\n") {
		return key, since, until, usagef("the API key from %s contains whitespace", src)
	}
	return extract.NewAPIKey(raw), since, until, nil
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

// fields returns the requested fields with id and created_at added.
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
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func newLogger(format string, quiet bool, w io.Writer) *slog.Logger {
	level := slog.LevelInfo
	if quiet {
		level = slog.LevelWarn
	}
	hopts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, hopts))
	}
	return slog.New(slog.NewTextHandler(w, hopts))
}

func runSync(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o syncOptions
	fs := newFlagSet("sync", `Export contacts from LeadLex and upsert them into a DuckDB file and/or a
folder of Hive-partitioned Parquet files, window by window. Each window's rows are committed together with the sync state, so a
run killed at any point loses nothing and the next run resumes; ids stay
unique. A first run exports all history; later runs export what is new since
the saved cursor (less --lookback). API calls are scarce (10 an hour per
workspace): the planner asks for 50,000 rows a call and splits windows only
as the data requires.

The API key comes from LEADLEX_API_KEY or --api-key-file, never a flag value.

Exit codes: 0 ok (also when --max-calls stopped the run; run again to go
on), 1 error, 2 bad usage, 3 key refused (401/403), 75 rate-limited with
--no-wait (the message says when to resume), 130/143 interrupted by
SIGINT/SIGTERM (committed windows are kept; run again to resume).

Example:
  export LEADLEX_API_KEY=wbk_...
  leadlex-etl sync --duckdb warehouse.duckdb --parquet lake
  `+queryExamples[1], stdout)
	o.AddFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	key, since, until, err := o.validate(fs)
	if err != nil {
		return err
	}
	log := newLogger(o.LogFormat, o.Quiet, stderr)
	for _, w := range o.warnings {
		log.Warn(w)
	}
	client := &extract.Client{BaseURL: o.BaseURL, Key: key, NoWait: o.NoWait, Logger: log, UserAgent: "leadlex-etl",
		Retry: extract.RetryPolicy{MaxAttempts: o.Attempts, BaseDelay: o.Backoff}, Timeouts: o.Timeouts, MaxRateLimited: o.MaxRateLimited}
	var arch *archive.Archive
	if o.RawDir != "" {
		if arch, err = archive.Open(o.RawDir, true); err != nil {
			return usageError{fmt.Errorf("--raw-dir: %w", err)}
		}
		defer arch.Close()
	}
	var targets []load.Target
	var dests []destination
	defer func() {
		for _, t := range targets {
			_ = t.Close()
		}
	}()
	if o.DuckDB != "" {
		d := newDestination(o.DuckDB, o.DuckDB+".wal", o.DuckDB+load.LockSuffix)
		db, err := load.OpenDuckDB(ctx, o.DuckDB, load.DuckDBOptions{MemoryLimit: o.MemoryLimit, Threads: o.Threads, Logger: log})
		if err != nil {
			return err
		}
		targets, dests = append(targets, db), append(dests, d)
	}
	if o.Parquet != "" {
		d := newDestination(o.Parquet)
		lake, err := load.OpenLake(ctx, o.Parquet, load.LakeOptions{
			PartitionBy: o.PartitionBy, TargetFileBytes: o.ParquetTarget,
			Parquet: parquetio.Options{Compression: o.ParquetCompress, RowGroupRows: o.ParquetRowGroup},
		})
		var conflict *load.ConflictError
		if errors.As(err, &conflict) {
			return usageError{err}
		}
		if err != nil {
			return err
		}
		targets, dests = append(targets, lake), append(dests, d)
	}
	var budgets pipeline.SharedBudget
	if path, err := budget.DefaultPath(); err != nil {
		log.Warn("no shared rate-limit budget: each destination keeps its own", "err", err.Error())
	} else if store, err := budget.Open(path); err != nil {
		log.Warn("no shared rate-limit budget: each destination keeps its own", "err", err.Error())
	} else {
		budgets = store
	}
	q := extract.Query{Limit: o.Limit, ListID: o.ListID, Tags: o.Tags, Fields: o.fields()}
	res, err := pipeline.Sync(ctx, pipeline.Options{
		Client: client, Query: q, Since: since, Until: until, Lookback: o.Lookback, MaxCalls: o.MaxCalls, IgnoreSavedBudget: o.IgnoreSavedBudget,
		HardDelete: o.Deletes == deleteHard, Budgets: budgets,
		Refresh: pipeline.RefreshPolicy{Calls: int(o.RefreshCalls), ReserveCalls: o.ReserveCalls, MinAge: o.RefreshMinAge},
		Targets: targets, Transform: transform.Options{MaxRejectRatio: o.RejectRatio, RejectsAllowed: o.RejectsAllowed}, Logger: log,
		Archive: arch,
	})
	// A destination this run created and committed nothing to is removed
	// on failure, so a mistake (a refused key, a bad --fields) leaves no
	// debris. One stopped by the rate limit stays: it remembers the budget.
	var removed []string
	var rl *extract.RateLimitError
	if err != nil && res.Windows == 0 && !errors.As(err, &rl) {
		for _, t := range targets {
			_ = t.Close()
		}
		targets = nil
		for _, d := range dests {
			if d.created {
				d.remove()
				removed = append(removed, d.path)
			}
		}
	}
	names := make([]string, len(dests))
	for i, d := range dests {
		names[i] = d.path
	}
	printSummary(stdout, res, err, strings.Join(names, " and "), removed, o.Deletes == deleteHard)
	if arch != nil && res.Archived > 0 {
		fmt.Fprintf(stdout, "raw archive: %s kept in %s\n", fmt.Sprintf("%d response bodies", res.Archived), o.RawDir)
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
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
	return err
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
	var state string
	switch {
	case err == nil && len(r.Pending) == 0:
		state = "complete"
	case err == nil:
		state = "stopped at --max-calls"
	case errors.Is(err, context.Canceled):
		state = "interrupted"
	case errors.As(err, new(*extract.RateLimitError)):
		state = "stopped by the rate limit"
	default:
		state = "failed"
	}
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
	fmt.Fprintf(w, "contacts: %d new, %d written again (%d of them by the refresh, %d changed), %d %s\n",
		c.Inserted, c.Replaced, r.Refresh.Changes.Replaced, r.Refresh.Changes.Changed, c.Deleted, deleted)
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
		fmt.Fprintln(w, "deletions: not tracked for this stream (it is filtered, or its destination holds streams of another API)")
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
