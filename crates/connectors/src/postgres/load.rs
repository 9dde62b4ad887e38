//! `LoadMethods::postgres`: rows go in by binary COPY into a staging table inside one
//! transaction, then into the target (`append`, `overwrite` or `upsert` on key columns, last
//! row of a key wins); the transaction commits only when the whole run succeeds, so a failed
//! load leaves the target exactly as it was. The table can be created from the data's schema.
//! The same transaction records the load in the ledger (`crate::ledger`), so a resumed run
//! skips a load that already committed.

use super::encode::{ColumnEncoder, HEADER, TRAILER};
use super::extract::quote_table;
use super::{connect, pg_error, quote_ident, stream};
use crate::LoadMethods;
use crate::ledger::{self, ledger_name, no_ledger_warning};
use crate::sql::check_key;
use async_trait::async_trait;
use bytes::Bytes;
use futures::SinkExt;
use pipeline_base::StepError;
use pipeline_data::method::MethodOptions;
use pipeline_data::polars::prelude::*;
use pipeline_data::stream::{StreamCursor, StreamOffsets, StreamProgress};
use pipeline_data::{CommitOutcome, Metrics, OptionsError, Sink, StepSetup};
use schemars::JsonSchema;
use serde::Deserialize;
use std::pin::Pin;
use std::sync::Arc;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, CopyInSink};

/// How rows land in the target table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PgWriteMode {
    /// Add the rows.
    #[default]
    Append,
    /// Replace the table's rows (TRUNCATE and insert, in the same transaction).
    Overwrite,
    /// Insert, or update the row with the same `key` (`ON CONFLICT`); within the load the last
    /// row of a key wins.
    Upsert,
}

/// Options of the `postgres` load.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresLoadOptions {
    /// The target table (`orders` or `shop.orders`).
    pub table: String,
    /// `append` (default), `overwrite` or `upsert`.
    #[serde(default)]
    pub mode: PgWriteMode,
    /// Key columns for `upsert` (a unique index or primary key must cover them).
    #[serde(default)]
    pub key: Vec<String>,
    /// Create the table from the data's columns when it does not exist.
    #[serde(default)]
    pub create_table: bool,
    /// Record each committed load in `_pipectl_loads` (same schema, same transaction), so a
    /// resumed run (`pipectl run --resume`) never loads this step twice. Default true; false
    /// for a role that may not create tables.
    #[serde(default = "yes")]
    pub ledger: bool,
}

fn yes() -> bool {
    true
}

impl MethodOptions for PostgresLoadOptions {
    fn check(&self) -> Result<(), OptionsError> {
        check_key(self.mode == PgWriteMode::Upsert, &self.key, "order_id")
    }
}

const STAGE: &str = "pipectl_stage";
const SEQ: &str = "_pipectl_seq";

/// The PostgreSQL type a new column gets for a Polars type.
fn sql_type(dtype: &DataType, column: &str) -> Result<String, StepError> {
    Ok(match dtype {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "integer".into(),
        DataType::Int64 | DataType::UInt32 => "bigint".into(),
        DataType::UInt64 => "numeric(20,0)".into(),
        DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal(p, s) => format!("numeric({p},{s})"),
        DataType::String => "text".into(),
        DataType::Binary => "bytea".into(),
        DataType::Date => "date".into(),
        DataType::Datetime(_, None) => "timestamp".into(),
        DataType::Datetime(_, Some(_)) => "timestamptz".into(),
        other => {
            return Err(StepError::user(format!(
                "column \"{column}\" has type {other}, for which the postgres load has no column type"
            ))
            .with_hint("cast it first (a cast step), or create the table yourself"));
        }
    })
}

