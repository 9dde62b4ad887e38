//! Table hygiene, for `pipectl delta ...` and the load's options: the log's history, a
//! checkpoint, compaction of small files (a `dataChange: false` commit that concurrent appends
//! pass), and vacuum of unreferenced files past a retention (dry run unless told otherwise).

use super::commit::version_of;
use super::sink::conform;
use super::source::{DataFile, read_files, table_files};
use super::table::{TableAt, open_table, summarize};
use super::{SchemaEvolution, delta_error};
use crate::arrow_bridge::frame_to_arrow;
pub use deltalake::DeltaTable;
use deltalake::kernel::Action;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::operations::vacuum::VacuumMode;
use deltalake::protocol::DeltaOperation;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use pipeline_base::StepError;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use url::Url;

/// The shortest retention `vacuum` accepts without `force` (Delta's own default: 7 days).
pub const MIN_RETENTION_HOURS: u64 = 168;

/// The longest retention accepted (100 years).
const MAX_RETENTION_HOURS: u64 = 876_000;

/// Opens the latest version of a table for maintenance.
pub async fn open(url: Url, storage: HashMap<String, String>) -> Result<DeltaTable, StepError> {
    open_table(url, storage, TableAt::Latest).await
}

/// One commit of the table's log.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub version: u64,
    /// Commit time (milliseconds since the epoch), when recorded.
    pub timestamp_ms: Option<i64>,
    pub operation: String,
    pub parameters: serde_json::Value,
    pub files_added: usize,
    pub files_removed: usize,
    /// The engine that wrote the commit.
    pub engine: Option<String>,
}

/// The last `limit` commits, newest first (entries removed by log cleanup are skipped).
pub async fn history(table: &DeltaTable, limit: usize) -> Result<Vec<HistoryEntry>, StepError> {
    let log = table.log_store();
    let mut v = version_of(table);
    let mut out = Vec::new();
    loop {
        if out.len() >= limit {
            break;
        }
        if let Some(bytes) = log
            .read_commit_entry(v)
            .await
            .map_err(|e| delta_error(e, &format!("reading commit {v}")))?
        {
            let s = summarize(v, &bytes);
            let info = bytes
                .split(|b| *b == b'\n')
                .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
                .find_map(|a| a.get("commitInfo").cloned())
                .unwrap_or_default();
            let count = |key: &str| {
                bytes
                    .split(|b| *b == b'\n')
                    .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
                    .filter(|a| a.get(key).is_some())
                    .count()
            };
            out.push(HistoryEntry {
                version: v,
                timestamp_ms: info.get("timestamp").and_then(serde_json::Value::as_i64),
                operation: s.operation,
                parameters: info.get("operationParameters").cloned().unwrap_or_default(),
                files_added: count("add"),
                files_removed: count("remove"),
                engine: info
                    .get("engineInfo")
                    .and_then(|e| e.as_str())
                    .map(str::to_string),
            });
        }
        let Some(prev) = v.checked_sub(1) else { break };
        v = prev;
    }
    Ok(out)
}

/// Writes a checkpoint of the latest version; returns that version.
pub async fn checkpoint(table: &mut DeltaTable) -> Result<u64, StepError> {
    table
        .update_state()
        .await
        .map_err(|e| delta_error(e, "reading the table"))?;
    deltalake::checkpoints::create_checkpoint(table, None)
        .await
        .map_err(|e| delta_error(e, "writing a checkpoint"))?;
    Ok(version_of(table))
}

/// What a compaction did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OptimizeReport {
    /// The commit's version, or `None` when there was nothing to compact.
    pub version: Option<u64>,
    pub files_removed: usize,
    pub files_added: usize,
    pub bytes_removed: u64,
}

