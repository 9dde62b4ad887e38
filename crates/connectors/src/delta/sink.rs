//! Writing a Delta table: stream data files during the run, publish them in one commit (see
//! `commit` for the rules against concurrent writers). The commit carries a `txn` action
//! (application id `pipectl/PIPELINE/RUN_ID/STEP`), so a retried or resumed run finds its
//! earlier commit in the log and writes nothing again; files of a commit that did not land are
//! deleted on abort.

use super::commit::{self, CommitRequest, Landing};
use super::maintenance::{quiet_commit, remove_files};
use super::{
    DeltaLoadOptions, DeltaWriteMode, SchemaEvolution, delta_error, merge, storage_options, table,
    table_url,
};
use crate::LoadMethods;
use crate::arrow_bridge::frame_to_arrow;
use async_trait::async_trait;
use deltalake::DeltaTable;
use deltalake::arrow::array::new_null_array;
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{
    DataType as ArrowType, Field, Schema, SchemaRef, TimeUnit as ArrowUnit,
};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{Action, Add, StructType};
use deltalake::operations::create::CreateBuilder;
use deltalake::protocol::{DeltaOperation, OutputMode, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter, WriteMode};
use pipeline_base::StepError;
use pipeline_data::polars::prelude::DataFrame;
use pipeline_data::stream::{StreamOffsets, StreamProgress};
use pipeline_data::{CommitOutcome, Metrics, Sink, StepSetup};
use std::collections::HashMap;
use std::sync::Arc;
use url::Url;

pub(super) struct DeltaSink {
    step: String,
    url: Url,
    pub(super) options: DeltaLoadOptions,
    storage: HashMap<String, String>,
    /// The table as it was when the step opened; `None` when it does not exist yet.
    pub(super) table: Option<DeltaTable>,
    /// The version the step read: commits after it are checked against the load's mode.
    base_version: u64,
    writer: Option<RecordBatchWriter>,
    /// Arrow schema of the new table (when creating it).
    schema: Option<SchemaRef>,
    pub(super) staged: Vec<Add>,
    /// Upsert: removes of the files rewritten without the load's keys.
    pub(super) rewritten: Vec<Action>,
    /// Upsert: the load's rows, until `prepare`.
    pub(super) upsert_rows: Vec<DataFrame>,
    rows: u64,
    committed_version: Option<u64>,
    /// How this load's commit is found in the log: the run's `txn` (a resumed run finds it
    /// and writes nothing), or in a stream one `txn` per partition with its offset.
    landing: Landing,
    /// An earlier run with this id committed this load.
    already: bool,
    /// In a stream: every partition's committed next offset as of `base_version`.
    known: Option<StreamOffsets>,
    /// The table is the one this stream committed to last, at that version.
    fresh: bool,
}

/// Delta stores timestamps in microseconds and strings as Utf8: cast what Polars exports.
fn delta_type(t: &ArrowType) -> ArrowType {
    match t {
        ArrowType::Utf8View | ArrowType::LargeUtf8 => ArrowType::Utf8,
        ArrowType::BinaryView | ArrowType::LargeBinary => ArrowType::Binary,
        ArrowType::Timestamp(_, tz) => ArrowType::Timestamp(ArrowUnit::Microsecond, tz.clone()),
        ArrowType::UInt8 => ArrowType::Int16,
        ArrowType::UInt16 => ArrowType::Int32,
        ArrowType::UInt32 | ArrowType::UInt64 => ArrowType::Int64,
        other => other.clone(),
    }
}

