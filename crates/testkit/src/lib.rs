//! Test support for integration tests against the local services started by `scripts/dev-env`.
//!
//! - [`service`] reads a service's endpoint from the environment (`scripts/dev-env env` prints
//!   the variables). When it is not configured, the test fails with a clear message under CI
//!   (`CI=true`) and is skipped with a message elsewhere; it never passes silently.
//! - [`unique`] makes table, topic, bucket and Vault path names unique per test, so tests run in
//!   parallel; [`Cleanup`] removes what a test created.
//! - [`Vault`] and [`vault_secret`] read and write the Vault-API server over its HTTP API (KV v1
//!   and v2, AppRole). `vaultrs` cannot be used: it requires a `request_id` in every response,
//!   which RustyVault omits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

/// The services of the local environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Postgres,
    Mysql,
    Kafka,
    /// The local Kafka's SASL_SSL listener (credentials at `pipectl/kafka_secure` in Vault).
    KafkaSecure,
    Vault,
    S3,
    /// The local Spark Connect server (`scripts/dev-env up spark`).
    Spark,
}

impl Service {
    /// Variables that must be set for the service to count as configured.
    fn required(self) -> &'static [&'static str] {
        match self {
            Service::Postgres => &[
                "POSTGRES_HOST",
                "POSTGRES_PORT",
                "VAULT_ADDR",
                "VAULT_TOKEN",
            ],
            Service::Mysql => &["MYSQL_HOST", "MYSQL_PORT", "VAULT_ADDR", "VAULT_TOKEN"],
            Service::Kafka => &["KAFKA_BOOTSTRAP_SERVERS", "VAULT_ADDR", "VAULT_TOKEN"],
            Service::KafkaSecure => &[
                "KAFKA_BOOTSTRAP_SERVERS",
                "KAFKA_SASL_BOOTSTRAP_SERVERS",
                "KAFKA_CA_CERT",
                "VAULT_ADDR",
                "VAULT_TOKEN",
            ],
            Service::Vault => &["VAULT_ADDR", "VAULT_TOKEN"],
            Service::S3 => &["S3_ENDPOINT", "S3_BUCKET", "VAULT_ADDR", "VAULT_TOKEN"],
            Service::Spark => &["SPARK_REMOTE", "VAULT_ADDR", "VAULT_TOKEN"],
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
    if s == Service::Spark && missing.is_empty() && !spark_answers(&vars["SPARK_REMOTE"]) {
        missing.push("a Spark Connect server answering at SPARK_REMOTE (scripts/dev-env up spark)");
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
    skip(&message);
    None
}

/// Whether something listens at the `sc://host:port` endpoint.
fn spark_answers(remote: &str) -> bool {
    let authority = remote
        .trim_start_matches("sc://")
        .split('/')
        .next()
        .unwrap_or_default();
    std::net::TcpStream::connect_timeout(
        &match authority.parse() {
            Ok(addr) => addr,
            Err(_) => return false,
        },
        std::time::Duration::from_secs(2),
    )
    .is_ok()
}

/// Prints `SKIPPED: message` straight to the stderr handle: libtest captures `eprintln!`, and a
/// skip must be seen (scripts/test counts these lines as skipped, not passed).
pub fn skip(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {message}");
}

/// The tool cache of `scripts/dev-env` (`PIPECTL_CACHE`, else `~/.cache/pipectl`).
pub fn cache_dir() -> std::path::PathBuf {
    match std::env::var("PIPECTL_CACHE") {
        Ok(dir) if !dir.is_empty() => dir.into(),
        _ => std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
            .join(".cache/pipectl"),
    }
}

/// A tool `scripts/dev-env` installs, or `None` with a skip message (a failure under CI).
fn dev_tool(path: std::path::PathBuf) -> Option<std::path::PathBuf> {
    if path.exists() {
        return Some(path);
    }
    let message = format!("no {} (run scripts/dev-env up)", path.display());
    if in_ci() {
        panic!("{message}");
    }
    skip(&message);
    None
}

/// The Python of the dev-env venv (boto3, pyarrow, kafka-python, fastavro): an independent
/// client to read back what pipectl wrote.
pub fn python() -> Option<std::path::PathBuf> {
    dev_tool(cache_dir().join("py-venv/bin/python"))
}

/// Runs a class of the local Kafka's own jars (`org.apache.kafka.tools.ConsoleProducer`, ...)
/// with `stdin`; `None` with a skip message when the jars are missing.
pub fn kafka_tool(class: &str, args: &[&str], stdin: &[u8]) -> Option<std::process::Output> {
    use std::io::Write;
    let libs = std::fs::read_dir(cache_dir())
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("libs"))
        .find(|p| {
            p.parent()
                .and_then(|d| d.file_name())
                .is_some_and(|n| n.to_string_lossy().starts_with("kafka-"))
                && p.is_dir()
        });
    let libs = dev_tool(libs.unwrap_or_else(|| cache_dir().join("kafka-VERSION/libs")))?;
    let mut child = std::process::Command::new("java")
        .args(["-Xmx256m", "-cp", &format!("{}/*", libs.display()), class])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting java for {class}: {e}"));
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin).expect("writing the tool's input");
    }
    Some(child.wait_with_output().expect("the tool's output"))
}

