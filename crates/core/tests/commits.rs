//! The run-level commit protocol: loads commit one after another in plan order; when a later
//! commit fails, the retry does not write an already committed load again, and the report names
//! which loads committed. The first load is a real local Delta table, read back afterwards.

mod common;

use common::{committed_rows, registry, write};
use pipeline_core::{CancelToken, Pipeline, RunId, RunOptions};

fn two_loads(dir: &std::path::Path, key: &str, failures: u32, user_error: bool) -> Pipeline {
    let text = format!(
        r#"{{"name": "two_loads", "retry": {{"max_retries": 3, "delay_seconds": 0.01}}, "steps": [
            {{"name": "orders", "kind": "extract", "method": "generate", "options": {{"rows": 5000}}}},
            {{"name": "to_lake", "kind": "load", "method": "delta", "options": {{"path": "lake"}}}},
            {{"name": "to_other", "kind": "load", "method": "flaky_commit", "options": {{"key": "{key}", "failures": {failures}, "user_error": {user_error}}}}}
        ]}}"#
    );
    let path = write(dir, "p.json", &text);
    Pipeline::from_file_with(&path, &[], registry()).unwrap()
}

async fn lake_rows(dir: &std::path::Path) -> usize {
    pipeline_connectors::read_delta_table(&dir.join("lake"))
        .await
        .unwrap()
        .height()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_second_commit_does_not_publish_the_first_load_twice() {
    let dir = tempfile::tempdir().unwrap();
    let report = two_loads(dir.path(), "second_fails_once", 1, false)
        .run(&RunOptions::default())
        .await
        .unwrap();
    assert_eq!(report.attempts, 2);
    assert_eq!(
        lake_rows(dir.path()).await,
        5000,
        "the Delta table holds each row once"
    );
    assert_eq!(committed_rows("second_fails_once"), 5000);
    assert_eq!(report.committed_loads, ["to_lake", "to_other"]);
    assert!(report.uncommitted_loads.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_commit_that_never_succeeds_names_what_committed() {
    let dir = tempfile::tempdir().unwrap();
    let failure = two_loads(dir.path(), "second_refused", 100, true)
        .run(&RunOptions::default())
        .await
        .unwrap_err();
    assert_eq!(failure.attempts, 1, "a user error is not retried");
    assert_eq!(failure.step, "to_other");
    assert_eq!(failure.report.committed_loads, ["to_lake"]);
    assert_eq!(failure.report.uncommitted_loads, ["to_other"]);
    assert_eq!(
        failure.report.commit_summary(),
        "committed: to_lake; not committed: to_other"
    );
    assert_eq!(lake_rows(dir.path()).await, 5000);
    assert_eq!(committed_rows("second_refused"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_run_commits_nothing_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancelToken::new();
    cancel.cancel("SIGTERM");
    let options = RunOptions {
        cancel,
        ..RunOptions::default()
    };
    let failure = two_loads(dir.path(), "cancelled", 0, false)
        .run(&options)
        .await
        .unwrap_err();
    assert_eq!(failure.interrupted.as_deref(), Some("SIGTERM"));
    assert_eq!(failure.attempts, 1, "an interrupted run is not retried");
    assert_eq!(failure.report.commit_summary(), "nothing was committed");
    assert!(
        !dir.path().join("lake").join("_delta_log").exists() || lake_rows(dir.path()).await == 0
    );
    assert_eq!(committed_rows("cancelled"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resumed_run_writes_only_the_loads_that_did_not_commit() {
    let dir = tempfile::tempdir().unwrap();
    let failure = two_loads(dir.path(), "resumed", 1, true)
        .run(&RunOptions::default())
        .await
        .unwrap_err();
    assert_eq!(failure.report.committed_loads, ["to_lake"]);
    let run_id = RunId::parse(&failure.report.run_id).unwrap();

    // The same run again (its second load's refusal fixed): the Delta sink finds its commit
    // in the table's log and writes nothing; the other load commits.
    let options = RunOptions {
        run_id: Some(run_id.clone()),
        ..RunOptions::default()
    };
    let report = two_loads(dir.path(), "resumed", 1, true)
        .run(&options)
        .await
        .unwrap();
    assert_eq!(report.run_id, run_id.as_str());
    assert_eq!(report.already_committed_loads, ["to_lake"]);
    assert_eq!(report.committed_loads, ["to_other"]);
    assert!(report.uncommitted_loads.is_empty());
    assert_eq!(lake_rows(dir.path()).await, 5000, "no row written twice");
    assert_eq!(committed_rows("resumed"), 5000);
    assert!(
        report.commit_summary().contains(
            "already committed by an earlier run with this id (not written again): to_lake"
        ),
        "{}",
        report.commit_summary()
    );

    // Resuming a finished run writes nothing at all; a new run appends again.
    let again = two_loads(dir.path(), "resumed", 0, true)
        .run(&options)
        .await
        .unwrap();
    assert_eq!(again.already_committed_loads, ["to_lake", "to_other"]);
    assert!(again.committed_loads.is_empty());
    assert_eq!(lake_rows(dir.path()).await, 5000);
    let fresh = two_loads(dir.path(), "resumed", 0, true)
        .run(&RunOptions::default())
        .await
        .unwrap();
    assert_ne!(fresh.run_id, run_id.as_str());
    assert_eq!(lake_rows(dir.path()).await, 10000);
    assert_eq!(committed_rows("resumed"), 10000);
}

/// A source that fails to record how far it read (after every load committed) fails the
/// attempt; the retry passes the committed load through and records again.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_source_commit_is_retried_without_writing_the_load_again() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"{"name": "offsets", "retry": {"max_retries": 2, "delay_seconds": 0.01}, "steps": [
        {"name": "events", "kind": "extract", "method": "source_commit_fails", "options": {"key": "source_commit_once", "failures": 1}},
        {"name": "to_lake", "kind": "load", "method": "delta", "options": {"path": "lake"}}
    ]}"#;
    let path = write(dir.path(), "p.json", text);
    let report = Pipeline::from_file_with(&path, &[], registry())
        .unwrap()
        .run(&RunOptions::default())
        .await
        .unwrap();
    assert_eq!(report.attempts, 2);
    assert_eq!(lake_rows(dir.path()).await, 100);
    assert_eq!(common::opened("source_commit_once"), 2);
}
