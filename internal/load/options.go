package load

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Partitioning is how a lake splits contacts into Hive partitions by
// created_at (UTC). It is a pflag.Value, so the command line, the lake and
// the help text share one list.
type Partitioning string

// The partitionings.
const (
	ByMonth Partitioning = "month" // year=2024/month=4
	ByDay   Partitioning = "day"   // year=2024/month=4/day=7
	ByYear  Partitioning = "year"  // year=2024
)

// Partitionings lists every Partitioning, the default first.
var Partitionings = []Partitioning{ByMonth, ByDay, ByYear}

// String returns the partitioning's name.
func (p Partitioning) String() string { return string(p) }

// Set sets p from its name.
func (p *Partitioning) Set(s string) error {
	for _, v := range Partitionings {
		if string(v) == s {
			*p = v
			return nil
		}
	}
	return fmt.Errorf("%q is not one of %s", s, (*Partitioning)(nil).Type())
}

// Type lists the valid names, for help texts.
func (*Partitioning) Type() string {
	names := make([]string, len(Partitionings))
	for i, v := range Partitionings {
		names[i] = string(v)
	}
	return strings.Join(names, "|")
}

// Columns returns the partition columns, outermost first.
func (p Partitioning) Columns() []string {
	switch p {
	case ByYear:
		return []string{"year"}
	case ByDay:
		return []string{"year", "month", "day"}
	}
	return []string{"year", "month"}
}

// Folder returns the partition folder of an instant, in DuckDB's own
// COPY ... PARTITION_BY form: unpadded integers (year=2024/month=4), which
// every engine reads as integers.
func (p Partitioning) Folder(t time.Time) string {
	t = t.UTC()
	switch p {
	case ByYear:
		return fmt.Sprintf("year=%d", t.Year())
	case ByDay:
		return fmt.Sprintf("year=%d/month=%d/day=%d", t.Year(), int(t.Month()), t.Day())
	}
	return fmt.Sprintf("year=%d/month=%d", t.Year(), int(t.Month()))
}

// Defaults of LakeOptions.
const (
	DefaultPartitioning    = ByMonth
	DefaultTargetFileBytes = ByteSize(128 << 20)
	MinTargetFileBytes     = ByteSize(1 << 20)
)

// ByteSize is a size in bytes that reads and prints as 128MB, 1GB or a
// plain number (units are powers of 1024). It is a pflag.Value.
type ByteSize int64

// String prints the size with the largest unit that divides it.
func (b ByteSize) String() string {
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}} {
		if b != 0 && int64(b)%u.n == 0 {
			return strconv.FormatInt(int64(b)/u.n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// Set reads a size: 134217728, 128MB, 128MiB, 1GB, 512KB.
func (b *ByteSize) Set(s string) error {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > (1<<50)/mult {
		return fmt.Errorf("%q is not a size like 128MB", s)
	}
	*b = ByteSize(n * mult)
	return nil
}

// Type names the flag's value in help texts.
func (*ByteSize) Type() string { return "size" }
