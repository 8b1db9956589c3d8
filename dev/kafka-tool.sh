#!/usr/bin/env bash
# Kafka's own command-line tools, from the jars dev/stack.sh fetched (no Kafka distribution needed).
#   dev/kafka-tool.sh consumer-groups --bootstrap-server 127.0.0.1:9092 --list
#   dev/kafka-tool.sh topics --bootstrap-server 127.0.0.1:9092 --describe
#   dev/kafka-tool.sh console-consumer --bootstrap-server 127.0.0.1:9092 --topic tci.dead-letter.v1 --from-beginning
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CP_FILE="${TCI_STACK_DIR:-$ROOT/.stack}/lib/kafka.classpath"
[ -s "$CP_FILE" ] || "$ROOT/dev/stack.sh" fetch
tool=${1:-}; shift || true
case $tool in
  consumer-groups) main=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
  topics) main=org.apache.kafka.tools.TopicCommand ;;
  console-consumer) main=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
  get-offsets) main=org.apache.kafka.tools.GetOffsetShell ;;
  *) sed -n '2,5p' "$0"; exit 2 ;;
esac
LOG4J="$(mktemp --suffix=.properties)"; trap 'rm -f "$LOG4J"' EXIT
printf 'rootLogger.level = warn\nappender.c.type = Console\nappender.c.name = E\nappender.c.target = SYSTEM_ERR\nappender.c.layout.type = PatternLayout\nappender.c.layout.pattern = %%p %%m%%n\nrootLogger.appenderRef.e.ref = E\n' >"$LOG4J"
exec java -Xmx256m -Dlog4j2.configurationFile="$LOG4J" -cp "$(cat "$CP_FILE")" "$main" "$@"
