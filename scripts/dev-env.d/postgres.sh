# PostgreSQL from Debian's packages, run as the postgres user when started by root.

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
pg_as() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
postgres_where() { echo "127.0.0.1:$POSTGRES_PORT db=$POSTGRES_DB"; }

postgres_install() {
  [ -n "$(pg_bin)" ] && command -v psql >/dev/null || apt_install postgresql
}

postgres_ready() {
  [ -n "$(pg_bin)" ] && "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$POSTGRES_PORT"
}

postgres_start() {
  local bin dir log sock
  bin="$(pg_bin)"; dir="$STATE/postgres"; log="$STATE/logs/postgres.log"; sock="$STATE/run/pg"
  mkdir -p "$dir" "$sock"
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir" "$sock" && touch "$log" && chown postgres "$log"
  if [ ! -f "$dir/PG_VERSION" ]; then
    pg_as "$bin/initdb" -D "$dir" -U postgres --auth-local=trust --auth-host=scram-sha-256 >>"$log" 2>&1 \
      || die "postgres: initdb failed; see $log"
  fi
  pg_as "$bin/pg_ctl" -D "$dir" -l "$log" -w -t 60 \
    -o "-p $POSTGRES_PORT -k $sock -c listen_addresses=127.0.0.1" start >/dev/null \
    || die "postgres did not start; see its log: $log"
  wait_for postgres "$log" 60 postgres_ready
  pg_as psql -h "$sock" -p "$POSTGRES_PORT" -U postgres -v ON_ERROR_STOP=1 -q -d postgres >>"$log" 2>&1 <<SQL \
    || die "postgres: creating the user and database failed; see $log"
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$POSTGRES_USER') THEN
    CREATE ROLE "$POSTGRES_USER" LOGIN;
  END IF;
END \$\$;
ALTER ROLE "$POSTGRES_USER" WITH LOGIN CREATEDB PASSWORD '$POSTGRES_PASSWORD';
SELECT 'CREATE DATABASE "$POSTGRES_DB" OWNER "$POSTGRES_USER"'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$POSTGRES_DB')\gexec
SQL
}

postgres_stop() {
  local bin; bin="$(pg_bin)"
  [ -n "$bin" ] && [ -f "$STATE/postgres/postmaster.pid" ] && pg_as "$bin/pg_ctl" -D "$STATE/postgres" -m fast -w stop >/dev/null 2>&1
  return 0
}

# psql as the superuser over the local socket (seeding).
postgres_psql() { pg_as psql -h "$STATE/run/pg" -p "$POSTGRES_PORT" -U postgres -v ON_ERROR_STOP=1 -q "$@"; }

# After every `up` (started now or already running): TLS with the local CA's certificate for
# "localhost" (local_tls_certs), switched on with ALTER SYSTEM and a reload, so that a server
# already running picks it up too. Plain connections keep working (tls_mode "prefer" is the
# default, "disable" opts out).
postgres_post_start() {
  local dir log="$STATE/logs/postgres.log"
  local_tls_certs "$log"
  dir="$STATE/postgres-tls"
  if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$dir/server.key" "$dir/server.crt"; fi
  postgres_psql -d postgres >>"$log" 2>&1 <<SQL || die "postgres: switching TLS on failed; see $log"
ALTER SYSTEM SET ssl = on;
ALTER SYSTEM SET ssl_cert_file = '$dir/server.crt';
ALTER SYSTEM SET ssl_key_file = '$dir/server.key';
SELECT pg_reload_conf();
SQL
}
