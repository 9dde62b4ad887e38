//! The s3 connector: every format round-trips through a local directory and through the local
//! S3-API server, with hive partitions, overwrite, publish-at-commit (nothing visible before,
//! nothing left after an abort), concurrent appends and a missing bucket.

mod common;

use common::{read_all, step};
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path as ObjPath;
use pipeline_base::StepKind;
use pipeline_connectors::{ExtractMethods, GenerateOptions, LoadMethods, entries, generate_frame};
use pipeline_data::polars::prelude::*;
use pipeline_data::{Sink, StepSetup};
use pipeline_testkit::{Service, service, unique};
use serde_json::{Value, json};

fn local(dir: &std::path::Path, options: Value) -> StepSetup {
    common::local_step(dir, "files", options)
}

fn orders(start: u64, len: u64) -> DataFrame {
    let o = GenerateOptions {
        dataset: Default::default(),
        rows: start + len,
        seed: 7,
        batch_size: 1000,
        null_fraction: 0.1,
    };
    generate_frame(&o, start, len).unwrap()
}

async fn sink(setup: StepSetup) -> Box<dyn Sink> {
    LoadMethods::s3(setup.options().unwrap(), setup)
        .await
        .unwrap()
}

async fn read(setup: StepSetup) -> DataFrame {
    let entry = entries()
        .into_iter()
        .find(|e| e.kind == StepKind::Extract && e.name == "s3")
        .unwrap();
    read_all(entry.open(setup).await.unwrap()).await
}

fn sorted(df: &DataFrame) -> DataFrame {
    df.sort(["order_id"], Default::default()).unwrap()
}

