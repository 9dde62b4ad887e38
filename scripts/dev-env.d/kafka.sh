# Apache Kafka 4 (KRaft, one combined broker+controller) from Maven Central jars, run with the
# machine's Java 17+.

KAFKA_VERSION=4.4.0
kafka_libs() { echo "$CACHE/kafka-$KAFKA_VERSION/libs"; }
kafka_where() { echo "127.0.0.1:$KAFKA_PORT"; }
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
  mkdir -p "$dir/data"
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
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

kafka_topic() {
  kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" "$@"
}
