//! The engine equivalence test: example pipelines run by the binary on the Polars engine and on
//! the Spark engine (the local Spark Connect server of `scripts/dev-env up spark`), each into its
//! own sinks; every sink is then read back by `scripts/lib/sink-snapshot.py` (pyarrow on the
//! Delta log and Parquet files, psql) — neither engine's reader — and the two must hold the same
//! rows with the same column types. No seeded secret appears in the Spark runs' output. The
//! user-story-2 case reads the seeded `orders_json` topic from the start on each engine (each
//! with its own offsets store) and checks that both stores end at the same offsets; the
//! streaming case (user story 3, `--once`) runs as micro-batches on Polars and as Structured
//! Streaming queries on Spark, each sink exactly once.

mod common;

use common::{all_output, pipectl};
use pipeline_testkit::{Env, Service, service, unique, vault_secret};
use rstest::rstest;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    pipeline_testkit::repo_root()
}

/// Where one engine's copy of a sink goes, and how to read it back.
#[derive(Clone, Copy)]
enum Sink {
    /// `/steps/N/options/path` of a Delta load, a local directory.
    Delta(usize),
    /// `/steps/N/options/path` of an s3 Parquet load.
    S3Parquet(usize),
    /// `/steps/N/options/table` of a postgres load.
    Postgres(usize),
}

impl Sink {
    /// The `--set` override and the snapshot arguments for this engine's copy.
    fn target(&self, tmp: &Path, engine: &str, id: &str, env: &Env) -> (String, [String; 2]) {
        match *self {
            Sink::Delta(i) => {
                let dir = tmp.join(format!("{engine}_{i}"));
                (
                    format!("/steps/{i}/options/path=\"{}\"", dir.display()),
                    ["delta".into(), dir.display().to_string()],
                )
            }
            Sink::S3Parquet(i) => {
                let url = format!("s3://{}/{id}/{engine}_{i}/", env.get("S3_BUCKET"));
                (
                    format!("/steps/{i}/options/path=\"{url}\""),
                    ["parquet".into(), url],
                )
            }
            Sink::Postgres(i) => {
                let table = format!("{id}_{engine}_{i}");
                (
                    format!("/steps/{i}/options/table=\"{table}\""),
                    ["postgres".into(), table],
                )
            }
        }
    }
}

/// The sink's canonical snapshot (columns with types, sorted rows).
fn snapshot(
    args: &[String; 2],
    env: &Env,
    pg: &std::collections::HashMap<String, String>,
) -> serde_json::Value {
    snapshot_with(args, env, pg, &std::collections::HashMap::new())
}

/// Same, with the MySQL settings (`host`, `port`, `database`, `username`, `password`).
fn snapshot_with(
    args: &[String; 2],
    env: &Env,
    pg: &std::collections::HashMap<String, String>,
    my: &std::collections::HashMap<String, String>,
) -> serde_json::Value {
    let python = pipeline_testkit::python().expect("the dev-env Python");
    let out = Command::new(python)
        .arg(repo().join("scripts/lib/sink-snapshot.py"))
        .args(args)
        .env("PGHOST", env.get("POSTGRES_HOST"))
        .env("PGPORT", env.get("POSTGRES_PORT"))
        .env(
            "PGDATABASE",
            pg.get("database").cloned().unwrap_or_default(),
        )
        .env("PGUSER", pg.get("username").cloned().unwrap_or_default())
        .env(
            "PGPASSWORD",
            pg.get("password").cloned().unwrap_or_default(),
        )
        .env("MYSQL_HOST", my.get("host").cloned().unwrap_or_default())
        .env("MYSQL_PORT", my.get("port").cloned().unwrap_or_default())
        .env(
            "MYSQL_DATABASE",
            my.get("database").cloned().unwrap_or_default(),
        )
        .env(
            "MYSQL_USER",
            my.get("username").cloned().unwrap_or_default(),
        )
        .env(
            "MYSQL_PASSWORD",
            my.get("password").cloned().unwrap_or_default(),
        )
        .output()
        .expect("the snapshot script runs");
    assert!(
        out.status.success(),
        "snapshot {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON snapshot")
}

/// Every sink holds rows, and the same on both engines.
fn assert_same(what: &str, polars: &[serde_json::Value], spark: &[serde_json::Value]) {
    for (i, (p, s)) in polars.iter().zip(spark).enumerate() {
        assert!(
            p["count"].as_u64().unwrap_or(0) > 0,
            "sink {i} of {what} holds rows"
        );
        assert!(
            p == s,
            "sink {i} of {what} differs between the engines: {}",
            difference(p, s)
        );
    }
}

