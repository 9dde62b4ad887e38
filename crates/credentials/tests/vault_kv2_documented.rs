//! KV v2, namespaces, renewal and retries against the Vault HTTP API as its documentation gives
//! it (request paths and JSON bodies from developer.hashicorp.com/vault/api-docs), served by a
//! scripted HTTP server. The local Vault-API server speaks KV v1 only; the compose environment's
//! real Vault serves KV v2.

use pipeline_credentials::vault::{Backoff, VaultAuth};
use pipeline_credentials::{
    CredentialError, CredentialProvider, SecretRef, SecretString, VaultProvider, VaultSettings,
};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Script = dyn Fn(&Seen, usize) -> (u16, Value) + Send + Sync;

/// Serves `script(request, index)` on a loopback port; returns the address and the request log.
async fn serve(script: Arc<Script>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                let n = stream.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(i + 4);
                }
            };
            let Some(head_end) = head_end else { continue };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let mut lines = head.lines();
            let mut first = lines.next().unwrap_or_default().split(' ');
            let (method, path) = (
                first.next().unwrap_or_default(),
                first.next().unwrap_or_default(),
            );
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect();
            let length: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < head_end + length {
                let n = stream.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let request = Seen {
                method: method.to_string(),
                path: path.to_string(),
                headers,
                body: String::from_utf8_lossy(&buf[head_end..]).to_string(),
            };
            let index = {
                let mut l = seen.lock().unwrap();
                l.push(request.clone());
                l.len() - 1
            };
            let (status, body) = script(&request, index);
            let text = if body.is_null() {
                String::new()
            } else {
                body.to_string()
            };
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
        }
    });
    (addr, log)
}

fn paths(log: &Arc<Mutex<Vec<Seen>>>) -> Vec<String> {
    log.lock()
        .unwrap()
        .iter()
        .map(|s| format!("{} {}", s.method, s.path))
        .collect()
}

/// `GET /sys/internal/ui/mounts/:path` for a KV v2 mount at `secret/`.
fn ui_mount_v2() -> Value {
    json!({"request_id": "1", "lease_id": "", "renewable": false, "lease_duration": 0,
           "data": {"accessor": "kv_a1b2c3", "config": {"default_lease_ttl": 0, "max_lease_ttl": 0},
                    "description": "key/value secret storage", "external_entropy_access": false,
                    "local": false, "options": {"version": "2"}, "path": "secret/",
                    "seal_wrap": false, "type": "kv", "uuid": "9a1b"},
           "wrap_info": null, "warnings": null, "auth": null})
}

/// `GET /secret/data/:path` (KV v2 "Read Secret Version").
fn kv2_read(data: Value) -> Value {
    json!({"request_id": "2", "lease_id": "", "renewable": false, "lease_duration": 0,
           "data": {"data": data,
                    "metadata": {"created_time": "2018-03-22T02:24:06.945319214Z",
                                 "custom_metadata": {"owner": "jdoe"}, "deletion_time": "",
                                 "destroyed": false, "version": 2}},
           "wrap_info": null, "warnings": null, "auth": null})
}

/// `GET /auth/token/lookup-self` for a token with `ttl` seconds left.
fn lookup_self(ttl: u64, renewable: bool) -> Value {
    json!({"data": {"accessor": "8609694a", "creation_ttl": 2764800, "display_name": "token",
                    "entity_id": "", "expire_time": "2018-05-19T11:35:54.466476215-04:00",
                    "explicit_max_ttl": 0, "id": "ClientToken", "issue_time": "2018-04-17T11:35:54.466476078-04:00",
                    "meta": {}, "num_uses": 0, "orphan": false, "path": "auth/token/create",
                    "policies": ["default", "web"], "renewable": renewable, "ttl": ttl, "type": "service"}})
}

fn approle_login(lease: u64) -> Value {
    json!({"auth": {"renewable": true, "lease_duration": lease, "metadata": null,
                    "token_policies": ["default"], "accessor": "fd6c9a00",
                    "client_token": "5b1a0318-679c-9c45-e5c6-d1b9a9035d49"}})
}

fn settings(addr: &str) -> VaultSettings {
    let mut s = VaultSettings::token(addr, "s.documented-token");
    s.backoff = Backoff {
        attempts: 3,
        base: Duration::from_millis(5),
        max: Duration::from_millis(10),
    };
    s
}

