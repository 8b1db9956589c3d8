# Shared by bench/api/run.sh and bench/api/schemathesis.sh: build, seed, start and stop a
# release chat-api against the local stack (dev/stack.sh must be up).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tci/target}
# BENCH_BIN: another build's release folder (chat-api, examples/seed, examples/cql_bench) to
# measure, e.g. the commit before a change; SKIP_BUILD=1 then.
BIN=${BENCH_BIN:-$CARGO_TARGET_DIR/release}
KEYSPACE=${KEYSPACE:-tci_bench_api}
BROADCASTER=${BROADCASTER:-24538518}
START_MS=${START_MS:-1706400000000}        # a bucket boundary: 2024-01-28T00:00:00Z
API_ADDR=${API_ADDR:-127.0.0.1:5055}
ADMIN_ADDR=${ADMIN_ADDR:-127.0.0.1:9193}
WORK=${WORK:-$ROOT/bench/api/out}
mkdir -p "$WORK"

build() {
  if [ "${SKIP_BUILD:-0}" = 1 ]; then return; fi
  (cd "$ROOT" && cargo build --release -q -p chat-api --bin chat-api --example seed --example cql_bench)
}

seed() {
  if [ "${SKIP_SEED:-0}" = 1 ]; then return; fi
  "$BIN/examples/seed" --keyspace "$KEYSPACE" --broadcaster "$BROADCASTER" --start-ms "$START_MS" "$@"
}

API_PID=
start_api() {
  TCI__CASSANDRA__KEYSPACE=$KEYSPACE TCI__HTTP__ADDR=$API_ADDR TCI__ADMIN__ADDR=$ADMIN_ADDR \
    TCI__CURSOR__SECRET=${TCI__CURSOR__SECRET:-bench-cursor-secret} TCI__LOG__FORMAT=json \
    "$BIN/chat-api" >"$WORK/chat-api.log" 2>&1 &
  API_PID=$!
  trap stop_api EXIT
  for _ in $(seq 1 100); do
    if curl -fsS "http://$ADMIN_ADDR/readyz" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "chat-api did not become ready; see $WORK/chat-api.log" >&2
  tail -n 20 "$WORK/chat-api.log" >&2
  exit 1
}

stop_api() {
  if [ -n "$API_PID" ] && kill -0 "$API_PID" 2>/dev/null; then
    kill -TERM "$API_PID"
    wait "$API_PID" 2>/dev/null || true
  fi
  API_PID=
}

# ms → ISO 8601 UTC.
iso() { date -u -d "@$(($1 / 1000)).$(printf '%03d' $(($1 % 1000)))" +%Y-%m-%dT%H:%M:%S.%3NZ; }
