//! `ExtractMethods::s3`: reads Parquet, Avro, CSV or JSON lines from one object, every data file
//! under a prefix, or the keys matching a glob; S3 or local. Hidden names (`_…`, `.…`, such as
//! `_SUCCESS` and pipectl's staging prefix) are skipped; hive-style `col=value` directories add
//! their columns (as strings).

use super::format::FileFormat;
use super::read::{FileReader, ReadSpec};
use super::store_error;
use super::target::{Location, locate};
use crate::ExtractMethods;
use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use pipeline_base::StepError;
use pipeline_data::method::MethodOptions;
use pipeline_data::polars::prelude::*;
use pipeline_data::{Batch, OptionsError, Source, StepSetup};
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::VecDeque;

/// Options of the `s3` extract.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3ExtractOptions {
    /// One object (`s3://b/k.parquet`), a prefix (`s3://b/dir/`), or a glob
    /// (`s3://b/dir/*/part-*.parquet`; `*` within a name, `**` across directories). Local paths
    /// and `file://` URLs work the same without a connection.
    pub path: String,
    /// `parquet`, `avro`, `csv` or `json` (lines); default: from the file names.
    #[serde(default)]
    pub format: Option<FileFormat>,
    /// Rows per batch handed to the next step (default 131072).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
}

fn default_batch_size() -> usize {
    131_072
}

impl MethodOptions for S3ExtractOptions {
    fn check(&self) -> Result<(), OptionsError> {
        if self.batch_size == 0 {
            return Err(OptionsError::new(
                "/batch_size",
                "batch_size must be at least 1",
            ));
        }
        Ok(())
    }
}

/// A glob over object keys: `*` matches within one path segment, `**` any number of segments,
/// `?` one character (globset: linear time, whatever the number of `**`).
fn glob(pattern: &str) -> Result<globset::GlobMatcher, StepError> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| {
            StepError::user(format!(
                "the path pattern \"{pattern}\" is not a valid glob: {e}"
            ))
            .with_hint("use * within a path segment, ** across segments, ? for one character")
        })
}

fn hidden(p: &Path, skip: usize) -> bool {
    p.parts()
        .skip(skip)
        .any(|s| s.as_ref().starts_with(['_', '.']))
}

/// The files a path names, sorted by key, and how many leading path parts form the listing
/// base (parts below it may be hive `col=value` directories).
async fn files(
    loc: &Location,
    path: &str,
    format: Option<FileFormat>,
) -> Result<(Vec<Path>, usize), StepError> {
    let key = loc.key.as_ref().to_string();
    let wildcard = key.find(['*', '?']);
    let base = match wildcard {
        Some(i) => Path::from(key[..i].rsplit_once('/').map(|(b, _)| b).unwrap_or("")),
        None => loc.key.clone(),
    };
    let skip = base.parts().count();
    // One object?
    if wildcard.is_none() && !loc.is_dir {
        match loc.store.head(&loc.key).await {
            Ok(_) => return Ok((vec![loc.key.clone()], skip)),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_error(e, &format!("reading {path}"))),
        }
    }
    let mut listed: Vec<Path> = loc
        .store
        .list(Some(&base))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .map_err(|e| store_error(e, &format!("listing {path}")))?;
    let matcher = wildcard.map(|_| glob(&key)).transpose()?;
    listed.retain(|p| {
        !hidden(p, skip)
            && matcher.as_ref().is_none_or(|m| m.is_match(p.as_ref()))
            && match format {
                Some(f) => FileFormat::from_name(p.as_ref()).is_none_or(|g| g == f),
                None => FileFormat::from_name(p.as_ref()).is_some(),
            }
    });
    listed.sort();
    if listed.is_empty() {
        return Err(
            StepError::user(format!("no data files at {path}")).with_hint(
                "check the path; a prefix must hold .parquet, .avro, .csv or .jsonl files",
            ),
        );
    }
    Ok((listed, skip))
}

