//! The Spark engine from the command line: `validate --engine spark` refuses what Spark would
//! not compute as pipectl does (naming each step), an unreachable Spark Connect endpoint is
//! retried then named with exit 1, and a failing validation writes nothing on either engine.

mod common;

use common::{all_output, pipectl, pipectl_with_env};
use pipeline_testkit::{Service, closed_port, service};
use std::path::Path;

fn write(dir: &Path, name: &str, json: serde_json::Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    path.display().to_string()
}

fn generated(rows: u64, steps: Vec<serde_json::Value>) -> serde_json::Value {
    let mut all = vec![serde_json::json!({
        "name": "orders", "kind": "extract", "method": "generate", "options": {"rows": rows}
    })];
    all.extend(steps);
    serde_json::json!({"name": "spark_cli", "retry": {"max_retries": 2, "delay_seconds": 0.1}, "steps": all})
}

#[test]
fn validate_names_every_step_spark_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.json",
        generated(
            10,
            vec![
                serde_json::json!({"name": "odd", "kind": "transform", "method": "derive",
                    "options": {"columns": {"parity": "order_id % 2"}}}),
                serde_json::json!({"name": "latest", "kind": "transform", "method": "dedupe",
                    "options": {"keys": ["customer_id"]}}),
                serde_json::json!({"name": "when", "kind": "transform", "method": "derive",
                    "options": {"columns": {"y": "strftime(created_at, '%Y')"}}}),
                serde_json::json!({"name": "out", "kind": "load", "method": "delta",
                    "options": {"path": "out"}}),
            ],
        ),
    );
    let polars = pipectl(&["validate", &file]);
    assert!(polars.status.success(), "{}", all_output(&polars));
    let spark = pipectl(&["validate", &file, "--engine", "spark"]);
    let text = all_output(&spark);
    assert_eq!(spark.status.code(), Some(2), "{text}");
    for expected in [
        "step \"odd\" (/options/columns/parity): \"order_id % 2\" uses the operator %",
        "step \"latest\" (/options): dedupe without \"order_by\"",
        "step \"when\" (/options/columns/y): \"strftime(created_at, '%Y')\" uses the function strftime()",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("step \"out\""), "{text}");
}

#[test]
fn an_unreachable_endpoint_is_retried_then_named() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let file = write(
        dir.path(),
        "p.json",
        generated(
            10,
            vec![
                serde_json::json!({"name": "out", "kind": "load", "method": "delta",
                "options": {"path": out_dir.display().to_string()}}),
            ],
        ),
    );
    let endpoint = format!("sc://127.0.0.1:{}", closed_port());
    let out = pipectl_with_env(
        &[
            "run",
            &file,
            "--engine",
            "spark",
            "--spark-remote",
            &endpoint,
        ],
        &[("SPARK_REMOTE", "")],
    );
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("cannot reach Spark Connect at {endpoint}")),
        "{text}"
    );
    assert!(text.contains("gave up after 3 attempts"), "{text}");
    assert_eq!(
        text.matches("transient failure; retrying").count(),
        2,
        "{text}"
    );
    assert!(!out_dir.exists(), "nothing written");
    let bad = pipectl_with_env(
        &["run", &file, "--engine", "spark"],
        &[("SPARK_REMOTE", "")],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", all_output(&bad));
    assert!(
        all_output(&bad).contains("--spark-remote"),
        "{}",
        all_output(&bad)
    );
}

#[test]
fn a_failing_validation_writes_nothing_on_either_engine() {
    if service(Service::Spark).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for engine in ["polars", "spark"] {
        let out_dir = dir.path().join(engine);
        let file = write(
            dir.path(),
            &format!("{engine}.json"),
            generated(
                5000,
                vec![
                    serde_json::json!({"name": "has_customer", "kind": "validate", "method": "not_null",
                        "options": {"columns": ["customer_id"]}}),
                    serde_json::json!({"name": "out", "kind": "load", "method": "delta",
                        "options": {"path": out_dir.display().to_string()}}),
                ],
            ),
        );
        let out = pipectl(&["run", &file, "--engine", engine, "--no-progress"]);
        let text = all_output(&out);
        assert_eq!(out.status.code(), Some(1), "{engine}: {text}");
        assert!(
            text.contains("validation not_null(customer_id) failed for"),
            "{engine}: {text}"
        );
        // No table: no commit in a transaction log (a staging directory may exist).
        assert!(
            !out_dir.join("_delta_log").exists()
                || std::fs::read_dir(out_dir.join("_delta_log"))
                    .unwrap()
                    .next()
                    .is_none(),
            "{engine} committed nothing"
        );
    }
}
