//! `pipectl init`: a starter pipeline from a live source. The source is sampled through its
//! own extract method (credentials from Vault, as in a run) to learn the real column names and
//! types, and, for PostgreSQL and MySQL tables, the primary key; the pipeline written checks
//! the columns (`schema`), the keys (`not_null`) and loads into the target. Connection files
//! point at Vault paths: no secret is ever written. Without a source: the quickstart.

use crate::testing::take_captured;
use crate::{CredentialProvider, Pipeline, Registry, RunOptions};
use pipeline_base::StepError;
use pipeline_data::MethodEntry;
use pipeline_data::polars::prelude::{DataFrame, DataType, TimeUnit};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The embedded default pipeline, written when no source is given.
const QUICKSTART: &str = include_str!("../../../configs/quickstart.json");

/// What to write.
#[derive(Debug, Clone)]
pub struct InitRequest {
    /// Pipeline name; the file is `DIR/NAME.json`.
    pub name: String,
    pub dir: PathBuf,
    /// `postgres://CONN/[schema.]table`, `mysql://CONN/table`, `kafka://CONN/topic`,
    /// `s3://BUCKET/PREFIX` (connection `lake` unless `?connection=NAME`), or a local path.
    pub from: Option<String>,
    /// `delta:PATH` (default `delta:out/NAME`), `s3://BUCKET/PREFIX`, `postgres://CONN/table`
    /// or `mysql://CONN/table`.
    pub to: Option<String>,
    /// Where connection credentials live: `VAULT_MOUNT/pipectl/CONN` (default mount `secret`).
    pub vault_mount: String,
    pub force: bool,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct InitOutcome {
    pub pipeline_file: PathBuf,
    pub connection_files: Vec<PathBuf>,
    pub columns: Vec<(String, String)>,
    pub keys: Vec<String>,
}

/// One end of the pipeline.
#[derive(Debug, Clone, PartialEq)]
struct Endpoint {
    system: String,
    connection: Option<String>,
    /// Table, topic, or path.
    object: String,
    /// `s3`: the bucket.
    bucket: Option<String>,
}

fn usage(what: &str, text: &str) -> StepError {
    StepError::user(format!("{what} \"{text}\" is not understood"))
        .with_hint("use postgres://CONNECTION/schema.table, mysql://CONNECTION/table, kafka://CONNECTION/topic, s3://BUCKET/PREFIX[?connection=NAME], delta:PATH or a local path")
}

fn parse_endpoint(what: &str, text: &str) -> Result<Endpoint, StepError> {
    if let Some(path) = text.strip_prefix("delta:") {
        return Ok(Endpoint {
            system: "delta".into(),
            connection: path.starts_with("s3://").then(|| "lake".to_string()),
            object: path.to_string(),
            bucket: None,
        });
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        // A local path: files read or written by the s3 method.
        return Ok(Endpoint {
            system: "s3".into(),
            connection: None,
            object: text.to_string(),
            bucket: None,
        });
    };
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let named = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("connection="))
        .map(str::to_string);
    let (host, object) = rest.split_once('/').ok_or_else(|| usage(what, text))?;
    if host.is_empty() || object.is_empty() {
        return Err(usage(what, text));
    }
    match scheme {
        "postgres" | "mysql" if !is_table_name(object) => Err(StepError::user(format!(
            "{what}: \"{object}\" is not a table name (letters, digits and _, optionally schema.table)"
        ))),
        "postgres" | "mysql" | "kafka" => Ok(Endpoint {
            system: scheme.into(),
            connection: Some(host.into()),
            object: object.into(),
            bucket: None,
        }),
        "s3" => Ok(Endpoint {
            system: "s3".into(),
            connection: Some(named.unwrap_or_else(|| "lake".into())),
            object: text.split('?').next().unwrap_or(text).to_string(),
            bucket: Some(host.into()),
        }),
        _ => Err(usage(what, text)),
    }
}

/// `table` or `schema.table` of plain identifiers: the only names init writes into SQL.
fn is_table_name(s: &str) -> bool {
    let part = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match s.split_once('.') {
        Some((a, b)) => part(a) && part(b),
        None => part(s),
    }
}

/// A connection block pointing at Vault (plus an S3 bucket), never a secret.
fn connection_block(e: &Endpoint, mount: &str) -> Option<(String, Value)> {
    let name = e.connection.clone()?;
    let system = if e.system == "delta" {
        "s3"
    } else {
        e.system.as_str()
    };
    let mut block = json!({
        "system": system,
        "description": format!("Written by pipectl init; credentials at {mount}/pipectl/{name} in Vault."),
        "credentials": {"vault_path": format!("{mount}/pipectl/{name}")}
    });
    if let Some(b) = &e.bucket {
        block["bucket"] = json!(b);
    }
    Some((name, block))
}