/// Shapes a batch to the table's schema under the evolution policy. With `evolve`, columns the
/// table lacks are kept (after the table's own) and the writer widens the schema.
pub(crate) fn conform(
    batch: RecordBatch,
    target: &SchemaRef,
    policy: SchemaEvolution,
) -> Result<RecordBatch, StepError> {
    if batch.schema().as_ref() == target.as_ref() {
        return Ok(batch);
    }
    let mut fields = Vec::with_capacity(target.fields().len());
    let mut columns = Vec::with_capacity(target.fields().len());
    for field in target.fields() {
        let column = match batch.column_by_name(field.name()) {
            Some(c) if c.data_type() == field.data_type() => c.clone(),
            Some(c) => cast(c, field.data_type()).map_err(|e| {
                StepError::user(format!(
                    "column \"{}\" cannot be written as {}: {e}",
                    field.name(),
                    field.data_type()
                ))
            })?,
            None if policy == SchemaEvolution::Evolve => {
                new_null_array(field.data_type(), batch.num_rows())
            }
            None => {
                return Err(StepError::user(format!("the table has a column \"{}\" that the data lacks", field.name()))
                    .with_hint("select or derive the table's columns before loading, or set \"schema_evolution\": \"evolve\""));
            }
        };
        fields.push(field.as_ref().clone());
        columns.push(column);
    }
    let extra: Vec<(Field, deltalake::arrow::array::ArrayRef)> = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(f, _)| target.field_with_name(f.name()).is_err())
        .map(|(f, c)| {
            (
                Field::new(f.name(), delta_type(f.data_type()), true),
                c.clone(),
            )
        })
        .collect();
    if !extra.is_empty() {
        match policy {
            SchemaEvolution::Freeze => {
                let names: Vec<&str> = extra.iter().map(|(f, _)| f.name().as_str()).collect();
                return Err(StepError::user(format!(
                    "the data has columns the table lacks: {}",
                    names.join(", ")
                ))
                .with_hint(
                    "set \"schema_evolution\": \"evolve\" to add them, or \"discard\" to drop them",
                ));
            }
            SchemaEvolution::Discard => {}
            SchemaEvolution::Evolve => {
                for (f, c) in extra {
                    let c = if c.data_type() == f.data_type() {
                        c
                    } else {
                        cast(&c, f.data_type())
                            .map_err(|e| StepError::user(format!("column \"{}\": {e}", f.name())))?
                    };
                    fields.push(f);
                    columns.push(c);
                }
            }
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| StepError::internal(format!("conforming a batch: {e}")))
}

impl DeltaSink {
    /// Writes the buffered files out (not yet part of the table) and stages their Add actions
    /// for the final commit.
    pub(super) async fn flush_staged(&mut self) -> Result<(), StepError> {
        let location = self.url.to_string();
        if let Some(writer) = self.writer.as_mut() {
            let adds = writer
                .flush()
                .await
                .map_err(|e| delta_error(e, &format!("flushing files to {location}")))?;
            self.staged.extend(adds);
        }
        Ok(())
    }

    /// Appending to an existing table with `schema_evolution: evolve`.
    fn evolving(&self) -> bool {
        self.options.schema_evolution == SchemaEvolution::Evolve && self.table.is_some()
    }

    fn location(&self) -> String {
        self.url.as_str().trim_end_matches('/').to_string()
    }

