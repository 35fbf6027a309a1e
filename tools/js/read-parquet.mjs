// read-parquet.mjs prints the rows of Parquet files as JSON lines, one
// object per row with the file's columns in order, read with hyparquet (and
// hyparquet-compressors for zstd, gzip, brotli and lz4). The Go tests run it
// to check that leadlex-etl's files read the same in JavaScript.
//
// Values are normalised so that they compare exactly:
//   - a TIMESTAMP(MICROS) value is the decimal string of its microseconds
//     since the epoch (hyparquet's default Date would drop the microseconds);
//     a MILLIS or NANOS value is "<n>ms" or "<n>ns", so a wrong unit shows;
//   - any other BigInt (INT64) is its decimal string;
//   - NULL is null, a list is an array.
//
// Usage: node tools/js/read-parquet.mjs FILE...
// Install its dependencies first: npm ci --prefix tools/js (make test does).
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet'
import { compressors } from 'hyparquet-compressors'

const parsers = {
  timestampFromMicroseconds: (us) => us.toString(),
  timestampFromMilliseconds: (ms) => `${ms}ms`,
  timestampFromNanoseconds: (ns) => `${ns}ns`,
}

function replacer(_key, value) {
  return typeof value === 'bigint' ? value.toString() : value
}

async function main(path) {
  const file = await asyncBufferFromFile(path)
  const metadata = await parquetMetadataAsync(file, { parsers })
  let rowStart = 0
  // One row group at a time, so memory stays bounded by a row group.
  for (const rg of metadata.row_groups) {
    const rowEnd = rowStart + Number(rg.num_rows)
    const rows = await parquetReadObjects({ file, metadata, compressors, parsers, rowStart, rowEnd })
    const out = rows.map((row) => JSON.stringify(row, replacer)).join('\n')
    if (out) process.stdout.write(out + '\n')
    rowStart = rowEnd
  }
}

const paths = process.argv.slice(2)
if (paths.length === 0) {
  process.stderr.write('usage: node read-parquet.mjs FILE...\n')
  process.exit(2)
}
for (const path of paths) {
  try {
    await main(path)
  } catch (err) {
    process.stderr.write(`read-parquet: ${path}: ${err?.stack ?? err}\n`)
    process.exit(1)
  }
}