/// Where two snapshots differ, briefly.
fn difference(polars: &serde_json::Value, spark: &serde_json::Value) -> String {
    if polars["columns"] != spark["columns"] {
        return format!(
            "columns: polars {} / spark {}",
            polars["columns"], spark["columns"]
        );
    }
    let rows = |v: &serde_json::Value| -> Vec<String> {
        v["rows"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| r.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let (a, b) = (rows(polars), rows(spark));
    let only_polars: Vec<&String> = a.iter().filter(|r| !b.contains(r)).take(3).collect();
    let only_spark: Vec<&String> = b.iter().filter(|r| !a.contains(r)).take(3).collect();
    format!(
        "{} rows on polars, {} on spark; only on polars: {only_polars:?}; only on spark: {only_spark:?}",
        a.len(),
        b.len()
    )
}

#[rstest]
#[case::quickstart("configs/quickstart.json", &[Sink::Delta(4)], &["/steps/0/options/rows=200000"], &[])]
#[case::revenue_by_country_with_quarantine("configs/examples/revenue_by_country.json", &[Sink::Delta(7), Sink::Delta(8)], &[], &[])]
#[case::every_transform_and_validation("crates/pipectl/tests/spark/coverage.json", &[Sink::Delta(20), Sink::Delta(21)], &[], &[])]
#[case::user_story_1_postgres_to_s3("configs/examples/postgres_to_s3.json", &[Sink::S3Parquet(3)], &[], &[])]
#[case::mysql_to_postgres_upsert("configs/examples/mysql_to_postgres.json", &[Sink::Postgres(5)], &[], &[])]
#[case::parallel_jdbc_ranges(
    "configs/examples/mysql_to_postgres.json",
    &[Sink::Postgres(5)],
    &["/steps/0/options/partition={\"column\": \"customer_id\", \"partitions\": 3}"],
    &[]
)]
#[case::parallel_postgres_ranges(
    "configs/examples/postgres_to_s3.json",
    &[Sink::S3Parquet(3)],
    &["/steps/0/options/partition={\"column\": \"order_id\", \"partitions\": 4}"],
    &[]
)]
#[case::user_story_2_kafka_and_mysql(
    "configs/examples/orders_enriched.json",
    &[Sink::Delta(8), Sink::Postgres(10), Sink::Delta(11)],
    &["/steps/2/options/offsets/store=\"{tmp}/{engine}.offsets.json\""],
    &[]
)]
#[case::user_story_3_streaming_once(
    "configs/examples/orders_stream.json",
    &[Sink::Delta(4), Sink::Delta(5)],
    &[],
    &["--once"]
)]
#[tokio::test(flavor = "multi_thread")]
async fn both_engines_write_the_same_rows_and_types(
    #[case] file: &str,
    #[case] sinks: &[Sink],
    #[case] sets: &[&str],
    #[case] flags: &[&str],
) {
    let Some(env) = service(Service::Spark) else {
        return;
    };
    if (sinks.iter().any(|s| matches!(s, Sink::S3Parquet(_))) && service(Service::S3).is_none())
        || (sinks.iter().any(|s| matches!(s, Sink::Postgres(_)))
            && service(Service::Postgres).is_none())
    {
        return;
    }
    let pg = vault_secret(&env, "pipectl/postgres").await;
    let pg_password = pg.get("password").cloned().unwrap_or_default();
    let tmp = tempfile::tempdir().unwrap();
    let id = unique("equiv");
    let pipeline = repo().join(file).display().to_string();
    let mut snapshots = Vec::new();
    let mut cleanups = Vec::new();
    for engine in ["polars", "spark"] {
        let mut args = vec![
            "run".to_string(),
            pipeline.clone(),
            "--engine".into(),
            engine.into(),
            "--no-progress".into(),
        ];
        let mut reads = Vec::new();
        for sink in sinks {
            let (set, read) = sink.target(tmp.path(), engine, &id, &env);
            if let Sink::Postgres(_) = sink {
                cleanups.push(pipeline_testkit::drop_table_on_exit(&env, &read[1]));
            }
            args.extend(["--set".into(), set]);
            reads.push(read);
        }
        args.extend(flags.iter().map(|f| f.to_string()));
        for set in sets {
            let set = set
                .replace("{tmp}", &tmp.path().display().to_string())
                .replace("{engine}", engine);
            args.extend(["--set".into(), set]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = pipectl(&args);
        let text = all_output(&out);
        assert!(out.status.success(), "{engine} run of {file}:\n{text}");
        if engine == "spark" {
            assert!(text.contains("ran on Spark at sc://"), "{text}");
            for secret in [pg_password.as_str(), env.get("VAULT_TOKEN")] {
                assert!(
                    !text.contains(secret),
                    "the Spark run printed a seeded secret"
                );
            }
        }
        snapshots.push(
            reads
                .iter()
                .map(|r| snapshot(r, &env, &pg))
                .collect::<Vec<_>>(),
        );
    }
    if sets.iter().any(|s| s.contains("offsets.json")) {
        let stored = |engine: &str| {
            std::fs::read_to_string(tmp.path().join(format!("{engine}.offsets.json")))
                .map(|t| serde_json::from_str::<serde_json::Value>(&t).unwrap())
                .unwrap_or_default()
        };
        assert!(stored("polars")["topics"].is_object(), "offsets stored");
        assert_eq!(
            stored("polars"),
            stored("spark"),
            "both engines store the same offsets"
        );
    }
    assert_same(file, &snapshots[0], &snapshots[1]);
}

/// Delta time travel in (`version`), freshness and a filtering range with
/// `max_invalid_fraction`, then a Delta upsert (MERGE on Spark) and a MySQL upsert (a staging
/// table merged over pipectl's own connection), each run twice per engine — the second from
/// the source's next version, so rows are both updated and inserted.
#[tokio::test(flavor = "multi_thread")]
async fn delta_time_travel_and_upserts_match() {
    let (Some(env), Some(_)) = (service(Service::Spark), service(Service::Mysql)) else {
        return;
    };
    let pg = vault_secret(&env, "pipectl/postgres").await;
    let my = vault_secret(&env, "pipectl/mysql").await;
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    for rows in [1000, 3000] {
        let out = pipectl(&[
            "run",
            &repo().join("configs/quickstart.json").display().to_string(),
            "--no-progress",
            "--set",
            &format!("/steps/0/options/rows={rows}"),
            "--set",
            &format!("/steps/4/options/path=\"{}\"", source.display()),
        ]);
        assert!(out.status.success(), "{}", all_output(&out));
    }
    let pipeline = repo()
        .join("crates/pipectl/tests/spark/lake.json")
        .display()
        .to_string();
    let id = unique("lake");
    let mut snapshots = Vec::new();
    let mut cleanups = Vec::new();
    for engine in ["polars", "spark"] {
        let table = tmp.path().join(format!("{engine}_table"));
        let mysql_table = format!("{id}_{engine}");
        cleanups.push(pipeline_testkit::drop_mysql_table_on_exit(
            &env,
            &mysql_table,
        ));
        for version in [0, 1] {
            let sets = [
                format!("/steps/0/options/path=\"{}\"", source.display()),
                format!("/steps/0/options/version={version}"),
                format!("/steps/4/options/path=\"{}\"", table.display()),
                format!("/steps/5/options/table=\"{mysql_table}\""),
            ];
            let mut args = vec!["run", &pipeline, "--engine", engine, "--no-progress"];
            for set in &sets {
                args.extend(["--set", set.as_str()]);
            }
            let out = pipectl(&args);
            assert!(
                out.status.success(),
                "{engine} run (version {version}):\n{}",
                all_output(&out)
            );
        }
        snapshots.push([
            snapshot(&["delta".into(), table.display().to_string()], &env, &pg),
            snapshot_with(&["mysql".into(), mysql_table.clone()], &env, &pg, &my),
        ]);
    }
    assert_same(&pipeline, &snapshots[0], &snapshots[1]);
}

/// CSV, JSON lines and Avro files and a Kafka topic: the files' lines and the records'
/// key and value text must be the same on both engines (Avro: values and types).
#[tokio::test(flavor = "multi_thread")]
async fn files_and_kafka_records_match() {
    let (Some(env), Some(_)) = (service(Service::Spark), service(Service::Kafka)) else {
        return;
    };
    let pg = vault_secret(&env, "pipectl/postgres").await;
    let tmp = tempfile::tempdir().unwrap();
    let pipeline = repo()
        .join("crates/pipectl/tests/spark/files.json")
        .display()
        .to_string();
    let id = unique("files");
    let mut snapshots = Vec::new();
    for engine in ["polars", "spark"] {
        let topic = format!("{id}_{engine}");
        snapshot(&["create-topic".into(), topic.clone()], &env, &pg);
        let dir = |kind: &str| {
            tmp.path()
                .join(format!("{engine}_{kind}"))
                .display()
                .to_string()
        };
        let sets = [
            format!("/steps/2/options/path=\"{}/\"", dir("csv")),
            format!("/steps/3/options/path=\"{}/\"", dir("json")),
            format!("/steps/4/options/path=\"{}/\"", dir("avro")),
            format!("/steps/5/options/topic=\"{topic}\""),
        ];
        let mut args = vec!["run", &pipeline, "--engine", engine, "--no-progress"];
        for set in &sets {
            args.extend(["--set", set.as_str()]);
        }
        let out = pipectl(&args);
        assert!(out.status.success(), "{engine} run:\n{}", all_output(&out));
        snapshots.push([
            snapshot(&["text".into(), dir("csv")], &env, &pg),
            snapshot(&["text".into(), dir("json")], &env, &pg),
            snapshot(&["avro".into(), dir("avro")], &env, &pg),
            snapshot(&["kafka".into(), topic], &env, &pg),
        ]);
    }
    assert_same(&pipeline, &snapshots[0], &snapshots[1]);
}
