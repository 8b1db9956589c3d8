#!/usr/bin/env bash
# The Helm chart's tests (called by dev/test.sh, i.e. `make test`):
#   1. helm lint and helm template with the default and the production-like values
#      (helm/ci/production-values.yaml); object names; ServiceMonitor and PrometheusRule only
#      with their API, the PrometheusRule being the chart's rule file.
#   2. every values file in helm/ci/bad/ is refused by values.schema.json, with the message its
#      `# expect:` line names, before anything reaches a cluster.
#   3. on a real kube-apiserver (dev/cluster.sh: etcd, API server, controller manager, scheduler,
#      kwok), in a namespace that enforces the `restricted` Pod Security Standard, for the default
#      and the production-like values: helm install --wait --wait-for-jobs; every Deployment
#      Available; the setup hook Job completed before any Deployment was created; helm upgrade with
#      a changed value rolls every Deployment; helm rollback restores the previous pod templates;
#      helm uninstall leaves no object of the release. Before the production-like values, the
#      Prometheus Operator's CRDs are installed, so the API server validates and holds the
#      chart's ServiceMonitor and PrometheusRule.
# The cluster binaries are built on first use (dev/k8s/build.sh, ~10+ min on 2 cores, then cached
# in ~/.cache/tci/k8s). A running cluster is reused and left running; one started here is stopped.
# TCI_HELM_CLUSTER=0 skips part 3; TCI_HELM_VERBOSE=1 shows what every check saw, not only failures.
#
# Prints PASS/FAIL per check and a closing `test result:` line in cargo's format (dev/test.sh
# adds it to its totals); exits non-zero when any check failed.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CHART=helm/twitch-chat-ingestor
PROD=helm/ci/production-values.yaml
T0=$(date +%s.%N)
WORK=$(mktemp -d)
PASSED=0 FAILED=0 STARTED_CLUSTER=0 WATCHERS=()

