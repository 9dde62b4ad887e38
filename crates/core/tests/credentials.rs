//! Credentials in runs: each Vault path is read once per run (even across steps and retried
//! attempts) and handed to the steps of its connection; a connection with credentials but no
//! provider fails with a clear message.

mod common;

use common::{registry, write};
use pipeline_core::{Pipeline, RunOptions};
use pipeline_credentials::StaticProvider;
use std::sync::Arc;

const FILE: &str = r#"{
  "name": "creds",
  "retry": {"max_retries": 2, "delay_seconds": 0},
  "connections": {"db": {"system": "postgres", "credentials": {"vault_path": "secret/app/db"}}},
  "steps": [
    {"name": "a", "kind": "extract", "method": "secret_rows", "connection": "db", "options": {}},
    {"name": "b", "kind": "extract", "method": "secret_rows", "connection": "db", "options": {}},
    {"name": "flaky", "kind": "extract", "method": "flaky", "options": {"key": "creds-once", "failures": 1}}
  ]
}"#;

#[tokio::test(flavor = "multi_thread")]
async fn each_path_is_read_once_per_run_and_reaches_its_steps() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "p.json", FILE);
    let pipeline = Pipeline::from_file_with(&file, &[], registry()).unwrap();
    let provider =
        Arc::new(StaticProvider::default().with("secret/app/db", &[("password", "pw-1")]));
    let options = RunOptions {
        credentials: Some(provider.clone()),
        ..RunOptions::default()
    };
    let report = pipeline.run(&options).await.unwrap();
    assert_eq!(report.attempts, 2, "the flaky step made the run retry");
    assert_eq!(provider.reads(), 1, "two steps, two attempts, one read");
    assert_eq!(report.rows_read, 1 + 1 + 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_without_a_provider_or_secret_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "p.json", FILE);
    let pipeline = Pipeline::from_file_with(&file, &[], registry()).unwrap();
    let failure = pipeline.run(&RunOptions::default()).await.unwrap_err();
    assert_eq!(failure.step, "a");
    assert_eq!(
        failure.error.message(),
        "connection \"db\" keeps its credentials in Vault at secret/app/db, but no Vault is configured"
    );
    assert_eq!(failure.attempts, 1, "a user error is not retried");

    let options = RunOptions {
        credentials: Some(Arc::new(StaticProvider::default())),
        ..RunOptions::default()
    };
    let failure = pipeline.run(&options).await.unwrap_err();
    assert_eq!(
        failure.error.message(),
        "connection \"db\": no secret at secret/app/db (mount secret/, KV v2)"
    );
}
