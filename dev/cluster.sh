#!/usr/bin/env bash
# A local Kubernetes control plane as plain processes on 127.0.0.1 (no Docker, no kubelet): etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler and kwok, which plays the kubelet of one
# fake Node (pods become Running/Ready, Job pods Succeed; no container ever runs). Enough for
# `helm install --wait` to exercise what a real API server refuses or does: schema and Pod Security
# admission, RBAC, hook order, Deployment rollouts, garbage collection.
#
#   dev/cluster.sh start     build the binaries if needed (dev/k8s/build.sh), start, wait until ready
#   dev/cluster.sh stop      stop every process (TERM, then KILL), check none is left
#   dev/cluster.sh status    which components run and answer; exit 0 when all do
#   dev/cluster.sh probe     exit 0 when the API server answers with this kubeconfig (whoever started it)
#   dev/cluster.sh env       print `export KUBECONFIG=...; export PATH=...` (eval it to use kubectl/helm)
#   dev/cluster.sh clean     stop, then delete the cluster's state (etcd data, keys, logs)
#
# State (etcd data, keys, tokens, kubeconfig, logs, pid files): $TCI_CLUSTER_DIR, by default
# $TCI_STACK_DIR/cluster when TCI_STACK_DIR is set (make sets it to <repo>/.stack), else
# ~/.cache/tci/cluster. Binaries: ~/.cache/tci/k8s/<version> (dev/k8s/build.sh --dir).
# Ports (127.0.0.1 only): API server 16443, etcd 16379/16380, controller manager 16457, scheduler
# 16459, kwok 16480; override the base with TCI_CLUSTER_PORT_BASE (default 16000).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -n "${TCI_CLUSTER_DIR:-}" ]; then DIR=$TCI_CLUSTER_DIR
elif [ -n "${TCI_STACK_DIR:-}" ]; then DIR=$TCI_STACK_DIR/cluster
else DIR=$HOME/.cache/tci/cluster; fi
mkdir -p "$DIR" && DIR=$(cd "$DIR" && pwd)
PKI=$DIR/pki RUN=$DIR/run LOGS=$DIR/logs
KUBECONFIG_FILE=$DIR/kubeconfig
BASE=${TCI_CLUSTER_PORT_BASE:-16000}
API_PORT=$((BASE + 443)) ETCD_PORT=$((BASE + 379)) ETCD_PEER_PORT=$((BASE + 380))
KCM_PORT=$((BASE + 457)) SCHED_PORT=$((BASE + 459)) KWOK_PORT=$((BASE + 480))
SERVICE_CIDR=10.96.0.0/16 POD_CIDR=10.244.0.0/16 NODE=kwok-node-0
ALL=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

say() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] ERROR: %s\n' "$*" >&2; exit 1; }

bin_dir() { "$ROOT/dev/k8s/build.sh" --dir; }
BIN=$(bin_dir)

