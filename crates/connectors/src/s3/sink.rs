//! `LoadMethods::s3`: writes Parquet, Avro, CSV or JSON lines to S3 (or a local directory), one
//! object or a dataset directory with optional hive-style partitions.
//!
//! Publishing: every file is a multipart upload to its final key whose parts stream while the
//! run writes, but which is completed only when the whole run has succeeded. An incomplete
//! upload is invisible (S3 lists and serves only completed objects; the local store writes to
//! a temporary file and renames it), so readers see nothing of a run before its commit. At
//! commit each file's upload is completed (a cheap request, no copy), the files an `overwrite`
//! replaces are deleted, and `PREFIX/_SUCCESS` (naming the run's files) is written last. A
//! failed run aborts its uploads and leaves the destination untouched. File names carry the
//! run id and step (`part-RUN_ID-STEP-00001.parquet`), so concurrent runs appending to one
//! prefix never collide; the commit writes `PREFIX/_pipectl/RUN_ID.STEP.json` before
//! `_SUCCESS`, so a run resumed with the same id (`--resume`) finds it and writes nothing, and
//! a resumed run replaces any file of its own an interrupted commit left without a marker.
//! In a stream, each micro-batch is published the same way and recorded by a manifest
//! (`stream.rs`).

mod stream;

use super::format::{FileFormat, FileWriter, ParquetCompression};
use super::store_error;
use super::target::{Location, locate};
use super::upload::DeferredUpload;
use crate::LoadMethods;
use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use pipeline_base::StepError;
use pipeline_data::method::MethodOptions;
use pipeline_data::polars::prelude::*;
use pipeline_data::stream::StreamOffsets;
use pipeline_data::{CommitOutcome, Metrics, OptionsError, Sink, StepSetup};
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// How a load treats files already at the destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ObjectWriteMode {
    /// Add files next to the existing ones (a single-object path is replaced).
    #[default]
    Append,
    /// Replace every data file under the prefix when the run publishes.
    Overwrite,
}

/// Options of the `s3` load.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3LoadOptions {
    /// `s3://bucket/prefix/` (a dataset directory), `s3://bucket/key.parquet` (one object), or a
    /// local path / `file://` URL (no connection needed).
    pub path: String,
    /// `parquet`, `avro`, `csv` or `json` (lines); default: the object's extension, else parquet.
    #[serde(default)]
    pub format: Option<FileFormat>,
    /// `append` (default) or `overwrite`.
    #[serde(default)]
    pub mode: ObjectWriteMode,
    /// Columns to partition by: files go to `col=value/` directories (hive style).
    #[serde(default)]
    pub partition_by: Vec<String>,
    /// Start a new file when one reaches this size in MiB (default 128).
    #[serde(default = "default_file_mb")]
    pub target_file_size_mb: u64,
    /// Parquet compression: `zstd` (default, level 1), `snappy` or `uncompressed`.
    #[serde(default)]
    pub compression: ParquetCompression,
}

fn default_file_mb() -> u64 {
    128
}

