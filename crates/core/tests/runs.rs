//! Runs on the embedded methods: zero rows, named inputs, validations, Delta round trip.

mod common;

use common::write;
use pipeline_core::{Pipeline, RunOptions, StepStatus};

async fn run(dir: &std::path::Path, text: &str) -> pipeline_core::RunReport {
    let path = write(dir, "p.json", text);
    Pipeline::from_file(&path, &[])
        .unwrap()
        .run(&RunOptions::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn zero_records_succeed_with_zero_rows_at_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(
        dir.path(),
        r#"{"name": "zero", "steps": [
            {"name": "g", "kind": "extract", "method": "generate", "options": {"rows": 0}},
            {"name": "f", "kind": "transform", "method": "filter", "options": {"condition": "amount > 0"}},
            {"name": "v", "kind": "validate", "method": "not_null", "options": {"columns": ["customer_id"]}},
            {"name": "l", "kind": "load", "method": "delta", "options": {"path": "zero_table"}}
        ]}"#,
    )
    .await;
    assert_eq!(report.status, "succeeded");
    for s in &report.steps {
        assert_eq!(
            (s.rows_in, s.rows_out, s.status),
            (0, 0, StepStatus::Ok),
            "{s:?}"
        );
    }
    let back = pipeline_connectors::read_delta_table(&dir.path().join("zero_table"))
        .await
        .unwrap();
    assert_eq!(back.height(), 0);
}

#[tokio::test]
async fn validation_filter_fail_and_named_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(
        dir.path(),
        r#"{"name": "v", "steps": [
            {"name": "g", "kind": "extract", "method": "generate", "options": {"rows": 10000, "batch_size": 3000, "null_fraction": 0.1}},
            {"name": "checked", "kind": "validate", "method": "not_null", "on_failure": "filter", "options": {"columns": ["customer_id"]}},
            {"name": "l", "kind": "load", "method": "delta", "options": {"path": "t"}},
            {"name": "again", "kind": "transform", "method": "select", "inputs": ["g"], "options": {"columns": ["order_id"]}}
        ]}"#,
    )
    .await;
    let checked = &report.steps[1];
    let failed = checked.metrics["failed"];
    assert!(failed > 800 && failed < 1200, "{failed}");
    assert_eq!(checked.rows_dropped, failed);
    assert_eq!(checked.metrics["checked"], 10_000);
    let back = pipeline_connectors::read_delta_table(&dir.path().join("t"))
        .await
        .unwrap();
    assert_eq!(back.height() as u64, 10_000 - failed);
    assert_eq!(back.column("customer_id").unwrap().null_count(), 0);
    assert_eq!(report.steps[3].rows_out, 10_000);

    // The same rule in fail mode stops the run, shows samples, and writes nothing.
    let path = write(
        dir.path(),
        "fail.json",
        r#"{"name": "v", "retry": {"delay_seconds": 0}, "steps": [
            {"name": "g", "kind": "extract", "method": "generate", "options": {"rows": 10000, "null_fraction": 0.1}},
            {"name": "l", "kind": "load", "method": "delta", "options": {"path": "t2"}},
            {"name": "checked", "kind": "validate", "method": "not_null", "options": {"columns": ["customer_id"]}}
        ]}"#,
    );
    let failure = Pipeline::from_file(&path, &[])
        .unwrap()
        .run(&RunOptions::default())
        .await
        .err()
        .unwrap();
    assert_eq!(failure.attempts, 1);
    let text = failure.to_string();
    assert!(
        text.contains("validation not_null(customer_id) failed for"),
        "{text}"
    );
    assert!(text.contains("customer_id: null"), "{text}");
    assert_eq!(failure.report.steps[1].status, StepStatus::Aborted);
    assert!(
        pipeline_connectors::read_delta_table(&dir.path().join("t2"))
            .await
            .is_err(),
        "nothing may be committed"
    );
}

#[tokio::test]
async fn max_invalid_fraction_and_warn() {
    let dir = tempfile::tempdir().unwrap();
    // 10% nulls against a 5% ceiling: filter turns into a failure, and nothing is loaded.
    let path = write(
        dir.path(),
        "frac.json",
        r#"{"name": "frac", "retry": {"delay_seconds": 0}, "steps": [
            {"name": "g", "kind": "extract", "method": "generate", "options": {"rows": 10000, "null_fraction": 0.1}},
            {"name": "checked", "kind": "validate", "method": "not_null", "on_failure": "filter",
             "max_invalid_fraction": 0.05, "options": {"columns": ["customer_id"]}},
            {"name": "l", "kind": "load", "method": "delta", "options": {"path": "t"}}
        ]}"#,
    );
    let failure = Pipeline::from_file(&path, &[])
        .unwrap()
        .run(&RunOptions::default())
        .await
        .err()
        .unwrap();
    let text = failure.to_string();
    assert!(text.contains("above max_invalid_fraction 0.05"), "{text}");
    assert_eq!(failure.attempts, 1);
    assert!(
        pipeline_connectors::read_delta_table(&dir.path().join("t"))
            .await
            .is_err()
    );

    // warn keeps every row and still counts the failures.
    let report = run(
        dir.path(),
        r#"{"name": "warn", "steps": [
            {"name": "g", "kind": "extract", "method": "generate", "options": {"rows": 1000, "null_fraction": 0.1}},
            {"name": "checked", "kind": "validate", "method": "not_null", "on_failure": "warn", "options": {"columns": ["customer_id"]}}
        ]}"#,
    )
    .await;
    let checked = &report.steps[1];
    assert_eq!(checked.rows_out, 1000);
    assert!(checked.metrics["failed"] > 0);
    assert_eq!(checked.rows_dropped, 0);
}
