//! User story 1 end to end: `configs/examples/postgres_to_s3.json` run by the binary against the
//! local PostgreSQL, Vault and S3 servers. 100,000 mocked rows are extracted, filtered, derived
//! and loaded as Parquet; the objects are read back (with Polars, independently of pipectl's
//! s3 extract) and compared with the source column by column. Also: no seeded secret appears in
//! any output, PostgreSQL down at start is retried then named, and a missing bucket is clear.

mod common;

use common::{all_output, pipectl, pipectl_with_env};
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, path::Path as ObjPath};
use pipeline_data::polars::prelude::*;
use pipeline_testkit::{Cleanup, Env, Service, service, unique, vault_secret};
use std::path::PathBuf;
use std::process::Output;

fn repo() -> PathBuf {
    pipeline_testkit::repo_root()
}

fn example() -> String {
    repo()
        .join("configs/examples/postgres_to_s3.json")
        .display()
        .to_string()
}

async fn pg(env: &Env) -> tokio_postgres::Client {
    pipeline_testkit::postgres_client(env).await
}

/// A fresh 100,000-row orders table (same generator as the seed), dropped at the end.
async fn source_table(env: &Env) -> (String, Cleanup<impl FnOnce() + use<>>) {
    let table = unique("p1_orders");
    pg(env)
        .await
        .batch_execute(&format!(
            "CREATE TABLE {table} (LIKE orders INCLUDING ALL);
             INSERT INTO {table} SELECT g, CASE WHEN g % 97 = 0 THEN NULL ELSE 1 + (g * 2654435761) % 10000 END,
               (ARRAY['paid','paid','paid','pending','refunded','cancelled'])[1 + (g * 31) % 6],
               round((((g * 48271) % 100000) / 100.0 + 1)::numeric, 2),
               timestamptz '2025-01-01 00:00:00+00' + (g * interval '13 seconds')
             FROM generate_series(1::bigint, 100000) g;"
        ))
        .await
        .unwrap();
    let cleanup = pipeline_testkit::drop_table_on_exit(env, &table);
    (table, cleanup)
}

/// Every Parquet object under `prefix`, stacked.
async fn read_back(store: &impl ObjectStore, prefix: &str) -> (DataFrame, Vec<String>) {
    let keys: Vec<ObjPath> = store
        .list(Some(&ObjPath::from(prefix)))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .unwrap();
    let names: Vec<String> = keys.iter().map(|k| k.as_ref().to_string()).collect();
    let mut out: Option<DataFrame> = None;
    for k in keys.iter().filter(|k| k.as_ref().ends_with(".parquet")) {
        let bytes = store.get(k).await.unwrap().bytes().await.unwrap();
        let df = ParquetReader::new(std::io::Cursor::new(bytes))
            .finish()
            .unwrap();
        match &mut out {
            None => out = Some(df),
            Some(acc) => {
                acc.vstack_mut_owned(df).unwrap();
            }
        }
    }
    (out.expect("parquet objects were written"), names)
}

