#!/usr/bin/env bash
# Checks that every metric name the Grafana dashboard of the Helm chart queries is exported by the
# running services: the union of the given /metrics endpoints must contain each `tci_*` name of the
# dashboard's expressions and template queries (histograms: the `_bucket`/`_sum`/`_count` samples,
# or the family name of a `# TYPE` line).
#
#   dev/check-dashboard-metrics.sh [URL...]
#
# Default URLs: the admin ports of `make up` (9101..9105). A labelled metric appears only once a
# label set was used (e.g. dead letters after the first poison record), so run it against a stack
# that has seen traffic; integration-tests/tests/dashboard.rs does that in-process in `make test`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DASHBOARD=${TCI_DASHBOARD:-$ROOT/helm/twitch-chat-ingestor/dashboards/twitch-chat-ingestor.json}
[ $# -gt 0 ] || set -- http://127.0.0.1:9101/metrics http://127.0.0.1:9102/metrics \
  http://127.0.0.1:9103/metrics http://127.0.0.1:9104/metrics http://127.0.0.1:9105/metrics

wanted=$(jq -r '.. | objects | to_entries[] | select(.key == "expr" or .key == "query" or .key == "definition")
                | .value | strings' "$DASHBOARD" | grep -oE '(^|[^a-zA-Z0-9_:])tci_[a-zA-Z0-9_:]+' |
         sed -E 's/^[^t]//' | sort -u)
exported=$(for u in "$@"; do
  curl -fsS --max-time 10 "$u" || echo "check-dashboard-metrics: cannot read $u" >&2
done | awk '/^# TYPE / { print $3; next } /^#/ || NF == 0 { next } { sub(/[{ ].*/, ""); print }' | sort -u)

missing=$(comm -23 <(echo "$wanted") <(echo "$exported"))
n=$(echo "$wanted" | wc -l)
if [ -n "$missing" ]; then
  echo "FAIL: the dashboard queries $(echo "$missing" | wc -l) of its $n metric names that no endpoint exports:"
  echo "$missing" | sed 's/^/  /'
  exit 1
fi
echo "PASS: all $n metric names of the dashboard are exported by $# endpoint(s)"
