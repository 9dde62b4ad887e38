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
#[path = "streaming/support.rs"]
mod support;

use common::all_output;
use pipeline_testkit::{Service, service};
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};
use support::{run, setup, spawn};

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
async fn the_checkpoint_keeps_the_offsets_of_an_at_least_once_load() {
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
    let files = format!("s3://{}/stream-files/{}/", s.env.get("S3_BUCKET"), s.topic);
    // An at-least-once Kafka load beside an exactly-once S3 one.
    let doc = json!({
        "name": "stream_checkpoint", "mode": "streaming",
        "streaming": {"max_records": 1000, "checkpoint": {"location": checkpoint}},
        "connections": {
            "events": {"system": "kafka", "credentials": {"vault_path": format!("{kv}/pipectl/kafka")}},
            "files": {"system": "s3", "credentials": {"vault_path": format!("{kv}/pipectl/s3")}}},
        "steps": [
            {"name": "orders", "kind": "extract", "method": "kafka", "connection": "events",
             "options": {"topics": [s.topic], "schema": {"order_id": "int64", "status": "string"}}},
            {"name": "to_topic", "kind": "load", "method": "kafka", "connection": "events",
             "options": {"topic": format!("{}_out", s.topic)}},
            {"name": "to_files", "kind": "load", "method": "s3", "connection": "files",
             "inputs": ["orders"], "options": {"path": files}}
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
    let first_save = std::fs::read_to_string(checkpoint.join("orders.offsets.json")).unwrap();
    s.produce(3_001, 500);
    assert_eq!(events_in(&run(&file, &["--once"])), 500);
    // A stop between the loads' commits and the checkpoint's save leaves the checkpoint a
    // micro-batch behind the S3 load: the next start replays those events to the Kafka load
    // only, and the S3 dataset keeps each event once.
    // Events that arrived meanwhile come after the replay, to both loads.
    std::fs::write(checkpoint.join("orders.offsets.json"), first_save).unwrap();
    s.produce(3_501, 200);
    let replay = run(&file, &["--once"]);
    assert_eq!(events_in(&replay), 700);
    assert!(
        all_output(&replay).contains("this micro-batch is already in the dataset"),
        "{}",
        all_output(&replay)
    );
    assert_eq!(s.files_ids(&files).await, (3_700, 3_700, 1, 3_700));
}
