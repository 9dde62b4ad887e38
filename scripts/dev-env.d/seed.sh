# Seeding: Vault secrets from .env at the documented paths, and deterministic mocked data
# (tables, topics, objects). Idempotent: tables are recreated, topics and objects rewritten.
# SEED_ORDERS sets the size (default 100000 orders; customers = orders/10; ~2.5 items/order).

seed_all() {
  seed_vault
  seed_sql
  say "seeding Kafka topics and S3 objects"
  "$(s3_venv)/bin/python" "$DEVD/seed_data.py" >>"$STATE/logs/seed.log" 2>&1 \
    || die "seeding Kafka/S3 failed; see $STATE/logs/seed.log"
  say "seeded: Vault secrets under $VAULT_KV_MOUNT/pipectl/, tables customers/orders/order_items ($SEED_ORDERS orders), topics, objects"
}

seed_vault() {
  vault_put pipectl/postgres host=127.0.0.1 port="$POSTGRES_PORT" database="$POSTGRES_DB" \
    username="$POSTGRES_USER" password="$POSTGRES_PASSWORD"
  vault_put pipectl/mysql host=127.0.0.1 port="$MYSQL_PORT" database="$MYSQL_DATABASE" \
    username="$MYSQL_USER" password="$MYSQL_PASSWORD"
  vault_put pipectl/s3 access_key_id="$AWS_ACCESS_KEY_ID" secret_access_key="$AWS_SECRET_ACCESS_KEY" \
    region="$S3_REGION" endpoint="http://127.0.0.1:$S3_PORT"
  vault_put pipectl/kafka bootstrap_servers="127.0.0.1:$KAFKA_PORT" security_protocol=PLAINTEXT \
    schema_registry_url="http://127.0.0.1:$SCHEMA_REGISTRY_PORT/apis/ccompat/v7"
  vault_put pipectl/kafka_secure bootstrap_servers="localhost:$KAFKA_SASL_PORT" security_protocol=SASL_SSL \
    sasl_mechanism=SCRAM-SHA-512 username="$KAFKA_SASL_USER" password="$KAFKA_SASL_PASSWORD" \
    ca_cert="$STATE/postgres-tls/ca.crt"
  vault_put pipectl/delta storage_backend=s3 aws_access_key_id="$AWS_ACCESS_KEY_ID" \
    aws_secret_access_key="$AWS_SECRET_ACCESS_KEY" aws_region="$S3_REGION" \
    aws_endpoint_url="http://127.0.0.1:$S3_PORT" aws_allow_http=true
}

# The SQL of sql/*.sql with its {orders} and {customers} placeholders filled in.
seed_sql_text() {
  local n="$SEED_ORDERS" c=$(( SEED_ORDERS / 10 ))
  [ "$c" -ge 1 ] || c=1
  sed -e "s/{orders}/$n/g" -e "s/{customers}/$c/g" "$DEVD/sql/$1.sql"
}

seed_sql() {
  { echo "SET ROLE \"$POSTGRES_USER\";"; seed_sql_text postgres; } | postgres_psql -d "$POSTGRES_DB" \
    || die "seeding PostgreSQL failed"
  seed_sql_text mysql | mariadb_root "$MYSQL_DATABASE" || die "seeding MariaDB failed"
}
