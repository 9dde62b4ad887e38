//! The Delta connector against a real local table: created by the first commit, appended,
//! overwritten, read back with deltalake; an aborted load leaves the table as it was.

mod common;

use pipeline_connectors::{GenerateOptions, LoadMethods, generate_frame, read_delta_table};
use pipeline_data::StepSetup;
use serde_json::json;
use std::path::Path;

fn setup(dir: &Path, options: serde_json::Value) -> StepSetup {
    common::local_step(dir, "to_lake", options)
}

fn rows(start: u64, len: u64) -> pipeline_data::polars::prelude::DataFrame {
    let o = GenerateOptions {
        dataset: Default::default(),
        rows: start + len,
        seed: 1,
        batch_size: 1000,
        null_fraction: 0.0,
    };
    generate_frame(&o, start, len).unwrap()
}

async fn load(
    dir: &Path,
    mode: &str,
    frames: Vec<pipeline_data::polars::prelude::DataFrame>,
    commit: bool,
) {
    let s = setup(dir, json!({"path": "orders", "mode": mode}));
    let mut sink = LoadMethods::delta(s.options().unwrap(), s).await.unwrap();
    for f in frames {
        sink.write(f).await.unwrap();
    }
    sink.prepare().await.unwrap();
    if commit {
        sink.commit().await.unwrap();
    } else {
        sink.abort().await;
    }
}

#[tokio::test]
async fn create_append_overwrite_and_abort() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("orders");

    load(
        dir.path(),
        "append",
        vec![rows(0, 500), rows(500, 500)],
        true,
    )
    .await;
    let back = read_delta_table(&table).await.unwrap();
    assert_eq!(back.height(), 1000);
    let sum: i64 = back
        .column("order_id")
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .sum();
    assert_eq!(sum, (1..=1000).sum::<i64>());
    assert_eq!(
        back.column("created_at").unwrap().dtype().to_string(),
        "datetime[μs, UTC]"
    );

    load(dir.path(), "append", vec![rows(1000, 10)], true).await;
    assert_eq!(read_delta_table(&table).await.unwrap().height(), 1010);

    // An aborted load commits nothing and leaves no stray data file behind.
    let files_before = std::fs::read_dir(&table).unwrap().count();
    load(dir.path(), "append", vec![rows(0, 5000)], false).await;
    assert_eq!(read_delta_table(&table).await.unwrap().height(), 1010);
    assert_eq!(std::fs::read_dir(&table).unwrap().count(), files_before);

    load(dir.path(), "overwrite", vec![rows(0, 3)], true).await;
    let back = read_delta_table(&table).await.unwrap();
    assert_eq!(back.height(), 3);
}

