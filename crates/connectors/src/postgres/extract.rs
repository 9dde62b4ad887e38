//! `ExtractMethods::postgres`: a table or a query, streamed with
//! `COPY (query) TO STDOUT (FORMAT binary)` and decoded straight into Polars columns, optionally
//! split into range partitions read in parallel from one exported snapshot.

use super::decode::{Decoder, Kind, kind_of};
use super::{connect, pg_error, quote_ident};
use crate::ExtractMethods;
use crate::sql::{PartitionOptions, ReaderSource, SourceShape};
use futures::StreamExt;
use pipeline_base::StepError;
use pipeline_data::method::MethodOptions;
use pipeline_data::polars::prelude::DataFrame;
use pipeline_data::{OptionsError, Source, StepSetup};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::sync::mpsc;

/// How `numeric` columns are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NumericMode {
    /// Exact decimals with the column's precision and scale (38, 18 when unconstrained).
    #[default]
    Decimal,
    /// 64-bit floats (faster, inexact).
    F64,
}

/// Options of the `postgres` extract.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresExtractOptions {
    /// A table (`orders` or `shop.orders`); give this or `query`.
    #[serde(default)]
    pub table: Option<String>,
    /// Columns of `table` to read (default: all).
    #[serde(default)]
    pub columns: Vec<String>,
    /// A SELECT query; give this or `table`.
    #[serde(default)]
    pub query: Option<String>,
    /// Rows per batch handed to the next step (default 131072).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// `decimal` (default) or `f64`.
    #[serde(default)]
    pub numeric: NumericMode,
    /// Read ranges of a column in parallel.
    #[serde(default)]
    pub partition: Option<PartitionOptions>,
}

fn default_batch_size() -> usize {
    131_072
}

impl MethodOptions for PostgresExtractOptions {
    fn check(&self) -> Result<(), OptionsError> {
        self.shape().check()
    }
}

impl PostgresExtractOptions {
    fn shape(&self) -> SourceShape<'_> {
        SourceShape {
            table: self.table.as_deref(),
            columns: &self.columns,
            query: self.query.as_deref(),
            batch_size: self.batch_size,
            partition: self.partition.as_ref(),
        }
    }

    /// The SELECT this extract reads.
    fn select(&self) -> String {
        self.shape().select(quote_ident, quote_table)
    }
}

/// `shop.orders` → `"shop"."orders"`.
pub(crate) fn quote_table(name: &str) -> String {
    name.split('.')
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

/// The planner's row count of a table (`reltuples`), when it has one.
async fn estimate(client: &tokio_postgres::Client, table: Option<&str>) -> Option<u64> {
    let table = quote_table(table?);
    let row = client
        .query_one(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass($1)",
            &[&table],
        )
        .await
        .ok()?;
    let n: i64 = row.get(0);
    (n > 0).then_some(n as u64)
}

/// Streams one COPY into frames of `batch_size` rows.
async fn stream(
    client: tokio_postgres::Client,
    sql: String,
    columns: Vec<(String, Kind)>,
    batch_size: usize,
    tx: mpsc::Sender<Result<DataFrame, StepError>>,
) {
    let result = async {
        let copy = format!("COPY ({sql}) TO STDOUT (FORMAT binary)");
        let stream = client
            .copy_out(copy.as_str())
            .await
            .map_err(|e| pg_error(e, "starting COPY"))?;
        futures::pin_mut!(stream);
        let mut decoder = Decoder::new(&columns);
        let mut pending: Vec<u8> = Vec::new();
        let mut ended = false;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| pg_error(e, "reading COPY data"))?;
            if pending.is_empty() {
                let (used, end) = decoder.decode(&chunk)?;
                pending.extend_from_slice(chunk.get(used..).unwrap_or_default());
                ended |= end;
            } else {
                pending.extend_from_slice(&chunk);
                let (used, end) = decoder.decode(&pending)?;
                pending.drain(..used);
                ended |= end;
            }
            if decoder.rows() >= batch_size {
                let df = decoder.take_frame()?;
                if tx.send(Ok(df)).await.is_err() {
                    return Ok(()); // the run stopped reading
                }
            }
        }
        if !ended {
            return Err(StepError::transient(
                "the COPY stream ended before its trailer",
            ));
        }
        if decoder.rows() > 0 {
            let _ = tx.send(Ok(decoder.take_frame()?)).await;
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        let _ = tx.send(Err(e)).await;
    }
}

impl ExtractMethods {
    /// Reads a PostgreSQL table or query by binary COPY.
    pub async fn postgres(
        options: PostgresExtractOptions,
        setup: StepSetup,
    ) -> Result<Box<dyn Source>, StepError> {
        let conn = setup.connection_setup()?;
        let step = setup.step.clone();
        let sql = options.select();
        let client = connect(&conn).await?;
        let statement = client
            .prepare(&sql)
            .await
            .map_err(|e| pg_error(e, &format!("step \"{step}\": preparing the query")))?;
        let columns = statement
            .columns()
            .iter()
            .map(|c| {
                kind_of(
                    c.name(),
                    c.type_(),
                    c.type_modifier(),
                    options.numeric == NumericMode::F64,
                )
                .map(|k| (c.name().to_string(), k))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.context(format!("step \"{step}\"")))?;
        let estimate = estimate(&client, options.table.as_deref()).await;
        let (tx, rx) = mpsc::channel(2);
        let Some(partition) = options.partition.clone().filter(|p| p.partitions > 1) else {
            let reader = tokio::spawn(stream(client, sql, columns, options.batch_size, tx));
            return Ok(Box::new(ReaderSource {
                rx,
                estimate,
                _keep: None,
                readers: vec![reader],
            }));
        };
        let col_type = statement
            .columns()
            .iter()
            .find(|c| c.name() == partition.column)
            .map(|c| c.type_().clone())
            .ok_or_else(|| {
                StepError::user(format!(
                    "step \"{step}\": partition column \"{}\" is not among the columns read",
                    partition.column
                ))
            })?;
        let ranges = super::partition::ranges(&client, &sql, &partition, &col_type).await?;
        // One snapshot for every partition, so that together they read one consistent table.
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(|e| pg_error(e, "starting the snapshot"))?;
        let snapshot: String = client
            .query_one("SELECT pg_export_snapshot()", &[])
            .await
            .map_err(|e| pg_error(e, "exporting the snapshot"))?
            .get(0);
        let mut readers = Vec::new();
        for predicate in ranges {
            let worker = connect(&conn).await?;
            worker
                .batch_execute(&format!(
                    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{snapshot}'"
                ))
                .await
                .map_err(|e| pg_error(e, "joining the snapshot"))?;
            let part_sql = format!("SELECT * FROM ({sql}) AS pipectl_q WHERE {predicate}");
            readers.push(tokio::spawn(stream(
                worker,
                part_sql,
                columns.clone(),
                options.batch_size,
                tx.clone(),
            )));
        }
        tracing::debug!(step = %step, partitions = partition.partitions, column = %partition.column, "partitioned read started");
        Ok(Box::new(ReaderSource {
            rx,
            estimate,
            _keep: Some(Box::new(client)),
            readers,
        }))
    }
}