    fn open_writer(&mut self, first: &RecordBatch) -> Result<(), StepError> {
        let writer = match &self.table {
            Some(table) => RecordBatchWriter::for_table(table),
            None => {
                let fields: Vec<Field> = first
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| Field::new(f.name(), delta_type(f.data_type()), true))
                    .collect();
                let schema = Arc::new(Schema::new(fields));
                self.schema = Some(schema.clone());
                let partitions = (!self.options.partition_by.is_empty())
                    .then(|| self.options.partition_by.clone());
                RecordBatchWriter::try_new(
                    self.url.as_str(),
                    schema,
                    partitions,
                    Some(self.storage.clone()),
                )
            }
        }
        .map_err(|e| delta_error(e, &format!("opening a writer for {}", self.location())))?
        .with_target_file_size(self.options.target_file_size_mb.clamp(1, 1 << 20) << 20)
        .with_writer_properties(super::file_properties())
        .with_commit_properties(self.commit_properties());
        self.writer = Some(writer);
        Ok(())
    }

    /// Every commit carries a `txn` action naming the run and step; deltalake's own
    /// post-commit checkpoint and log cleanup are off (see `commit::hygiene`).
    fn commit_properties(&self) -> CommitProperties {
        quiet_commit().with_application_transactions(self.landing.transactions())
    }

    /// Creates the table with the staged files; `None` when another writer created it first
    /// (the caller then commits to that table under the usual rules).
    async fn create(&mut self) -> Result<Option<u64>, StepError> {
        let schema = self
            .schema
            .clone()
            .ok_or_else(|| StepError::internal("creating a Delta table without a schema"))?;
        let kernel: StructType = schema
            .as_ref()
            .try_into_kernel()
            .map_err(|e| delta_error(e.into(), "converting the schema"))?;
        let created = CreateBuilder::new()
            .with_location(self.url.as_str())
            .with_storage_options(self.storage.clone())
            .with_columns(kernel.fields().cloned())
            .with_partition_columns(self.options.partition_by.clone())
            .with_save_mode(SaveMode::ErrorIfExists)
            // No retry inside deltalake: after losing the race for version 0 it would commit
            // a second CREATE TABLE (new metadata) on top of the winner's table. The loser
            // adopts the winner's table below instead.
            .with_commit_properties(self.commit_properties().with_max_retries(0))
            .with_actions(self.staged.iter().cloned().map(Action::Add))
            .await;
        match created {
            Ok(t) => Ok(Some(commit::version_of(&t))),
            Err(e) => {
                match table::open_if_exists(&self.url, self.storage.clone()).await? {
                    // Another writer's table is there now: ours was not created.
                    Some(mut t) => {
                        if let Some(v) = commit::landed(&mut t, &self.landing).await? {
                            return Ok(Some(v));
                        }
                        if self.options.mode != DeltaWriteMode::Append {
                            return Err(StepError::external(format!(
                                "{}: another writer created the table while this load ran; nothing of this load was committed",
                                self.location()
                            ))
                            .with_hint("run the pipeline again to apply this load to the new table"));
                        }
                        let theirs = t
                            .snapshot()
                            .map_err(|e| delta_error(e, "reading the table"))?
                            .snapshot()
                            .arrow_schema();
                        if theirs.fields().len() != schema.fields().len()
                            || theirs.fields().iter().zip(schema.fields()).any(|(a, b)| {
                                a.name() != b.name() || a.data_type() != b.data_type()
                            })
                        {
                            return Err(StepError::external(format!(
                            "{}: another writer created the table meanwhile with other columns; nothing of this load was committed",
                            self.location()
                        ))
                        .with_hint("run again: the load will append to (or be checked against) the new table"));
                        }
                        self.table = Some(t);
                        Ok(None)
                    }
                    _ => Err(delta_error(e, &format!("creating {}", self.location()))),
                }
            }
        }
    }

    /// The commit of staged files (and, for an upsert, the removes of rewritten files).
    async fn commit_staged(&mut self, extra: Vec<Action>) -> Result<u64, StepError> {
        if self.table.is_none()
            && let Some(v) = self.create().await?
        {
            return Ok(v);
        }
        let location = self.location();
        let properties = self.commit_properties();
        let (stream_id, epoch) = (self.stream_id(), self.epoch());
        let Some(table) = self.table.as_mut() else {
            return Err(StepError::internal("committing without a table"));
        };
        let partition_by =
            (!self.options.partition_by.is_empty()).then(|| self.options.partition_by.clone());
        let operation = match self.options.mode {
            DeltaWriteMode::Append if matches!(self.landing, Landing::Stream(..)) => {
                DeltaOperation::StreamingUpdate {
                    output_mode: OutputMode::Append,
                    query_id: stream_id,
                    epoch_id: epoch,
                }
            }
            DeltaWriteMode::Append => DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by,
                predicate: None,
            },
            DeltaWriteMode::Overwrite => DeltaOperation::Write {
                mode: SaveMode::Overwrite,
                partition_by,
                predicate: None,
            },
            DeltaWriteMode::Upsert => merge::operation(&self.options.key),
        };
        let mut actions = extra;
        actions.extend(self.staged.iter().cloned().map(Action::Add));
        commit::commit(
            table,
            CommitRequest {
                mode: self.options.mode,
                base: self.base_version,
                actions,
                operation,
                properties,
                landing: &self.landing,
                fresh: self.fresh,
                location: &location,
            },
        )
        .await
    }
}