#[tokio::test]
async fn an_uncommitted_new_table_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    load(dir.path(), "append", vec![rows(0, 100)], false).await;
    let err = read_delta_table(&dir.path().join("orders"))
        .await
        .err()
        .unwrap();
    assert!(
        err.message().contains("is not a Delta table"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn a_schema_mismatch_is_the_users_error() {
    let dir = tempfile::tempdir().unwrap();
    load(dir.path(), "append", vec![rows(0, 10)], true).await;
    let s = setup(dir.path(), json!({"path": "orders"}));
    let mut sink = LoadMethods::delta(s.options().unwrap(), s).await.unwrap();
    let other = pipeline_data::polars::prelude::df!("x" => [1i64]).unwrap();
    let err = sink.write(other).await.err().unwrap();
    assert_eq!(err.class(), pipeline_base::ErrorClass::User);
    assert!(
        err.message()
            .contains("the table has a column \"order_id\" that the data lacks"),
        "{}",
        err.message()
    );
}

async fn load_with(
    dir: &Path,
    policy: &str,
    df: pipeline_data::polars::prelude::DataFrame,
) -> Result<(), pipeline_base::StepError> {
    let s = setup(dir, json!({"path": "orders", "schema_evolution": policy}));
    let mut sink = LoadMethods::delta(s.options().unwrap(), s).await?;
    sink.write(df).await?;
    sink.prepare().await?;
    sink.commit().await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_evolution_freeze_discard_evolve() {
    use pipeline_data::polars::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("orders");
    load(dir.path(), "append", vec![rows(0, 10)], true).await;
    let with_extra = rows(10, 5)
        .lazy()
        .with_column(lit("web").alias("channel"))
        .collect()
        .unwrap();

    let err = load_with(dir.path(), "freeze", with_extra.clone())
        .await
        .err()
        .unwrap();
    assert!(
        err.message()
            .contains("the data has columns the table lacks: channel"),
        "{}",
        err.message()
    );
    assert_eq!(read_delta_table(&table).await.unwrap().height(), 10);

    load_with(dir.path(), "discard", with_extra.clone())
        .await
        .unwrap();
    let back = read_delta_table(&table).await.unwrap();
    assert_eq!((back.height(), back.width()), (15, 5));

    load_with(dir.path(), "evolve", with_extra).await.unwrap();
    let back = read_delta_table(&table).await.unwrap();
    assert_eq!(back.height(), 20);
    let channel = back.column("channel").expect("the evolved column");
    assert_eq!(
        channel.null_count(),
        15,
        "older rows read the new column as null"
    );

    // Evolve also accepts data lacking a column (written as nulls).
    let fewer = rows(20, 3).drop("amount").unwrap();
    load_with(dir.path(), "evolve", fewer).await.unwrap();
    assert_eq!(read_delta_table(&table).await.unwrap().height(), 23);
}

/// Partition values that need escaping in file paths (a space, a colon, a percent sign) are
/// written, listed and read back, whole and through a partition filter.
#[tokio::test(flavor = "multi_thread")]
async fn partition_values_that_need_escaping_read_back() {
    use pipeline_data::polars::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let df = df!(
        "id" => [1i64, 2, 3, 4],
        "zone" => ["a b", "x:y", "50%", "a b"]
    )
    .unwrap();
    let s = setup(dir.path(), json!({"path": "odd", "partition_by": ["zone"]}));
    let mut sink = LoadMethods::delta(s.options().unwrap(), s).await.unwrap();
    sink.write(df).await.unwrap();
    sink.prepare().await.unwrap();
    sink.commit().await.unwrap();
    let back = read_delta_table(&dir.path().join("odd")).await.unwrap();
    assert_eq!(back.height(), 4);
    let entry = pipeline_connectors::entries()
        .into_iter()
        .find(|e| e.kind == pipeline_base::StepKind::Extract && e.name == "delta")
        .unwrap();
    for (zone, n) in [("a b", 2), ("x:y", 1), ("50%", 1)] {
        let s = setup(
            dir.path(),
            json!({"path": "odd", "partitions": {"zone": zone}}),
        );
        let got = common::read_all(entry.open(s).await.unwrap()).await;
        assert_eq!(got.height(), n, "{zone}");
    }
}

/// Two loads that both found no table: the first creates it, the second appends to the
/// winner's table (one CREATE TABLE in the log, never a second one replacing its metadata).
/// Sequential here; the simultaneous case (both past the existence check, one losing the put of
/// version 0) is what `with_max_retries(0)` on the create guards, and what the three-process
/// end-to-end test exercises.
#[tokio::test(flavor = "multi_thread")]
async fn the_loser_of_a_creation_race_appends_to_the_winners_table() {
    let dir = tempfile::tempdir().unwrap();
    let open = || async {
        let s = setup(dir.path(), json!({"path": "raced"}));
        LoadMethods::delta(s.options().unwrap(), s).await.unwrap()
    };
    let (mut a, mut b) = (open().await, open().await);
    a.write(rows(0, 100)).await.unwrap();
    b.write(rows(100, 50)).await.unwrap();
    a.prepare().await.unwrap();
    b.prepare().await.unwrap();
    a.commit().await.unwrap();
    b.commit().await.unwrap();
    let table = dir.path().join("raced");
    assert_eq!(read_delta_table(&table).await.unwrap().height(), 150);
    let t = pipeline_connectors::delta_maintenance::location_table(table.to_str().unwrap())
        .await
        .unwrap();
    let ops: Vec<String> = pipeline_connectors::delta_maintenance::history(&t, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.operation)
        .collect();
    assert_eq!(ops, ["WRITE", "CREATE TABLE"]);
}

/// A data file's row groups close at a few MB of encoded data, not at the Parquet writer's
/// default of 1M rows (which holds a wide table's row group, some 100 MB, in memory).
#[tokio::test]
async fn row_groups_stay_small_whatever_the_row_count() {
    let dir = tempfile::tempdir().unwrap();
    let frames = (0..6).map(|i| rows(i * 100_000, 100_000)).collect();
    load(dir.path(), "append", frames, true).await;
    let table = dir.path().join("orders");
    // Per data file, its row groups' rows.
    let mut files: Vec<Vec<i64>> = Vec::new();
    for entry in std::fs::read_dir(&table).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "parquet") {
            use parquet::file::reader::FileReader;
            let file = std::fs::File::open(&path).unwrap();
            let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
            files.push(
                reader
                    .metadata()
                    .row_groups()
                    .iter()
                    .map(|g| g.num_rows())
                    .collect(),
            );
        }
    }
    let rows: i64 = files.iter().flatten().sum();
    assert_eq!(rows, 600_000);
    // The writer closes a file at 8 MB: with row groups closed only at 1M rows each file
    // would hold one.
    assert!(
        files.iter().any(|f| f.len() > 1),
        "a file holds several row groups: {files:?}"
    );
    let back = read_delta_table(&table).await.unwrap();
    assert_eq!(back.height(), 600_000);
}
