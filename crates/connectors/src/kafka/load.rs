//! `LoadMethods::kafka`: each row becomes one record — the value a JSON object of the row's
//! columns (or one column's text or bytes), the key a column's text, headers from columns —
//! produced to the partition the Java client would pick for the key (murmur2), round-robin
//! without a key. Records are produced per partition in batches of `batch_bytes`, compressed as
//! asked, with acks from all in-sync replicas (rskafka's default).
//!
//! At-least-once: rskafka has no transactions, so records are visible as soon as they are
//! produced, before the run commits, and a failed run that is retried or rerun may produce some
//! records twice. The step logs this when it opens; readers that need exactly-once dedupe on
//! the key.

use super::avro_write::AvroWriter;
use super::encode::{append_json, texts};
use super::extract::ValueFormat;
use super::murmur::partition_for;
use super::registry::{Registry, wire_header};
use super::{client, kafka_error};
use super::{open_partitions, read_avsc, registry};
use crate::LoadMethods;
use async_trait::async_trait;
use pipeline_base::StepError;
use pipeline_data::method::MethodOptions;
use pipeline_data::polars::prelude::*;
use pipeline_data::{CommitOutcome, Metrics, OptionsError, Sink, StepSetup};
use rskafka::chrono::Utc;
use rskafka::client::partition::{Compression, PartitionClient};
use rskafka::record::Record;
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

/// Compression of produced record batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KafkaCompression {
    #[default]
    None,
    Gzip,
    Lz4,
    Snappy,
    Zstd,
}

impl KafkaCompression {
    fn rskafka(self) -> Compression {
        match self {
            KafkaCompression::None => Compression::NoCompression,
            KafkaCompression::Gzip => Compression::Gzip,
            KafkaCompression::Lz4 => Compression::Lz4,
            KafkaCompression::Snappy => Compression::Snappy,
            KafkaCompression::Zstd => Compression::Zstd,
        }
    }
}

/// Options of the `kafka` load.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaLoadOptions {
    /// The topic to produce to (it must exist).
    pub topic: String,
    /// `json` (default: every column not used as key or header, as one JSON object), `avro`
    /// (those columns as one Avro datum), `string` or `bytes` (the `value_column` as is).
    #[serde(default)]
    pub format: ValueFormat,
    /// For `avro`: the writer schema, an `.avsc` record file (relative to the pipeline file);
    /// without it the schema is derived from the data (every column a nullable field).
    #[serde(default)]
    pub avro_schema: Option<String>,
    /// The value column for `string` / `bytes`.
    #[serde(default)]
    pub value_column: Option<String>,
    /// The column whose text is the record key (partitioned like the Java client does).
    #[serde(default)]
    pub key_column: Option<String>,
    /// Columns sent as headers (their text), not in the value.
    #[serde(default)]
    pub header_columns: Vec<String>,
    /// `none` (default), `gzip`, `lz4`, `snappy` or `zstd`.
    #[serde(default)]
    pub compression: KafkaCompression,
    /// Uncompressed bytes per produce request and partition, record overhead included
    /// (default 256 KiB; the broker's `message.max.bytes`, 1 MiB by default, bounds a batch).
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
}

fn default_batch_bytes() -> usize {
    256 << 10
}

/// Bytes a record adds to a batch beyond its key, value and headers (length varints,
/// attributes, offset and timestamp deltas), rounded up.
const RECORD_OVERHEAD: usize = 24;

impl MethodOptions for KafkaLoadOptions {
    fn check(&self) -> Result<(), OptionsError> {
        if self.topic.trim().is_empty() {
            return Err(OptionsError::new("/topic", "the topic name is empty"));
        }
        match (self.format, &self.value_column) {
            (ValueFormat::Json | ValueFormat::Avro | ValueFormat::AvroConfluent, Some(_)) => {
                return Err(OptionsError::new(
                    "/value_column",
                    "the json and avro formats send every column; value_column is for string and bytes",
                ));
            }
            (ValueFormat::String | ValueFormat::Bytes, None) => {
                return Err(OptionsError::new(
                    "/value_column",
                    "the string and bytes formats send one column: name it",
                )
                .with_hint("\"value_column\": \"payload\""));
            }
            _ => {}
        }
        if self.avro_schema.is_some()
            && !matches!(self.format, ValueFormat::Avro | ValueFormat::AvroConfluent)
        {
            return Err(OptionsError::new(
                "/avro_schema",
                "avro_schema applies to the avro format only",
            ));
        }
        if !(1024..=(64 << 20)).contains(&self.batch_bytes) {
            return Err(OptionsError::new(
                "/batch_bytes",
                "must be between 1024 and 67108864",
            ));
        }
        Ok(())
    }
}

