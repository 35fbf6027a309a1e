#!/usr/bin/env bash
# make demo: start the fake LeadLex API on a free loopback port, sync a few
# hundred thousand contacts into demo/warehouse.duckdb and the Parquet lake
# demo/lake (one extract feeds both), edit and delete contacts at the fake
# API, run the sync again to show an incremental sync whose spare calls
# refresh old ranges and find the edits and deletions, print a summary and
# sample queries, stop the fake API.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/leadlex-etl}
CONTACTS=${DEMO_CONTACTS:-300000}
DB=demo/warehouse.duckdb
LAKE=demo/lake

mkdir -p demo
rm -rf "$DB" "$DB.wal" "$LAKE" demo/state
# The demo's runs share their rate-limit budget in demo/state, not in your
# own state folder.
export XDG_STATE_HOME="$PWD/demo/state"
# 30 calls an hour instead of the real 10, so that the second sync has
# spare calls to refresh the whole workspace in one go.
"$BIN" fake-api --addr 127.0.0.1:0 --contacts "$CONTACTS" --order random --rate-limit 30 --control >demo/fake-api.log 2>&1 &
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
echo "== meanwhile in LeadLex: 500 contacts edited, 120 deleted, 200 new"
curl -fsS -X POST -H "Authorization: Bearer $LEADLEX_API_KEY" "$URL/_fake/mutate?edit=500&delete=120&append=200"
echo "== second sync: what is new since the last one (one call), then the hour's spare calls re-export old ranges"
echo "   (--refresh-min-age 0s: the demo's first sync was seconds ago; by default a range is re-verified at most hourly)"
"$BIN" sync --quiet --base-url "$URL" --duckdb "$DB" --parquet "$LAKE" --refresh-min-age 0s
echo "== contacts the refresh found deleted at the source (soft delete: _deleted_at is set, the row stays)"
"$BIN" query --duckdb "$DB" "SELECT count(*) FILTER (WHERE _deleted_at IS NULL) AS live, count(*) FILTER (WHERE _deleted_at IS NOT NULL) AS marked_deleted FROM contacts"

echo "== contacts per tag"
"$BIN" query --duckdb "$DB" "SELECT tag, count(*) AS contacts FROM (SELECT unnest(tags) AS tag FROM contacts) GROUP BY tag ORDER BY contacts DESC, tag"
echo "== the table and the tool's own tables"
"$BIN" query --duckdb "$DB" "SELECT count(*) AS contacts, count(DISTINCT id) AS distinct_ids, strftime(min(created_at) AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M:%SZ') AS first_created, strftime(max(created_at) AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M:%SZ') AS last_created FROM contacts"
"$BIN" query --duckdb "$DB" "SELECT run_id, status, windows, \"rows\" AS rows_received, calls, rejects, round(epoch(finished_at - started_at), 2) AS seconds FROM _leadlex_runs ORDER BY started_at"
echo "== the Parquet lake: $(find "$LAKE" -name '*.parquet' | wc -l) files, $(du -sh "$LAKE" | cut -f1); new contacts per year, read the way DuckDB users would:"
Q="SELECT year, count(*) FILTER (WHERE _deleted_at IS NULL) AS live_contacts, count(DISTINCT id) AS distinct_ids FROM read_parquet('$LAKE/contacts/**/*.parquet') GROUP BY year ORDER BY year"
echo "   $Q"
"$BIN" query --duckdb "$DB" "$Q"
echo "== done: bin/leadlex-etl query --duckdb $DB \"SELECT * FROM contacts LIMIT 5\", or point Polars, pandas or Spark at $LAKE/contacts"