#[tokio::test]
async fn kv_v2_is_detected_and_read_with_token_and_namespace() {
    let (addr, log) = serve(Arc::new(|req: &Seen, _| match req.path.as_str() {
        "/v1/auth/token/lookup-self" => (200, lookup_self(0, false)),
        "/v1/sys/internal/ui/mounts/secret/pipelines/shop_db" => (200, ui_mount_v2()),
        "/v1/secret/data/pipelines/shop_db" => (
            200,
            kv2_read(json!({"host": "db", "port": 5432, "password": "kv2-secret-value"})),
        ),
        _ => (404, json!({"errors": []})),
    }))
    .await;
    let mut s = settings(&addr);
    s.namespace = Some("team-a".into());
    let vault = VaultProvider::new(s).unwrap();
    let fields = vault
        .fetch(&SecretRef::new("secret/pipelines/shop_db"))
        .await
        .unwrap();
    assert_eq!(fields.plain("port").as_deref(), Some("5432"));
    assert_eq!(
        fields.plain("password").as_deref(),
        Some("kv2-secret-value")
    );
    assert_eq!(
        paths(&log),
        [
            "GET /v1/auth/token/lookup-self",
            "GET /v1/sys/internal/ui/mounts/secret/pipelines/shop_db",
            "GET /v1/secret/data/pipelines/shop_db",
        ]
    );
    for seen in log.lock().unwrap().iter() {
        assert_eq!(seen.header("x-vault-token"), Some("s.documented-token"));
        assert_eq!(seen.header("x-vault-namespace"), Some("team-a"));
    }
    // The mount is remembered: a second secret on it needs one request.
    let _ = vault.fetch(&SecretRef::new("secret/pipelines/other")).await;
    assert_eq!(
        paths(&log).last().unwrap(),
        "GET /v1/secret/data/pipelines/other"
    );
}

#[tokio::test]
async fn asking_v1_of_a_v2_mount_says_which_version_it_is() {
    // Detection refused (no capability on sys/); Vault answers a v1-style read with a warning.
    let (addr, _log) = serve(Arc::new(|req: &Seen, _| match req.path.as_str() {
        "/v1/auth/token/lookup-self" => (200, lookup_self(0, false)),
        "/v1/secret/pipelines/shop_db" => (404, json!({"errors": [], "warnings": ["Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate API endpoints to use. If using the Vault CLI, use 'vault kv get' for this operation."]})),
        "/v1/secret/data/pipelines/shop_db" => (200, kv2_read(json!({"a": "b"}))),
        _ => (403, json!({"errors": ["1 error occurred:\n\t* permission denied\n\n"]})),
    }))
    .await;
    let vault = VaultProvider::new(settings(&addr)).unwrap();
    let err = vault
        .fetch(&SecretRef::new("secret/pipelines/shop_db").with_kv_version(Some(1)))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "secret/ is a KV version 2 mount, but the credentials for secret/pipelines/shop_db ask for version 1"
    );
    // Without a version, the same server is read as KV v2.
    let fields = vault
        .fetch(&SecretRef::new("secret/pipelines/shop_db"))
        .await
        .unwrap();
    assert_eq!(fields.plain("a").as_deref(), Some("b"));
}

