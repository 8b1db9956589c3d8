#!/usr/bin/env bash
# API vs direct CQL, side by side in one run: limit=100 pages at 8 concurrent clients.
#
#   bench/api/run.sh            # DURATION=10 (s per side and round) ROUNDS=3 CONCURRENCY=8
#
# 1. builds the release binary and the seed/cql_bench examples, seeds $KEYSPACE (24,000
#    messages in 12 buckets, ~7 per millisecond);
# 2. api:  wrk, 8 connections, GET /v1.0/<id>/chat?start=<bucket start>&end=<bucket end>&limit=100
#          (one `execute_single_page` of 100 rows per call + JSON rendering + HTTP);
# 3. cql:  examples/cql_bench, 8 tasks, the same `execute_single_page` (same statement, values,
#          page size, rows deserialized);
#    (2 and 3 alternate, ROUNDS times, and each round gives the API/CQL ratios);
# 4. pinned: one more api and cql run with Cassandra alone on CPU 0 and the client side on the
#    other CPUs, the production layout (information only; PIN=0 skips it);
# 5. walk: wrk following cursors through the 24,000 messages (information only);
# and prints p50/p99 of each round and the median round's API/CQL ratios.
# Targets: API p99 <= 25 ms, p50 ratio <= 1.5, p99 ratio <= 2.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONCURRENCY=${CONCURRENCY:-8}
WRK_THREADS=$((CONCURRENCY < 2 ? CONCURRENCY : 2)) # wrk needs a connection per thread
if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package) ..." >&2
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk; } >&2 \
    || { echo "wrk is required and could not be installed (apt-get install wrk)" >&2; exit 1; }
fi

# CPU affinity of every thread of a process.
ALL_CPUS="0-$(($(nproc) - 1))"
pin() { taskset -a -p -c "$2" "$1" >/dev/null; }
CASS_PID=$(pgrep -f CassandraDaemon | head -n 1 || true)
unpin() { if [ -n "$CASS_PID" ]; then pin "$CASS_PID" "$ALL_CPUS" || true; fi; }
# Threads of Cassandra held to fewer CPUs than all (a shared-core round must not run so).
pinned_threads() {
  [ -n "$CASS_PID" ] || { echo 0; return; }
  grep -h '^Cpus_allowed_list' /proc/"$CASS_PID"/task/*/status 2>/dev/null | grep -vc "[[:space:]]$ALL_CPUS\$" || true
}
unpin # an interrupted earlier run may have left it pinned
[ "$(pinned_threads)" = 0 ] || { echo "cassandra (pid $CASS_PID) has threads held to some CPUs; unpin it first" >&2; exit 1; }

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

# One api run and one cql run, each after the command prefix given (none, or a taskset), as
# one line of $WORK/rounds.txt: label, api p50 p99 req/s, cql p50 p99 req/s.
pair() {
  local label=$1; shift
  echo "== $label api: wrk -t$WRK_THREADS -c$CONCURRENCY -d${DURATION}s --latency"
  "$@" wrk -t"$WRK_THREADS" -c"$CONCURRENCY" -d"${DURATION}s" --latency "$URL" | tee "$WORK/api.$label.txt"
  echo "== $label cql: cql_bench --concurrency $CONCURRENCY --duration $DURATION"
  "$@" "$BIN/examples/cql_bench" --keyspace "$KEYSPACE" --broadcaster "$BROADCASTER" --bucket "$START_MS" \
    --concurrency "$CONCURRENCY" --duration "$DURATION" | tee "$WORK/cql.$label.json"
  local w="$WORK/api.$label.txt" j="$WORK/cql.$label.json" cql
  cql=$(sed -E 's/.*"rps": ([0-9.]+).*"p50_ms": ([0-9.]+).*"p99_ms": ([0-9.]+).*/\2 \3 \1/' "$j")
  echo "$label $(wrk_ms 50% <"$w") $(wrk_ms 99% <"$w") $(awk '/Requests\/sec/ {print $2}' "$w") $cql" >>"$WORK/rounds.txt"
}

