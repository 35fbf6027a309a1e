// Command leadlex-etl keeps an analytics copy of a LeadLex workspace's
// contacts: it pulls windowed CSV exports within the API's 10-calls-an-hour
// budget and loads them into DuckDB and Parquet. main parses the command
// line, wires the stages, and maps errors to exit codes in one place.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/leadlex/leadlex-etl/internal/extract"
)

// Exit codes; scripts depend on them.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitAuth        = 3
	exitRateLimited = 75 // EX_TEMPFAIL: try again later
	// A run ended by SIGINT or SIGTERM exits 128 plus the signal's number.
)

// command is one subcommand.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{
	"sync":     {"export contacts and upsert them into DuckDB and/or Parquet, resuming where the last run stopped", runSync},
	"check":    {"check the API key and base URL with one export call of one row, and show the hour's rate-limit budget", runCheck},
	"query":    {"run SQL on a DuckDB file the sync wrote and print the result", runQuery},
	"plan":     {"say what a sync with the same flags would do and cost, without an API call", runPlan},
	"status":   {"show a destination's streams, coverage, freshness, runs, rejects and budget (no API call)", runStatus},
	"streams":  {"list a destination's streams, or forget one (reset ID)", runStreams},
	"replay":   {"rebuild a DuckDB file and/or Parquet lake from sync --raw-dir's archive, with no API call", runReplay},
	"fake-api": {"run a local fake LeadLex export API (for tests, demos and trying things out)", runFakeAPI},
	"version":  {"print the version, the commit it was built from, and the Go and DuckDB versions", runVersion},
}

// usageError is a mistake on the command line: exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// interrupted is the cause of the context's end when a signal stopped the
// run. It matches context.Canceled, as the error of anything the context
// ended (net/http returns the cause itself from a body read) must.
type interrupted struct{ sig os.Signal }

func (e *interrupted) Error() string { return "interrupted by " + signalName(e.sig) }
func (e *interrupted) Unwrap() error { return context.Canceled }

func run(args []string, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	// The first SIGINT or SIGTERM stops the run after the window in hand
	// (committed windows are kept); a second one exits at once, which is
	// just as safe: the next run finishes or discards a half-done commit.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		s, ok := <-sigs
		if !ok {
			return
		}
		cancel(&interrupted{s})
		if s2, ok := <-sigs; ok {
			fmt.Fprintf(stderr, "leadlex-etl: %s again: exiting at once; the next run completes or discards the window in hand\n", signalName(s2))
			os.Exit(signalExit(s2))
		}
	}()
	if len(args) == 0 {
		rootUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		rootUsage(stdout)
		return exitOK
	case "--version":
		args[0] = "version"
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "leadlex-etl: unknown command %q\n\n", args[0])
		rootUsage(stderr)
		return exitUsage
	}
	err := cmd.run(ctx, args[1:], stdout, stderr)
	code, _ := exitStatus(ctx, err)
	switch {
	case code == exitOK:
	case code > 128:
		fmt.Fprintf(stderr, "leadlex-etl: %v; committed windows are kept, run again to resume\n", context.Cause(ctx))
	default:
		fmt.Fprintf(stderr, "leadlex-etl: %v\n", err)
	}
	return code
}

// signalExit is the shell's exit code for a process ended by s: 128 plus
// the signal number (130 for SIGINT, 143 for SIGTERM).
func signalExit(s os.Signal) int {
	if n, ok := s.(syscall.Signal); ok {
		return 128 + int(n)
	}
	return exitError
}

func signalName(s os.Signal) string {
	switch s {
	case os.Interrupt:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return s.String()
}

// exitStatus maps a command's error to the exit code, in this one place,
// and says what the code means. ctx is the command's: when a signal ended
// it, the run was interrupted.
func exitStatus(ctx context.Context, err error) (code int, meaning string) {
	if err == nil || errors.Is(err, pflag.ErrHelp) {
		return exitOK, "ok"
	}
	var in *interrupted
	var ue usageError
	var apiErr *extract.APIError
	var rl *extract.RateLimitError
	switch {
	case errors.Is(err, context.Canceled) && errors.As(context.Cause(ctx), &in):
		return signalExit(in.sig), "interrupted by " + signalName(in.sig) + ": committed windows are kept, run again to resume"
	case errors.As(err, &ue):
		return exitUsage, "bad usage"
	case errors.As(err, &apiErr) && apiErr.Auth():
		return exitAuth, "the API refused the key (401/403)"
	case errors.As(err, &rl):
		return exitRateLimited, "rate-limited: run again after resume_at"
	}
	return exitError, "error"
}

func rootUsage(w io.Writer) {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString(`leadlex-etl keeps an analytics copy of a LeadLex workspace's contacts in
DuckDB and Parquet, spending as few of the export API's 10 calls an hour as
the data allows, and never losing or duplicating a row.

Usage:
  leadlex-etl <command> [flags]

Commands:
`)
	for _, n := range names {
		fmt.Fprintf(&b, "  %-10s %s\n", n, commands[n].summary)
	}
	b.WriteString(`
Run 'leadlex-etl <command> --help' for a command's flags, and
'leadlex-etl --version' for the version.

Exit codes: 0 ok, 1 error, 2 bad usage, 3 API key refused (401/403),
75 rate-limited with --no-wait (the message says when to resume),
130/143 interrupted by SIGINT/SIGTERM (committed windows are kept).
`)
	fmt.Fprint(w, b.String())
}

// newFlagSet returns a flag set whose errors are returned, not printed and
// exited on, and whose --help prints usage with a heading.
func newFlagSet(name, synopsis string, out io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(out)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: leadlex-etl %s [flags]\n\n%s\n\nFlags:\n%s", name, synopsis, fs.FlagUsages())
	}
	return fs
}

// parseFlags parses args; a bad flag is a usage error, --help is not an error.
func parseFlags(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
