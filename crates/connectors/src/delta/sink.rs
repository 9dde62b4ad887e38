//! Writing a Delta table: stream data files during the run, publish them in one commit. The
//! commit carries a `txn` action (application id `pipectl/PIPELINE/RUN_ID/STEP`), so a run
//! resumed with the same id finds its earlier commit in the log and writes nothing again.

use super::{
    DeltaLoadOptions, DeltaWriteMode, SchemaEvolution, delta_error, storage_options, table_url,
};
use crate::LoadMethods;
use crate::arrow_bridge::frame_to_arrow;
use async_trait::async_trait;
use deltalake::arrow::array::new_null_array;
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{
    DataType as ArrowType, Field, Schema, SchemaRef, TimeUnit as ArrowUnit,
};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, StructType, Transaction};
use deltalake::operations::create::CreateBuilder;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter, WriteMode};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use object_store::ObjectStoreExt;
use pipeline_base::StepError;
use pipeline_data::polars::prelude::DataFrame;
use pipeline_data::{CommitOutcome, Metrics, Sink, StepSetup};
use std::collections::HashMap;
use std::sync::Arc;
use url::Url;

struct DeltaSink {
    step: String,
    url: Url,
    options: DeltaLoadOptions,
    storage: HashMap<String, String>,
    /// The table as it was when the step opened; `None` when it does not exist yet.
    table: Option<DeltaTable>,
    writer: Option<RecordBatchWriter>,
    /// Arrow schema of the new table (when creating it).
    schema: Option<SchemaRef>,
    staged: Vec<Add>,
    rows: u64,
    committed_version: Option<u64>,
    /// The `txn` application id this load commits with: pipeline, run id and step. A resumed
    /// run finds it in the log and writes nothing.
    app_id: String,
    /// An earlier run with this id committed this load.
    already: bool,
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
fn conform(
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
    async fn flush_staged(&mut self) -> Result<(), StepError> {
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
        self.url.to_string()
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
        .with_commit_properties(self.commit_properties());
        self.writer = Some(writer);
        Ok(())
    }

    /// Every commit carries a `txn` action naming the run and step.
    fn commit_properties(&self) -> CommitProperties {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .ok();
        CommitProperties::default().with_application_transaction(Transaction::new_with_last_update(
            &self.app_id,
            0,
            now,
        ))
    }

    async fn commit_inner(&mut self) -> Result<u64, DeltaTableError> {
        let adds: Vec<Action> = self.staged.drain(..).map(Action::Add).collect();
        let partition_by =
            (!self.options.partition_by.is_empty()).then(|| self.options.partition_by.clone());
        match &self.table {
            None => {
                let schema = self
                    .schema
                    .clone()
                    .ok_or_else(|| DeltaTableError::Generic("no data schema".into()))?;
                let kernel: StructType = schema.as_ref().try_into_kernel()?;
                let table = CreateBuilder::new()
                    .with_location(self.url.as_str())
                    .with_storage_options(self.storage.clone())
                    .with_columns(kernel.fields().cloned())
                    .with_partition_columns(self.options.partition_by.clone())
                    .with_save_mode(SaveMode::ErrorIfExists)
                    .with_commit_properties(self.commit_properties())
                    .with_actions(adds)
                    .await?;
                Ok(table.version().unwrap_or_default())
            }
            Some(table) => {
                let snapshot = table.snapshot()?;
                let mut actions = Vec::new();
                let mode = match self.options.mode {
                    DeltaWriteMode::Append => SaveMode::Append,
                    DeltaWriteMode::Overwrite => {
                        actions.extend(
                            snapshot
                                .log_data()
                                .iter()
                                .map(|f| Action::Remove(f.remove_action(true))),
                        );
                        SaveMode::Overwrite
                    }
                };
                actions.extend(adds);
                let operation = DeltaOperation::Write {
                    mode,
                    partition_by,
                    predicate: None,
                };
                let done = CommitBuilder::from(self.commit_properties())
                    .with_actions(actions)
                    .build(Some(snapshot), table.log_store(), operation)
                    .await?;
                Ok(done.version())
            }
        }
    }
}

#[async_trait]
impl Sink for DeltaSink {
    async fn write(&mut self, df: DataFrame) -> Result<(), StepError> {
        if self.already {
            return Ok(());
        }
        for batch in frame_to_arrow(&df)? {
            if self.writer.is_none() {
                self.open_writer(&batch)?;
            }
            let evolving = self.evolving();
            let Some(writer) = self.writer.as_mut() else {
                continue;
            };
            let target = writer.arrow_schema();
            let policy = self.options.schema_evolution;
            let batch = conform(batch, &target, policy)?;
            self.rows += batch.num_rows() as u64;
            let location = self.url.to_string();
            let mode = if policy == SchemaEvolution::Evolve {
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
            let limit = self.options.target_file_size_mb.max(1) as usize * 1024 * 1024;
            if !evolving && writer.buffer_len() >= limit {
                self.flush_staged().await?;
            }
        }
        Ok(())
    }

    async fn prepare(&mut self) -> Result<(), StepError> {
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
            tracing::info!(step = %self.step, "no batch reached the Delta sink; nothing to commit");
            return Ok(CommitOutcome::Published);
        }
        let files = self.staged.len();
        let location = self.location();
        let version = if self.evolving() {
            let (Some(writer), Some(table)) = (self.writer.as_mut(), self.table.as_mut()) else {
                return Err(StepError::internal("evolving without a writer"));
            };
            writer
                .flush_and_commit(table)
                .await
                .map_err(|e| delta_error(e, &format!("committing to {location}")))?
        } else {
            self.commit_inner()
                .await
                .map_err(|e| delta_error(e, &format!("committing to {location}")))?
        };
        self.committed_version = Some(version);
        tracing::info!(step = %self.step, table = %self.location(), version, files, rows = self.rows, "Delta commit");
        Ok(CommitOutcome::Published)
    }

