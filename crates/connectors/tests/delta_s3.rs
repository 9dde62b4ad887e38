//! Delta tables on the local S3-API server (conditional-put commits, no lock service): write,
//! partitioned reads with projection and filters, time travel, schema evolution, an overwrite
//! racing an append (one winner, the loser's files gone), upsert rewriting only the files that
//! hold its keys, checkpoints every 10 versions read back, compaction beside a concurrent
//! append, vacuum's dry run, and refused lock-service settings.

mod common;

use deltalake::DeltaTableBuilder;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use pipeline_base::StepKind;
use pipeline_connectors::delta_maintenance as m;
use pipeline_connectors::{GenerateOptions, LoadMethods, entries, generate_frame};
use pipeline_data::polars::prelude::*;
use pipeline_data::{Sink, StepSetup};
use pipeline_testkit::{Env, Service, service, unique};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};

fn rows(start: u64, len: u64) -> DataFrame {
    let o = GenerateOptions {
        dataset: Default::default(),
        rows: start + len,
        seed: 3,
        batch_size: 1000,
        null_fraction: 0.0,
    };
    generate_frame(&o, start, len).unwrap()
}

fn table_url(env: &Env) -> String {
    format!("s3://{}/delta-tests/{}", env.get("S3_BUCKET"), unique("t"))
}

async fn step(env: &Env, options: Value) -> StepSetup {
    common::step(env, "delta", "delta", json!({}), options).await
}

async fn sink(env: &Env, options: Value) -> Box<dyn Sink> {
    let s = step(env, options).await;
    LoadMethods::delta(s.options().unwrap(), s).await.unwrap()
}

async fn load(env: &Env, options: Value, frames: Vec<DataFrame>) {
    let mut s = sink(env, options).await;
    for f in frames {
        s.write(f).await.unwrap();
    }
    s.prepare().await.unwrap();
    s.commit().await.unwrap();
}

async fn read(env: &Env, options: Value) -> DataFrame {
    let entry = entries()
        .into_iter()
        .find(|e| e.kind == StepKind::Extract && e.name == "delta")
        .unwrap();
    common::read_all(entry.open(step(env, options).await).await.unwrap()).await
}

fn ids(df: &DataFrame) -> Vec<i64> {
    let mut v: Vec<i64> = df
        .column("order_id")
        .unwrap()
        .i64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    v.sort_unstable();
    v
}

/// The table's storage options from Vault (as a step gets them), for direct checks.
async fn storage(env: &Env) -> HashMap<String, String> {
    let c = pipeline_testkit::vault_secret(env, "pipectl/delta").await;
    c.into_iter().collect()
}

async fn table(env: &Env, url: &str) -> deltalake::DeltaTable {
    let s = step(env, json!({"path": url})).await;
    m::step_table(&s).await.unwrap()
}

/// Data files (not the log) under the table's prefix.
async fn data_files(env: &Env, url: &str) -> BTreeSet<String> {
    let t = table(env, url).await;
    let store = t.log_store().object_store(None);
    store
        .list(None)
        .map_ok(|o| o.location.to_string())
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .filter(|p| !p.starts_with("_delta_log"))
        .collect()
}

