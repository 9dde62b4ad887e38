//! `ExtractMethods::kafka` (batch): reads one or more topics from a start position up to the
//! high watermarks taken when the step opens, so a batch run always ends. One task per
//! partition fetches concurrently into a bounded channel; the source decodes what arrives into
//! batches of `batch_rows`. With `"offsets": {"store": FILE}` the next offsets are kept between
//! runs and written only after every load of the run has committed (`Source::commit`).

use super::dead_letter::DeadLetters;
use super::decode::{Decoder, FieldType};
use super::offsets::{OffsetStore, Offsets};
use super::{client, kafka_error, open_partitions, read_avsc};
use crate::ExtractMethods;
use async_trait::async_trait;
use indexmap::IndexMap;
use pipeline_base::StepError;
use pipeline_data::method::MethodOptions;
use pipeline_data::{Batch, Metrics, OptionsError, Source, StepSetup};
use rskafka::chrono::DateTime;
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::record::RecordAndOffset;
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Where reading starts in each partition without a stored offset.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StartAt {
    /// The earliest record the partition still keeps.
    #[default]
    Earliest,
    /// Only records produced after the step opens (a batch run then reads nothing).
    Latest,
    /// The first record at or after this time (RFC 3339, e.g. `2026-11-28T00:00:00Z`).
    Timestamp(String),
    /// Explicit offsets by `"TOPIC/PARTITION"` (or `"PARTITION"` for every topic).
    Offsets(BTreeMap<String, i64>),
}

/// How a record's value becomes columns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ValueFormat {
    /// A JSON object per record: one column per field of `schema` (or of the first record).
    #[default]
    Json,
    /// The value as UTF-8 text, in a column `value`.
    String,
    /// The raw value bytes, in a column `value`.
    Bytes,
    /// An Avro datum per record (no container, no registry header), written with the schema in
    /// `avro_schema`: one column per field of the record.
    Avro,
}

/// What happens to a record that cannot be decoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnDecodeError {
    /// The run fails, naming the topic, partition, offset and reason.
    #[default]
    Fail,
    /// The record is left out, counted (`skipped_records`) and logged.
    Skip,
    /// The record goes to `dead_letter_topic` as it was read, with headers saying where it
    /// came from and why (`pipectl.error`, ...), produced when the run's loads have committed.
    DeadLetter,
}

/// Where the extract keeps its offsets between runs.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OffsetsOptions {
    /// A local JSON file (relative to the pipeline file), written atomically after the run's
    /// loads have committed.
    pub store: String,
}

/// Options of the `kafka` extract.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaExtractOptions {
    /// Topics to read.
    pub topics: Vec<String>,
    /// Partitions to read in every topic (default: all).
    #[serde(default)]
    pub partitions: Option<Vec<i32>>,
    /// `earliest` (default), `latest`, `{"timestamp": "..."}` or `{"offsets": {"orders/0": 42}}`;
    /// a partition with a stored offset starts there instead.
    #[serde(default)]
    pub start: StartAt,
    /// `json` (default), `string` or `bytes`.
    #[serde(default)]
    pub format: ValueFormat,
    /// For `json`: field → type (string, int64, float64, bool, date, datetime, json), in column
    /// order. Without it, the first record's fields and types are used and then enforced.
    #[serde(default)]
    pub schema: Option<IndexMap<String, String>>,
    /// For `avro`: the writer schema, an `.avsc` file (relative to the pipeline file).
    #[serde(default)]
    pub avro_schema: Option<String>,
    /// Add `_topic`, `_partition`, `_offset`, `_timestamp`, `_key` and `_headers` (JSON) columns.
    #[serde(default)]
    pub metadata: bool,
    /// `fail` (default), `skip` or `dead_letter` records that cannot be decoded.
    #[serde(default)]
    pub on_error: OnDecodeError,
    /// With `"on_error": "dead_letter"`: the existing topic that receives them.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Rows per batch handed to the next step (default 65,536).
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// Bytes asked of a partition per fetch (default 4 MiB).
    #[serde(default = "default_fetch_bytes")]
    pub fetch_bytes: i32,
    /// Keep the next offsets between runs: `{"store": "state/orders.offsets.json"}`.
    #[serde(default)]
    pub offsets: Option<OffsetsOptions>,
}

