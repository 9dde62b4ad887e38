//! Load steps on Spark: Delta tables (append, overwrite, upsert by `MERGE`), files on S3 or
//! local disk, and PostgreSQL/MySQL tables over JDBC. An upsert into a database goes to a
//! staging table through Spark, then pipectl merges it over its own connection in one
//! transaction and drops the staging table.

use crate::check::Refusal;
use crate::compile::At;
use crate::expr::ident;
use crate::relations::{self, SaveMode};
use crate::run::Runner;
use crate::sources::Jdbc;
use pipeline_base::StepError;
use pipeline_connectors as c;
use pipeline_core::Plan;

pub enum LoadMode {
    Append,
    Overwrite,
    Upsert(Vec<String>),
}

pub enum Load {
    Delta {
        input: String,
        connection: Option<String>,
        path: String,
        mode: LoadMode,
        partition_by: Vec<String>,
    },
    Files {
        input: String,
        connection: Option<String>,
        path: String,
        format: &'static str,
        mode: SaveMode,
        partition_by: Vec<String>,
        /// Spark's codec name, as pipectl compresses the format.
        compression: &'static str,
    },
    Jdbc {
        input: String,
        system: Jdbc,
        connection: String,
        table: String,
        mode: LoadMode,
    },
    Kafka {
        input: String,
        connection: String,
        options: c::KafkaLoadOptions,
    },
}

impl Load {
    /// The view the load writes.
    pub fn input(&self) -> &str {
        match self {
            Load::Delta { input, .. }
            | Load::Files { input, .. }
            | Load::Jdbc { input, .. }
            | Load::Kafka { input, .. } => input,
        }
    }
}

pub fn compile_load(at: &At<'_>, _plan: &Plan) -> Result<Load, Refusal> {
    let input = at.input(0)?;
    let connection = at.step.connection.clone();
    let key_mode = |key: Vec<String>| {
        if key.is_empty() {
            Err(at.refuse("/options/key", "an upsert needs \"key\""))
        } else {
            Ok(LoadMode::Upsert(key))
        }
    };
    Ok(match at.step.method.as_str() {
        "delta" => {
            let o: c::DeltaLoadOptions = at.options()?;
            let mode = match o.mode {
                c::DeltaWriteMode::Append => LoadMode::Append,
                c::DeltaWriteMode::Overwrite => LoadMode::Overwrite,
                c::DeltaWriteMode::Upsert => key_mode(o.key)?,
            };
            Load::Delta {
                input,
                connection,
                path: o.path,
                mode,
                partition_by: o.partition_by,
            }
        }
        "s3" => {
            let o: c::S3LoadOptions = at.options()?;
            let format = match o.format {
                Some(c::FileFormat::Parquet) | None => "parquet",
                Some(c::FileFormat::Csv) => "csv",
                Some(c::FileFormat::Json) => "json",
                Some(c::FileFormat::Avro) => "avro",
            };
            Load::Files {
                input,
                connection,
                path: o.path,
                format,
                mode: match o.mode {
                    c::ObjectWriteMode::Append => SaveMode::Append,
                    c::ObjectWriteMode::Overwrite => SaveMode::Overwrite,
                },
                partition_by: o.partition_by,
                compression: match (format, o.compression) {
                    // pipectl writes Avro containers uncompressed.
                    ("avro", _) => "uncompressed",
                    (_, c::ParquetCompression::Zstd) => "zstd",
                    (_, c::ParquetCompression::Snappy) => "snappy",
                    (_, c::ParquetCompression::Uncompressed) => "uncompressed",
                },
            }
        }
        "postgres" | "mysql" => {
            let (system, table, mode) = if at.step.method == "postgres" {
                let o: c::PostgresLoadOptions = at.options()?;
                let mode = match o.mode {
                    c::PgWriteMode::Append => LoadMode::Append,
                    c::PgWriteMode::Overwrite => LoadMode::Overwrite,
                    c::PgWriteMode::Upsert => key_mode(o.key)?,
                };
                (Jdbc::Postgres, o.table, mode)
            } else {
                let o: c::MysqlLoadOptions = at.options()?;
                let mode = match o.mode {
                    c::MysqlWriteMode::Append => LoadMode::Append,
                    c::MysqlWriteMode::Overwrite => LoadMode::Overwrite,
                    c::MysqlWriteMode::Upsert => key_mode(o.key)?,
                };
                (Jdbc::Mysql, o.table, mode)
            };
            Load::Jdbc {
                input,
                system,
                connection: connection.unwrap_or_default(),
                table,
                mode,
            }
        }
        "kafka" => {
            let o: c::KafkaLoadOptions = at.options()?;
            if matches!(
                o.format,
                c::ValueFormat::Avro | c::ValueFormat::AvroConfluent
            ) {
                return Err(at.refuse(
                    "/options/format",
                    "Avro values are not produced on Spark yet",
                ));
            }
            Load::Kafka {
                input,
                connection: connection.unwrap_or_default(),
                options: o,
            }
        }
        other => {
            return Err(at.refuse(
                "/method",
                format!("the load \"{other}\" has no Spark translation yet"),
            ));
        }
    })
}

