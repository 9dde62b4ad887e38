//! End-to-end tests of the `pipectl` binary: the quickstart on the embedded default, exit codes,
//! located configuration errors, the retry policy, JSON logs and the report.

mod common;

use common::{pipectl, text};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    pipeline_testkit::repo_root()
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn quickstart_runs_and_its_delta_table_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("quickstart");
    let report = dir.path().join("report.json");
    let quickstart = repo().join("configs/quickstart.json");
    let set = format!("/steps/4/options/path={}", table.display());
    let out = pipectl(&["run", s(&quickstart), "--set", &set, "--report", s(&report)]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");

    // Logs show each step's rows and timing, and the summary table.
    for step in ["orders", "paid", "with_tax", "has_customer", "to_lake"] {
        assert!(
            err.contains(&format!("step={step}")),
            "no log for {step}: {err}"
        );
    }
    assert!(
        err.contains("step finished") && err.contains("rows_per_sec="),
        "{err}"
    );
    assert!(err.contains("succeeded: 1,000,000 rows read"), "{err}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["status"], "succeeded");
    assert_eq!(report["rows_read"], 1_000_000);
    let written = report["rows_written"].as_u64().unwrap();

    let back = pipeline_connectors::read_delta_table(&table).await.unwrap();
    assert_eq!(back.height() as u64, written);
    assert!(written > 500_000 && written < 700_000, "{written}");
    assert_eq!(back.column("customer_id").unwrap().null_count(), 0);
    let statuses = back
        .column("status")
        .unwrap()
        .as_materialized_series()
        .unique()
        .unwrap();
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses.str().unwrap().get(0), Some("PAID"));
    let ratio = back
        .column("amount_with_tax")
        .unwrap()
        .f64()
        .unwrap()
        .get(0)
        .unwrap()
        / back
            .column("amount")
            .unwrap()
            .f64()
            .unwrap()
            .get(0)
            .unwrap();
    assert!((ratio - 1.2).abs() < 0.01, "{ratio}");

    // The step report: the validation dropped exactly what it counted as failed.
    let v = &report["steps"][3];
    assert_eq!(v["rows_dropped"], v["metrics"]["failed"]);
}