#[tokio::test]
async fn a_deleted_v2_version_is_not_found() {
    let (addr, _log) = serve(Arc::new(|req: &Seen, _| match req.path.as_str() {
        "/v1/sys/internal/ui/mounts/secret/gone/db" => (200, ui_mount_v2()),
        "/v1/secret/data/gone/db" => (404, json!({"data": {"data": null, "metadata": {"deletion_time": "2018-03-22T02:24:06Z", "destroyed": false, "version": 1}}})),
        _ => (200, lookup_self(0, false)),
    }))
    .await;
    let err = VaultProvider::new(settings(&addr))
        .unwrap()
        .fetch(&SecretRef::new("secret/gone/db"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no secret at secret/gone/db (mount secret/, KV v2)"
    );
}

#[tokio::test]
async fn approle_logs_in_again_near_expiry_and_after_a_refusal() {
    let (addr, log) = serve(Arc::new(|req: &Seen, i| match req.path.as_str() {
        // A one-second lease: every use after a third of a second needs a new login.
        "/v1/auth/approle-ci/login" => (200, approle_login(1)),
        "/v1/sys/internal/ui/mounts/kv/app" => (
            200,
            json!({"data": {"path": "kv/", "type": "kv", "options": {"version": "2"}}}),
        ),
        // The first read is refused (token revoked behind our back), the next ones succeed.
        "/v1/kv/data/app" if i == 2 => (403, json!({"errors": ["permission denied"]})),
        "/v1/kv/data/app" => (200, kv2_read(json!({"k": "v"}))),
        _ => (404, json!({"errors": []})),
    }))
    .await;
    let mut s = settings(&addr);
    s.auth = VaultAuth::AppRole {
        mount: "approle-ci".into(),
        role_id: SecretString::from("db02de05-fa39-4855-059b-67221c5c2f63".to_string()),
        secret_id: SecretString::from("6a174c20-f6de-a53c-74d2-6018fcceff64".to_string()),
    };
    let vault = VaultProvider::new(s).unwrap();
    vault.fetch(&SecretRef::new("kv/app")).await.unwrap();
    assert_eq!(vault.logins(), 2, "login, refused read, login again");
    tokio::time::sleep(Duration::from_millis(800)).await;
    vault.fetch(&SecretRef::new("kv/app")).await.unwrap();
    assert_eq!(vault.logins(), 3, "the token neared expiry");
    let log = log.lock().unwrap();
    let login = log
        .iter()
        .find(|s| s.path == "/v1/auth/approle-ci/login")
        .unwrap();
    let body: Value = serde_json::from_str(&login.body).unwrap();
    assert_eq!(body["role_id"], "db02de05-fa39-4855-059b-67221c5c2f63");
    assert_eq!(login.header("x-vault-token"), None);
}

#[tokio::test]
async fn a_renewable_token_is_renewed_near_expiry() {
    let (addr, log) = serve(Arc::new(|req: &Seen, _| match req.path.as_str() {
        "/v1/auth/token/lookup-self" => (200, lookup_self(1, true)),
        "/v1/auth/token/renew-self" => (200, json!({"auth": {"client_token": "ABCD", "policies": ["web"], "lease_duration": 3600, "renewable": true}})),
        "/v1/sys/internal/ui/mounts/secret/a" => (200, ui_mount_v2()),
        "/v1/secret/data/a" => (200, kv2_read(json!({"k": "v"}))),
        _ => (404, json!({"errors": []})),
    }))
    .await;
    let vault = VaultProvider::new(settings(&addr)).unwrap();
    vault.fetch(&SecretRef::new("secret/a")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    vault.fetch(&SecretRef::new("secret/a")).await.unwrap();
    assert!(
        paths(&log).contains(&"POST /v1/auth/token/renew-self".to_string()),
        "{:?}",
        paths(&log)
    );
}

#[tokio::test]
async fn a_sealed_or_overloaded_vault_is_retried() {
    let (addr, log) = serve(Arc::new(|req: &Seen, i| match req.path.as_str() {
        "/v1/auth/token/lookup-self" => (200, lookup_self(0, false)),
        "/v1/sys/internal/ui/mounts/secret/a" => (200, ui_mount_v2()),
        "/v1/secret/data/a" if i < 4 => (503, json!({"errors": ["Vault is sealed"]})),
        "/v1/secret/data/a" => (200, kv2_read(json!({"k": "v"}))),
        _ => (404, json!({"errors": []})),
    }))
    .await;
    let vault = VaultProvider::new(settings(&addr)).unwrap();
    vault.fetch(&SecretRef::new("secret/a")).await.unwrap();
    assert_eq!(paths(&log).len(), 5);

    // Always sealed: after the tries, an error naming the address, the path and the reason.
    let (addr, _log) = serve(Arc::new(|req: &Seen, _| match req.path.as_str() {
        "/v1/auth/token/lookup-self" => (200, lookup_self(0, false)),
        _ => (503, json!({"errors": ["Vault is sealed"]})),
    }))
    .await;
    let err = VaultProvider::new(settings(&addr))
        .unwrap()
        .fetch(&SecretRef::new("secret/a").with_kv_version(Some(2)))
        .await
        .unwrap_err();
    assert!(matches!(err, CredentialError::Unreachable { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "Vault at {addr} is unreachable while reading secret/a (3 attempts): HTTP 503: Vault is sealed"
        )
    );
}