impl Runner {
    /// Runs one load; returns the rows written when Spark reports them.
    pub async fn load(&mut self, step: &str, load: &Load) -> Result<Option<u64>, StepError> {
        let what = format!("step \"{step}\"");
        let mut rows = None;
        match load {
            Load::Delta {
                input,
                connection,
                path,
                mode,
                partition_by,
            } => {
                let options = self.storage_options(connection.as_deref(), path)?;
                let location = self.location(path);
                match mode {
                    LoadMode::Append | LoadMode::Overwrite => {
                        let save = if matches!(mode, LoadMode::Append) {
                            SaveMode::Append
                        } else {
                            SaveMode::Overwrite
                        };
                        let mut command = relations::write(
                            relations::table(input),
                            "delta",
                            Some(location),
                            save,
                            options,
                        );
                        if let crate::proto::command::CommandType::WriteOperation(w) = &mut command
                        {
                            w.partitioning_columns = partition_by.clone();
                        }
                        rows = self.write_observed(command, step, &what).await?;
                    }
                    LoadMode::Upsert(key) => {
                        let exists = self.delta_exists(&location, &what).await?;
                        if exists {
                            let on: Vec<String> = key
                                .iter()
                                .map(|k| format!("t.{0} = s.{0}", ident(k)))
                                .collect();
                            let statement = format!(
                                "MERGE INTO delta.{} AS t USING {} AS s ON {} WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *",
                                ident(&location),
                                ident(input),
                                on.join(" AND ")
                            );
                            self.session
                                .command(relations::sql_command(statement), &what)
                                .await?;
                        } else {
                            let command = relations::write(
                                relations::table(input),
                                "delta",
                                Some(location),
                                SaveMode::Overwrite,
                                options,
                            );
                            rows = self.write_observed(command, step, &what).await?;
                        }
                    }
                }
            }
            Load::Files {
                input,
                connection,
                path,
                format,
                mode,
                partition_by,
                compression,
            } => {
                let mut options = self.storage_options(connection.as_deref(), path)?;
                if matches!(*format, "parquet" | "avro") {
                    options.insert("compression".into(), (*compression).into());
                }
                if *format == "csv" {
                    options.insert("header".into(), "true".into());
                }
                let data = if matches!(*format, "csv" | "json") {
                    self.text_timestamps(input, &what, false).await?
                } else {
                    relations::table(input)
                };
                let mut command =
                    relations::write(data, format, Some(self.location(path)), *mode, options);
                if let crate::proto::command::CommandType::WriteOperation(w) = &mut command {
                    w.partitioning_columns = partition_by.clone();
                }
                rows = self.write_observed(command, step, &what).await?;
            }
            Load::Kafka {
                input,
                connection,
                options,
            } => {
                rows = self
                    .kafka_load(step, input, connection, options, &what)
                    .await?
            }
            Load::Jdbc {
                input,
                system,
                connection,
                table,
                mode,
            } => {
                let mut options = self.jdbc_options(*system, connection)?;
                match mode {
                    LoadMode::Append | LoadMode::Overwrite => {
                        options.insert("dbtable".into(), system.quote(table));
                        // Overwrite keeps the table (its keys, grants, indexes): truncate, not drop.
                        options.insert("truncate".into(), "true".into());
                        let save = if matches!(mode, LoadMode::Append) {
                            SaveMode::Append
                        } else {
                            SaveMode::Overwrite
                        };
                        let command =
                            relations::write(relations::table(input), "jdbc", None, save, options);
                        rows = self.write_observed(command, step, &what).await?;
                    }
                    LoadMode::Upsert(key) => {
                        let stage = format!(
                            "{}__pipectl_stage",
                            table.rsplit('.').next().unwrap_or(table)
                        );
                        let stage = match table.rsplit_once('.') {
                            Some((schema, _)) => format!("{schema}.{stage}"),
                            None => stage,
                        };
                        options.insert("dbtable".into(), system.quote(&stage));
                        let command = relations::write(
                            relations::table(input),
                            "jdbc",
                            None,
                            SaveMode::Overwrite,
                            options,
                        );
                        rows = self.write_observed(command, step, &what).await?;
                        let columns = crate::run::fields(
                            &self.session.schema(relations::table(input), &what).await?,
                        )
                        .into_iter()
                        .map(|(name, _)| name)
                        .collect::<Vec<_>>();
                        let statements = upsert_statements(*system, table, &stage, &columns, key);
                        let setup = self.setup(connection)?;
                        c::execute_statements(&setup, &statements)
                            .await
                            .map_err(|e| e.context(&what))?;
                    }
                }
            }
        }
        Ok(rows)
    }

