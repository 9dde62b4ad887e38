//! Credentials in runs: each Vault path is read once per run (even across steps and retried
//! attempts) and handed to the steps of its connection; a connection with credentials but no
//! provider fails with a clear message; Vault errors are retried only when a retry can help.
//! The provider is a mockall mock with exact call counts.

mod common;

use async_trait::async_trait;
use common::{registry, write};
use pipeline_core::{Pipeline, RunOptions};
use pipeline_credentials::{CredentialError, CredentialProvider, SecretFields, SecretRef};
use std::sync::Arc;

mockall::mock! {
    Vault {}
    #[async_trait]
    impl CredentialProvider for Vault {
        async fn fetch(&self, secret: &SecretRef) -> Result<SecretFields, CredentialError>;
        fn describe(&self) -> String;
    }
}

/// A provider expecting `reads` fetches of `secret/app/db`, answering each with `answer`.
fn vault(
    reads: usize,
    answer: impl FnMut(&SecretRef) -> Result<SecretFields, CredentialError> + Send + 'static,
) -> Arc<MockVault> {
    let mut v = MockVault::new();
    v.expect_describe()
        .return_const("a mocked Vault".to_string());
    v.expect_fetch()
        .withf(|s| s.path == "secret/app/db")
        .times(reads)
        .returning(answer);
    Arc::new(v)
}

fn password(path: &str) -> SecretFields {
    let mut f = SecretFields::new(path);
    f.insert("password", "pw-1");
    f
}

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
    // Two steps, two attempts, one read (the mock fails the test on a second).
    let options = RunOptions {
        credentials: Some(vault(1, |s| Ok(password(&s.path)))),
        ..RunOptions::default()
    };
    let report = pipeline.run(&options).await.unwrap();
    assert_eq!(report.attempts, 2, "the flaky step made the run retry");
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
        credentials: Some(vault(1, |s| {
            Err(CredentialError::NotFound {
                mount: "secret/".into(),
                path: s.path.clone(),
                version: 2,
            })
        })),
        ..RunOptions::default()
    };
    let failure = pipeline.run(&options).await.unwrap_err();
    assert_eq!(
        failure.error.message(),
        "connection \"db\": no secret at secret/app/db (mount secret/, KV v2)"
    );
}

/// Vault unreachable at the first read: the attempt fails with a transient error and the retry
/// reads again (a failure is never cached) and succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_vault_is_retried_and_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.json",
        &FILE.replace("creds-once", "creds-vault-down"),
    );
    let pipeline = Pipeline::from_file_with(&file, &[], registry()).unwrap();
    let mut calls = 0;
    let provider = vault(2, move |s| {
        calls += 1;
        if calls == 1 {
            Err(CredentialError::Unreachable {
                addr: "http://127.0.0.1:8200".into(),
                path: s.path.clone(),
                attempts: 3,
                reason: "connection refused".into(),
            })
        } else {
            Ok(password(&s.path))
        }
    });
    let options = RunOptions {
        credentials: Some(provider),
        ..RunOptions::default()
    };
    let report = pipeline.run(&options).await.unwrap();
    assert!(report.attempts >= 2, "{}", report.attempts);
}

/// A policy that denies the read is not retried: one read, one attempt, the path named.
#[tokio::test(flavor = "multi_thread")]
async fn a_denied_read_is_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "p.json", FILE);
    let pipeline = Pipeline::from_file_with(&file, &[], registry()).unwrap();
    let options = RunOptions {
        credentials: Some(vault(1, |s| {
            Err(CredentialError::PermissionDenied {
                path: s.path.clone(),
            })
        })),
        ..RunOptions::default()
    };
    let failure = pipeline.run(&options).await.unwrap_err();
    assert_eq!(failure.attempts, 1);
    assert_eq!(failure.step, "a");
    assert!(
        failure
            .error
            .message()
            .contains("permission denied for secret/app/db"),
        "{}",
        failure.error.message()
    );
}
