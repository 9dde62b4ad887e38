//! TLS to the local MariaDB (scripts/dev-env serves it with the local CA, certificate for
//! "localhost"): every tls_mode does what the PostgreSQL connector's does, checked through the
//! connection check (`validate --connect`), which names the session's cipher; a failed
//! verification is a clear, non-retryable error.

mod common;

use common::step;
use pipeline_testkit::{Env, MysqlFlavor, mysql_service};
use serde_json::{Value, json};

/// The connection check's answer with these connection settings.
async fn check(env: &Env, settings: Value) -> Result<String, pipeline_base::StepError> {
    let setup = step(env, "mysql", "mysql", settings, json!({})).await;
    let entry = pipeline_connectors::systems()
        .into_iter()
        .find(|s| s.system == "mysql")
        .unwrap();
    entry.check(setup.connection_setup()?).await
}

fn ca(env: &Env) -> String {
    let path = env.get("MYSQL_CA_CERT").to_string();
    assert!(
        std::path::Path::new(&path).exists(),
        "MYSQL_CA_CERT ({path}) is missing: run `scripts/dev-env up` and `eval \"$(scripts/dev-env env)\"`"
    );
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn every_tls_mode_behaves_like_the_postgres_one() {
    let Some(env) = mysql_service(MysqlFlavor::MariaDb).await else {
        return;
    };
    let ca = ca(&env);
    let plain = check(&env, json!({"tls_mode": "disable"})).await.unwrap();
    assert!(!plain.contains("TLS"), "{plain}");
    for settings in [
        json!({}),
        json!({"tls_mode": "require"}),
        json!({"tls_mode": "verify-ca", "ca_cert": ca}),
        json!({"tls_mode": "verify-full", "ca_cert": ca, "host": "localhost"}),
    ] {
        let answer = check(&env, settings.clone()).await.unwrap();
        assert!(answer.contains("TLS ("), "{settings}: {answer}");
    }
    // The certificate names "localhost", not 127.0.0.1.
    let err = check(
        &env,
        json!({"tls_mode": "verify-full", "ca_cert": ca, "host": "127.0.0.1"}),
    )
    .await
    .unwrap_err();
    assert!(!err.retryable(), "{}", err.full_message());
    // A CA that did not sign the server's certificate.
    let dir = tempfile::tempdir().unwrap();
    let other = other_ca(dir.path());
    let err = check(
        &env,
        json!({"tls_mode": "verify-ca", "ca_cert": other, "host": "localhost"}),
    )
    .await
    .unwrap_err();
    assert!(!err.retryable(), "{}", err.full_message());
    assert!(
        err.hint().unwrap_or_default().contains("ca_cert"),
        "{}",
        err.full_message()
    );
    let err = check(
        &env,
        json!({"tls_mode": "verify-ca", "ca_cert": "/nonexistent/ca.pem"}),
    )
    .await
    .unwrap_err();
    assert!(err.message().contains("/nonexistent/ca.pem"));
}

/// A self-signed CA certificate unrelated to the local environment's (made with openssl, which
/// scripts/dev-env installs for its own CA).
fn other_ca(dir: &std::path::Path) -> std::path::PathBuf {
    let cert = dir.join("other-ca.crt");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=other CA",
        ])
        .arg("-keyout")
        .arg(dir.join("other-ca.key"))
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success());
    cert
}
