package load

import "fmt"

// LockedError says another process is writing the destination: a second sync
// on the same DuckDB file or lake fails with it at once.
type LockedError struct {
	Kind   string // "DuckDB file" or "lake"
	Path   string
	Detail string
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("%s %s is locked by another process (is another sync still running?): %s", e.Kind, e.Path, e.Detail)
}

// UntrustedError says a destination's own files (its state or journal) say
// something this version refuses to act on, such as a path outside the
// destination. Nothing was changed.
type UntrustedError struct {
	Path   string // the file that said it
	Detail string
}

func (e *UntrustedError) Error() string {
	return fmt.Sprintf("refusing %s: %s; nothing was changed (was it edited, or copied from an untrusted place?)", e.Path, e.Detail)
}