/// `col=value` directories of a key, below the listing base.
fn hive_columns(p: &Path, skip: usize) -> Vec<(String, String)> {
    let parts: Vec<String> = p.parts().map(|s| s.as_ref().to_string()).collect();
    let n = parts.len().saturating_sub(1);
    parts
        .get(skip.min(n)..n)
        .unwrap_or_default()
        .iter()
        .filter_map(|s| {
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// Adds the hive `col=value` columns the file does not have itself.
fn with_hive(mut df: DataFrame, hive: &[(String, String)]) -> Result<DataFrame, StepError> {
    let n = df.height();
    for (k, v) in hive {
        if df.column(k).is_err() {
            df.with_column(Column::new_scalar(
                k.as_str().into(),
                Scalar::from(PlSmallStr::from(v.as_str())),
                n,
            ))
            .map_err(|e| StepError::internal(format!("adding partition column: {e}")))?;
        }
    }
    Ok(df)
}

/// A file being read, its name for messages, and its hive `col=value` columns.
type OpenFile = (FileReader, String, Vec<(String, String)>);

struct ObjectSource {
    loc: Location,
    files: VecDeque<Path>,
    skip: usize,
    format: Option<FileFormat>,
    batch_size: usize,
    /// The columns later steps read (`None`: all).
    columns: Option<Vec<String>>,
    /// The file being read.
    current: Option<OpenFile>,
}

#[async_trait]
impl Source for ObjectSource {
    async fn next_batch(&mut self) -> Result<Option<Batch>, StepError> {
        loop {
            if let Some((reader, what, hive)) = self.current.as_mut() {
                match reader.next(what).await? {
                    Some(df) => return with_hive(df, hive).map(|df| Some(Batch::Frame(df))),
                    None => self.current = None,
                }
            }
            let Some(file) = self.files.pop_front() else {
                return Ok(None);
            };
            let what = self.loc.display(&file);
            let format = self
                .format
                .or_else(|| FileFormat::from_name(file.as_ref()))
                .unwrap_or(FileFormat::Parquet);
            let hive = hive_columns(&file, self.skip);
            // Partition columns come from the path, not the file.
            let columns: Option<Vec<String>> = self.columns.as_ref().map(|c| {
                c.iter()
                    .filter(|n| !hive.iter().any(|(k, _)| k == *n))
                    .cloned()
                    .collect()
            });
            let spec = ReadSpec {
                format,
                batch_size: self.batch_size,
                columns: columns.as_deref(),
                what: &what,
            };
            let reader = FileReader::open(&self.loc, &file, spec).await?;
            self.current = Some((reader, what, hive));
        }
    }
}

impl ExtractMethods {
    /// Reads files from S3 (or a local directory).
    pub async fn s3(
        options: S3ExtractOptions,
        setup: StepSetup,
    ) -> Result<Box<dyn Source>, StepError> {
        let loc = locate(&setup, &options.path)?;
        let (list, skip) = files(&loc, &options.path, options.format)
            .await
            .map_err(|e| e.context(format!("step \"{}\"", setup.step)))?;
        tracing::debug!(step = %setup.step, files = list.len(), "files to read");
        Ok(Box::new(ObjectSource {
            loc,
            files: list.into(),
            skip,
            format: options.format,
            batch_size: options.batch_size,
            columns: setup.columns.clone(),
            current: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        let m = |p: &str, t: &str| glob(p).unwrap().is_match(t);
        assert!(m("a/*.parquet", "a/x.parquet"));
        assert!(!m("a/*.parquet", "a/b/x.parquet"));
        assert!(m("a/**/*.parquet", "a/b/c/x.parquet"));
        assert!(m("a/**/*.parquet", "a/x.parquet"));
        assert!(m("a/part-?.csv", "a/part-1.csv"));
        assert!(!m("a/part-?.csv", "a/part-/.csv"));
        // Many `**` once took exponential time with the hand-written matcher.
        let many = format!("{}x", "**/".repeat(40));
        let deep = format!("{}y", "d/".repeat(60));
        assert!(!m(&many, &deep));
        assert!(glob("a/[z-a").is_err());
    }
}
