# The local CA shared by the TLS listeners of the local services (PostgreSQL, MariaDB): made
# once in $STATE/postgres-tls (ca.crt, and server.crt/server.key for "localhost").
# `scripts/dev-env env` exports the CA as POSTGRES_CA_CERT and MYSQL_CA_CERT.

# local_tls_certs LOGFILE: makes the CA and the server certificate when missing.
local_tls_certs() {
  local dir="$STATE/postgres-tls" log="$1"
  if [ ! -f "$dir/server.crt" ]; then
    command -v openssl >/dev/null || apt_install openssl
    mkdir -p "$dir"
    (cd "$dir" && umask 077 \
      && openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=pipectl local CA" \
           -keyout ca.key -out ca.crt \
      && openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr \
      && printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >server.ext \
      && openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
           -extfile server.ext -out server.crt) >>"$log" 2>&1 \
      || die "making the local TLS certificates failed; see $log"
    chmod 644 "$dir/ca.crt" "$dir/server.crt"
  fi
  chmod 755 "$dir"
}
