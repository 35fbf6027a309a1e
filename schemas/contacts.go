// Package schemas is the one definition of the contacts table: its columns
// and their types, from which the Arrow schema (transform), the DuckDB DDL
// (load) and the Parquet schema are all derived. It must not depend on any
// other package of the project.
package schemas

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
)

// Kind is a column's logical type.
type Kind int

const (
	// Text is a string; an empty CSV field is NULL.
	Text Kind = iota
	// UUID is a contact id, canonical lowercase 8-4-4-4-12 hex. Arrow carries
	// it as utf8 (every engine reads that); DuckDB stores it as UUID.
	UUID
	// Tags is a list of strings; the CSV field "a, b" is ["a","b"], an empty
	// field is an empty list.
	Tags
	// Timestamp is an instant, microsecond precision, normalised to UTC.
	Timestamp
	// Int64 is a 64-bit integer (internal columns only).
	Int64
)

// kindNames are the names Kind marshals to; state files store kinds by
// name, so that reordering the constants never misreads them.
var kindNames = [...]string{Text: "text", UUID: "uuid", Tags: "tags", Timestamp: "timestamp", Int64: "int64"}

// String returns the kind's name: text, uuid, tags, timestamp or int64.
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// ParseKind returns the kind called name.
func ParseKind(name string) (Kind, error) {
	for k, n := range kindNames {
		if n == name {
			return Kind(k), nil
		}
	}
	return 0, fmt.Errorf("unknown column kind %q (want text, uuid, tags, timestamp or int64)", name)
}

// MarshalText encodes the kind by name.
func (k Kind) MarshalText() ([]byte, error) {
	if k < 0 || int(k) >= len(kindNames) {
		return nil, fmt.Errorf("unknown column kind %d", int(k))
	}
	return []byte(kindNames[k]), nil
}

// UnmarshalText decodes a kind's name.
func (k *Kind) UnmarshalText(b []byte) error {
	v, err := ParseKind(string(b))
	if err == nil {
		*k = v
	}
	return err
}

// UnmarshalJSON decodes a kind's name, or the number state files written
// before kinds were stored by name hold (0 text, 1 uuid, 2 tags,
// 3 timestamp, 4 int64: the order of the constants then).
func (k *Kind) UnmarshalJSON(b []byte) error {
	var n int
	if err := json.Unmarshal(b, &n); err == nil {
		if n < 0 || n >= len(kindNames) {
			return fmt.Errorf("unknown column kind %d", n)
		}
		*k = Kind(n)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("column kind: %w", err)
	}
	return k.UnmarshalText([]byte(s))
}

// Column is one column of the contacts table.
type Column struct {
	Name     string
	Kind     Kind
	Required bool // NOT NULL: a row without it is rejected
}

// Contacts is the standard export set, in the API's order.
var Contacts = []Column{
	{Name: "id", Kind: UUID, Required: true},
	{Name: "full_name", Kind: Text},
	{Name: "email", Kind: Text},
	{Name: "phone", Kind: Text},
	{Name: "job_title", Kind: Text},
	{Name: "company_name", Kind: Text},
	{Name: "linkedin_url", Kind: Text},
	{Name: "tags", Kind: Tags},
	{Name: "created_at", Kind: Timestamp, Required: true},
}

// Lineage columns the loaders add to every row.
var Lineage = []Column{
	{Name: "_request_id", Kind: Text},      // X-Request-ID of the response the row came in
	{Name: "_loaded_at", Kind: Timestamp},  // when the window was committed
	{Name: "_deleted_at", Kind: Timestamp}, // when a complete export first lacked the contact (soft delete); NULL while it is live
}

// DeletedAt is the lineage column that marks a contact deleted at the
// source.
const DeletedAt = "_deleted_at"

// Names returns the names of cols.
func Names(cols []Column) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = c.Name
	}
	return out
}

// Known returns the standard column called name.
func Known(name string) (Column, bool) {
	for _, c := range Contacts {
		if c.Name == name {
			return c, true
		}
	}
	return Column{}, false
}

// ForHeader returns the columns for a CSV header: standard fields get their
// types, any other field is nullable text. It fails if id or created_at is
// missing, a name repeats, or a name cannot be a column.
func ForHeader(header []string) ([]Column, error) {
	cols := make([]Column, 0, len(header))
	seen := map[string]bool{}
	for i, h := range header {
		if err := ValidName(h); err != nil {
			return nil, fmt.Errorf("CSV header column %d: %w", i+1, err)
		}
		if seen[h] {
			return nil, fmt.Errorf("CSV header names %q twice", h)
		}
		seen[h] = true
		c, ok := Known(h)
		if !ok {
			c = Column{Name: h, Kind: Text}
		}
		cols = append(cols, c)
	}
	for _, must := range []string{"id", "created_at"} {
		if !seen[must] {
			return nil, fmt.Errorf("CSV header %q has no %s column", strings.Join(header, ","), must)
		}
	}
	return cols, nil
}

// ValidName checks that a field name is usable as a column name everywhere
// (DuckDB, Parquet, Hive paths): lowercase letters, digits and underscores,
// starting with a letter, at most 63 characters.
func ValidName(name string) error {
	if name == "" || len(name) > 63 {
		return fmt.Errorf("field name %q must be 1 to 63 characters", name)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r == '_' && i > 0 || r >= '0' && r <= '9' && i > 0
		if !ok {
			return fmt.Errorf("field name %q: only lowercase letters, digits and underscores, starting with a letter", name)
		}
	}
	return nil
}

// ArrowType is the Arrow type of a column.
func (c Column) ArrowType() arrow.DataType {
	switch c.Kind {
	case Tags:
		return arrow.ListOf(arrow.BinaryTypes.String)
	case Timestamp:
		return &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
	case Int64:
		return arrow.PrimitiveTypes.Int64
	}
	return arrow.BinaryTypes.String
}

// DuckDBType is the DuckDB type of a column.
func (c Column) DuckDBType() string {
	switch c.Kind {
	case UUID:
		return "UUID"
	case Tags:
		return "VARCHAR[]"
	case Timestamp:
		return "TIMESTAMPTZ"
	case Int64:
		return "BIGINT"
	}
	return "VARCHAR"
}

// Nullable reports whether a stored column may hold NULL: every column but
// the required ones, since a sync that did not ask for a field leaves it NULL.
func (c Column) Nullable() bool { return !c.Required }

// ArrowSchema is the schema of record batches with these columns. In a batch
// tags are never NULL (an empty field is an empty list).
func ArrowSchema(cols []Column) *arrow.Schema {
	fields := make([]arrow.Field, len(cols))
	for i, c := range cols {
		fields[i] = arrow.Field{Name: c.Name, Type: c.ArrowType(), Nullable: c.Nullable() && c.Kind != Tags}
	}
	return arrow.NewSchema(fields, nil)
}

// QuoteIdent quotes a name for SQL.
func QuoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// CreateTableSQL is the DuckDB DDL for a table with these columns.
func CreateTableSQL(table string, cols []Column) string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s (", QuoteIdent(table))
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %s", QuoteIdent(c.Name), c.DuckDBType())
		if !c.Nullable() {
			b.WriteString(" NOT NULL")
		}
	}
	b.WriteString(")")
	return b.String()
}