say() { printf '[test-helm] %s\n' "$*"; }
pass() { PASSED=$((PASSED + 1)); printf 'PASS: %s\n' "$*"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL: %s\n' "$*"; }
# check "description" cmd...: PASS when cmd succeeds; on failure shows the end of its output.
check() {
  local desc=$1; shift
  if "$@" >"$WORK/out" 2>&1; then
    pass "$desc"
    [ "${TCI_HELM_VERBOSE:-0}" = 0 ] || sed 's/^/    /' "$WORK/out"
  else
    fail "$desc"; tail -n 25 "$WORK/out" | sed 's/^/    /'
    return 1
  fi
}

finish() {
  local w
  for w in "${WATCHERS[@]}"; do kill "$w" 2>/dev/null; wait "$w" 2>/dev/null; done
  if [ "$STARTED_CLUSTER" = 1 ]; then
    say "stopping the cluster started for this run"
    dev/cluster.sh stop || fail "dev/cluster.sh stop left processes behind"
  fi
  rm -rf "$WORK"
  local secs status=ok
  secs=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
  [ "$FAILED" = 0 ] || status=FAILED
  printf '\ntest result: %s. %d passed; %d failed; 0 ignored; 0 measured; 0 filtered out; finished in %.2fs\n' \
    "$status" "$PASSED" "$FAILED" "$secs"
  [ "$FAILED" = 0 ]
}
trap 'finish; exit $?' EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ binaries
say "helm and the cluster binaries (dev/k8s/build.sh; builds only what is missing or stale)"
if ! command -v go >/dev/null 2>&1 && ! dev/k8s/build.sh --check; then
  echo "SKIPPED: Go is not installed and the binaries are not cached; nothing Helm-related was tested"
  exit 0
fi
b0=$SECONDS
if ! BIN=$(dev/k8s/build.sh | tail -n 1); then fail "build helm and the Kubernetes binaries (dev/k8s/build.sh)"; exit 1; fi
say "binaries ready in $((SECONDS - b0))s: $BIN"
HELM=$BIN/helm KUBECTL=$BIN/kubectl
CURSOR=$(openssl rand -hex 32)

# ------------------------------------------------------------------ 1. lint and render
check "helm lint (default values + cursor secret)" "$HELM" lint --strict "$CHART" --set secrets.cursorSecret="$CURSOR"
check "helm lint (production-like values)" "$HELM" lint --strict "$CHART" -f "$PROD"
check "helm template (default values)" "$HELM" template tci "$CHART" --set secrets.cursorSecret="$CURSOR" --output-dir "$WORK/default"
check "helm template (production-like values)" "$HELM" template tci "$CHART" -f "$PROD" --output-dir "$WORK/prod"
check "helm template (existingSecret instead of a cursor secret)" "$HELM" template tci "$CHART" --set secrets.existingSecret=tci-secrets
names_ok() { # object names: <release>-twitch-chat-ingestor-<component>, never the release twice
  local out; out=$("$HELM" template tci "$CHART" --set secrets.cursorSecret="$CURSOR" | grep -E '^  name: ' | sort -u)
  echo "$out"
  ! grep -q 'tci-tci' <<<"$out" && grep -qx '  name: tci-twitch-chat-ingestor-chat-api' <<<"$out" &&
    [ -z "$("$HELM" template twitch-chat-ingestor "$CHART" --set secrets.cursorSecret="$CURSOR" | grep -E '^  name: twitch-chat-ingestor-twitch-chat-ingestor')" ] &&
    "$HELM" template x "$CHART" --set secrets.cursorSecret="$CURSOR" --set fullnameOverride=tci | grep -x '  name: tci-chat-api' >/dev/null
}
check "object names: standard fullname, no repeated release name" names_ok
servicemonitor_only_with_api() {
  ! "$HELM" template tci "$CHART" -f "$PROD" | grep '^kind: ServiceMonitor' >/dev/null &&
    "$HELM" template tci "$CHART" -f "$PROD" --api-versions monitoring.coreos.com/v1/ServiceMonitor | grep '^kind: ServiceMonitor' >/dev/null &&
    ! "$HELM" template tci "$CHART" --set secrets.cursorSecret="$CURSOR" --api-versions monitoring.coreos.com/v1/ServiceMonitor | grep '^kind: ServiceMonitor' >/dev/null
}
check "ServiceMonitor rendered only when enabled and monitoring.coreos.com/v1 is served" servicemonitor_only_with_api
prometheusrule_is_the_rule_file() { # only when enabled and served; the rule file's groups, plus additionalLabels
  local api=monitoring.coreos.com/v1/PrometheusRule
  ! "$HELM" template tci "$CHART" -f "$PROD" | grep '^kind: PrometheusRule' >/dev/null &&
    ! "$HELM" template tci "$CHART" --set secrets.cursorSecret="$CURSOR" --api-versions $api | grep '^kind: PrometheusRule' >/dev/null &&
    "$HELM" template tci "$CHART" -f "$PROD" --api-versions $api --show-only templates/prometheusrule.yaml |
    python3 -c '
import sys, yaml
cr = yaml.safe_load(sys.stdin)
want = yaml.safe_load(open(sys.argv[1]))["groups"]
got = cr["spec"]["groups"]
assert cr["metadata"]["labels"]["release"] == "kube-prometheus-stack", cr["metadata"]["labels"]
for g in got:
    for r in g["rules"]:
        assert r["labels"].pop("team") == "chat-archive", r
assert got == want, "the PrometheusRule differs from the rule file"
print(sum(len(g["rules"]) for g in got), "alerts in", len(got), "groups")' "$CHART/alerts/twitch-chat-ingestor.rules.yaml"
}
check "PrometheusRule: only when enabled and monitoring.coreos.com/v1 is served; the rule file's alerts, plus additionalLabels" prometheusrule_is_the_rule_file
kafka_props_in_config() { # librdkafka properties and SASL settings reach the config file, the password does not
  local cm; cm=$("$HELM" template tci "$CHART" -f "$PROD" --show-only templates/configmap.yaml)
  grep -q '"security.protocol" = "SASL_SSL"' <<<"$cm" && grep -q '"sasl.mechanism" = "SCRAM-SHA-512"' <<<"$cm" &&
    grep -q '"sasl.username" = "tci"' <<<"$cm" && ! grep -q 'ci-kafka-password' <<<"$cm" &&
    grep -q "replication = \"{'class': 'NetworkTopologyStrategy', 'eu-west-1': 3}\"" <<<"$cm"
}
check "config file: Kafka SASL settings in, password out, NetworkTopologyStrategy" kafka_props_in_config
toml_parses() { # the services read it with a TOML parser: so must it parse (python3 >= 3.11 tomllib)
  local v
  for v in "--set secrets.cursorSecret=$CURSOR" "-f $PROD"; do
    # shellcheck disable=SC2086
    "$HELM" template tci "$CHART" $v --show-only templates/configmap.yaml |
      python3 -c 'import sys, tomllib, yaml; print(tomllib.loads(yaml.safe_load(sys.stdin)["data"]["tci.toml"]))' || return 1
  done
}
check "config file is valid TOML (default and production-like values)" toml_parses
topics_all_named() { # every topic of kafka/topics.toml is named in the config file's [topics]
  local cm want have
  cm=$("$HELM" template tci "$CHART" --set secrets.cursorSecret="$CURSOR" --show-only templates/configmap.yaml)
  want=$(sed -n 's/^key = "\([a-z_]*\)".*/\1/p' kafka/topics.toml | sort)
  have=$(sed -n '/^ *\[topics\]/,/^ *\[/p' <<<"$cm" | sed -n 's/^ *\([a-z_]*\) = .*/\1/p' | sort)
  echo "kafka/topics.toml: $want"; echo "config [topics]: $have"
  [ -n "$want" ] && [ "$want" = "$have" ]
}
check "config file names every topic of kafka/topics.toml" topics_all_named
dashboard_json_ok() { jq -e '.panels | length > 10' "$CHART/dashboards/twitch-chat-ingestor.json"; }
check "Grafana dashboard is valid JSON" dashboard_json_ok

# ------------------------------------------------------------------ 2. bad values
for f in helm/ci/bad/*.yaml; do
  expect=$(sed -n 's/^# expect: //p' "$f" | head -1)
  refused() {
    if "$HELM" template tci "$CHART" -f "$1" >"$WORK/bad.out" 2>&1; then echo "accepted: $1"; return 1; fi
    cat "$WORK/bad.out"
    grep -qiE -- "$2" "$WORK/bad.out" && grep -qiE 'schema|values don.t meet|required' "$WORK/bad.out"
  }
  check "schema refuses $(basename "$f") (/$expect/)" refused "$f" "$expect"
done

# ------------------------------------------------------------------ 3. on a cluster
if [ "${TCI_HELM_CLUSTER:-1}" = 0 ]; then
  say "TCI_HELM_CLUSTER=0: not installing on a cluster"
  exit 0
fi
eval "$(dev/cluster.sh env)"
if dev/cluster.sh probe; then
  say "a local cluster is running: using it and leaving it running"
else
  say "starting a local cluster (stopped again at the end)"
  STARTED_CLUSTER=1
  if ! dev/cluster.sh start; then fail "dev/cluster.sh start"; exit 1; fi
fi
k() { "$KUBECTL" "$@"; }

# A namespace that enforces (and warns about) the restricted Pod Security Standard.
new_namespace() {
  k create namespace "$1" >/dev/null &&
    k label namespace "$1" pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/enforce-version=latest \
      pod-security.kubernetes.io/warn=restricted pod-security.kubernetes.io/audit=restricted >/dev/null &&
    # the namespace's default ServiceAccount appears asynchronously (controller manager); pods need it
    for _ in $(seq 1 150); do k -n "$1" get serviceaccount default >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}

# Every namespaced object of the release (by its instance label), except Events.
release_objects() { # ns release
  local kinds
  kinds=$(k api-resources --namespaced --verbs=list -o name | grep -vE '^(events|events\.events\.k8s\.io|bindings|localsubjectaccessreviews.*)$' | paste -sd, -)
  k -n "$1" get "$kinds" -l "app.kubernetes.io/instance=$2" -o name 2>/dev/null
}
# Anything left in the namespace that Kubernetes itself did not put there.
foreign_objects() { # ns
  local kinds
  kinds=$(k api-resources --namespaced --verbs=list -o name | grep -vE '^(events|events\.events\.k8s\.io|bindings|localsubjectaccessreviews.*)$' | paste -sd, -)
  k -n "$1" get "$kinds" -o name 2>/dev/null | grep -vE '^(configmap/kube-root-ca\.crt|serviceaccount/default)$'
}

# pod-template-hash of each Deployment's current ReplicaSet: "name hash" lines.
template_hashes() { # ns release
  local d
  for d in $(k -n "$1" get deploy -l "app.kubernetes.io/instance=$2" -o name); do
    printf '%s %s\n' "${d#*/}" "$(k -n "$1" get "$d" -o json | jq -r '.spec.template' | sha256sum | cut -c1-12)"
  done | sort
}
rs_hashes() { # ns release: "deployment pod-template-hash" of the ReplicaSets that have replicas
  k -n "$1" get rs -l "app.kubernetes.io/instance=$2" -o json |
    jq -r '.items[] | select(.spec.replicas > 0) | "\(.metadata.ownerReferences[0].name) \(.metadata.labels["pod-template-hash"])"' | sort
}
all_available() { # ns release expected_count
  local n
  n=$(k -n "$1" get deploy -l "app.kubernetes.io/instance=$2" -o json |
    jq '[.items[] | select(any(.status.conditions[]?; .type == "Available" and .status == "True")
        and .status.updatedReplicas == .spec.replicas and .status.readyReplicas == .spec.replicas)] | length')
  k -n "$1" get deploy -l "app.kubernetes.io/instance=$2" -o wide
  [ "$n" = "$3" ]
}
rolled_out() { # ns release: every Deployment's rollout finished
  local d
  for d in $(k -n "$1" get deploy -l "app.kubernetes.io/instance=$2" -o name); do
    k -n "$1" rollout status "$d" --timeout=120s || return 1
  done
}