echo "== warm-up (3 s)"
wrk -t"$WRK_THREADS" -c"$CONCURRENCY" -d3s "$URL" >/dev/null
# Rounds alternate the two sides (api, cql, api, cql, ...) so that both see the same drift of
# a shared, noisy machine (Cassandra's compactions, the JIT, neighbours); each round gives a
# ratio, and the median round is the result.
: >"$WORK/rounds.txt"
for r in $(seq 1 "$ROUNDS"); do pair "$r"; done
# Dedicated cores (information, not a target): Cassandra's threads on CPU 0, the client side
# (chat-api and wrk, or cql_bench) on the others, as in production where the database has
# machines of its own. The shared-core rounds above also charge the API's CPU to Cassandra's
# latency; this one shows the latency the API adds on top of a database that does not share
# its cores. PIN=0 skips it; it needs a local Cassandra (dev/stack.sh), taskset and 2+ CPUs.
if [ "${PIN:-1}" = 1 ] && [ -n "$CASS_PID" ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  CLIENT_CPUS="1-$(($(nproc) - 1))"
  trap 'unpin; stop_api' EXIT
  pin "$CASS_PID" 0
  pin "$API_PID" "$CLIENT_CPUS"
  echo "== dedicated cores: cassandra on CPU 0, chat-api + wrk / cql_bench on CPU $CLIENT_CPUS (information)"
  taskset -c "$CLIENT_CPUS" wrk -t"$WRK_THREADS" -c"$CONCURRENCY" -d3s "$URL" >/dev/null
  pair pinned taskset -c "$CLIENT_CPUS"
  unpin
  pin "$API_PID" "$ALL_CPUS"
  trap stop_api EXIT
fi

echo "== walk: wrk following cursors over all 12 buckets (information)"
WALK_START=$(iso "$START_MS") WALK_END=$(iso $((START_MS + 12 * 300000 - 1))) \
  BASE="/v1.0/$BROADCASTER/chat" \
  wrk -t"$WRK_THREADS" -c"$CONCURRENCY" -d"${DURATION}s" --latency -s "$(dirname "${BASH_SOURCE[0]}")/walk.lua" "http://$API_ADDR" | tee "$WORK/walk.txt"
walk50=$(wrk_ms 50% <"$WORK/walk.txt"); walk99=$(wrk_ms 99% <"$WORK/walk.txt")

echo
printf '%-7s %-26s %10s %10s %10s %12s %12s\n' "round" "limit=100, $CONCURRENCY clients" "p50 ms" "p99 ms" "req/s" "p50 ratio" "p99 ratio"
awk '{
  printf "%-7s %-26s %10s %10s %10s\n", $1, "api (first page)", $2, $3, $4;
  printf "%-7s %-26s %10s %10s %10s %11.2fx %11.2fx\n", "", "cql execute_single_page", $5, $6, $7, $2/$5, $3/$6 }' "$WORK/rounds.txt"
printf '%-7s %-26s %10s %10s\n' "" "api (walking cursors)" "$walk50" "$walk99"
# Median shared-core round by each ratio (the pinned pair is information); the API's own p99
# target is judged on its worst round.
median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
shared() { awk '$1 ~ /^[0-9]+$/' "$WORK/rounds.txt"; }
r50=$(shared | awk '{printf "%.4f\n", $2/$5}' | median)
r99=$(shared | awk '{printf "%.4f\n", $3/$6}' | median)
worst99=$(shared | awk '$3>m {m=$3} END {print m}')
awk -v a="$r50" -v b="$r99" -v n="$ROUNDS" -v w="$worst99" 'BEGIN {
  printf "ratio api/cql, median of %d rounds: p50 %.2fx (target <= 1.5x: %s), p99 %.2fx (target <= 2x: %s)\n", n, a, (a <= 1.5 ? "PASS" : "FAIL"), b, (b <= 2 ? "PASS" : "FAIL");
  printf "api p99, worst round %s ms: %s (target <= 25 ms)\n", w, (w <= 25 ? "PASS" : "FAIL") }'
