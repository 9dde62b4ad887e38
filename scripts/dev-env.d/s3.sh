# An S3-API server: moto in server mode (PyPI `moto[server]`), in a virtualenv in the cache,
# with the Python libraries the seeding and the tests use (deltalake: an independent Delta reader).

MOTO_VERSION=5.2.5
s3_venv() { echo "$CACHE/py-venv"; }
s3_where() { echo "http://127.0.0.1:$S3_PORT bucket=$S3_BUCKET"; }

s3_install() {
  local v; v="$(s3_venv)"
  if [ ! -x "$v/bin/moto_server" ] || ! "$v/bin/python" -c 'import fastavro, pyarrow, kafka, boto3, check_jsonschema, deltalake' 2>/dev/null; then
    say "s3: installing moto[server] $MOTO_VERSION and the seeding libraries (PyPI) into $v"
    python3 -m venv "$v" || die "s3: python3 -m venv failed (install python3-venv)"
    "$v/bin/pip" install -q "moto[server]==$MOTO_VERSION" "fastavro==1.13.1" "kafka-python==3.0.12" "pyarrow" \
      "check-jsonschema==0.39.0" "deltalake==1.6.6" \
      >"$STATE/logs/s3-install.log" 2>&1 || die "s3: pip install failed; see $STATE/logs/s3-install.log"
  fi
}

s3_ready() {
  curl -sf -o /dev/null "http://127.0.0.1:$S3_PORT/$S3_BUCKET"
}

s3_start() {
  local log="$STATE/logs/s3.log"
  if ! pid_alive s3; then
    nohup "$(s3_venv)/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >>"$log" 2>&1 &
    echo $! >"$STATE/run/s3.pid"
  fi
  wait_for s3 "$log" 60 curl -sf -o /dev/null "http://127.0.0.1:$S3_PORT/moto-api/"
  curl -sf -o /dev/null -X PUT "http://127.0.0.1:$S3_PORT/$S3_BUCKET" || die "s3: creating bucket $S3_BUCKET failed; see $log"
  wait_for s3 "$log" 10 s3_ready
}

s3_stop() { stop_pid s3; }
