//! Extract steps on Spark: JDBC reads of PostgreSQL and MySQL (with the same parallel ranges),
//! files on S3 (Parquet, CSV, JSON lines, Avro), Delta tables with time travel, and the
//! embedded `generate` source, whose rows pipectl makes and sends as Arrow data.

use crate::check::Refusal;
use crate::compile::At;
use crate::expr::ident;
use crate::relations;
use crate::run::Runner;
use pipeline_base::StepError;
use pipeline_connectors as c;
use pipeline_core::Plan;
use std::collections::HashMap;

/// Rows of generated data per local relation sent to Spark (well under its 128 MB message cap).
const LOCAL_ROWS_PER_MESSAGE: u64 = 500_000;

pub enum Source {
    Jdbc {
        system: Jdbc,
        connection: String,
        /// `dbtable`: a table, or `(query) AS q`.
        table: String,
        partition: Option<c::PartitionOptions>,
        /// `numeric: f64`: decimals read as doubles.
        decimals_as_double: bool,
    },
    Files {
        connection: Option<String>,
        format: &'static str,
        path: String,
    },
    Delta {
        connection: Option<String>,
        path: String,
        version: Option<u64>,
        timestamp: Option<String>,
        columns: Option<Vec<String>>,
    },
    Generate(c::GenerateOptions),
    Kafka(crate::kafka::KafkaRead),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Jdbc {
    Postgres,
    Mysql,
}

impl Jdbc {
    pub fn quote(self, name: &str) -> String {
        match self {
            Jdbc::Postgres => name
                .split('.')
                .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
                .collect::<Vec<_>>()
                .join("."),
            Jdbc::Mysql => name
                .split('.')
                .map(|p| format!("`{}`", p.replace('`', "``")))
                .collect::<Vec<_>>()
                .join("."),
        }
    }
}

pub fn compile_source(at: &At<'_>, _plan: &Plan) -> Result<Source, Refusal> {
    let connection = at.step.connection.clone();
    let jdbc_table = |system: Jdbc,
                      table: Option<&str>,
                      columns: &[String],
                      query: Option<&str>| match (table, query) {
        (Some(t), _) if columns.is_empty() => system.quote(t),
        (Some(t), _) => {
            let list: Vec<String> = columns.iter().map(|c| system.quote(c)).collect();
            format!(
                "(SELECT {} FROM {}) AS pipectl_source",
                list.join(", "),
                system.quote(t)
            )
        }
        (None, Some(q)) => format!("({q}) AS pipectl_source"),
        (None, None) => String::new(),
    };
    Ok(match at.step.method.as_str() {
        "postgres" => {
            let o: c::PostgresExtractOptions = at.options()?;
            Source::Jdbc {
                system: Jdbc::Postgres,
                connection: connection.unwrap_or_default(),
                table: jdbc_table(
                    Jdbc::Postgres,
                    o.table.as_deref(),
                    &o.columns,
                    o.query.as_deref(),
                ),
                partition: o.partition,
                decimals_as_double: matches!(o.numeric, c::NumericMode::F64),
            }
        }
        "mysql" => {
            let o: c::MysqlExtractOptions = at.options()?;
            Source::Jdbc {
                system: Jdbc::Mysql,
                connection: connection.unwrap_or_default(),
                table: jdbc_table(
                    Jdbc::Mysql,
                    o.table.as_deref(),
                    &o.columns,
                    o.query.as_deref(),
                ),
                partition: o.partition,
                decimals_as_double: false,
            }
        }
        "s3" => {
            let o: c::S3ExtractOptions = at.options()?;
            let format = match o.format.or_else(|| format_from_path(&o.path)) {
                Some(c::FileFormat::Parquet) | None => "parquet",
                Some(c::FileFormat::Csv) => "csv",
                Some(c::FileFormat::Json) => "json",
                Some(c::FileFormat::Avro) => "avro",
            };
            Source::Files {
                connection,
                format,
                path: o.path,
            }
        }
        "delta" => {
            let o: c::DeltaExtractOptions = at.options()?;
            if !o.partitions.is_empty() {
                return Err(at.refuse(
                    "/options/partitions",
                    "partition filters are not translated for Spark yet; filter in a later step",
                ));
            }
            Source::Delta {
                connection,
                path: o.path,
                version: o.version,
                timestamp: o.timestamp,
                columns: o.columns,
            }
        }
        "generate" => Source::Generate(at.options()?),
        "kafka" => Source::Kafka(crate::kafka::compile(at)?),
        other => {
            return Err(at.refuse(
                "/method",
                format!("the extract \"{other}\" has no Spark translation yet"),
            ));
        }
    })
}

fn format_from_path(path: &str) -> Option<c::FileFormat> {
    let lower = path.to_lowercase();
    let lower = lower.trim_end_matches('/');
    [
        (".parquet", c::FileFormat::Parquet),
        (".csv", c::FileFormat::Csv),
        (".json", c::FileFormat::Json),
        (".jsonl", c::FileFormat::Json),
        (".avro", c::FileFormat::Avro),
    ]
    .into_iter()
    .find(|(ext, _)| lower.ends_with(ext))
    .map(|(_, f)| f)
}

impl Runner {
    /// Registers the source's rows as the view `step`.
    pub async fn source(&mut self, step: &str, source: &Source) -> Result<(), StepError> {
        let what = format!("step \"{step}\"");
        let relation = match source {
            Source::Jdbc {
                system,
                connection,
                table,
                partition,
                decimals_as_double,
            } => {
                let mut options = self.jdbc_options(*system, connection)?;
                options.insert("dbtable".into(), table.clone());
                options.insert("fetchsize".into(), "10000".into());
                // Timestamps without a time zone stay naive, as pipectl reads them.
                options.insert("preferTimestampNTZ".into(), "true".into());
                if let Some(p) = partition {
                    let (lower, upper) = self.bounds(*system, connection, table, p, &what).await?;
                    options.insert("partitionColumn".into(), p.column.clone());
                    options.insert("numPartitions".into(), p.partitions.to_string());
                    options.insert("lowerBound".into(), lower);
                    options.insert("upperBound".into(), upper);
                }
                let read = relations::read("jdbc", options, Vec::new(), false);
                if *decimals_as_double {
                    self.decimals_to_double(read, &what).await?
                } else {
                    read
                }
            }
            Source::Files {
                connection,
                format,
                path,
            } => {
                let mut options = self.storage_options(connection.as_deref(), path)?;
                if *format == "csv" {
                    options.insert("header".into(), "true".into());
                    options.insert("inferSchema".into(), "true".into());
                }
                relations::read(format, options, vec![self.location(path)], false)
            }
            Source::Delta {
                connection,
                path,
                version,
                timestamp,
                columns,
            } => {
                let mut options = self.storage_options(connection.as_deref(), path)?;
                if let Some(v) = version {
                    options.insert("versionAsOf".into(), v.to_string());
                }
                if let Some(t) = timestamp {
                    options.insert("timestampAsOf".into(), t.clone());
                }
                let read = relations::read("delta", options, vec![self.location(path)], false);
                match columns {
                    Some(list) => {
                        self.view(&format!("{step}__pipectl_all"), read, &what)
                            .await?;
                        let list: Vec<String> = list.iter().map(|c| ident(c)).collect();
                        relations::sql(format!(
                            "SELECT {} FROM {}",
                            list.join(", "),
                            ident(&format!("{step}__pipectl_all"))
                        ))
                    }
                    None => read,
                }
            }
            Source::Generate(options) => return self.generate(step, options, &what).await,
            Source::Kafka(read) => return self.kafka(step, read).await,
        };
        self.view(step, relation, &what).await
    }

