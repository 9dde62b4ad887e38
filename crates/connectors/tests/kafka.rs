//! The kafka extract and load against the local Kafka: rows produced by the load and read back
//! both by the extract and by a plain rskafka client; start positions (earliest, latest,
//! explicit offsets, a timestamp) read exactly the expected records; stored offsets advance
//! only when the source commits; undecodable records fail, are skipped or are dead-lettered at
//! commit; an empty topic is a
//! clean zero-record read; keyed records land where Kafka's console producer puts them.

mod common;

use common::{read_all, step};
use pipeline_base::ErrorClass;
use pipeline_connectors::{ExtractMethods, GenerateOptions, LoadMethods, generate_frame};
use pipeline_data::polars::prelude::*;
use pipeline_data::{Runtime, Source};
use pipeline_testkit::{Env, Service, service};
use rskafka::chrono::{TimeZone, Utc};
use rskafka::client::Client;
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::record::Record;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A new topic with `partitions` partitions.
async fn topic(env: &Env, partitions: i32) -> (String, Client) {
    common::kafka_topic(env, partitions).await
}

async fn partition(client: &Client, topic: &str, p: i32) -> PartitionClient {
    client
        .partition_client(topic.to_string(), p, UnknownTopicHandling::Retry)
        .await
        .unwrap()
}

/// Produces `values` to one partition with the given timestamp (ms).
async fn produce(client: &Client, topic: &str, p: i32, values: &[String], ts_ms: i64) {
    let records = values
        .iter()
        .map(|v| Record {
            key: None,
            value: Some(v.clone().into_bytes()),
            headers: BTreeMap::new(),
            timestamp: Utc.timestamp_millis_opt(ts_ms).unwrap(),
        })
        .collect();
    partition(client, topic, p)
        .await
        .produce(records, Compression::NoCompression)
        .await
        .unwrap();
}

fn events(from: i64, n: i64) -> Vec<String> {
    (from..from + n)
        .map(|i| json!({"id": i, "amount": i as f64 / 4.0, "status": "PAID"}).to_string())
        .collect()
}

async fn extract(env: &Env, options: Value) -> Result<Box<dyn Source>, pipeline_base::StepError> {
    let s = step(env, "kafka", "kafka", json!({}), options).await;
    ExtractMethods::kafka(s.options().unwrap(), s).await
}

async fn read(env: &Env, options: Value) -> DataFrame {
    let source = extract(env, options).await.expect("the extract opens");
    read_all(Runtime::Source(source)).await
}

/// Reads a source to its end: the source (to commit) and the rows read.
async fn drain(mut s: Box<dyn Source>) -> (Box<dyn Source>, usize) {
    let mut n = 0;
    while let Some(b) = s.next_batch().await.unwrap() {
        n += b.rows();
    }
    (s, n)
}

