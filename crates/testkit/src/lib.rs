//! Test support for integration tests against the local services started by `scripts/dev-env`.
//!
//! - [`service`] reads a service's endpoint from the environment (`scripts/dev-env env` prints
//!   the variables). When it is not configured, the test fails with a clear message under CI
//!   (`CI=true`) and is skipped with a message elsewhere; it never passes silently.
//! - [`unique`] makes table, topic, bucket and Vault path names unique per test, so tests run in
//!   parallel; [`Cleanup`] removes what a test created.
//! - [`vault_secret`] reads credentials from the Vault-API server, as pipelines do.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

/// The services of the local environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Postgres,
    Mysql,
    Kafka,
    Vault,
    S3,
}

impl Service {
    /// Variables that must be set for the service to count as configured.
    fn required(self) -> &'static [&'static str] {
        match self {
            Service::Postgres => &["POSTGRES_HOST", "POSTGRES_PORT", "VAULT_ADDR", "VAULT_TOKEN"],
            Service::Mysql => &["MYSQL_HOST", "MYSQL_PORT", "VAULT_ADDR", "VAULT_TOKEN"],
            Service::Kafka => &["KAFKA_BOOTSTRAP_SERVERS", "VAULT_ADDR", "VAULT_TOKEN"],
            Service::Vault => &["VAULT_ADDR", "VAULT_TOKEN"],
            Service::S3 => &["S3_ENDPOINT", "S3_BUCKET", "VAULT_ADDR", "VAULT_TOKEN"],
        }
    }
}

/// The environment of a configured service.
#[derive(Debug, Clone)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// A variable; configured services have all their required ones.
    pub fn get(&self, key: &str) -> &str {
        self.vars.get(key).map(String::as_str).unwrap_or_default()
    }

    /// The KV mount of pipectl's secrets (`secret` unless VAULT_KV_MOUNT says otherwise).
    pub fn kv_mount(&self) -> String {
        std::env::var("VAULT_KV_MOUNT").unwrap_or_else(|_| "secret".into())
    }
}

/// Whether this run is CI, where a missing service is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The service's environment, or `None` (with a message) when the test should be skipped.
/// Under CI a missing service panics: a test must never pass without its service.
pub fn service(s: Service) -> Option<Env> {
    let mut vars = HashMap::new();
    let mut missing = Vec::new();
    for key in s.required() {
        match std::env::var(key) {
            Ok(v) if !v.is_empty() => {
                vars.insert(key.to_string(), v);
            }
            _ => missing.push(*key),
        }
    }
    for (k, v) in std::env::vars() {
        vars.entry(k).or_insert(v);
    }
    if missing.is_empty() {
        return Some(Env { vars });
    }
    let message = format!(
        "{s:?} is not configured (missing {}): run `scripts/dev-env up` and `eval \"$(scripts/dev-env env)\"`, or use scripts/test",
        missing.join(", ")
    );
    if in_ci() {
        panic!("{message}");
    }
    // Straight to the stderr handle: libtest captures `eprintln!`, and a skip must be seen.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {message}");
    None
}

/// A name unique to this test process and call: `prefix_<pid>_<n>_<nanos>` (lower case, `[a-z0-9_]`).
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

/// Runs its closure when dropped, so that a failing test still cleans up.
pub struct Cleanup<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Cleanup<F> {
    pub fn new(f: F) -> Self {
        Cleanup(Some(f))
    }
}

impl<F: FnOnce()> Drop for Cleanup<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// A Vault client with the environment's address and token.
pub fn vault_client(env: &Env) -> VaultClient {
    let settings = VaultClientSettingsBuilder::default()
        .address(env.get("VAULT_ADDR"))
        .token(env.get("VAULT_TOKEN"))
        .build()
        .expect("vault settings");
    VaultClient::new(settings).expect("vault client")
}

/// Reads the fields of a KV v1 secret (`pipectl/postgres` under the KV mount).
pub async fn vault_secret(env: &Env, path: &str) -> HashMap<String, String> {
    let client = vault_client(env);
    let data: HashMap<String, serde_json::Value> = vaultrs::kv1::get(&client, &env.kv_mount(), path)
        .await
        .unwrap_or_else(|e| panic!("reading {}/{path} from Vault: {e}", env.kv_mount()));
    data.into_iter()
        .map(|(k, v)| (k, v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
        .collect()
}

impl Env {
    /// The same environment with one variable changed (e.g. another Vault token).
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.vars.insert(key.to_string(), value.to_string());
        self
    }
}