#[async_trait]
impl Sink for DeltaSink {
    async fn write(&mut self, df: DataFrame) -> Result<(), StepError> {
        if self.already {
            return Ok(());
        }
        if self.options.mode == DeltaWriteMode::Upsert {
            // The whole load is needed to collapse keys and find the files to rewrite.
            self.rows = self.rows.saturating_add(df.height() as u64);
            self.upsert_rows.push(df);
            return Ok(());
        }
        for batch in frame_to_arrow(&df)? {
            self.write_batch(batch).await?;
        }
        Ok(())
    }

    async fn prepare(&mut self) -> Result<(), StepError> {
        if self.already {
            return Ok(());
        }
        if self.options.mode == DeltaWriteMode::Upsert {
            return self.prepare_upsert().await;
        }
        if self.evolving() {
            // The writer commits the widened schema together with the data at commit time.
            return Ok(());
        }
        self.flush_staged().await
    }

    async fn commit(&mut self) -> Result<CommitOutcome, StepError> {
        if self.already {
            return Ok(CommitOutcome::AlreadyPublished);
        }
        if self.writer.is_none() {
            if self.streaming_offsets_only() {
                // Every row of the micro-batch was filtered out: the offsets still move on.
                let version = self.commit_staged(Vec::new()).await?;
                tracing::debug!(step = %self.step, version, "no rows in this micro-batch; committed its offsets");
                return Ok(CommitOutcome::Published);
            }
            tracing::info!(step = %self.step, "no batch reached the Delta sink; nothing to commit");
            return Ok(CommitOutcome::Published);
        }
        let files = self.staged.len();
        let location = self.location();
        if files == 0 && self.rewritten.is_empty() && self.stream_cursor().is_some() {
            // A micro-batch without rows for this table: only its offsets move (if it read any).
            if self.streaming_offsets_only() {
                let version = self.commit_staged(Vec::new()).await?;
                self.remember(version);
            }
            return Ok(CommitOutcome::Published);
        }
        let version = if self.evolving() {
            let (Some(writer), Some(table)) = (self.writer.as_mut(), self.table.as_mut()) else {
                return Err(StepError::internal("evolving without a writer"));
            };
            writer
                .flush_and_commit(table)
                .await
                .map_err(|e| delta_error(e, &format!("committing to {location}")))?
        } else {
            let removes = std::mem::take(&mut self.rewritten);
            self.commit_staged(removes).await?
        };
        // Committed: the staged files belong to the table now; abort must not touch them.
        self.staged.clear();
        self.committed_version = Some(version);
        if self.stream_cursor().is_some() {
            tracing::debug!(step = %self.step, table = %location, version, files, rows = self.rows, "Delta commit");
        } else {
            tracing::info!(step = %self.step, table = %location, version, files, rows = self.rows, "Delta commit");
        }
        // A table this load created is opened for its hygiene.
        if self.table.is_none() {
            self.table = table::open_if_exists(&self.url, self.storage.clone())
                .await
                .ok()
                .flatten();
        }
        if let Some(table) = self.table.as_mut() {
            commit::hygiene(
                table,
                version,
                self.options.checkpoint_every,
                self.options.optimize_every,
                self.options.target_file_size_mb.clamp(1, 1 << 20) << 20,
                &self.step,
            )
            .await;
        }
        self.remember(version);
        Ok(CommitOutcome::Published)
    }

