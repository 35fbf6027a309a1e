#!/usr/bin/env bash
# make demo: start the fake LeadLex API on a free loopback port, sync a few
# hundred thousand contacts into demo/warehouse.duckdb and the Parquet lake
# demo/lake (one extract feeds both), run it again to show an incremental
# sync, print a summary and sample queries, stop the fake API.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/leadlex-etl}
CONTACTS=${DEMO_CONTACTS:-300000}
DB=demo/warehouse.duckdb
LAKE=demo/lake

mkdir -p demo
rm -rf "$DB" "$DB.wal" "$LAKE"
"$BIN" fake-api --addr 127.0.0.1:0 --contacts "$CONTACTS" --order random >demo/fake-api.log 2>&1 &
FAKE=$!
trap 'kill $FAKE 2>/dev/null || true; wait $FAKE 2>/dev/null || true' EXIT
URL=
for _ in $(seq 200); do
  URL=$(grep -o 'http://[0-9.:]*' demo/fake-api.log | head -1 || true)
  [ -n "$URL" ] && break
  kill -0 $FAKE 2>/dev/null || { cat demo/fake-api.log; exit 1; }
  sleep 0.05
done
[ -n "$URL" ] || { echo "fake API did not start"; cat demo/fake-api.log; exit 1; }
echo "== $(cat demo/fake-api.log)"

export LEADLEX_API_KEY=wbk_demo_key   # the fake API's demo key
echo "== first sync: all history ($CONTACTS contacts, rows come back in random order)"
"$BIN" sync --quiet --base-url "$URL" --duckdb "$DB" --parquet "$LAKE"
echo "== second sync: only what is new since the cursor (one call)"
"$BIN" sync --quiet --base-url "$URL" --duckdb "$DB" --parquet "$LAKE"

echo "== contacts per tag"
"$BIN" query --duckdb "$DB" "SELECT tag, count(*) AS contacts FROM (SELECT unnest(tags) AS tag FROM contacts) GROUP BY tag ORDER BY contacts DESC, tag"
echo "== the table and the tool's own tables"
"$BIN" query --duckdb "$DB" "SELECT count(*) AS contacts, count(DISTINCT id) AS distinct_ids, strftime(min(created_at) AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M:%SZ') AS first_created, strftime(max(created_at) AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M:%SZ') AS last_created FROM contacts"
"$BIN" query --duckdb "$DB" "SELECT run_id, status, windows, \"rows\" AS rows_received, calls, rejects, round(epoch(finished_at - started_at), 2) AS seconds FROM _leadlex_runs ORDER BY started_at"
echo "== the Parquet lake: $(find "$LAKE" -name '*.parquet' | wc -l) files, $(du -sh "$LAKE" | cut -f1); new contacts per year, read the way DuckDB users would:"
Q="SELECT year, count(*) AS contacts, count(DISTINCT id) AS distinct_ids FROM read_parquet('$LAKE/contacts/**/*.parquet') GROUP BY year ORDER BY year"
echo "   $Q"
"$BIN" query --duckdb "$DB" "$Q"
echo "== done: bin/leadlex-etl query --duckdb $DB \"SELECT * FROM contacts LIMIT 5\", or point Polars, pandas or Spark at $LAKE/contacts"