/// Rewrites the files under half of `target_size` bytes, partition by partition (two or more
/// per partition), into files of about `target_size`, in one `OPTIMIZE` commit with
/// `dataChange: false`. Appends committed meanwhile are kept; a concurrent overwrite or delete
/// of a compacted file makes this commit fail and its new files are removed.
pub async fn optimize(
    table: &mut DeltaTable,
    target_size: u64,
) -> Result<OptimizeReport, StepError> {
    table
        .update_state()
        .await
        .map_err(|e| delta_error(e, "reading the table"))?;
    let small = target_size / 2;
    let mut groups: BTreeMap<Vec<(String, Option<String>)>, Vec<DataFile>> = BTreeMap::new();
    for f in table_files(table, &BTreeMap::new())? {
        if f.size < small {
            let mut key: Vec<(String, Option<String>)> = f.partitions.clone().into_iter().collect();
            key.sort();
            groups.entry(key).or_default().push(f);
        }
    }
    groups.retain(|_, files| files.len() > 1);
    let mut report = OptimizeReport::default();
    if groups.is_empty() {
        return Ok(report);
    }
    let mut writer = RecordBatchWriter::for_table(table)
        .map_err(|e| delta_error(e, "opening a writer"))?
        .with_target_file_size(target_size)
        .with_writer_properties(super::file_properties());
    let target = writer.arrow_schema();
    let mut removes = Vec::new();
    let mut adds = Vec::new();
    let snapshot_files: HashMap<String, Action> = table
        .snapshot()
        .map_err(|e| delta_error(e, "reading the table"))?
        .log_data()
        .iter()
        .map(|f| (f.path().to_string(), Action::Remove(f.remove_action(false))))
        .collect();
    let written = async {
        for files in groups.into_values() {
            for f in &files {
                if let Some(r) = snapshot_files.get(&f.path) {
                    removes.push(r.clone());
                    report.bytes_removed = report.bytes_removed.saturating_add(f.size);
                }
            }
            report.files_removed = report.files_removed.saturating_add(files.len());
            let mut frames = read_files(table, files, None)?;
            while let Some(df) = frames.next().await {
                for batch in frame_to_arrow(&df?)? {
                    let batch = conform(batch, &target, SchemaEvolution::Freeze)?;
                    writer
                        .write(batch)
                        .await
                        .map_err(|e| delta_error(e, "writing a compacted file"))?;
                }
            }
            adds.extend(
                writer
                    .flush()
                    .await
                    .map_err(|e| delta_error(e, "writing compacted files"))?,
            );
        }
        Ok::<(), StepError>(())
    }
    .await;
    let store = table.log_store().object_store(None);
    if let Err(e) = written {
        remove_files(store.as_ref(), adds.iter().map(|a| a.path.as_str())).await;
        return Err(e);
    }
    report.files_added = adds.len();
    let mut actions = removes;
    actions.extend(adds.iter().cloned().map(|mut a| {
        a.data_change = false;
        Action::Add(a)
    }));
    let operation = DeltaOperation::Optimize {
        predicate: None,
        target_size: i64::try_from(target_size).unwrap_or(i64::MAX),
    };
    let snapshot = table
        .snapshot()
        .map_err(|e| delta_error(e, "reading the table"))?;
    let committed = CommitBuilder::from(quiet_commit())
        .with_actions(actions)
        .build(Some(snapshot), table.log_store(), operation)
        .await;
    match committed {
        Ok(done) => {
            report.version = Some(done.version());
            Ok(report)
        }
        Err(e) => {
            remove_files(store.as_ref(), adds.iter().map(|a| a.path.as_str())).await;
            Err(delta_error(e, "committing the compaction"))
        }
    }
}

/// Commit properties without deltalake's own post-commit checkpoint and log cleanup (pipectl
/// runs those itself, so a failing one never turns a landed commit into an error).
pub(crate) fn quiet_commit() -> CommitProperties {
    CommitProperties::default()
        .with_create_checkpoint(false)
        .with_cleanup_expired_logs(Some(false))
}

/// Deletes files written but never committed (best-effort, logged).
pub(crate) async fn remove_files<'a>(
    store: &dyn ObjectStore,
    paths: impl Iterator<Item = &'a str>,
) {
    for p in paths {
        let path = deltalake::Path::parse(p).unwrap_or_else(|_| deltalake::Path::from(p));
        if let Err(e) = store.delete(&path).await {
            tracing::warn!(file = %p, error = %e, "could not remove an uncommitted data file");
        }
    }
}

/// What a vacuum did or (dry run) would do.
#[derive(Debug, Clone, Serialize)]
pub struct VacuumReport {
    pub dry_run: bool,
    pub retention_hours: u64,
    /// Files deleted, or (dry run) the files that would be.
    pub files: Vec<String>,
}

/// Removes data files no version within the retention references, and files no commit ever
/// referenced, once older than the retention. Refuses a retention under 7 days unless `force`.
pub async fn vacuum(
    table: DeltaTable,
    retention_hours: u64,
    dry_run: bool,
    force: bool,
) -> Result<VacuumReport, StepError> {
    if retention_hours < MIN_RETENTION_HOURS && !force {
        return Err(StepError::user(format!(
            "a retention of {retention_hours} h is under 7 days: readers of older versions and writers still running could lose files"
        ))
        .with_hint("pass --force if no reader or writer needs them (or keep the default of 168 h)"));
    }
    let period = i64::try_from(retention_hours)
        .ok()
        .and_then(chrono::Duration::try_hours)
        .filter(|_| retention_hours <= MAX_RETENTION_HOURS)
        .ok_or_else(|| {
            StepError::user(format!(
                "a retention of {retention_hours} h is more than 100 years"
            ))
        })?;
    let (_, metrics) = table
        .vacuum()
        .with_retention_period(period)
        .with_enforce_retention_duration(!force)
        .with_mode(VacuumMode::Full)
        .with_dry_run(dry_run)
        .with_commit_properties(quiet_commit())
        .await
        .map_err(|e| delta_error(e, "vacuuming the table"))?;
    Ok(VacuumReport {
        dry_run,
        retention_hours,
        files: metrics.files_deleted,
    })
}

/// The table a pipeline's `delta` step names (its `path` and connection).
pub async fn step_table(setup: &pipeline_data::StepSetup) -> Result<DeltaTable, StepError> {
    let path = setup
        .options
        .get("path")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| {
            StepError::user(format!(
                "step \"{}\" has no Delta table \"path\"",
                setup.step
            ))
        })?;
    let url = super::table_url(setup, path, false)?;
    open(url, super::storage_options(setup)?).await
}

/// A table given as a local directory or a URL; S3 credentials from the AWS environment.
pub async fn location_table(location: &str) -> Result<DeltaTable, StepError> {
    let url = if location.contains("://") {
        Url::parse(location)
            .map_err(|e| StepError::user(format!("invalid table URL \"{location}\": {e}")))?
    } else {
        let dir = std::path::Path::new(location)
            .canonicalize()
            .map_err(|e| StepError::user(format!("{location}: {e}")))?;
        Url::from_directory_path(&dir)
            .map_err(|_| StepError::user(format!("invalid table path {location}")))?
    };
    open(url, HashMap::new()).await
}
