//! The retry policy of `Pipeline::run`.

mod common;

use common::{opened, registry, write};
use pipeline_core::{ErrorClass, Pipeline, RunOptions, StepStatus};

fn pipeline(dir: &std::path::Path, key: &str, failures: u32, user_error: bool) -> Pipeline {
    let text = format!(
        r#"{{"name": "retry", "retry": {{"max_retries": 3, "delay_seconds": 0.01}}, "steps": [
            {{"name": "src", "kind": "extract", "method": "flaky", "options": {{"key": "{key}", "failures": {failures}, "user_error": {user_error}}}}},
            {{"name": "big", "kind": "transform", "method": "filter", "options": {{"condition": "id > 1"}}}}
        ]}}"#
    );
    let path = write(dir, "p.json", &text);
    Pipeline::from_file_with(&path, &[], registry()).unwrap()
}

#[tokio::test]
async fn two_transient_failures_then_success_takes_three_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let report = pipeline(dir.path(), "twice", 2, false)
        .run(&RunOptions::default())
        .await
        .unwrap();
    assert_eq!(report.attempts, 3);
    assert_eq!(opened("twice"), 3);
    assert_eq!(report.status, "succeeded");
    assert_eq!(report.steps[1].rows_out, 2);
}

#[tokio::test]
async fn always_failing_gives_up_after_four_attempts_naming_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let failure = pipeline(dir.path(), "always", 100, false)
        .run(&RunOptions::default())
        .await
        .err()
        .unwrap();
    assert_eq!(failure.attempts, 4);
    assert_eq!(opened("always"), 4);
    assert_eq!(failure.step, "src");
    let text = failure.to_string();
    assert!(
        text.contains("failed at step \"src\" after 4 attempts"),
        "{text}"
    );
    assert!(text.contains("connection refused (try 4)"), "{text}");
    assert_eq!(failure.report.steps[0].status, StepStatus::Failed);
    assert_eq!(failure.report.steps[1].status, StepStatus::NotRun);
}

#[tokio::test]
async fn a_user_error_is_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let failure = pipeline(dir.path(), "user", 100, true)
        .run(&RunOptions::default())
        .await
        .err()
        .unwrap();
    assert_eq!(failure.attempts, 1);
    assert_eq!(opened("user"), 1);
    assert_eq!(failure.error.class(), ErrorClass::User);
}

#[tokio::test]
async fn the_default_policy_is_three_retries_five_seconds_apart() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "p.json",
        r#"{"name": "d", "steps": [{"name": "g", "kind": "extract", "method": "generate"}]}"#,
    );
    let p = Pipeline::from_file(&path, &[]).unwrap();
    assert_eq!(p.plan().retry.max_retries, 3);
    assert_eq!(p.plan().retry.delay_seconds, 5.0);
}
