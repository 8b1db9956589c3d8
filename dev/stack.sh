#!/usr/bin/env bash
# The local stack: real Apache Kafka (KRaft), Apache Cassandra 5 and Apicurio Registry (Confluent
# compatible API), fetched from Maven Central with `mvn` and run as plain processes on 127.0.0.1.
#
#   dev/stack.sh fetch            resolve the artifacts (cached in ~/.m2; first run downloads ~400 MB)
#   dev/stack.sh start [svc...]   start kafka, cassandra, registry (all by default) and wait until each answers
#   dev/stack.sh stop  [svc...]   stop them (SIGTERM, then SIGKILL after a grace period)
#   dev/stack.sh status           which are running and answering
#   dev/stack.sh probe            exit 0 when all three answer on their ports (whoever started them)
#   dev/stack.sh logs SVC         tail a server's log
#   dev/stack.sh clean            stop everything and delete data and logs
#
# Data, logs and pid files live in one folder: $TCI_STACK_DIR (default: <repo>/.stack).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE="$ROOT/dev/stack"
STACK_DIR=${TCI_STACK_DIR:-$ROOT/.stack}
DATA="$STACK_DIR/data"
LOGS="$STACK_DIR/logs"
RUN="$STACK_DIR/run"
# The SASL_SSL listener's certificate (ca.pem: what clients trust), keystore and SCRAM user.
KAFKA_TLS="$RUN/kafka-tls"

# shellcheck source=stack/ports.env
. "$HERE/ports.env"
REGISTRY_PORT=${TCI_REGISTRY_PORT:-$REGISTRY_PORT}

APICURIO_VERSION=3.3.3
ALL=(kafka cassandra registry)

say() { printf '[stack] %s\n' "$*" >&2; }

# A configuration template with its @DATA@ and port placeholders filled in.
fill() {
  sed -e "s|@DATA@|$DATA|g" -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" -e "s|@KAFKA_CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
    -e "s|@KAFKA_SASL_SSL_PORT@|$KAFKA_SASL_SSL_PORT|g" -e "s|@KAFKA_TLS_DIR@|$KAFKA_TLS|g" \
    -e "s|@KAFKA_KEYSTORE_PASSWORD@|$(cat "$KAFKA_TLS/keystore.password" 2>/dev/null)|g" \
    -e "s|@CASSANDRA_PORT@|$CASSANDRA_PORT|g" -e "s|@CASSANDRA_STORAGE_PORT@|$CASSANDRA_STORAGE_PORT|g" "$1"
}
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

need_java() {
  command -v java >/dev/null 2>&1 || die "Java is missing: install a JDK 17 (Debian: apt-get install openjdk-17-jdk-headless)."
  command -v mvn >/dev/null 2>&1 || die "Maven is missing: install it (Debian: apt-get install maven)."
  local v
  v=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  [ "${v:-0}" -ge 17 ] || die "Java 17 or newer is needed, found: $(java -version 2>&1 | head -1)"
}

mkdirs() { mkdir -p "$DATA" "$LOGS" "$RUN" "$STACK_DIR/lib"; }

# ---------------------------------------------------------------- fetch
classpath_file() { echo "$STACK_DIR/lib/$1.classpath"; }

fetch_classpath() { # name pom
  local name=$1 pom=$2 cpf
  cpf=$(classpath_file "$name")
  if [ -s "$cpf" ] && [ "$cpf" -nt "$pom" ]; then return 0; fi
  say "resolving $name from Maven Central (first run downloads; later runs use ~/.m2)"
  if ! mvn -B -q -f "$pom" dependency:build-classpath -Dmdep.outputFile="$cpf.tmp" >"$LOGS/mvn-$name.log" 2>&1; then
    tail -n 30 "$LOGS/mvn-$name.log" >&2
    die "could not resolve $name with mvn (log: $LOGS/mvn-$name.log)"
  fi
  mv "$cpf.tmp" "$cpf"
}