/// Every key under a local directory, relative to it.
fn tree(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(
                    e.path()
                        .strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .to_string(),
                );
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_format_round_trips_locally_and_publishes_only_at_commit() {
    let dir = tempfile::tempdir().unwrap();
    let data = orders(0, 5000);
    for format in ["parquet", "csv", "json", "avro"] {
        let opts = json!({"path": format!("out_{format}/"), "format": format});
        let mut s = sink(local(dir.path(), opts)).await;
        s.write(data.slice(0, 3000)).await.unwrap();
        s.write(data.slice(3000, 2000)).await.unwrap();
        s.prepare().await.unwrap();
        let target = dir.path().join(format!("out_{format}"));
        // Before the commit only the local store's temporary files exist: no data file, and
        // a reader finds nothing.
        assert!(
            tree(&target).iter().all(|k| k.contains('#')),
            "nothing published before commit: {:?}",
            tree(&target)
        );
        let early = ExtractMethods::s3(
            serde_json::from_value(json!({"path": format!("out_{format}/")})).unwrap(),
            local(dir.path(), json!({})),
        )
        .await;
        assert!(early.is_err(), "a reader sees no data before the commit");
        s.commit().await.unwrap();
        let keys = tree(&target);
        assert!(keys.iter().all(|k| !k.contains('#')), "{keys:?}");
        assert!(keys.contains(&"_SUCCESS".to_string()));
        let back = read(local(dir.path(), json!({"path": format!("out_{format}/")}))).await;
        assert_eq!(back.height(), 5000, "{format}");
        let ids = back
            .column("order_id")
            .unwrap()
            .cast(&DataType::Int64)
            .unwrap();
        assert_eq!(
            ids.i64().unwrap().sum(),
            Some((1..=5000).sum::<i64>()),
            "{format}"
        );
        if format == "parquet" || format == "avro" {
            assert!(
                sorted(&back).equals_missing(&sorted(&data)),
                "{format}: values survive"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn partitions_overwrite_single_objects_and_aborts() {
    let dir = tempfile::tempdir().unwrap();
    let data = orders(0, 4000);
    let opts = json!({"path": "by_status/", "partition_by": ["status"]});
    let mut s = sink(local(dir.path(), opts.clone())).await;
    s.write(data.clone()).await.unwrap();
    s.prepare().await.unwrap();
    s.commit().await.unwrap();
    let keys = tree(&dir.path().join("by_status"));
    for status in ["paid", "pending", "refunded", "cancelled"] {
        assert!(
            keys.iter()
                .any(|k| k.starts_with(&format!("status={status}/part-"))),
            "{keys:?}"
        );
    }
    let back = read(local(dir.path(), json!({"path": "by_status/"}))).await;
    assert_eq!(back.height(), 4000);
    let paid = back
        .clone()
        .lazy()
        .filter(col("status").eq(lit("paid")))
        .collect()
        .unwrap()
        .height();
    let expected = data
        .clone()
        .lazy()
        .filter(col("status").eq(lit("paid")))
        .collect()
        .unwrap()
        .height();
    assert_eq!(
        paid, expected,
        "the partition column comes back from the directory names"
    );

    // Overwrite replaces every data file of the prefix.
    let mut s = sink(local(
        dir.path(),
        json!({"path": "by_status/", "mode": "overwrite"}),
    ))
    .await;
    s.write(orders(0, 10)).await.unwrap();
    s.prepare().await.unwrap();
    s.commit().await.unwrap();
    assert_eq!(
        read(local(dir.path(), json!({"path": "by_status/"})))
            .await
            .height(),
        10
    );

    // An aborted load leaves the destination exactly as it was.
    let before = tree(&dir.path().join("by_status"));
    let mut s = sink(local(dir.path(), json!({"path": "by_status/"}))).await;
    s.write(orders(0, 100)).await.unwrap();
    s.prepare().await.unwrap();
    s.abort().await;
    assert_eq!(tree(&dir.path().join("by_status")), before);

    // A single object, then a glob over objects.
    let mut s = sink(local(dir.path(), json!({"path": "one/orders.csv"}))).await;
    s.write(orders(0, 7)).await.unwrap();
    s.prepare().await.unwrap();
    s.commit().await.unwrap();
    assert_eq!(tree(&dir.path().join("one")), ["orders.csv"]);
    let back = read(local(dir.path(), json!({"path": "one/*.csv"}))).await;
    assert_eq!(back.height(), 7);
    let err = ExtractMethods::s3(
        serde_json::from_value(json!({"path": "nowhere/"})).unwrap(),
        local(dir.path(), json!({})),
    )
    .await
    .err()
    .unwrap();
    assert!(
        err.message()
            .starts_with("step \"files\": no data files at nowhere/"),
        "{}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_round_trip_multipart_concurrent_appends_and_missing_bucket() {
    let Some(env) = service(Service::S3) else {
        return;
    };
    let bucket = env.get("S3_BUCKET").to_string();
    let prefix_key = unique("it_orders");
    let prefix = format!("s3://{bucket}/{prefix_key}/");
    let store = pipeline_testkit::s3_store(&env).await;
    let conn = json!({"bucket": bucket});
    // 600k rows of Parquet is over one 8 MiB part: a multipart upload.
    let big = orders(0, 600_000);
    let mut a = sink(
        step(
            &env,
            "s3",
            "s3",
            conn.clone(),
            json!({"path": prefix, "compression": "uncompressed"}),
        )
        .await,
    )
    .await;
    let mut b = sink(step(&env, "s3", "s3", conn.clone(), json!({"path": prefix})).await).await;
    a.write(big.clone()).await.unwrap();
    b.write(orders(600_000, 1000)).await.unwrap();
    a.prepare().await.unwrap();
    b.prepare().await.unwrap();
    let listed: Vec<_> = store
        .list(Some(&ObjPath::from(prefix_key.as_str())))
        .try_collect()
        .await
        .unwrap();
    assert!(
        listed.is_empty(),
        "uploads stay invisible until the commit: {listed:?}"
    );
    let (ra, rb) = tokio::join!(a.commit(), b.commit());
    ra.unwrap();
    rb.unwrap();
    assert!(
        a.metrics()
            .iter()
            .any(|(k, v)| *k == "bytes_written" && *v > 8 << 20)
    );
    let back = read(step(&env, "s3", "s3", conn.clone(), json!({"path": prefix})).await).await;
    assert_eq!(back.height(), 601_000, "both appends landed");
    let ids = back.column("order_id").unwrap().i64().unwrap();
    assert_eq!(ids.sum(), Some((1..=601_000).sum::<i64>()));

    let missing = "s3://no-such-bucket-pipectl/x/";
    let mut s = sink(step(&env, "s3", "s3", json!({}), json!({"path": missing})).await).await;
    // The upload starts with the first file, so the first write already finds out.
    let err = match s.write(orders(0, 10)).await {
        Err(e) => e,
        Ok(()) => s.prepare().await.unwrap_err(),
    };
    assert!(
        err.message().contains("the bucket does not exist"),
        "{}",
        err.full_message()
    );
    s.abort().await;
}
