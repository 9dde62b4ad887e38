//! Delta Lake, local or on S3: read a table (`ExtractMethods::delta`) and write one
//! (`LoadMethods::delta`); table hygiene (history, checkpoint, optimize, vacuum) in `maintenance`.
//!
//! Writes are atomic: data files are written while the run streams, and they become part of the
//! table in one commit when the whole run has succeeded. A failed run commits nothing and
//! deletes the files it wrote; readers never see a partial write. A table that does not exist
//! yet is created by that same single commit.

mod commit;
pub mod maintenance;
mod merge;
mod sink;
mod source;
mod store;
mod table;

use deltalake::DeltaTableError;
use pipeline_base::StepError;
use pipeline_data::OptionsError;
use pipeline_data::method::MethodOptions;
use pipeline_data::{ConnectionSetup, StepSetup};
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::HashMap;
use url::Url;

pub use source::{read_delta_location, read_delta_table};

/// How a load treats an existing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeltaWriteMode {
    /// Add the rows to the table.
    #[default]
    Append,
    /// Replace the table's rows (in the same single commit).
    Overwrite,
    /// Insert, or replace the row with the same `key`; within the load the last row of a key
    /// wins. Only the data files holding a matching key are rewritten.
    Upsert,
}

/// What a load does when the data's columns differ from the table's (the schema-evolution
/// contract every sink follows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SchemaEvolution {
    /// Fail on a new or a missing column (default).
    #[default]
    Freeze,
    /// Add new columns to the table; columns the data lacks are written as nulls (append only).
    Evolve,
    /// Drop columns the table does not have; a missing column still fails.
    Discard,
}

/// Options of the `delta` load.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeltaLoadOptions {
    /// Table location: a local directory (relative to the pipeline file) or a `file://` / `s3://` URL.
    pub path: String,
    /// `append` (default), `overwrite` or `upsert`.
    #[serde(default)]
    pub mode: DeltaWriteMode,
    /// Key columns for `upsert`.
    #[serde(default)]
    pub key: Vec<String>,
    /// Partition columns, used when the table is created.
    #[serde(default)]
    pub partition_by: Vec<String>,
    /// `freeze` (default), `evolve` or `discard`: what to do when the data's columns differ from
    /// the table's.
    #[serde(default)]
    pub schema_evolution: SchemaEvolution,
    /// Target size of a data file in MiB (default 8). The writer holds about one file in memory,
    /// so this bounds the load's memory; raise it for fewer, larger files.
    #[serde(default = "default_file_mb")]
    pub target_file_size_mb: u64,
    /// Write a checkpoint after every N-th table version (default 10; 0 = never), so readers
    /// and restarts replay at most N log entries.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// Compact small files after every N-th table version (default 0 = never): files under
    /// half the target size are rewritten into target-size files in a `dataChange: false`
    /// commit, safe beside concurrent appends.
    #[serde(default)]
    pub optimize_every: u64,
}

fn default_file_mb() -> u64 {
    8
}

/// Encoded bytes at which a data file's row group is closed. The Parquet writer holds its
/// open row group in memory (its default closes one only at 1M rows, some 100 MB of a wide
/// table), so this bounds a Delta load's memory whatever the rows' width.
const ROW_GROUP_BYTES: usize = 4 << 20;

/// How data files are encoded: Snappy (as deltalake does by default), row groups of at most
/// [`ROW_GROUP_BYTES`].
pub(crate) fn file_properties() -> parquet::file::properties::WriterProperties {
    parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
        .build()
}

fn default_checkpoint_every() -> u64 {
    10
}

/// A partition filter's accepted value(s): one value or a list; `null` matches a null partition.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PartitionValue {
    Many(Vec<serde_json::Value>),
    One(serde_json::Value),
}

