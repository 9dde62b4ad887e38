//! Stored offsets of a Kafka extract kept in an S3 object (`s3://BUCKET/KEY` with an s3
//! connection): they advance only when the source commits, the next run continues where the
//! last committed one ended, and a run whose offsets another run replaced in between fails its
//! save instead of moving them back (a conditional put on the version it read).

mod common;

use common::step;
use object_store::ObjectStoreExt;
use pipeline_connectors::ExtractMethods;
use pipeline_data::{Source, StepSetup};
use pipeline_testkit::{Env, Service, service, unique};
use rskafka::chrono::{TimeZone, Utc};
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use serde_json::{Value, json};
use std::collections::BTreeMap;

async fn produce(client: &rskafka::client::Client, topic: &str, from: i64, n: i64) {
    let records = (from..from + n)
        .map(|i| Record {
            key: None,
            value: Some(json!({"id": i}).to_string().into_bytes()),
            headers: BTreeMap::new(),
            timestamp: Utc.timestamp_millis_opt(1_000).unwrap(),
        })
        .collect();
    client
        .partition_client(topic.to_string(), 0, UnknownTopicHandling::Retry)
        .await
        .unwrap()
        .produce(records, Compression::NoCompression)
        .await
        .unwrap();
}

/// An extract whose options name the S3 connection `lake`.
async fn open(kafka: &Env, s3: &Env, options: Value) -> Box<dyn Source> {
    let mut setup: StepSetup = step(kafka, "kafka", "kafka", json!({}), options).await;
    let lake = step(s3, "s3", "s3", json!({}), json!({}))
        .await
        .connection_setup()
        .unwrap();
    setup.other_connections.insert("lake".into(), lake);
    ExtractMethods::kafka(setup.options().unwrap(), setup)
        .await
        .unwrap_or_else(|e| panic!("{}", e.message()))
}

async fn drain(mut s: Box<dyn Source>) -> (Box<dyn Source>, usize) {
    let mut n = 0;
    while let Some(b) = s.next_batch().await.unwrap() {
        n += b.rows();
    }
    (s, n)
}

#[tokio::test(flavor = "multi_thread")]
async fn offsets_on_s3_advance_at_commit_and_are_never_moved_back() {
    let Some(kafka) = service(Service::Kafka) else {
        return;
    };
    let Some(s3) = service(Service::S3) else {
        return;
    };
    let (name, client) = common::kafka_topic(&kafka, 1).await;
    let key = format!("state/{}.json", unique("offsets"));
    let url = format!("s3://{}/{key}", s3.get("S3_BUCKET"));
    let options = json!({"topics": [name], "offsets": {"store": url, "connection": "lake"}});
    produce(&client, &name, 0, 30).await;

    // Read without a commit: nothing stored; the rerun reads the same records.
    let (_, n) = drain(open(&kafka, &s3, options.clone()).await).await;
    assert_eq!(n, 30);
    let (mut s, n) = drain(open(&kafka, &s3, options.clone()).await).await;
    assert_eq!(n, 30, "not advanced without a commit");
    s.commit().await.unwrap();

    // The object, read by another client.
    let store = pipeline_testkit::s3_store(&s3).await;
    let bytes = store
        .get(&object_store::path::Path::from(key.as_str()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let stored: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(stored["topics"][&name]["0"], 30, "{stored}");

    // Two runs read the same stored offsets; the first to commit wins, the second's save is
    // refused and leaves the first's offsets.
    produce(&client, &name, 30, 10).await;
    let (mut a, na) = drain(open(&kafka, &s3, options.clone()).await).await;
    produce(&client, &name, 40, 5).await;
    let (mut b, nb) = drain(open(&kafka, &s3, options.clone()).await).await;
    assert_eq!((na, nb), (10, 15));
    b.commit().await.unwrap();
    let e = a
        .commit()
        .await
        .expect_err("a's offsets would move b's back");
    assert!(!e.retryable(), "{}", e.message());
    assert!(
        e.message().contains("changed after this run read them"),
        "{}",
        e.message()
    );
    let (_, n) = drain(open(&kafka, &s3, options).await).await;
    assert_eq!(n, 0, "b's offsets (45) are kept");
}
