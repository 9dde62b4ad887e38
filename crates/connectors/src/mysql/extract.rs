//! `ExtractMethods::mysql`: a table or a query, executed as a prepared statement (binary
//! protocol) and decoded straight into Polars columns, optionally split into key ranges read
//! in parallel (one connection each), or read in one consistent snapshot.

use super::decode::{Decoder, Kind, kind_of};
use super::{connect, my_error, quote_ident, quote_table, table_parts};
use crate::ExtractMethods;
use crate::sql::{PartitionOptions, ReaderSource, SourceShape};
use mysql_async::prelude::Queryable;
use pipeline_base::StepError;
use pipeline_data::method::MethodOptions;
use pipeline_data::polars::prelude::DataFrame;
use pipeline_data::{OptionsError, Source, StepSetup};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::sync::mpsc;

/// Options of the `mysql` extract.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MysqlExtractOptions {
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
    /// Read ranges of a column in parallel, one connection each (MySQL cannot share a snapshot
    /// across connections: each range sees the table as of its own start).
    #[serde(default)]
    pub partition: Option<PartitionOptions>,
    /// Read in one `START TRANSACTION WITH CONSISTENT SNAPSHOT` on one connection (not with
    /// `partition`).
    #[serde(default)]
    pub consistent: bool,
}

fn default_batch_size() -> usize {
    131_072
}

impl MethodOptions for MysqlExtractOptions {
    fn check(&self) -> Result<(), OptionsError> {
        self.shape().check()?;
        if self.consistent && self.partition.as_ref().is_some_and(|p| p.partitions > 1) {
            return Err(OptionsError::new(
                "/consistent",
                "\"consistent\" reads on one connection, which \"partition\" splits",
            )
            .with_hint("MySQL cannot share one snapshot across connections: choose one"));
        }
        Ok(())
    }
}

impl MysqlExtractOptions {
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

/// The server's row estimate of a table (`information_schema.TABLES.TABLE_ROWS`).
async fn estimate(conn: &mut mysql_async::Conn, table: Option<&str>) -> Option<u64> {
    let (schema, table) = table_parts(table?);
    let n: Option<Option<u64>> = conn
        .query_first(format!(
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = {schema} AND TABLE_NAME = {table}"
        ))
        .await
        .ok()?;
    n.flatten().filter(|n| *n > 0)
}

/// The columns and kinds a query returns, from its prepared statement.
async fn describe(
    conn: &mut mysql_async::Conn,
    sql: &str,
    step: &str,
) -> Result<Vec<(String, Kind)>, StepError> {
    let statement = conn
        .prep(sql)
        .await
        .map_err(|e| my_error(e, &format!("step \"{step}\": preparing the query")))?;
    let columns = statement
        .columns()
        .iter()
        .map(|c| kind_of(c).map(|k| (c.name_str().to_string(), k)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.context(format!("step \"{step}\"")));
    let _ = conn.close(statement).await;
    columns
}

/// Executes one SELECT and sends its rows as frames of `batch_size` rows.
async fn stream(
    mut conn: mysql_async::Conn,
    sql: String,
    begin: Option<&'static str>,
    batch_size: usize,
    step: String,
    tx: mpsc::Sender<Result<DataFrame, StepError>>,
) {
    let result: Result<u64, StepError> = async {
        if let Some(begin) = begin {
            conn.query_drop(begin)
                .await
                .map_err(|e| my_error(e, "starting the snapshot"))?;
        }
        let reading = |e| my_error(e, &format!("step \"{step}\": reading rows"));
        let mut result = conn.exec_iter(sql.as_str(), ()).await.map_err(reading)?;
        let columns = result
            .columns_ref()
            .iter()
            .map(|c| kind_of(c).map(|k| (c.name_str().to_string(), k)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut decoder = Decoder::new(&columns);
        while let Some(row) = result.next().await.map_err(reading)? {
            decoder.push(row.unwrap_raw())?;
            if decoder.rows() >= batch_size {
                let df = decoder.take_frame()?;
                if tx.send(Ok(df)).await.is_err() {
                    return Ok(decoder.zero_dates); // the run stopped reading
                }
            }
        }
        if decoder.rows() > 0 {
            let _ = tx.send(Ok(decoder.take_frame()?)).await;
        }
        Ok(decoder.zero_dates)
    }
    .await;
    match result {
        Ok(0) => {}
        Ok(n) => {
            tracing::warn!(step = %step, zero_dates = n, "zero or invalid dates (0000-00-00, 2024-02-31) were read as NULL")
        }
        Err(e) => {
            let _ = tx.send(Err(e)).await;
        }
    }
    let _ = conn.disconnect().await;
}

impl ExtractMethods {
    /// Reads a MySQL table or query with the binary protocol.
    pub async fn mysql(
        options: MysqlExtractOptions,
        setup: StepSetup,
    ) -> Result<Box<dyn Source>, StepError> {
        let conn_setup = setup.connection_setup()?;
        let step = setup.step.clone();
        let sql = options.select();
        let mut conn = connect(&conn_setup, false).await?;
        let columns = describe(&mut conn, &sql, &step).await?;
        let estimate = estimate(&mut conn, options.table.as_deref()).await;
        let (tx, rx) = mpsc::channel(2);
        let begin = options
            .consistent
            .then_some("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY");
        let Some(partition) = options.partition.clone().filter(|p| p.partitions > 1) else {
            let reader = tokio::spawn(stream(conn, sql, begin, options.batch_size, step, tx));
            return Ok(Box::new(ReaderSource {
                rx,
                estimate,
                readers: vec![reader],
                _keep: None,
            }));
        };
        let kind = columns
            .iter()
            .find(|(n, _)| *n == partition.column)
            .map(|(_, k)| *k)
            .ok_or_else(|| {
                StepError::user(format!(
                    "step \"{step}\": partition column \"{}\" is not among the columns read",
                    partition.column
                ))
            })?;
        let ranges = super::partition::ranges(&mut conn, &sql, &partition, kind)
            .await
            .map_err(|e| e.context(format!("step \"{step}\"")))?;
        let _ = conn.disconnect().await;
        let mut readers = Vec::new();
        for predicate in ranges {
            let worker = connect(&conn_setup, false).await?;
            let part_sql = format!("SELECT * FROM ({sql}) AS pipectl_q WHERE {predicate}");
            readers.push(tokio::spawn(stream(
                worker,
                part_sql,
                None,
                options.batch_size,
                step.clone(),
                tx.clone(),
            )));
        }
        tracing::debug!(step = %step, partitions = partition.partitions, column = %partition.column, "partitioned read started");
        Ok(Box::new(ReaderSource {
            rx,
            estimate,
            readers,
            _keep: None,
        }))
    }
}