fn default_batch_rows() -> usize {
    65_536
}

fn default_fetch_bytes() -> i32 {
    4 << 20
}

impl KafkaExtractOptions {
    fn schema(&self) -> Vec<(String, FieldType)> {
        self.schema
            .iter()
            .flatten()
            .filter_map(|(k, v)| FieldType::parse(v).map(|t| (k.clone(), t)))
            .collect()
    }
}

impl MethodOptions for KafkaExtractOptions {
    fn check(&self) -> Result<(), OptionsError> {
        if self.topics.is_empty() {
            return Err(OptionsError::new("/topics", "name at least one topic"));
        }
        for (i, t) in self.topics.iter().enumerate() {
            if t.trim().is_empty() {
                return Err(OptionsError::new(
                    format!("/topics/{i}"),
                    "empty topic name",
                ));
            }
        }
        if let Some(schema) = &self.schema {
            if self.format != ValueFormat::Json {
                return Err(OptionsError::new(
                    "/schema",
                    "a schema applies to the json format only",
                ));
            }
            for (field, ty) in schema {
                if FieldType::parse(ty).is_none() {
                    return Err(OptionsError::new(
                        format!("/schema/{field}"),
                        format!("unknown type \"{ty}\""),
                    )
                    .with_hint(format!("one of: {}", FieldType::NAMES)));
                }
            }
        }
        match (self.format, &self.avro_schema) {
            (ValueFormat::Avro, None) => {
                return Err(OptionsError::new(
                    "/avro_schema",
                    "the avro format needs the writer schema",
                )
                .with_hint("\"avro_schema\": \"schemas/order_event.avsc\""));
            }
            (ValueFormat::Avro, Some(_)) | (_, None) => {}
            (_, Some(_)) => {
                return Err(OptionsError::new(
                    "/avro_schema",
                    "avro_schema applies to the avro format only",
                ));
            }
        }
        if self.batch_rows == 0 {
            return Err(OptionsError::new("/batch_rows", "must be at least 1"));
        }
        if !(1024..=(256 << 20)).contains(&self.fetch_bytes) {
            return Err(OptionsError::new(
                "/fetch_bytes",
                "must be between 1024 and 268435456",
            ));
        }
        match &self.start {
            StartAt::Timestamp(ts) if DateTime::parse_from_rfc3339(ts).is_err() => {
                return Err(OptionsError::new(
                    "/start/timestamp",
                    format!("\"{ts}\" is not an RFC 3339 time"),
                )
                .with_hint("e.g. 2026-11-28T00:00:00Z"));
            }
            StartAt::Offsets(map) => {
                for (key, offset) in map {
                    let partition = key.rsplit('/').next().unwrap_or_default();
                    if partition.parse::<i32>().is_err() || *offset < 0 {
                        return Err(OptionsError::new(
                            format!("/start/offsets/{key}"),
                            "keys are \"TOPIC/PARTITION\" or \"PARTITION\", values offsets ≥ 0",
                        ));
                    }
                }
            }
            _ => {}
        }
        match (self.on_error, &self.dead_letter_topic) {
            (OnDecodeError::DeadLetter, None) => {
                return Err(OptionsError::new(
                    "/dead_letter_topic",
                    "on_error dead_letter needs the topic that receives them",
                )
                .with_hint("\"dead_letter_topic\": \"orders_dlq\""));
            }
            (OnDecodeError::DeadLetter, Some(t)) if t.trim().is_empty() => {
                return Err(OptionsError::new(
                    "/dead_letter_topic",
                    "the topic name is empty",
                ));
            }
            (OnDecodeError::Fail | OnDecodeError::Skip, Some(_)) => {
                return Err(OptionsError::new(
                    "/dead_letter_topic",
                    "dead_letter_topic applies with \"on_error\": \"dead_letter\" only",
                ));
            }
            _ => {}
        }
        if let Some(o) = &self.offsets
            && (o.store.trim().is_empty() || o.store.contains("://"))
        {
            return Err(OptionsError::new(
                "/offsets/store",
                "the offsets store is a local file path",
            ));
        }
        Ok(())
    }
}

