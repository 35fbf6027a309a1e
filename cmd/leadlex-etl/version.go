package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/leadlex/leadlex-etl/internal/load"
)

// versionInfo is what the binary knows of its build.
type versionInfo struct {
	Version  string // the module's version; "(devel)" for a build from a work tree
	Commit   string // the VCS revision; "unknown" when the build did not stamp it
	Time     string // the revision's commit time, if stamped
	Modified bool   // the work tree had changes
	Go       string
}

// buildVersion reads the version from the build information the Go
// toolchain embeds (go build stamps the commit when it runs in a git
// checkout, unless -buildvcs=false).
func buildVersion() versionInfo {
	v := versionInfo{Version: "(devel)", Commit: "unknown", Go: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if info.Main.Version != "" {
		v.Version = info.Main.Version
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// userAgent is the User-Agent of API calls: leadlex-etl and its version
// when it has one.
func userAgent() string {
	if v := buildVersion().Version; v != "(devel)" {
		return "leadlex-etl/" + strings.TrimPrefix(v, "v")
	}
	return "leadlex-etl"
}

// duckDBVersion asks the embedded DuckDB library its version.
func duckDBVersion(ctx context.Context) (string, error) {
	db, err := load.OpenDuckDBReadOnly("")
	if err != nil {
		return "", err
	}
	defer db.Close()
	var v string
	if err := db.QueryRowContext(ctx, "SELECT library_version FROM pragma_version()").Scan(&v); err != nil {
		return "", err
	}
	return v, nil
}

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", `Print the version of leadlex-etl, the commit it was built from ("unknown"
when the build did not record it, "(devel)" as the version of a build from
a work tree), the Go toolchain that built it and the version of the DuckDB
library it embeds. Also: leadlex-etl --version.`, stdout)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	v := buildVersion()
	duck, err := duckDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("asking the embedded DuckDB its version: %w", err)
	}
	commit := v.Commit
	if v.Time != "" {
		commit += " (" + v.Time + ")"
	}
	if v.Modified {
		commit += ", with uncommitted changes"
	}
	_, err = fmt.Fprintf(stdout, "leadlex-etl %s\ncommit: %s\ngo:     %s\nduckdb: %s\n", v.Version, commit, v.Go, duck)
	return err
}
