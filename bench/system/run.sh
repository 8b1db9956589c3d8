#!/usr/bin/env bash
# Whole-pipeline benchmark (`make bench-system`): twitch-sim and all five services as release
# processes on the local stack, the chat rate stepped up until the pipeline cannot keep up, then
# chat-listener alone at 10,000 channels. Writes report.md and PNG plots into
# bench/system/results/<UTC timestamp>/ (and points bench/system/results/latest at it).
#
#   bench/system/run.sh                        # the full run (about 12-15 minutes)
#   STEPS=1600,4000 STEP_SECS=20 SCALE_CHANNELS=1000 bench/system/run.sh   # a short smoke run
#
# Knobs (environment): STEPS (msg/s, comma separated; default 1600,4000,8000,10000,12000,16000,20000),
# STEP_SECS (60), CHANNELS (200 live channels in the pipeline phase), SCALE_CHANNELS (10000),
# SKIP_SCALE=1, SKIP_STORAGE=1, SKIP_BUILD=1, QUIET_MAX_MIN (45: how long to wait for a quiet
# machine first; 0 = do not wait), KEEP_STACK=1 (leave a stack this script started running),
# OUT (results folder).
#
# Everything it creates is its own and is deleted at the end, also on failure or Ctrl-C: Kafka
# topics bench.<id>.*, consumer groups bench.<id>.*, registry subjects bench.<id>.*-value, the
# Cassandra keyspace bench_sys_<id>; every process it started is stopped.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/bench/system"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tci/target}
export TCI_STACK_DIR=${TCI_STACK_DIR:-$ROOT/.stack}
BIN=$CARGO_TARGET_DIR/release
VENV=${BENCH_VENV:-$HOME/.cache/tci/bench-venv}
STACK="$ROOT/dev/stack.sh"
KT="$ROOT/dev/kafka-tool.sh"
# shellcheck source=../../dev/stack/ports.env
. "$ROOT/dev/stack/ports.env"
REGISTRY=${TCI__REGISTRY__URL:-http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7}
BROKERS=${TCI__KAFKA__BROKERS:-127.0.0.1:$KAFKA_PORT}

say() { printf '[bench-system] %s\n' "$*" >&2; }

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
ID=$(date -u +%H%M%S)$$
ID=${ID:0:14}
OUT=${OUT:-$HERE/results/$STAMP}
WORK=${WORK:-$HOME/.cache/tci/bench-system/$ID}
mkdir -p "$OUT" "$WORK/logs"
KEYSPACE=bench_sys_$ID
PREFIX=bench.$ID

# ---------------------------------------------------------------- build and tools
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  say "building release binaries (cargo build --release --workspace --bins)"
  (cd "$ROOT" && cargo build --release --workspace --bins && cargo build --release -p chat-ingestor --example storage)
fi
for b in twitch-sim streamer-listener streamer-ingestion chat-listener chat-ingestor chat-api tci; do
  [ -x "$BIN/$b" ] || { say "ERROR: $BIN/$b is missing (build failed?)"; exit 1; }
done

if ! "$VENV/bin/python" -c 'import matplotlib, numpy' 2>/dev/null || [ ! -x "$VENV/bin/cqlsh" ]; then
  say "preparing the Python environment in $VENV (matplotlib, numpy, cqlsh from PyPI)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check matplotlib numpy cqlsh
fi

# ---------------------------------------------------------------- stack
STACK_STARTED=0
if ! "$STACK" probe >/dev/null 2>&1; then
  say "starting the local stack (dev/stack.sh start)"
  STACK_STARTED=1
  "$STACK" start
fi

