//go:build !duckdb_arrow

package load

// The DuckDB sink feeds DuckDB through its Arrow interface, which the
// duckdb-go module compiles only with the build tag duckdb_arrow. Without
// it, this constant fails to compile with a message that says what to do.
const _ = "leadlex-etl must be built with -tags duckdb_arrow (make build, make test, or go build -tags duckdb_arrow ./...)" + 0