/// Records fetched from one partition.
struct Chunk {
    topic: Arc<str>,
    partition: i32,
    records: Vec<RecordAndOffset>,
}

/// One partition to read: `start..end`.
struct Range {
    topic: Arc<str>,
    partition: i32,
    client: PartitionClient,
    start: i64,
    end: i64,
}

struct KafkaSource {
    step: String,
    rx: mpsc::Receiver<Result<Chunk, StepError>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    decoder: Decoder,
    on_error: OnDecodeError,
    batch_rows: usize,
    store: Option<OffsetStore>,
    /// With `on_error: dead_letter`: the records refused, produced at commit.
    dead_letters: Option<DeadLetters>,
    /// The offsets to store after a complete read.
    ends: Offsets,
    total: u64,
    read: u64,
    skipped: u64,
    partitions: u64,
    /// A batch was handed on.
    emitted: bool,
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[async_trait]
impl Source for KafkaSource {
    async fn next_batch(&mut self) -> Result<Option<Batch>, StepError> {
        loop {
            if self.decoder.rows() >= self.batch_rows {
                self.emitted = true;
                return Ok(Some(Batch::Frame(self.decoder.take_frame()?)));
            }
            let Some(chunk) = self.rx.recv().await else {
                // Nothing new: one empty batch with the declared columns, so that the steps
                // after (joins, aggregations) see the schema and produce empty results.
                let empty_with_schema = !self.emitted && self.decoder.has_columns();
                if self.decoder.rows() == 0 && !empty_with_schema {
                    return Ok(None);
                }
                self.emitted = true;
                return Ok(Some(Batch::Frame(self.decoder.take_frame()?)));
            };
            let chunk = chunk?;
            for r in &chunk.records {
                self.read = self.read.saturating_add(1);
                if let Err(why) = self.decoder.push(&chunk.topic, chunk.partition, r) {
                    let at = format!(
                        "topic \"{}\" partition {} offset {}",
                        chunk.topic, chunk.partition, r.offset
                    );
                    match self.on_error {
                        OnDecodeError::Fail => {
                            return Err(StepError::user(format!(
                                "step \"{}\": the record at {at} cannot be decoded: {why}",
                                self.step
                            ))
                            .with_hint("fix the producer, declare the field's type in \"schema\", or set \"on_error\": \"skip\""));
                        }
                        OnDecodeError::DeadLetter => {
                            if let Some(dl) = &mut self.dead_letters {
                                dl.hold(&chunk.topic, chunk.partition, r, &why)?;
                                if dl.held() <= 10 {
                                    tracing::warn!(step = %self.step, topic = %dl.topic, "dead-lettering the record at {at}: {why}");
                                }
                            }
                        }
                        OnDecodeError::Skip => {
                            self.skipped = self.skipped.saturating_add(1);
                            if self.skipped <= 10 {
                                tracing::warn!(step = %self.step, "skipping the record at {at}: {why}");
                            }
                        }
                    }
                }
            }
        }
    }

    fn total_rows(&self) -> Option<u64> {
        Some(self.total)
    }

    async fn commit(&mut self) -> Result<(), StepError> {
        if let Some(dl) = &mut self.dead_letters
            && dl.held() > 0
        {
            let n = dl.held();
            dl.publish().await?;
            tracing::info!(step = %self.step, topic = %dl.topic, records = n, "produced the dead letters");
        }
        if let Some(store) = &self.store {
            store.save(&self.ends)?;
            tracing::info!(step = %self.step, store = %store.path().display(), "stored the next offsets");
        }
        Ok(())
    }