    /// The rows `generate` makes here, sent as Arrow data in messages of bounded size.
    async fn generate(
        &mut self,
        step: &str,
        options: &c::GenerateOptions,
        what: &str,
    ) -> Result<(), StepError> {
        let mut parts = Vec::new();
        let mut start = 0u64;
        while start < options.rows || parts.is_empty() {
            let len = LOCAL_ROWS_PER_MESSAGE.min(options.rows.saturating_sub(start));
            let frame = c::generate_frame(options, start, len)?;
            let batches = c::frame_to_arrow(&frame)?;
            let data = crate::arrow_ipc::encode(&batches)?;
            let name = format!("{step}__pipectl_part{}", parts.len());
            self.view(&name, relations::local(data), what).await?;
            parts.push(format!("SELECT * FROM {}", ident(&name)));
            start = start.saturating_add(len);
            if len == 0 {
                break;
            }
        }
        self.view(step, relations::sql(parts.join(" UNION ALL ")), what)
            .await
    }

    /// The partition bounds given, or the column's minimum and maximum read through Spark.
    async fn bounds(
        &mut self,
        system: Jdbc,
        connection: &str,
        table: &str,
        p: &c::PartitionOptions,
        what: &str,
    ) -> Result<(String, String), StepError> {
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if let (Some(l), Some(u)) = (&p.lower_bound, &p.upper_bound) {
            return Ok((text(l), text(u)));
        }
        let column = system.quote(&p.column);
        let mut options = self.jdbc_options(system, connection)?;
        options.insert(
            "query".into(),
            format!("SELECT CAST(MIN({column}) AS CHAR(64)) AS lo, CAST(MAX({column}) AS CHAR(64)) AS hi FROM {table}")
                .replace("CHAR(64)", if system == Jdbc::Postgres { "TEXT" } else { "CHAR" }),
        );
        let read = relations::read("jdbc", options, Vec::new(), false);
        let rows = self.collect_strings(read, what).await?;
        let first = rows.first().cloned().unwrap_or_default();
        let lower = p
            .lower_bound
            .as_ref()
            .map(text)
            .or_else(|| first.first().cloned().flatten());
        let upper = p
            .upper_bound
            .as_ref()
            .map(text)
            .or_else(|| first.get(1).cloned().flatten());
        match (lower, upper) {
            (Some(l), Some(u)) => Ok((l, u)),
            _ => Ok(("0".into(), "0".into())),
        }
    }

