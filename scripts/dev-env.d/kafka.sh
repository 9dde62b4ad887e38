# Apache Kafka 4 (KRaft, one combined broker+controller) from Maven Central jars, run with the
# machine's Java 17+.

KAFKA_VERSION=4.4.0
kafka_libs() { echo "$CACHE/kafka-$KAFKA_VERSION/libs"; }
kafka_where() { echo "127.0.0.1:$KAFKA_PORT, SASL_SSL localhost:$KAFKA_SASL_PORT"; }
kafka_java() { java -Xmx256m -cp "$(kafka_libs)/*" "$@"; }

kafka_install() {
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
  if [ ! -f "$(kafka_libs)/kafka_2.13-$KAFKA_VERSION.jar" ]; then
    say "kafka: resolving the broker's jars from Maven Central"
    mvn -q -f "$DEVD/kafka-pom.xml" dependency:copy-dependencies -DoutputDirectory="$(kafka_libs)" \
      >"$STATE/logs/kafka-install.log" 2>&1 || die "kafka: mvn failed; see $STATE/logs/kafka-install.log"
  fi
}

# Ready means a real client lists the topics.
kafka_ready() {
  [ -d "$(kafka_libs)" ] && timeout 20 java -Xmx128m -cp "$(kafka_libs)/*" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "127.0.0.1:$KAFKA_PORT" --list >/dev/null 2>&1
}

kafka_start() {
  local dir="$STATE/kafka" log="$STATE/logs/kafka.log"
  mkdir -p "$dir/data" "$dir/tls"
  # The SASL_SSL listener's key and certificate ("localhost", signed by the local CA) as one PEM.
  local_tls_certs "$log"
  (umask 077 && cat "$STATE/postgres-tls/server.key" "$STATE/postgres-tls/server.crt" >"$dir/tls/server.pem")
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://localhost:$KAFKA_SASL_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$KAFKA_SASL_USER="$KAFKA_SASL_PASSWORD";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=$dir/tls/server.pem
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
PROPS
  kafka_launch "$dir" "$log"
  if ! kafka_wait 90; then
    # The broker's data is only seeded test data: a store it cannot open (a machine stopped
    # mid-write, a version change) is set aside and the broker started once more on fresh storage.
    log_tail "$log"
    say "kafka: did not start; starting it again on fresh storage (the old one is kept in $dir/data.failed)"
    kafka_stop
    rm -rf "$dir/data.failed" && mv "$dir/data" "$dir/data.failed" && mkdir -p "$dir/data"
    kafka_launch "$dir" "$log"
    wait_for kafka "$log" 90 kafka_ready
  fi
}

# kafka_launch DIR LOG: formats the storage when new, starts the broker unless it runs.
kafka_launch() {
  local dir="$1" log="$2"
  if [ ! -f "$dir/data/meta.properties" ]; then
    local id; id="$(kafka_java kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)"
    kafka_java kafka.tools.StorageTool format --config "$dir/server.properties" --cluster-id "$id" --standalone \
      >>"$log" 2>&1 || die "kafka: formatting the storage failed; see $log"
  fi
  if ! pid_alive kafka; then
    nohup java -Xmx1g -Xms256m -cp "$(kafka_libs)/*" kafka.Kafka "$dir/server.properties" >>"$log" 2>&1 &
    echo $! >"$STATE/run/kafka.pid"
  fi
}

# kafka_wait SECONDS: until a client lists the topics; gives up early when the broker exits.
kafka_wait() {
  local deadline=$(( SECONDS + $1 ))
  while (( SECONDS < deadline )); do
    kafka_ready && return 0
    pid_alive kafka || { say "kafka: the broker exited while starting"; return 1; }
    sleep 0.5
  done
  return 1
}

kafka_stop() { stop_pid kafka; }

# The SASL_SSL listener (PLAIN, SCRAM-SHA-256/512 over TLS from the local CA): a broker started
# before it existed is restarted; the SCRAM credentials are (re)set through the plain listener.
kafka_post_start() {
  local log="$STATE/logs/kafka.log"
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_SASL_PORT") 2>/dev/null; then
    say "kafka: restarting it to open the SASL_SSL listener on $KAFKA_SASL_PORT"
    kafka_stop
    kafka_start
  fi
  local m
  for m in SCRAM-SHA-256 SCRAM-SHA-512; do # one mechanism per request, as the broker asks
    kafka_java org.apache.kafka.tools.ConfigCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" --alter \
      --entity-type users --entity-name "$KAFKA_SASL_USER" --add-config "$m=[password=$KAFKA_SASL_PASSWORD]" \
      >>"$log" 2>&1 || die "kafka: setting the $m credentials failed; see $log"
  done
}

kafka_topic() {
  kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" "$@"
}
