//! The Vault provider against the local Vault-API server (KV v1): token and AppRole logins,
//! mount detection, and every failure with its message.

use pipeline_credentials::vault::{Backoff, VaultAuth};
use pipeline_credentials::{
    CredentialError, CredentialProvider, ExposeSecret, FieldSources, JdbcConfig, SecretRef,
    SecretString, VaultProvider, VaultSettings,
};
use pipeline_testkit::{Cleanup, Env, Service, service, unique, vault_client};
use std::collections::HashMap;
use std::time::Duration;

fn settings(env: &Env) -> VaultSettings {
    VaultSettings::token(env.get("VAULT_ADDR"), env.get("VAULT_TOKEN"))
}

/// Writes a secret under a unique path and removes it when the guard drops.
async fn seed(env: &Env, fields: &[(&str, &str)]) -> (String, Cleanup<impl FnOnce()>) {
    let mount = env.kv_mount();
    let rel = unique("pipectl-test/cred");
    let map: HashMap<&str, &str> = fields.iter().copied().collect();
    vault_client(env)
        .write(&mount, &rel, &map)
        .await
        .expect("seed a secret");
    let cleanup = Cleanup::new({
        let (env, mount, rel) = (env.clone(), mount.clone(), rel.clone());
        move || {
            pipeline_testkit::run_to_completion(async move {
                let _ = vault_client(&env).delete(&mount, &rel).await;
            })
        }
    });
    (format!("{mount}/{rel}"), cleanup)
}

const DB_FIELDS: &[(&str, &str)] = &[
    ("host", "127.0.0.1"),
    ("port", "5432"),
    ("database", "shop"),
    ("username", "app"),
    ("password", "live-test-password-9"),
];

#[tokio::test]
async fn token_reads_kv_v1_with_the_version_detected_or_given() {
    let Some(env) = service(Service::Vault) else {
        return;
    };
    let (path, _guard) = seed(&env, DB_FIELDS).await;
    let vault = VaultProvider::new(settings(&env)).unwrap();
    for version in [None, Some(1)] {
        let fields = vault
            .fetch(&SecretRef::new(&path).with_kv_version(version))
            .await
            .unwrap();
        let jdbc = JdbcConfig::from_sources(
            FieldSources::new("db", &Default::default(), Some(&fields)),
            5432,
        )
        .unwrap();
        assert_eq!(jdbc.username, "app");
        assert_eq!(jdbc.password.expose_secret(), "live-test-password-9");
        assert!(!format!("{fields:?} {jdbc:?}").contains("live-test-password-9"));
    }
}

#[tokio::test]
async fn approle_logs_in_once_and_reads() {
    let Some(env) = service(Service::Vault) else {
        return;
    };
    let read = |var: &str| {
        let file = std::env::var(var).unwrap_or_else(|_| panic!("{var} (scripts/dev-env env)"));
        SecretString::from(std::fs::read_to_string(file).unwrap().trim().to_string())
    };
    let (path, _guard) = seed(&env, DB_FIELDS).await;
    let mut s = settings(&env);
    s.auth = VaultAuth::AppRole {
        mount: "approle".into(),
        role_id: read("VAULT_APPROLE_ROLE_ID_FILE"),
        secret_id: read("VAULT_APPROLE_SECRET_ID_FILE"),
    };
    let vault = VaultProvider::new(s).unwrap();
    assert_eq!(
        vault.describe(),
        format!("Vault at {} (approle auth)", env.get("VAULT_ADDR"))
    );
    let fields = vault.fetch(&SecretRef::new(&path)).await.unwrap();
    assert_eq!(fields.plain("database").as_deref(), Some("shop"));
    vault.fetch(&SecretRef::new(&path)).await.unwrap();
    assert_eq!(vault.logins(), 1, "the AppRole token is reused while valid");
}

