//! `LoadMethods::mysql`: rows go in by `LOAD DATA LOCAL INFILE`, fed from memory batch by
//! batch, inside one InnoDB transaction that commits only when the whole run succeeds.
//! `append` and `overwrite` (DELETE, then load) load into the target directly — one pass, and
//! still invisible to others until the commit; `upsert` loads into a temporary staging table and
//! moves the last row of each key with `INSERT … SELECT … ON DUPLICATE KEY UPDATE` at prepare.
//! The same transaction records the load in the ledger (`crate::ledger`), so a resumed run
//! skips a load that already committed.
//!
//! `LOAD DATA LOCAL` turns conversion errors, truncation and duplicate keys into warnings and
//! goes on; here any warning (or a row count that does not match) fails the load with the
//! server's first warnings quoted, and the transaction is rolled back. When the server refuses
//! local infile, batched multi-row INSERTs (strict sql_mode) take over, logged once.

use super::encode::{FrameEncoder, is_binary};
use super::load_options::{MysqlLoadOptions, MysqlWriteMode, sql_type};
use super::{connect, my_error, quote_ident, quote_table, stream, table_parts};
use crate::LoadMethods;
use crate::ledger::{self, ledger_name, no_ledger_warning};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Value};
use pipeline_base::StepError;
use pipeline_data::polars::prelude::*;
use pipeline_data::stream::{StreamCursor, StreamOffsets, StreamProgress};
use pipeline_data::{CommitOutcome, Metrics, Sink, StepSetup};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const STAGE: &str = "`pipectl_stage`";
const SEQ: &str = "`_pipectl_seq`";
/// Server errors meaning "LOAD DATA LOCAL is switched off".
const LOCAL_INFILE_REFUSED: &[u16] = &[1148, 3948, 4166];
/// Bytes per LOCAL INFILE chunk sent to the server.
const CHUNK: usize = 1 << 20;

/// Where rows go.
#[derive(Clone, Copy, PartialEq)]
enum Path {
    LoadData,
    Inserts,
}

struct MysqlSink {
    step: String,
    /// Quoted target.
    table: String,
    options: MysqlLoadOptions,
    conn: Option<Conn>,
    /// Data columns in load order (set by the first batch).
    columns: Vec<String>,
    /// Which of them are binary (sent as hex and decoded by UNHEX).
    binary: Vec<bool>,
    /// The LOAD DATA statement (set by the first batch).
    load_sql: String,
    path: Path,
    in_transaction: bool,
    /// The table was created by this load (dropped again on abort).
    created: bool,
    rows: u64,
    /// Rows written by the INSERT fallback.
    inserted: u64,
    batches: u64,
    pipeline: String,
    run_id: String,
    /// The ledger table (quoted), when the load keeps one.
    ledger: Option<String>,
    /// An earlier run with this id committed this load: write nothing.
    already: bool,
    /// In a stream: the cursor and the offsets table (see `stream.rs`).
    stream: Option<(Arc<StreamCursor>, String)>,
}