#[test]
fn validate_accepts_the_quickstart_quickly() {
    let quickstart = repo().join("configs/quickstart.json");
    let start = std::time::Instant::now();
    let out = pipectl(&["validate", s(&quickstart)]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(
        text(&out)
            .0
            .contains("ok: pipeline \"quickstart_orders\" with 5 steps is valid")
    );
    // Not a benchmark: a generous bound that still catches an accidental run or network call.
    assert!(start.elapsed().as_secs() < 5);
}

const GEN: &str =
    r#"{"name": "g", "kind": "extract", "method": "generate", "options": {"rows": 10}}"#;

/// `validate` exits 2 and names the file and JSON path.
fn invalid(dir: &Path, file: &str, body: &str, expect: &[&str]) {
    let p = write(dir, file, body);
    let out = pipectl(&["validate", s(&p)]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{file}: {err}");
    for e in expect {
        assert!(err.contains(e), "{file}: expected {e:?} in:\n{err}");
    }
}

#[test]
fn validate_rejects_each_kind_of_bad_configuration_with_exit_2() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    invalid(
        d,
        "malformed.json",
        "{\"name\": \"p\",\n \"steps\": [\n}",
        &["malformed JSON", "malformed.json:3:1"],
    );
    invalid(
        d,
        "unknown_key.json",
        &format!(r#"{{"name": "p", "stepz": [], "steps": [{GEN}]}}"#),
        &[
            "unknown key \"stepz\"",
            "unknown_key.json:1:15 at /stepz",
            "did you mean \"steps\"?",
        ],
    );
    invalid(
        d,
        "unknown_method.json",
        &format!(
            r#"{{"name": "p", "steps": [{GEN}, {{"name": "f", "kind": "transform", "method": "fliter"}}]}}"#
        ),
        &[
            "unknown transform method \"fliter\"",
            "at /steps/1/method",
            "did you mean \"filter\"?",
        ],
    );
    invalid(
        d,
        "missing_ref.json",
        &format!(
            r#"{{"name": "p", "connections": {{"c": {{"$ref": "conn/nope.json"}}}}, "steps": [{GEN}]}}"#
        ),
        &[
            "cannot read referenced file",
            "conn/nope.json",
            "missing_ref.json:1:37 at /connections/c/$ref",
        ],
    );
    write(
        d,
        "cycle_a.json",
        r#"{"system": "delta", "x": {"$ref": "cycle_b.json"}}"#,
    );
    write(d, "cycle_b.json", r#"{"$ref": "cycle_a.json"}"#);
    invalid(
        d,
        "cycle.json",
        &format!(
            r#"{{"name": "p", "connections": {{"c": {{"$ref": "cycle_a.json"}}}}, "steps": [{GEN}]}}"#
        ),
        &[
            "circular $ref: cycle_a.json → cycle_b.json → cycle_a.json",
            "cycle_b.json:1:2 at /$ref",
        ],
    );
    invalid(
        d,
        "password.json",
        &format!(
            r#"{{"name": "p", "connections": {{"db": {{"system": "postgres", "password": "hunter22"}}}}, "steps": [{GEN}]}}"#
        ),
        &[
            "\"password\" holds a literal value",
            "at /connections/db/password",
            "Vault",
        ],
    );
    invalid(
        d,
        "token.json",
        &format!(
            r#"{{"name": "p", "steps": [{GEN}, {{"name": "l", "kind": "load", "method": "delta", "options": {{"path": "x", "nested": {{"Api_Token": "abc123xyz"}}}}}}]}}"#
        ),
        &[
            "\"Api_Token\" holds a literal value",
            "at /steps/1/options/nested/Api_Token",
        ],
    );
    invalid(
        d,
        "formats.json",
        &format!(
            r#"{{"name": "p", "steps": [{GEN}, {{"name": "a", "kind": "transform", "method": "to_avro"}}, {{"name": "f", "kind": "transform", "method": "filter", "options": {{"condition": "amount > 0"}}}}]}}"#
        ),
        &[
            "step \"f\" (filter) accepts DataFrame but its input \"a\" produces Avro",
            "at /steps/2/method",
        ],
    );
    // No secret value is ever echoed.
    let p = write(
        d,
        "echo.json",
        &format!(r#"{{"name": "p", "token": "tok-987654", "steps": [{GEN}]}}"#),
    );
    let (out, err) = text(&pipectl(&["validate", s(&p)]));
    assert!(!out.contains("tok-987654") && !err.contains("tok-987654"));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(pipectl(&["run"]).status.code(), Some(2));
    assert_eq!(pipectl(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        pipectl(&["run", "/nonexistent.json"]).status.code(),
        Some(2)
    );
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "p.json",
        &format!(r#"{{"name": "p", "steps": [{GEN}]}}"#),
    );
    assert_eq!(
        pipectl(&["run", s(&p), "--set", "no-slash=1"])
            .status
            .code(),
        Some(2)
    );
    let bad = pipectl(&["run", s(&p), "--resume", "../etc"]);
    assert_eq!(bad.status.code(), Some(2));
    let (_, err) = text(&bad);
    assert!(err.contains("--resume: invalid run id \"../etc\""), "{err}");
}

/// The run id ends the summary; resuming a finished run writes nothing again, a new run does.
#[tokio::test]
async fn resuming_a_finished_run_writes_nothing_again() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("lake");
    let report = dir.path().join("report.json");
    let p = write(
        dir.path(),
        "p.json",
        &format!(
            r#"{{"name": "p", "steps": [{GEN}, {{"name": "to_lake", "kind": "load", "method": "delta", "options": {{"path": "{}"}}}}]}}"#,
            table.display()
        ),
    );
    let first = pipectl(&["run", s(&p), "--report", s(&report)]);
    let (_, err) = text(&first);
    assert_eq!(first.status.code(), Some(0), "{err}");
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let id = run["run_id"].as_str().unwrap().to_string();
    assert!(err.contains(&format!("run id: {id}")), "{err}");
    let rows = || async {
        pipeline_connectors::read_delta_table(&table)
            .await
            .unwrap()
            .height()
    };
    let once = rows().await;
    assert!(once > 0);

    let again = pipectl(&["run", s(&p), "--resume", &id, "--report", s(&report)]);
    let (_, err) = text(&again);
    assert_eq!(again.status.code(), Some(0), "{err}");
    assert!(
        err.contains(
            "already committed by an earlier run with this id (not written again): to_lake"
        ),
        "{err}"
    );
    let resumed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(resumed["already_committed_loads"][0], "to_lake");
    assert_eq!(rows().await, once);

    assert_eq!(pipectl(&["run", s(&p)]).status.code(), Some(0));
    assert_eq!(rows().await, 2 * once);
}

#[tokio::test]
async fn a_transient_failure_is_retried_then_exits_1_naming_the_step() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    // A real table whose data file then disappears: reading it is an I/O failure.
    let make = write(
        d,
        "make.json",
        &format!(
            r#"{{"name": "make", "steps": [{GEN}, {{"name": "l", "kind": "load", "method": "delta", "options": {{"path": "t"}}}}]}}"#
        ),
    );
    assert_eq!(pipectl(&["execute", s(&make)]).status.code(), Some(0));
    for f in std::fs::read_dir(d.join("t")).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "parquet") {
            std::fs::remove_file(f).unwrap();
        }
    }
    let read = write(
        d,
        "read.json",
        r#"{"name": "read", "steps": [{"name": "lake_orders", "kind": "extract", "method": "delta", "options": {"path": "t"}}]}"#,
    );
    let report = d.join("r.json");
    let out = pipectl(&[
        "run",
        s(&read),
        "--set",
        "/retry/delay_seconds=0",
        "--report",
        s(&report),
    ]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("failed at step \"lake_orders\" after 4 attempts"),
        "{err}"
    );
    assert_eq!(
        err.matches("attempt failed with a transient error; retrying")
            .count(),
        3,
        "{err}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["attempts"], 4);
    assert_eq!(report["status"], "failed");
    assert_eq!(report["error"]["step"], "lake_orders");
}

#[test]
fn a_user_error_at_run_time_is_not_retried() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "p.json",
        &format!(
            r#"{{"name": "p", "steps": [{GEN}, {{"name": "d", "kind": "transform", "method": "derive", "options": {{"columns": {{"x": "no_such_column + 1"}}}}}}]}}"#
        ),
    );
    let out = pipectl(&["run", s(&p)]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("after 1 attempt:"), "{err}");
    assert!(
        err.contains("available columns: order_id, customer_id, amount, status, created_at"),
        "{err}"
    );
    assert!(!err.contains("retrying"), "{err}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "p.json",
        &format!(r#"{{"name": "p", "steps": [{GEN}]}}"#),
    );
    let out = pipectl(&["--log-format", "json", "run", s(&p)]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let finished = lines
        .iter()
        .find(|l| l["message"] == "step finished")
        .expect("a step finished event");
    assert_eq!(finished["rows_out"], 10);
    assert!(lines.iter().any(|l| l["message"] == "pipeline succeeded"));
}

#[test]
fn schema_plan_and_methods() {
    let (out, _) = text(&pipectl(&["schema"]));
    let schema: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert!(
        schema["$defs"]["StepConfig"]["allOf"]
            .as_array()
            .unwrap()
            .len()
            >= 8
    );

    let quickstart = repo().join("configs/quickstart.json");
    let (plan, _) = text(&pipectl(&["plan", s(&quickstart)]));
    assert!(plan.contains("has_customer  validate  not_null"), "{plan}");
    let (json, _) = text(&pipectl(&["plan", "--json", s(&quickstart)]));
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["steps"][4]["output_format"], "dataframe");

    let (methods, _) = text(&pipectl(&["methods"]));
    assert!(
        methods.contains("generate") && methods.contains("not_null") && methods.contains("delta")
    );
}

#[test]
fn the_committed_schema_is_up_to_date() {
    let (out, _) = text(&pipectl(&["schema"]));
    let committed = std::fs::read_to_string(repo().join("configs/pipeline.schema.json")).unwrap();
    // Name the first line that differs rather than printing two whole schemas.
    let first_difference = out
        .trim_end()
        .lines()
        .zip(committed.trim_end().lines())
        .enumerate()
        .find(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| format!("line {}: now {a:?}, committed {b:?}", i + 1));
    assert!(
        first_difference.is_none() && out.trim_end().len() == committed.trim_end().len(),
        "configs/pipeline.schema.json is stale ({}): run `pipectl schema > configs/pipeline.schema.json`",
        first_difference.unwrap_or_else(|| "lengths differ".into())
    );
}

#[tokio::test]
async fn two_inputs_join_aggregate_and_a_quarantine_table() {
    let d = tempfile::tempdir().unwrap();
    let example = repo().join("configs/examples/revenue_by_country.json");
    let revenue = d.path().join("revenue");
    let rejected = d.path().join("rejected");
    let report = d.path().join("r.json");
    let out = pipectl(&[
        "run",
        s(&example),
        "--set",
        &format!("/steps/7/options/path={}", revenue.display()),
        "--set",
        &format!("/steps/8/options/path={}", rejected.display()),
        "--report",
        s(&report),
    ]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let failed = report["steps"][2]["metrics"]["failed"].as_u64().unwrap();
    assert!(failed > 0);
    assert_eq!(report["steps"][2]["rows_dropped"], failed);

    // The quarantine table holds exactly the invalid rows, each with the rule it broke.
    let bad = pipeline_connectors::read_delta_table(&rejected)
        .await
        .unwrap();
    assert_eq!(bad.height() as u64, failed);
    let reasons = bad
        .column("_pipectl_reason")
        .unwrap()
        .as_materialized_series()
        .unique()
        .unwrap();
    assert_eq!(reasons.len(), 1);
    assert_eq!(
        reasons.str().unwrap().get(0),
        Some("referential_integrity(customer_id -> customers.customer_id)")
    );
    let ids = bad.column("customer_id").unwrap().i64().unwrap();
    assert!(
        ids.iter().all(|v| v.is_none_or(|v| v > 40_000)),
        "only unknown or missing customers are rejected"
    );

    // The revenue table: one row per (country, status); its order counts add up to the valid orders.
    let revenue = pipeline_connectors::read_delta_table(&revenue)
        .await
        .unwrap();
    assert_eq!(revenue.height(), 24);
    let orders: i64 = revenue
        .column("orders")
        .unwrap()
        .cast(&pipeline_data::polars::prelude::DataType::Int64)
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .sum();
    assert_eq!(orders as u64, 200_000 - failed);
}