fn ids(df: &DataFrame) -> Vec<i64> {
    if df.height() == 0 {
        return vec![];
    }
    let mut v: Vec<i64> = df
        .column("id")
        .unwrap()
        .i64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    v.sort_unstable();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn the_load_produces_rows_that_the_extract_and_a_plain_client_read_back() {
    let Some(env) = service(Service::Kafka) else {
        return;
    };
    let (name, client) = topic(&env, 4).await;
    let o = GenerateOptions {
        dataset: Default::default(),
        rows: 5000,
        seed: 5,
        batch_size: 1000,
        null_fraction: 0.1,
    };
    let df = generate_frame(&o, 0, 5000).unwrap();
    let s = step(
        &env,
        "kafka",
        "kafka",
        json!({}),
        json!({"topic": name, "key_column": "order_id", "compression": "lz4", "batch_bytes": 65536}),
    )
    .await;
    let sink = LoadMethods::kafka(s.options().unwrap(), s).await.unwrap();
    let metrics = common::load_frames(sink, vec![df.clone()]).await.unwrap();
    assert!(metrics.contains(&("records_produced", 5000)), "{metrics:?}");

    // A plain client: every record, keyed by its order id, in the partition the Java client's
    // murmur2 partitioner chooses, with the row as JSON.
    let mut seen = 0;
    for p in 0..4 {
        let pc = partition(&client, &name, p).await;
        let mut offset = 0;
        loop {
            let (records, hw) = pc.fetch_records(offset, 1..4_000_000, 1000).await.unwrap();
            for r in &records {
                let key = String::from_utf8(r.record.key.clone().unwrap()).unwrap();
                let value: Value =
                    serde_json::from_slice(r.record.value.as_ref().unwrap()).unwrap();
                assert_eq!(value["status"].as_str().map(|s| s.len() > 1), Some(true));
                assert!(
                    value.get("order_id").is_none(),
                    "the key column is not in the value"
                );
                assert_eq!(java_partition(key.as_bytes(), 4), p, "key {key}");
                seen += 1;
                offset = r.offset + 1;
            }
            if offset >= hw {
                break;
            }
        }
    }
    assert_eq!(seen, 5000);

    // The extract with metadata: the same rows.
    let back = read(
        &env,
        json!({"topics": [name], "metadata": true, "schema": {"customer_id": "int64", "amount": "float64", "status": "string", "created_at": "datetime"}}),
    )
    .await;
    assert_eq!(back.height(), 5000);
    let keys: Vec<i64> = {
        let mut k: Vec<i64> = back
            .column("_key")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|s| s.unwrap().parse().unwrap())
            .collect();
        k.sort_unstable();
        k
    };
    assert_eq!(keys, (1..=5000).collect::<Vec<i64>>());
    let amounts: f64 = back.column("amount").unwrap().f64().unwrap().sum().unwrap();
    let expected: f64 = df.column("amount").unwrap().f64().unwrap().sum().unwrap();
    assert!((amounts - expected).abs() < 1e-6);
    assert_eq!(
        back.column("created_at").unwrap().null_count(),
        0,
        "datetimes round-trip as RFC 3339 text"
    );
    client
        .controller_client()
        .unwrap()
        .delete_topic(name, 10_000)
        .await
        .unwrap();
}

/// Kafka's `Utils.toPositive(Utils.murmur2(key)) % partitions`, written out independently.
fn java_partition(key: &[u8], partitions: i32) -> i32 {
    let m: i32 = 0x5bd1e995;
    let mut h: i32 = 0x9747b28c_u32 as i32 ^ key.len() as i32;
    let chunks = key.len() / 4;
    for i in 0..chunks {
        let b = &key[i * 4..i * 4 + 4];
        let mut k = (b[0] as i32 & 0xff)
            | ((b[1] as i32 & 0xff) << 8)
            | ((b[2] as i32 & 0xff) << 16)
            | ((b[3] as i32 & 0xff) << 24);
        k = k.wrapping_mul(m);
        k ^= ((k as u32) >> 24) as i32;
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m);
        h ^= k;
    }
    let tail = &key[chunks * 4..];
    if tail.len() >= 3 {
        h ^= (tail[2] as i32 & 0xff) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as i32 & 0xff) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as i32 & 0xff;
        h = h.wrapping_mul(m);
    }
    h ^= ((h as u32) >> 13) as i32;
    h = h.wrapping_mul(m);
    h ^= ((h as u32) >> 15) as i32;
    (h & 0x7fffffff) % partitions
}