# ---------------------------------------------------------------- cleanup (trap)
CLEANED=0
cleanup() {
  local rc=$?
  [ "$CLEANED" = 1 ] && return
  CLEANED=1
  trap - EXIT INT TERM
  say "cleaning up (processes, topics, consumer groups, subjects, keyspace)"
  # Processes the driver started (it stops them itself; this catches a driver that died).
  if [ -f "$WORK/pids" ]; then
    local p alive=()
    while read -r p; do
      [ -n "$p" ] && kill -0 "$p" 2>/dev/null && grep -q "$BIN" "/proc/$p/cmdline" 2>/dev/null && alive+=("$p")
    done <"$WORK/pids"
    if [ ${#alive[@]} -gt 0 ]; then
      kill -TERM "${alive[@]}" 2>/dev/null || true
      for _ in $(seq 1 25); do
        local left=0
        for p in "${alive[@]}"; do kill -0 "$p" 2>/dev/null && left=1; done
        [ $left = 0 ] && break
        sleep 1
      done
      kill -KILL "${alive[@]}" 2>/dev/null || true
    fi
  fi
  if "$STACK" probe >/dev/null 2>&1; then
    local groups=() g
    for g in a.chat-listener a.chat-ingestor a.streamer-ingestion b.chat-listener b.chat-listener-2 b.chat-listener-3; do
      groups+=(--group "$PREFIX.$g")
    done
    "$KT" consumer-groups --bootstrap-server "$BROKERS" --delete "${groups[@]}" >"$WORK/cleanup-groups.log" 2>&1 || true
    "$KT" topics --bootstrap-server "$BROKERS" --delete --if-exists --topic "bench\\.$ID\\..*" >"$WORK/cleanup-topics.log" 2>&1 \
      || say "WARNING: deleting topics bench.$ID.* failed (see $WORK/cleanup-topics.log)"
    local s
    for s in $(curl -fsS "$REGISTRY/subjects" 2>/dev/null | tr -d '[]"' | tr ',' '\n' | grep "^bench\\.$ID\\." || true); do
      curl -fsS -X DELETE "$REGISTRY/subjects/$s" >/dev/null 2>&1 || true
      curl -fsS -X DELETE "$REGISTRY/subjects/$s?permanent=true" >/dev/null 2>&1 || true
    done
    timeout 120 "$VENV/bin/cqlsh" 127.0.0.1 --request-timeout=110 -e "DROP KEYSPACE IF EXISTS $KEYSPACE" >"$WORK/cleanup-keyspace.log" 2>&1 \
      || say "WARNING: dropping keyspace $KEYSPACE failed (see $WORK/cleanup-keyspace.log)"
    local left
    left=$("$KT" topics --bootstrap-server "$BROKERS" --list 2>/dev/null | grep -c "^bench\\.$ID\\." || true)
    say "left behind: ${left:-?} topics of bench.$ID"
  fi
  if [ "$STACK_STARTED" = 1 ] && [ "${KEEP_STACK:-0}" != 1 ]; then
    say "stopping the stack this run started"
    "$STACK" stop || true
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- topics, schemas, tables
setup_phase() { # phase letter
  local p=$1
  TCI__TOPICS__LIVE_STREAMS=$PREFIX.$p.live-streams TCI__TOPICS__CHAT=$PREFIX.$p.chat \
  TCI__TOPICS__MODERATION=$PREFIX.$p.moderation TCI__TOPICS__DEAD_LETTER=$PREFIX.$p.dlq \
  TCI__TOPICS__OPTOUTS=$PREFIX.$p.optouts TCI__CASSANDRA__KEYSPACE=$KEYSPACE TCI__LOG__FORMAT=text TCI__LOG__FILTER=warn \
    "$BIN/tci" setup >"$WORK/setup-$p.log" 2>&1 || { cat "$WORK/setup-$p.log" >&2; exit 1; }
}
say "setup: topics $PREFIX.{a,b}.*, keyspace $KEYSPACE (logs and raw samples in $WORK)"
setup_phase a
setup_phase b

# ---------------------------------------------------------------- wait for a quiet machine
QUIET_MAX_MIN=${QUIET_MAX_MIN:-45}
quiet_note="not checked"
if [ "$QUIET_MAX_MIN" != 0 ]; then
  deadline=$((SECONDS + QUIET_MAX_MIN * 60))
  while :; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    busy=$(pgrep -x rustc >/dev/null || pgrep -x cargo >/dev/null || pgrep -x go >/dev/null && echo yes || echo no)
    if awk -v l="$load" 'BEGIN {exit !(l < 1.2)}' && [ "$busy" = no ]; then
      quiet_note="quiet at start (1-min load $load, no rustc/cargo/go)"
      break
    fi
    if [ $SECONDS -ge $deadline ]; then
      quiet_note="NOT quiet after waiting ${QUIET_MAX_MIN} min (1-min load $load, compiler running: $busy); ran anyway"
      break
    fi
    say "waiting for a quiet machine (1-min load $load, compiler running: $busy); checking again in 30 s"
    sleep 30
  done
fi
say "$quiet_note"

# ---------------------------------------------------------------- the run
export BENCH_ID=$ID BENCH_PREFIX=$PREFIX BENCH_KEYSPACE=$KEYSPACE BENCH_BIN=$BIN BENCH_WORK=$WORK \
  BENCH_OUT=$OUT BENCH_QUIET="$quiet_note" BENCH_ROOT=$ROOT BENCH_REGISTRY=$REGISTRY BENCH_BROKERS=$BROKERS
"$VENV/bin/python" "$HERE/driver.py"
"$VENV/bin/python" "$HERE/report.py" "$OUT"
if [ "$(dirname "$OUT")" = "$HERE/results" ]; then ln -sfn "$(basename "$OUT")" "$HERE/results/latest"; fi
say "report: $OUT/report.md (also bench/system/results/latest/)"
