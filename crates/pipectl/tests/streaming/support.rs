//! The streaming tests' set-up: a topic, a Delta table, a PostgreSQL table and S3 files per
//! test, the pipeline file, a producer (kafka-python) and readers pipectl did not write
//! (the `deltalake` package, boto3 + pyarrow, SQL).

use super::common::{self, all_output};
use pipeline_testkit::{Env, Service, service, unique};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct Setup {
    pub env: Env,
    pub dir: tempfile::TempDir,
    pub topic: String,
    pub url: String,
    pub table: String,
}

pub fn setup(name: &str) -> Option<Setup> {
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
    pub fn pipeline(&self, name: &str, streaming: serde_json::Value) -> PathBuf {
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
    pub fn producer(&self, first: u64, count: u64, rate: u64) -> Child {
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

    pub fn produce(&self, first: u64, count: u64) {
        let out = self.producer(first, count, 0).wait_with_output().unwrap();
        assert!(out.status.success(), "producer: {}", all_output(&out));
    }

    /// `(rows, distinct order ids, min, max)` of the PostgreSQL table.
    pub async fn pg_ids(&self) -> (i64, i64, i64, i64) {
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
    pub async fn delta_ids(&self, url: &str) -> (i64, i64, i64, i64) {
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
    pub fn add_files(&self, file: &Path, at: Option<usize>) -> String {
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
    pub async fn files_ids(&self, url: &str) -> (i64, i64, i64, i64) {
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
    pub async fn python_ids(&self, script: &str, url: &str) -> (i64, i64, i64, i64) {
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

    pub fn drop_table(&self) -> impl Drop + use<> {
        pipeline_testkit::drop_table_on_exit(&self.env, &format!("\"{}\"", self.table))
    }
}

pub fn run(file: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["run", file.to_str().unwrap(), "--log-format", "json"];
    args.extend_from_slice(extra);
    common::pipectl(&args)
}

pub fn spawn(file: &Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_pipectl"))
        .args(["run", file.to_str().unwrap()])
        .args(extra)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

impl Setup {
    /// `(rows, distinct order ids)`, or zeros while the table does not exist yet.
    pub async fn pg_ids_or_zero(&self) -> (i64, i64) {
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
