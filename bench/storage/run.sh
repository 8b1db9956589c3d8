#!/usr/bin/env bash
# Bytes on disk per archived message, per chat table, after `nodetool flush` + `compact`.
#   bench/storage/run.sh                   # N=200000 synthetic messages, with and without raw lines
#   bench/storage/run.sh --keyspace tci    # the demo's keyspace (after `make up` ran a while)
# Needs the local stack (dev/stack.sh start). Scratch keyspaces are dropped afterwards.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tci/target}
export TCI_NODETOOL="$ROOT/dev/nodetool.sh" TCI__LOG__FILTER=${TCI__LOG__FILTER:-warn}
cargo build --release -q -p chat-ingestor --example storage --manifest-path "$ROOT/Cargo.toml"
BIN=$CARGO_TARGET_DIR/release/examples/storage
if [ $# -gt 0 ]; then
  exec "$BIN" "$@"
fi
N=${N:-200000}
echo "## Without raw lines (records of Avro schema version 1)"; echo
TCI_BENCH_NO_RAW_LINE=1 "$BIN" --generate "$N"
echo "## With raw lines (schema version 2)"; echo
"$BIN" --generate "$N"
