//! The kafka extract on Spark: a bounded batch read. pipectl works out each partition's range
//! exactly as its own kafka extract does (stored offset or `start`, to the end when the step
//! opens; `pipeline_connectors::kafka_ranges`), Spark reads those offsets with its Kafka source
//! and decodes JSON values with `from_json` in FAILFAST mode, and the offsets store moves to the
//! ends only after every load has committed — the same file format, so either engine can take
//! the next run.

use crate::check::Refusal;
use crate::compile::At;
use crate::expr::{ident, string_literal};
use crate::relations;
use crate::run::Runner;
use pipeline_base::StepError;
use pipeline_connectors::{KafkaExtractOptions, OnDecodeError, ValueFormat};
use pipeline_credentials::{ExposeSecret, KafkaConfig};
use std::collections::{BTreeMap, HashMap};

pub struct KafkaRead {
    pub connection: String,
    pub options: KafkaExtractOptions,
    /// `(field, Spark type in from_json, how it becomes the column)`.
    fields: Vec<(String, &'static str, Field)>,
}

#[derive(Clone, Copy)]
enum Field {
    /// As parsed.
    Plain,
    /// pipectl reads a number as epoch milliseconds and a string as RFC 3339.
    Datetime,
}

pub fn compile(at: &At<'_>) -> Result<KafkaRead, Refusal> {
    let o: KafkaExtractOptions = at.options()?;
    if o.metadata {
        return Err(at.refuse(
            "/options/metadata",
            "metadata columns are not read on Spark yet",
        ));
    }
    if o.on_error != OnDecodeError::Fail {
        return Err(at.refuse(
            "/options/on_error",
            "on Spark, a record that cannot be decoded fails the run (\"on_error\": \"fail\")",
        ));
    }
    let fields = match o.format {
        ValueFormat::Json => {
            let schema = o.schema.as_ref().ok_or_else(|| {
                at.refuse("/options/schema", "on Spark, JSON values need a \"schema\" (pipectl takes the first record's types otherwise)")
            })?;
            let mut fields = Vec::new();
            for (name, t) in schema {
                let (spark, how) = match t.trim().to_lowercase().as_str() {
                    "string" | "str" | "utf8" | "json" => ("STRING", Field::Plain),
                    "int64" | "int" | "integer" | "long" | "i64" => ("BIGINT", Field::Plain),
                    "float64" | "float" | "double" | "f64" => ("DOUBLE", Field::Plain),
                    "bool" | "boolean" => ("BOOLEAN", Field::Plain),
                    "date" => ("DATE", Field::Plain),
                    "datetime" | "timestamp" => ("STRING", Field::Datetime),
                    other => {
                        return Err(at.refuse(
                            "/options/schema",
                            format!("the field type \"{other}\" is not read on Spark"),
                        ));
                    }
                };
                fields.push((name.clone(), spark, how));
            }
            fields
        }
        ValueFormat::String | ValueFormat::Bytes => Vec::new(),
        ValueFormat::Avro | ValueFormat::AvroConfluent => {
            return Err(at.refuse("/options/format", "Avro values are not read on Spark yet"));
        }
    };
    Ok(KafkaRead {
        connection: at.step.connection.clone().unwrap_or_default(),
        options: o,
        fields,
    })
}

impl Runner {
    /// Registers the records of the bounded read as the view `step`; the offsets are stored
    /// after the loads commit (`commit_offsets`).
    pub async fn kafka(&mut self, step: &str, read: &KafkaRead) -> Result<(), StepError> {
        let what = format!("step \"{step}\"");
        let setup = self.setup(&read.connection)?;
        let offsets_connection = match read
            .options
            .offsets
            .as_ref()
            .and_then(|o| o.connection.as_deref())
        {
            Some(name) => Some(self.setup(name)?),
            None => None,
        };
        let ranges = pipeline_connectors::kafka_ranges(
            &read.options,
            &setup,
            step,
            offsets_connection,
            self.base_dir(),
        )
        .await?;
        let raw = format!("{step}__pipectl_records");
        let pending: Vec<_> = ranges.ranges.iter().filter(|r| r.end > r.start).collect();
        let as_stream = self.streaming && self.stream_source.as_deref() == Some(step);
        if as_stream {
            // A stream starts where a batch run would (its checkpoint keeps the offsets after).
            let mut assign: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            let mut starting: BTreeMap<&str, BTreeMap<String, i64>> = BTreeMap::new();
            for r in &ranges.ranges {
                assign.entry(&r.topic).or_default().push(r.partition);
                starting
                    .entry(&r.topic)
                    .or_default()
                    .insert(r.partition.to_string(), r.start);
            }
            let mut options = self.kafka_options(&read.connection)?;
            options.insert("assign".into(), json(&assign));
            options.insert("startingOffsets".into(), json(&starting));
            options.insert("failOnDataLoss".into(), "true".into());
            if let Some(max) = self.max_records {
                options.insert("maxOffsetsPerTrigger".into(), max.to_string());
            }
            self.view(
                &raw,
                relations::read("kafka", options, Vec::new(), true),
                &what,
            )
            .await?;
        } else if pending.is_empty() {
            self.view(
                &raw,
                relations::sql("SELECT CAST(NULL AS BINARY) AS value WHERE FALSE"),
                &what,
            )
            .await?;
        } else {
            let mut assign: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            let mut starting: BTreeMap<&str, BTreeMap<String, i64>> = BTreeMap::new();
            let mut ending: BTreeMap<&str, BTreeMap<String, i64>> = BTreeMap::new();
            for r in &pending {
                assign.entry(&r.topic).or_default().push(r.partition);
                starting
                    .entry(&r.topic)
                    .or_default()
                    .insert(r.partition.to_string(), r.start);
                ending
                    .entry(&r.topic)
                    .or_default()
                    .insert(r.partition.to_string(), r.end);
            }
            let mut options = self.kafka_options(&read.connection)?;
            options.insert("assign".into(), json(&assign));
            options.insert("startingOffsets".into(), json(&starting));
            options.insert("endingOffsets".into(), json(&ending));
            options.insert("failOnDataLoss".into(), "true".into());
            self.view(
                &raw,
                relations::read("kafka", options, Vec::new(), false),
                &what,
            )
            .await?;
        }
        let records = ident(&raw);
        let query = match read.options.format {
            ValueFormat::String => {
                format!("SELECT CAST(value AS STRING) AS `value` FROM {records}")
            }
            ValueFormat::Bytes => format!("SELECT value AS `value` FROM {records}"),
            _ => {
                let ddl: Vec<String> = read
                    .fields
                    .iter()
                    .map(|(n, t, _)| format!("{} {t}", ident(n)))
                    .collect();
                let columns: Vec<String> = read
                    .fields
                    .iter()
                    .map(|(n, _, how)| {
                        let c = format!("`__pipectl_v`.{}", ident(n));
                        match how {
                            Field::Plain => format!("{c} AS {}", ident(n)),
                            Field::Datetime => format!(
                                "CASE WHEN {c} RLIKE '^-?[0-9]+$' THEN timestamp_millis(CAST({c} AS BIGINT)) ELSE CAST({c} AS TIMESTAMP) END AS {}",
                                ident(n)
                            ),
                        }
                    })
                    .collect();
                format!(
                    "SELECT {} FROM (SELECT from_json(CAST(value AS STRING), {}, map('mode', 'FAILFAST')) AS `__pipectl_v` FROM {records})",
                    columns.join(", "),
                    string_literal(&ddl.join(", "))
                )
            }
        };
        self.view(step, relations::sql(query), &what).await?;
        if !as_stream {
            self.offsets.push(ranges);
        }
        Ok(())
    }

