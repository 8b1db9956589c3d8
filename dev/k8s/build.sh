#!/usr/bin/env bash
# Build the local Kubernetes control plane used by dev/cluster.sh and dev/test-helm.sh, from the Go
# module proxy (no Docker, no release tarballs):
#
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler   dev/k8s/go.mod
#   kwok (fake nodes + kubelet) and its stage files                 dev/k8s/kwok/go.mod
#   helm                                                            dev/k8s/helm/go.mod
#
# The binaries land in $TCI_K8S_BIN_DIR (default ~/.cache/tci/k8s/<kubernetes version>) and are
# rebuilt only when a go.mod/go.sum, the package list or the ldflags change (a stamp file per
# group), so only the
# first run pays for the build (~10 min on 2 cores with a cold Go cache; kube-apiserver is most of
# it). Every module's go.sum is committed: the build is reproducible and needs only the module proxy.
#
#   dev/k8s/build.sh            build what is missing or stale, print the binary directory last
#   dev/k8s/build.sh --dir      print the binary directory, build nothing
#   dev/k8s/build.sh --check    exit 0 if every binary is present and current, 1 otherwise
#
# Environment: TCI_GO_BUILD_P (go build -p, default 2: the machine is shared with cargo),
# TCI_K8S_BIN_DIR. GOTOOLCHAIN=local: the installed Go is used, never a downloaded one.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0
P=${TCI_GO_BUILD_P:-2}

modver() { awk -v m="$1" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$2"; }
K8S_VERSION=$(modver k8s.io/kubernetes "$HERE/go.mod")
KWOK_VERSION=$(modver sigs.k8s.io/kwok "$HERE/kwok/go.mod")
HELM_VERSION=$(modver helm.sh/helm/v3 "$HERE/helm/go.mod")
OUT=${TCI_K8S_BIN_DIR:-$HOME/.cache/tci/k8s/$K8S_VERSION}

# The three groups: module directory, packages, ldflags, binaries.
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
v=k8s.io/component-base/version
KUBE_DIR=.
KUBE_PKGS="k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl go.etcd.io/etcd/server/v3"
KUBE_LDFLAGS="-s -w -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"
KUBE_BINS="etcd kube-apiserver kube-controller-manager kube-scheduler kubectl"
KWOK_DIR=kwok
KWOK_PKGS=sigs.k8s.io/kwok/cmd/kwok
KWOK_LDFLAGS="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$K8S_VERSION"
KWOK_BINS="kwok kwok-stages"
# helm's own Makefile sets these: its version, and the Kubernetes version `helm template`/`lint`
# assume without a cluster (from its client-go v0.<minor>; 1.20 otherwise).
hminor=$(awk '$1 == "k8s.io/client-go" { print $2; exit }' "$HERE/helm/go.mod"); hminor=${hminor#v0.}; hminor=${hminor%%.*}
HELM_DIR=helm
HELM_PKGS=helm.sh/helm/v3/cmd/helm
HELM_LDFLAGS="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$hminor -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$hminor"
HELM_BINS=helm

field() { local n; n="$(echo "$1" | tr a-z A-Z)_$2"; echo "${!n}"; }
stamp_of() { # the inputs of one group: its go.mod, go.sum, packages and ldflags
  { cat "$HERE/$(field "$1" DIR)/go.mod" "$HERE/$(field "$1" DIR)/go.sum"; field "$1" PKGS; field "$1" LDFLAGS; } |
    sha256sum | cut -d' ' -f1
}
current() { # group
  [ "$(cat "$OUT/.stamp-$1" 2>/dev/null)" = "$(stamp_of "$1")" ] || return 1
  local b; for b in $(field "$1" BINS); do [ -e "$OUT/$b" ] || return 1; done
}
all_current() { current kube && current kwok && current helm; }

case "${1:-}" in
  --dir) echo "$OUT"; exit 0 ;;
  --check) all_current; exit $? ;;
  "") ;;
  *) echo "usage: $0 [--dir|--check]" >&2; exit 2 ;;
esac

command -v go >/dev/null || { echo "build.sh: Go is not installed" >&2; exit 1; }
mkdir -p "$OUT"
# One build at a time per cache directory (two `make test` in parallel must not both build).
exec 9>"$OUT/.lock"
flock 9
rm -rf "$OUT"/.build-*   # what an interrupted build left

build() { # group (binaries go to a temp dir, then move in place)
  local g=$1 tmp t0=$SECONDS
  tmp=$(mktemp -d "$OUT/.build-$g.XXXXXX")
  echo "building $g ($(field "$g" PKGS)) with go build -p $P into $OUT ..." >&2
  # shellcheck disable=SC2046
  (cd "$HERE/$(field "$g" DIR)" && go build -p "$P" -trimpath -ldflags "$(field "$g" LDFLAGS)" -o "$tmp/" $(field "$g" PKGS))
  # go.etcd.io/etcd/server/v3 is the etcd main package; go build names it "server"
  [ ! -e "$tmp/server" ] || mv "$tmp/server" "$tmp/etcd"
  if [ "$g" = kwok ]; then
    # kwok's stage files (what its fake kubelet does to nodes and pods) ship in its module source:
    # the "fast" node and pod stages plus the node heartbeat, as kwok's own default config uses.
    local src s
    src=$(cd "$HERE/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage
    mkdir "$tmp/kwok-stages"
    for s in node/fast/node-initialize node/heartbeat/node-heartbeat pod/fast/pod-ready \
             pod/fast/pod-complete pod/fast/pod-delete; do
      cp "$src/$s.yaml" "$tmp/kwok-stages/"
    done
    rm -rf "$OUT/kwok-stages"
  fi
  local f; for f in "$tmp"/*; do mv -f "$f" "$OUT/"; done
  rmdir "$tmp"
  stamp_of "$g" >"$OUT/.stamp-$g"
  echo "built $g in $((SECONDS - t0))s" >&2
}

for g in kube kwok helm; do
  current "$g" || build "$g"
done
echo "$OUT"
