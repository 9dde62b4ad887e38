//! `ExtractMethods::kafka` (batch): reads one or more topics from a start position up to the
//! high watermarks taken when the step opens, so a batch run always ends. One task per
//! partition fetches concurrently into a bounded channel; the source decodes what arrives into
//! batches of `batch_rows`. With `"offsets": {"store": FILE}` the next offsets are kept between
//! runs and written only after every load of the run has committed (`Source::commit`).

use super::dead_letter::DeadLetters;
use super::decode::Decoder;
pub use super::extract_options::{KafkaExtractOptions, OnDecodeError, StartAt, ValueFormat};
use super::offsets::{OffsetStore, Offsets};
use super::registry::Registry;
use super::{client, kafka_error, open_partitions, read_avsc, registry};
use crate::ExtractMethods;
use async_trait::async_trait;
use pipeline_base::StepError;
use pipeline_data::stream::StreamCursor;
use pipeline_data::{Batch, Metrics, Source, StepSetup};
use rskafka::client::partition::{PartitionClient, UnknownTopicHandling};
use rskafka::record::RecordAndOffset;
use std::sync::Arc;
use tokio::sync::mpsc;

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
    /// Each partition's start and end offsets and the lag when the step opened (the report).
    read_ranges: Vec<serde_json::Value>,
    offsets_store: Option<String>,
    step: String,
    rx: mpsc::Receiver<Result<Chunk, StepError>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    decoder: Decoder,
    on_error: OnDecodeError,
    batch_rows: usize,
    store: Option<OffsetStore>,
    /// With `on_error: dead_letter`: the records refused, produced at commit.
    dead_letters: Option<DeadLetters>,
    /// For `avro_confluent`: where writer schemas are fetched (once per id).
    registry: Option<Registry>,
    /// The offsets to store after a complete read.
    ends: Offsets,
    total: u64,
    read: u64,
    skipped: u64,
    partitions: u64,
    /// A batch was handed on.
    emitted: bool,
    /// In a stream: where the records' timestamps and sizes are counted.
    cursor: Option<Arc<StreamCursor>>,
}

/// What the source of a stream answers while the stream starts (it only lists partitions).
struct Discovered;

