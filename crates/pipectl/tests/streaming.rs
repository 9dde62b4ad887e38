//! Micro-batch streaming end to end, against the local Kafka, S3-API server, PostgreSQL and
//! Vault. Events are produced by a client pipectl did not write (kafka-python, with unique
//! order ids); the Delta table is read back by another reader (the `deltalake` Python
//! package), the S3 files by boto3 and pyarrow, and the PostgreSQL table with SQL:
//! - `--once` reads exactly the topic, over several micro-batches, into Delta and PostgreSQL;
//!   again reads nothing; the batch twin (`"mode": "batch"`) writes the same rows;
//! - the crash test: `kill -9` at five random moments while 200,000 events are produced, each
//!   time restarted: both tables and the S3 dataset hold every event exactly once;
//! - a running stream shows new events within its trigger interval, serves `/metrics`, and
//!   SIGTERM ends it with exit 0; the next start continues without gap or duplicate.

mod common;

use common::all_output;
use pipeline_testkit::{Env, Service, service, unique};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Setup {
    env: Env,
    dir: tempfile::TempDir,
    topic: String,
    url: String,
    table: String,
}

fn setup(name: &str) -> Option<Setup> {
    let (Some(env), Some(_), Some(_), Some(_)) = (
        service(Service::Kafka),
        service(Service::S3),
        service(Service::Postgres),
        service(Service::Vault),
    ) else {
        return None;
    };
    pipeline_testkit::python()?;
    let topic = unique(name);
    let url = format!("s3://{}/stream-e2e/{}", env.get("S3_BUCKET"), topic);
    Some(Setup {
        env,
        dir: tempfile::tempdir().unwrap(),
        table: topic.clone(),
        topic,
        url,
    })
}

impl Setup {
    fn pipeline(&self, name: &str, streaming: serde_json::Value) -> PathBuf {
        let kv = self.env.kv_mount();
        let doc = json!({
            "name": name,
            "mode": "streaming",
            "streaming": streaming,
            "retry": {"max_retries": 5, "delay_seconds": 1},
            "connections": {
                "events": {"system": "kafka", "credentials": {"vault_path": format!("{kv}/pipectl/kafka")}},
                "lake": {"system": "delta", "credentials": {"vault_path": format!("{kv}/pipectl/delta")}},
                "warehouse": {"system": "postgres", "credentials": {"vault_path": format!("{kv}/pipectl/postgres")}}
            },
            "steps": [
                {"name": "orders", "kind": "extract", "method": "kafka", "connection": "events",
                 "options": {"topics": [self.topic], "schema": {
                     "order_id": "int64", "customer_id": "int64", "status": "string",
                     "amount": "float64", "event_time": "int64"}}},
                {"name": "enriched", "kind": "transform", "method": "derive",
                 "options": {"columns": {"amount_with_tax": "round(amount * 1.2, 2)"}}},
                {"name": "to_lake", "kind": "load", "method": "delta", "connection": "lake",
                 "options": {"path": self.url}},
                {"name": "to_pg", "kind": "load", "method": "postgres", "connection": "warehouse",
                 "inputs": ["enriched"],
                 "options": {"table": self.table, "create_table": true}}
            ]
        });
        let path = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        path
    }