    /// Decimal columns of a read as doubles (`numeric: f64`).
    async fn decimals_to_double(
        &mut self,
        read: crate::proto::Relation,
        what: &str,
    ) -> Result<crate::proto::Relation, StepError> {
        let schema = self.session.schema(read.clone(), what).await?;
        let columns: Vec<(String, String)> = crate::run::fields(&schema)
            .into_iter()
            .filter(|(_, t)| t.starts_with("decimal"))
            .map(|(name, _)| (name.clone(), format!("CAST({} AS DOUBLE)", ident(&name))))
            .collect();
        Ok(relations::with_columns(read, columns))
    }

    /// JDBC options of a connection: URL, user and password (from Vault, sent to Spark as
    /// reader/writer options; never logged).
    pub fn jdbc_options(
        &self,
        system: Jdbc,
        connection: &str,
    ) -> Result<HashMap<String, String>, StepError> {
        use secrecy::ExposeSecret;
        let config = self.jdbc_config(system, connection)?;
        let (scheme, driver, tls_key) = match system {
            Jdbc::Postgres => ("postgresql", "org.postgresql.Driver", "sslmode"),
            Jdbc::Mysql => ("mysql", "com.mysql.cj.jdbc.Driver", "sslMode"),
        };
        let mut params: Vec<String> = config
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if let Some(mode) = &config.tls_mode {
            let value = match (system, mode.as_str()) {
                (Jdbc::Mysql, "disable") => "DISABLED",
                (Jdbc::Mysql, "prefer") => "PREFERRED",
                (Jdbc::Mysql, "require") => "REQUIRED",
                (Jdbc::Mysql, "verify-ca") => "VERIFY_CA",
                (Jdbc::Mysql, "verify-full") => "VERIFY_IDENTITY",
                (_, other) => other,
            };
            params.push(format!("{tls_key}={value}"));
        } else if system == Jdbc::Mysql {
            params.push("sslMode=PREFERRED".into());
        }
        if system == Jdbc::Mysql {
            params.push("allowPublicKeyRetrieval=true".into());
        }
        let query = if params.is_empty() {
            String::new()
        } else {
            format!("?{}", params.join("&"))
        };
        let mut options = HashMap::new();
        options.insert(
            "url".into(),
            format!(
                "jdbc:{scheme}://{}:{}/{}{query}",
                config.host, config.port, config.database
            ),
        );
        options.insert("driver".into(), driver.into());
        options.insert("user".into(), config.username.clone());
        options.insert(
            "password".into(),
            config.password.expose_secret().to_string(),
        );
        Ok(options)
    }
}

/// `s3://bucket/key` as Hadoop's `s3a://bucket/key`.
pub fn s3a(path: &str) -> String {
    match path.strip_prefix("s3://") {
        Some(rest) => format!("s3a://{rest}"),
        None => path.to_string(),
    }
}