    async fn stream_offsets(&mut self) -> Result<Option<StreamOffsets>, StepError> {
        let Landing::Stream(cursor, step) = &self.landing else {
            return Ok(None);
        };
        match &self.table {
            Some(table) => Ok(Some(
                commit::stream_offsets(table, cursor, step, &cursor.partitions()).await?,
            )),
            None => Ok(Some(StreamOffsets::new())),
        }
    }

    async fn abort(&mut self) {
        // Files written but never committed are not part of the table; remove them, unless
        // the commit did land (its answer lost): then they are the table's.
        let staged = std::mem::take(&mut self.staged);
        if staged.is_empty() {
            return;
        }
        let store = match table::open_if_exists(&self.url, self.storage.clone()).await {
            Ok(Some(mut table)) => match commit::landed(&mut table, &self.landing).await {
                Ok(None) => table.log_store().object_store(None),
                Ok(Some(_)) => return,
                // Unknown whether the commit landed: keep the files (vacuum finds unreferenced
                // ones later) rather than risk deleting data a commit points at.
                Err(e) => {
                    tracing::warn!(step = %self.step, error = %e.full_message(), files = staged.len(), "could not tell whether the commit landed; its data files are kept");
                    return;
                }
            },
            Err(e) => {
                tracing::warn!(step = %self.step, error = %e.full_message(), files = staged.len(), "could not read the table; the uncommitted data files are kept");
                return;
            }
            // No table (a load that would have created it): the location's store.
            Ok(None) => match table::builder(&self.url, self.storage.clone()).and_then(|b| {
                b.build_storage()
                    .map_err(|e| delta_error(e, "opening the table's store"))
            }) {
                Ok(log) => log.object_store(None),
                Err(e) => {
                    tracing::warn!(step = %self.step, error = %e.full_message(), "could not remove the uncommitted data files");
                    return;
                }
            },
        };
        remove_files(store.as_ref(), staged.iter().map(|a| a.path.as_str())).await;
    }

    fn metrics(&self) -> Metrics {
        let mut m = vec![
            ("rows_written", self.rows),
            ("files", self.staged.len() as u64),
        ];
        if let Some(v) = self.committed_version {
            m.push(("table_version", v));
        }
        m
    }
}

impl DeltaSink {
    /// Shapes one batch to the table and hands it to the writer, flushing whole files out.
    pub(super) async fn write_batch(&mut self, batch: RecordBatch) -> Result<(), StepError> {
        if self.writer.is_none() {
            self.open_writer(&batch)?;
        }
        let evolving = self.evolving();
        let location = self.location();
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        let target = writer.arrow_schema();
        let policy = self.options.schema_evolution;
        let batch = conform(batch, &target, policy)?;
        if self.options.mode != DeltaWriteMode::Upsert {
            self.rows = self.rows.saturating_add(batch.num_rows() as u64);
        }
        let widens = policy == SchemaEvolution::Evolve
            && batch.schema().fields().len() > target.fields().len();
        let partitioned = self
            .table
            .as_ref()
            .and_then(|t| t.snapshot().ok())
            .is_some_and(|s| !s.metadata().partition_columns().is_empty());
        if widens && partitioned {
            let new: Vec<&str> = batch
                .schema_ref()
                .fields()
                .iter()
                .skip(target.fields().len())
                .map(|f| f.name().as_str())
                .collect();
            return Err(StepError::user(format!(
                "adding columns ({}) to a partitioned Delta table is not supported yet",
                new.join(", ")
            ))
            .with_hint("add the columns with another engine (ALTER TABLE ... ADD COLUMNS), or set \"schema_evolution\": \"discard\""));
        }
        let mode = if widens {
            WriteMode::MergeSchema
        } else {
            WriteMode::Default
        };
        writer
            .write_with_mode(batch, mode)
            .await
            .map_err(|e| delta_error(e, &format!("writing to {location}")))?;
        // The writer holds whole files in memory until flushed: write them out (uncommitted)
        // once a file's worth is buffered. (Not while evolving: the writer's own commit must
        // carry the widened schema together with every file.)
        let limit = usize::try_from(self.options.target_file_size_mb.clamp(1, 1 << 20) << 20)
            .unwrap_or(usize::MAX);
        if !evolving && writer.buffer_len() >= limit {
            self.flush_staged().await?;
        }
        Ok(())
    }
}