/// The repository root of the checkout under test. Read at run time (cargo sets
/// `CARGO_MANIFEST_DIR` for test processes): test binaries in a target directory shared by
/// several clones must look at the clone that runs them, not the one that compiled them.
pub fn repo_root() -> std::path::PathBuf {
    let manifest = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    let mut dir = std::path::PathBuf::from(manifest);
    while !dir.join(".env.example").exists() {
        if !dir.pop() {
            panic!("no repository root (with .env.example) above CARGO_MANIFEST_DIR");
        }
    }
    dir
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

/// Runs an async clean-up to completion from a `Drop`, on its own thread and runtime, so that it
/// works whether or not the dropping code runs inside a tokio runtime. Failures are ignored.
pub fn run_to_completion<F>(future: F)
where
    F: std::future::Future + Send + 'static,
{
    let _ = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(future);
        }
    })
    .join();
}

/// Drops a PostgreSQL table when the guard drops (the test passed or not).
pub fn drop_table_on_exit(env: &Env, table: &str) -> Cleanup<impl FnOnce() + use<>> {
    let (env, table) = (env.clone(), table.to_string());
    Cleanup::new(move || {
        run_to_completion(async move {
            let _ = postgres_client(&env)
                .await
                .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
                .await;
        })
    })
}

/// A loopback port nobody listens on (bound, noted, released).
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A minimal Vault HTTP API client for tests.
pub struct Vault {
    addr: String,
    token: String,
    http: reqwest::Client,
}

impl Vault {
    pub fn new(addr: &str, token: &str) -> Self {
        Vault {
            addr: addr.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, String> {
        let mut request = self
            .http
            .request(method, format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", &self.token);
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| format!("{path}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{path}: HTTP {}: {text}", status.as_u16()));
        }
        Ok(if text.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?
        })
    }

    /// The fields of a KV secret (v1, or v2's `data.data`).
    pub async fn read(&self, mount: &str, path: &str) -> Result<HashMap<String, String>, String> {
        let body = self
            .call(reqwest::Method::GET, &format!("{mount}/{path}"), None)
            .await?;
        let data = match body["data"].get("data") {
            Some(inner) if body["data"].get("metadata").is_some() => inner.clone(),
            _ => body["data"].clone(),
        };
        let map = data
            .as_object()
            .ok_or_else(|| format!("{mount}/{path}: no data"))?;
        Ok(map
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string()),
                )
            })
            .collect())
    }

    /// Writes a KV v1 secret.
    pub async fn write(
        &self,
        mount: &str,
        path: &str,
        fields: &HashMap<&str, &str>,
    ) -> Result<(), String> {
        self.call(
            reqwest::Method::POST,
            &format!("{mount}/{path}"),
            Some(serde_json::json!(fields)),
        )
        .await
        .map(|_| ())
    }

    pub async fn delete(&self, mount: &str, path: &str) -> Result<(), String> {
        self.call(reqwest::Method::DELETE, &format!("{mount}/{path}"), None)
            .await
            .map(|_| ())
    }

    /// Logs in with AppRole and returns the client token.
    pub async fn approle_login(
        &self,
        mount: &str,
        role_id: &str,
        secret_id: &str,
    ) -> Result<String, String> {
        let body = serde_json::json!({"role_id": role_id, "secret_id": secret_id});
        let out = self
            .call(
                reqwest::Method::POST,
                &format!("auth/{mount}/login"),
                Some(body),
            )
            .await?;
        out["auth"]["client_token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("no client_token in {out}"))
    }
}