struct KafkaSink {
    step: String,
    options: KafkaLoadOptions,
    /// For `avro` and `avro_confluent`: the writer schema.
    avro: Option<AvroWriter>,
    /// For `avro_confluent`: the registry and the ids of the schemas registered by this load.
    registry: Option<(Registry, HashMap<String, u32>)>,
    partitions: Vec<PartitionClient>,
    /// Records waiting per partition, with their approximate size.
    pending: BTreeMap<usize, (Vec<Record>, usize)>,
    /// Next partition for records without a key.
    round_robin: usize,
    records: u64,
    bytes: u64,
}

impl KafkaSink {
    /// For `avro_confluent`: the registry id of the frame's writer schema, registered under
    /// `TOPIC-value` the first time this load sees it.
    async fn schema_id(&mut self, df: &DataFrame) -> Result<Option<u32>, StepError> {
        let (Some((registry, ids)), Some(writer)) = (&mut self.registry, &self.avro) else {
            return Ok(None);
        };
        let values = df.drop_many(
            self.options
                .key_column
                .iter()
                .chain(&self.options.header_columns)
                .map(String::as_str),
        );
        let text = writer.schema_text(&values)?;
        if let Some(id) = ids.get(&text) {
            return Ok(Some(*id));
        }
        let subject = format!("{}-value", self.options.topic);
        let id = registry
            .register(&subject, &text)
            .await
            .map_err(|e| e.context(format!("step \"{}\"", self.step)))?;
        tracing::info!(step = %self.step, subject = %subject, id, "value schema registered");
        ids.insert(text, id);
        Ok(Some(id))
    }

    /// The key and header columns, which the json and avro values leave out.
    fn not_in_value(&self) -> Vec<&str> {
        self.options
            .key_column
            .iter()
            .chain(&self.options.header_columns)
            .map(String::as_str)
            .collect()
    }

    /// The rows of `df` as records.
    /// `avro_confluent` values start with the header of schema `schema_id`.
    fn records(&self, df: &DataFrame, schema_id: Option<u32>) -> Result<Vec<Record>, StepError> {
        let n = df.height();
        let values: Vec<Option<Vec<u8>>> = match self.options.format {
            ValueFormat::Json => {
                let skip = self.not_in_value();
                let mut rows: Vec<Vec<u8>> = (0..n).map(|_| vec![b'{']).collect();
                let mut first = true;
                for c in df.columns() {
                    if skip.contains(&c.name().as_str()) {
                        continue;
                    }
                    append_json(c, first, &mut rows)
                        .map_err(|e| e.context(format!("step \"{}\"", self.step)))?;
                    first = false;
                }
                rows.into_iter()
                    .map(|mut r| {
                        r.push(b'}');
                        Some(r)
                    })
                    .collect()
            }
            ValueFormat::Avro | ValueFormat::AvroConfluent => {
                let Some(writer) = &self.avro else {
                    return Err(StepError::internal("the kafka avro load has no writer"));
                };
                let skip = self.not_in_value();
                let values = df.drop_many(skip.iter().copied());
                writer
                    .datums(&values)
                    .map_err(|e| e.context(format!("step \"{}\"", self.step)))?
                    .into_iter()
                    .map(|datum| match schema_id {
                        Some(id) => {
                            let mut v = Vec::with_capacity(datum.len().saturating_add(5));
                            v.extend_from_slice(&wire_header(id));
                            v.extend_from_slice(&datum);
                            Some(v)
                        }
                        None => Some(datum),
                    })
                    .collect()
            }
            ValueFormat::String | ValueFormat::Bytes => {
                let name = self.options.value_column.clone().unwrap_or_default();
                let c = df.column(&name).map_err(|_| {
                    StepError::user(format!(
                        "step \"{}\": value column \"{name}\" is not in the data",
                        self.step
                    ))
                })?;
                if let DataType::Binary = c.dtype() {
                    let ca = c
                        .as_materialized_series()
                        .binary()
                        .map_err(|e| StepError::internal(e.to_string()))?
                        .clone();
                    ca.iter().map(|v| v.map(<[u8]>::to_vec)).collect()
                } else {
                    texts(df, &name, &self.step)?
                        .into_iter()
                        .map(|v| v.map(String::into_bytes))
                        .collect()
                }
            }
        };
        let keys = match &self.options.key_column {
            Some(k) => texts(df, k, &self.step)?,
            None => vec![None; n],
        };
        let headers: Vec<(String, Vec<Option<String>>)> = self
            .options
            .header_columns
            .iter()
            .map(|h| Ok((h.clone(), texts(df, h, &self.step)?)))
            .collect::<Result<_, StepError>>()?;
        let now = Utc::now();
        Ok(values
            .into_iter()
            .zip(keys)
            .enumerate()
            .map(|(i, (value, key))| Record {
                key: key.map(String::into_bytes),
                value,
                headers: headers
                    .iter()
                    .filter_map(|(h, vals)| {
                        vals.get(i)
                            .and_then(|v| v.clone())
                            .map(|v| (h.clone(), v.into_bytes()))
                    })
                    .collect(),
                timestamp: now,
            })
            .collect())
    }