#[async_trait]
impl Source for Discovered {
    async fn next_batch(&mut self) -> Result<Option<Batch>, StepError> {
        Ok(None)
    }
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
            if let Some(cursor) = &self.cursor {
                let bytes = chunk.records.iter().fold(0u64, |acc, r| {
                    let size = r
                        .record
                        .key
                        .as_ref()
                        .map_or(0, Vec::len)
                        .saturating_add(r.record.value.as_ref().map_or(0, Vec::len));
                    acc.saturating_add(size as u64)
                });
                cursor.record(
                    chunk
                        .records
                        .iter()
                        .map(|r| r.record.timestamp.timestamp_millis()),
                    bytes,
                );
            }
            if let Some(registry) = &self.registry {
                for r in &chunk.records {
                    if let Some(id) = self.decoder.unknown_writer(r) {
                        let text = registry.schema(id).await.map_err(|e| {
                            e.context(format!(
                                "step \"{}\": topic \"{}\" partition {} offset {}",
                                self.step, chunk.topic, chunk.partition, r.offset
                            ))
                        })?;
                        self.decoder.add_writer(id, &text)?;
                    }
                }
            }
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
            store.save(&self.ends).await?;
            if self.cursor.is_some() {
                // Every micro-batch of a stream: not worth a line each.
                tracing::debug!(step = %self.step, store = %store.describe(), "stored the next offsets");
            } else {
                tracing::info!(step = %self.step, store = %store.describe(), "stored the next offsets");
            }
        }
        Ok(())
    }

    fn details(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "partitions": self.read_ranges,
            "offsets_store": self.offsets_store,
        }))
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
    cursor: Option<Arc<StreamCursor>>,
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
            Ok((records, high_watermark)) => {
                if let Some(c) = &cursor {
                    c.observe_watermark(&topic, partition, high_watermark);
                }
                records
            }
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
        let store = match &options.offsets {
            Some(o) => {
                let conn = match &o.connection {
                    Some(name) => Some(setup.other_connection(name)?),
                    None => None,
                };
                Some(
                    OffsetStore::open(&o.store, conn, |p| setup.resolve_path(p))
                        .map_err(|e| e.context(format!("step \"{}\"", setup.step)))?,
                )
            }
            None => None,
        };
        let stored = match &store {
            Some(s) => s.load().await?,
            None => Offsets::new(),
        };
        let cursor = setup.stream.clone();
        let discovering = cursor.as_ref().is_some_and(|c| c.is_discovering());
        let mut discovered = Vec::new();
        let mut places = Vec::new();
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
            if discovering {
                discovered.extend(partitions.iter().map(|&p| (name.clone(), p)));
                continue;
            }
            for partition in partitions {
                let doing = format!("opening topic \"{name}\" partition {partition}");
                let pc = client
                    .partition_client(name.clone(), partition, UnknownTopicHandling::Error)
                    .await
                    .map_err(|e| kafka_error(e, &doing))?;
                let (earliest, end) = super::ranges::bounds(&pc, &doing).await?;
                let at = format!("topic \"{name}\" partition {partition}");
                // In a stream: the lowest of the loads' committed offsets and the stored ones
                // (which at-least-once loads rely on).
                let stored_at = stored.get(name).and_then(|m| m.get(&partition)).copied();
                let resume = match (
                    cursor.as_ref().and_then(|c| c.start_of(name, partition)),
                    stored_at,
                ) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let start = match (resume, &cursor) {
                    (Some(o), Some(c)) => {
                        super::stream::resume_at(c, &setup.step, &at, o, earliest, end)?
                    }
                    (Some(o), None) => {
                        super::ranges::stored_start(o, earliest, end, &setup.step, &at)?
                    }
                    (None, _) => {
                        let place = super::ranges::Place {
                            step: &setup.step,
                            at: &at,
                            name,
                            partition,
                            earliest,
                            end,
                        };
                        super::ranges::initial_start(&options, &pc, &place, &doing).await?
                    }
                };
                // A load that never committed this partition gets it from where the others are
                // (until the stream has a start of its own for it).
                let unstarted = cursor
                    .as_ref()
                    .is_some_and(|c| c.start_of(name, partition).is_none());
                let start = match cursor.as_ref().and_then(|c| c.floor_of(name, partition)) {
                    Some(floor) if unstarted && floor < start && floor >= earliest => floor,
                    _ => start,
                };
                if cursor.is_none() {
                    tracing::info!(step = %setup.step, topic = %name, partition, start, end, lag = end.saturating_sub(start), "reading");
                }
                places.push(super::stream::Place {
                    topic: name.clone(),
                    partition,
                    latest: end,
                    start,
                });
                ranges.push(Range {
                    topic: Arc::from(name.as_str()),
                    partition,
                    client: pc,
                    start,
                    end,
                });
            }
        }
        if discovering {
            if let Some(c) = &cursor {
                // The stored offsets (the at-least-once loads' resume point) count like a
                // load's when the stream works out where to resume.
                c.set_stored(
                    discovered
                        .iter()
                        .filter_map(|(t, p)| {
                            let o = stored.get(t).and_then(|m| m.get(p))?;
                            Some(((t.clone(), *p), *o))
                        })
                        .collect(),
                );
                c.set_partitions(discovered);
            }
            return Ok(Box::new(Discovered));
        }
        if let Some(c) = &cursor {
            // A micro-batch: each partition's lag, within the stream's limits.
            let fixed = super::stream::ranges(c, &places, c.mean_record_bytes());
            for r in fixed.iter().filter(|r| !r.is_empty()) {
                tracing::debug!(step = %setup.step, topic = %r.topic, partition = r.partition, start = r.start, end = r.end, high_watermark = r.high_watermark, "micro-batch range");
            }
            for (range, fixed) in ranges.iter_mut().zip(&fixed) {
                range.end = fixed.end;
            }
            c.set_ranges(fixed);
        }
        let mut confluent = None;
        let decoder = match (&options.avro_schema, options.format) {
            (Some(path), ValueFormat::Avro) => {
                let (text, path) = read_avsc(&setup, path)?;
                Decoder::avro(&text, options.metadata)
                    .map_err(|e| e.context(format!("step \"{}\": {path}", setup.step)))?
            }
            (reader, ValueFormat::AvroConfluent) => {
                let registry = registry(&conn)?;
                let text = match reader {
                    Some(path) => read_avsc(&setup, path)?.0,
                    None => {
                        let first = options
                            .topics
                            .first()
                            .map(String::as_str)
                            .unwrap_or_default();
                        registry.latest(&format!("{first}-value")).await?
                    }
                };
                confluent = Some(registry);
                Decoder::avro_confluent(&text, options.metadata)
                    .map_err(|e| e.context(format!("step \"{}\"", setup.step)))?
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
        let read_ranges = ranges
            .iter()
            .map(|r| {
                serde_json::json!({
                    "topic": &*r.topic,
                    "partition": r.partition,
                    "start": r.start,
                    "end": r.end,
                    "lag": r.end.saturating_sub(r.start),
                })
            })
            .collect();
        let (tx, rx) = mpsc::channel(ranges.len().saturating_mul(2).max(4));
        let tasks = ranges
            .into_iter()
            .filter(|r| r.start < r.end)
            .map(|r| {
                tokio::spawn(read_partition(
                    r,
                    options.fetch_bytes,
                    tx.clone(),
                    cursor.clone(),
                ))
            })
            .collect();
        drop(tx);
        Ok(Box::new(KafkaSource {
            read_ranges,
            offsets_store: store.as_ref().map(OffsetStore::describe),
            step: setup.step.clone(),
            rx,
            tasks,
            decoder,
            on_error: options.on_error,
            batch_rows: options.batch_rows,
            store,
            dead_letters,
            registry: confluent,
            ends,
            total,
            read: 0,
            skipped: 0,
            partitions,
            emitted: false,
            cursor,
        }))
    }
}

#[cfg(test)]
#[path = "extract_tests.rs"]
mod tests;