fn i128_sum(df: &DataFrame, column: &str) -> i128 {
    let c = df.column(column).unwrap();
    let physical = c.to_physical_repr();
    let s = physical.as_materialized_series();
    let wide = s.cast(&DataType::Int128).unwrap();
    wide.i128().unwrap().iter().flatten().sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn p1_example_moves_100k_rows_exactly_and_prints_no_secret() {
    let (Some(env), Some(_), Some(_)) = (
        service(Service::Postgres),
        service(Service::S3),
        service(Service::Vault),
    ) else {
        return;
    };
    let (table, _drop) = source_table(&env).await;
    let prefix = unique("p1_it");
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let sets = [
        format!("/steps/0/options/table={table}"),
        format!(
            "/steps/3/options/path=s3://{}/{prefix}/",
            env.get("S3_BUCKET")
        ),
    ];
    let mut args: Vec<String> = vec!["run".into(), example()];
    for s in &sets {
        args.push("--set".into());
        args.push(s.clone());
    }
    let with = |extra: &[&str]| -> Output {
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.extend_from_slice(extra);
        pipectl(&all)
    };
    let human = with(&["--report", report.to_str().unwrap(), "--log-level", "debug"]);
    assert_eq!(human.status.code(), Some(0), "{}", all_output(&human));
    let json_logs = with(&["--log-format", "json", "--log-level", "debug"]);
    assert_eq!(
        json_logs.status.code(),
        Some(0),
        "{}",
        all_output(&json_logs)
    );

    // Read the Parquet back and compare with the source, column by column.
    let store = pipeline_testkit::s3_store(&env).await;
    let (df, keys) = read_back(&store, &prefix).await;
    assert!(keys.iter().any(|k| k.ends_with("/_SUCCESS")), "{keys:?}");
    assert!(
        keys.iter().all(|k| k.ends_with("/_SUCCESS")
            || k.ends_with(".parquet")
            || (k.contains("/_pipectl/") && k.ends_with(".to_lake.json"))),
        "only data files and the markers: {keys:?}"
    );
    assert_eq!(
        keys.iter().filter(|k| k.contains("/_pipectl/")).count(),
        1,
        "the overwrite replaced the first run's marker: {keys:?}"
    );
    let row = pg(&env)
        .await
        .query_one(
            &format!(
                "SELECT count(*), sum(order_id)::text, sum(customer_id)::text, count(customer_id),
                        sum(amount * 100)::numeric(38,0)::text,
                        sum(CASE WHEN status = 'refunded' THEN -amount ELSE amount END * 100)::numeric(38,0)::text,
                        sum(extract(epoch FROM created_at)::numeric * 1000000)::numeric(38,0)::text,
                        sum(created_at::date - DATE '1970-01-01')::text,
                        string_agg(DISTINCT status, ',' ORDER BY status),
                        count(*) FILTER (WHERE status = 'refunded')
                 FROM {table} WHERE status <> 'cancelled'"
            ),
            &[],
        )
        .await
        .unwrap();
    let n: i64 = row.get(0);
    let big = |i: usize| row.get::<_, String>(i).parse::<i128>().unwrap();
    assert_eq!(df.height() as i64, n, "row count");
    assert_eq!(n, 83_334, "100,000 rows minus the cancelled ones");
    assert_eq!(i128_sum(&df, "order_id"), big(1), "order_id");
    assert_eq!(i128_sum(&df, "customer_id"), big(2), "customer_id");
    assert_eq!(
        df.column("customer_id").unwrap().null_count() as i64,
        n - row.get::<_, i64>(3)
    );
    assert_eq!(
        df.column("amount").unwrap().dtype(),
        &DataType::Decimal(12, 2)
    );
    assert_eq!(i128_sum(&df, "amount"), big(4), "amount (cents)");
    assert_eq!(i128_sum(&df, "net_amount"), big(5), "net_amount (cents)");
    assert_eq!(i128_sum(&df, "created_at"), big(6), "created_at (µs)");
    assert_eq!(i128_sum(&df, "order_day"), big(7), "order_day (days)");
    let statuses = df.column("status").unwrap().unique_stable().unwrap();
    let mut statuses: Vec<String> = statuses
        .str()
        .unwrap()
        .iter()
        .flatten()
        .map(str::to_string)
        .collect();
    statuses.sort();
    assert_eq!(statuses.join(","), row.get::<_, String>(8));
    let refunded = df
        .clone()
        .lazy()
        .filter(col("status").eq(lit("refunded")))
        .collect()
        .unwrap()
        .height();
    assert_eq!(refunded as i64, row.get::<_, i64>(9));

    // No seeded secret in stdout, stderr (human and JSON logs), the plan or the report.
    let plan = pipectl(&["plan", &example()]);
    let plan_json = pipectl(&["plan", "--json", &example()]);
    let resolved = pipectl(&["plan", "--resolved", &example()]);
    let check = pipectl(&["validate", "--connect", &example()]);
    assert_eq!(check.status.code(), Some(0), "{}", all_output(&check));
    let report_text = std::fs::read_to_string(&report).unwrap();
    let mut secrets: Vec<String> = Vec::new();
    for path in [
        "pipectl/postgres",
        "pipectl/s3",
        "pipectl/mysql",
        "pipectl/delta",
    ] {
        let fields = vault_secret(&env, path).await;
        for key in [
            "password",
            "secret_access_key",
            "access_key_id",
            "aws_secret_access_key",
            "aws_access_key_id",
        ] {
            if let Some(v) = fields.get(key) {
                secrets.push(v.clone());
            }
        }
    }
    secrets.push(env.get("VAULT_TOKEN").to_string());
    assert!(
        secrets.len() >= 5,
        "{} seeded secrets to look for",
        secrets.len()
    );
    for (what, text) in [
        ("run (human logs)", all_output(&human)),
        ("run (JSON logs)", all_output(&json_logs)),
        ("plan", all_output(&plan)),
        ("plan --json", all_output(&plan_json)),
        ("plan --resolved", all_output(&resolved)),
        ("validate --connect", all_output(&check)),
        ("report", report_text),
    ] {
        assert!(text.len() > 100, "{what} printed something: {text}");
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{what} shows a seeded secret"
            );
        }
    }
    assert!(
        all_output(&human).contains("credentials read"),
        "debug logs were on"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_down_is_retried_then_named_and_a_missing_bucket_is_clear() {
    let (Some(env), Some(_)) = (service(Service::Postgres), service(Service::S3)) else {
        return;
    };
    // A port nobody listens on: the connection block's non-secret port overrides Vault's.
    let port = pipeline_testkit::closed_port();
    let out = pipectl(&[
        "run",
        &example(),
        "--no-progress",
        "--set",
        &format!("/connections/shop/port={port}"),
        "--set",
        "/retry/max_retries=2",
        "--set",
        "/retry/delay_seconds=0.2",
    ]);
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("after 3 attempts"), "{text}");
    assert!(
        text.contains("connection \"shop\": connecting to PostgreSQL at 127.0.0.1:"),
        "{text}"
    );
    assert_eq!(
        text.matches("attempt failed with a transient error; retrying")
            .count(),
        2,
        "{text}"
    );

    let out = pipectl(&[
        "run",
        &example(),
        "--no-progress",
        "--set",
        "/steps/0/options/table=customers",
        "--set",
        "/steps/1/options/condition=TRUE",
        "--set",
        "/steps/2/options/columns={\"x\": \"1\"}",
        "--set",
        "/steps/3/options/path=s3://no-such-bucket-p1/orders/",
    ]);
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("the bucket does not exist"), "{text}");
    assert!(
        text.contains("after 1 attempt"),
        "a user error is not retried: {text}"
    );

    // validate --connect reports each connection; one without its secret fails the command.
    let out = pipectl(&[
        "validate",
        "--connect",
        &example(),
        "--set",
        "/connections/shop/credentials/vault_path=secret/pipectl/nothing",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{}", all_output(&out));
    assert!(
        stdout.contains("ok      lake  s3        S3 bucket s3://pipectl-lake"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAILED  shop  postgres  connection \"shop\": no secret at secret/pipectl/nothing (mount secret/, KV v"),
        "{stdout}"
    );
    assert!(stdout.contains("1 of 2 connections failed"), "{stdout}");
    let _ = env;
}

#[tokio::test(flavor = "multi_thread")]
async fn vault_unreachable_during_a_run_is_retried_then_exit_1_without_the_token() {
    let Some(_env) = service(Service::Vault) else {
        return;
    };
    let port = pipeline_testkit::closed_port();
    let addr = format!("http://127.0.0.1:{port}");
    let out = pipectl_with_env(
        &[
            "run",
            &example(),
            "--no-progress",
            "--set",
            "/retry/max_retries=1",
            "--set",
            "/retry/delay_seconds=0.1",
        ],
        &[
            ("VAULT_ADDR", &addr),
            ("VAULT_TOKEN", "token-that-must-not-print-42"),
            ("VAULT_MAX_RETRIES", "1"),
        ],
    );
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("connection \"shop\": Vault at {addr} is unreachable while reading secret/pipectl/postgres (2 attempts)")),
        "{text}"
    );
    assert!(
        text.contains("after 2 attempts"),
        "the pipeline's retry policy applied too: {text}"
    );
    assert!(!text.contains("token-that-must-not-print-42"));

    // Skipping TLS verification is explicit and loud.
    let out = pipectl(&[
        "validate",
        "--connect",
        "--vault-skip-tls-verify",
        &example(),
    ]);
    assert!(
        all_output(&out).contains("TLS certificate verification for Vault is OFF (--vault-skip-tls-verify): for local development only"),
        "{}",
        all_output(&out)
    );
}