#[tokio::test(flavor = "multi_thread")]
async fn start_positions_read_exactly_the_expected_records() {
    let Some(env) = service(Service::Kafka) else {
        return;
    };
    let (name, client) = topic(&env, 2).await;
    // Partition 0: ids 0..50 at t=1,000,000 ms, then 50..60 at t=2,000,000 ms; partition 1:
    // ids 100..150 at t=1,000,000 ms.
    produce(&client, &name, 0, &events(0, 50), 1_000_000).await;
    produce(&client, &name, 0, &events(50, 10), 2_000_000).await;
    produce(&client, &name, 1, &events(100, 50), 1_000_000).await;

    let all = read(&env, json!({"topics": [name]})).await;
    assert_eq!(all.height(), 110);
    let latest = read(&env, json!({"topics": [name], "start": "latest"})).await;
    assert_eq!(latest.height(), 0);
    let explicit = read(
        &env,
        json!({"topics": [name], "start": {"offsets": {format!("{name}/0"): 55, "1": 48}}}),
    )
    .await;
    assert_eq!(ids(&explicit), vec![55, 56, 57, 58, 59, 148, 149]);
    let since = read(
        &env,
        json!({"topics": [name], "start": {"timestamp": "1970-01-01T00:33:20Z"}, "partitions": [0]}),
    )
    .await;
    assert_eq!(ids(&since), (50..60).collect::<Vec<i64>>());
    let out_of_range = extract(
        &env,
        json!({"topics": [name], "start": {"offsets": {"0": 500}}}),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(out_of_range.class(), ErrorClass::User);
    assert!(
        out_of_range
            .message()
            .contains("outside what the partition keeps")
    );
    let missing = extract(&env, json!({"topics": ["no_such_topic_pipectl"]}))
        .await
        .err()
        .unwrap();
    assert!(
        missing
            .message()
            .contains("topic \"no_such_topic_pipectl\" does not exist")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stored_offsets_advance_only_when_the_source_commits() {
    let Some(env) = service(Service::Kafka) else {
        return;
    };
    let (name, client) = topic(&env, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("offsets.json");
    let options = json!({"topics": [name], "offsets": {"store": store.to_str().unwrap()}});
    produce(&client, &name, 0, &events(0, 30), 1_000).await;

    let (mut s, n) = drain(extract(&env, options.clone()).await.unwrap()).await;
    assert_eq!(n, 30);
    s.commit().await.unwrap();
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&store).unwrap()).unwrap();
    assert_eq!(stored["topics"][&name]["0"], 30);

    produce(&client, &name, 0, &events(30, 20), 2_000).await;
    // A run that reads but fails before its loads commit: the offsets stay.
    let (_failed, n) = drain(extract(&env, options.clone()).await.unwrap()).await;
    assert_eq!(n, 20);
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&store).unwrap()).unwrap();
    assert_eq!(
        stored["topics"][&name]["0"], 30,
        "not advanced without a commit"
    );
    // The rerun reads the same 20 records, and its commit advances the offsets.
    let (mut s, n) = drain(extract(&env, options.clone()).await.unwrap()).await;
    assert_eq!(n, 20);
    s.commit().await.unwrap();
    let (_, n) = drain(extract(&env, options).await.unwrap()).await;
    assert_eq!(n, 0, "nothing new");
}