#[tokio::test]
async fn a_bad_secret_id_is_a_login_error_that_does_not_echo_it() {
    let Some(env) = service(Service::Vault) else {
        return;
    };
    let mut s = settings(&env);
    s.auth = VaultAuth::AppRole {
        mount: "approle".into(),
        role_id: SecretString::from("no-such-role-id-77".to_string()),
        secret_id: SecretString::from("no-such-secret-id-77".to_string()),
    };
    let err = VaultProvider::new(s)
        .unwrap()
        .fetch(&SecretRef::new("secret/pipectl/postgres"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "Vault login at {} failed (approle): HTTP 400",
            env.get("VAULT_ADDR")
        )),
        "{text}"
    );
    assert!(!text.contains("no-such-secret-id-77") && !text.contains("no-such-role-id-77"));
    assert!(!err.retryable());
}

#[tokio::test]
async fn a_revoked_token_is_permission_denied_naming_the_path() {
    let Some(env) = service(Service::Vault) else {
        return;
    };
    // A child token, revoked: every read with it is refused with 403.
    let http = reqwest::Client::new();
    let addr = env.get("VAULT_ADDR");
    let created = http
        .post(format!("{addr}/v1/auth/token/create"))
        .header("X-Vault-Token", env.get("VAULT_TOKEN"))
        .body(r#"{"policies": ["pipectl-read"], "ttl": "1h"}"#)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    let child = created["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    // Vault's documented form takes the token in the body; RustyVault takes it in the path.
    let root = env.get("VAULT_TOKEN");
    let mut revoked = http
        .post(format!("{addr}/v1/auth/token/revoke"))
        .header("X-Vault-Token", root)
        .body(serde_json::json!({ "token": child }).to_string())
        .send()
        .await
        .unwrap();
    if !revoked.status().is_success() {
        revoked = http
            .post(format!("{addr}/v1/auth/token/revoke/{child}"))
            .header("X-Vault-Token", root)
            .send()
            .await
            .unwrap();
    }
    assert!(
        revoked.status().is_success(),
        "revoke: {}",
        revoked.status()
    );

    let err = VaultProvider::new(VaultSettings::token(addr, &child))
        .unwrap()
        .fetch(&SecretRef::new("secret/pipectl/postgres").with_kv_version(Some(1)))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "permission denied for secret/pipectl/postgres: check the token's policy"
    );
    assert!(!err.to_string().contains(&child));
}

#[tokio::test]
async fn missing_path_field_and_wrong_version_each_say_so() {
    let Some(env) = service(Service::Vault) else {
        return;
    };
    let vault = VaultProvider::new(settings(&env)).unwrap();
    let missing = format!("{}/{}", env.kv_mount(), unique("pipectl-test/none"));
    let err = vault.fetch(&SecretRef::new(&missing)).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("no secret at {missing} (mount {}/, KV v1)", env.kv_mount())
    );
    assert!(matches!(err, CredentialError::NotFound { .. }));

    let (path, _guard) = seed(&env, &[("host", "h"), ("database", "d"), ("username", "u")]).await;
    let err = vault
        .fetch(&SecretRef::new(&path).with_kv_version(Some(2)))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}/ is a KV version 1 mount, but the credentials for {path} ask for version 2",
            env.kv_mount()
        )
    );

    let fields = vault.fetch(&SecretRef::new(&path)).await.unwrap();
    let err = JdbcConfig::from_sources(
        FieldSources::new("db", &Default::default(), Some(&fields)),
        5432,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("JDBC credentials at {path} lack the field \"password\"")
    );
}

#[tokio::test]
async fn an_unreachable_vault_is_retried_then_named_without_the_token() {
    // A port nobody listens on: bind, note the port, close.
    let port = pipeline_testkit::closed_port();
    let addr = format!("http://127.0.0.1:{port}");
    let mut s = VaultSettings::token(&addr, "token-that-must-not-show-3");
    s.backoff = Backoff {
        attempts: 3,
        base: Duration::from_millis(10),
        max: Duration::from_millis(20),
    };
    let started = std::time::Instant::now();
    let err = VaultProvider::new(s)
        .unwrap()
        .fetch(&SecretRef::new("secret/pipectl/postgres"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "Vault at {addr} is unreachable while reading secret/pipectl/postgres (3 attempts): cannot connect"
        )),
        "{text}"
    );
    assert!(err.retryable());
    assert!(!text.contains("token-that-must-not-show-3"));
    assert!(
        started.elapsed() >= Duration::from_millis(30),
        "it waited between tries"
    );
}