# ---------------------------------------------------------------- process helpers
pidfile() { echo "$RUN/$1.pid"; }
is_running() { local pf; pf=$(pidfile "$1"); [ -f "$pf" ] && kill -0 "$(cat "$pf")" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
check_port_free() { # what port
  if port_open "$2"; then
    die "port $2 (needed by $1) is taken: $(ss -ltnp 2>/dev/null | grep ":$2 " | head -1 | sed 's/.*users://')
       another cluster? try 'dev/cluster.sh stop', or set TCI_CLUSTER_PORT_BASE."
  fi
}
launch() { # name cmd... : detached, own session (process group), log in LOGS/name.log
  local name=$1; shift
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$(pidfile "$name")"
}
wait_until() { # name timeout_s cmd... : poll every 0.2 s until cmd succeeds
  local what=$1 name=${1%%\'*} timeout=$2 t0=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    if ! is_running "$name"; then
      say "$name exited while starting; last lines of $LOGS/$name.log:"; tail -n 30 "$LOGS/$name.log" >&2
      die "$name failed to start"
    fi
    if (( SECONDS - t0 > timeout )); then
      say "$name not ready within ${timeout}s; last lines of $LOGS/$name.log:"; tail -n 30 "$LOGS/$name.log" >&2
      die "$name did not become ready"
    fi
    sleep 0.2
  done
  say "$what is ready ($((SECONDS - t0))s)"
}
token() { cut -d, -f1 <(grep ",$1," "$PKI/tokens.csv"); }
api_get() { # path: GET on the API server as admin
  curl -fsS --max-time 5 --cacert "$PKI/apiserver.crt" -H "Authorization: Bearer $(token admin)" \
    "https://127.0.0.1:$API_PORT$1"
}

# ---------------------------------------------------------------- keys, tokens, kubeconfigs
ensure_pki() {
  mkdir -p "$PKI" && chmod 700 "$PKI"
  if [ ! -f "$PKI/apiserver.crt" ]; then
    say "generating the API server's self-signed serving certificate and the service-account key pair"
    # Self-signed and its own CA (clients trust exactly this certificate), valid for every name a
    # client may use: 127.0.0.1 from the host, kubernetes.default.svc / the first service IP inside.
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=tci-local-kube-apiserver" \
      -keyout "$PKI/apiserver.key" -out "$PKI/apiserver.crt" \
      -addext "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.96.0.1" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign" \
      -addext "extendedKeyUsage=serverAuth" 2>/dev/null
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
  if [ ! -f "$PKI/tokens.csv" ]; then
    # Static bearer tokens: token,user,uid[,"group1,group2"]. admin is in system:masters; the
    # controller manager and scheduler use the identities the bootstrap RBAC roles are bound to.
    {
      echo "$(openssl rand -hex 24),admin,admin,system:masters"
      echo "$(openssl rand -hex 24),system:kube-controller-manager,kcm"
      echo "$(openssl rand -hex 24),system:kube-scheduler,scheduler"
    } >"$PKI/tokens.csv"
    chmod 600 "$PKI/tokens.csv"
  fi
  local who
  for who in admin system:kube-controller-manager system:kube-scheduler; do
    write_kubeconfig "$who" "$(kubeconfig_of "$who")"
  done
}
kubeconfig_of() { case $1 in admin) echo "$KUBECONFIG_FILE" ;; *) echo "$PKI/${1#system:}.kubeconfig" ;; esac; }
write_kubeconfig() { # user file
  umask 077
  cat >"$2" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tci-local
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/apiserver.crt")
users:
- name: $1
  user:
    token: $(token "$1")
contexts:
- name: tci-local
  context: { cluster: tci-local, user: $1 }
current-context: tci-local
EOF
}

# ---------------------------------------------------------------- components
start_etcd() {
  check_port_free etcd "$ETCD_PORT"; check_port_free etcd-peer "$ETCD_PEER_PORT"
  # --unsafe-no-fsync: a throw-away test cluster; durability is not the point, speed on a shared disk is.
  launch etcd "$BIN/etcd" --name tci-local --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "tci-local=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --quota-backend-bytes=2147483648 --log-level=warn
  wait_until etcd 60 etcd_ready
}
etcd_ready() { curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }

start_kube-apiserver() {
  check_port_free kube-apiserver "$API_PORT"
  launch kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
    --cert-dir "$DIR/apiserver" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --token-auth-file "$PKI/tokens.csv" --anonymous-auth=false \
    --authorization-mode Node,RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --allow-privileged=false --profiling=false --v=1
  wait_until kube-apiserver 120 apiserver_ready
}
apiserver_ready() { api_get /readyz | grep -qx ok; }

component_flags() { # user port: what the controller manager and the scheduler share
  local kc; kc=$(kubeconfig_of "$1")
  echo --kubeconfig "$kc" --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
    --bind-address 127.0.0.1 --secure-port "$2" --cert-dir "$DIR/$1" --leader-elect=false --profiling=false
}
start_kube-controller-manager() {
  check_port_free kube-controller-manager "$KCM_PORT"
  # shellcheck disable=SC2046
  launch kube-controller-manager "$BIN/kube-controller-manager" \
    $(component_flags system:kube-controller-manager "$KCM_PORT") \
    --use-service-account-credentials \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/apiserver.crt" \
    --service-cluster-ip-range "$SERVICE_CIDR" --cluster-cidr "$POD_CIDR" --allocate-node-cidrs=false \
    --controllers '*,-bootstrapsigner,-tokencleaner,-csrsigning,-nodeipam,-cloud-node-lifecycle' --v=1
  wait_until kube-controller-manager 60 healthz "$KCM_PORT"
}
start_kube-scheduler() {
  check_port_free kube-scheduler "$SCHED_PORT"
  # shellcheck disable=SC2046
  launch kube-scheduler "$BIN/kube-scheduler" $(component_flags system:kube-scheduler "$SCHED_PORT") --v=1
  wait_until kube-scheduler 60 healthz "$SCHED_PORT"
}
healthz() { curl -fsS --max-time 2 -k "https://127.0.0.1:$1/healthz" | grep -qx ok; }

