//! Delta on S3 through the binary: three `pipectl run` processes appending to one new table at
//! once (every row and every commit kept, no lock service), `validate --connect` opening the
//! table, `pipectl delta history/optimize/checkpoint/vacuum` on the pipeline's step, and the
//! table read by an independent reader (the `deltalake` Python package): partitioned,
//! checkpointed and compacted.

mod common;

use common::{all_output, pipectl};
use pipeline_testkit::{Env, Service, service, unique};
use serde_json::json;
use std::path::{Path, PathBuf};

fn pipeline(dir: &Path, env: &Env, url: &str, name: &str, seed: u64) -> PathBuf {
    let doc = json!({
        "name": name,
        "connections": {
            "lake": {"system": "delta", "credentials": {"vault_path": format!("{}/pipectl/delta", env.kv_mount())}}
        },
        "steps": [
            {"name": "orders", "kind": "extract", "method": "generate",
             "options": {"rows": 100000, "seed": seed, "null_fraction": 0.0}},
            {"name": "to_lake", "kind": "load", "method": "delta", "connection": "lake",
             "options": {"path": url, "partition_by": ["status"], "target_file_size_mb": 1}}
        ]
    });
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    path
}

/// Runs the independent reader (the `deltalake` Python package) over the table: `body` is
/// Python that reads `t` (a `DeltaTable`) and prints one line, which is returned.
fn python_read(env: &Env, url: &str, body: &str) -> Option<String> {
    let python = pipeline_testkit::python()?;
    let keys = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(pipeline_testkit::vault_secret(env, "pipectl/s3"));
    // deltalake 1.6's runtime threads abort the interpreter's normal exit ("terminate called
    // without an active exception"): the script flushes and leaves at once.
    let script = format!(
        r#"
import sys, os, deltalake
opts = {{"AWS_ACCESS_KEY_ID": sys.argv[2], "AWS_SECRET_ACCESS_KEY": sys.argv[3], "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": sys.argv[4], "AWS_ALLOW_HTTP": "true"}}
t = deltalake.DeltaTable(sys.argv[1], storage_options=opts)
{body}
sys.stdout.flush()
os._exit(0)
"#
    );
    let out = std::process::Command::new(python)
        .args([
            "-c",
            &script,
            url,
            &keys["access_key_id"],
            &keys["secret_access_key"],
            env.get("S3_ENDPOINT"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "deltalake (Python) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `rows sum(order_id) files version statuses`.
const SUMMARY: &str = r#"
tab = t.to_pyarrow_table()
ids = tab.column("order_id").to_pylist()
statuses = set(tab.column("status").to_pylist())
print(len(ids), sum(ids), len(t.file_uris()), t.version(), ",".join(sorted(statuses)))
"#;

#[test]
fn three_processes_append_then_hygiene_and_an_independent_reader() {
    let (Some(env), Some(_)) = (service(Service::S3), service(Service::Vault)) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("s3://{}/delta-e2e/{}", env.get("S3_BUCKET"), unique("t"));
    let files: Vec<PathBuf> = (0..3)
        .map(|i| pipeline(dir.path(), &env, &url, &format!("append_{i}"), 100 + i))
        .collect();
    // The table does not exist yet: all three race to create it as well.
    let children: Vec<_> = files
        .iter()
        .map(|f| {
            std::process::Command::new(env!("CARGO_BIN_EXE_pipectl"))
                .args(["run", f.to_str().unwrap(), "--no-progress"])
                .env_remove("RUST_LOG")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", all_output(&out));
    }
    let f0 = files[0].to_str().unwrap();
    let history = pipectl(&["delta", "history", f0, "--json"]);
    assert!(history.status.success(), "{}", all_output(&history));
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert_eq!(entries[2]["operation"], "CREATE TABLE");
    assert!(entries[..2].iter().all(|e| e["operation"] == "WRITE"));

    // Every row of the three runs: ids 1..=100000 three times.
    let want_sum: u64 = 3 * (1..=100_000u64).sum::<u64>();
    if let Some(line) = python_read(&env, &url, SUMMARY) {
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts[0], "300000", "{line}");
        assert_eq!(parts[1], want_sum.to_string(), "{line}");
    }

    // validate --connect opens the table.
    let v = pipectl(&["validate", f0, "--connect"]);
    assert!(v.status.success(), "{}", all_output(&v));
    assert!(
        all_output(&v).contains("at version 2"),
        "{}",
        all_output(&v)
    );

    // Hygiene on the pipeline's step: compaction, checkpoint, vacuum (dry run, then refused).
    let o = pipectl(&[
        "delta",
        "optimize",
        f0,
        "--step",
        "to_lake",
        "--target-size-mb",
        "64",
    ]);
    assert!(o.status.success(), "{}", all_output(&o));
    assert!(
        all_output(&o).contains("at version 3"),
        "{}",
        all_output(&o)
    );
    let c = pipectl(&["delta", "checkpoint", f0]);
    assert!(c.status.success(), "{}", all_output(&c));
    assert!(all_output(&c).contains("checkpoint written at version 3"));
    let dry = pipectl(&["delta", "vacuum", f0]);
    assert!(dry.status.success(), "{}", all_output(&dry));
    assert!(
        all_output(&dry).contains("would delete 0 files"),
        "{}",
        all_output(&dry)
    );
    let refused = pipectl(&["delta", "vacuum", f0, "--retention-hours", "1"]);
    assert_eq!(refused.status.code(), Some(2), "{}", all_output(&refused));
    assert!(all_output(&refused).contains("under 7 days"));

    // The independent reader, from the checkpoint of the compacted table: same rows.
    if let Some(line) = python_read(&env, &url, SUMMARY) {
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts[0], "300000", "{line}");
        assert_eq!(parts[1], want_sum.to_string(), "{line}");
        assert_eq!(parts[3], "3", "{line}");
        assert_eq!(parts[4], "cancelled,paid,pending,refunded", "{line}");
    } else {
        pipeline_testkit::skip(
            "the deltalake Python package is not installed (scripts/dev-env up installs it)",
        );
    }
}

#[test]
fn validate_connect_fails_on_an_unreachable_table_location() {
    let (Some(env), Some(_)) = (service(Service::S3), service(Service::Vault)) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("s3://{}/t", unique("no-such-bucket"));
    let f = pipeline(dir.path(), &env, &url, "missing", 1);
    let v = pipectl(&["validate", f.to_str().unwrap(), "--connect"]);
    assert_eq!(v.status.code(), Some(1), "{}", all_output(&v));
    let out = all_output(&v);
    assert!(out.contains("FAILED") && out.contains("to_lake"), "{out}");
    let keys = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(pipeline_testkit::vault_secret(&env, "pipectl/s3"));
    assert!(!out.contains(&keys["secret_access_key"]), "{out}");
}

#[test]
fn an_evolved_table_on_s3_reads_the_same_in_an_independent_reader() {
    let (Some(env), Some(_)) = (service(Service::S3), service(Service::Vault)) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "s3://{}/delta-e2e/{}",
        env.get("S3_BUCKET"),
        unique("evolved")
    );
    let write = |name: &str, rows: u64, extra: bool| {
        let mut steps = vec![
            json!({"name": "orders", "kind": "extract", "method": "generate",
            "options": {"rows": rows, "seed": 5, "null_fraction": 0.0}}),
        ];
        if extra {
            steps.push(
                json!({"name": "channel", "kind": "transform", "method": "derive",
                "options": {"columns": {"channel": "'web'"}}}),
            );
        }
        steps.push(
            json!({"name": "to_lake", "kind": "load", "method": "delta", "connection": "lake",
            "options": {"path": url, "schema_evolution": if extra { "evolve" } else { "freeze" }}}),
        );
        let doc = json!({"name": name, "connections": {"lake": {"system": "delta",
            "credentials": {"vault_path": format!("{}/pipectl/delta", env.kv_mount())}}}, "steps": steps});
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, doc.to_string()).unwrap();
        let out = pipectl(&["run", path.to_str().unwrap(), "--no-progress"]);
        assert!(out.status.success(), "{}", all_output(&out));
    };
    write("first", 1000, false);
    write("second", 500, true);
    let body = r#"
tab = t.to_pyarrow_table()
ch = tab.column("channel").to_pylist()
print(tab.num_rows, sum(1 for c in ch if c is None), sum(1 for c in ch if c == "web"), t.version())
"#;
    match python_read(&env, &url, body) {
        Some(line) => assert_eq!(line, "1500 1000 500 1"),
        None => pipeline_testkit::skip("no Python environment (scripts/dev-env up creates it)"),
    }
}
