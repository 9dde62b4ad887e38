//! `configs/examples/mysql_to_postgres.json` run by the binary against the local MySQL
//! (MariaDB), PostgreSQL and Vault: the seeded customers are validated and upserted into a fresh
//! PostgreSQL table, twice (the second run updates, never duplicates); the table is read back
//! with psql's protocol and compared with MySQL's own aggregates. No seeded secret — the MySQL
//! password above all — appears in any output.

mod common;

use common::{all_output, pipectl};
use mysql_async::prelude::Queryable;
use pipeline_testkit::{Service, service, unique, vault_secret};
use std::process::Output;

fn example() -> String {
    pipeline_testkit::repo_root()
        .join("configs/examples/mysql_to_postgres.json")
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_customers_are_upserted_into_postgres_and_no_secret_is_printed() {
    let (Some(env), Some(_), Some(_)) = (
        service(Service::Mysql),
        service(Service::Postgres),
        service(Service::Vault),
    ) else {
        return;
    };
    let table = unique("mysql_customers");
    let _drop = pipeline_testkit::drop_table_on_exit(&env, &table);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let target = format!("/steps/5/options/table={table}");
    let run = |extra: &[&str]| -> Output {
        let example = example();
        let mut args = vec!["run", example.as_str(), "--set", target.as_str()];
        args.extend_from_slice(extra);
        pipectl(&args)
    };
    let human = run(&["--report", report.to_str().unwrap(), "--log-level", "debug"]);
    assert_eq!(human.status.code(), Some(0), "{}", all_output(&human));
    let json_logs = run(&["--log-format", "json", "--log-level", "debug"]);
    assert_eq!(
        json_logs.status.code(),
        Some(0),
        "{}",
        all_output(&json_logs)
    );

    // MySQL's own view of the source ...
    let mut my = pipeline_testkit::mysql_client(&env).await;
    let source: (i64, String, i64, String) = my
        .query_first(
            "SELECT COUNT(*), CAST(SUM(customer_id) AS CHAR), COUNT(email),
                    CAST(SUM(TIMESTAMPDIFF(MICROSECOND, '1970-01-01', created_at)) AS CHAR)
             FROM customers",
        )
        .await
        .unwrap()
        .unwrap();
    let _ = my.disconnect().await;
    // ... against PostgreSQL's of the target, after two runs.
    let row = pipeline_testkit::postgres_client(&env)
        .await
        .query_one(
            &format!(
                "SELECT count(*), sum(customer_id)::text, count(email),
                        sum(extract(epoch FROM created_at)::numeric * 1000000)::numeric(38,0)::text,
                        count(DISTINCT customer_id)
                 FROM {table}"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), source.0, "rows");
    assert_eq!(
        row.get::<_, i64>(4),
        source.0,
        "no key twice after two runs"
    );
    assert_eq!(row.get::<_, String>(1), source.1, "sum of customer_id");
    assert_eq!(row.get::<_, i64>(2), source.2, "non-null emails");
    assert_eq!(row.get::<_, String>(3), source.3, "created_at (µs)");
    let out = all_output(&human);
    assert!(out.contains("keys_unique"), "{out}");

    // No seeded secret in any output.
    let plan = pipectl(&["plan", &example()]);
    let resolved = pipectl(&["plan", "--resolved", &example()]);
    let check = pipectl(&["validate", "--connect", &example()]);
    assert_eq!(check.status.code(), Some(0), "{}", all_output(&check));
    assert!(
        all_output(&check).contains("MySQL"),
        "{}",
        all_output(&check)
    );
    let report_text = std::fs::read_to_string(&report).unwrap();
    let mut secrets = vec![env.get("VAULT_TOKEN").to_string()];
    for path in ["pipectl/mysql", "pipectl/postgres"] {
        secrets.push(vault_secret(&env, path).await["password"].clone());
    }
    for (what, text) in [
        ("run (human logs)", all_output(&human)),
        ("run (JSON logs)", all_output(&json_logs)),
        ("plan", all_output(&plan)),
        ("plan --resolved", all_output(&resolved)),
        ("validate --connect", all_output(&check)),
        ("report", report_text),
    ] {
        assert!(text.len() > 100, "{what} printed something: {text}");
        for secret in &secrets {
            assert!(
                !secret.is_empty() && !text.contains(secret.as_str()),
                "{what} shows a seeded secret"
            );
        }
    }
}
