//! Avro between steps: `to_avro` and `to_dataframe`, and the automatic conversions the plan
//! inserts when a DataFrame method follows an Avro step; the rows that reach the load are the
//! rows a DataFrame-only pipeline produces.

mod common;

use common::write;
use pipeline_core::{Pipeline, RunOptions};
use pipeline_data::polars::prelude::*;

fn pipeline(dir: &std::path::Path, name: &str, middle: &str) -> Pipeline {
    let text = format!(
        r#"{{"name": "{name}", "auto_convert": true, "steps": [
            {{"name": "orders", "kind": "extract", "method": "generate", "options": {{"rows": 20000, "null_fraction": 0.1}}}},
            {middle}
            {{"name": "paid", "kind": "transform", "method": "filter", "options": {{"condition": "status = 'paid'"}}}},
            {{"name": "to_lake", "kind": "load", "method": "delta", "options": {{"path": "{name}"}}}}
        ]}}"#
    );
    let path = write(dir, &format!("{name}.json"), &text);
    Pipeline::from_file(&path, &[]).unwrap()
}

async fn lake(dir: &std::path::Path, name: &str) -> DataFrame {
    pipeline_connectors::read_delta_table(&dir.join(name))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_through_avro_steps_equal_rows_through_frames() {
    let dir = tempfile::tempdir().unwrap();
    let plain = pipeline(dir.path(), "plain", "");
    let through = pipeline(
        dir.path(),
        "through_avro",
        r#"{"name": "as_avro", "kind": "transform", "method": "to_avro", "options": {"record_name": "order"}},
           {"name": "back", "kind": "transform", "method": "to_dataframe", "options": {}},
           {"name": "again", "kind": "transform", "method": "to_avro", "options": {}},"#,
    );
    let a = plain.run(&RunOptions::default()).await.unwrap();
    let b = through.run(&RunOptions::default()).await.unwrap();
    assert_eq!(a.rows_written, b.rows_written);
    assert!(a.rows_written > 0);
    let (x, y) = (
        lake(dir.path(), "plain").await,
        lake(dir.path(), "through_avro").await,
    );
    assert_eq!(x.height(), y.height());
    let sum = |df: &DataFrame| df.column("amount").unwrap().f64().unwrap().sum().unwrap();
    assert!((sum(&x) - sum(&y)).abs() < 1e-6);
    assert_eq!(
        x.column("customer_id").unwrap().null_count(),
        y.column("customer_id").unwrap().null_count(),
        "nulls survive the round trip"
    );
}