    /// Spark's Kafka options for a connection: servers, security protocol, SASL login (the
    /// password from Vault goes in the JAAS option, never logged), the CA for TLS.
    pub fn kafka_options(&self, connection: &str) -> Result<HashMap<String, String>, StepError> {
        let setup = self.setup(connection)?;
        let config = KafkaConfig::from_sources(setup.sources()).map_err(|e| {
            StepError::user(e.to_string()).context(format!("connection \"{connection}\""))
        })?;
        let mut options = HashMap::new();
        options.insert(
            "kafka.bootstrap.servers".into(),
            config.bootstrap_servers.join(","),
        );
        options.insert(
            "kafka.security.protocol".into(),
            config.security_protocol.clone(),
        );
        if let (Some(mechanism), Some(user), Some(password)) =
            (&config.sasl_mechanism, &config.username, &config.password)
        {
            let module = if mechanism.starts_with("SCRAM") {
                "org.apache.kafka.common.security.scram.ScramLoginModule"
            } else {
                "org.apache.kafka.common.security.plain.PlainLoginModule"
            };
            let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
            options.insert("kafka.sasl.mechanism".into(), mechanism.clone());
            options.insert(
                "kafka.sasl.jaas.config".into(),
                format!(
                    "{module} required username=\"{}\" password=\"{}\";",
                    quote(user),
                    quote(password.expose_secret())
                ),
            );
        }
        if config.tls() {
            if let Some(ca) = &config.ca_cert {
                options.insert("kafka.ssl.truststore.type".into(), "PEM".into());
                options.insert("kafka.ssl.truststore.location".into(), ca.clone());
            }
            if config.tls_mode.as_deref() != Some("verify-full") {
                options.insert(
                    "kafka.ssl.endpoint.identification.algorithm".into(),
                    String::new(),
                );
            }
        }
        Ok(options)
    }
}

/// JSON text of an option map.
fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
