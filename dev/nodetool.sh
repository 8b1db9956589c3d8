#!/usr/bin/env bash
# Cassandra's own nodetool, from the jars dev/stack.sh fetched, against the local node's JMX port.
#   dev/nodetool.sh status
#   dev/nodetool.sh flush tci && dev/nodetool.sh compact tci
#   dev/nodetool.sh tablestats -F json tci
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=stack/ports.env
. "$ROOT/dev/stack/ports.env"
CP_FILE="${TCI_STACK_DIR:-$ROOT/.stack}/lib/cassandra.classpath"
[ -s "$CP_FILE" ] || "$ROOT/dev/stack.sh" fetch
LOGBACK="$(mktemp --suffix=.xml)"; trap 'rm -f "$LOGBACK"' EXIT
cat >"$LOGBACK" <<'XML'
<configuration><appender name="E" class="ch.qos.logback.core.ConsoleAppender"><target>System.err</target>
<encoder><pattern>%level %msg%n</pattern></encoder></appender><root level="WARN"><appender-ref ref="E"/></root></configuration>
XML
exec java -Xmx256m -Dlogback.configurationFile="$LOGBACK" -Dcassandra.logdir="${TMPDIR:-/tmp}" \
  --add-exports java.base/sun.nio.ch=ALL-UNNAMED --add-opens java.base/sun.nio.ch=ALL-UNNAMED \
  --add-exports java.base/jdk.internal.misc=ALL-UNNAMED --add-exports java.base/jdk.internal.ref=ALL-UNNAMED \
  -cp "$(cat "$CP_FILE")" org.apache.cassandra.tools.NodeTool -h 127.0.0.1 -p "${TCI_CASSANDRA_JMX_PORT:-$CASSANDRA_JMX_PORT}" "$@"
