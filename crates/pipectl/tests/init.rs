//! `pipectl init` against the seeded environment: pipelines written from a PostgreSQL table, a
//! MySQL table, S3 objects and a Kafka topic validate (with --connect) and run; the files hold
//! Vault paths, never a secret; without a source the quickstart is written; an existing file
//! is kept unless --force; a source it cannot read is a clear error.

mod common;

use common::{all_output, pipectl};
use pipeline_testkit::{Service, service};

#[test]
fn starters_from_live_sources_validate_and_run() {
    let (Some(env), Some(_), Some(_), Some(_)) = (
        service(Service::Postgres),
        service(Service::Mysql),
        service(Service::S3),
        service(Service::Kafka),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let mount = env.kv_mount();
    let cases = [
        (
            "pg",
            "postgres://postgres/orders",
            "columns: order_id int64",
            "keys: order_id",
        ),
        (
            "my",
            "mysql://mysql/order_items",
            "unit_price decimal(10,2)",
            "keys: order_id, line_no",
        ),
        (
            "objects",
            "s3://pipectl-lake/raw/orders/?connection=s3",
            "columns: order_id int64",
            "keys: order_id",
        ),
        (
            "events",
            "kafka://kafka/orders_json",
            "event_time int64",
            "keys: order_id",
        ),
    ];
    for (name, from, column, keys) in cases {
        let out = pipectl(&[
            "init",
            "--dir",
            d,
            "--name",
            name,
            "--from",
            from,
            "--vault-mount",
            &mount,
        ]);
        let text = all_output(&out);
        assert_eq!(out.status.code(), Some(0), "{from}: {text}");
        assert!(
            text.contains(column) && text.contains(keys),
            "{from}: {text}"
        );
        let file = dir.path().join(format!("{name}.json"));
        let v = pipectl(&["validate", "--connect", file.to_str().unwrap()]);
        assert_eq!(v.status.code(), Some(0), "{from}: {}", all_output(&v));
        let r = pipectl(&["run", file.to_str().unwrap(), "--no-progress"]);
        assert_eq!(r.status.code(), Some(0), "{from}: {}", all_output(&r));
    }
    // Only Vault paths in what was written.
    let secrets: Vec<String> = ["pipectl/postgres", "pipectl/mysql", "pipectl/s3"]
        .iter()
        .flat_map(|p| {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(pipeline_testkit::vault_secret(&env, p))
                .into_iter()
                .filter(|(k, _)| k.contains("password") || k.contains("secret"))
                .map(|(_, v)| v)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(!secrets.is_empty());
    for entry in walk(dir.path()) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "a secret in {}",
                entry.display()
            );
        }
    }
    let again = pipectl(&[
        "init",
        "--dir",
        d,
        "--name",
        "pg",
        "--from",
        "postgres://postgres/orders",
    ]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        all_output(&again).contains("--force"),
        "{}",
        all_output(&again)
    );
    let missing = pipectl(&[
        "init",
        "--dir",
        d,
        "--name",
        "nope",
        "--from",
        "postgres://postgres/no_such_table",
        "--vault-mount",
        &mount,
    ]);
    assert_ne!(missing.status.code(), Some(0));
    assert!(
        all_output(&missing).contains("no_such_table"),
        "{}",
        all_output(&missing)
    );
}

#[test]
fn without_a_source_the_quickstart_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = pipectl(&["init", "--dir", d, "--name", "first"]);
    assert_eq!(out.status.code(), Some(0), "{}", all_output(&out));
    let file = dir.path().join("first.json");
    let v = pipectl(&["validate", file.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(0), "{}", all_output(&v));
    let bad = pipectl(&["init", "--dir", d, "--name", "x", "--from", "oracle://db/t"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(all_output(&bad).contains("is not understood"));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            if !p.ends_with("out") {
                out.extend(walk(&p));
            }
        } else {
            out.push(p);
        }
    }
    out
}