struct PgSink {
    step: String,
    table: String,
    options: PostgresLoadOptions,
    client: Client,
    copy: Option<Pin<Box<CopyInSink<Bytes>>>>,
    /// Target columns written, with their types (set by the first batch).
    columns: Vec<(String, Type)>,
    rows: u64,
    in_transaction: bool,
    pipeline: String,
    run_id: String,
    /// The ledger table (quoted), when the load keeps one.
    ledger: Option<String>,
    /// An earlier run with this id committed this load: write nothing.
    already: bool,
    /// In a stream: the cursor and the offsets table (see `stream.rs`).
    stream: Option<(Arc<StreamCursor>, String)>,
}

impl PgSink {
    /// Creates the ledger when missing and, for a resumed run, looks for this load in it.
    async fn open_ledger(&mut self, resumed: bool) -> Result<(), StepError> {
        let Some(ledger) = self.ledger.clone() else {
            if resumed {
                no_ledger_warning(&self.step);
            }
            return Ok(());
        };
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {ledger} (pipeline text NOT NULL, run_id text NOT NULL, step text NOT NULL, target text NOT NULL, row_count bigint NOT NULL, committed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (pipeline, run_id, step))"
        );
        if let Err(e) = self.client.batch_execute(&ddl).await {
            // Two runs creating it at once: one wins, the other sees it exist.
            let raced = e.code().is_some_and(|c| {
                *c == tokio_postgres::error::SqlState::UNIQUE_VIOLATION
                    || *c == tokio_postgres::error::SqlState::DUPLICATE_TABLE
            });
            if !raced {
                return Err(pg_error(
                    e,
                    &format!("step \"{}\": creating the load ledger {ledger}", self.step),
                )
                .with_hint(ledger::CREATE_HINT));
            }
        }
        if resumed {
            let found = self
                .client
                .query_opt(
                    &format!(
                        "SELECT row_count FROM {ledger} WHERE pipeline = $1 AND run_id = $2 AND step = $3"
                    ),
                    &[&self.pipeline, &self.run_id, &self.step],
                )
                .await
                .map_err(|e| self.fail(e, "reading the load ledger beside"))?;
            if let Some(row) = found {
                let rows: i64 = row.get(0);
                ledger::found(&self.step, &self.table, &self.run_id, rows);
                self.already = true;
            }
        }
        Ok(())
    }

    /// Records this load in the ledger, in its transaction. `false`: a load with the same run
    /// id and step is there already (a concurrent resume won).
    async fn record(&mut self) -> Result<bool, StepError> {
        let Some(ledger) = self.ledger.clone() else {
            return Ok(true);
        };
        let rows = i64::try_from(self.rows).unwrap_or(i64::MAX);
        let inserted = self
            .client
            .execute(
                &format!(
                    "INSERT INTO {ledger} (pipeline, run_id, step, target, row_count) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
                ),
                &[&self.pipeline, &self.run_id, &self.step, &self.options.table, &rows],
            )
            .await
            .map_err(|e| self.fail(e, "recording the load in the ledger beside"))?;
        Ok(inserted == 1)
    }
    fn fail(&self, e: tokio_postgres::Error, doing: &str) -> StepError {
        pg_error(
            e,
            &format!(
                "step \"{}\": {doing} table {}",
                self.step, self.options.table
            ),
        )
    }

    /// The target's columns and types, or `None` when the table does not exist.
    async fn target_columns(&self) -> Result<Option<Vec<(String, Type)>>, StepError> {
        let exists = self
            .client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&self.table])
            .await
            .map_err(|e| self.fail(e, "looking up"))?;
        if !exists.get::<_, bool>(0) {
            return Ok(None);
        }
        let statement = self
            .client
            .prepare(&format!("SELECT * FROM {} LIMIT 0", self.table))
            .await
            .map_err(|e| self.fail(e, "reading the columns of"))?;
        Ok(Some(
            statement
                .columns()
                .iter()
                .map(|c| (c.name().to_string(), c.type_().clone()))
                .collect(),
        ))
    }

    /// First batch: begin, create the table if asked, stage, start the COPY.
    async fn start(&mut self, df: &DataFrame) -> Result<(), StepError> {
        self.client
            .batch_execute("BEGIN")
            .await
            .map_err(|e| self.fail(e, "starting a transaction for"))?;
        self.in_transaction = true;
        let target = match self.target_columns().await? {
            Some(cols) => cols,
            None if self.options.create_table => {
                let defs = df
                    .columns()
                    .iter()
                    .map(|c| {
                        Ok(format!(
                            "{} {}",
                            quote_ident(c.name()),
                            sql_type(c.dtype(), c.name())?
                        ))
                    })
                    .collect::<Result<Vec<_>, StepError>>()?;
                let mut ddl = format!("CREATE TABLE {} ({}", self.table, defs.join(", "));
                if self.options.mode == PgWriteMode::Upsert {
                    let keys: Vec<String> =
                        self.options.key.iter().map(|k| quote_ident(k)).collect();
                    ddl.push_str(&format!(", PRIMARY KEY ({})", keys.join(", ")));
                }
                ddl.push(')');
                self.client
                    .batch_execute(&ddl)
                    .await
                    .map_err(|e| self.fail(e, "creating"))?;
                tracing::info!(step = %self.step, table = %self.table, "created the table");
                self.target_columns().await?.unwrap_or_default()
            }
            None => {
                return Err(StepError::user(format!(
                    "step \"{}\": table {} does not exist",
                    self.step, self.options.table
                ))
                .with_hint("create it, or set \"create_table\": true"));
            }
        };
        // Every data column must exist in the target (columns the data lacks get defaults).
        let mut columns = Vec::new();
        for c in df.columns() {
            match target.iter().find(|(n, _)| n == c.name().as_str()) {
                Some(t) => columns.push(t.clone()),
                None => {
                    return Err(StepError::user(format!(
                        "step \"{}\": column \"{}\" is not in table {}",
                        self.step,
                        c.name(),
                        self.options.table
                    ))
                    .with_hint("add the column to the table, or drop it with a select/drop step"));
                }
            }
        }
        for k in &self.options.key {
            if !columns.iter().any(|(n, _)| n == k) {
                return Err(StepError::user(format!(
                    "step \"{}\": key column \"{k}\" is not in the data",
                    self.step
                )));
            }
        }
        let list = columns
            .iter()
            .map(|(n, _)| quote_ident(n))
            .collect::<Vec<_>>()
            .join(", ");
        let mut stage = format!(
            "CREATE TEMP TABLE {STAGE} ON COMMIT DROP AS SELECT {list} FROM {} WITH NO DATA",
            self.table
        );
        if self.options.mode == PgWriteMode::Upsert {
            stage.push_str(&format!("; ALTER TABLE {STAGE} ADD COLUMN {SEQ} bigint"));
        }
        self.client
            .batch_execute(&format!("DROP TABLE IF EXISTS {STAGE}; {stage}"))
            .await
            .map_err(|e| self.fail(e, "staging rows for"))?;
        let seq = if self.options.mode == PgWriteMode::Upsert {
            format!(", {SEQ}")
        } else {
            String::new()
        };
        let sink = self
            .client
            .copy_in::<_, Bytes>(&format!(
                "COPY {STAGE} ({list}{seq}) FROM STDIN (FORMAT binary)"
            ))
            .await
            .map_err(|e| self.fail(e, "starting COPY for"))?;
        let mut sink = Box::pin(sink);
        sink.send(Bytes::from_static(HEADER))
            .await
            .map_err(|e| self.fail(e, "writing COPY data for"))?;
        self.copy = Some(sink);
        self.columns = columns;
        Ok(())
    }
}