async fn referenced(env: &Env, url: &str) -> BTreeSet<String> {
    let t = table(env, url).await;
    t.get_file_uris()
        .unwrap()
        .map(|u| {
            u.rsplit_once(&format!("{}/", url.trim_end_matches('/')))
                .map(|(_, p)| p.to_string())
                .unwrap_or(u)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn write_read_partitions_time_travel_and_evolution_on_s3() {
    let Some(env) = service(Service::S3) else {
        return;
    };
    let url = table_url(&env);
    let opts = json!({"path": url, "partition_by": ["status"]});
    load(&env, opts.clone(), vec![rows(0, 3000), rows(3000, 2000)]).await;
    let before_second = chrono_now();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    load(&env, opts, vec![rows(5000, 1000)]).await;

    let all = read(&env, json!({"path": url})).await;
    assert_eq!(ids(&all), (1..=6000).collect::<Vec<_>>());
    assert_eq!(all.get_column_names().len(), 5);
    // The partition column comes back from the file paths, typed and complete.
    let expected = rows(0, 6000);
    let want_paid = expected
        .column("status")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .filter(|s| *s == "paid")
        .count();
    let paid = read(
        &env,
        json!({"path": url, "partitions": {"status": "paid"}, "columns": ["order_id", "status"]}),
    )
    .await;
    assert_eq!(paid.height(), want_paid);
    assert_eq!(paid.get_column_names(), ["order_id", "status"]);
    assert!(
        paid.column("status")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .all(|s| s == Some("paid"))
    );
    let two = read(
        &env,
        json!({"path": url, "partitions": {"status": ["paid", "refunded"]}, "columns": ["amount"]}),
    )
    .await;
    assert!(two.height() > want_paid && two.height() < 6000);

    // Time travel, by version and by time.
    assert_eq!(
        read(&env, json!({"path": url, "version": 0}))
            .await
            .height(),
        5000
    );
    assert_eq!(
        read(&env, json!({"path": url, "timestamp": before_second}))
            .await
            .height(),
        5000
    );
    let err = match entries()
        .into_iter()
        .find(|e| e.kind == StepKind::Extract && e.name == "delta")
        .unwrap()
        .open(step(&env, json!({"path": url, "columns": ["nope"]})).await)
        .await
    {
        Err(e) => e,
        Ok(_) => panic!("an unknown column was accepted"),
    };
    assert!(err.message().contains("\"nope\""), "{}", err.message());

    // Schema evolution: a new column; older rows read it as null. (A partitioned table
    // refuses it clearly: deltalake's writer cannot merge schemas there yet.)
    let extra = rows(6000, 10)
        .lazy()
        .with_column(lit("x").alias("channel"))
        .collect()
        .unwrap();
    let mut refused = sink(&env, json!({"path": url, "schema_evolution": "evolve"})).await;
    let e = refused.write(extra.clone()).await.unwrap_err();
    assert!(e.message().contains("partitioned"), "{}", e.message());
    refused.abort().await;
    let flat = table_url(&env);
    load(&env, json!({"path": flat}), vec![rows(0, 6000)]).await;
    load(
        &env,
        json!({"path": flat, "schema_evolution": "evolve"}),
        vec![extra],
    )
    .await;
    let evolved = read(&env, json!({"path": flat})).await;
    assert_eq!(evolved.height(), 6010);
    assert_eq!(evolved.column("channel").unwrap().null_count(), 6000);
}

fn chrono_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // RFC 3339 from the epoch seconds (UTC), without a date crate in the tests.
    let t = deltalake::arrow::temporal_conversions::timestamp_s_to_datetime(secs as i64).unwrap();
    format!("{}Z", t.format("%Y-%m-%dT%H:%M:%S"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_overwrite_racing_an_append_has_one_winner() {
    let Some(env) = service(Service::S3) else {
        return;
    };
    for overwrite_first in [true, false] {
        let url = table_url(&env);
        load(&env, json!({"path": url}), vec![rows(0, 100)]).await;
        // Both open the table at the same version and stage their files.
        let mut over = sink(&env, json!({"path": url, "mode": "overwrite"})).await;
        let mut app = sink(&env, json!({"path": url})).await;
        over.write(rows(1000, 50)).await.unwrap();
        app.write(rows(2000, 70)).await.unwrap();
        over.prepare().await.unwrap();
        app.prepare().await.unwrap();
        let (first, second) = if overwrite_first {
            (&mut over, &mut app)
        } else {
            (&mut app, &mut over)
        };
        first.commit().await.unwrap();
        let e = second.commit().await.unwrap_err();
        assert!(!e.retryable(), "{}", e.message());
        assert!(
            e.message().contains("another writer")
                && e.message().contains("nothing of this load was committed"),
            "{}",
            e.message()
        );
        second.abort().await;
        let back = read(&env, json!({"path": url})).await;
        let want: Vec<i64> = if overwrite_first {
            (1001..=1050).collect()
        } else {
            (1..=100).chain(2001..=2070).collect()
        };
        assert_eq!(ids(&back), want, "overwrite first: {overwrite_first}");
        // The loser's files are gone: every data file left is referenced or was replaced by
        // the overwrite (its removed files stay for time travel until a vacuum).
        let files = data_files(&env, &url).await;
        let live = referenced(&env, &url).await;
        let t = table(&env, &url).await;
        let history = m::history(&t, 10).await.unwrap();
        let ever_added: usize = history.iter().map(|h| h.files_added).sum();
        assert_eq!(
            files.len(),
            ever_added,
            "stray files: {files:?} live {live:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upsert_rewrites_only_the_files_with_its_keys() {
    let Some(env) = service(Service::S3) else {
        return;
    };
    let url = table_url(&env);
    // Four appends: four files with disjoint key ranges 1..=250, 251..=500, ...
    for i in 0..4 {
        load(&env, json!({"path": url}), vec![rows(i * 250, 250)]).await;
    }
    // Keys 901..=1100: the last file (751..=1000) holds 100 of them; 200 new rows. Key 950
    // comes twice: the last one wins.
    let mut upd = rows(900, 200)
        .lazy()
        .with_column(lit(-1.0).alias("amount"))
        .collect()
        .unwrap();
    let again = rows(949, 1)
        .lazy()
        .with_column(lit(-2.0).alias("amount"))
        .collect()
        .unwrap();
    upd.vstack_mut_owned(again).unwrap();
    load(
        &env,
        json!({"path": url, "mode": "upsert", "key": ["order_id"]}),
        vec![upd],
    )
    .await;
    let back = read(&env, json!({"path": url})).await;
    assert_eq!(ids(&back), (1..=1100).collect::<Vec<_>>());
    let amount = |id: i64| {
        back.clone()
            .lazy()
            .filter(col("order_id").eq(lit(id)))
            .collect()
            .unwrap()
            .column("amount")
            .unwrap()
            .f64()
            .unwrap()
            .get(0)
            .unwrap()
    };
    assert_eq!(amount(950), -2.0);
    assert_eq!(amount(901), -1.0);
    assert_eq!(amount(1100), -1.0);
    let orig = rows(0, 900);
    let a10 = orig
        .column("amount")
        .unwrap()
        .f64()
        .unwrap()
        .get(9)
        .unwrap();
    assert_eq!(amount(10), a10);
    let t = table(&env, &url).await;
    let last = &m::history(&t, 1).await.unwrap()[0];
    assert_eq!(last.operation, "MERGE");
    assert_eq!(
        last.files_removed, 1,
        "only the file holding keys 751..=1000 is rewritten"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn checkpoints_compaction_beside_an_append_and_vacuum() {
    let Some(env) = service(Service::S3) else {
        return;
    };
    let url = table_url(&env);
    // 50 small commits (versions 0..=49): checkpoints at 10, 20, 30, 40.
    for i in 0..50 {
        load(&env, json!({"path": url}), vec![rows(i * 20, 20)]).await;
    }
    let t = table(&env, &url).await;
    let store = t.log_store().object_store(None);
    let log: BTreeSet<String> = store
        .list(Some(&deltalake::Path::from("_delta_log")))
        .map_ok(|o| o.location.to_string())
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .collect();
    for v in [10, 20, 30, 40] {
        assert!(
            log.contains(&format!("_delta_log/{v:020}.checkpoint.parquet")),
            "no checkpoint at {v}: {log:?}"
        );
    }
    assert!(!log.contains(&format!("_delta_log/{:020}.checkpoint.parquet", 45)));
    // A reader starting from the checkpoint (the JSON entries before it deleted) sees the same rows.
    for v in 0..40u64 {
        store
            .delete(&deltalake::Path::from(format!("_delta_log/{v:020}.json")))
            .await
            .unwrap();
    }
    assert_eq!(
        ids(&read(&env, json!({"path": url})).await),
        (1..=1000).collect::<Vec<_>>()
    );

    // Compaction while another load appends: both land.
    let mut app = sink(&env, json!({"path": url})).await;
    app.write(rows(5000, 30)).await.unwrap();
    app.prepare().await.unwrap();
    let mut t = table(&env, &url).await;
    let (report, committed) = tokio::join!(m::optimize(&mut t, 64 << 20), app.commit());
    let report = report.unwrap();
    committed.unwrap();
    assert_eq!(report.files_removed, 50);
    assert!(report.files_added >= 1 && report.files_added < 50);
    let back = read(&env, json!({"path": url})).await;
    assert_eq!(
        ids(&back),
        (1..=1000).chain(5001..=5030).collect::<Vec<_>>()
    );
    // Same content, not only the same ids: every column compared row by row.
    let mut want = DataFrame::empty();
    for i in 0..50 {
        want.vstack_mut_owned(rows(i * 20, 20)).unwrap();
    }
    want.vstack_mut_owned(rows(5000, 30)).unwrap();
    let sort = |df: &DataFrame| {
        df.sort(["order_id"], Default::default())
            .unwrap()
            .select(want.get_column_names_owned())
            .unwrap()
    };
    assert!(
        sort(&back).equals_missing(&sort(&want)),
        "compacted content differs"
    );
    let live = referenced(&env, &url).await;
    assert!(live.len() <= report.files_added + 1, "{live:?}");

    // Vacuum: nothing is older than 7 days; with no retention (forced) the dry run lists
    // exactly the 50 compacted-away files, never a live one, and deletes nothing.
    let r = m::vacuum(table(&env, &url).await, 168, true, false)
        .await
        .unwrap();
    assert!(r.files.is_empty(), "{:?}", r.files);
    let e = m::vacuum(table(&env, &url).await, 1, true, false)
        .await
        .unwrap_err();
    assert!(e.message().contains("under 7 days"), "{}", e.message());
    let before = data_files(&env, &url).await;
    let r = m::vacuum(table(&env, &url).await, 0, true, true)
        .await
        .unwrap();
    assert_eq!(r.files.len(), 50, "{:?}", r.files);
    for f in &r.files {
        assert!(!live.iter().any(|l| f.ends_with(l.as_str())), "{f} is live");
    }
    assert_eq!(
        data_files(&env, &url).await,
        before,
        "a dry run deleted files"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lock_service_settings_are_refused_and_locations_checked() {
    let Some(env) = service(Service::S3) else {
        return;
    };
    let url = table_url(&env);
    let s = common::step(
        &env,
        "delta",
        "delta",
        json!({"storage_options": {"AWS_S3_LOCKING_PROVIDER": "dynamodb"}}),
        json!({"path": url}),
    )
    .await;
    let e = match LoadMethods::delta(s.options().unwrap(), s).await {
        Err(e) => e,
        Ok(_) => panic!("a locking provider was accepted"),
    };
    assert!(
        e.message().contains("AWS_S3_LOCKING_PROVIDER"),
        "{}",
        e.message()
    );
    assert!(e.hint().unwrap_or_default().contains("conditional writes"));

    // A location that is not a table is named as such.
    let s = step(&env, json!({"path": url})).await;
    let e = m::step_table(&s).await.unwrap_err();
    assert!(
        e.message().contains("is not a Delta table"),
        "{}",
        e.message()
    );

    // deltalake's own reader opens what pipectl wrote (same storage options).
    load(&env, json!({"path": url}), vec![rows(0, 10)]).await;
    deltalake::logstore::object_store_factories();
    let t = DeltaTableBuilder::from_url(url::Url::parse(&url).unwrap())
        .unwrap()
        .with_storage_options(storage(&env).await)
        .load()
        .await
        .unwrap();
    assert_eq!(t.version(), Some(0));

    // One S3 credential for everything: an `s3` connection's IAM keys work for Delta too.
    let iam = |options: Value| async { common::step(&env, "s3", "s3", json!({}), options).await };
    let s = iam(json!({"path": url, "mode": "append"})).await;
    let mut sink = LoadMethods::delta(s.options().unwrap(), s).await.unwrap();
    sink.write(rows(10, 5)).await.unwrap();
    sink.prepare().await.unwrap();
    sink.commit().await.unwrap();
    let entry = entries()
        .into_iter()
        .find(|e| e.kind == StepKind::Extract && e.name == "delta")
        .unwrap();
    let back = common::read_all(entry.open(iam(json!({"path": url})).await).await.unwrap()).await;
    assert_eq!(ids(&back), (1..=15).collect::<Vec<_>>());
}