    /// Produces the input's rows to a topic with Spark's Kafka writer: the value as pipectl
    /// builds it (the other columns as one JSON object, or `value_column`), the key column's
    /// text, the header columns' text.
    async fn kafka_load(
        &mut self,
        step: &str,
        input: &str,
        connection: &str,
        o: &c::KafkaLoadOptions,
        what: &str,
    ) -> Result<Option<u64>, StepError> {
        let columns: Vec<String> =
            crate::run::fields(&self.session.schema(relations::table(input), what).await?)
                .into_iter()
                .map(|(name, _)| name)
                .collect();
        let mut items = Vec::new();
        let value = match o.format {
            c::ValueFormat::String | c::ValueFormat::Bytes => {
                let column = o.value_column.as_deref().unwrap_or("value");
                format!("CAST({} AS BINARY)", ident(column))
            }
            _ => {
                let fields: Vec<String> = columns
                    .iter()
                    .filter(|c| {
                        Some(c.as_str()) != o.key_column.as_deref() && !o.header_columns.contains(c)
                    })
                    .map(|c| ident(c))
                    .collect();
                // Null fields kept as `"x":null`, as pipectl writes them.
                format!(
                    "to_json(struct({}), map('ignoreNullFields', 'false'))",
                    fields.join(", ")
                )
            }
        };
        items.push(format!("{value} AS `value`"));
        if let Some(key) = &o.key_column {
            items.push(format!("CAST({} AS STRING) AS `key`", ident(key)));
        }
        if !o.header_columns.is_empty() {
            let headers: Vec<String> = o
                .header_columns
                .iter()
                .map(|h| {
                    format!(
                        "named_struct('key', {}, 'value', CAST(CAST({} AS STRING) AS BINARY))",
                        crate::expr::string_literal(h),
                        ident(h)
                    )
                })
                .collect();
            items.push(format!("array({}) AS `headers`", headers.join(", ")));
        }
        let mut options = self.kafka_options(connection)?;
        options.insert("topic".into(), o.topic.clone());
        options.insert(
            "kafka.compression.type".into(),
            format!("{:?}", o.compression).to_lowercase(),
        );
        let texts = format!("{input}__pipectl_text");
        let formatted = self.text_timestamps(input, what, true).await?;
        self.view(&texts, formatted, what).await?;
        let relation = relations::sql(format!(
            "SELECT {} FROM {}",
            items.join(", "),
            ident(&texts)
        ));
        let command = relations::write(relation, "kafka", None, SaveMode::Append, options);
        self.write_observed(command, step, what).await
    }

    /// The input with its timestamps as the text pipectl writes: in CSV and JSON lines files,
    /// fractional seconds with 3 or 6 digits, or none, as needed (chrono's `%.f`), and `Z` for
    /// UTC; in Kafka JSON always six digits and `Z`.
    async fn text_timestamps(
        &mut self,
        input: &str,
        what: &str,
        kafka: bool,
    ) -> Result<crate::proto::Relation, StepError> {
        let columns =
            crate::run::fields(&self.session.schema(relations::table(input), what).await?);
        let formatted: Vec<(String, String)> = columns
            .iter()
            .filter(|(_, t)| t == "timestamp" || t == "timestamp_ntz")
            .map(|(name, t)| {
                let c = ident(name);
                let zone = if t == "timestamp" { "XXX" } else { "" };
                let micros = if t == "timestamp" {
                    format!("unix_micros({c})")
                } else {
                    format!("unix_micros(CAST({c} AS TIMESTAMP))")
                };
                let pattern = |fraction: &str| format!("'yyyy-MM-dd\\'T\\'HH:mm:ss{fraction}{zone}'");
                if kafka {
                    // Kafka JSON: always six digits and `Z` (naive timestamps taken as UTC).
                    return (
                        name.clone(),
                        format!("date_format({c}, 'yyyy-MM-dd\\'T\\'HH:mm:ss.SSSSSS\\'Z\\'')"),
                    );
                }
                let expr = format!(
                    "CASE WHEN {micros} % 1000000 = 0 THEN date_format({c}, {}) WHEN {micros} % 1000 = 0 THEN date_format({c}, {}) ELSE date_format({c}, {}) END",
                    pattern(""),
                    pattern(".SSS"),
                    pattern(".SSSSSS")
                );
                (name.clone(), expr)
            })
            .collect();
        Ok(relations::with_columns(relations::table(input), formatted))
    }