    fn metrics(&self) -> Metrics {
        vec![
            ("partitions", self.partitions),
            ("records_read", self.read),
            ("skipped_records", self.skipped),
            (
                "dead_lettered_records",
                self.dead_letters
                    .as_ref()
                    .map_or(0, |d| (d.held() as u64).saturating_add(d.produced)),
            ),
        ]
    }
}

/// Fetches `range` into `tx`, in offset order, until the end offset.
async fn read_partition(
    range: Range,
    fetch_bytes: i32,
    tx: mpsc::Sender<Result<Chunk, StepError>>,
) {
    let Range {
        topic,
        partition,
        client,
        start,
        end,
    } = range;
    let mut offset = start;
    let mut empty = 0u32;
    while offset < end {
        let fetched = client.fetch_records(offset, 1..fetch_bytes, 500).await;
        let records = match fetched {
            Ok((records, _high_watermark)) => records,
            Err(e) => {
                let doing =
                    format!("reading topic \"{topic}\" partition {partition} at offset {offset}");
                let _ = tx.send(Err(kafka_error(e, &doing))).await;
                return;
            }
        };
        let records: Vec<RecordAndOffset> = records
            .into_iter()
            .filter(|r| r.offset >= offset && r.offset < end)
            .collect();
        let Some(last) = records.last().map(|r| r.offset) else {
            // Offsets need not be contiguous (compaction, transaction markers): a gap up to the
            // end shows as empty fetches.
            empty = empty.saturating_add(1);
            if empty >= 20 {
                tracing::warn!(topic = %topic, partition, offset, end, "no records between this offset and the end taken at the start; stopping here");
                return;
            }
            continue;
        };
        empty = 0;
        offset = last.saturating_add(1);
        let chunk = Chunk {
            topic: topic.clone(),
            partition,
            records,
        };
        if tx.send(Ok(chunk)).await.is_err() {
            return; // the source was dropped
        }
    }
}

impl ExtractMethods {
    /// Reads Kafka topics up to the offsets they had when the step opened.
    pub async fn kafka(
        options: KafkaExtractOptions,
        setup: StepSetup,
    ) -> Result<Box<dyn Source>, StepError> {
        let conn = setup.connection_setup()?;
        let (client, servers) = client(&conn).await?;
        let listed = client
            .list_topics()
            .await
            .map_err(|e| kafka_error(e, &format!("listing topics on {servers}")))?;
        let dead_letters = match (&options.dead_letter_topic, options.on_error) {
            (Some(topic), OnDecodeError::DeadLetter) => Some(DeadLetters::new(
                topic.clone(),
                open_partitions(&client, &servers, topic, &setup.step).await?,
                &setup.step,
                &setup.run_id,
            )),
            _ => None,
        };
        let store = options
            .offsets
            .as_ref()
            .map(|o| OffsetStore::new(setup.resolve_path(&o.store)));
        let stored = match &store {
            Some(s) => s.load()?,
            None => Offsets::new(),
        };
        let mut ranges = Vec::new();
        for name in &options.topics {
            let Some(topic) = listed.iter().find(|t| &t.name == name) else {
                let mut known: Vec<&str> = listed.iter().map(|t| t.name.as_str()).collect();
                known.sort_unstable();
                known.truncate(20);
                return Err(StepError::user(format!(
                    "step \"{}\": topic \"{name}\" does not exist on {servers}",
                    setup.step
                ))
                .with_hint(format!("topics there: {}", known.join(", "))));
            };
            let partitions: Vec<i32> = match &options.partitions {
                Some(wanted) => {
                    if let Some(p) = wanted.iter().find(|p| !topic.partitions.contains(p)) {
                        return Err(StepError::user(format!(
                            "step \"{}\": topic \"{name}\" has no partition {p} (it has {})",
                            setup.step,
                            topic.partitions.len()
                        )));
                    }
                    wanted.clone()
                }
                None => topic.partitions.iter().copied().collect(),
            };
            for partition in partitions {
                let doing = format!("opening topic \"{name}\" partition {partition}");
                let pc = client
                    .partition_client(name.clone(), partition, UnknownTopicHandling::Error)
                    .await
                    .map_err(|e| kafka_error(e, &doing))?;
                let earliest = pc
                    .get_offset(OffsetAt::Earliest)
                    .await
                    .map_err(|e| kafka_error(e, &doing))?;
                let end = pc
                    .get_offset(OffsetAt::Latest)
                    .await
                    .map_err(|e| kafka_error(e, &doing))?;
                let at = format!("topic \"{name}\" partition {partition}");
                let start = match stored.get(name).and_then(|m| m.get(&partition)) {
                    Some(&o) => {
                        if o < earliest || o > end {
                            return Err(StepError::user(format!(
                                "step \"{}\": the stored offset {o} of {at} is outside what the partition keeps ({earliest} to {end})",
                                setup.step
                            ))
                            .with_hint("records were deleted by retention, or the topic was recreated; remove the partition from the offsets file to start from \"start\""));
                        }
                        o
                    }
                    None => match &options.start {
                        StartAt::Earliest => earliest,
                        StartAt::Latest => end,
                        StartAt::Timestamp(ts) => {
                            let t = DateTime::parse_from_rfc3339(ts).map_err(|e| {
                                StepError::user(format!("start timestamp \"{ts}\": {e}"))
                            })?;
                            let o = pc
                                .get_offset(OffsetAt::Timestamp(t.to_utc()))
                                .await
                                .map_err(|e| kafka_error(e, &doing))?;
                            // No record at or after the time: nothing to read.
                            if o < 0 { end } else { o.clamp(earliest, end) }
                        }
                        StartAt::Offsets(map) => {
                            let explicit = map
                                .get(&format!("{name}/{partition}"))
                                .or_else(|| map.get(&partition.to_string()));
                            match explicit {
                                Some(&o) if o < earliest || o > end => {
                                    return Err(StepError::user(format!(
                                        "step \"{}\": offset {o} of {at} is outside what the partition keeps ({earliest} to {end})",
                                        setup.step
                                    )));
                                }
                                Some(&o) => o,
                                None => earliest,
                            }
                        }
                    },
                };
                tracing::info!(step = %setup.step, topic = %name, partition, start, end, lag = end.saturating_sub(start), "reading");
                ranges.push(Range {
                    topic: Arc::from(name.as_str()),
                    partition,
                    client: pc,
                    start,
                    end,
                });
            }
        }
        let decoder = match (&options.avro_schema, options.format) {
            (Some(path), ValueFormat::Avro) => {
                let (text, path) = read_avsc(&setup, path)?;
                Decoder::avro(&text, options.metadata)
                    .map_err(|e| e.context(format!("step \"{}\": {path}", setup.step)))?
            }
            _ => Decoder::new(options.format, options.schema(), options.metadata),
        };
        let mut ends = Offsets::new();
        let mut total = 0u64;
        for r in &ranges {
            ends.entry(r.topic.to_string())
                .or_default()
                .insert(r.partition, r.end);
            total = total.saturating_add(u64::try_from(r.end.saturating_sub(r.start)).unwrap_or(0));
        }
        let partitions = ranges.len() as u64;
        let (tx, rx) = mpsc::channel(ranges.len().saturating_mul(2).max(4));
        let tasks = ranges
            .into_iter()
            .filter(|r| r.start < r.end)
            .map(|r| tokio::spawn(read_partition(r, options.fetch_bytes, tx.clone())))
            .collect();
        drop(tx);
        Ok(Box::new(KafkaSource {
            step: setup.step.clone(),
            rx,
            tasks,
            decoder,
            on_error: options.on_error,
            batch_rows: options.batch_rows,
            store,
            dead_letters,
            ends,
            total,
            read: 0,
            skipped: 0,
            partitions,
            emitted: false,
        }))
    }
}

#[cfg(test)]
#[path = "extract_tests.rs"]
mod tests;