#[tokio::test(flavor = "multi_thread")]
async fn undecodable_records_fail_are_skipped_or_dead_lettered_and_an_empty_topic_reads_nothing() {
    let Some(env) = service(Service::Kafka) else {
        return;
    };
    let (empty, _) = topic(&env, 1).await;
    let none = read(&env, json!({"topics": [empty]})).await;
    assert_eq!(none.height(), 0);

    let (name, client) = topic(&env, 1).await;
    let mut values = events(0, 3);
    values.push("{not json".into());
    values.extend(events(3, 2));
    produce(&client, &name, 0, &values, 1_000).await;
    let mut s = extract(&env, json!({"topics": [name]})).await.unwrap();
    let err = loop {
        match s.next_batch().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the bad record was not reported"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.class(), ErrorClass::User);
    assert!(
        err.message()
            .contains(&format!("topic \"{name}\" partition 0 offset 3")),
        "{}",
        err.message()
    );
    let mut s = extract(&env, json!({"topics": [name], "on_error": "skip"}))
        .await
        .unwrap();
    let mut rows = 0;
    while let Some(b) = s.next_batch().await.unwrap() {
        rows += b.rows();
    }
    assert_eq!(rows, 5);
    assert!(s.metrics().contains(&("skipped_records", 1)));

    // Dead letters: held until the source commits (a run that fails publishes none), then
    // produced as read, with where they came from and why.
    let (dlq, _) = topic(&env, 1).await;
    let options = json!({"topics": [name], "on_error": "dead_letter", "dead_letter_topic": dlq});
    let (_, rows) = drain(extract(&env, options.clone()).await.unwrap()).await;
    assert_eq!(rows, 5);
    let dlq_partition = partition(&client, &dlq, 0).await;
    let dead = || async {
        dlq_partition
            .fetch_records(0, 1..1_000_000, 1000)
            .await
            .unwrap()
            .0
    };
    assert!(dead().await.is_empty(), "nothing before the commit");
    let (mut s, rows) = drain(extract(&env, options).await.unwrap()).await;
    assert_eq!(rows, 5);
    s.commit().await.unwrap();
    assert!(
        s.metrics().contains(&("dead_lettered_records", 1)),
        "{:?}",
        s.metrics()
    );
    let records = dead().await;
    assert_eq!(records.len(), 1);
    let r = &records[0].record;
    assert_eq!(r.value.as_deref(), Some(&b"{not json"[..]));
    let header = |k: &str| String::from_utf8(r.headers[k].clone()).unwrap();
    assert_eq!(header("pipectl.topic"), name);
    assert_eq!(header("pipectl.offset"), "3");
    assert_eq!(header("pipectl.partition"), "0");
    assert!(
        header("pipectl.error").contains("not valid JSON")
            || header("pipectl.error").contains("JSON"),
        "{}",
        header("pipectl.error")
    );
    assert_eq!(header("pipectl.step"), "kafka_step");
}

/// Keyed records produced by Kafka's own console producer (the Java client's default
/// partitioner): each sits in the partition pipectl's load would choose for its key.
#[tokio::test(flavor = "multi_thread")]
async fn keys_land_where_the_java_partitioner_puts_them() {
    let Some(env) = service(Service::Kafka) else {
        return;
    };
    let (name, _client) = topic(&env, 4).await;
    let input: String = (0..100).map(|i| format!("customer-{i}:{{}}\n")).collect();
    let Some(out) = pipeline_testkit::kafka_tool(
        "org.apache.kafka.tools.ConsoleProducer",
        &[
            "--bootstrap-server",
            env.get("KAFKA_BOOTSTRAP_SERVERS"),
            "--topic",
            &name,
            "--property",
            "parse.key=true",
            "--property",
            "key.separator=:",
        ],
        input.as_bytes(),
    ) else {
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back = read(
        &env,
        json!({"topics": [name], "format": "string", "metadata": true}),
    )
    .await;
    assert_eq!(back.height(), 100);
    let keys = back.column("_key").unwrap().str().unwrap();
    let partitions = back.column("_partition").unwrap().i32().unwrap();
    let mut used = std::collections::BTreeSet::new();
    for (k, p) in keys
        .iter()
        .map(Option::unwrap)
        .zip(partitions.into_no_null_iter())
    {
        assert_eq!(java_partition(k.as_bytes(), 4), p, "key {k}");
        used.insert(p);
    }
    assert_eq!(used.len(), 4, "100 keys spread over every partition");

    // pipectl's load puts the same keys in the same partitions.
    let (ours, _client) = topic(&env, 4).await;
    let keyed = df!(
        "key" => (0..100).map(|i| format!("customer-{i}")).collect::<Vec<_>>(),
        "v" => vec!["{}"; 100]
    )
    .unwrap();
    let s = step(
        &env,
        "kafka",
        "kafka",
        json!({}),
        json!({"topic": ours, "key_column": "key", "format": "string", "value_column": "v"}),
    )
    .await;
    let sink = LoadMethods::kafka(s.options().unwrap(), s).await.unwrap();
    common::load_frames(sink, vec![keyed]).await.unwrap();
    let placed = |df: &DataFrame| -> BTreeMap<String, i32> {
        let keys = df.column("_key").unwrap().str().unwrap();
        let parts = df.column("_partition").unwrap().i32().unwrap();
        keys.iter()
            .map(|k| k.unwrap().to_string())
            .zip(parts.into_no_null_iter())
            .collect()
    };
    let mine = read(
        &env,
        json!({"topics": [ours], "format": "string", "metadata": true}),
    )
    .await;
    assert_eq!(placed(&mine), placed(&back));
}

/// `validate --connect` for a Kafka connection reaches the brokers and counts the topics.
#[tokio::test(flavor = "multi_thread")]
async fn the_connection_check_lists_the_topics() {
    let Some(env) = service(Service::Kafka) else {
        return;
    };
    let s = step(&env, "kafka", "kafka", json!({}), json!({})).await;
    let kafka = pipeline_connectors::systems()
        .into_iter()
        .find(|s| s.system == "kafka")
        .unwrap();
    let answer = kafka.check(s.connection_setup().unwrap()).await.unwrap();
    assert!(
        answer.starts_with("Kafka at ") && answer.ends_with(" topics"),
        "{answer}"
    );
}

/// The default request size stays under the broker's 1 MiB batch limit, record overhead
/// included (a 900 KiB default was refused with MessageTooLarge by the benchmark).
#[tokio::test(flavor = "multi_thread")]
async fn a_large_load_with_the_defaults_fits_the_brokers_limit() {
    let Some(env) = service(Service::Kafka) else {
        return;
    };
    let (name, _client) = topic(&env, 1).await;
    let o = GenerateOptions {
        dataset: Default::default(),
        rows: 40_000,
        seed: 9,
        batch_size: 40_000,
        null_fraction: 0.0,
    };
    let df = generate_frame(&o, 0, 40_000).unwrap();
    let s = step(&env, "kafka", "kafka", json!({}), json!({"topic": name})).await;
    let sink = LoadMethods::kafka(s.options().unwrap(), s).await.unwrap();
    common::load_frames(sink, vec![df]).await.unwrap();
    let back = read(&env, json!({"topics": [name], "format": "bytes"})).await;
    assert_eq!(back.height(), 40_000);
}

/// The seeded `orders_avro` topic, written by another client (fastavro) as schemaless datums of
/// `configs/examples/schemas/order_event.avsc`, reads into the same rows as the same events in
/// `orders_json`; a value of another schema is refused by name.
#[tokio::test(flavor = "multi_thread")]
async fn avro_values_read_like_their_json_twins() {
    let Some(env) = service(Service::Kafka) else {
        return;
    };
    let avsc = pipeline_testkit::repo_root().join("configs/examples/schemas/order_event.avsc");
    let avro = read(
        &env,
        json!({"topics": ["orders_avro"], "format": "avro", "avro_schema": avsc.to_str().unwrap()}),
    )
    .await;
    let json = read(
        &env,
        json!({"topics": ["orders_json"], "schema": {"order_id": "int64", "customer_id": "int64",
               "status": "string", "amount": "float64", "event_time": "int64"}}),
    )
    .await;
    assert!(avro.height() >= 10_000, "{}", avro.height());
    assert_eq!(avro.height(), json.height());
    let sort = |df: &DataFrame| df.sort(["order_id"], Default::default()).unwrap();
    let (a, j) = (sort(&avro), sort(&json));
    for c in ["order_id", "customer_id", "status", "amount"] {
        assert!(
            a.column(c)
                .unwrap()
                .as_materialized_series()
                .equals_missing(j.column(c).unwrap().as_materialized_series()),
            "column {c} differs"
        );
    }
    let micros = a
        .column("event_time")
        .unwrap()
        .datetime()
        .unwrap()
        .physical()
        .clone();
    assert_eq!(
        micros.into_no_null_iter().collect::<Vec<i64>>(),
        j.column("event_time")
            .unwrap()
            .i64()
            .unwrap()
            .into_no_null_iter()
            .collect::<Vec<i64>>()
    );

    // JSON bytes are not an Avro datum of this schema.
    let mut s = extract(
        &env,
        json!({"topics": ["orders_json"], "format": "avro", "avro_schema": avsc.to_str().unwrap()}),
    )
    .await
    .unwrap();
    let err = loop {
        match s.next_batch().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("JSON was read as Avro"),
            Err(e) => break e,
        }
    };
    assert!(err.message().contains("orders_json"), "{}", err.message());
}
