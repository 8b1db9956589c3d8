#!/usr/bin/env bash
# Ingest benchmark: N realistic chat records through Kafka → chat-ingestor → Cassandra, side by
# side with an independent raw CQL writer of the same rows (no Kafka; its own batching), plus the end-to-end lag at a steady
# live rate. Needs the local stack (dev/stack.sh start). Uses its own topics and keyspaces and
# removes them afterwards.
#
#   bench/ingest/run.sh [COUNT] [LIVE_RATE] [LIVE_SECS]
#
# While it runs, per-process CPU is sampled every 5 s into $OUT/cpu.log (pidstat if present,
# else top) so the report can say where the time goes (ingestor vs Cassandra vs Kafka).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tci/target}
COUNT=${1:-1200000}
LIVE_RATE=${2:-5000}
LIVE_SECS=${3:-20}
OUT=${OUT:-$(mktemp -d /tmp/tci-bench-ingest.XXXX)}
mkdir -p "$OUT"

# The benchmark is an example of chat-ingestor, not part of the production binary.
cargo build --release -p chat-ingestor --example ingest_bench --manifest-path "$ROOT/Cargo.toml"
BIN=$CARGO_TARGET_DIR/release/examples/ingest_bench

sample_cpu() {
  while sleep 5; do
    echo "--- $(date +%T)"
    top -b -n 1 -w 200 | sed -n '7,14p'
  done
}
sample_cpu > "$OUT/cpu.log" 2>&1 &
SAMPLER=$!
trap 'kill $SAMPLER 2>/dev/null || true' EXIT

echo "results and CPU samples in $OUT" >&2
TCI__LOG__FORMAT=text TCI__LOG__FILTER=warn "$BIN" --count "$COUNT" --live-rate "$LIVE_RATE" --live-secs "$LIVE_SECS" | tee "$OUT/result.md"