impl PartitionValue {
    fn text(v: &serde_json::Value) -> Option<String> {
        match v {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    /// Whether a file's raw partition value passes.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let one = |v: &serde_json::Value| Self::text(v).as_deref() == value;
        match self {
            PartitionValue::One(v) => one(v),
            PartitionValue::Many(vs) => vs.iter().any(one),
        }
    }
}

impl MethodOptions for DeltaLoadOptions {
    fn check(&self) -> Result<(), OptionsError> {
        if self.schema_evolution == SchemaEvolution::Evolve && self.mode != DeltaWriteMode::Append {
            return Err(OptionsError::new(
                "/schema_evolution",
                "\"evolve\" applies to appends; an overwrite replaces the schema anyway, and an upsert keeps the table's",
            )
            .with_hint("use \"mode\": \"append\", or drop \"schema_evolution\""));
        }
        crate::sql::check_key(self.mode == DeltaWriteMode::Upsert, &self.key, "order_id")?;
        check_path(&self.path)
    }
}

/// Options of the `delta` extract.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeltaExtractOptions {
    /// Table location: a local directory (relative to the pipeline file) or a `file://` / `s3://` URL.
    pub path: String,
    /// Read this version instead of the latest.
    #[serde(default)]
    pub version: Option<u64>,
    /// Read the table as it was at this time (RFC 3339 or a date, UTC): the latest version
    /// committed then.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Read only these columns (default: all).
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Read only the files of these partitions: `{"country": "DE"}` or
    /// `{"country": ["DE", "FR"], "day": "2026-11-28"}`.
    #[serde(default)]
    pub partitions: std::collections::BTreeMap<String, PartitionValue>,
}