/// The extract options reading all of the source.
fn extract_options(e: &Endpoint, types: &[(String, String)]) -> Value {
    match e.system.as_str() {
        "postgres" | "mysql" => json!({"table": e.object}),
        "kafka" => {
            let schema: Map<String, Value> = types
                .iter()
                .map(|(c, t)| (c.clone(), json!(kafka_type(t))))
                .collect();
            json!({"topics": [e.object], "schema": schema})
        }
        _ => json!({"path": e.object}),
    }
}

/// A Kafka JSON schema type for a column type.
fn kafka_type(t: &str) -> &'static str {
    match t {
        "int8" | "int16" | "int32" | "int64" | "uint8" | "uint16" | "uint32" | "uint64" => "int64",
        "float32" | "float64" => "float64",
        "bool" => "bool",
        "date" => "date",
        t if t.starts_with("datetime") => "datetime",
        _ => "string",
    }
}

/// The sample read: a bounded query for SQL tables, the source itself otherwise.
fn sample_options(e: &Endpoint) -> Value {
    match e.system.as_str() {
        "postgres" | "mysql" => json!({"query": format!("SELECT * FROM {} LIMIT 1000", e.object)}),
        "kafka" => json!({"topics": [e.object]}),
        _ => json!({"path": e.object}),
    }
}

/// The primary-key query of a SQL table, as a one-column result `key`.
fn key_query(e: &Endpoint) -> Option<String> {
    let table = e.object.replace('\'', "''");
    match e.system.as_str() {
        "postgres" => Some(format!(
            "SELECT a.attname::text AS key FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid \
             AND a.attnum = ANY(i.indkey) WHERE i.indrelid = '{table}'::regclass AND i.indisprimary"
        )),
        "mysql" => {
            let (schema, name) = match table.split_once('.') {
                Some((s, n)) => (format!("'{s}'"), n.to_string()),
                None => ("DATABASE()".to_string(), table.clone()),
            };
            Some(format!(
                "SELECT CAST(COLUMN_NAME AS CHAR) AS `key` FROM information_schema.KEY_COLUMN_USAGE \
                 WHERE TABLE_SCHEMA = {schema} AND TABLE_NAME = '{name}' AND CONSTRAINT_NAME = 'PRIMARY' \
                 ORDER BY ORDINAL_POSITION"
            ))
        }
        _ => None,
    }
}

/// A type name `cast`/`schema` accept, for a sampled column type.
fn type_name(t: &DataType) -> String {
    match t {
        DataType::Boolean => "bool".into(),
        DataType::Int8 => "int8".into(),
        DataType::Int16 => "int16".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int64 => "int64".into(),
        DataType::UInt8 => "uint8".into(),
        DataType::UInt16 => "uint16".into(),
        DataType::UInt32 => "uint32".into(),
        DataType::UInt64 => "uint64".into(),
        DataType::Float32 => "float32".into(),
        DataType::Float64 => "float64".into(),
        DataType::Date => "date".into(),
        DataType::Binary => "binary".into(),
        DataType::Datetime(unit, tz) => {
            let u = match unit {
                TimeUnit::Milliseconds => "ms",
                TimeUnit::Microseconds => "us",
                TimeUnit::Nanoseconds => "ns",
            };
            match tz {
                Some(z) => format!("datetime[{u}, {z}]"),
                None => format!("datetime[{u}]"),
            }
        }
        DataType::Decimal(p, s) => format!("decimal({p},{s})"),
        _ => "string".into(),
    }
}

