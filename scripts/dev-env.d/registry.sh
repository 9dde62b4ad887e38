# A Confluent-compatible Schema Registry: Apicurio Registry's prebuilt distribution from Maven
# Central (io.apicurio:apicurio-registry-app:VERSION:tar.gz:all), run with the machine's Java 17+
# on loopback, in-memory storage (every start is empty; pipelines register what they write).
# Clients use the Confluent API under /apis/ccompat/v7.

REGISTRY_VERSION=3.0.9
registry_home() { echo "$CACHE/apicurio-$REGISTRY_VERSION"; }
registry_url() { echo "http://127.0.0.1:$SCHEMA_REGISTRY_PORT/apis/ccompat/v7"; }
registry_where() { registry_url; }

registry_install() {
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
  local home; home="$(registry_home)"
  [ -f "$home/.unpacked" ] && return 0
  local tgz="$HOME/.m2/repository/io/apicurio/apicurio-registry-app/$REGISTRY_VERSION/apicurio-registry-app-$REGISTRY_VERSION-all.tar.gz"
  if [ ! -f "$tgz" ]; then
    say "registry: fetching Apicurio Registry $REGISTRY_VERSION from Maven Central (about 100 MB)"
    mvn -q -B org.apache.maven.plugins:maven-dependency-plugin:2.8:get \
      -Dartifact="io.apicurio:apicurio-registry-app:$REGISTRY_VERSION:tar.gz:all" -Dtransitive=false \
      >"$STATE/logs/registry-install.log" 2>&1 || die "registry: mvn failed; see $STATE/logs/registry-install.log"
  fi
  rm -rf "$home.tmp" && mkdir -p "$home.tmp" && tar xzf "$tgz" -C "$home.tmp" \
    || die "registry: unpacking $tgz failed"
  rm -rf "$home" && mv "$home.tmp" "$home" && touch "$home/.unpacked"
}

registry_ready() { curl -sf -o /dev/null "$(registry_url)/subjects"; }

registry_start() {
  local log="$STATE/logs/registry.log" jar
  jar="$(ls "$(registry_home)"/apicurio-registry-app-*-runner.jar 2>/dev/null | head -1)"
  [ -n "$jar" ] || die "registry: no runner jar in $(registry_home)"
  if ! pid_alive registry; then
    nohup java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
      -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$SCHEMA_REGISTRY_PORT" \
      -Dquarkus.log.level=WARN '-Dquarkus.log.category."io.apicurio".level=WARN' \
      -Dquarkus.http.access-log.enabled=false \
      -Dapicurio.storage.kind=sql -Dapicurio.storage.sql.kind=h2 \
      -jar "$jar" >>"$log" 2>&1 &
    echo $! >"$STATE/run/registry.pid"
  fi
  wait_for registry "$log" 120 registry_ready
}

registry_stop() { stop_pid registry; }