    /// Produces one partition's pending records.
    async fn flush(&mut self, partition: usize) -> Result<(), StepError> {
        let Some((records, size)) = self.pending.remove(&partition) else {
            return Ok(());
        };
        self.produce(partition, records, size).await
    }

    /// Produces one batch of records to one partition.
    async fn produce(
        &mut self,
        partition: usize,
        records: Vec<Record>,
        size: usize,
    ) -> Result<(), StepError> {
        if records.is_empty() {
            return Ok(());
        }
        let Some(client) = self.partitions.get(partition) else {
            return Err(StepError::internal("a partition vanished"));
        };
        let n = records.len() as u64;
        client
            .produce(records, self.options.compression.rskafka())
            .await
            .map_err(|e| {
                kafka_error(
                    e,
                    &format!(
                        "step \"{}\": producing to topic \"{}\" partition {partition}",
                        self.step, self.options.topic
                    ),
                )
            })?;
        self.records = self.records.saturating_add(n);
        self.bytes = self.bytes.saturating_add(size as u64);
        Ok(())
    }
}

#[async_trait]
impl Sink for KafkaSink {
    async fn write(&mut self, df: DataFrame) -> Result<(), StepError> {
        if df.height() == 0 {
            return Ok(());
        }
        let n = self.partitions.len().max(1);
        // Batches that reached batch_bytes, produced after the frame is split.
        let mut ready: Vec<(usize, Vec<Record>, usize)> = Vec::new();
        let schema_id = self.schema_id(&df).await?;
        for record in self.records(&df, schema_id)? {
            let partition = match &record.key {
                Some(k) => usize::try_from(partition_for(k, n)).unwrap_or(0),
                None => {
                    self.round_robin = self.round_robin.wrapping_add(1).checked_rem(n).unwrap_or(0);
                    self.round_robin
                }
            };
            let size = record.approximate_size().saturating_add(RECORD_OVERHEAD);
            let entry = self.pending.entry(partition).or_default();
            entry.0.push(record);
            entry.1 = entry.1.saturating_add(size);
            if entry.1 >= self.options.batch_bytes {
                let (records, size) = std::mem::take(entry);
                ready.push((partition, records, size));
            }
        }
        for (partition, records, size) in ready {
            self.produce(partition, records, size).await?;
        }
        Ok(())
    }

    async fn prepare(&mut self) -> Result<(), StepError> {
        let partitions: Vec<usize> = self.pending.keys().copied().collect();
        for p in partitions {
            self.flush(p).await?;
        }
        tracing::info!(step = %self.step, topic = %self.options.topic, records = self.records, bytes = self.bytes, "produced");
        Ok(())
    }

    async fn commit(&mut self) -> Result<CommitOutcome, StepError> {
        Ok(CommitOutcome::Published)
    }

    async fn abort(&mut self) {
        self.pending.clear();
        if self.records > 0 {
            tracing::warn!(step = %self.step, topic = %self.options.topic, records = self.records, "the run failed after this load produced records; Kafka keeps them (at-least-once)");
        }
    }

    fn metrics(&self) -> Metrics {
        vec![
            ("records_produced", self.records),
            ("bytes_produced", self.bytes),
        ]
    }
}

impl LoadMethods {
    /// Produces each row as a Kafka record (at-least-once).
    pub async fn kafka(
        options: KafkaLoadOptions,
        setup: StepSetup,
    ) -> Result<Box<dyn Sink>, StepError> {
        let conn = setup.connection_setup()?;
        let avro = match (options.format, &options.avro_schema) {
            (ValueFormat::Avro | ValueFormat::AvroConfluent, Some(path)) => {
                let (text, path) = read_avsc(&setup, path)?;
                Some(
                    AvroWriter::from_file(&text, &path)
                        .map_err(|e| e.context(format!("step \"{}\"", setup.step)))?,
                )
            }
            (ValueFormat::Avro | ValueFormat::AvroConfluent, None) => Some(AvroWriter::Derived {
                record_name: options.topic.clone(),
            }),
            _ => None,
        };
        let registry = match options.format {
            ValueFormat::AvroConfluent => Some((registry(&conn)?, HashMap::new())),
            _ => None,
        };
        let (client, servers) = client(&conn).await?;
        let partitions = open_partitions(&client, &servers, &options.topic, &setup.step).await?;
        tracing::info!(step = %setup.step, topic = %options.topic, partitions = partitions.len(), "producing; the kafka load is at-least-once: records are visible as they are produced, and a failed run that is run again may produce some twice");
        Ok(Box::new(KafkaSink {
            step: setup.step.clone(),
            options,
            avro,
            registry,
            partitions,
            pending: BTreeMap::new(),
            round_robin: 0,
            records: 0,
            bytes: 0,
        }))
    }
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
