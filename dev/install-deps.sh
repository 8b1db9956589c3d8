#!/usr/bin/env bash
# Installs what a fresh machine of this kind lacks to build and run the project:
# Debian build packages for librdkafka (built from source by rdkafka's cmake-build feature),
# kcat (operators' Kafka inspection tool), chromium (headless, for the log viewer's browser test
# integration-tests/tests/viewer.rs), the rustfmt/clippy components and PyYAML.
set -euo pipefail

need_pkgs=()
for p in cmake build-essential pkg-config libcurl4-openssl-dev libssl-dev libsasl2-dev zlib1g-dev openssl curl kcat chromium; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "[deps] installing Debian packages: ${need_pkgs[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "[deps] ERROR: cargo is missing: install Rust with rustup" >&2; exit 1; }
if command -v rustup >/dev/null; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c" >/dev/null 2>&1 || true
  done
fi
# PyYAML: the Helm tests read rendered manifests with it (dev/test-helm.sh).
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install --quiet pyyaml >/dev/null ||
  { echo "[deps] ERROR: cannot install PyYAML for python3 (pip install pyyaml)" >&2; exit 1; }
command -v java >/dev/null || { echo "[deps] ERROR: Java is missing (need a JDK 17+; Debian: openjdk-17-jdk-headless)" >&2; exit 1; }
command -v mvn >/dev/null || { echo "[deps] ERROR: Maven is missing (Debian: maven)" >&2; exit 1; }
exit 0
