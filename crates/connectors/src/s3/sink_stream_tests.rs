//! The `s3` load in a stream, on an in-memory store: each micro-batch's files and manifest, a
//! replay after a restart writing nothing, the files of an interrupted micro-batch deleted by
//! the next commit of its epoch, idle micro-batches recording nothing, a second process on the
//! same stream stopped before it publishes, and what a stream refuses.

use super::S3LoadOptions;
use super::sink::open_sink;
use super::sink_faults::{MockFaults, generic, healthy, keys, location};
use object_store::ObjectStoreExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use pipeline_base::{ErrorClass, StepError};
use pipeline_data::polars::prelude::*;
use pipeline_data::stream::{OutOfRange, PartitionRange, StreamCursor, StreamLimits};
use pipeline_data::{CommitOutcome, Sink, StepSetup};
use std::sync::Arc;

const MANIFESTS: &str = "orders/_pipectl/stream/s.to_lake";

fn cursor() -> Arc<StreamCursor> {
    Arc::new(StreamCursor::new(
        "s",
        StreamLimits {
            max_records: 100,
            max_bytes: 1 << 20,
            on_out_of_range: OutOfRange::Fail,
        },
    ))
}

/// Sets the micro-batch's ranges of partition 0 and 1 of topic `t`.
fn ranges(c: &StreamCursor, p0: (i64, i64), p1: (i64, i64)) {
    let r = |partition, (start, end): (i64, i64)| PartitionRange {
        topic: "t".into(),
        partition,
        start,
        end,
        high_watermark: end,
    };
    c.set_ranges(vec![r(0, p0), r(1, p1)]);
}

async fn sink_with(
    mem: &InMemory,
    faults: MockFaults,
    cursor: &Arc<StreamCursor>,
    options: serde_json::Value,
) -> Result<Box<dyn Sink>, StepError> {
    let loc = location(mem, faults);
    let setup = StepSetup {
        stream: Some(cursor.clone()),
        ..StepSetup::bare("p", "to_lake", std::env::temp_dir())
    };
    let options: S3LoadOptions = serde_json::from_value(options).unwrap();
    Ok(Box::new(open_sink(options, &setup, loc).await?))
}

async fn sink(mem: &InMemory, cursor: &Arc<StreamCursor>) -> Box<dyn Sink> {
    sink_with(
        mem,
        healthy(),
        cursor,
        serde_json::json!({"path": "s3://lake/orders/", "partition_by": ["country"]}),
    )
    .await
    .unwrap()
}

/// One micro-batch of `ids` (countries alternate DE/FR), aborted on failure as the executor does.
async fn micro_batch(mut s: Box<dyn Sink>, ids: &[i64]) -> Result<CommitOutcome, StepError> {
    let countries: Vec<&str> = (0..ids.len())
        .map(|i| if i % 2 == 0 { "DE" } else { "FR" })
        .collect();
    s.write(df!("id" => ids, "country" => countries).unwrap())
        .await?;
    s.prepare().await?;
    let done = s.commit().await;
    if done.is_err() {
        s.abort().await;
    }
    done
}

