# A Vault-API server: RustyVault (crates.io `rusty_vault`, binary `rvault`), file storage, TLS
# off on loopback. It serves KV v1 only (the compose environment's real Vault serves KV v2).
# Initialised once; the unseal key and root token are kept in $STATE/vault (mode 600).

RVAULT_VERSION=0.2.1
rvault_bin() {
  if command -v rvault >/dev/null; then command -v rvault; else echo "$CACHE/tools/bin/rvault"; fi
}
vault_where() { echo "http://127.0.0.1:$VAULT_PORT kv=$VAULT_KV_MOUNT (v1)"; }
vault_url() { echo "http://127.0.0.1:$VAULT_PORT/v1/$1"; }

vault_install() {
  [ -x "$(rvault_bin)" ] && return 0
  dpkg -s libssl-dev >/dev/null 2>&1 && command -v pkg-config >/dev/null || apt_install libssl-dev pkg-config
  say "vault: building RustyVault $RVAULT_VERSION from crates.io (about 15 minutes on two cores, once)"
  cargo install rusty_vault --version "$RVAULT_VERSION" --locked --root "$CACHE/tools" \
    >"$STATE/logs/vault-install.log" 2>&1 || die "vault: cargo install failed; see $STATE/logs/vault-install.log"
}

vault_token() { cat "$STATE/vault/root_token"; }

# Ready means initialised, unsealed and answering an authenticated KV read.
vault_ready() {
  [ -f "$STATE/vault/root_token" ] || return 1
  curl -sf -o /dev/null -H "X-Vault-Token: $(vault_token)" "$(vault_url sys/mounts)"
}

vault_api() { # METHOD PATH [JSON]
  local method="$1" path="$2" body="${3:-}"
  if [ -n "$body" ]; then
    curl -sS -f -X "$method" -H "X-Vault-Token: $(vault_token)" -H 'Content-Type: application/json' \
      -d "$body" "$(vault_url "$path")"
  else
    curl -sS -f -X "$method" -H "X-Vault-Token: $(vault_token)" "$(vault_url "$path")"
  fi
}

vault_start() {
  local dir="$STATE/vault" log="$STATE/logs/vault.log"
  mkdir -p "$dir/data"
  chmod 700 "$dir"
  cat >"$dir/config.hcl" <<HCL
storage "file" {
  path = "$dir/data"
}
listener "tcp" {
  address = "127.0.0.1:$VAULT_PORT"
  tls_disable = true
}
api_addr = "http://127.0.0.1:$VAULT_PORT"
log_level = "warn"
HCL
  if ! pid_alive vault; then
    nohup "$(rvault_bin)" server --config "$dir/config.hcl" >>"$log" 2>&1 &
    echo $! >"$STATE/run/vault.pid"
  fi
  wait_for vault "$log" 30 curl -s -o /dev/null "$(vault_url sys/seal-status)"
  if [ ! -f "$dir/root_token" ]; then
    local init
    init="$(curl -sS -f -X PUT -d '{"secret_shares": 1, "secret_threshold": 1}' "$(vault_url sys/init)")" \
      || die "vault: sys/init failed; see $log"
    (umask 077
     python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["keys"][0])' <<<"$init" >"$dir/unseal_key"
     python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["root_token"])' <<<"$init" >"$dir/root_token")
  fi
  curl -sS -f -o /dev/null -X PUT -d "{\"key\": \"$(cat "$dir/unseal_key")\"}" "$(vault_url sys/unseal)" \
    || die "vault: unseal failed; see $log"
  wait_for vault "$log" 30 vault_ready
  vault_configure >>"$log" 2>&1 || die "vault: configuring mounts, policy and AppRole failed; see $log"
}

# The KV mount, a read-only policy for pipectl, and an AppRole role using it.
vault_configure() {
  local dir="$STATE/vault"
  if ! vault_api GET sys/mounts | grep -q "\"$VAULT_KV_MOUNT/\""; then
    vault_api POST "sys/mounts/$VAULT_KV_MOUNT" '{"type": "kv"}' >/dev/null
  fi
  local policy="path \\\"$VAULT_KV_MOUNT/pipectl/*\\\" { capabilities = [\\\"read\\\", \\\"list\\\"] }"
  vault_api PUT sys/policies/acl/pipectl-read "{\"policy\": \"$policy\"}" >/dev/null \
    || vault_api PUT sys/policy/pipectl-read "{\"policy\": \"$policy\"}" >/dev/null
  if ! vault_api GET sys/auth | grep -q '"approle/"'; then
    vault_api POST sys/auth/approle '{"type": "approle"}' >/dev/null
  fi
  vault_api POST auth/approle/role/pipectl '{"token_policies": "pipectl-read", "token_ttl": 3600}' >/dev/null
  (umask 077
   vault_api GET auth/approle/role/pipectl/role-id \
     | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["role_id"])' >"$dir/role_id"
   vault_api POST auth/approle/role/pipectl/secret-id '{}' \
     | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["secret_id"])' >"$dir/secret_id")
}

vault_stop() { stop_pid vault; }

# vault_put PATH key=value...: writes a KV v1 secret.
vault_put() {
  local path="$1"; shift
  local json
  json="$(python3 -c 'import json,sys; print(json.dumps(dict(a.split("=",1) for a in sys.argv[1:])))' "$@")"
  vault_api POST "$VAULT_KV_MOUNT/$path" "$json" >/dev/null
}
