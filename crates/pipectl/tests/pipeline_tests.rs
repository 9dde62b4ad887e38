//! `pipectl test`: the shipped example tests pass without Vault or any service; a wrong
//! expectation fails with a readable diff and exit 1; an expected failure passes only when the
//! step fails with that message; broken test files exit 2.

mod common;

use common::{all_output, pipectl_with_env};
use std::path::Path;

fn run(args: &[&str]) -> std::process::Output {
    // No Vault: a pipeline test must never need one.
    pipectl_with_env(args, &[("VAULT_ADDR", ""), ("VAULT_TOKEN", "")])
}

#[test]
fn the_example_tests_pass_without_any_service() {
    let dir = pipeline_testkit::repo_root().join("configs/examples/tests");
    let out = run(&["test", dir.to_str().unwrap()]);
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("test result: ok. 9 passed; 0 failed"),
        "{text}"
    );
    assert!(text.contains("(pipeline orders_enriched)"), "{text}");
}

fn write_case(dir: &Path, name: &str, case: serde_json::Value) -> String {
    let pipeline = pipeline_testkit::repo_root().join("configs/examples/revenue_by_country.json");
    let doc = serde_json::json!({"pipeline": pipeline.to_str().unwrap(), "cases": [case]});
    let path = dir.join(name);
    std::fs::write(&path, doc.to_string()).unwrap();
    path.to_str().unwrap().to_string()
}

fn fixtures() -> serde_json::Value {
    serde_json::json!({
        "customers": {"rows": [{"customer_id": 1, "country": "DE"}]},
        "orders": {"rows": [
            {"order_id": 1, "customer_id": 1, "amount": 10.0, "status": "paid"},
            {"order_id": 2, "customer_id": 1, "amount": 2.5, "status": "paid"}
        ]}
    })
}

#[test]
fn wrong_expectations_fail_with_a_diff() {
    let dir = tempfile::tempdir().unwrap();
    let f = write_case(
        dir.path(),
        "rows.test.json",
        serde_json::json!({"name": "revenue", "fixtures": fixtures(), "expect": {
            "revenue_table": {"rows": [{"country": "DE", "status": "paid", "revenue": 99.0}],
                              "columns": {"orders": "string"}},
            "sane_amounts": {"row_count": 5},
            "known_customers": {"validation": {"failed": 1}}
        }}),
    );
    let out = run(&["test", &f]);
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("test revenue ... FAILED"), "{text}");
    assert!(
        text.contains("- {\"country\":\"DE\",\"status\":\"paid\",\"revenue\":99.0}")
            && text.contains(
                "+ {\"country\":\"DE\",\"status\":\"paid\",\"revenue\":12.5,\"orders\":2}"
            ),
        "{text}"
    );
    assert!(
        text.contains("column \"orders\" is u32, expected str")
            || text.contains("column \"orders\""),
        "{text}"
    );
    assert!(text.contains("expected 5 rows, got 2"), "{text}");
    assert!(text.contains("failed: expected 1, got 0"), "{text}");
    assert!(
        text.contains("test result: FAILED. 0 passed; 1 failed"),
        "{text}"
    );
}

#[test]
fn expected_failures_must_happen_with_their_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut bad_rows = fixtures();
    bad_rows["orders"]["rows"] = serde_json::json!([
        {"order_id": 1, "customer_id": 7, "amount": 1.0, "status": "paid"},
        {"order_id": 2, "customer_id": 8, "amount": 1.0, "status": "paid"}
    ]);
    let cases = [
        // Passes: the validation fails with that message.
        (
            serde_json::json!({"name": "a", "fixtures": bad_rows.clone(),
            "expect_failure": {"step": "known_customers", "message": "invalid"}}),
            true,
        ),
        // Fails: another message.
        (
            serde_json::json!({"name": "b", "fixtures": bad_rows,
            "expect_failure": {"message": "no such text"}}),
            false,
        ),
        // Fails: the run succeeds.
        (
            serde_json::json!({"name": "c", "fixtures": fixtures(),
            "expect_failure": {"message": "invalid"}}),
            false,
        ),
        // Fails: an extract without a fixture, and a fixture for no step.
        (
            serde_json::json!({"name": "d", "fixtures": {"customers": {"rows": []}}}),
            false,
        ),
        (
            serde_json::json!({"name": "e", "fixtures": {"nope": {"rows": []}}}),
            false,
        ),
    ];
    for (i, (case, passes)) in cases.into_iter().enumerate() {
        let f = write_case(dir.path(), &format!("{i}.test.json"), case);
        let out = run(&["test", &f]);
        assert_eq!(
            out.status.code(),
            Some(if passes { 0 } else { 1 }),
            "case {i}: {}",
            all_output(&out)
        );
    }
    let out = run(&[
        "test",
        &write_case(
            dir.path(),
            "x.test.json",
            serde_json::json!({"name": "d", "fixtures": {"customers": {"rows": []}}}),
        ),
    ]);
    assert!(
        all_output(&out).contains("extract step \"orders\" has no fixture"),
        "{}",
        all_output(&out)
    );
    let broken = dir.path().join("broken.test.json");
    std::fs::write(&broken, "{\"pipeline\": 1}").unwrap();
    let out = run(&["test", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", all_output(&out));
    let schema = run(&["test", "--schema"]);
    assert!(all_output(&schema).contains("\"expect_failure\""));
}