#[path = "sink_stream.rs"]
mod stream;
use stream::{KeptTable, kept_key};

impl LoadMethods {
    /// Writes a Delta table; nothing is visible before the run's final commit.
    pub async fn delta(
        options: DeltaLoadOptions,
        setup: StepSetup,
    ) -> Result<Box<dyn Sink>, StepError> {
        let url = table_url(&setup, &options.path, true)?;
        let storage = storage_options(&setup)?;
        let discovering = setup.stream.as_ref().is_some_and(|c| c.is_discovering());
        let mut fresh = false;
        let kept = setup
            .stream
            .as_ref()
            .filter(|_| !discovering)
            .and_then(|c| c.take_kept::<KeptTable>(&kept_key(&setup.step)));
        let (mut table, mut known) = match kept {
            Some(k) => {
                // At the version this stream committed last: not read again (a commit by
                // another writer since shows as a lost race at commit time, and is checked).
                let unchanged = commit::version_of(&k.table) == k.version;
                fresh = unchanged;
                (Some(k.table), unchanged.then_some(k.offsets))
            }
            None => (table::open_if_exists(&url, storage.clone()).await?, None),
        };
        if table.is_none() && setup.stream.is_some() && !discovering {
            // No table yet: no offsets committed.
            known = Some(StreamOffsets::new());
        }
        let landing = match &setup.stream {
            Some(cursor) => {
                if options.mode != DeltaWriteMode::Append {
                    return Err(StepError::user(format!(
                        "step \"{}\": a stream appends to Delta tables; \"mode\": \"{}\" is for batch runs",
                        setup.step,
                        format!("{:?}", options.mode).to_lowercase()
                    ))
                    .with_hint("use \"mode\": \"append\" (and dedupe or upsert downstream), or run the pipeline in batch mode"));
                }
                Landing::Stream(cursor.clone(), setup.step.clone())
            }
            None => Landing::Run(format!(
                "pipectl/{}/{}/{}",
                setup.pipeline, setup.run_id, setup.step
            )),
        };
        let mut already = false;
        // Every attempt looks, not only a resumed run: a retry after a commit that landed but
        // answered with an error (a dropped connection, a failed post-commit hook) must not
        // append the same data again. In a stream: a micro-batch replayed after a crash that
        // this table committed already.
        let landed = match (table.as_mut(), &landing) {
            (Some(t), Landing::Stream(cursor, step)) if !discovering => {
                let offsets = match known.take() {
                    Some(o) => o,
                    None => commit::stream_offsets(t, cursor, step, &cursor.partitions()).await?,
                };
                let progress = commit::progress_of(cursor, &offsets)?;
                known = Some(offsets);
                progress == StreamProgress::Committed
            }
            (Some(t), Landing::Run(_)) => commit::landed(t, &landing).await?.is_some(),
            _ => false,
        };
        if landed {
            match &landing {
                Landing::Run(_) => {
                    tracing::info!(step = %setup.step, table = %url, run_id = %setup.run_id, "this load already committed in this run (an earlier attempt, or the run being resumed); not writing it again")
                }
                Landing::Stream(..) => {
                    tracing::info!(step = %setup.step, table = %url, "this micro-batch is already in the table (committed before a restart); not writing it again")
                }
            }
            already = true;
        }
        let base_version = table.as_ref().map(commit::version_of).unwrap_or_default();
        Ok(Box::new(DeltaSink {
            landing,
            already,
            known,
            fresh,
            step: setup.step.clone(),
            url,
            options,
            storage,
            table,
            base_version,
            writer: None,
            schema: None,
            staged: Vec::new(),
            rewritten: Vec::new(),
            upsert_rows: Vec::new(),
            rows: 0,
            committed_version: None,
        }))
    }
}
