#!/usr/bin/env bash
# `make test`: every check and every test, the same on a laptop and in CI.
#   1. cargo fmt --check and clippy -D warnings
#   2. unit tests (no servers)
#   3. integration tests against the real Kafka, Cassandra and schema registry. If they are not
#      already running, they are started here and stopped again at the end (the stack is left as
#      it was found).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tci/target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
STACK="$ROOT/dev/stack.sh"

step() { printf '\n==> %s\n' "$*"; }
t0=$SECONDS
RESULTS=$(mktemp)
trap 'rm -f "$RESULTS"' EXIT

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "build every binary (the integration tests run them)"
cargo build --workspace --bins

step "unit tests"
cargo test --workspace --exclude integration-tests 2>&1 | tee -a "$RESULTS"

step "Helm chart: lint, render, schema; install, upgrade, rollback, uninstall on a local control plane"
dev/test-helm.sh 2>&1 | tee -a "$RESULTS"

started_here=0
if "$STACK" probe >/dev/null 2>&1; then
  step "stack already running: using it and leaving it running"
else
  step "starting the stack for the integration tests (stopped again afterwards)"
  started_here=1
  trap '"$STACK" stop; rm -f "$RESULTS"' EXIT
  "$STACK" start
fi

step "integration tests (real Kafka, Cassandra, schema registry)"
cargo test -p integration-tests -- --test-threads="${TCI_IT_THREADS:-3}" 2>&1 | tee -a "$RESULTS"

if [ "$started_here" = 1 ]; then
  "$STACK" stop
  trap 'rm -f "$RESULTS"' EXIT
fi
step "all checks passed in $((SECONDS - t0))s"
# One closing line for CI and humans: the totals of every cargo test run above.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$RESULTS"
