#!/bin/sh
# Writes the credentials of .env into the compose Vault (KV v2) at the paths pipectl reads.
# Runs inside the hashicorp/vault image; the same paths, field names and (host-side) addresses
# as scripts/dev-env, since pipelines run on the host.
set -eu
export VAULT_TOKEN
m="${VAULT_KV_MOUNT:-secret}"
vault kv put "$m/pipectl/postgres" host=127.0.0.1 port="$POSTGRES_PORT" database="$POSTGRES_DB" \
  username="$POSTGRES_USER" password="$POSTGRES_PASSWORD"
vault kv put "$m/pipectl/mysql" host=127.0.0.1 port="$MYSQL_PORT" database="$MYSQL_DATABASE" \
  username="$MYSQL_USER" password="$MYSQL_PASSWORD"
vault kv put "$m/pipectl/s3" access_key_id="$AWS_ACCESS_KEY_ID" secret_access_key="$AWS_SECRET_ACCESS_KEY" \
  region="$S3_REGION" endpoint="http://127.0.0.1:$S3_PORT"
vault kv put "$m/pipectl/kafka" bootstrap_servers="127.0.0.1:$KAFKA_PORT" security_protocol=PLAINTEXT \
  schema_registry_url="http://127.0.0.1:$SCHEMA_REGISTRY_PORT/apis/ccompat/v7"
vault kv put "$m/pipectl/delta" storage_backend=s3 aws_access_key_id="$AWS_ACCESS_KEY_ID" \
  aws_secret_access_key="$AWS_SECRET_ACCESS_KEY" aws_region="$S3_REGION" \
  aws_endpoint_url="http://127.0.0.1:$S3_PORT" aws_allow_http=true
echo "vault-seed: wrote $m/pipectl/{postgres,mysql,s3,kafka,delta}"
