// read-polars.mjs prints the rows of a Hive-partitioned Parquet folder as
// JSON lines, read by Polars (nodejs-polars) pointed at the folder with no
// option, as a Polars user would: pl.scanParquet('lake/contacts'). The Go
// tests run it to check that the lake reads the same in Polars.
//
// The first line is the schema Polars inferred ({"column": "DataType"}).
// Then one object per row; a Datetime is the decimal string of its
// microseconds since the epoch (a JS Date would drop them), any Int64 its
// decimal string, NULL is null, a list is an array.
//
// Usage: node tools/js/read-polars.mjs DIR
// Install its dependencies first: npm ci --prefix tools/js (make test does).
import pl from 'nodejs-polars'

const all = pl.scanParquet(process.argv[2]).collectSync()
const schema = all.schema
const names = Object.keys(schema)
const typeName = (n) => String(schema[n]).replace(/^DataType\((.*)\)$/, '$1')
process.stdout.write(JSON.stringify(Object.fromEntries(names.map((n) => [n, typeName(n)]))) + '\n')
const exprs = names.map((n) =>
  typeName(n).startsWith('Datetime') ? pl.col(n).cast(pl.Int64).cast(pl.Utf8).alias(n) : pl.col(n),
)
const df = all.select(...exprs)
function replacer(_key, value) {
  return typeof value === 'bigint' ? value.toString() : value
}
const rows = df.toRecords()
const out = []
for (const row of rows) {
  out.push(JSON.stringify(row, replacer))
  if (out.length === 10000) {
    process.stdout.write(out.join('\n') + '\n')
    out.length = 0
  }
}
if (out.length) process.stdout.write(out.join('\n') + '\n')