impl MysqlSink {
    /// Creates the ledger when missing (outside any transaction: DDL commits implicitly) and,
    /// for a resumed run, looks for this load in it.
    async fn open_ledger(&mut self, resumed: bool) -> Result<(), StepError> {
        let Some(ledger) = self.ledger.clone() else {
            if resumed {
                no_ledger_warning(&self.step);
            }
            return Ok(());
        };
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {ledger} (pipeline VARCHAR(255) NOT NULL, run_id VARCHAR(64) NOT NULL, step VARCHAR(255) NOT NULL, target VARCHAR(512) NOT NULL, row_count BIGINT NOT NULL, committed_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), PRIMARY KEY (pipeline, run_id, step)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        );
        let created = self.conn()?.query_drop(ddl).await;
        created.map_err(|e| {
            self.fail(e, "creating the load ledger beside")
                .with_hint(ledger::CREATE_HINT)
        })?;
        if resumed {
            let sql = format!(
                "SELECT row_count FROM {ledger} WHERE pipeline = ? AND run_id = ? AND step = ?"
            );
            let params = (
                self.pipeline.clone(),
                self.run_id.clone(),
                self.step.clone(),
            );
            let found: Result<Option<i64>, _> = self.conn()?.exec_first(sql, params).await;
            if let Some(rows) = found.map_err(|e| self.fail(e, "reading the load ledger beside"))? {
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
        let sql = format!(
            "INSERT IGNORE INTO {ledger} (pipeline, run_id, step, target, row_count) VALUES (?, ?, ?, ?, ?)"
        );
        let params = (
            self.pipeline.clone(),
            self.run_id.clone(),
            self.step.clone(),
            self.options.table.clone(),
            i64::try_from(self.rows).unwrap_or(i64::MAX),
        );
        let conn = self.conn()?;
        let result = conn.exec_drop(sql, params).await;
        let inserted = conn.affected_rows();
        result.map_err(|e| self.fail(e, "recording the load in the ledger beside"))?;
        Ok(inserted == 1)
    }
    fn conn(&mut self) -> Result<&mut Conn, StepError> {
        self.conn
            .as_mut()
            .ok_or_else(|| StepError::internal("the MySQL connection is gone"))
    }

    fn fail(&self, e: mysql_async::Error, doing: &str) -> StepError {
        my_error(
            e,
            &format!(
                "step \"{}\": {doing} table {}",
                self.step, self.options.table
            ),
        )
    }

    /// The data columns, quoted and comma-separated.
    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    }

    async fn run(&mut self, sql: &str, doing: &str) -> Result<(), StepError> {
        let result = self.conn()?.query_drop(sql).await;
        result.map_err(|e| self.fail(e, doing))
    }

