# Shared set-up of the benchmark scripts (sourced): database clients with the credentials from
# Vault (never printed), the mocked tables they read, and Kafka topics. Needs `eval "$(scripts/dev-env env)"`.

# PG* variables for psql from Vault's pipectl/postgres.
pg_env() {
  local creds
  creds="$(curl -sf -H "X-Vault-Token: $VAULT_TOKEN" "$VAULT_ADDR/v1/$VAULT_KV_MOUNT/pipectl/postgres")"
  _field() { python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][sys.argv[1]])' "$1" <<<"$creds"; }
  export PGHOST="$(_field host)" PGPORT="$(_field port)" PGDATABASE="$(_field database)" PGUSER="$(_field username)"
  PGPASSWORD="$(_field password)"; export PGPASSWORD
}

# MYSQL_PWD and the array `my` (the mysql client command) from Vault's pipectl/mysql.
mysql_env() {
  local creds
  creds="$(curl -sf -H "X-Vault-Token: $VAULT_TOKEN" "$VAULT_ADDR/v1/$VAULT_KV_MOUNT/pipectl/mysql")"
  _field() { python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][sys.argv[1]])' "$1" <<<"$creds"; }
  MYSQL_PWD="$(_field password)"; export MYSQL_PWD
  my=(mysql --protocol=tcp -h "$(_field host)" -P "$(_field port)" -u "$(_field username)" "$(_field database)")
}

# The 10-column mocked orders table bench_orders_ROWS of user story 1, made once (pg_env first).
ensure_p1_table() {
  local rows="$1" table="bench_orders_$1" have
  have="$(psql -XAtqc "SELECT count(*) FROM $table" 2>/dev/null || echo 0)"
  [ "$have" = "$rows" ] && return 0
  echo "creating $table ($rows rows, 10 columns)..." >&2
  psql -Xq -v ON_ERROR_STOP=1 <<SQL
DROP TABLE IF EXISTS $table;
CREATE TABLE $table (id bigint PRIMARY KEY, customer_id integer, status text NOT NULL,
  amount numeric(12,2) NOT NULL, quantity integer NOT NULL, price double precision NOT NULL,
  created_at timestamptz NOT NULL, updated_at timestamp, note text, active boolean NOT NULL);
INSERT INTO $table SELECT g, CASE WHEN g % 97 = 0 THEN NULL ELSE 1 + (g * 7919) % 100000 END,
  (ARRAY['paid','pending','refunded','cancelled'])[1 + g % 4],
  round(((g * 48271) % 100000) / 100.0 - 50, 2), 1 + g % 9, ((g * 16807) % 10000) / 100.0,
  timestamptz '2025-01-01 00:00:00+00' + g * interval '1 second',
  CASE WHEN g % 5 = 0 THEN NULL ELSE timestamp '2025-06-01' + g * interval '2 seconds' END,
  'note ' || (g % 1000), g % 3 <> 0
FROM generate_series(1::bigint, $rows) g;
ANALYZE $table;
SQL
}

# The MySQL table bench_customers with N customers of user story 2, made once (mysql_env first).
ensure_bench_customers() {
  local n="$1"
  [ "$("${my[@]}" -N -e "SELECT COUNT(*) FROM bench_customers" 2>/dev/null || echo 0)" = "$n" ] && return 0
  python3 -c "
import sys
n = int(sys.argv[1])
print('DROP TABLE IF EXISTS bench_customers;')
print('CREATE TABLE bench_customers (customer_id INT PRIMARY KEY, country CHAR(2) NOT NULL);')
countries = ['FR', 'DE', 'US', 'GB', 'ES', 'IT']
for lo in range(1, n + 1, 10000):
    print('INSERT INTO bench_customers VALUES ' + ','.join(f\"({i},'{countries[i * 7 % 6]}')\" for i in range(lo, min(n, lo + 9999) + 1)) + ';')
" "$n" | "${my[@]}"
}

# topics create|delete NAME...: 4-partition topics on the local Kafka (kafka-python of the venv).
topics() {
  "${PIPECTL_CACHE:-$HOME/.cache/pipectl}/py-venv/bin/python" - "$KAFKA_BOOTSTRAP_SERVERS" "$@" <<'PY'
import sys, time
from kafka.admin import KafkaAdminClient, NewTopic
admin = KafkaAdminClient(bootstrap_servers=sys.argv[1])
names = sys.argv[3:]
existing = set(admin.list_topics())
gone = [n for n in names if n in existing]
if gone:
    admin.delete_topics(gone)
    time.sleep(2)
if sys.argv[2] == "create":
    admin.create_topics([NewTopic(n, num_partitions=4, replication_factor=1) for n in names])
PY
}