#[async_trait]
impl Sink for PgSink {
    async fn write(&mut self, df: DataFrame) -> Result<(), StepError> {
        if df.height() == 0 || self.already {
            return Ok(());
        }
        if self.copy.is_none() {
            self.start(&df).await?;
        }
        let encoders = self
            .columns
            .iter()
            .map(|(name, ty)| {
                let column = df.column(name).map_err(|_| {
                    StepError::user(format!(
                        "step \"{}\": column \"{name}\" is missing from a later batch",
                        self.step
                    ))
                })?;
                ColumnEncoder::new(column, ty)
                    .map_err(|e| e.context(format!("step \"{}\"", self.step)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let upsert = self.options.mode == PgWriteMode::Upsert;
        let fields = i16::try_from(encoders.len())
            .unwrap_or(i16::MAX)
            .saturating_add(i16::from(upsert));
        let start = self.rows;
        let bytes = pipeline_data::blocking(move || {
            let per_row = encoders.len().saturating_mul(12).saturating_add(8);
            let mut out = Vec::with_capacity(df.height().saturating_mul(per_row));
            for i in 0..df.height() {
                out.extend_from_slice(&fields.to_be_bytes());
                for e in &encoders {
                    e.encode(i, &mut out)?;
                }
                if upsert {
                    out.extend_from_slice(&8i32.to_be_bytes());
                    out.extend_from_slice(&(start as i64).saturating_add(i as i64).to_be_bytes());
                }
            }
            Ok(out)
        })
        .await?;
        let sink = self
            .copy
            .as_mut()
            .ok_or_else(|| StepError::internal("COPY not started"))?;
        if let Err(e) = sink.send(Bytes::from(bytes)).await {
            return Err(self.fail(e, "writing COPY data for"));
        }
        Ok(())
    }

    async fn prepare(&mut self) -> Result<(), StepError> {
        let Some(mut sink) = self.copy.take() else {
            if self.stream.is_some() && !self.already {
                // A micro-batch without rows for this table: its offsets still move on.
                self.client
                    .batch_execute("BEGIN")
                    .await
                    .map_err(|e| self.fail(e, "starting a transaction for"))?;
                self.in_transaction = true;
                return self.advance_stream().await;
            }
            return Ok(()); // no rows: nothing to do, the target stays as it is
        };
        if let Err(e) = sink.send(Bytes::from_static(TRAILER)).await {
            return Err(self.fail(e, "writing COPY data for"));
        }
        let staged = sink
            .as_mut()
            .finish()
            .await
            .map_err(|e| self.fail(e, "finishing COPY for"))?;
        let list = self
            .columns
            .iter()
            .map(|(n, _)| quote_ident(n))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = match self.options.mode {
            PgWriteMode::Append => format!(
                "INSERT INTO {} ({list}) SELECT {list} FROM {STAGE}",
                self.table
            ),
            PgWriteMode::Overwrite => format!(
                "TRUNCATE {t}; INSERT INTO {t} ({list}) SELECT {list} FROM {STAGE}",
                t = self.table
            ),
            PgWriteMode::Upsert => {
                let keys = self
                    .options
                    .key
                    .iter()
                    .map(|k| quote_ident(k))
                    .collect::<Vec<_>>()
                    .join(", ");
                let updates: Vec<String> = self
                    .columns
                    .iter()
                    .filter(|(n, _)| !self.options.key.contains(n))
                    .map(|(n, _)| format!("{c} = EXCLUDED.{c}", c = quote_ident(n)))
                    .collect();
                let action = if updates.is_empty() {
                    "DO NOTHING".to_string()
                } else {
                    format!("DO UPDATE SET {}", updates.join(", "))
                };
                format!(
                    "INSERT INTO {t} ({list}) SELECT DISTINCT ON ({keys}) {list} FROM {STAGE} ORDER BY {keys}, {SEQ} DESC ON CONFLICT ({keys}) {action}",
                    t = self.table
                )
            }
        };
        self.client.batch_execute(&sql).await.map_err(|e| {
            let err = self.fail(e, "moving staged rows into");
            if err.message().contains("ON CONFLICT specification") {
                err.with_hint(
                    "upsert needs a primary key or unique index on exactly the key columns",
                )
            } else {
                err
            }
        })?;
        self.rows = staged;
        if self.stream.is_some() {
            return self.advance_stream().await;
        }
        if !self.record().await? {
            ledger::lost_race(&self.step, &self.run_id);
            self.abort().await;
            self.already = true;
        }
        Ok(())
    }

    async fn commit(&mut self) -> Result<CommitOutcome, StepError> {
        if self.already {
            return Ok(CommitOutcome::AlreadyPublished);
        }
        if self.in_transaction {
            self.client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| self.fail(e, "committing"))?;
            self.in_transaction = false;
            if self.stream.is_some() {
                tracing::debug!(step = %self.step, table = %self.table, rows = self.rows, "committed");
            } else {
                tracing::info!(step = %self.step, table = %self.table, rows = self.rows, mode = ?self.options.mode, "committed");
            }
        }
        Ok(CommitOutcome::Published)
    }

    async fn abort(&mut self) {
        self.copy = None;
        if self.in_transaction {
            let _ = self.client.batch_execute("ROLLBACK").await;
            self.in_transaction = false;
        }
    }

    async fn stream_offsets(&mut self) -> Result<Option<StreamOffsets>, StepError> {
        match &self.stream {
            Some((cursor, offsets)) => Ok(Some(
                stream::committed(&self.client, offsets, cursor, &self.step).await?,
            )),
            None => Ok(None),
        }
    }

    fn metrics(&self) -> Metrics {
        vec![("rows_staged", self.rows)]
    }
}

impl PgSink {
    /// In a stream: moves the offsets in the load's transaction; when another process moved
    /// them first, rolls back (the micro-batch is there already, or the stream is run twice).
    async fn advance_stream(&mut self) -> Result<(), StepError> {
        let Some((cursor, offsets)) = self.stream.clone() else {
            return Ok(());
        };
        if stream::advance(&self.client, &offsets, &cursor, &self.step).await? {
            return Ok(());
        }
        self.abort().await;
        match stream::progress(&self.client, &offsets, &cursor, &self.step).await? {
            StreamProgress::Committed => {
                tracing::info!(step = %self.step, table = %self.table, "another process committed this micro-batch first; rolled back");
                self.already = true;
                Ok(())
            }
            StreamProgress::Behind => Err(StepError::transient(format!(
                "step \"{}\": the offsets of stream \"{}\" moved while this micro-batch was loaded; rolled back",
                self.step,
                cursor.app()
            ))),
        }
    }
}

impl LoadMethods {
    /// Writes rows into a PostgreSQL table, atomically at the end of the run.
    pub async fn postgres(
        options: PostgresLoadOptions,
        setup: StepSetup,
    ) -> Result<Box<dyn Sink>, StepError> {
        let conn = setup.connection_setup()?;
        let client = connect(&conn).await?;
        // A stream keeps offsets instead of one ledger row per micro-batch.
        let ledger = (options.ledger && setup.stream.is_none())
            .then(|| ledger_name(&options.table, quote_ident));
        if setup.stream.is_some() && options.mode == PgWriteMode::Overwrite {
            return Err(ledger::overwrite_in_stream(&setup.step));
        }
        let stream = setup
            .stream
            .clone()
            .map(|c| (c, stream::offsets_table(&options.table)));
        let mut sink = PgSink {
            step: setup.step.clone(),
            table: quote_table(&options.table),
            options,
            client,
            copy: None,
            columns: Vec::new(),
            rows: 0,
            in_transaction: false,
            pipeline: setup.pipeline.clone(),
            run_id: setup.run_id.clone(),
            ledger,
            already: false,
            stream,
        };
        sink.open_ledger(setup.resumed).await?;
        if let Some((cursor, offsets)) = sink.stream.clone() {
            stream::ensure(&sink.client, &offsets, &sink.step).await?;
            if !cursor.is_discovering()
                && stream::progress(&sink.client, &offsets, &cursor, &sink.step).await?
                    == StreamProgress::Committed
            {
                tracing::info!(step = %sink.step, table = %sink.table, "this micro-batch is already in the table (committed before a restart); not loading it again");
                sink.already = true;
            }
        }
        Ok(Box::new(sink))
    }
}
