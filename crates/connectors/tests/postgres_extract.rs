//! The postgres extract against the local PostgreSQL: every mapped type with NULLs, a query,
//! a parallel partitioned read, and an unsupported type named with its column.

mod common;

use common::{drop_table, pg, read_all, step};
use pipeline_base::StepKind;
use pipeline_connectors::entries;
use pipeline_data::polars::prelude::*;
use pipeline_testkit::{Service, service, unique};
use serde_json::json;

fn extract() -> pipeline_data::MethodEntry {
    entries()
        .into_iter()
        .find(|e| e.kind == StepKind::Extract && e.name == "postgres")
        .expect("postgres extract registered")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_mapped_type_round_trips_with_nulls() {
    let Some(env) = service(Service::Postgres) else {
        return;
    };
    let table = unique("ex_types");
    let _drop = drop_table(&env, &table);
    let client = pg(&env).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (
                i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, n numeric(12,3), nu numeric,
                t text, v varchar(10), b bool, d date, ts timestamp, tz timestamptz, u uuid,
                j json, jb jsonb, by bytea);
             INSERT INTO {table} VALUES
               (1, 2, 3, 1.5, 2.25, 12345.678, -0.000123, 'héllo', 'x', true, '2024-02-29',
                '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05+02',
                'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{\"a\": 1}}', '{{\"b\": 2}}', '\\x0102ff'),
               (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                NULL, NULL, NULL);"
        ))
        .await
        .unwrap();
    let setup = step(
        &env,
        "postgres",
        "postgres",
        json!({}),
        json!({"table": table}),
    )
    .await;
    let df = read_all(extract().open(setup).await.unwrap()).await;
    assert_eq!(df.height(), 2);
    for c in df.columns() {
        assert_eq!(c.null_count(), 1, "column {}", c.name());
    }
    let dtypes: Vec<String> = df.dtypes().iter().map(|d| d.to_string()).collect();
    assert_eq!(
        dtypes,
        [
            "i16",
            "i32",
            "i64",
            "f32",
            "f64",
            "decimal[12,3]",
            "decimal[38,18]",
            "str",
            "str",
            "bool",
            "date",
            "datetime[μs]",
            "datetime[μs, UTC]",
            "str",
            "str",
            "str",
            "binary"
        ]
    );
    let row = df.slice(0, 1);
    let text = |c: &str| row.column(c).unwrap().get(0).unwrap().to_string();
    assert_eq!(text("n"), "12345.678");
    assert_eq!(text("nu"), "-0.000123000000000000");
    assert_eq!(text("t"), "\"héllo\"");
    assert_eq!(text("d"), "2024-02-29");
    assert_eq!(text("ts"), "2024-01-02 03:04:05.123456");
    assert_eq!(text("tz"), "2024-01-02 01:04:05 UTC");
    assert_eq!(text("u"), "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"");
    assert_eq!(text("jb"), "\"{\"b\": 2}\"");
    assert_eq!(
        row.column("by").unwrap().binary().unwrap().get(0),
        Some(&[1u8, 2, 255][..])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partitioned_read_returns_every_row_once() {
    let Some(env) = service(Service::Postgres) else {
        return;
    };
    let table = unique("ex_part");
    let _drop = drop_table(&env, &table);
    let client = pg(&env).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} AS SELECT g AS id, now() - g * interval '1 minute' AS at, g * 0.5 AS x
             FROM generate_series(1, 100000) g;
             INSERT INTO {table} VALUES (NULL, NULL, 1);"
        ))
        .await
        .unwrap();
    for (column, extra) in [
        ("id", json!({})),
        ("at", json!({})),
        ("id", json!({"lower_bound": 1000, "upper_bound": 2000})),
    ] {
        let mut partition = json!({"column": column, "partitions": 4});
        partition
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let setup = step(
            &env,
            "postgres",
            "postgres",
            json!({}),
            json!({"table": table, "batch_size": 10000, "partition": partition}),
        )
        .await;
        let df = read_all(extract().open(setup).await.unwrap()).await;
        assert_eq!(df.height(), 100_001, "partitioned on {column}");
        let ids = df.column("id").unwrap().i32().unwrap();
        let sum: i64 = ids.iter().flatten().map(i64::from).sum();
        assert_eq!(sum, (1..=100_000i64).sum::<i64>());
        assert_eq!(ids.n_unique().unwrap(), 100_001);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_and_an_unsupported_type() {
    let Some(env) = service(Service::Postgres) else {
        return;
    };
    let setup = step(
        &env,
        "postgres",
        "postgres",
        json!({}),
        json!({"query": "SELECT g::int8 AS id, '10.0.0.1'::inet AS addr FROM generate_series(1, 3) g"}),
    )
    .await;
    let err = extract().open(setup).await.err().expect("inet is refused");
    assert_eq!(
        err.message(),
        "step \"postgres_step\": column \"addr\" has type inet, which the postgres extract cannot read"
    );
    let setup = step(
        &env,
        "postgres",
        "postgres",
        json!({}),
        json!({"query": "SELECT g::int8 AS id FROM generate_series(1, 300000) g", "batch_size": 65536}),
    )
    .await;
    let df = read_all(extract().open(setup).await.unwrap()).await;
    assert_eq!(df.height(), 300_000);
    assert_eq!(
        df.column("id").unwrap().i64().unwrap().sum(),
        Some(300_000 * 300_001 / 2)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_read_reports_the_planner_estimate_for_progress() {
    let Some(env) = service(Service::Postgres) else {
        return;
    };
    let table = unique("ex_estimate");
    let _drop = drop_table(&env, &table);
    pg(&env)
        .await
        .batch_execute(&format!(
            "CREATE TABLE {table} AS SELECT g AS id FROM generate_series(1, 5000) g; ANALYZE {table};"
        ))
        .await
        .unwrap();
    let setup = step(
        &env,
        "postgres",
        "postgres",
        json!({}),
        json!({"table": table}),
    )
    .await;
    let pipeline_data::Runtime::Source(source) = extract().open(setup).await.unwrap() else {
        panic!("not a source");
    };
    assert_eq!(source.total_rows(), Some(5000));
    let setup = step(
        &env,
        "postgres",
        "postgres",
        json!({}),
        json!({"query": format!("SELECT * FROM {table}")}),
    )
    .await;
    let pipeline_data::Runtime::Source(source) = extract().open(setup).await.unwrap() else {
        panic!("not a source");
    };
    assert_eq!(source.total_rows(), None, "a query has no estimate");
}
