#!/usr/bin/env bash
# Runs the services of the Twitch Chat Ingestor as local processes (what `make up` starts).
#
#   dev/run.sh start     start every service (built binaries from $CARGO_TARGET_DIR/$PROFILE)
#   dev/run.sh stop      stop them (SIGTERM: they flush and commit; SIGKILL after 30 s)
#   dev/run.sh status    which run, and their /readyz
#
# Against the simulator by default. With TWITCH_CLIENT_ID and TWITCH_CLIENT_SECRET in the
# environment, twitch-sim is not started and the services talk to Twitch itself.
# Logs: $TCI_STACK_DIR/logs/<service>.log (JSON lines). Pids: $TCI_STACK_DIR/run/<service>.pid.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK_DIR=${TCI_STACK_DIR:-$ROOT/.stack}
LOGS="$STACK_DIR/logs"
RUN="$STACK_DIR/run"
BIN=${TCI_BIN_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/tci/target}/${PROFILE:-release}}
mkdir -p "$LOGS" "$RUN"

say() { printf '[run] %s\n' "$*" >&2; }

SIM_IRC=127.0.0.1:8765
SIM_HELIX=127.0.0.1:8766

if [ -n "${TWITCH_CLIENT_ID:-}" ] && [ -n "${TWITCH_CLIENT_SECRET:-}" ]; then
  USE_SIM=0
  export TCI__TWITCH__CLIENT_ID="$TWITCH_CLIENT_ID"
  export TCI__TWITCH__CLIENT_SECRET="$TWITCH_CLIENT_SECRET"
else
  USE_SIM=1
  export TCI__TWITCH__AUTH_URL="http://$SIM_HELIX"
  export TCI__TWITCH__HELIX_URL="http://$SIM_HELIX"
  export TCI__TWITCH__CLIENT_ID=sim-client-id
  export TCI__TWITCH__CLIENT_SECRET=sim-client-secret
  export TCI__POLL__INTERVAL=${TCI__POLL__INTERVAL:-15s}
  export TCI__IRC__URL="ws://$SIM_IRC"
fi
export TCI__LOG__FORMAT=json
# chat-api signs cursors with this key; one per local stack, kept across restarts.
if [ -z "${TCI__CURSOR__SECRET:-}" ]; then
  [ -s "$RUN/cursor.secret" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$RUN/cursor.secret"
  TCI__CURSOR__SECRET=$(cat "$RUN/cursor.secret")
  export TCI__CURSOR__SECRET
fi

# name  admin-port  extra args
SERVICES=(
  "twitch-sim 9100"
  "streamer-ingestion 9101"
  "chat-ingestor 9102"
  "chat-api 9103"
  "chat-listener 9104"
  "streamer-listener 9105"
)

pid_of() { cat "$RUN/svc-$1.pid" 2>/dev/null || true; }
alive() { local p; p=$(pid_of "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

start_one() {
  local name=$1 port=$2
  if [ "$name" = twitch-sim ] && [ "$USE_SIM" = 0 ]; then return; fi
  if alive "$name"; then say "$name already running (pid $(pid_of "$name"))"; return; fi
  [ -x "$BIN/$name" ] || { say "ERROR: $BIN/$name is not built (run: make build)"; exit 1; }
  local args=()
  case $name in
    twitch-sim) args=(--irc-addr "$SIM_IRC" --helix-addr "$SIM_HELIX" --channels "${TCI_SIM_CHANNELS:-50}" --rate "${TCI_SIM_RATE:-500}") ;;
    chat-listener|chat-ingestor) args=(run) ;;
  esac
  TCI__ADMIN__ADDR="127.0.0.1:$port" setsid "$BIN/$name" "${args[@]}" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/svc-$name.pid"
  say "started $name (pid $!, admin http://127.0.0.1:$port, log $LOGS/$name.log)"
}

cmd_start() {
  for s in "${SERVICES[@]}"; do
    # shellcheck disable=SC2086
    start_one $s
  done
  # Wait until every service answers /readyz (the simulator: /sim/stats), at most 60 s; a
  # service that exits meanwhile is an error, one still not ready is reported with its reason.
  local deadline=$((SECONDS + 60)) pending
  while :; do
    pending=()
    for s in "${SERVICES[@]}"; do
      set -- $s
      if [ "$1" = twitch-sim ] && [ "$USE_SIM" = 0 ]; then continue; fi
      if ! alive "$1"; then
        say "ERROR: $1 exited at start; last lines of $LOGS/$1.log:"
        tail -n 20 "$LOGS/$1.log" >&2
        exit 1
      fi
      local url="http://127.0.0.1:$2/readyz"
      [ "$1" = twitch-sim ] && url="http://$SIM_HELIX/sim/stats"
      curl -fs -o /dev/null --max-time 2 "$url" 2>/dev/null || pending+=("$1")
    done
    [ ${#pending[@]} -eq 0 ] && { say "every service is ready"; return; }
    if [ $SECONDS -ge $deadline ]; then
      for p in "${pending[@]}"; do
        for s in "${SERVICES[@]}"; do
          set -- $s
          [ "$1" = "$p" ] && say "not ready yet: $p: $(curl -s --max-time 2 "http://127.0.0.1:$2/readyz" 2>/dev/null | tr '\n' ' ')"
        done
      done
      return
    fi
    sleep 0.5
  done
}

cmd_stop() {
  local pids=() s p
  for s in "${SERVICES[@]}"; do
    set -- $s
    p=$(pid_of "$1")
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
      kill -TERM "$p" 2>/dev/null || true
      pids+=("$p")
      say "stopping $1 (pid $p)"
    fi
  done
  for _ in $(seq 1 30); do
    local left=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && left=1; done
    [ $left = 0 ] && break
    sleep 1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -f "$RUN"/svc-*.pid
}

cmd_status() {
  for s in "${SERVICES[@]}"; do
    set -- $s
    if alive "$1"; then
      local ready url="http://127.0.0.1:$2/readyz"
      [ "$1" = twitch-sim ] && url="http://$SIM_HELIX/sim/stats"   # the simulator's own status
      ready=$(curl -s -o /dev/null -w '%{http_code}' "$url" 2>/dev/null || true)
      printf '%-20s up (pid %s)  readyz=%s  admin=http://127.0.0.1:%s\n' "$1" "$(pid_of "$1")" "$ready" "$2"
    else
      printf '%-20s down\n' "$1"
    fi
  done
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