impl MethodOptions for S3LoadOptions {
    fn check(&self) -> Result<(), OptionsError> {
        if self.path.trim().is_empty() {
            return Err(OptionsError::new("/path", "path must not be empty"));
        }
        if single_object(&self.path) && !self.partition_by.is_empty() {
            return Err(OptionsError::new(
                "/partition_by",
                "partition_by needs a dataset directory, not a single object",
            )
            .with_hint("end the path with \"/\""));
        }
        if self.target_file_size_mb == 0 {
            return Err(OptionsError::new(
                "/target_file_size_mb",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Whether a path names one object (`.../name.parquet`) rather than a directory.
pub(crate) fn single_object(path: &str) -> bool {
    !path.ends_with('/')
        && path
            .rsplit('/')
            .next()
            .and_then(FileFormat::from_name)
            .is_some()
}

struct OpenFile {
    writer: FileWriter,
    published: Path,
}

/// A finished file waiting for the commit.
struct Staged {
    upload: DeferredUpload,
    published: Path,
}

pub(super) struct ObjectSink {
    step: String,
    loc: Location,
    format: FileFormat,
    options: S3LoadOptions,
    run_id: String,
    /// `part-RUN_ID-STEP-`: the start of every file name this load writes.
    stem: String,
    /// The run resumes an earlier one.
    resumed: bool,
    /// An earlier run with this id committed this load (its marker exists): write nothing.
    already: bool,
    /// The directory of the data (the parent of a single object).
    dir: Path,
    single: Option<String>,
    open: BTreeMap<String, OpenFile>,
    staged: Vec<Staged>,
    /// Files made visible by a commit that then failed (removed by `abort`).
    completed: Vec<Path>,
    seq: u64,
    rows: u64,
    bytes: u64,
    files: u64,
    /// A multipart upload started in this run, so the bucket existed.
    bucket_seen: bool,
    /// In a stream: the cursor and the load's committed micro-batches.
    stream: Option<stream::StreamState>,
}

/// `col=value` directory names for a partition's key values.
fn partition_dir(df: &DataFrame, cols: &[String]) -> Result<String, StepError> {
    let mut parts = Vec::with_capacity(cols.len());
    for c in cols {
        let column = df
            .column(c)
            .map_err(|_| StepError::user(format!("partition column \"{c}\" is not in the data")))?;
        let value = column
            .get(0)
            .map_err(|e| StepError::internal(format!("reading partition key {c}: {e}")))?;
        let text = match value {
            AnyValue::Null => "__HIVE_DEFAULT_PARTITION__".to_string(),
            AnyValue::String(s) => s.to_string(),
            other => other.to_string(),
        };
        let escaped: String = text
            .chars()
            .map(|ch| match ch {
                '/' | '\\' | '=' | '%' | '"' | '#' | '?' | ':' | '*' => {
                    format!("%{:02X}", ch as u32)
                }
                _ => ch.to_string(),
            })
            .collect();
        parts.push(format!("{c}={escaped}"));
    }
    Ok(parts.join("/"))
}

fn child(base: &Path, rel: &str) -> Path {
    rel.split('/')
        .filter(|s| !s.is_empty())
        .fold(base.clone(), |p, s| p.join(s))
}

impl ObjectSink {
    /// `PREFIX/_pipectl/RUN_ID.STEP.json`: written by the commit, naming the run's files.
    fn marker(&self) -> Path {
        self.dir.clone().join("_pipectl").join(format!(
            "{}.{}.json",
            self.run_id,
            key_safe(&self.step)
        ))
    }

    fn what(&self, key: &Path) -> String {
        format!("step \"{}\": writing {}", self.step, self.loc.display(key))
    }

    async fn write_part(&mut self, dir: String, df: DataFrame) -> Result<(), StepError> {
        if !self.open.contains_key(&dir) {
            self.seq = self.seq.saturating_add(1);
            let name = match &self.single {
                Some(name) => name.clone(),
                None => format!("{}{:05}.{}", self.stem, self.seq, self.format.extension()),
            };
            let rel = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            let published = child(&self.dir, &rel);
            let writer = FileWriter::open(
                &self.loc.store,
                &published,
                self.format,
                self.options.compression,
                &df,
                &self.what(&published),
            )
            .await?;
            // The multipart upload started: the bucket exists.
            self.bucket_seen = true;
            self.open
                .insert(dir.clone(), OpenFile { writer, published });
        }
        let what = match self.open.get(&dir) {
            Some(f) => self.what(&f.published),
            None => return Err(StepError::internal("file vanished")),
        };
        let file = self
            .open
            .get_mut(&dir)
            .ok_or_else(|| StepError::internal("file vanished"))?;
        file.writer.write(&df, &what).await?;
        let full = file.writer.size() as u64 >= self.options.target_file_size_mb << 20;
        if full && self.single.is_none() {
            self.close(&dir).await?;
        }
        Ok(())
    }

    /// Writes one frame (into its partition directories).
    async fn write_frame(&mut self, df: DataFrame) -> Result<(), StepError> {
        if df.height() == 0 {
            return Ok(());
        }
        self.rows = self.rows.saturating_add(df.height() as u64);
        if self.options.partition_by.is_empty() {
            return self.write_part(String::new(), df).await;
        }
        let cols = self.options.partition_by.clone();
        for c in &cols {
            if df.column(c).is_err() {
                return Err(StepError::user(format!(
                    "step \"{}\": partition column \"{c}\" is not in the data",
                    self.step
                )));
            }
        }
        let parts = df
            .partition_by_stable(cols.iter().map(String::as_str), true)
            .map_err(|e| StepError::internal(format!("partitioning: {e}")))?;
        for part in parts {
            let dir = partition_dir(&part, &cols)?;
            let data = part.drop_many(cols.iter().map(String::as_str));
            self.write_part(dir, data).await?;
        }
        Ok(())
    }

    /// A bucket that answered earlier in this run and is gone now was lost by the server (or
    /// deleted meanwhile): worth one more attempt, unlike a bucket that never existed.
    fn vanished(&self, e: StepError) -> StepError {
        if self.bucket_seen
            && e.class() == pipeline_base::ErrorClass::User
            && e.message().contains("the bucket does not exist")
        {
            return StepError::transient(format!(
                "{} (it existed earlier in this run)",
                e.message()
            ));
        }
        e
    }

    /// Completes the staged uploads: their files appear.
    async fn publish_staged(&mut self) -> Result<(), StepError> {
        while let Some(s) = self.staged.pop() {
            let published = s.published.clone();
            if let Err(e) = s.upload.complete().await {
                return Err(store_error(
                    e,
                    &format!(
                        "step \"{}\": publishing {}",
                        self.step,
                        self.loc.display(&published)
                    ),
                ));
            }
            self.completed.push(published);
        }
        Ok(())
    }

    async fn close(&mut self, dir: &str) -> Result<(), StepError> {
        if let Some(file) = self.open.remove(dir) {
            let what = self.what(&file.published);
            let (upload, bytes) = file.writer.close(&what).await?;
            self.bytes = self.bytes.saturating_add(bytes);
            self.files = self.files.saturating_add(1);
            self.staged.push(Staged {
                upload,
                published: file.published,
            });
        }
        Ok(())
    }
}

/// Data files under `dir` (hidden `_`/`.` names skipped).
async fn existing_files(
    store: Arc<dyn ObjectStore>,
    dir: &Path,
    shown: String,
) -> Result<Vec<Path>, StepError> {
    let listed: Vec<_> = store
        .list(Some(dir))
        .try_collect()
        .await
        .map_err(|e| store_error(e, &format!("listing {shown}")))?;
    let prefix_parts = dir.parts().count();
    Ok(listed
        .into_iter()
        .map(|m| m.location)
        .filter(|p| {
            !p.parts()
                .skip(prefix_parts)
                .any(|s| s.as_ref().starts_with(['_', '.']))
        })
        .collect())
}

/// Deletes every path (a missing one is fine); returns the first failure with the number of
/// paths that could not be deleted.
async fn delete_all(
    store: Arc<dyn ObjectStore>,
    paths: Vec<Path>,
    step: String,
) -> Result<(), (usize, object_store::Error)> {
    let mut first: Option<object_store::Error> = None;
    let mut failed = 0usize;
    for p in paths {
        match store.delete(&p).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(step = %step, path = %p, error = %e, "could not delete");
                failed = failed.saturating_add(1);
                first.get_or_insert(e);
            }
        }
    }
    match first {
        Some(e) => Err((failed, e)),
        None => Ok(()),
    }
}

#[async_trait]
impl Sink for ObjectSink {
    async fn write(&mut self, df: DataFrame) -> Result<(), StepError> {
        if self.already {
            return Ok(());
        }
        let result = self.write_frame(df).await;
        result.map_err(|e| self.vanished(e))
    }

    async fn prepare(&mut self) -> Result<(), StepError> {
        let dirs: Vec<String> = self.open.keys().cloned().collect();
        for d in dirs {
            let result = self.close(&d).await;
            result.map_err(|e| self.vanished(e))?;
        }
        Ok(())
    }

    async fn commit(&mut self) -> Result<CommitOutcome, StepError> {
        if self.stream.is_some() {
            let already = self.already;
            self.commit_stream().await?;
            return Ok(if already {
                CommitOutcome::AlreadyPublished
            } else {
                CommitOutcome::Published
            });
        }
        if self.already {
            return Ok(CommitOutcome::AlreadyPublished);
        }
        let started = std::time::Instant::now();
        let store = self.loc.store.clone();
        let replaced = if self.single.is_some() {
            Vec::new()
        } else if self.options.mode == ObjectWriteMode::Overwrite {
            // Every data file, and the markers of the runs whose files these were.
            let markers = self.dir.clone().join("_pipectl");
            let mut old =
                existing_files(store.clone(), &self.dir, self.loc.display(&self.dir)).await?;
            let listed: Vec<_> = store
                .list(Some(&markers))
                .try_collect()
                .await
                .map_err(|e| store_error(e, &format!("listing {}", self.loc.display(&markers))))?;
            old.extend(listed.into_iter().map(|m| m.location));
            old
        } else if self.resumed {
            // Files the resumed run published before it failed without its marker (a crash
            // inside the commit): replaced by this run's files, never left beside them.
            let stem = self.stem.clone();
            existing_files(store.clone(), &self.dir, self.loc.display(&self.dir))
                .await?
                .into_iter()
                .filter(|p| p.filename().is_some_and(|f| f.starts_with(&stem)))
                .collect()
        } else {
            Vec::new()
        };
        self.publish_staged().await?;
        let completed_ms = started.elapsed().as_millis() as u64;
        let new: std::collections::HashSet<&Path> = self.completed.iter().collect();
        let old: Vec<Path> = replaced.into_iter().filter(|p| !new.contains(p)).collect();
        if let Err((failed, e)) = delete_all(store.clone(), old, self.step.clone()).await {
            // The new files are published; the old ones beside them would be read as part of
            // the dataset. Not retried: a rerun of the overwrite replaces both.
            return Err(StepError::external(format!(
                "step \"{}\": the overwrite published its files under {} but could not delete {failed} of the files it replaces, so the prefix holds old and new files side by side: {e}",
                self.step,
                self.loc.display(&self.dir)
            ))
            .with_hint("check the credentials' delete permission, then run the pipeline again (the overwrite replaces everything)"));
        }
        if self.single.is_none() {
            let mut files: Vec<String> =
                self.completed.iter().map(|p| self.loc.display(p)).collect();
            files.sort();
            let manifest = serde_json::json!({
                "run_id": self.run_id,
                "format": self.format.extension(),
                "rows": self.rows,
                "files": files,
            });
            let bytes = manifest.to_string().into_bytes();
            // The run's own marker first (a resumed run looks for it), then `_SUCCESS`.
            for marker in [self.marker(), self.dir.clone().join("_SUCCESS")] {
                store
                    .put(&marker, bytes.clone().into())
                    .await
                    .map_err(|e| {
                        store_error(e, &format!("writing {}", self.loc.display(&marker)))
                    })?;
            }
        }
        tracing::info!(step = %self.step, files = self.completed.len(), rows = self.rows, bytes = self.bytes, to = %self.loc.display(&self.dir), completed_ms, elapsed_ms = started.elapsed().as_millis() as u64, "published");
        self.completed.clear();
        Ok(CommitOutcome::Published)
    }

    async fn abort(&mut self) {
        for (_, file) in std::mem::take(&mut self.open) {
            file.writer.abort().await;
        }
        for s in std::mem::take(&mut self.staged) {
            s.upload.abort().await;
        }
        let completed = std::mem::take(&mut self.completed);
        // Best effort: each failure is logged.
        let _ = delete_all(self.loc.store.clone(), completed, self.step.clone()).await;
    }

    async fn stream_offsets(&mut self) -> Result<Option<StreamOffsets>, StepError> {
        Ok(self.stream_offsets_known())
    }

    fn metrics(&self) -> Metrics {
        vec![("files_written", self.files), ("bytes_written", self.bytes)]
    }
}

/// A step name as a piece of an object key: letters, digits, `-` and `_` kept, anything else `_`.
fn key_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl LoadMethods {
    /// Writes files to S3 (or a local directory), published when the run succeeds.
    pub async fn s3(options: S3LoadOptions, setup: StepSetup) -> Result<Box<dyn Sink>, StepError> {
        let loc = locate(&setup, &options.path)?;
        Ok(Box::new(open_sink(options, &setup, loc).await?))
    }
}

/// The sink for a located path (tests hand it a store of their own).
pub(super) async fn open_sink(
    options: S3LoadOptions,
    setup: &StepSetup,
    loc: Location,
) -> Result<ObjectSink, StepError> {
    {
        let single = single_object(&options.path);
        let (dir, name) = if single {
            let mut parts: Vec<String> = loc.key.parts().map(|p| p.as_ref().to_string()).collect();
            let name = parts.pop().unwrap_or_default();
            (Path::from_iter(parts), Some(name))
        } else {
            (loc.key.clone(), None)
        };
        let format = options
            .format
            .or_else(|| name.as_deref().and_then(FileFormat::from_name))
            .unwrap_or(FileFormat::Parquet);
        let mut sink = ObjectSink {
            step: setup.step.clone(),
            stem: format!("part-{}-{}-", setup.run_id, key_safe(&setup.step)),
            resumed: setup.resumed,
            already: false,
            loc,
            format,
            options,
            run_id: setup.run_id.clone(),
            dir,
            single: name,
            open: BTreeMap::new(),
            staged: Vec::new(),
            completed: Vec::new(),
            seq: 0,
            rows: 0,
            bytes: 0,
            files: 0,
            bucket_seen: false,
            stream: None,
        };
        if let Some(cursor) = setup.stream.clone() {
            sink.attach_stream(cursor).await?;
            return Ok(sink);
        }
        if sink.resumed && sink.single.is_none() {
            let marker = sink.marker();
            match sink.loc.store.head(&marker).await {
                Ok(_) => {
                    tracing::info!(step = %sink.step, marker = %sink.loc.display(&marker), "this load committed in the run being resumed; not writing it again");
                    sink.already = true;
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    return Err(store_error(
                        e,
                        &format!(
                            "step \"{}\": looking for {}",
                            sink.step,
                            sink.loc.display(&marker)
                        ),
                    ));
                }
            }
        }
        Ok(sink)
    }
}
