//! The postgres load against the local PostgreSQL: create + append read back exactly, upsert
//! with a key twice in one batch, overwrite, a load failing in its last batch leaving the table
//! unchanged, two concurrent appends, and a missing table.

mod common;

use common::{drop_table, pg, read_all, step};
use pipeline_base::StepKind;
use pipeline_connectors::{GenerateOptions, LoadMethods, entries, generate_frame};
use pipeline_data::StepSetup;
use pipeline_data::polars::prelude::*;
use pipeline_testkit::{Env, Service, service, unique};
use serde_json::{Value, json};

fn orders(start: u64, len: u64) -> DataFrame {
    let o = GenerateOptions {
        dataset: Default::default(),
        rows: start + len,
        seed: 3,
        batch_size: 1000,
        null_fraction: 0.1,
    };
    generate_frame(&o, start, len).unwrap()
}

async fn setup(env: &Env, options: Value) -> StepSetup {
    step(env, "postgres", "postgres", json!({}), options).await
}

async fn load(
    env: &Env,
    options: Value,
    frames: Vec<DataFrame>,
) -> Result<(), pipeline_base::StepError> {
    let s = setup(env, options).await;
    let sink = LoadMethods::postgres(s.options().unwrap(), s).await?;
    common::load_frames(sink, frames).await.map(|_| ())
}

async fn read(env: &Env, table: &str) -> DataFrame {
    let entry = entries()
        .into_iter()
        .find(|e| e.kind == StepKind::Extract && e.name == "postgres")
        .unwrap();
    let s = step(
        env,
        "postgres",
        "postgres",
        json!({}),
        json!({"query": format!("SELECT * FROM {table} ORDER BY 1")}),
    )
    .await;
    read_all(entry.open(s).await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn create_append_and_read_back_exactly() {
    let Some(env) = service(Service::Postgres) else {
        return;
    };
    let table = unique("ld_orders");
    let _drop = drop_table(&env, &table);
    let data = orders(0, 50_000);
    load(
        &env,
        json!({"table": table, "create_table": true}),
        vec![data.slice(0, 30_000), data.slice(30_000, 20_000)],
    )
    .await
    .unwrap();
    let back = read(&env, &table).await;
    assert!(
        back.equals_missing(&data),
        "every value, nulls included, read back\n{back}\n{data}"
    );
    load(&env, json!({"table": table}), vec![orders(50_000, 10)])
        .await
        .unwrap();
    assert_eq!(read(&env, &table).await.height(), 50_010);
    load(
        &env,
        json!({"table": table, "mode": "overwrite"}),
        vec![orders(0, 5)],
    )
    .await
    .unwrap();
    assert_eq!(read(&env, &table).await.height(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn upsert_with_a_key_twice_in_one_batch_keeps_the_last() {
    let Some(env) = service(Service::Postgres) else {
        return;
    };
    let table = unique("ld_upsert");
    let _drop = drop_table(&env, &table);
    pg(&env)
        .await
        .batch_execute(&format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, name text, amount numeric(10,2));
                                 INSERT INTO {table} VALUES (1, 'old', 1.00), (9, 'kept', 9.00)"
        ))
        .await
        .unwrap();
    let batch = df!(
        "id" => [1i64, 2, 1, 2, 3],
        "name" => ["first", "b1", "last", "b2", "c"],
        "amount" => [10.5f64, 2.0, 11.25, 2.5, 3.0]
    )
    .unwrap();
    load(
        &env,
        json!({"table": table, "mode": "upsert", "key": ["id"]}),
        vec![batch],
    )
    .await
    .unwrap();
    let rows = pg(&env)
        .await
        .query(
            &format!("SELECT id, name, amount::text FROM {table} ORDER BY id"),
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(i64, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        [
            (1, "last".into(), "11.25".into()),
            (2, "b2".into(), "2.50".into()),
            (3, "c".into(), "3.00".into()),
            (9, "kept".into(), "9.00".into())
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_load_failing_in_its_last_batch_leaves_the_table_unchanged() {
    let Some(env) = service(Service::Postgres) else {
        return;
    };
    let table = unique("ld_fail");
    let _drop = drop_table(&env, &table);
    load(
        &env,
        json!({"table": table, "create_table": true}),
        vec![orders(0, 1000)],
    )
    .await
    .unwrap();
    pg(&env)
        .await
        .batch_execute(&format!(
            "ALTER TABLE {table} ADD CONSTRAINT small_ids CHECK (order_id <= 100000)"
        ))
        .await
        .unwrap();
    let before = read(&env, &table).await;
    let err = load(
        &env,
        json!({"table": table}),
        vec![
            orders(1000, 50_000),
            orders(51_000, 30_000),
            orders(100_000, 10),
        ],
    )
    .await
    .unwrap_err();
    assert!(err.message().contains("small_ids"), "{}", err.message());
    assert!(!err.retryable());
    assert!(
        read(&env, &table).await.equals_missing(&before),
        "nothing of the failed load is visible"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_concurrent_appends_both_land() {
    let Some(env) = service(Service::Postgres) else {
        return;
    };
    let table = unique("ld_concurrent");
    let _drop = drop_table(&env, &table);
    load(
        &env,
        json!({"table": table, "create_table": true}),
        vec![orders(0, 1)],
    )
    .await
    .unwrap();
    let (a, b) = tokio::join!(
        load(
            &env,
            json!({"table": table}),
            vec![orders(1, 40_000), orders(40_001, 40_000)]
        ),
        load(&env, json!({"table": table}), vec![orders(80_001, 40_000)]),
    );
    a.unwrap();
    b.unwrap();
    let back = read(&env, &table).await;
    assert_eq!(back.height(), 120_001);
    assert_eq!(
        back.column("order_id").unwrap().i64().unwrap().sum(),
        Some((1..=120_001).sum::<i64>())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_table_or_column_is_named() {
    let Some(env) = service(Service::Postgres) else {
        return;
    };
    let table = unique("ld_missing");
    let err = load(&env, json!({"table": table}), vec![orders(0, 1)])
        .await
        .unwrap_err();
    assert_eq!(
        err.message(),
        format!("step \"postgres_step\": table {table} does not exist")
    );
    let _drop = drop_table(&env, &table);
    pg(&env)
        .await
        .batch_execute(&format!("CREATE TABLE {table} (order_id bigint)"))
        .await
        .unwrap();
    let err = load(&env, json!({"table": table}), vec![orders(0, 1)])
        .await
        .unwrap_err();
    assert_eq!(
        err.message(),
        format!("step \"postgres_step\": column \"customer_id\" is not in table {table}")
    );
}
