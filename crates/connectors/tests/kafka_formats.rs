//! Every value format the kafka load writes, read back by pipectl's extract and by clients
//! pipectl did not write: JSON by Kafka's own console consumer, Avro (the example's `.avsc`)
//! by kafka-python + fastavro; Avro with a schema derived from the frame by the extract.

mod common;

use common::{read_all, step};
use pipeline_connectors::{ExtractMethods, LoadMethods};
use pipeline_data::Runtime;
use pipeline_data::polars::prelude::*;
use pipeline_testkit::{Env, Service, repo_root, service, unique};
use serde_json::{Value, json};

async fn topic(env: &Env, partitions: i32) -> String {
    common::kafka_topic(env, partitions).await.0
}

/// Runs a Python script that prints one JSON object; its output.
fn run_python(python: &std::path::Path, script: &str) -> Value {
    let out = std::process::Command::new(python)
        .args(["-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// 1,000 order events shaped like the example's `order_event.avsc` (every 7th customer null).
fn orders() -> DataFrame {
    let n = 1000i64;
    df!(
        "order_id" => (1..=n).collect::<Vec<_>>(),
        "customer_id" => (1..=n).map(|i| (i % 7 != 0).then_some(i % 100)).collect::<Vec<_>>(),
        "status" => (1..=n).map(|i| ["paid", "pending", "refunded"][(i % 3) as usize]).collect::<Vec<_>>(),
        "amount" => (1..=n).map(|i| i as f64 / 8.0).collect::<Vec<_>>(),
        "event_time" => (1..=n).map(|i| 1_767_225_600_000_000 + i * 1_000_000).collect::<Vec<_>>()
    )
    .unwrap()
    .lazy()
    .with_column(col("event_time").cast(DataType::Datetime(TimeUnit::Microseconds, None)))
    .collect()
    .unwrap()
}

async fn load(env: &Env, options: Value) {
    let mut s = step(env, "kafka", "kafka", json!({}), options).await;
    s.base_dir = repo_root().join("configs/examples");
    let sink = LoadMethods::kafka(s.options().unwrap(), s).await.unwrap();
    common::load_frames(sink, vec![orders()]).await.unwrap();
}

async fn extract(env: &Env, options: Value, base: &std::path::Path) -> DataFrame {
    let mut s = step(env, "kafka", "kafka", json!({}), options).await;
    s.base_dir = base.to_path_buf();
    let source = ExtractMethods::kafka(s.options().unwrap(), s)
        .await
        .unwrap();
    read_all(Runtime::Source(source)).await
}

/// Sorted by order id, the columns the example schema has.
fn canonical(df: &DataFrame) -> DataFrame {
    df.select(["order_id", "customer_id", "status", "amount"])
        .unwrap()
        .sort(["order_id"], Default::default())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn json_values_read_back_by_the_console_consumer() {
    let Some(env) = service(Service::Kafka) else {
        return;
    };
    let name = topic(&env, 3).await;
    load(
        &env,
        json!({"topic": name, "key_column": "order_id", "compression": "gzip"}),
    )
    .await;
    let Some(out) = pipeline_testkit::kafka_tool(
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
        &[
            "--bootstrap-server",
            env.get("KAFKA_BOOTSTRAP_SERVERS"),
            "--topic",
            &name,
            "--from-beginning",
            "--max-messages",
            "1000",
            "--timeout-ms",
            "30000",
            "--formatter-property",
            "print.key=true",
            "--formatter-property",
            "key.separator=|",
        ],
        b"",
    ) else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut ids = Vec::new();
    let mut amount = 0.0;
    for line in text.lines() {
        let (key, value) = line.split_once('|').expect("key|value");
        let v: Value = serde_json::from_str(value).unwrap_or_else(|e| panic!("{value}: {e}"));
        assert!(
            v.get("order_id").is_none(),
            "the key column is not in the value"
        );
        assert!(
            v["event_time"]
                .as_str()
                .is_some_and(|t| t.starts_with("2026-")),
            "{v}"
        );
        ids.push(key.parse::<i64>().unwrap());
        amount += v["amount"].as_f64().unwrap();
    }
    ids.sort_unstable();
    assert_eq!(
        ids,
        (1..=1000).collect::<Vec<_>>(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!((amount - (1..=1000).map(|i| i as f64 / 8.0).sum::<f64>()).abs() < 1e-6);
}

#[tokio::test(flavor = "multi_thread")]
async fn avro_values_of_the_example_schema_read_back_by_fastavro_and_the_extract() {
    let Some(env) = service(Service::Kafka) else {
        return;
    };
    let Some(python) = pipeline_testkit::python() else {
        return;
    };
    let name = topic(&env, 3).await;
    load(
        &env,
        json!({"topic": name, "format": "avro", "avro_schema": "schemas/order_event.avsc", "compression": "gzip"}),
    )
    .await;
    let examples = repo_root().join("configs/examples");
    let script = format!(
        r#"
import io, json, fastavro
from kafka import KafkaConsumer
schema = fastavro.parse_schema(json.load(open("{avsc}")))
c = KafkaConsumer("{name}", bootstrap_servers="{servers}", auto_offset_reset="earliest", consumer_timeout_ms=10000)
rows = []
for m in c:
    rows.append(fastavro.schemaless_reader(io.BytesIO(m.value), schema))
    if len(rows) == 1000:
        break
print(json.dumps({{"n": len(rows), "ids": sum(r["order_id"] for r in rows),
    "null_customers": sum(r["customer_id"] is None for r in rows),
    "amount": sum(r["amount"] for r in rows),
    "first_time": min(r["event_time"] for r in rows).isoformat()}}))
"#,
        avsc = examples.join("schemas/order_event.avsc").display(),
        servers = env.get("KAFKA_BOOTSTRAP_SERVERS"),
    );
    let got = run_python(&python, &script);
    assert_eq!(got["n"], 1000);
    assert_eq!(got["ids"], 500_500);
    assert_eq!(got["null_customers"], 142);
    assert!(
        (got["amount"].as_f64().unwrap() - 62_562.5).abs() < 1e-6,
        "{got}"
    );
    assert_eq!(got["first_time"], "2026-01-01T00:00:01+00:00");

    let back = extract(
        &env,
        json!({"topics": [name], "format": "avro", "avro_schema": "schemas/order_event.avsc"}),
        &examples,
    )
    .await;
    assert_eq!(canonical(&back), canonical(&orders()));
}

#[tokio::test(flavor = "multi_thread")]
async fn avro_values_with_a_schema_derived_from_the_data_read_back() {
    let Some(env) = service(Service::Kafka) else {
        return;
    };
    let name = topic(&env, 2).await;
    load(&env, json!({"topic": name, "format": "avro"})).await;
    // The schema the load derived: the data crate's mapping, named after the topic.
    let (schema, _) = pipeline_data::avro::frame_to_avro_records(&orders(), &name).unwrap();
    let dir = std::env::temp_dir().join(unique("derived"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("derived.avsc"),
        serde_json::to_string(&schema).unwrap(),
    )
    .unwrap();
    let back = extract(
        &env,
        json!({"topics": [name], "format": "avro", "avro_schema": "derived.avsc"}),
        &dir,
    )
    .await;
    assert_eq!(canonical(&back), canonical(&orders()));
    std::fs::remove_dir_all(dir).ok();
}

/// `avro_confluent`: the load registers the value schema under `TOPIC-value` and frames each
/// datum (magic byte 0, schema id); the extract fetches the schema by id; an independent
/// reader (kafka-python, the registry over HTTP, fastavro) decodes the same records.
#[tokio::test(flavor = "multi_thread")]
async fn avro_confluent_values_round_trip_through_the_schema_registry() {
    let Some(env) = service(Service::Kafka) else {
        return;
    };
    let Some(python) = pipeline_testkit::python() else {
        return;
    };
    let registry = env.get("SCHEMA_REGISTRY_URL").to_string();
    assert!(
        !registry.is_empty() || !pipeline_testkit::in_ci(),
        "SCHEMA_REGISTRY_URL is not set (scripts/dev-env env)"
    );
    if registry.is_empty() {
        pipeline_testkit::skip("no SCHEMA_REGISTRY_URL (scripts/dev-env up)");
        return;
    }
    let examples = repo_root().join("configs/examples");
    // With the example's schema file, and with a schema derived from the data.
    for avsc in [Some("schemas/order_event.avsc"), None] {
        let name = topic(&env, 3).await;
        let mut options = json!({"topic": name, "format": "avro_confluent"});
        if let Some(avsc) = avsc {
            options["avro_schema"] = json!(avsc);
        }
        load(&env, options).await;
        // The reader's columns: the subject's latest schema.
        let back = extract(
            &env,
            json!({"topics": [name], "format": "avro_confluent", "metadata": true}),
            &examples,
        )
        .await;
        let keys: i64 = back
            .column("order_id")
            .unwrap()
            .i64()
            .unwrap()
            .sum()
            .unwrap();
        assert_eq!(keys, 500_500, "{avsc:?}");
        let amount: f64 = back.column("amount").unwrap().f64().unwrap().sum().unwrap();
        assert!((amount - 62_562.5).abs() < 1e-6, "{avsc:?}: {amount}");
        assert_eq!(
            back.column("customer_id").unwrap().null_count(),
            142,
            "{avsc:?}"
        );

        let script = format!(
            r#"
import io, json, struct, urllib.request, fastavro
from kafka import KafkaConsumer
c = KafkaConsumer("{name}", bootstrap_servers="{servers}", auto_offset_reset="earliest", consumer_timeout_ms=10000)
schemas, n, amount = {{}}, 0, 0.0
for m in c:
    magic, sid = struct.unpack(">bI", m.value[:5])
    assert magic == 0, magic
    if sid not in schemas:
        text = json.load(urllib.request.urlopen(f"{registry}/schemas/ids/{{sid}}"))["schema"]
        schemas[sid] = fastavro.parse_schema(json.loads(text))
    r = fastavro.schemaless_reader(io.BytesIO(m.value[5:]), schemas[sid])
    n += 1
    amount += r["amount"]
    if n == 1000:
        break
print(json.dumps({{"n": n, "amount": amount, "ids": len(schemas)}}))
"#,
            servers = env.get("KAFKA_BOOTSTRAP_SERVERS"),
        );
        let got = run_python(&python, &script);
        assert_eq!(got["n"], 1000, "{avsc:?}");
        assert_eq!(got["ids"], 1, "one schema registered: {avsc:?}");
        assert!((got["amount"].as_f64().unwrap() - 62_562.5).abs() < 1e-6);
    }
}

/// `bytes` and `string`: one column produced as is, with headers and keys, and read back
/// byte for byte (with the headers as JSON in `_headers`).
#[tokio::test(flavor = "multi_thread")]
async fn raw_values_round_trip_with_keys_and_headers() {
    let Some(env) = service(Service::Kafka) else {
        return;
    };
    let payloads: Vec<Vec<u8>> = (0..300u32)
        .map(|i| {
            i.to_le_bytes()
                .iter()
                .chain(&[0u8, 255, 10])
                .copied()
                .collect()
        })
        .collect();
    let df = df!(
        "payload" => payloads.iter().map(Vec::as_slice).collect::<Vec<_>>(),
        "id" => (0..300i64).map(|i| i.to_string()).collect::<Vec<_>>(),
        "source" => vec!["unit-test"; 300]
    )
    .unwrap();
    for format in ["bytes", "string"] {
        let name = topic(&env, 2).await;
        let (frame, column) = match format {
            "bytes" => (df.clone(), "payload"),
            _ => (df.clone(), "id"),
        };
        let s = step(
            &env,
            "kafka",
            "kafka",
            json!({}),
            json!({"topic": name, "format": format, "value_column": column, "key_column": "id", "header_columns": ["source"]}),
        )
        .await;
        let sink = LoadMethods::kafka(s.options().unwrap(), s).await.unwrap();
        common::load_frames(sink, vec![frame]).await.unwrap();
        let back = extract(
            &env,
            json!({"topics": [name], "format": format, "metadata": true}),
            &std::env::temp_dir(),
        )
        .await
        .sort(["_key"], Default::default())
        .unwrap();
        assert_eq!(back.height(), 300, "{format}");
        let headers = back.column("_headers").unwrap().str().unwrap();
        assert!(
            headers
                .iter()
                .all(|h| h.is_some_and(|h| h.contains("unit-test"))),
            "{format}"
        );
        let mut expected = df.sort(["id"], Default::default()).unwrap();
        if format == "bytes" {
            let got = back.column("value").unwrap().binary().unwrap();
            let want = expected.column("payload").unwrap().binary().unwrap();
            assert!(got.equal_missing(want).all(), "bytes come back as written");
        } else {
            expected = expected.select(["id"]).unwrap();
            let got = back.column("value").unwrap().str().unwrap();
            let want = expected.column("id").unwrap().str().unwrap();
            assert!(got.equal_missing(want).all(), "text comes back as written");
        }
    }
}