impl MethodOptions for DeltaExtractOptions {
    fn check(&self) -> Result<(), OptionsError> {
        if self.version.is_some() && self.timestamp.is_some() {
            return Err(OptionsError::new(
                "/timestamp",
                "\"version\" and \"timestamp\" both given; a read is at one of them",
            ));
        }
        if let Some(t) = &self.timestamp
            && table::parse_timestamp(t).is_none()
        {
            return Err(
                OptionsError::new("/timestamp", format!("cannot read \"{t}\" as a time"))
                    .with_hint("use RFC 3339 (2026-11-28T10:00:00Z) or a date (2026-11-28)"),
            );
        }
        if let Some(cols) = &self.columns {
            if cols.is_empty() {
                return Err(OptionsError::new("/columns", "the column list is empty")
                    .with_hint("drop \"columns\" to read every column"));
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(dup) = cols.iter().find(|c| !seen.insert(c.as_str())) {
                return Err(OptionsError::new(
                    "/columns",
                    format!("\"{dup}\" is listed twice"),
                ));
            }
        }
        for (k, v) in &self.partitions {
            let bad = |x: &serde_json::Value| x.is_object() || x.is_array();
            let nested = match v {
                PartitionValue::One(x) => bad(x),
                PartitionValue::Many(xs) => xs.iter().any(bad) || xs.is_empty(),
            };
            if nested {
                return Err(OptionsError::new(
                    format!("/partitions/{k}"),
                    "a partition filter is a value or a non-empty list of values",
                ));
            }
        }
        check_path(&self.path)
    }
}

fn check_path(path: &str) -> Result<(), OptionsError> {
    if path.trim().is_empty() {
        return Err(OptionsError::new("/path", "the table path is empty"));
    }
    if let Some((scheme, _)) = path.split_once("://")
        && !matches!(scheme, "file" | "s3" | "s3a")
    {
        return Err(
            OptionsError::new("/path", format!("unsupported scheme \"{scheme}://\""))
                .with_hint("use a local path, file://, or s3://"),
        );
    }
    Ok(())
}

/// The table URL for a path option; local paths are relative to the pipeline file.
pub(crate) fn table_url(setup: &StepSetup, path: &str, create: bool) -> Result<Url, StepError> {
    if path.contains("://") {
        return Url::parse(path)
            .map_err(|e| StepError::user(format!("invalid table URL \"{path}\": {e}")));
    }
    let local = setup.resolve_path(path);
    if create {
        std::fs::create_dir_all(&local).map_err(|e| {
            StepError::user(format!(
                "cannot create the table directory {}: {e}",
                local.display()
            ))
        })?;
    }
    let absolute = if local.exists() {
        local.canonicalize().unwrap_or(local)
    } else {
        local
    };
    Url::from_directory_path(&absolute)
        .map_err(|_| StepError::user(format!("invalid table path {}", absolute.display())))
}

pub(crate) use store::{connection_storage, storage_options};

/// `validate --connect` for a `delta` connection: the storage options are complete and safe,
/// and every Delta table a step names through it is opened (its version shown) or, when there
/// is no table yet, its location is reachable.
pub(crate) async fn check(setup: ConnectionSetup) -> Result<String, StepError> {
    let options = store::connection_storage(&setup)?;
    let mut keys: Vec<&str> = options.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut out = format!(
        "Delta storage options ready ({})",
        if keys.is_empty() {
            "none".to_string()
        } else {
            keys.join(", ")
        }
    );
    for line in check_tables(&setup, &options).await? {
        out.push_str("; ");
        out.push_str(&line);
    }
    Ok(out)
}

/// Opens the table of every `delta` step using the connection: one line each.
pub(crate) async fn check_tables(
    setup: &ConnectionSetup,
    options: &HashMap<String, String>,
) -> Result<Vec<String>, StepError> {
    let mut lines = Vec::new();
    for u in setup.uses.iter().filter(|u| u.method == "delta") {
        let Some(path) = u.options.get("path").and_then(serde_json::Value::as_str) else {
            continue;
        };
        let at = |e: StepError| e.context(format!("step \"{}\"", u.step));
        let url = location_url(&setup.base_dir, path).map_err(at)?;
        match table::open_if_exists(&url, options.clone())
            .await
            .map_err(at)?
        {
            Some(t) => lines.push(format!(
                "table {path} at version {}",
                t.version().unwrap_or_default()
            )),
            None => {
                probe_location(&url, options).await.map_err(at)?;
                lines.push(format!("{path}: no table yet, location writable"));
            }
        }
    }
    Ok(lines)
}

/// A location without a table: its store answers a listing (S3), or its parent exists (local).
async fn probe_location(url: &Url, options: &HashMap<String, String>) -> Result<(), StepError> {
    if url.scheme() == "file" {
        let dir = url
            .to_file_path()
            .map_err(|_| StepError::user(format!("invalid table path {url}")))?;
        return match dir.ancestors().find(|p| p.exists()) {
            Some(p) if p.is_dir() => Ok(()),
            _ => Err(StepError::user(format!(
                "cannot create a table at {}",
                dir.display()
            ))),
        };
    }
    let log = table::builder(url, options.clone())?
        .build_storage()
        .map_err(|e| delta_error(e, &format!("opening {url}")))?;
    use futures::TryStreamExt;
    let store = log.object_store(None);
    let mut listing = store.list(None);
    listing
        .try_next()
        .await
        .map_err(|e| crate::s3::store_error(e, &format!("listing {url}")))?;
    Ok(())
}

/// A step's table location, relative to the pipeline file's directory (no directory created).
fn location_url(base_dir: &std::path::Path, path: &str) -> Result<Url, StepError> {
    if path.contains("://") {
        return Url::parse(path)
            .map_err(|e| StepError::user(format!("invalid table URL \"{path}\": {e}")));
    }
    let local = base_dir.join(path);
    Url::from_directory_path(&local)
        .map_err(|_| StepError::user(format!("invalid table path {}", local.display())))
}

/// Classifies a deltalake error.
pub(crate) fn delta_error(e: DeltaTableError, context: &str) -> StepError {
    let message = format!("{context}: {e}");
    use deltalake::kernel::transaction::TransactionError as T;
    match e {
        // The store's own errors keep their class (network and 5xx retried; denied, missing
        // bucket and the like not).
        DeltaTableError::ObjectStore { source } => crate::s3::store_error(source, context),
        DeltaTableError::Transaction {
            source: T::ObjectStore { source },
        } => crate::s3::store_error(source, context),
        DeltaTableError::Io { .. } | DeltaTableError::VersionAlreadyExists(_) => {
            StepError::transient(message)
        }
        // A lost race or a conflict: another attempt reads the new table state.
        DeltaTableError::Transaction {
            source: T::VersionAlreadyExists(_) | T::MaxCommitAttempts(_) | T::CommitConflict(_),
        } => StepError::transient(message),
        DeltaTableError::Transaction { .. } => StepError::external(message).with_hint(
            "the table refuses this commit (append-only, or a feature pipectl does not support)",
        ),
        DeltaTableError::SchemaMismatch { .. }
        | DeltaTableError::Arrow { .. }
        | DeltaTableError::InvalidData { .. } => StepError::user(message)
            .with_hint("the data's columns or types do not match the table's schema"),
        DeltaTableError::NotATable(_) | DeltaTableError::InvalidTableLocation(_) => {
            StepError::user(message)
        }
        _ => StepError::external(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(r#"{"path": ""}"#, Some("the table path is empty"))]
    #[case(r#"{"path": "gs://b/t"}"#, Some("unsupported scheme \"gs://\""))]
    #[case(r#"{"path": "s3://b/t"}"#, None)]
    #[case(
        r#"{"path": "../out/t", "mode": "overwrite", "schema_evolution": "evolve"}"#,
        Some("applies to appends")
    )]
    #[case(
        r#"{"path": "file:///tmp/t", "mode": "append", "schema_evolution": "evolve"}"#,
        None
    )]
    #[case(
        r#"{"path": "t", "mode": "upsert", "key": ["id"], "schema_evolution": "evolve"}"#,
        Some("applies to appends")
    )]
    fn load_options_are_checked(#[case] json: &str, #[case] error: Option<&str>) {
        let o: DeltaLoadOptions = serde_json::from_str(json).unwrap();
        match (o.check(), error) {
            (Ok(()), None) => {}
            (Err(e), Some(want)) => assert!(e.message.contains(want), "{json}: {}", e.message),
            (got, want) => panic!("{json}: {got:?}, expected {want:?}"),
        }
        let x: Result<DeltaExtractOptions, _> = serde_json::from_str(json);
        if let Ok(x) = x {
            assert_eq!(x.check().is_ok(), check_path(&x.path).is_ok());
        }
    }

    #[test]
    fn errors_are_classed_by_what_a_retry_can_fix() {
        let cases = [
            (DeltaTableError::VersionAlreadyExists(3), true),
            (DeltaTableError::NotATable("t".into()), false),
            (DeltaTableError::InvalidTableLocation("x".into()), false),
            (DeltaTableError::Generic("boom".into()), false),
        ];
        for (e, retryable) in cases {
            let s = delta_error(e, "writing t");
            assert_eq!(s.retryable(), retryable, "{}", s.message());
            assert!(s.message().starts_with("writing t: "));
        }
        let e = delta_error(
            DeltaTableError::SchemaMismatch { msg: "x".into() },
            "writing t",
        );
        assert_eq!(e.class(), pipeline_base::ErrorClass::User);
        assert!(e.hint().unwrap_or_default().contains("schema"));
    }

    #[rstest]
    #[case(
        r#"{"path": "t", "version": 1, "timestamp": "2026-01-01"}"#,
        Some("both given")
    )]
    #[case(r#"{"path": "t", "timestamp": "last week"}"#, Some("cannot read"))]
    #[case(r#"{"path": "t", "timestamp": "2026-11-28T10:00:00Z"}"#, None)]
    #[case(r#"{"path": "t", "columns": []}"#, Some("the column list is empty"))]
    #[case(
        r#"{"path": "t", "columns": ["a", "b", "a"]}"#,
        Some("\"a\" is listed twice")
    )]
    #[case(r#"{"path": "t", "columns": ["a", "b"]}"#, None)]
    #[case(
        r#"{"path": "t", "partitions": {"c": {"x": 1}}}"#,
        Some("a value or a non-empty list")
    )]
    #[case(
        r#"{"path": "t", "partitions": {"c": []}}"#,
        Some("a value or a non-empty list")
    )]
    #[case(
        r#"{"path": "t", "partitions": {"c": [[1]]}}"#,
        Some("a value or a non-empty list")
    )]
    #[case(r#"{"path": "t", "partitions": {"c": ["DE", null, 3]}}"#, None)]
    #[case(r#"{"path": "ftp://x/t"}"#, Some("unsupported scheme"))]
    fn extract_options_are_checked(#[case] json: &str, #[case] error: Option<&str>) {
        let o: DeltaExtractOptions = serde_json::from_str(json).unwrap();
        match (o.check(), error) {
            (Ok(()), None) => {}
            (Err(e), Some(want)) => assert!(e.message.contains(want), "{json}: {}", e.message),
            (got, want) => panic!("{json}: {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn partition_filters_match_raw_partition_values() {
        let one: PartitionValue = serde_json::from_str(r#""DE""#).unwrap();
        assert!(one.matches(Some("DE")) && !one.matches(Some("FR")) && !one.matches(None));
        let many: PartitionValue = serde_json::from_str(r#"[1, null, true]"#).unwrap();
        assert!(many.matches(Some("1")) && many.matches(None) && many.matches(Some("true")));
        assert!(!many.matches(Some("2")));
        let upsert: DeltaLoadOptions =
            serde_json::from_str(r#"{"path": "t", "mode": "upsert"}"#).unwrap();
        assert!(upsert.check().unwrap_err().message.contains("key"));
        let keyed: DeltaLoadOptions =
            serde_json::from_str(r#"{"path": "t", "mode": "upsert", "key": ["id"]}"#).unwrap();
        assert!(keyed.check().is_ok());
        assert_eq!(keyed.checkpoint_every, 10);
        assert_eq!(keyed.optimize_every, 0);
    }

    /// `validate --connect` for a delta connection: each local step's table is opened (its
    /// version), a missing table's location checked; unsafe options fail the check.
    #[tokio::test]
    async fn connection_checks_open_each_steps_table() {
        let dir = tempfile::tempdir().unwrap();
        let config: pipeline_config::ConnectionConfig =
            serde_json::from_value(serde_json::json!({"system": "delta"})).unwrap();
        let uses = |path: &str| pipeline_data::StepUse {
            step: "to_lake".into(),
            method: "delta".into(),
            options: serde_json::json!({"path": path}),
        };
        let mut setup = ConnectionSetup {
            name: "lake".into(),
            config: config.clone(),
            credentials: None,
            base_dir: dir.path().to_path_buf(),
            uses: vec![
                uses("new_table"),
                pipeline_data::StepUse {
                    step: "other".into(),
                    method: "s3".into(),
                    options: serde_json::json!({"path": "x"}),
                },
            ],
        };
        let ok = check(setup.clone()).await.unwrap();
        assert!(ok.contains("Delta storage options ready (none)"), "{ok}");
        assert!(
            ok.contains("new_table: no table yet, location writable"),
            "{ok}"
        );
        // A table that exists reports its version.
        let s = pipeline_data::StepSetup::bare("p", "to_lake", dir.path().to_path_buf());
        let mut sink = crate::LoadMethods::delta(
            serde_json::from_value(serde_json::json!({"path": "made"})).unwrap(),
            s,
        )
        .await
        .unwrap();
        let gen_options: crate::GenerateOptions =
            serde_json::from_value(serde_json::json!({"rows": 10})).unwrap();
        sink.write(crate::generate_frame(&gen_options, 0, 10).unwrap())
            .await
            .unwrap();
        sink.prepare().await.unwrap();
        sink.commit().await.unwrap();
        setup.uses = vec![uses("made")];
        let ok = check(setup.clone()).await.unwrap();
        assert!(ok.contains("table made at version 0"), "{ok}");
        // A local location under a file cannot hold a table.
        std::fs::write(dir.path().join("plain"), b"x").unwrap();
        setup.uses = vec![uses("plain/t")];
        let e = check(setup.clone()).await.unwrap_err();
        assert!(
            e.message().contains("cannot create a table"),
            "{}",
            e.message()
        );
        assert!(
            e.full_message().contains("step \"to_lake\""),
            "{}",
            e.full_message()
        );
        // Unsafe storage options fail the check itself.
        let mut unsafe_config = config;
        unsafe_config.settings.insert(
            "storage_options".into(),
            serde_json::json!({"aws_s3_allow_unsafe_rename": "true"}),
        );
        setup.config = unsafe_config;
        assert!(check(setup).await.is_err());
        assert!(location_url(dir.path(), "s3://[bad").is_err());
    }

    #[test]
    fn local_paths_become_directory_urls() {
        let dir = tempfile::tempdir().unwrap();
        let setup = pipeline_data::StepSetup::bare("p", "s", dir.path().to_path_buf());
        let url = table_url(&setup, "lake/orders", true).unwrap();
        assert!(url.as_str().starts_with("file://") && url.as_str().ends_with("/lake/orders/"));
        assert!(dir.path().join("lake/orders").is_dir());
        assert_eq!(
            table_url(&setup, "s3://b/t", false).unwrap().as_str(),
            "s3://b/t"
        );
        assert!(table_url(&setup, "s3://[bad", false).is_err());
        assert!(storage_options(&setup).unwrap().is_empty());
    }
}
