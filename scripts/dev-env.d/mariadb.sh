# MariaDB (the MySQL protocol) from Debian's packages.

mariadb_where() { echo "127.0.0.1:$MYSQL_PORT db=$MYSQL_DATABASE"; }
mariadb_sock() { echo "$STATE/run/mariadb.sock"; }

mariadb_install() {
  command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || apt_install mariadb-server mariadb-client
}

mariadb_ready() {
  command -v mariadb-admin >/dev/null && mariadb-admin --protocol=tcp -h 127.0.0.1 -P "$MYSQL_PORT" \
    -u "$MYSQL_USER" -p"$MYSQL_PASSWORD" --connect-timeout=2 ping
}

mariadb_start() {
  local dir="$STATE/mariadb" log="$STATE/logs/mariadb.log"
  mkdir -p "$dir"
  if [ ! -d "$dir/mysql" ]; then
    mariadb-install-db --user="$(id -un)" --datadir="$dir" --auth-root-authentication-method=socket \
      --skip-test-db >>"$log" 2>&1 || die "mariadb: install-db failed; see $log"
  fi
  # TLS from the local CA (a copy of the key the server's user can read); LOAD DATA LOCAL on.
  local_tls_certs "$log"
  mkdir -p "$STATE/mariadb-tls"
  cp "$STATE/postgres-tls/server.crt" "$STATE/postgres-tls/server.key" "$STATE/postgres-tls/ca.crt" "$STATE/mariadb-tls/"
  if ! pid_alive mariadb; then
    nohup /usr/sbin/mariadbd --no-defaults --user="$(id -un)" --datadir="$dir" --port="$MYSQL_PORT" \
      --bind-address=127.0.0.1 --socket="$(mariadb_sock)" --pid-file="$STATE/run/mariadb.pid" \
      --log-error="$log" --skip-name-resolve --innodb-buffer-pool-size=256M --local-infile=1 \
      --ssl-ca="$STATE/mariadb-tls/ca.crt" --ssl-cert="$STATE/mariadb-tls/server.crt" \
      --ssl-key="$STATE/mariadb-tls/server.key" >>"$log" 2>&1 &
    echo $! >"$STATE/run/mariadb.pid"
  fi
  wait_for mariadb "$log" 60 env -u MYSQL_HOST -u MYSQL_TCP_PORT mariadb-admin --protocol=socket --socket="$(mariadb_sock)" -u root ping
  mariadb_root >>"$log" 2>&1 <<SQL || die "mariadb: creating the user and database failed; see $log"
CREATE DATABASE IF NOT EXISTS \`$MYSQL_DATABASE\`;
CREATE USER IF NOT EXISTS '$MYSQL_USER'@'%' IDENTIFIED BY '$MYSQL_PASSWORD';
ALTER USER '$MYSQL_USER'@'%' IDENTIFIED BY '$MYSQL_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO '$MYSQL_USER'@'%';
FLUSH PRIVILEGES;
SQL
  wait_for mariadb "$log" 30 mariadb_ready
}

# After every `up`: a server started before TLS was configured here is restarted with it.
mariadb_post_start() {
  local ssl
  ssl="$(mariadb_root -N -e 'SELECT @@have_ssl' 2>/dev/null || true)"
  if [ "$ssl" != "YES" ]; then
    say "mariadb: restarting with TLS (have_ssl was '${ssl:-?}')"
    mariadb_stop
    mariadb_start
  fi
}

mariadb_stop() {
  env -u MYSQL_HOST -u MYSQL_TCP_PORT mariadb-admin --protocol=socket --socket="$(mariadb_sock)" -u root shutdown >/dev/null 2>&1 || true
  stop_pid mariadb
}

# The mariadb client as root over the local socket (seeding). MYSQL_HOST, exported by
# `scripts/dev-env env`, would make the client use TCP, where root cannot log in.
mariadb_root() { env -u MYSQL_HOST -u MYSQL_TCP_PORT mariadb --protocol=socket --socket="$(mariadb_sock)" -u root "$@"; }
