#!/usr/bin/env bash
# API vs direct CQL, side by side in one run: limit=100 pages at 8 concurrent clients.
#
#   bench/api/run.sh            # DURATION=20 CONCURRENCY=8 by default
#
# 1. builds the release binary and the seed/cql_bench examples, seeds $KEYSPACE (24,000
#    messages in 12 buckets, ~7 per millisecond);
# 2. api:  wrk, 8 connections, GET /v1.0/<id>/chat?start=<bucket start>&end=<bucket end>&limit=100
#          (one `execute_single_page` of 100 rows per call + JSON rendering + HTTP);
# 3. cql:  examples/cql_bench, 8 tasks, the same `execute_single_page` (same statement, values,
#          page size, rows deserialized);
# 4. walk: wrk following cursors through the 24,000 messages (information only);
# and prints p50/p99 of each and the API/CQL ratio. Targets: API p99 <= 25 ms, p50 ratio <= 1.5,
# p99 ratio <= 2.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
DURATION=${DURATION:-20}
CONCURRENCY=${CONCURRENCY:-8}
if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package) ..." >&2
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk; } >&2 \
    || { echo "wrk is required and could not be installed (apt-get install wrk)" >&2; exit 1; }
fi

build
seed
start_api
END_MS=$((START_MS + 300000 - 1))
URL="http://$API_ADDR/v1.0/$BROADCASTER/chat?start=$(iso "$START_MS")&end=$(iso "$END_MS")&limit=100"
curl -fsS "$URL" -o "$WORK/first-page.json"
head -c 300 "$WORK/first-page.json"; echo " ..."
n=$(grep -c '"message_id"' "$WORK/first-page.json") || true
[ "$n" = 100 ] || { echo "expected 100 messages per page, got $n" >&2; exit 1; }

wrk_ms() { # wrk latency line value → ms
  awk -v p="$1" '$1==p {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}'
}

echo "== warm-up (3 s)"
wrk -t2 -c"$CONCURRENCY" -d3s "$URL" >/dev/null
echo "== api: wrk -t2 -c$CONCURRENCY -d${DURATION}s --latency"
wrk -t2 -c"$CONCURRENCY" -d"${DURATION}s" --latency "$URL" | tee "$WORK/api.txt"
echo "== cql: cql_bench --concurrency $CONCURRENCY --duration $DURATION"
"$BIN/examples/cql_bench" --keyspace "$KEYSPACE" --broadcaster "$BROADCASTER" --bucket "$START_MS" \
  --concurrency "$CONCURRENCY" --duration "$DURATION" | tee "$WORK/cql.json"
echo "== walk: wrk following cursors over all 12 buckets (information)"
WALK_START=$(iso "$START_MS") WALK_END=$(iso $((START_MS + 12 * 300000 - 1))) \
  BASE="/v1.0/$BROADCASTER/chat" \
  wrk -t2 -c"$CONCURRENCY" -d"${DURATION}s" --latency -s "$(dirname "${BASH_SOURCE[0]}")/walk.lua" "http://$API_ADDR" | tee "$WORK/walk.txt"

api50=$(wrk_ms 50% <"$WORK/api.txt"); api99=$(wrk_ms 99% <"$WORK/api.txt")
cql50=$(sed -E 's/.*"p50_ms": ([0-9.]+).*/\1/' "$WORK/cql.json"); cql99=$(sed -E 's/.*"p99_ms": ([0-9.]+).*/\1/' "$WORK/cql.json")
walk50=$(wrk_ms 50% <"$WORK/walk.txt"); walk99=$(wrk_ms 99% <"$WORK/walk.txt")
api_rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/api.txt"); cql_rps=$(sed -E 's/.*"rps": ([0-9.]+).*/\1/' "$WORK/cql.json")
echo
printf '%-28s %10s %10s %10s\n' "limit=100, $CONCURRENCY clients" "p50 ms" "p99 ms" "req/s"
printf '%-28s %10s %10s %10s\n' "api (first page)" "$api50" "$api99" "$api_rps"
printf '%-28s %10s %10s %10s\n' "cql execute_single_page" "$cql50" "$cql99" "$cql_rps"
printf '%-28s %10s %10s\n' "api (walking cursors)" "$walk50" "$walk99"
awk -v a50="$api50" -v c50="$cql50" -v a99="$api99" -v c99="$cql99" 'BEGIN {
  printf "ratio api/cql: p50 %.2fx (target <= 1.5x), p99 %.2fx (target <= 2x)\n", a50/c50, a99/c99;
  printf "api p99 %s ms: %s (target <= 25 ms)\n", a99, (a99 <= 25 ? "PASS" : "FAIL") }'