    /// Runs a write with Spark counting the rows it writes (an observation on its input);
    /// returns that count.
    async fn write_observed(
        &mut self,
        mut command: crate::proto::command::CommandType,
        step: &str,
        what: &str,
    ) -> Result<Option<u64>, StepError> {
        if let crate::proto::command::CommandType::WriteOperation(w) = &mut command
            && let Some(input) = w.input.take()
        {
            w.input = Some(relations::observed(input, step));
        }
        let done = self.session.command(command, what).await?;
        Ok(done
            .observed
            .iter()
            .find(|(name, _)| name == step)
            .and_then(
                |(_, values)| match values.first().and_then(|v| v.literal_type.as_ref()) {
                    Some(crate::proto::expression::literal::LiteralType::Long(n)) => {
                        u64::try_from(*n).ok()
                    }
                    _ => None,
                },
            ))
    }

    /// Whether a Delta table is at `location` yet.
    async fn delta_exists(&mut self, location: &str, what: &str) -> Result<bool, StepError> {
        let query = format!("SELECT 1 FROM delta.{} LIMIT 0", ident(location));
        match self.session.schema(relations::sql(query), what).await {
            Ok(_) => Ok(true),
            Err(e)
                if e.message().contains("DELTA_MISSING_DELTA_TABLE")
                    || e.message().contains("PATH_NOT_FOUND")
                    || e.message().contains("is not a Delta table") =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

/// The statements that merge the staging table into the target, create it when missing (with
/// the key as primary key) and drop the staging table: run in one transaction.
fn upsert_statements(
    system: Jdbc,
    table: &str,
    stage: &str,
    columns: &[String],
    key: &[String],
) -> Vec<String> {
    let q = |n: &str| system.quote(n);
    let list: Vec<String> = columns.iter().map(|c| q(c)).collect();
    let keys: Vec<String> = key.iter().map(|k| q(k)).collect();
    let others: Vec<&String> = columns.iter().filter(|c| !key.contains(c)).collect();
    match system {
        Jdbc::Postgres => {
            let set: Vec<String> = others
                .iter()
                .map(|c| format!("{0} = EXCLUDED.{0}", q(c)))
                .collect();
            let action = if set.is_empty() {
                "DO NOTHING".to_string()
            } else {
                format!("DO UPDATE SET {}", set.join(", "))
            };
            vec![
                format!(
                    "DO $$ BEGIN IF to_regclass('{t}') IS NULL THEN CREATE TABLE {qt} (LIKE {qs}); ALTER TABLE {qt} ADD PRIMARY KEY ({k}); END IF; END $$",
                    t = table.replace('\'', "''"),
                    qt = q(table),
                    qs = q(stage),
                    k = keys.join(", ")
                ),
                format!(
                    // One row per key (a key twice in one statement is an error in PostgreSQL).
                    "INSERT INTO {} ({cols}) SELECT DISTINCT ON ({k}) {cols} FROM {} ON CONFLICT ({k}) {action}",
                    q(table),
                    q(stage),
                    k = keys.join(", "),
                    cols = list.join(", ")
                ),
                format!("DROP TABLE {}", q(stage)),
            ]
        }
        Jdbc::Mysql => {
            let set: Vec<String> = others
                .iter()
                .map(|c| format!("{0} = VALUES({0})", q(c)))
                .collect();
            let action = if set.is_empty() {
                format!("{0} = {0}", keys.first().cloned().unwrap_or_default())
            } else {
                set.join(", ")
            };
            vec![
                format!(
                    "CREATE TABLE IF NOT EXISTS {} (PRIMARY KEY ({})) SELECT * FROM {} WHERE 1 = 0",
                    q(table),
                    keys.join(", "),
                    q(stage)
                ),
                format!(
                    "INSERT INTO {} ({cols}) SELECT {cols} FROM {} ON DUPLICATE KEY UPDATE {action}",
                    q(table),
                    q(stage),
                    cols = list.join(", ")
                ),
                format!("DROP TABLE {}", q(stage)),
            ]
        }
    }
}
