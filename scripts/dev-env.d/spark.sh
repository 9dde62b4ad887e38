# A Spark Connect server (Apache Spark 4.0, local[2]) on loopback, from the PySpark package on
# PyPI and the connector jars of spark-pom.xml from Maven Central, run with the machine's Java 17.
# Not started by a plain `scripts/dev-env up`: name it (`scripts/dev-env up spark`).

SPARK_VERSION=4.0.0
spark_home() { "$(s3_venv)/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))' 2>/dev/null; }
spark_jars() { echo "$CACHE/spark-$SPARK_VERSION-jars"; }
spark_port() { echo "${SPARK_CONNECT_PORT:-55002}"; }
spark_where() { echo "sc://127.0.0.1:$(spark_port)"; }

spark_install() {
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
  local v; v="$(s3_venv)"
  [ -x "$v/bin/python" ] || python3 -m venv "$v" || die "spark: python3 -m venv failed (install python3-venv)"
  if ! "$v/bin/python" -c "import pyspark, sys; sys.exit(pyspark.__version__ != '$SPARK_VERSION')" 2>/dev/null; then
    say "spark: installing PySpark $SPARK_VERSION with its Spark Connect client (PyPI, ~450 MB)"
    "$v/bin/pip" install -q "pyspark[connect]==$SPARK_VERSION" >"$STATE/logs/spark-install.log" 2>&1 \
      || die "spark: pip failed; see $STATE/logs/spark-install.log"
  fi
  # The marker names the pom's hash: a changed pom resolves again.
  local marker; marker="$(spark_jars)/.complete-$(sha256sum "$DEVD/spark-pom.xml" | cut -c1-12)"
  if [ ! -f "$marker" ]; then
    say "spark: resolving the connector jars from Maven Central"
    rm -rf "$(spark_jars)"; mkdir -p "$(spark_jars)"
    mvn -q -f "$DEVD/spark-pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$(spark_jars)" >>"$STATE/logs/spark-install.log" 2>&1 \
      || die "spark: mvn failed; see $STATE/logs/spark-install.log"
    touch "$marker"
  fi
}

# Ready means a real Spark Connect client runs a query on the server.
spark_ready() {
  pid_alive spark || return 1
  timeout 60 "$(s3_venv)/bin/python" - "$(spark_where)" <<'PY' >/dev/null 2>&1
import sys
from pyspark.sql import SparkSession
spark = SparkSession.builder.remote(sys.argv[1]).getOrCreate()
assert spark.range(3).count() == 3
PY
}

spark_start() {
  local log="$STATE/logs/spark.log" home dir="$STATE/spark"
  home="$(spark_home)"
  [ -n "$home" ] || die "spark: PySpark is not installed (scripts/dev-env up spark installs it)"
  mkdir -p "$dir/warehouse" "$dir/tmp"
  # They go on the driver's class path too, where java.sql.DriverManager finds the JDBC drivers.
  # A library PySpark already has (Spark's own, Hadoop, Scala, protobuf) is never loaded a
  # second time, in whatever version the connectors asked for.
  local jars=() j artifact
  for j in "$(spark_jars)"/*.jar; do
    artifact="$(basename "$j" | sed -E 's/-[0-9][^-]*(-[A-Za-z0-9.]+)?\.jar$//')"
    compgen -G "$home/jars/$artifact-[0-9]*.jar" >/dev/null || jars+=("$j")
  done
  if ! pid_alive spark; then
    # The UI (loopback only) serves the stage metrics scripts/bench-engines reads.
    SPARK_LOCAL_IP=127.0.0.1 SPARK_HOME="$home" nohup "$home/bin/spark-submit" \
      --class org.apache.spark.sql.connect.service.SparkConnectServer \
      --name "pipectl Spark Connect server" --master 'local[2]' \
      --driver-memory 2g \
      --jars "$(IFS=,; echo "${jars[*]}")" \
      --driver-class-path "$(IFS=:; echo "${jars[*]}")" \
      --conf spark.connect.grpc.binding.address=127.0.0.1 \
      --conf "spark.connect.grpc.binding.port=$(spark_port)" \
      --conf spark.ui.enabled=true --conf "spark.ui.port=${SPARK_UI_PORT:-55040}" \
      --conf spark.driver.host=127.0.0.1 --conf spark.driver.bindAddress=127.0.0.1 \
      --conf spark.sql.shuffle.partitions=4 \
      --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension \
      --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog \
      --conf "spark.sql.warehouse.dir=$dir/warehouse" \
      --conf "spark.local.dir=$dir/tmp" \
      >>"$log" 2>&1 &
    echo $! >"$STATE/run/spark.pid"
  fi
  wait_for spark "$log" 180 spark_ready
}

spark_stop() { stop_pid spark; }
