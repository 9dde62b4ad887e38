//! Delta Lake: read a table (`ExtractMethods::delta`) and write one (`LoadMethods::delta`).
//!
//! Writes are atomic: data files are written while the run streams, and they become part of the
//! table in one commit when the whole run has succeeded. A failed run commits nothing and
//! deletes the files it wrote; readers never see a partial write. A table that does not exist
//! yet is created by that same single commit.

mod sink;
mod source;

use deltalake::DeltaTableError;
use pipeline_base::StepError;
use pipeline_credentials::DeltaConfig;
use pipeline_data::OptionsError;
use pipeline_data::method::MethodOptions;
use pipeline_data::{ConnectionSetup, StepSetup};
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::HashMap;
use url::Url;

pub use source::read_delta_table;

/// How a load treats an existing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeltaWriteMode {
    /// Add the rows to the table.
    #[default]
    Append,
    /// Replace the table's rows (in the same single commit).
    Overwrite,
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
    /// `append` (default) or `overwrite`.
    #[serde(default)]
    pub mode: DeltaWriteMode,
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
}

fn default_file_mb() -> u64 {
    8
}

impl MethodOptions for DeltaLoadOptions {
    fn check(&self) -> Result<(), OptionsError> {
        if self.schema_evolution == SchemaEvolution::Evolve
            && self.mode == DeltaWriteMode::Overwrite
        {
            return Err(OptionsError::new(
                "/schema_evolution",
                "\"evolve\" applies to appends; an overwrite replaces the schema anyway",
            )
            .with_hint("use \"mode\": \"append\", or drop \"schema_evolution\""));
        }
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
}

impl MethodOptions for DeltaExtractOptions {
    fn check(&self) -> Result<(), OptionsError> {
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

/// Storage options of the step's connection: its Vault fields, then its `storage_options`.
pub(crate) fn storage_options(setup: &StepSetup) -> Result<HashMap<String, String>, StepError> {
    match setup.connection_setup() {
        Ok(conn) => Ok(DeltaConfig::from_sources(conn.sources()).expose()),
        Err(_) => Ok(HashMap::new()),
    }
}

/// `validate --connect`: the connection's storage options are complete (a table path comes
/// with each step, so there is nothing to open yet).
pub(crate) async fn check(setup: ConnectionSetup) -> Result<String, StepError> {
    let options = DeltaConfig::from_sources(setup.sources());
    let keys: Vec<&str> = options.storage_options.keys().map(String::as_str).collect();
    Ok(format!(
        "Delta storage options ready ({})",
        if keys.is_empty() {
            "none".to_string()
        } else {
            keys.join(", ")
        }
    ))
}

/// Classifies a deltalake error.
pub(crate) fn delta_error(e: DeltaTableError, context: &str) -> StepError {
    let message = format!("{context}: {e}");
    match e {
        DeltaTableError::ObjectStore { .. }
        | DeltaTableError::Io { .. }
        | DeltaTableError::VersionAlreadyExists(_) => StepError::transient(message),
        DeltaTableError::Transaction { .. } => StepError::transient(message),
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
