package extract

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
)

// APIKey holds a LeadLex API key. It prints as [REDACTED] through fmt, slog and
// encoding/json so the key cannot leak into a log line or an error message by
// accident; only the client reads the real value, to build the Authorization
// header.
type APIKey struct{ v string }

// NewAPIKey wraps a raw key.
func NewAPIKey(raw string) APIKey { return APIKey{v: raw} }

// Empty reports whether no key was given.
func (k APIKey) Empty() bool { return k.v == "" }

// Fingerprint returns a short, stable, one-way identifier of the key, safe to
// store in state files to remember a workspace's rate-limit budget.
func (k APIKey) Fingerprint() string {
	sum := sha256.Sum256([]byte("leadlex-etl:" + k.v))
	return hex.EncodeToString(sum[:8])
}

// String returns a placeholder, never the key.
func (k APIKey) String() string { return "[REDACTED]" }

// GoString returns a placeholder, never the key.
func (k APIKey) GoString() string { return "extract.APIKey([REDACTED])" }

// Format prints a placeholder for every verb.
func (k APIKey) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte("[REDACTED]")) }

// LogValue makes slog print a placeholder.
func (k APIKey) LogValue() slog.Value { return slog.StringValue("[REDACTED]") }

// MarshalJSON encodes a placeholder.
func (k APIKey) MarshalJSON() ([]byte, error) { return []byte(`"[REDACTED]"`), nil }

// MarshalText encodes a placeholder.
func (k APIKey) MarshalText() ([]byte, error) { return []byte("[REDACTED]"), nil }
