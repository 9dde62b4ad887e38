//! `Pipeline::check_connections` without services: a registry without the system's connector
//! names it with a suggestion, a connection whose credentials need a Vault that is not
//! configured says so, and the Delta check (no server to reach) reports its storage options.

mod common;

use common::write;
use pipeline_core::{Pipeline, Registry};
use std::sync::Arc;

const FILE: &str = r#"{
  "name": "conns",
  "connections": {
    "lake": {"system": "delta"},
    "db": {"system": "postgres", "credentials": {"vault_path": "secret/app/db"}}
  },
  "steps": [{"name": "rows", "kind": "extract", "method": "generate", "options": {"rows": 1}}]
}"#;

#[tokio::test(flavor = "multi_thread")]
async fn each_connection_gets_an_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "p.json", FILE);
    let standard = Pipeline::from_file(&path, &[]).unwrap();
    let checks = standard.check_connections(None).await;
    let by_name = |n: &str| checks.iter().find(|c| c.name == n).unwrap();
    let lake = by_name("lake");
    assert_eq!(lake.system, "delta");
    assert_eq!(
        lake.outcome.as_ref().unwrap(),
        "Delta storage options ready (none)"
    );
    let db = by_name("db");
    assert_eq!(db.vault_path.as_deref(), Some("secret/app/db"));
    let err = db.outcome.as_ref().unwrap_err();
    assert!(err.message().contains("no Vault is configured"), "{err}");

    // An embedder's registry without connectors: every system is unknown, with a suggestion.
    let mut bare = Registry::from_entries(pipeline_connectors::entries());
    bare.register_system(
        pipeline_connectors::systems()
            .into_iter()
            .find(|s| s.system == "postgres")
            .unwrap(),
    );
    let bare = Pipeline::from_file_with(&path, &[], Arc::new(bare)).unwrap();
    let checks = bare.check_connections(None).await;
    let lake = checks.iter().find(|c| c.name == "lake").unwrap();
    let err = lake.outcome.as_ref().unwrap_err();
    assert!(
        err.message().contains("no connector for system \"delta\""),
        "{err}"
    );
    assert!(err.hint().unwrap_or_default().contains("postgres"));
}