async fn manifest(mem: &InMemory, epoch: u64) -> serde_json::Value {
    let path = Path::from(format!("{MANIFESTS}/{epoch:020}.json"));
    let bytes = mem.get(&path).await.unwrap().bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn data(keys: &[String]) -> Vec<&String> {
    keys.iter().filter(|k| !k.contains("/_pipectl/")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_micro_batch_gets_numbered_files_and_a_manifest_and_a_replay_writes_nothing() {
    let mem = InMemory::new();
    let c = cursor();
    ranges(&c, (0, 2), (0, 1));
    let done = micro_batch(sink(&mem, &c).await, &[1, 2, 3]).await.unwrap();
    assert_eq!(done, CommitOutcome::Published);
    let all = keys(&mem).await;
    let files = data(&all);
    assert_eq!(files.len(), 2, "{all:?}");
    for f in &files {
        assert!(f.contains("/part-s.to_lake.0000000001."), "{f}");
    }
    let m = manifest(&mem, 1).await;
    assert_eq!(m["epoch"], 1);
    assert_eq!(m["rows"], 3);
    assert_eq!(m["files"].as_array().unwrap().len(), 2);
    assert_eq!(m["offsets"][0]["next_offset"], 2);
    assert_eq!(m["offsets"][1]["next_offset"], 1);

    // A restart (a new cursor: nothing kept) reads the manifest and the same ranges again.
    let c2 = cursor();
    ranges(&c2, (0, 2), (0, 1));
    let mut s = sink(&mem, &c2).await;
    let offsets = s.stream_offsets().await.unwrap().unwrap();
    assert_eq!(offsets[&("t".to_string(), 0)], 2);
    assert_eq!(
        micro_batch(s, &[1, 2, 3]).await.unwrap(),
        CommitOutcome::AlreadyPublished
    );
    assert_eq!(keys(&mem).await, all, "the replay wrote nothing");

    // The next micro-batch in the same process: epoch 2, from the kept state.
    ranges(&c2, (2, 4), (1, 1));
    micro_batch(sink(&mem, &c2).await, &[4, 5]).await.unwrap();
    assert_eq!(manifest(&mem, 2).await["offsets"][0]["next_offset"], 4);
    assert_eq!(data(&keys(&mem).await).len(), 4);

    // An idle micro-batch records nothing.
    ranges(&c2, (4, 4), (1, 1));
    let s = sink(&mem, &c2).await;
    let mut s = s;
    s.prepare().await.unwrap();
    s.commit().await.unwrap();
    let after = keys(&mem).await;
    assert!(
        !after
            .iter()
            .any(|k| k.ends_with("00000000000000000003.json")),
        "{after:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_files_of_an_interrupted_micro_batch_are_replaced_not_kept_beside() {
    let mem = InMemory::new();
    let c = cursor();
    ranges(&c, (0, 2), (0, 0));
    micro_batch(sink(&mem, &c).await, &[1, 2]).await.unwrap();
    // A crash after publishing epoch 2's files and before its manifest: two files left.
    for key in [
        "orders/country=DE/part-s.to_lake.0000000002.deadbeef.00001.parquet",
        "orders/country=FR/part-s.to_lake.0000000002.deadbeef.00002.parquet",
    ] {
        mem.put(&Path::from(key), vec![1u8, 2, 3].into())
            .await
            .unwrap();
    }
    // The next process reads other ranges (more had arrived): epoch 2 again.
    let c2 = cursor();
    ranges(&c2, (2, 5), (0, 0));
    micro_batch(sink(&mem, &c2).await, &[3, 4, 5])
        .await
        .unwrap();
    let all = keys(&mem).await;
    assert!(!all.iter().any(|k| k.contains("deadbeef")), "{all:?}");
    let m = manifest(&mem, 2).await;
    assert_eq!(m["rows"], 3);
    let named: Vec<String> = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            f.as_str()
                .unwrap()
                .trim_start_matches("s3://lake/")
                .to_string()
        })
        .collect();
    for f in data(&all) {
        assert!(
            f.contains(".0000000001.") || named.contains(f),
            "{f} is in no manifest"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_process_on_the_same_stream_stops_before_publishing() {
    let mem = InMemory::new();
    let c = cursor();
    ranges(&c, (0, 2), (0, 0));
    micro_batch(sink(&mem, &c).await, &[1, 2]).await.unwrap();
    // Both processes at epoch 2; the other one commits first.
    let ours = cursor();
    ranges(&ours, (2, 3), (0, 0));
    let s = sink(&mem, &ours).await;
    let other = cursor();
    ranges(&other, (2, 4), (0, 0));
    micro_batch(sink(&mem, &other).await, &[3, 4])
        .await
        .unwrap();
    let before = keys(&mem).await;
    let err = micro_batch(s, &[3]).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::External);
    assert!(!err.retryable());
    assert!(
        err.message()
            .contains("micro-batch 2 was committed meanwhile"),
        "{}",
        err.message()
    );
    assert!(err.hint().unwrap_or_default().contains("\"id\""));
    assert_eq!(keys(&mem).await, before, "nothing of ours was published");
}

/// A store where writing a manifest fails: `lost` = it is stored but the answer is lost, else
/// it is not stored.
fn manifest_fails(lost: bool) -> MockFaults {
    let mut m = MockFaults::new();
    let is_manifest = |p: &str| p.contains("/_pipectl/stream/");
    m.expect_put()
        .returning(move |p| (!lost && is_manifest(p)).then(|| generic("connection reset")));
    m.expect_put_lost()
        .returning(move |p| lost && is_manifest(p));
    m.expect_head().returning(|_| None);
    m.expect_delete().returning(|_| None);
    m.expect_list().returning(|_| None);
    m
}

const OPTIONS: &str = r#"{"path": "s3://lake/orders/", "partition_by": ["country"]}"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_that_landed_with_its_answer_lost_counts_as_committed() {
    let mem = InMemory::new();
    let c = cursor();
    ranges(&c, (0, 2), (0, 0));
    let s = sink_with(
        &mem,
        manifest_fails(true),
        &c,
        serde_json::from_str(OPTIONS).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        micro_batch(s, &[1, 2]).await.unwrap(),
        CommitOutcome::Published
    );
    assert_eq!(manifest(&mem, 1).await["rows"], 2);
    assert_eq!(data(&keys(&mem).await).len(), 2, "the files stay");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_manifest_write_leaves_the_files_for_the_retry_to_replace() {
    let mem = InMemory::new();
    let c = cursor();
    ranges(&c, (0, 2), (0, 0));
    let s = sink_with(
        &mem,
        manifest_fails(false),
        &c,
        serde_json::from_str(OPTIONS).unwrap(),
    )
    .await
    .unwrap();
    let err = micro_batch(s, &[1, 2]).await.unwrap_err();
    assert!(err.retryable(), "{}", err.message());
    assert!(
        err.message().contains("00000000000000000001.json"),
        "{}",
        err.message()
    );
    // Not deleted: whether the manifest landed was not known.
    assert_eq!(data(&keys(&mem).await).len(), 2);
    // The next attempt (nothing kept; more records arrived, so other ranges and other file
    // names) commits and deletes the first attempt's files: each row is in one file.
    ranges(&c, (0, 3), (0, 0));
    micro_batch(sink(&mem, &c).await, &[1, 2, 3]).await.unwrap();
    let all = keys(&mem).await;
    assert_eq!(data(&all).len(), 2, "{all:?}");
    let m = manifest(&mem, 1).await;
    assert_eq!(m["rows"], 3);
    assert_eq!(m["files"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_refuses_a_single_object_and_overwrite() {
    let mem = InMemory::new();
    let c = cursor();
    for (options, expected) in [
        (
            serde_json::json!({"path": "s3://lake/orders.parquet"}),
            "would replace the single object",
        ),
        (
            serde_json::json!({"path": "s3://lake/orders/", "mode": "overwrite"}),
            "would replace the dataset with every micro-batch",
        ),
    ] {
        let err = sink_with(&mem, MockFaults::new(), &c, options)
            .await
            .err()
            .unwrap();
        assert_eq!(err.class(), ErrorClass::User);
        assert!(err.message().contains(expected), "{}", err.message());
    }
}
