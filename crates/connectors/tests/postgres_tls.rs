//! TLS to the local PostgreSQL (scripts/dev-env switches it on with a local CA, certificate for
//! "localhost"): every tls_mode does what libpq's sslmode does, and a failed verification is a
//! clear, non-retryable error.

mod common;

use common::{read_all, step};
use pipeline_base::StepKind;
use pipeline_connectors::entries;
use pipeline_testkit::{Env, Service, service};
use serde_json::{Value, json};

/// Whether the session of a read with these connection settings used TLS.
async fn session_ssl(env: &Env, settings: Value) -> Result<bool, pipeline_base::StepError> {
    let entry = entries()
        .into_iter()
        .find(|e| e.kind == StepKind::Extract && e.name == "postgres")
        .unwrap();
    let query = json!({"query": "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"});
    let setup = step(env, "postgres", "postgres", settings, query).await;
    let df = read_all(entry.open(setup).await?).await;
    Ok(df.column("ssl").unwrap().bool().unwrap().get(0).unwrap())
}

fn ca(env: &Env) -> Option<String> {
    let path = env.get("POSTGRES_CA_CERT").to_string();
    if !path.is_empty() && std::path::Path::new(&path).exists() {
        return Some(path);
    }
    let message = "POSTGRES_CA_CERT is not set: run `scripts/dev-env up` and `eval \"$(scripts/dev-env env)\"`";
    if pipeline_testkit::in_ci() {
        panic!("{message}");
    }
    pipeline_testkit::skip(message);
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn every_tls_mode_behaves_like_libpq() {
    let Some(env) = service(Service::Postgres) else {
        return;
    };
    let Some(ca) = ca(&env) else { return };
    assert!(
        !session_ssl(&env, json!({"tls_mode": "disable"}))
            .await
            .unwrap()
    );
    assert!(
        session_ssl(&env, json!({})).await.unwrap(),
        "prefer (the default) uses TLS when offered"
    );
    assert!(
        session_ssl(&env, json!({"tls_mode": "require"}))
            .await
            .unwrap()
    );
    assert!(
        session_ssl(&env, json!({"tls_mode": "verify-ca", "ca_cert": ca}))
            .await
            .unwrap()
    );
    assert!(
        session_ssl(
            &env,
            json!({"tls_mode": "verify-full", "ca_cert": ca, "host": "localhost"})
        )
        .await
        .unwrap()
    );

    // The certificate names "localhost", not 127.0.0.1.
    let err = session_ssl(
        &env,
        json!({"tls_mode": "verify-full", "ca_cert": ca, "host": "127.0.0.1"}),
    )
    .await
    .unwrap_err();
    assert!(err.message().contains("certificate"), "{}", err.message());
    assert!(!err.retryable(), "a certificate does not change on retry");
    assert!(err.hint().unwrap().contains("ca_cert"));
    // Without our CA the system's roots do not trust the local certificate.
    let err = session_ssl(
        &env,
        json!({"tls_mode": "verify-full", "host": "localhost"}),
    )
    .await
    .unwrap_err();
    assert!(err.message().contains("certificate"), "{}", err.message());
    let err = session_ssl(&env, json!({"tls_mode": "verify-ca"}))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("verify-ca needs ca_cert"),
        "{}",
        err.message()
    );
    let err = session_ssl(
        &env,
        json!({"tls_mode": "verify-ca", "ca_cert": "/nonexistent/ca.pem"}),
    )
    .await
    .unwrap_err();
    assert!(
        err.message().starts_with(
            "connection \"postgres_conn\": cannot read the CA certificate /nonexistent/ca.pem"
        ),
        "{}",
        err.message()
    );
}