/// Reads the sample (and the keys) through the real extract methods.
async fn sample(
    source: &Endpoint,
    connections: &Map<String, Value>,
    file: &Path,
    provider: Option<Arc<dyn CredentialProvider>>,
) -> Result<(DataFrame, Vec<String>), StepError> {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let (rows_key, keys_key) = (format!("init/{run}/rows"), format!("init/{run}/keys"));
    let connection = source
        .connection
        .clone()
        .map(Value::String)
        .unwrap_or(Value::Null);
    let mut steps = vec![
        json!({"name": "sample", "kind": "extract", "method": source.system, "connection": connection, "options": sample_options(source)}),
        json!({"name": "keep_sample", "kind": "load", "method": "capture", "options": {"key": rows_key}}),
    ];
    if let Some(q) = key_query(source) {
        steps.push(json!({"name": "keys", "kind": "extract", "method": source.system, "connection": connection, "options": {"query": q}}));
        steps.push(json!({"name": "keep_keys", "kind": "load", "method": "capture", "inputs": ["keys"], "options": {"key": keys_key}}));
    }
    for s in &mut steps {
        if s["connection"].is_null()
            && let Some(o) = s.as_object_mut()
        {
            o.remove("connection");
        }
    }
    let doc = json!({"name": "init_sample", "connections": connections, "steps": steps,
        "retry": {"max_retries": 0, "delay_seconds": 0}});
    let mut registry = Registry::standard();
    registry.register(MethodEntry::load(
        "capture",
        "keeps the sample",
        pipeline_data::ConnectionUse::None,
        crate::testing::capture_method,
    ));
    let pipeline = Pipeline::from_str_with(file, &doc.to_string(), Arc::new(registry))
        .map_err(|e| StepError::user(format!("the sampling pipeline does not check: {e}")))?;
    let options = RunOptions {
        credentials: provider,
        ..RunOptions::default()
    };
    if let Err(f) = pipeline.run(&options).await {
        let step = f.step.clone();
        return Err(f
            .error
            .context(format!("sampling the source (step \"{step}\")")));
    }
    let rows = take_captured(&rows_key).unwrap_or_default();
    let keys = take_captured(&keys_key)
        .and_then(|df| {
            df.column("key").ok().and_then(|c| {
                c.str()
                    .ok()
                    .map(|s| s.iter().flatten().map(str::to_string).collect())
            })
        })
        .unwrap_or_default();
    Ok((rows, keys))
}

/// Writes the starter pipeline (and its connection files), checked before it is written.
pub async fn init(
    req: &InitRequest,
    provider: Option<Arc<dyn CredentialProvider>>,
) -> Result<InitOutcome, StepError> {
    let file = req.dir.join(format!("{}.json", req.name));
    if file.exists() && !req.force {
        return Err(StepError::user(format!("{} exists", file.display()))
            .with_hint("choose another --name or --dir, or pass --force to replace it"));
    }
    std::fs::create_dir_all(&req.dir)
        .map_err(|e| StepError::user(format!("creating {}: {e}", req.dir.display())))?;
    let Some(from) = &req.from else {
        let mut doc: Value = serde_json::from_str(QUICKSTART)
            .map_err(|e| StepError::internal(format!("the embedded quickstart: {e}")))?;
        doc["name"] = json!(req.name);
        doc.as_object_mut().map(|o| o.remove("$schema"));
        doc["steps"][4]["options"]["path"] = json!(format!("out/{}", req.name));
        write_json(&file, &doc)?;
        check_written(&file)?;
        return Ok(InitOutcome {
            pipeline_file: file,
            connection_files: vec![],
            columns: vec![],
            keys: vec![],
        });
    };
    let source = parse_endpoint("--from", from)?;
    let to = req
        .to
        .clone()
        .unwrap_or_else(|| format!("delta:out/{}", req.name));
    let target = parse_endpoint("--to", &to)?;
    let mut inline = Map::new();
    for e in [&source, &target] {
        if let Some((name, block)) = connection_block(e, &req.vault_mount) {
            let existing = req.dir.join("connections").join(format!("{name}.json"));
            let block = match std::fs::read_to_string(&existing) {
                Ok(text) => serde_json::from_str(&text).unwrap_or(block),
                Err(_) => block,
            };
            inline.insert(name, block);
        }
    }
    let (rows, keys) = sample(&source, &inline, &file, provider).await?;
    if rows.width() == 0 {
        return Err(StepError::user(format!(
            "the source {from} gave no columns to build a pipeline from"
        )));
    }
    let columns: Vec<(String, String)> = rows
        .schema()
        .iter()
        .map(|(n, t)| (n.to_string(), type_name(t)))
        .collect();
    let keys = if keys.is_empty() {
        // Without a declared key: the first column named `id` or `*_id` with no null sampled.
        columns
            .iter()
            .map(|(c, _)| c)
            .find(|c| {
                (c.as_str() == "id" || c.ends_with("_id"))
                    && rows.column(c.as_str()).is_ok_and(|v| v.null_count() == 0)
            })
            .cloned()
            .into_iter()
            .collect()
    } else {
        keys
    };
    let mut connection_files = Vec::new();
    let mut refs = Map::new();
    for (name, block) in &inline {
        let path = req.dir.join("connections").join(format!("{name}.json"));
        if !path.exists() {
            std::fs::create_dir_all(req.dir.join("connections")).map_err(|e| {
                StepError::user(format!("creating {}/connections: {e}", req.dir.display()))
            })?;
            write_json(&path, block)?;
            connection_files.push(path);
        }
        refs.insert(
            name.clone(),
            json!({"$ref": format!("connections/{name}.json")}),
        );
    }
    let schema: Map<String, Value> = columns.iter().map(|(c, t)| (c.clone(), json!(t))).collect();
    let mut extract = json!({"name": "source", "kind": "extract", "method": source.system,
        "options": extract_options(&source, &columns)});
    if let Some(c) = &source.connection {
        extract["connection"] = json!(c);
    }
    let mut steps = vec![
        extract,
        json!({"name": "expected_columns", "kind": "validate", "method": "schema",
            "options": {"columns": schema}}),
    ];
    if !keys.is_empty() {
        steps.push(
            json!({"name": "keys_present", "kind": "validate", "method": "not_null",
            "options": {"columns": keys}}),
        );
    }
    let mut load = json!({"name": "to_target", "kind": "load", "method": target.system,
        "options": load_options(&target, &keys)});
    if let Some(c) = &target.connection {
        load["connection"] = json!(c);
    }
    steps.push(load);
    let doc = json!({
        "name": req.name,
        "description": format!("Starter pipeline written by pipectl init from {from} to {to}: check the columns and keys, then load."),
        "connections": refs,
        "retry": {"max_retries": 3, "delay_seconds": 5},
        "steps": steps,
    });
    write_json(&file, &doc)?;
    check_written(&file)?;
    Ok(InitOutcome {
        pipeline_file: file,
        connection_files,
        columns,
        keys,
    })
}