fetch_registry() {
  local dir="$STACK_DIR/lib/apicurio-$APICURIO_VERSION"
  [ -f "$dir/quarkus-run.jar" ] && return 0
  say "resolving Apicurio Registry $APICURIO_VERSION from Maven Central"
  if ! mvn -B -q dependency:copy -Dartifact="io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all" \
      -DoutputDirectory="$STACK_DIR/lib/dl" >"$LOGS/mvn-registry.log" 2>&1; then
    tail -n 30 "$LOGS/mvn-registry.log" >&2
    die "could not resolve Apicurio Registry with mvn (log: $LOGS/mvn-registry.log)"
  fi
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  tar xzf "$STACK_DIR/lib/dl/apicurio-registry-app-$APICURIO_VERSION-all.tar.gz" -C "$dir.tmp"
  rm -rf "$STACK_DIR/lib/dl"
  mv "$dir.tmp" "$dir"
}

cmd_fetch() {
  need_java; mkdirs
  fetch_classpath kafka "$HERE/kafka.pom.xml"
  fetch_classpath cassandra "$HERE/cassandra.pom.xml"
  fetch_registry
}

# ---------------------------------------------------------------- process helpers
pidfile() { echo "$RUN/$1.pid"; }

is_running() {
  local pf pid
  pf=$(pidfile "$1")
  [ -f "$pf" ] || return 1
  pid=$(cat "$pf")
  kill -0 "$pid" 2>/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

check_port_free() { # svc port
  if port_open "$2"; then
    die "port $2 (needed by $1) is taken by another process: $(ss -ltnp 2>/dev/null | grep ":$2 " | head -1 | sed 's/.*users://')
       stop it, or run 'dev/stack.sh stop' if it is a stack left from an earlier run."
  fi
}

wait_until() { # svc timeout_s cmd...
  local svc=$1 timeout=$2; shift 2
  local start=$SECONDS
  while ! "$@" >/dev/null 2>&1; do
    if ! is_running "$svc"; then
      say "$svc exited while starting; last lines of $LOGS/$svc.log:"
      tail -n 40 "$LOGS/$svc.log" >&2
      die "$svc failed to start"
    fi
    if (( SECONDS - start > timeout )); then
      say "$svc did not answer within ${timeout}s; last lines of $LOGS/$svc.log:"
      tail -n 40 "$LOGS/$svc.log" >&2
      die "$svc did not become ready"
    fi
    sleep 1
  done
  say "$svc is up ($((SECONDS - start))s)"
}

launch() { # svc cmd... : run detached, in its own session, logs to LOGS/svc.log
  local svc=$1; shift
  setsid "$@" >>"$LOGS/$svc.log" 2>&1 </dev/null &
  echo $! >"$(pidfile "$svc")"
}

# ---------------------------------------------------------------- kafka
# TLS and SCRAM for the SASL_SSL listener, made once per stack folder: a self-signed certificate
# for 127.0.0.1 (its PEM is the clients' CA file), a random keystore password, and a SCRAM user
# with a random password (sasl.env: KAFKA_SASL_USER, KAFKA_SASL_PASSWORD).
kafka_tls_material() {
  if [ -f "$KAFKA_TLS/broker.p12" ] && [ -f "$KAFKA_TLS/ca.pem" ] && [ -f "$KAFKA_TLS/sasl.env" ]; then return 0; fi
  command -v keytool >/dev/null || die "keytool (part of the JDK) is missing: it makes the SASL_SSL listener's certificate"
  rm -rf "$KAFKA_TLS"; mkdir -p "$KAFKA_TLS"; chmod 700 "$KAFKA_TLS"
  local pw; pw=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  keytool -genkeypair -alias broker -keyalg RSA -keysize 2048 -validity 3650 -dname "CN=127.0.0.1" \
    -ext "SAN=IP:127.0.0.1,DNS:localhost" -keystore "$KAFKA_TLS/broker.p12" -storetype PKCS12 \
    -storepass "$pw" -keypass "$pw" >>"$LOGS/kafka.log" 2>&1 || die "kafka: keytool could not make the certificate"
  keytool -exportcert -rfc -alias broker -keystore "$KAFKA_TLS/broker.p12" -storepass "$pw" \
    -file "$KAFKA_TLS/ca.pem" >>"$LOGS/kafka.log" 2>&1 || die "kafka: keytool could not export the certificate"
  printf '%s' "$pw" >"$KAFKA_TLS/keystore.password"
  printf 'KAFKA_SASL_USER=tci\nKAFKA_SASL_PASSWORD=%s\n' "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" >"$KAFKA_TLS/sasl.env"
}

# The SCRAM user (created, or its password set again: the credentials live in Kafka's metadata
# log, the password in sasl.env), then one login over SASL_SSL with Kafka's own client.
kafka_scram_user() {
  local jvm=("$@")
  # shellcheck disable=SC1091
  . "$KAFKA_TLS/sasl.env"
  "${jvm[@]}" kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" --alter \
    --add-config "SCRAM-SHA-512=[password=$KAFKA_SASL_PASSWORD]" \
    --entity-type users --entity-name "$KAFKA_SASL_USER" >>"$LOGS/kafka.log" 2>&1 \
    || { tail -n 20 "$LOGS/kafka.log" >&2; die "kafka: could not create the SCRAM user"; }
  wait_until kafka 60 kafka_sasl_ssl_ready
  local client="$KAFKA_TLS/client.properties"
  {
    echo "security.protocol=SASL_SSL"
    echo "sasl.mechanism=SCRAM-SHA-512"
    echo "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"$KAFKA_SASL_USER\" password=\"$KAFKA_SASL_PASSWORD\";"
    echo "ssl.truststore.type=PEM"
    echo "ssl.truststore.location=$KAFKA_TLS/ca.pem"
  } >"$client"
  "${jvm[@]}" kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$KAFKA_SASL_SSL_PORT" \
    --command-config "$client" --describe --entity-type users --entity-name "$KAFKA_SASL_USER" 2>&1 \
    | grep -q "SCRAM credential configs for user-principal '$KAFKA_SASL_USER'" \
    || die "kafka: no SCRAM login over SASL_SSL on port $KAFKA_SASL_SSL_PORT (see $LOGS/kafka.log)"
}

# The SASL_SSL listener answers with the stack's certificate (TLS handshake verified by ca.pem).
kafka_sasl_ssl_ready() {
  port_open "$KAFKA_SASL_SSL_PORT" || return 1
  openssl s_client -connect "127.0.0.1:$KAFKA_SASL_SSL_PORT" -CAfile "$KAFKA_TLS/ca.pem" \
    -verify_return_error -verify_ip 127.0.0.1 </dev/null >/dev/null 2>&1
}

start_kafka() {
  check_port_free kafka $KAFKA_PORT; check_port_free kafka-controller $KAFKA_CONTROLLER_PORT
  check_port_free kafka-sasl-ssl $KAFKA_SASL_SSL_PORT
  kafka_tls_material
  local cp conf="$RUN/kafka-server.properties"
  cp=$(cat "$(classpath_file kafka)")
  fill "$HERE/conf/kafka-server.properties" >"$conf"
  chmod 600 "$conf"
  local jvm=(java -Xms512m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
             -Dlog4j2.configurationFile="$HERE/conf/kafka-log4j2.properties" -cp "$cp")
  if [ ! -f "$DATA/kafka/meta.properties" ]; then
    mkdir -p "$DATA/kafka"
    local id
    id=$("${jvm[@]}" kafka.tools.StorageTool random-uuid 2>>"$LOGS/kafka.log" | tail -1)
    "${jvm[@]}" kafka.tools.StorageTool format -t "$id" -c "$conf" >>"$LOGS/kafka.log" 2>&1 \
      || { tail -n 20 "$LOGS/kafka.log" >&2; die "kafka: formatting the KRaft storage failed"; }
  fi
  launch kafka "${jvm[@]}" kafka.Kafka "$conf"
  wait_until kafka 90 kafka_ready
  kafka_scram_user "${jvm[@]}"
}

kafka_ready() {
  port_open $KAFKA_PORT || return 1
  if command -v kcat >/dev/null 2>&1; then
    kcat -b 127.0.0.1:$KAFKA_PORT -L -m 3 -J 2>/dev/null | grep -q '"brokers":\[{'
  fi
}

# ---------------------------------------------------------------- cassandra
CASSANDRA_JVM17=(
  -Djdk.attach.allowAttachSelf=true
  --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
  --add-exports java.base/jdk.internal.ref=ALL-UNNAMED
  --add-exports java.base/sun.nio.ch=ALL-UNNAMED
  --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
  --add-exports java.sql/java.sql=ALL-UNNAMED
  --add-exports java.base/java.lang.ref=ALL-UNNAMED
  --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
  --add-opens java.base/java.lang.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
  --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
  --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
  --add-opens java.base/jdk.internal.math=ALL-UNNAMED
  --add-opens java.base/jdk.internal.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
  --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
  --add-opens java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens java.base/java.io=ALL-UNNAMED
  --add-opens java.base/java.nio=ALL-UNNAMED
  --add-opens java.base/java.util.concurrent=ALL-UNNAMED
  --add-opens java.base/java.util=ALL-UNNAMED
  --add-opens java.base/java.util.concurrent.atomic=ALL-UNNAMED
  --add-opens java.base/java.lang=ALL-UNNAMED
  --add-opens java.base/java.math=ALL-UNNAMED
  --add-opens java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens java.base/java.net=ALL-UNNAMED
)

start_cassandra() {
  check_port_free cassandra $CASSANDRA_PORT; check_port_free cassandra-storage $CASSANDRA_STORAGE_PORT
  local cp conf="$RUN/cassandra.yaml"
  cp=$(cat "$(classpath_file cassandra)")
  mkdir -p "$DATA/cassandra"
  fill "$HERE/conf/cassandra.yaml" >"$conf"
  launch cassandra java -Xms2g -Xmx2g -Xss512k -XX:+UseG1GC -XX:MaxGCPauseMillis=200 \
    -XX:+HeapDumpOnOutOfMemoryError -XX:HeapDumpPath="$DATA/cassandra" \
    "${CASSANDRA_JVM17[@]}" \
    -Dcassandra.config="file://$conf" -Dcassandra-foreground=yes -Dcassandra.storagedir="$DATA/cassandra" \
    -Dcassandra.logdir="$LOGS" -Dlogback.configurationFile="$HERE/conf/cassandra-logback.xml" \
    -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.ring_delay_ms=100 \
    -Dcassandra.initial_token=0 -Dcassandra.jmx.local.port=$CASSANDRA_JMX_PORT -Dcom.sun.management.jmxremote.authenticate=false \
    -Dcassandra.max_queued_native_transport_requests=4096 -Djava.net.preferIPv4Stack=true \
    -cp "$cp" org.apache.cassandra.service.CassandraDaemon
  wait_until cassandra 180 cassandra_ready
}

cassandra_ready() { port_open $CASSANDRA_PORT && grep -q "Starting listening for CQL clients\|Startup complete" "$LOGS/cassandra.log"; }

# ---------------------------------------------------------------- registry
# Apicurio Registry 3.3 is built for Java 21+: use $TCI_REGISTRY_JAVA, else the newest JDK >= 21
# found under /usr/lib/jvm (this machine kind ships a Temurin JDK beside OpenJDK 17).
registry_java() {
  if [ -n "${TCI_REGISTRY_JAVA:-}" ]; then echo "$TCI_REGISTRY_JAVA"; return; fi
  local best="" bestv=0 j v
  for j in java /usr/lib/jvm/*/bin/java; do
    command -v "$j" >/dev/null 2>&1 || continue
    v=$("$j" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
    if [ "${v:-0}" -ge 21 ] && [ "$v" -gt "$bestv" ]; then best=$j; bestv=$v; fi
  done
  [ -n "$best" ] || die "registry: Apicurio Registry $APICURIO_VERSION needs Java 21 or newer and none was found
       (looked at 'java' and /usr/lib/jvm/*). Install one, or point TCI_REGISTRY_JAVA at its java binary."
  echo "$best"
}

start_registry() {
  check_port_free registry "$REGISTRY_PORT"
  local dir="$STACK_DIR/lib/apicurio-$APICURIO_VERSION" java_bin
  java_bin=$(registry_java)
  # Storage: H2 in a file under $DATA, so schema ids survive a restart of the stack just like the
  # Kafka records that carry them (in-memory storage would re-number schemas after a restart and
  # leave the retained records undecodable). Confluent-compatible API at /apis/ccompat/v7.
  mkdir -p "$DATA/registry"
  launch registry env QUARKUS_HTTP_HOST=127.0.0.1 QUARKUS_HTTP_PORT="$REGISTRY_PORT" \
    QUARKUS_LOG_CONSOLE_JSON=false APICURIO_CCOMPAT_LEGACY_ID_MODE_ENABLED=true \
    APICURIO_STORAGE_KIND=sql APICURIO_STORAGE_SQL_KIND=h2 \
    APICURIO_DATASOURCE_URL="jdbc:h2:file:$DATA/registry/registry;DB_CLOSE_ON_EXIT=FALSE" \
    APICURIO_DATASOURCE_USERNAME=sa APICURIO_DATASOURCE_PASSWORD=sa \
    "$java_bin" -Xms256m -Xmx768m -XX:+UseG1GC -jar "$dir/quarkus-run.jar"
  wait_until registry 120 registry_ready
}

registry_ready() { curl -fsS "http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7/subjects" >/dev/null; }

# ---------------------------------------------------------------- commands
svc_ready() { case $1 in kafka) kafka_ready;; cassandra) cassandra_ready;; registry) registry_ready;; esac; }

cmd_start() {
  need_java; mkdirs; cmd_fetch
  local svcs=("$@"); [ ${#svcs[@]} -gt 0 ] || svcs=("${ALL[@]}")
  for s in "${svcs[@]}"; do
    if is_running "$s"; then say "$s already running (pid $(cat "$(pidfile "$s")"))"; continue; fi
    say "starting $s (log: $LOGS/$s.log)"
    "start_$s"
  done
}

cmd_stop() {
  local svcs=("$@"); [ ${#svcs[@]} -gt 0 ] || svcs=(registry kafka cassandra)
  for s in "${svcs[@]}"; do
    local pf pid
    pf=$(pidfile "$s")
    [ -f "$pf" ] || continue
    pid=$(cat "$pf")
    if kill -0 "$pid" 2>/dev/null; then
      say "stopping $s (pid $pid)"
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      if kill -0 "$pid" 2>/dev/null; then
        say "$s did not stop in 30s; killing"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
    rm -f "$pf"
  done
}

cmd_status() {
  local rc=0
  for s in "${ALL[@]}"; do
    if is_running "$s" && svc_ready "$s"; then echo "$s: up (pid $(cat "$(pidfile "$s")"))"
    elif is_running "$s"; then echo "$s: running, not answering"; rc=1
    else echo "$s: down"; rc=1; fi
  done
  return $rc
}

# Exit 0 when every server answers on its port, whoever started it (used by dev/test.sh).
cmd_probe() {
  kafka_ready && kafka_sasl_ssl_ready && port_open $CASSANDRA_PORT && registry_ready
}

case "${1:-}" in
  fetch) cmd_fetch ;;
  probe) cmd_probe ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  status) cmd_status ;;
  logs) tail -n 100 -f "$LOGS/${2:-kafka}.log" ;;
  clean) cmd_stop; rm -rf "$DATA" "$LOGS" "$RUN" ;;
  *) sed -n "2,14p" "$0"; exit 2 ;;
esac