    async fn abort(&mut self) {
        // Files written but never committed are not part of the table; remove them.
        let staged = std::mem::take(&mut self.staged);
        if staged.is_empty() {
            return;
        }
        let Ok(table) = DeltaTableBuilder::from_url(self.url.clone())
            .and_then(|b| b.with_storage_options(self.storage.clone()).build())
        else {
            return;
        };
        let store = table.object_store();
        for add in staged {
            let path = deltalake::Path::from(add.path.as_str());
            if let Err(e) = store.delete(&path).await {
                tracing::warn!(step = %self.step, file = %add.path, error = %e, "could not remove an uncommitted data file");
            }
        }
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

impl LoadMethods {
    /// Writes a Delta table; nothing is visible before the run's final commit.
    pub async fn delta(
        options: DeltaLoadOptions,
        setup: StepSetup,
    ) -> Result<Box<dyn Sink>, StepError> {
        let url = table_url(&setup, &options.path, true)?;
        let storage = storage_options(&setup)?;
        // A local directory without a log is simply a table to create (asking deltalake would
        // log a misleading error).
        let local_absent = url.scheme() == "file"
            && url
                .to_file_path()
                .map(|p| !p.join("_delta_log").exists())
                .unwrap_or(false);
        let table = if local_absent {
            None
        } else {
            match DeltaTableBuilder::from_url(url.clone())
                .map_err(|e| delta_error(e, &format!("opening Delta table {url}")))?
                .with_storage_options(storage.clone())
                .load()
                .await
            {
                Ok(t) => Some(t),
                Err(DeltaTableError::NotATable(_)) => None,
                Err(e) => return Err(delta_error(e, &format!("loading Delta table {url}"))),
            }
        };
        let app_id = format!("pipectl/{}/{}/{}", setup.pipeline, setup.run_id, setup.step);
        let mut already = false;
        // Every attempt looks, not only a resumed run: a retry after a commit that landed but
        // answered with an error (a dropped connection, a failed post-commit hook) must not
        // append the same data again.
        if let Some(t) = &table {
            let snapshot = t
                .snapshot()
                .map_err(|e| delta_error(e, &format!("reading Delta table {url}")))?;
            let found = snapshot
                .transaction_version(t.log_store().as_ref(), &app_id)
                .await
                .map_err(|e| delta_error(e, &format!("reading the log of Delta table {url}")))?;
            if found.is_some() {
                tracing::info!(step = %setup.step, table = %url, run_id = %setup.run_id, "this load already committed in this run (an earlier attempt, or the run being resumed); not writing it again");
                already = true;
            }
        }
        Ok(Box::new(DeltaSink {
            app_id,
            already,
            step: setup.step.clone(),
            url,
            options,
            storage,
            table,
            writer: None,
            schema: None,
            staged: Vec::new(),
            rows: 0,
            committed_version: None,
        }))
    }
}