    /// `(engine, columns)` of the target, or `None` when it does not exist.
    async fn target(&mut self) -> Result<Option<(String, Vec<String>)>, StepError> {
        let (schema, table) = table_parts(&self.options.table);
        let engine: Option<Option<String>> = {
            let sql = format!(
                "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = {schema} AND TABLE_NAME = {table}"
            );
            let r = self.conn()?.query_first(sql).await;
            r.map_err(|e| self.fail(e, "looking up"))?
        };
        let Some(engine) = engine else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {schema} AND TABLE_NAME = {table} ORDER BY ORDINAL_POSITION"
        );
        let r = self.conn()?.query(sql).await;
        let columns: Vec<String> = r.map_err(|e| self.fail(e, "reading the columns of"))?;
        Ok(Some((engine.unwrap_or_default(), columns)))
    }

    /// Whether a primary key or unique index covers exactly the key columns (whole columns:
    /// functional and prefix key parts do not count; names compare case-insensitively).
    async fn key_is_unique(&mut self) -> Result<bool, StepError> {
        let (schema, table) = table_parts(&self.options.table);
        let sql = format!(
            "SELECT INDEX_NAME, COLUMN_NAME, SUB_PART FROM information_schema.STATISTICS
             WHERE TABLE_SCHEMA = {schema} AND TABLE_NAME = {table} AND NON_UNIQUE = 0"
        );
        let r = self.conn()?.query(sql).await;
        let parts: Vec<(String, Option<String>, Option<u64>)> =
            r.map_err(|e| self.fail(e, "reading the indexes of"))?;
        let mut indexes: BTreeMap<String, Option<BTreeSet<String>>> = BTreeMap::new();
        for (index, column, sub_part) in parts {
            let entry = indexes
                .entry(index)
                .or_insert_with(|| Some(BTreeSet::new()));
            match (column, sub_part, entry.as_mut()) {
                (Some(c), None, Some(set)) => {
                    set.insert(c.to_lowercase());
                }
                // A functional or prefix part: the index is not unique on whole columns.
                _ => *entry = None,
            }
        }
        let want: BTreeSet<String> = self.options.key.iter().map(|k| k.to_lowercase()).collect();
        Ok(indexes.values().flatten().any(|cols| *cols == want))
    }

    /// First batch: create the table if asked, check it, stage, begin.
    async fn start(&mut self, df: &DataFrame) -> Result<(), StepError> {
        let upsert = self.options.mode == MysqlWriteMode::Upsert;
        let (engine, target) = match self.target().await? {
            Some(t) => t,
            None if self.options.create_table => {
                let defs = df
                    .columns()
                    .iter()
                    .map(|c| {
                        let key = self.options.key.iter().any(|k| k == c.name().as_str());
                        Ok(format!(
                            "{} {}{}",
                            quote_ident(c.name()),
                            sql_type(c.dtype(), c.name(), key)?,
                            if key { " NOT NULL" } else { "" }
                        ))
                    })
                    .collect::<Result<Vec<_>, StepError>>()?;
                let mut ddl = format!("CREATE TABLE {} ({}", self.table, defs.join(", "));
                if upsert {
                    let keys: Vec<String> =
                        self.options.key.iter().map(|k| quote_ident(k)).collect();
                    ddl.push_str(&format!(", PRIMARY KEY ({})", keys.join(", ")));
                }
                ddl.push_str(") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4");
                self.run(&ddl, "creating").await?;
                self.created = true;
                tracing::info!(step = %self.step, table = %self.table, "created the table");
                self.target().await?.unwrap_or_default()
            }
            None => {
                return Err(StepError::user(format!(
                    "step \"{}\": table {} does not exist",
                    self.step, self.options.table
                ))
                .with_hint("create it, or set \"create_table\": true"));
            }
        };
        if !engine.eq_ignore_ascii_case("InnoDB") {
            let engine = if engine.is_empty() {
                "no storage engine (a view?)".to_string()
            } else {
                format!("the {engine} engine")
            };
            return Err(StepError::user(format!(
                "step \"{}\": table {} uses {engine}, which cannot roll back a failed load",
                self.step, self.options.table
            ))
            .with_hint(format!(
                "the mysql load needs InnoDB for its all-or-nothing guarantee: ALTER TABLE {} ENGINE=InnoDB",
                self.table
            )));
        }
        for c in df.columns() {
            if !target.iter().any(|t| t.eq_ignore_ascii_case(c.name())) {
                return Err(StepError::user(format!(
                    "step \"{}\": column \"{}\" is not in table {}",
                    self.step,
                    c.name(),
                    self.options.table
                ))
                .with_hint("add the column to the table, or drop it with a select/drop step"));
            }
        }
        for k in &self.options.key {
            if df.column(k).is_err() {
                return Err(StepError::user(format!(
                    "step \"{}\": key column \"{k}\" is not in the data",
                    self.step
                )));
            }
        }
        if upsert && !self.key_is_unique().await? {
            return Err(StepError::user(format!(
                "step \"{}\": table {} has no primary key or unique index on exactly ({})",
                self.step,
                self.options.table,
                self.options.key.join(", ")
            ))
            .with_hint("upsert needs one, or the rows would be inserted twice"));
        }
        self.columns = df.columns().iter().map(|c| c.name().to_string()).collect();
        self.binary = df.columns().iter().map(|c| is_binary(c.dtype())).collect();
        let list = self.column_list();
        let into = if upsert {
            // No keys in the stage: duplicates within the load are collapsed at prepare.
            self.run(
                &format!("DROP TEMPORARY TABLE IF EXISTS {STAGE}"),
                "staging rows for",
            )
            .await?;
            self.run(
                &format!(
                    "CREATE TEMPORARY TABLE {STAGE} ({SEQ} BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY) SELECT {list} FROM {} LIMIT 0",
                    self.table
                ),
                "staging rows for",
            )
            .await?;
            STAGE.to_string()
        } else {
            self.table.clone()
        };
        // LOAD DATA's defaults: tab-separated, backslash escapes, `\N` for NULL, one row a line.
        let mut fields = Vec::new();
        let mut sets = Vec::new();
        for (i, c) in df.columns().iter().enumerate() {
            if self.binary.get(i).copied().unwrap_or(false) {
                fields.push(format!("@pipectl_b{i}"));
                sets.push(format!("{} = UNHEX(@pipectl_b{i})", quote_ident(c.name())));
            } else {
                fields.push(quote_ident(c.name()));
            }
        }
        self.load_sql = format!(
            "LOAD DATA LOCAL INFILE 'pipectl' INTO TABLE {into} CHARACTER SET utf8mb4 ({})",
            fields.join(", ")
        );
        if !sets.is_empty() {
            self.load_sql.push_str(&format!(" SET {}", sets.join(", ")));
        }
        self.run("START TRANSACTION", "starting a transaction for")
            .await?;
        self.in_transaction = true;
        if self.options.mode == MysqlWriteMode::Overwrite {
            // DELETE, not TRUNCATE: TRUNCATE would commit at once.
            self.run(&format!("DELETE FROM {}", self.table), "emptying")
                .await?;
        }
        Ok(())
    }

    /// The server's first warnings, quoted.
    async fn warnings(&mut self) -> String {
        let Ok(conn) = self.conn() else {
            return String::new();
        };
        let rows: Vec<(String, u32, String)> = conn
            .query("SHOW WARNINGS LIMIT 5")
            .await
            .unwrap_or_default();
        rows.iter()
            .map(|(level, code, message)| format!("{level} {code}: {message}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// One batch by LOAD DATA; `Ok(false)` when the server refuses local infile.
    async fn load_data(&mut self, encoder: Arc<FrameEncoder>) -> Result<bool, StepError> {
        let rows = encoder.rows();
        let data = pipeline_data::blocking(move || {
            let mut out = Vec::with_capacity(rows.saturating_mul(64));
            encoder.tsv(0..encoder.rows(), &mut out);
            Ok(Bytes::from(out))
        })
        .await?;
        let chunks: Vec<std::io::Result<Bytes>> = (0..data.len())
            .step_by(CHUNK)
            .map(|at| Ok(data.slice(at..at.saturating_add(CHUNK).min(data.len()))))
            .collect();
        let sql = self.load_sql.clone();
        let conn = self.conn()?;
        conn.set_infile_handler(async move {
            Ok(futures::stream::iter(chunks).boxed() as mysql_async::InfileData)
        });
        match conn.query_drop(sql).await {
            Ok(()) => {}
            Err(mysql_async::Error::Server(s)) if LOCAL_INFILE_REFUSED.contains(&s.code) => {
                return Ok(false);
            }
            Err(e) => return Err(self.fail(e, "loading rows into")),
        }
        let (warnings, affected) = {
            let conn = self.conn()?;
            (conn.get_warnings(), conn.affected_rows())
        };
        if warnings > 0 || affected != rows as u64 {
            let quoted = self.warnings().await;
            return Err(StepError::user(format!(
                "step \"{}\": loading batch {} ({rows} rows) into table {}: the server reported {warnings} warnings and took {affected} rows; any warning fails the load, and nothing was written: {quoted}",
                self.step,
                self.batches.saturating_add(1),
                self.options.table
            ))
            .with_hint("row numbers count from the start of the batch; fix the data or widen the column (a cast or filter step), or check the table's keys"));
        }
        Ok(true)
    }

    /// One batch by multi-row prepared INSERTs (local infile refused).
    async fn insert_rows(&mut self, encoder: Arc<FrameEncoder>) -> Result<(), StepError> {
        let ncols = self.columns.len().max(1);
        let per_statement = 60_000usize.checked_div(ncols).unwrap_or(1).clamp(1, 1000);
        let list = self.column_list();
        let into = if self.options.mode == MysqlWriteMode::Upsert {
            STAGE.to_string()
        } else {
            self.table.clone()
        };
        let tuple = format!("({})", vec!["?"; ncols].join(", "));
        let statement = |n: usize| {
            format!(
                "INSERT INTO {into} ({list}) VALUES {}",
                vec![tuple.as_str(); n].join(", ")
            )
        };
        let rows = encoder.rows();
        let mut at = 0;
        while at < rows {
            let n = per_statement.min(rows.saturating_sub(at));
            let mut values: Vec<Value> = Vec::with_capacity(n.saturating_mul(ncols));
            for i in at..at.saturating_add(n) {
                encoder.values(i, &mut values);
            }
            let sql = statement(n);
            let result = self
                .conn()?
                .exec_drop(sql, Params::Positional(values))
                .await;
            result.map_err(|e| self.fail(e, "inserting rows into"))?;
            at = at.saturating_add(n);
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for MysqlSink {
    async fn write(&mut self, df: DataFrame) -> Result<(), StepError> {
        if df.height() == 0 || self.already {
            return Ok(());
        }
        if self.columns.is_empty() {
            self.start(&df).await?;
        }
        for (name, binary) in self.columns.iter().zip(&self.binary) {
            if let Ok(c) = df.column(name)
                && is_binary(c.dtype()) != *binary
            {
                return Err(StepError::user(format!(
                    "step \"{}\": column \"{name}\" changed type between batches (now {})",
                    self.step,
                    c.dtype()
                ))
                .with_hint("cast it to one type in a transform step before the load"));
            }
        }
        let encoder = FrameEncoder::new(&df, &self.columns)
            .map_err(|e| e.context(format!("step \"{}\"", self.step)))?;
        let encoder = Arc::new(encoder);
        if self.path == Path::LoadData && !self.load_data(encoder.clone()).await? {
            tracing::warn!(
                step = %self.step,
                "the server refuses LOAD DATA LOCAL INFILE: loading with batched INSERTs, which is several times slower; enable it with SET GLOBAL local_infile = 1 (MySQL 8 turns it off by default)"
            );
            self.path = Path::Inserts;
        }
        if self.path == Path::Inserts {
            self.insert_rows(encoder).await?;
            self.inserted += df.height() as u64;
        }
        self.rows += df.height() as u64;
        self.batches += 1;
        Ok(())
    }

    async fn prepare(&mut self) -> Result<(), StepError> {
        if self.options.mode == MysqlWriteMode::Upsert && !self.columns.is_empty() {
            self.move_staged().await?;
        }
        if let Some((cursor, offsets)) = self.stream.clone() {
            if self.already {
                return Ok(());
            }
            if !self.in_transaction {
                // No rows for this table in the micro-batch: its offsets still move on.
                self.run("START TRANSACTION", "starting a transaction for")
                    .await?;
                self.in_transaction = true;
            }
            let step = self.step.clone();
            if !stream::advance(self.conn()?, &offsets, &cursor, &step).await? {
                tracing::info!(step = %self.step, table = %self.table, "another process committed this micro-batch first; rolled back");
                // The table (if this load created it) holds the other process's rows now.
                self.created = false;
                self.rollback().await;
                self.already = true;
            }
            return Ok(());
        }
        if self.in_transaction && !self.record().await? {
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
        self.commit_transaction().await?;
        Ok(CommitOutcome::Published)
    }

    async fn abort(&mut self) {
        self.rollback().await;
    }

    async fn stream_offsets(&mut self) -> Result<Option<StreamOffsets>, StepError> {
        let Some((cursor, offsets)) = self.stream.clone() else {
            return Ok(None);
        };
        let step = self.step.clone();
        Ok(Some(
            stream::committed(self.conn()?, &offsets, &cursor, &step).await?,
        ))
    }

    fn metrics(&self) -> Metrics {
        vec![
            ("rows_loaded", self.rows),
            ("rows_by_insert", self.inserted),
        ]
    }
}

impl MysqlSink {
    /// `upsert`: the staged rows go into the target, the last row of each key winning.
    async fn move_staged(&mut self) -> Result<(), StepError> {
        let list = self.column_list();
        let keys = self
            .options
            .key
            .iter()
            .map(|k| quote_ident(k))
            .collect::<Vec<_>>()
            .join(", ");
        let mut updates: Vec<String> = self
            .columns
            .iter()
            .filter(|c| !self.options.key.contains(c))
            .map(|c| format!("{q} = VALUES({q})", q = quote_ident(c)))
            .collect();
        if updates.is_empty()
            && let Some(k) = self.options.key.first()
        {
            let k = quote_ident(k);
            updates.push(format!("{k} = {k}"));
        }
        // The last staged row of each key wins (one reference to the temporary table: MySQL
        // cannot open it twice in one statement).
        let sql = format!(
            "INSERT INTO {t} ({list}) SELECT {list} FROM (SELECT {list}, ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY {SEQ} DESC) AS `_pipectl_rn` FROM {STAGE}) AS s WHERE `_pipectl_rn` = 1 ON DUPLICATE KEY UPDATE {}",
            updates.join(", "),
            t = self.table
        );
        // The stage goes with the session (dropping it inside the transaction can be refused
        // under GTID consistency).
        self.run(&sql, "moving staged rows into").await
    }

    async fn commit_transaction(&mut self) -> Result<(), StepError> {
        if self.in_transaction {
            let result = self.conn()?.query_drop("COMMIT").await;
            self.in_transaction = false;
            match result {
                Ok(()) => {}
                Err(e @ mysql_async::Error::Server(_)) => return Err(self.fail(e, "committing")),
                // The connection went away while committing: the server may or may not have
                // committed, and a retry could load the rows twice.
                Err(e) => {
                    let hint = if self.ledger.is_some() {
                        format!(
                            "run the pipeline again with --resume {}: the load ledger tells whether this load committed, and it is not loaded twice",
                            self.run_id
                        )
                    } else {
                        "check the table before running the pipeline again; it was not retried to avoid loading the rows twice".to_string()
                    };
                    return Err(StepError::external(format!(
                        "step \"{}\": the connection to MySQL was lost while committing table {}, so whether the load committed is unknown: {e}",
                        self.step, self.options.table
                    ))
                    .with_hint(hint));
                }
            }
            if self.stream.is_some() {
                tracing::debug!(step = %self.step, table = %self.table, rows = self.rows, "committed");
            } else {
                tracing::info!(step = %self.step, table = %self.table, rows = self.rows, mode = ?self.options.mode, "committed");
            }
        }
        if let Some(conn) = self.conn.take() {
            let _ = conn.disconnect().await;
        }
        Ok(())
    }

    async fn rollback(&mut self) {
        if self.in_transaction {
            let _ = self.run("ROLLBACK", "rolling back").await;
            self.in_transaction = false;
        }
        if self.created {
            let drop = format!("DROP TABLE IF EXISTS {}", self.table);
            let _ = self.run(&drop, "dropping").await;
            self.created = false;
        }
        if let Some(conn) = self.conn.take() {
            let _ = conn.disconnect().await;
        }
    }
}

impl LoadMethods {
    /// Writes rows into a MySQL table, atomically at the end of the run.
    pub async fn mysql(
        options: MysqlLoadOptions,
        setup: StepSetup,
    ) -> Result<Box<dyn Sink>, StepError> {
        let conn_setup = setup.connection_setup()?;
        let conn = connect(&conn_setup, true).await?;
        // A stream keeps offsets instead of one ledger row per micro-batch.
        let ledger = (options.ledger && setup.stream.is_none())
            .then(|| ledger_name(&options.table, quote_ident));
        if setup.stream.is_some() && options.mode == MysqlWriteMode::Overwrite {
            return Err(ledger::overwrite_in_stream(&setup.step));
        }
        let stream = setup
            .stream
            .clone()
            .map(|c| (c, stream::offsets_table(&options.table)));
        let mut sink = MysqlSink {
            stream,
            pipeline: setup.pipeline.clone(),
            run_id: setup.run_id.clone(),
            ledger,
            already: false,
            step: setup.step.clone(),
            table: quote_table(&options.table),
            options,
            conn: Some(conn),
            columns: Vec::new(),
            binary: Vec::new(),
            load_sql: String::new(),
            path: Path::LoadData,
            in_transaction: false,
            created: false,
            rows: 0,
            inserted: 0,
            batches: 0,
        };
        if let Err(e) = sink.open_ledger(setup.resumed).await {
            sink.rollback().await;
            return Err(e);
        }
        if let Some((cursor, offsets)) = sink.stream.clone() {
            let step = sink.step.clone();
            let conn = sink.conn()?;
            stream::ensure(conn, &offsets, &step).await?;
            if !cursor.is_discovering()
                && stream::progress(conn, &offsets, &cursor, &step).await?
                    == StreamProgress::Committed
            {
                tracing::info!(step = %step, table = %sink.table, "this micro-batch is already in the table (committed before a restart); not loading it again");
                sink.already = true;
            }
        }
        Ok(Box::new(sink))
    }
}
