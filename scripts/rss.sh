#!/usr/bin/env bash
# make rss: the peak resident memory (GNU time's "Maximum resident set
# size") of one full sync against the fake API, for each size in
# RSS_SIZES, into a new DuckDB file and into a new Parquet lake, rows in
# ascending order, with no rate limit, and of a replay of that sync's raw
# archive into a new DuckDB file. Prints a Markdown table (median of
# RSS_REPS runs) for the README's Speed section.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/leadlex-etl}
SIZES=${RSS_SIZES:-200000 1000000 2000000}
REPS=${RSS_REPS:-3}
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "rss: needs GNU time at /usr/bin/time (Debian package time)"; exit 1; }
WORK=$(mktemp -d)
FAKE=
trap '[ -n "$FAKE" ] && kill $FAKE 2>/dev/null; rm -rf "$WORK"' EXIT
export XDG_STATE_HOME="$WORK/state" LEADLEX_API_KEY=wbk_demo_key

start_fake() {
  "$BIN" fake-api --addr 127.0.0.1:0 --rate-limit 0 --contacts "$1" >"$WORK/fake.log" 2>&1 &
  FAKE=$!
  URL=
  for _ in $(seq 600); do
    URL=$(grep -o 'http://[0-9.:]*' "$WORK/fake.log" | head -1 || true)
    [ -n "$URL" ] && return
    sleep 0.05
  done
  echo "fake API did not start"; cat "$WORK/fake.log"; exit 1
}

# peak_mb DEST-FLAG [sync|replay]: the median peak RSS, in MB, of REPS
# syncs (or replays of $WORK/raw) into a new destination.
peak_mb() {
  local runs=() cmd=(sync -q --base-url "$URL")
  [ "${2:-sync}" = replay ] && cmd=(replay -q --raw-dir "$WORK/raw")
  for _ in $(seq "$REPS"); do
    rm -rf "$WORK/dest" "$WORK/dest.wal" "$WORK/dest.leadlex-lock" "$WORK/state"
    "$TIME" -v "$BIN" "${cmd[@]}" "$1" "$WORK/dest" 2>"$WORK/time.txt" >/dev/null ||
      { cat "$WORK/time.txt"; exit 1; }
    runs+=("$(awk -F: '/Maximum resident set size/ {print int($2/1024)}' "$WORK/time.txt")")
  done
  printf '%s\n' "${runs[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

echo "| contacts | \`sync --duckdb\` | \`sync --parquet\` (month partitions) | \`replay --duckdb\` |"
echo "|---|---|---|---|"
for n in $SIZES; do
  start_fake "$n"
  d=$(peak_mb --duckdb)
  p=$(peak_mb --parquet)
  rm -rf "$WORK/raw" "$WORK/src"*
  "$BIN" sync -q --base-url "$URL" --duckdb "$WORK/src" --raw-dir "$WORK/raw" >/dev/null
  r=$(peak_mb --duckdb replay)
  kill $FAKE; wait $FAKE 2>/dev/null || true; FAKE=
  printf '| %s | %s MB | %s MB | %s MB |\n' "$(echo "$n" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta')" "$d" "$p" "$r"
done