start_kwok() {
  check_port_free kwok "$KWOK_PORT"
  local stages=() f
  for f in "$BIN"/kwok-stages/*.yaml; do stages+=(--config "$f"); done
  # kwok manages only nodes annotated kwok.x-k8s.io/node=fake (ours), never a real one.
  launch kwok "$BIN/kwok" --kubeconfig "$KUBECONFIG_FILE" "${stages[@]}" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-ip 127.0.0.1 --node-name "$NODE" --cidr 10.244.0.1/24 \
    --server-address "127.0.0.1:$KWOK_PORT"
  wait_until "kwok's server" 30 port_open "$KWOK_PORT"
  "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $NODE
  annotations: { kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0" }
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/os: linux
    kubernetes.io/hostname: $NODE
    node-role.kubernetes.io/agent: ""
    type: kwok
status:
  allocatable: { cpu: "32", memory: 128Gi, pods: "250" }
  capacity: { cpu: "32", memory: 128Gi, pods: "250" }
EOF
  wait_until kwok 60 node_ready
}
node_ready() {
  [ "$("$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" get node "$NODE" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

ready() { # component
  case $1 in
    etcd) etcd_ready ;;
    kube-apiserver) apiserver_ready ;;
    kube-controller-manager) healthz "$KCM_PORT" ;;
    kube-scheduler) healthz "$SCHED_PORT" ;;
    kwok) node_ready ;;
  esac
}

# ---------------------------------------------------------------- commands
cmd_start() {
  local t0=$SECONDS
  BIN=$("$ROOT/dev/k8s/build.sh" | tail -n 1)
  mkdir -p "$RUN" "$LOGS"
  ensure_pki
  local c
  for c in "${ALL[@]}"; do
    if is_running "$c"; then say "$c already running (pid $(cat "$(pidfile "$c")"))"; wait_until "$c" 60 ready "$c"; continue; fi
    say "starting $c (log: $LOGS/$c.log)"
    "start_$c"
  done
  say "cluster ready in $((SECONDS - t0))s: export KUBECONFIG=$KUBECONFIG_FILE  (kubectl, helm: $BIN)"
}

# Every process of this cluster has $DIR in its command line.
leftovers() { pgrep -f -- "$DIR/" || true; }

stop_group() { # component... : SIGTERM all at once, wait, SIGKILL what is left after 15 s
  local c pid pids=() t0=$SECONDS
  for c in "$@"; do
    [ -f "$(pidfile "$c")" ] || continue
    pid=$(cat "$(pidfile "$c")")
    if kill -0 "$pid" 2>/dev/null; then
      say "stopping $c (pid $pid)"
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
    rm -f "$(pidfile "$c")"
  done
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && (( SECONDS - t0 < 15 )); do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      say "pid $pid did not stop in 15s; killing"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}

cmd_stop() {
  # Each component takes ~2 s to shut down gracefully: stop them together, etcd last (the API
  # server needs it to shut down).
  stop_group kwok kube-scheduler kube-controller-manager kube-apiserver
  stop_group etcd
  local left; left=$(leftovers)
  if [ -n "$left" ]; then
    say "processes of this cluster still running after stop:"; ps -o pid,args -p "$(echo "$left" | paste -sd,)" >&2 || true
    return 1
  fi
}

cmd_status() {
  local rc=0 c
  for c in "${ALL[@]}"; do
    if is_running "$c" && ready "$c"; then echo "$c: up (pid $(cat "$(pidfile "$c")"))"
    elif is_running "$c"; then echo "$c: running, not ready"; rc=1
    else echo "$c: down"; rc=1; fi
  done
  [ $rc != 0 ] || echo "KUBECONFIG=$KUBECONFIG_FILE"
  return $rc
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  probe) [ -f "$PKI/tokens.csv" ] && apiserver_ready ;;
  env) echo "export KUBECONFIG=$KUBECONFIG_FILE; export PATH=$BIN:\$PATH" ;;
  clean) cmd_stop; rm -rf "$DIR" ;;
  *) sed -n '2,19p' "$0"; exit 2 ;;
esac