# The hook order, from a watch on Jobs and Deployments started before the install: the etcd
# revision (resourceVersion) of the event in which the setup Job became Complete must be lower than
# that of every Deployment's creation, and so must its completion time (seconds).
watch_kind() { # ns kind file
  "$KUBECTL" -n "$1" get "$2" --watch --output-watch-events -o json >"$3" 2>/dev/null &
  WATCHERS+=($!)
}
hook_before_deployments() { # jobs.json deploys.json
  local job dep
  job=$(jq -sr '[.[] | select(.object.metadata.labels["app.kubernetes.io/component"] == "setup")
                 | select(any(.object.status.conditions[]?; .type == "Complete" and .status == "True"))
                 | {rv: (.object.metadata.resourceVersion | tonumber), t: .object.status.completionTime}] | first // empty | "\(.rv) \(.t)"' "$1")
  dep=$(jq -sr '[.[] | select(.type == "ADDED") | {rv: (.object.metadata.resourceVersion | tonumber), t: .object.metadata.creationTimestamp}]
                | min_by(.rv) // empty | "\(.rv) \(.t)"' "$2")
  echo "setup Job complete at rv/time: ${job:-none}; first Deployment created at rv/time: ${dep:-none}"
  [ -n "$job" ] && [ -n "$dep" ] || return 1
  [ "${job%% *}" -lt "${dep%% *}" ] && [[ "${job#* }" < "${dep#* }" || "${job#* }" == "${dep#* }" ]]
}
no_pss_warnings() { ! grep -i 'violate PodSecurity' "$1"; }

lifecycle() { # label values-args...
  local label=$1; shift
  local ns rel=tci expected
  ns="tci-helm-$label-$$"
  expected=$("$HELM" template "$rel" "$CHART" "$@" | grep -c '^kind: Deployment')
  say "---- $label values: namespace $ns, release $rel, $expected Deployments"
  check "[$label] namespace enforcing Pod Security 'restricted' created" new_namespace "$ns" || return
  pss_control() { # a pod without a securityContext is refused (so the checks below mean something)
    local out; out=$(k -n "$ns" run pss-probe --image=busybox --restart=Never --dry-run=server 2>&1)
    echo "$out"; grep -q 'violates PodSecurity "restricted' <<<"$out"
  }
  check "[$label] the namespace refuses a pod without securityContext (control)" pss_control

  watch_kind "$ns" jobs "$WORK/$label-jobs.json"
  watch_kind "$ns" deployments "$WORK/$label-deploys.json"
  local t=$SECONDS
  check "[$label] helm install --wait --wait-for-jobs" "$HELM" install "$rel" "$CHART" -n "$ns" "$@" \
    --wait --wait-for-jobs --timeout 5m
  cp "$WORK/out" "$WORK/$label-install.out"
  say "install took $((SECONDS - t))s"
  check "[$label] no Pod Security warnings on install" no_pss_warnings "$WORK/$label-install.out"
  check "[$label] all $expected Deployments Available with every replica ready" all_available "$ns" "$rel" "$expected"
  if k get crd prometheusrules.monitoring.coreos.com >/dev/null 2>&1; then
    local want_rules
    want_rules=$("$HELM" template "$rel" "$CHART" "$@" --api-versions monitoring.coreos.com/v1/PrometheusRule | grep -c '^ *- alert: ')
    monitoring_objects() { # what the API server holds: every alert the chart rendered; a ServiceMonitor with them
      local got; got=$(k -n "$ns" get prometheusrules -l "app.kubernetes.io/instance=$rel" -o json | jq '[.items[].spec.groups[].rules[]] | length')
      echo "alerts held by the API server: $got; rendered by the chart: $want_rules"
      [ "$got" = "$want_rules" ] &&
        { [ "$want_rules" = 0 ] || k -n "$ns" get servicemonitors -l "app.kubernetes.io/instance=$rel" -o name | grep -q .; }
    }
    check "[$label] the API server validated and holds the chart's PrometheusRule ($want_rules alerts) and ServiceMonitor" monitoring_objects
  fi
  check "[$label] pods run as non-root, read-only root, no privilege escalation, caps dropped, seccomp" bash -c \
    "'$KUBECTL' -n '$ns' get pods -l app.kubernetes.io/instance=$rel -o json | jq -e '
      (.items | length > 0) and all(.items[]; .spec.securityContext.runAsNonRoot == true
        and .spec.securityContext.seccompProfile.type == \"RuntimeDefault\"
        and all(.spec.containers[]; .securityContext.allowPrivilegeEscalation == false
          and .securityContext.readOnlyRootFilesystem == true
          and .securityContext.capabilities.drop == [\"ALL\"]))'"
  sleep 0.5  # let the watches deliver the last events (they are local; this is not a readiness wait)
  check "[$label] setup hook Job completed before any Deployment was created" \
    hook_before_deployments "$WORK/$label-jobs.json" "$WORK/$label-deploys.json"
  check "[$label] hook objects deleted after success (no Job, no setup ConfigMap left)" bash -c \
    "[ -z \"\$('$KUBECTL' -n '$ns' get jobs,configmaps,secrets -l app.kubernetes.io/component=setup -o name)\" ]"

  local before after rs_before rs_after
  before=$(template_hashes "$ns" "$rel"); rs_before=$(rs_hashes "$ns" "$rel")
  check "[$label] helm upgrade (logFilter=debug) --wait --wait-for-jobs" "$HELM" upgrade "$rel" "$CHART" -n "$ns" "$@" \
    --set logFilter=debug --wait --wait-for-jobs --timeout 5m
  check "[$label] upgrade: every Deployment's rollout finished" rolled_out "$ns" "$rel"
  after=$(template_hashes "$ns" "$rel"); rs_after=$(rs_hashes "$ns" "$rel")
  rolled() { # every Deployment got a new pod template and a new ReplicaSet
    echo "templates before:"; echo "$before"; echo "after:"; echo "$after"
    echo "ReplicaSets before:"; echo "$rs_before"; echo "after:"; echo "$rs_after"
    [ "$(echo "$before" | wc -l)" = "$expected" ] &&
      [ -z "$(join <(echo "$before") <(echo "$after") | awk '$2 == $3')" ] &&
      [ -z "$(comm -12 <(echo "$rs_before") <(echo "$rs_after"))" ]
  }
  check "[$label] upgrade rolled all $expected Deployments (new pod template hash, new ReplicaSet)" rolled
  check "[$label] the new configuration is served (ConfigMap has filter = \"debug\")" bash -c \
    "'$KUBECTL' -n '$ns' get configmap -l app.kubernetes.io/instance=$rel -o json | grep 'filter = \\\\\"debug\\\\\"'"

  check "[$label] helm rollback to revision 1 --wait" "$HELM" rollback "$rel" 1 -n "$ns" --wait --wait-for-jobs --timeout 5m
  check "[$label] rollback: every Deployment's rollout finished" rolled_out "$ns" "$rel"
  local back; back=$(template_hashes "$ns" "$rel")
  check "[$label] rollback restored the revision-1 pod templates of every Deployment" bash -c \
    "echo '$back'; [ '$back' = '$before' ]"
  check "[$label] helm history: 3 revisions, the last one deployed" bash -c \
    "'$HELM' history '$rel' -n '$ns' -o json | jq -e 'length == 3 and (.[-1].status == \"deployed\") and (.[-1].description | test(\"Rollback to 1\"))'"

  check "[$label] helm uninstall --wait" "$HELM" uninstall "$rel" -n "$ns" --wait --timeout 2m
  gone() { # garbage collection of ReplicaSets and pods is asynchronous: poll up to 60 s
    local left
    for _ in $(seq 1 300); do
      left=$(release_objects "$ns" "$rel"; foreign_objects "$ns")
      [ -z "$left" ] && return 0
      sleep 0.2
    done
    echo "left behind:"; echo "$left"; return 1
  }
  check "[$label] uninstall left no object of the release (every namespaced kind, by label and otherwise)" gone
  k delete namespace "$ns" --wait=false >/dev/null 2>&1
}

lifecycle default --set secrets.cursorSecret="$CURSOR"

# The Prometheus Operator's CRDs, from its Go module (which ships them): the production-like
# values then render a ServiceMonitor and a PrometheusRule, which the API server validates against
# the CRDs' schemas.
PROM_OPERATOR=github.com/prometheus-operator/prometheus-operator@v0.94.0
crds_installed() {
  local dir kind
  dir=$(cd "$WORK" && go mod download -json "$PROM_OPERATOR" | jq -r '.Dir // empty') && [ -d "$dir" ] || return 1
  for kind in servicemonitors prometheusrules; do
    k apply --server-side --force-conflicts -f "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" || return 1
  done
  k wait --for condition=established --timeout=60s crd/servicemonitors.monitoring.coreos.com crd/prometheusrules.monitoring.coreos.com
}
if command -v go >/dev/null 2>&1; then
  check "[cluster] the Prometheus Operator's ServiceMonitor and PrometheusRule CRDs installed ($PROM_OPERATOR)" crds_installed
else
  echo "SKIPPED: Go is not installed: the Prometheus Operator's CRDs come from its Go module; the ServiceMonitor and PrometheusRule are not validated by the API server"
fi
lifecycle production -f "$PROD"

# Bad values never reach the cluster: install fails, no release, no object.
ns="tci-helm-bad-$$"
if new_namespace "$ns"; then
  for f in helm/ci/bad/*.yaml; do
    refused_on_cluster() {
      if "$HELM" install bad "$CHART" -n "$ns" -f "$1" --wait --timeout 1m; then return 1; fi
      ! "$HELM" status bad -n "$ns" >/dev/null 2>&1 && [ -z "$(foreign_objects "$ns")" ]
    }
    check "[cluster] helm install refuses $(basename "$f"): no release, no object created" refused_on_cluster "$f"
  done
  k delete namespace "$ns" --wait=false >/dev/null 2>&1
else
  fail "[cluster] create namespace $ns"
fi