fn load_options(target: &Endpoint, keys: &[String]) -> Value {
    match target.system.as_str() {
        "delta" => json!({"path": target.object, "mode": "append"}),
        "postgres" | "mysql" if !keys.is_empty() => {
            json!({"table": target.object, "mode": "upsert", "key": keys, "create_table": true})
        }
        "postgres" | "mysql" => {
            json!({"table": target.object, "mode": "append", "create_table": true})
        }
        "kafka" => json!({"topic": target.object}),
        _ => json!({"path": target.object, "format": "parquet", "mode": "append"}),
    }
}

fn write_json(path: &Path, doc: &Value) -> Result<(), StepError> {
    let text = serde_json::to_string_pretty(doc)
        .map_err(|e| StepError::internal(format!("writing {}: {e}", path.display())))?;
    std::fs::write(path, format!("{text}\n"))
        .map_err(|e| StepError::user(format!("writing {}: {e}", path.display())))
}

/// The file written passes `validate`.
fn check_written(file: &Path) -> Result<(), StepError> {
    Pipeline::from_file(file, &[])
        .map(|_| ())
        .map_err(|e| StepError::internal(format!("the pipeline written does not validate:\n{e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_and_targets_are_parsed() {
        let e = parse_endpoint("--from", "postgres://shop/public.orders").unwrap();
        assert_eq!(
            (
                e.system.as_str(),
                e.connection.as_deref(),
                e.object.as_str()
            ),
            ("postgres", Some("shop"), "public.orders")
        );
        let e = parse_endpoint("--from", "s3://lake-bucket/raw/orders/?connection=files").unwrap();
        assert_eq!(e.connection.as_deref(), Some("files"));
        assert_eq!(e.bucket.as_deref(), Some("lake-bucket"));
        assert_eq!(e.object, "s3://lake-bucket/raw/orders/");
        let e = parse_endpoint("--to", "delta:out/t").unwrap();
        assert_eq!((e.system.as_str(), e.connection), ("delta", None));
        assert_eq!(
            parse_endpoint("--to", "delta:s3://b/t")
                .unwrap()
                .connection
                .as_deref(),
            Some("lake")
        );
        assert_eq!(
            parse_endpoint("--from", "data/orders.csv").unwrap().system,
            "s3"
        );
        let e = parse_endpoint("--from", "postgres://shop/t;DROP TABLE x").unwrap_err();
        assert!(
            e.message().contains("is not a table name"),
            "{}",
            e.message()
        );
        assert!(parse_endpoint("--from", "mysql://m/a.b.c").is_err());
        for bad in ["oracle://db/t", "postgres://shop", "postgres:///t"] {
            let err = parse_endpoint("--from", bad).unwrap_err();
            assert!(err.message().contains("is not understood"), "{bad}");
        }
        assert_eq!(
            type_name(&DataType::Datetime(TimeUnit::Microseconds, None)),
            "datetime[us]"
        );
        assert_eq!(kafka_type("datetime[us, UTC]"), "datetime");
        assert!(
            key_query(&parse_endpoint("--from", "mysql://m/shop.t").unwrap())
                .unwrap()
                .contains("TABLE_SCHEMA = 'shop'")
        );
        let (_, block) =
            connection_block(&parse_endpoint("--from", "s3://b/p").unwrap(), "kv").unwrap();
        assert_eq!(block["credentials"]["vault_path"], "kv/pipectl/lake");
        assert_eq!(block["system"], "s3");
    }
}