/// A Vault client with the environment's address and token.
pub fn vault_client(env: &Env) -> Vault {
    Vault::new(env.get("VAULT_ADDR"), env.get("VAULT_TOKEN"))
}

/// Reads the fields of a secret (`pipectl/postgres` under the KV mount), panicking with the reason.
pub async fn vault_secret(env: &Env, path: &str) -> HashMap<String, String> {
    vault_client(env)
        .read(&env.kv_mount(), path)
        .await
        .unwrap_or_else(|e| panic!("reading {}/{path} from Vault: {e}", env.kv_mount()))
}

impl Env {
    /// The same environment with one variable changed (e.g. another Vault token).
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.vars.insert(key.to_string(), value.to_string());
        self
    }
}

/// A PostgreSQL client logged in with the seeded credentials (`pipectl/postgres` in Vault).
pub async fn postgres_client(env: &Env) -> tokio_postgres::Client {
    let c = vault_secret(env, "pipectl/postgres").await;
    let mut config = tokio_postgres::Config::new();
    config
        .host(&c["host"])
        .port(c["port"].parse().expect("a port in Vault"))
        .dbname(&c["database"])
        .user(&c["username"])
        .password(&c["password"]);
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
}

/// A MySQL connection with the seeded credentials (`pipectl/mysql` in Vault), plain TCP, UTC.
pub async fn mysql_client(env: &Env) -> mysql_async::Conn {
    let c = vault_secret(env, "pipectl/mysql").await;
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(c["host"].clone())
        .tcp_port(c["port"].parse().expect("a port in Vault"))
        .db_name(Some(c["database"].clone()))
        .user(Some(c["username"].clone()))
        .pass(Some(c["password"].clone()))
        .prefer_socket(false)
        .init(vec!["SET time_zone = '+00:00'"]);
    mysql_async::Conn::new(opts)
        .await
        .expect("connect to MySQL")
}

/// Drops a MySQL table when the guard drops (the test passed or not).
pub fn drop_mysql_table_on_exit(env: &Env, table: &str) -> Cleanup<impl FnOnce() + use<>> {
    let (env, table) = (env.clone(), table.to_string());
    Cleanup::new(move || {
        run_to_completion(async move {
            use mysql_async::prelude::Queryable;
            let mut conn = mysql_client(&env).await;
            let _ = conn
                .query_drop(format!("DROP TABLE IF EXISTS {table}"))
                .await;
            let _ = conn.disconnect().await;
        })
    })
}

/// The server speaking at `MYSQL_PORT`: MariaDB in the native environment, MySQL 8.4 under
/// compose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MysqlFlavor {
    MariaDb,
    Mysql,
}

/// The MySQL environment when the server at `MYSQL_PORT` is `want`. Tests run once per flavor:
/// the case for the flavor that is not there prints a visible `SKIPPED:` line (never a
/// failure, even under CI, since one environment serves one of them).
pub async fn mysql_service(want: MysqlFlavor) -> Option<Env> {
    use mysql_async::prelude::Queryable;
    let env = service(Service::Mysql)?;
    let mut conn = mysql_client(&env).await;
    let version: String = conn
        .query_first("SELECT VERSION()")
        .await
        .expect("the server version")
        .unwrap_or_default();
    let _ = conn.disconnect().await;
    let have = if version.contains("MariaDB") {
        MysqlFlavor::MariaDb
    } else {
        MysqlFlavor::Mysql
    };
    if have == want {
        return Some(env);
    }
    skip(&format!(
        "the {want:?} case needs that server at MYSQL_PORT, which serves {version} (MySQL 8.4 is the compose environment's)"
    ));
    None
}

/// The environment's bucket with the seeded credentials (`pipectl/s3` in Vault).
pub async fn s3_store(env: &Env) -> object_store::aws::AmazonS3 {
    let c = vault_secret(env, "pipectl/s3").await;
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&c["endpoint"])
        .with_region(&c["region"])
        .with_bucket_name(env.get("S3_BUCKET"))
        .with_access_key_id(&c["access_key_id"])
        .with_secret_access_key(&c["secret_access_key"])
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .build()
        .expect("an S3 client")
}