    /// Produces `count` events with order ids from `first`, at `rate` per second (0: at once).
    fn producer(&self, first: u64, count: u64, rate: u64) -> Child {
        let script = pipeline_testkit::repo_root().join("scripts/dev-env.d/produce_orders.py");
        Command::new(pipeline_testkit::python().unwrap())
            .arg(script)
            .args([self.env.get("KAFKA_BOOTSTRAP_SERVERS"), &self.topic])
            .args(["--count", &count.to_string(), "--first", &first.to_string()])
            .args(["--rate", &rate.to_string(), "--partitions", "4"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn produce(&self, first: u64, count: u64) {
        let out = self.producer(first, count, 0).wait_with_output().unwrap();
        assert!(out.status.success(), "producer: {}", all_output(&out));
    }

    /// `(rows, distinct order ids, min, max)` of the PostgreSQL table.
    async fn pg_ids(&self) -> (i64, i64, i64, i64) {
        let c = pipeline_testkit::postgres_client(&self.env).await;
        let row = c
            .query_one(
                &format!(
                    "SELECT count(*), count(DISTINCT order_id), coalesce(min(order_id), 0), coalesce(max(order_id), 0) FROM \"{}\"",
                    self.table
                ),
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2), row.get(3))
    }

    /// The same of the Delta table, read by the `deltalake` Python package.
    async fn delta_ids(&self, url: &str) -> (i64, i64, i64, i64) {
        let script = r#"
import sys, os, deltalake
opts = {"AWS_ACCESS_KEY_ID": sys.argv[2], "AWS_SECRET_ACCESS_KEY": sys.argv[3], "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": sys.argv[4], "AWS_ALLOW_HTTP": "true"}
ids = deltalake.DeltaTable(sys.argv[1], storage_options=opts).to_pyarrow_table(columns=["order_id"]).column("order_id").to_pylist()
print(len(ids), len(set(ids)), min(ids or [0]), max(ids or [0]))
sys.stdout.flush()
os._exit(0)
"#;
        self.python_ids(script, url).await
    }

    /// Adds an `s3` load of partitioned Parquet files (at step index `at`, default the end) to
    /// the pipeline `file`; returns its `s3://` prefix.
    fn add_files(&self, file: &Path, at: Option<usize>) -> String {
        let kv = self.env.kv_mount();
        let url = format!(
            "s3://{}/stream-files/{}/",
            self.env.get("S3_BUCKET"),
            self.topic
        );
        let mut doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        doc["connections"]["files"] =
            json!({"system": "s3", "credentials": {"vault_path": format!("{kv}/pipectl/s3")}});
        let steps = doc["steps"].as_array_mut().unwrap();
        let step = json!({"name": "to_files", "kind": "load", "method": "s3", "connection": "files",
            "inputs": ["enriched"], "options": {"path": url, "partition_by": ["status"]}});
        steps.insert(at.unwrap_or(steps.len()), step);
        std::fs::write(file, doc.to_string()).unwrap();
        url
    }

    /// `(rows, distinct order ids, min, max)` of the Parquet files under `url` (hidden `_`
    /// names skipped), listed by boto3 and read by pyarrow.
    async fn files_ids(&self, url: &str) -> (i64, i64, i64, i64) {
        let script = r#"
import sys, io, os, boto3, pyarrow.parquet as pq
bucket, prefix = sys.argv[1][len("s3://"):].split("/", 1)
s3 = boto3.client("s3", endpoint_url=sys.argv[4], aws_access_key_id=sys.argv[2],
                  aws_secret_access_key=sys.argv[3], region_name="us-east-1")
ids = []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    for o in page.get("Contents", []):
        if any(part.startswith(("_", ".")) for part in o["Key"][len(prefix):].split("/")):
            continue
        body = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        ids += pq.read_table(io.BytesIO(body), columns=["order_id"]).column("order_id").to_pylist()
print(len(ids), len(set(ids)), min(ids or [0]), max(ids or [0]))
sys.stdout.flush()
os._exit(0)
"#;
        self.python_ids(script, url).await
    }

    /// Runs a Python `script` with `url`, the S3 keys and endpoint as arguments; it prints
    /// `rows distinct min max`.
    async fn python_ids(&self, script: &str, url: &str) -> (i64, i64, i64, i64) {
        let keys = pipeline_testkit::vault_secret(&self.env, "pipectl/s3").await;
        let out = Command::new(pipeline_testkit::python().unwrap())
            .args(["-c", script, url])
            .args([&keys["access_key_id"], &keys["secret_access_key"]])
            .arg(self.env.get("S3_ENDPOINT"))
            .output()
            .unwrap();
        assert!(out.status.success(), "python: {}", all_output(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        let v: Vec<i64> = text
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        (v[0], v[1], v[2], v[3])
    }

    fn drop_table(&self) -> impl Drop + use<> {
        pipeline_testkit::drop_table_on_exit(&self.env, &format!("\"{}\"", self.table))
    }
}

fn run(file: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["run", file.to_str().unwrap(), "--log-format", "json"];
    args.extend_from_slice(extra);
    common::pipectl(&args)
}

fn spawn(file: &Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_pipectl"))
        .args(["run", file.to_str().unwrap()])
        .args(extra)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn once_reads_exactly_the_topic_and_the_batch_twin_writes_the_same() {
    let Some(s) = setup("stream_once") else {
        return;
    };
    let _drop = s.drop_table();
    s.produce(1, 20_000);
    let file = s.pipeline("stream_once", json!({"max_records": 6000}));
    let files = s.add_files(&file, None);
    let first = run(&file, &["--once"]);
    let output = all_output(&first);
    assert_eq!(first.status.code(), Some(0), "{output}");
    assert!(
        output.contains("everything available at the start is processed"),
        "{output}"
    );
    let stopped: serde_json::Value = output
        .lines()
        .find(|l| l.contains("\"stream stopped\""))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no final line: {output}"));
    let batches = stopped["micro_batches"].as_u64().unwrap_or(0);
    assert!(
        batches >= 4,
        "20,000 events at 6,000 per micro-batch: {batches} micro-batches\n{output}"
    );
    assert_eq!(s.pg_ids().await, (20_000, 20_000, 1, 20_000));
    assert_eq!(s.delta_ids(&s.url).await, (20_000, 20_000, 1, 20_000));
    assert_eq!(s.files_ids(&files).await, (20_000, 20_000, 1, 20_000));
    for secret in ["password", "secret_access_key"] {
        for path in ["pipectl/postgres", "pipectl/s3"] {
            if let Some(v) = pipeline_testkit::vault_secret(&s.env, path)
                .await
                .get(secret)
            {
                assert!(
                    !output.contains(v.as_str()),
                    "a secret of {path} was printed"
                );
            }
        }
    }

    // Nothing new: nothing written.
    let again = run(&file, &["--once"]);
    assert_eq!(again.status.code(), Some(0), "{}", all_output(&again));
    assert_eq!(s.pg_ids().await, (20_000, 20_000, 1, 20_000));

    // New events: only they are added.
    s.produce(20_001, 1_000);
    let more = run(&file, &["--once"]);
    assert_eq!(more.status.code(), Some(0), "{}", all_output(&more));
    assert_eq!(s.pg_ids().await, (21_000, 21_000, 1, 21_000));
    assert_eq!(s.delta_ids(&s.url).await, (21_000, 21_000, 1, 21_000));
    assert_eq!(s.files_ids(&files).await, (21_000, 21_000, 1, 21_000));

    // The batch twin: the same file with "mode": "batch" (to other tables) writes the same rows.
    let twin_url = format!("{}_batch", s.url);
    let twin_table = format!("{}_batch", s.table);
    let twin_files = format!("{}_batch/", files.trim_end_matches('/'));
    let _drop_twin = pipeline_testkit::drop_table_on_exit(&s.env, &format!("\"{twin_table}\""));
    let batch = run(
        &file,
        &[
            "--set",
            "/mode=batch",
            "--set",
            &format!("/steps/2/options/path={twin_url}"),
            "--set",
            &format!("/steps/3/options/table={twin_table}"),
            "--set",
            &format!("/steps/4/options/path={}", twin_files),
        ],
    );
    assert_eq!(batch.status.code(), Some(0), "{}", all_output(&batch));
    assert_eq!(s.delta_ids(&twin_url).await, s.delta_ids(&s.url).await);
    assert_eq!(s.files_ids(&twin_files).await, s.files_ids(&files).await);
}

/// A tiny pseudo-random sequence (the seed is printed, so a failure can be replayed).
fn next(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 33
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_five_times_while_producing_loses_and_duplicates_nothing() {
    let Some(s) = setup("stream_crash") else {
        return;
    };
    let _drop = s.drop_table();
    const EVENTS: u64 = 200_000;
    let file = s.pipeline(
        "stream_crash",
        json!({"trigger_interval": "200ms", "max_records": 15000, "log_interval": "2s"}),
    );
    let files = s.add_files(&file, None);
    // The topic exists before the stream starts (the producer creates it).
    s.produce(1, 1);
    let mut producer = s.producer(2, EVENTS - 1, 12_000);
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill moments seed: {seed}");
    let mut kills = 0;
    while kills < 5 {
        let mut child = spawn(&file, &[]);
        // Between 0.8 s and 4.8 s: while opening, reading, writing files or committing.
        let wait = 800 + next(&mut seed) % 4000;
        std::thread::sleep(Duration::from_millis(wait));
        if let Ok(Some(status)) = child.try_wait() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "the stream ended by itself ({status}): {}",
                all_output(&out)
            );
        }
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
        kills += 1;
        let (rows, distinct, ..) = s.pg_ids_or_zero().await;
        eprintln!("kill {kills} after {wait} ms: {rows} rows in PostgreSQL");
        assert_eq!(rows, distinct, "a duplicate after kill {kills}");
    }
    let (before_drain, ..) = s.pg_ids_or_zero().await;
    assert!(before_drain > 0, "the killed streams committed nothing");
    let produced = producer.wait().unwrap();
    assert!(produced.success(), "the producer failed");
    // Drain what is left after the last kill.
    let last = run(&file, &["--once"]);
    assert_eq!(last.status.code(), Some(0), "{}", all_output(&last));
    let n = EVENTS as i64;
    assert_eq!(s.pg_ids().await, (n, n, 1, n), "PostgreSQL");
    assert_eq!(s.delta_ids(&s.url).await, (n, n, 1, n), "Delta");
    assert_eq!(s.files_ids(&files).await, (n, n, 1, n), "S3 files");
    drop(producer.stdout.take());
}

/// `GET /metrics` on `addr`, as text.
fn metrics(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(addr).ok()?;
    socket
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    socket.read_to_string(&mut text).ok()?;
    Some(text)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_stream_shows_new_events_quickly_and_stops_cleanly_on_sigterm() {
    let Some(s) = setup("stream_live") else {
        return;
    };
    let _drop = s.drop_table();
    s.produce(1, 5_000);
    let file = s.pipeline(
        "stream_live",
        json!({"trigger_interval": "1s", "log_interval": "1s", "shutdown_timeout": "20s"}),
    );
    let port = pipeline_testkit::closed_port();
    let addr = format!("127.0.0.1:{port}");
    let child = spawn(&file, &["--metrics-addr", &addr, "--log-format", "json"]);
    let wait_for = |want: i64, within: Duration| {
        let start = Instant::now();
        let rt = tokio::runtime::Runtime::new().unwrap();
        loop {
            let (rows, _) = rt.block_on(s.pg_ids_or_zero());
            if rows >= want {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "{want} rows not there after {within:?} ({rows})"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let first = tokio::task::block_in_place(|| wait_for(5_000, Duration::from_secs(60)));
    eprintln!("the first 5,000 events after {first:?}");
    // New events show within the trigger interval (plus the micro-batch's own time).
    s.produce(5_001, 1_000);
    let seen = tokio::task::block_in_place(|| wait_for(6_000, Duration::from_secs(10)));
    eprintln!("1,000 new events in the table after {seen:?}");
    // Within the 1 s trigger interval (0.26-0.45 s measured here); one more second of margin
    // for the micro-batch on a loaded CI machine.
    assert!(seen < Duration::from_secs(2), "new events took {seen:?}");
    // The counters are updated right after the commit: poll briefly.
    let want = "pipectl_stream_events_in_total{pipeline=\"stream_live\"} 6000";
    let mut text = String::new();
    for _ in 0..100 {
        text = metrics(&addr).expect("the metrics endpoint answers");
        if text.contains(want) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(want), "{text}");
    assert!(text.contains("pipectl_stream_lag{"), "{text}");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    let output = all_output(&out);
    assert_eq!(out.status.code(), Some(0), "{output}");
    assert!(started.elapsed() < Duration::from_secs(20), "{output}");
    assert!(output.contains("stream stopped"), "{output}");
    assert!(output.contains("latency_p95_ms"), "{output}");
    // The next start continues where the stream stopped.
    s.produce(6_001, 500);
    let next = run(&file, &["--once"]);
    assert_eq!(next.status.code(), Some(0), "{}", all_output(&next));
    assert_eq!(s.pg_ids().await, (6_500, 6_500, 1, 6_500));
    assert_eq!(s.delta_ids(&s.url).await, (6_500, 6_500, 1, 6_500));
}

impl Setup {
    /// `(rows, distinct order ids)`, or zeros while the table does not exist yet.
    async fn pg_ids_or_zero(&self) -> (i64, i64) {
        let c = pipeline_testkit::postgres_client(&self.env).await;
        match c
            .query_one(
                &format!(
                    "SELECT count(*), count(DISTINCT order_id) FROM \"{}\"",
                    self.table
                ),
                &[],
            )
            .await
        {
            Ok(row) => (row.get(0), row.get(1)),
            Err(_) => (0, 0),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_load_that_failed_at_commit_gets_the_micro_batch_alone_on_restart() {
    let Some(s) = setup("stream_replay") else {
        return;
    };
    let _drop = s.drop_table();
    // A deferred unique key fails PostgreSQL's COMMIT, after the Delta load committed the
    // same micro-batch: the table holds a blocking row with order id 3.
    let c = pipeline_testkit::postgres_client(&s.env).await;
    c.batch_execute(&format!(
        "CREATE TABLE \"{t}\" (order_id bigint, customer_id bigint, status text, amount double precision, \
         event_time bigint, amount_with_tax double precision, \
         CONSTRAINT \"{t}_key\" UNIQUE (order_id) DEFERRABLE INITIALLY DEFERRED); \
         INSERT INTO \"{t}\" (order_id, customer_id) VALUES (3, -1)",
        t = s.table
    ))
    .await
    .unwrap();
    s.produce(1, 8_000);
    let file = s.pipeline("stream_replay", json!({"max_records": 3000}));
    // A second PostgreSQL load in the same schema keeps offsets of its own.
    let copy = format!("{}_copy", s.table);
    let _drop_copy = pipeline_testkit::drop_table_on_exit(&s.env, &format!("\"{copy}\""));
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    doc["steps"].as_array_mut().unwrap().push(json!(
        {"name": "to_pg_copy", "kind": "load", "method": "postgres", "connection": "warehouse",
         "inputs": ["enriched"], "options": {"table": copy, "create_table": true}}));
    // A MySQL load that commits before PostgreSQL fails: on restart it has the micro-batch.
    let mysql = service(Service::Mysql).map(|_| format!("{}_my", s.table));
    let _drop_my = mysql
        .as_ref()
        .map(|t| pipeline_testkit::drop_mysql_table_on_exit(&s.env, t));
    if let Some(t) = &mysql {
        let kv = s.env.kv_mount();
        doc["connections"]["shop"] = json!({"system": "mysql", "credentials": {"vault_path": format!("{kv}/pipectl/mysql")}});
        doc["steps"].as_array_mut().unwrap().insert(
            3,
            json!(
            {"name": "to_mysql", "kind": "load", "method": "mysql", "connection": "shop",
             "inputs": ["enriched"], "options": {"table": t, "create_table": true}}),
        );
    }
    std::fs::write(&file, doc.to_string()).unwrap();
    // S3 files that commit before PostgreSQL fails.
    let files = s.add_files(&file, Some(3));
    let failed = run(&file, &["--once"]);
    let output = all_output(&failed);
    assert_eq!(failed.status.code(), Some(1), "{output}");
    assert!(output.contains("to_pg"), "{output}");
    let (delta_rows, ..) = s.delta_ids(&s.url).await;
    let (pg_rows, _) = s.pg_ids_or_zero().await;
    assert!(
        delta_rows > pg_rows - 1,
        "Delta committed the micro-batch PostgreSQL refused: {delta_rows} vs {pg_rows}"
    );
    // The blocker removed, the next start replays that micro-batch to PostgreSQL only.
    c.batch_execute(&format!(
        "DELETE FROM \"{}\" WHERE customer_id = -1",
        s.table
    ))
    .await
    .unwrap();
    let resumed = run(&file, &["--once"]);
    let output = all_output(&resumed);
    assert_eq!(resumed.status.code(), Some(0), "{output}");
    assert!(
        output
            .lines()
            .any(|l| l.contains("this micro-batch is already in the table")
                && l.contains("\"step\":\"to_lake\"")),
        "the replay was not recognised by Delta: {output}"
    );
    assert_eq!(s.pg_ids().await, (8_000, 8_000, 1, 8_000));
    assert_eq!(s.delta_ids(&s.url).await, (8_000, 8_000, 1, 8_000));
    assert!(
        output
            .lines()
            .any(|l| l.contains("this micro-batch is already in the dataset")
                && l.contains("\"step\":\"to_files\"")),
        "the replay was not recognised by the S3 load: {output}"
    );
    assert_eq!(s.files_ids(&files).await, (8_000, 8_000, 1, 8_000));
    let row = c
        .query_one(
            &format!("SELECT count(*), count(DISTINCT order_id) FROM \"{copy}\""),
            &[],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (8_000, 8_000));
    if let Some(t) = &mysql {
        use mysql_async::prelude::Queryable;
        assert!(
            output
                .lines()
                .any(|l| l.contains("this micro-batch is already in the table")
                    && l.contains("\"step\":\"to_mysql\"")),
            "the replay was not recognised by MySQL: {output}"
        );
        let mut my = pipeline_testkit::mysql_client(&s.env).await;
        let counts: Option<(i64, i64)> = my
            .query_first(format!(
                "SELECT count(*), count(DISTINCT order_id) FROM `{t}`"
            ))
            .await
            .unwrap();
        assert_eq!(counts, Some((8_000, 8_000)), "MySQL");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_checkpoint_keeps_the_offsets_of_an_at_least_once_stream() {
    let Some(s) = setup("stream_checkpoint") else {
        return;
    };
    s.produce(1, 3_000);
    // The output topic exists (pipectl does not create topics): the producer creates it.
    let out = Command::new(pipeline_testkit::python().unwrap())
        .arg(pipeline_testkit::repo_root().join("scripts/dev-env.d/produce_orders.py"))
        .args([
            s.env.get("KAFKA_BOOTSTRAP_SERVERS"),
            &format!("{}_out", s.topic),
        ])
        .args(["--count", "0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", all_output(&out));
    let checkpoint = s.dir.path().join("cp");
    let kv = s.env.kv_mount();
    let doc = json!({
        "name": "stream_checkpoint", "mode": "streaming",
        "streaming": {"max_records": 1000, "checkpoint": {"location": checkpoint}},
        "connections": {"events": {"system": "kafka", "credentials": {"vault_path": format!("{kv}/pipectl/kafka")}}},
        "steps": [
            {"name": "orders", "kind": "extract", "method": "kafka", "connection": "events",
             "options": {"topics": [s.topic]}},
            {"name": "to_topic", "kind": "load", "method": "kafka", "connection": "events",
             "options": {"topic": format!("{}_out", s.topic)}}
        ]
    });
    let file = s.dir.path().join("checkpoint.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let events_in = |out: &std::process::Output| -> u64 {
        let text = all_output(out);
        assert_eq!(out.status.code(), Some(0), "{text}");
        text.lines()
            .find(|l| l.contains("\"stream stopped\""))
            .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .and_then(|v| v["events_in"].as_u64())
            .unwrap_or_else(|| panic!("no final line: {text}"))
    };
    assert_eq!(events_in(&run(&file, &["--once"])), 3_000);
    let stored: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(checkpoint.join("orders.offsets.json")).unwrap(),
    )
    .unwrap();
    let next: i64 = stored["topics"][&s.topic]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(next, 3_000, "{stored}");
    // The next start resumes from the checkpoint: only the new events.
    s.produce(3_001, 500);
    assert_eq!(events_in(&run(&file, &["--once"])), 500);
}
