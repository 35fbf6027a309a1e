package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/leadlex/leadlex-etl/internal/extract"
)

// DefaultBaseURL is the LeadLex API gateway the documentation names.
const DefaultBaseURL = "https://data.leadlex.com/functions/v1/api-gateway"

// apiOptions are the flags of every command that calls the export API
// (sync, check): where the API is, the key, and how patiently to call it.
type apiOptions struct {
	BaseURL           string
	APIKeyFile        string
	APIKeyEnv         string
	apiKeyFlag        string // refused: keys do not belong on a command line
	AllowInsecureHTTP bool
	Attempts          int
	Backoff           time.Duration
	Timeouts          extract.Timeouts

	warnings []string // found while validating, logged once there is a logger
}

// AddFlags registers the API flags; environment variables give defaults.
func (o *apiOptions) AddFlags(fs *pflag.FlagSet) {
	baseDefault := DefaultBaseURL
	if env := os.Getenv("LEADLEX_BASE_URL"); env != "" {
		baseDefault = env
	}
	fs.StringVar(&o.BaseURL, "base-url", baseDefault, "LeadLex API base URL, before /v1/contacts/export (env LEADLEX_BASE_URL)")
	fs.StringVar(&o.APIKeyFile, "api-key-file", "", "read the API key from this file (default: the variable --api-key-env names)")
	fs.StringVar(&o.APIKeyEnv, "api-key-env", "LEADLEX_API_KEY", "the environment variable that holds the API key")
	fs.StringVar(&o.apiKeyFlag, "api-key", "", "")
	_ = fs.MarkHidden("api-key")
	fs.BoolVar(&o.AllowInsecureHTTP, "allow-insecure-http", false, "allow a plain http:// base URL to a host that is not loopback (the key would travel in clear)")
	fs.IntVar(&o.Attempts, "attempts", 4, "tries of a call on 5xx answers, broken-off bodies and network errors (each try spends an API call)")
	fs.DurationVar(&o.Backoff, "retry-backoff", 2*time.Second, "first pause between tries; it doubles each try (with jitter), up to a minute")
	o.Timeouts = extract.DefaultTimeouts
	fs.Var(&o.Timeouts, "timeouts", fmt.Sprintf("how long to wait to connect, for the response headers, and for each next byte of a body; a body that comes slower than %d bytes a second over that last span of waiting (a trickle) fails too; a call that runs out is retried like a 5xx (see --attempts)", extract.DefaultMinRate))
}

// envNamePattern is what an environment variable's name may be.
var envNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validate checks the API flags and reads the key, before any network call.
func (o *apiOptions) validate(fs *pflag.FlagSet) (extract.APIKey, error) {
	var key extract.APIKey
	if fs.Changed("api-key") {
		return key, usagef("--api-key is not accepted: a key on the command line shows in ps and shell history; set %s or use --api-key-file", o.APIKeyEnv)
	}
	u, perr := url.Parse(o.BaseURL)
	if perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return key, usagef("--base-url %q is not an http(s) URL", o.BaseURL)
	}
	if u.User != nil {
		return key, usagef("--base-url must not carry credentials")
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) && !o.AllowInsecureHTTP {
		return key, usagef("--base-url %s is plain http to a host that is not loopback: the API key would travel in clear; use https, or pass --allow-insecure-http", o.BaseURL)
	}
	if o.Attempts < 1 {
		return key, usagef("--attempts %d must be at least 1", o.Attempts)
	}
	if o.Backoff <= 0 {
		return key, usagef("--retry-backoff %s must be positive", o.Backoff)
	}
	if looksLikeAKey(o.APIKeyEnv) || looksLikeAKey(filepath.Base(o.APIKeyFile)) {
		return key, usagef("--api-key-env or --api-key-file holds what looks like an API key (wbk_...): they name the environment variable or the file that holds the key")
	}
	if !envNamePattern.MatchString(o.APIKeyEnv) {
		return key, usagef("--api-key-env %q is not the name of an environment variable (letters, digits and _)", o.APIKeyEnv)
	}
	raw := os.Getenv(o.APIKeyEnv)
	src := o.APIKeyEnv
	if o.APIKeyFile != "" {
		b, rerr := os.ReadFile(o.APIKeyFile)
		if rerr != nil {
			return key, usagef("--api-key-file: %v", rerr)
		}
		raw, src = strings.TrimSpace(string(b)), "--api-key-file "+o.APIKeyFile
		if fi, err := os.Stat(o.APIKeyFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
			o.warnings = append(o.warnings, fmt.Sprintf("the API key file %s is readable by other users (mode %04o); restrict it with chmod 600 %s",
				o.APIKeyFile, fi.Mode().Perm(), o.APIKeyFile))
		}
	}
	if raw == "" {
		if o.APIKeyFile != "" {
			return key, usagef("no API key: %s is empty", src)
		}
		return key, usagef("no API key: set %s or use --api-key-file", o.APIKeyEnv)
	}
	if strings.ContainsAny(raw, " \t\r\n") {
		return key, usagef("the API key from %s contains whitespace", src)
	}
	return extract.NewAPIKey(raw), nil
}

// client returns a client of the API with key, logging to log.
func (o *apiOptions) client(key extract.APIKey, log *slog.Logger) *extract.Client {
	return &extract.Client{BaseURL: o.BaseURL, Key: key, Logger: log, UserAgent: userAgent(),
		Retry: extract.RetryPolicy{MaxAttempts: o.Attempts, BaseDelay: o.Backoff}, Timeouts: o.Timeouts}
}

func isLoopback(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// logOptions are the logging flags.
type logOptions struct {
	LogFormat string
	Quiet     bool
}

// AddFlags registers the logging flags.
func (o *logOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.LogFormat, "log-format", "text", "log format on stderr: text or json")
	fs.BoolVarP(&o.Quiet, "quiet", "q", false, "log warnings and errors only")
}

func (o *logOptions) validate() error {
	if o.LogFormat != "text" && o.LogFormat != "json" {
		return usagef("--log-format %q must be text or json", o.LogFormat)
	}
	return nil
}

// logger returns the logger the flags ask for, writing to w.
func (o *logOptions) logger(w io.Writer) *slog.Logger {
	level := slog.LevelInfo
	if o.Quiet {
		level = slog.LevelWarn
	}
	hopts := &slog.HandlerOptions{Level: level}
	if o.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, hopts))
	}
	return slog.New(slog.NewTextHandler(w, hopts))
}
