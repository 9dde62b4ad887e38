//! The bounded read of a kafka extract for an engine that reads Kafka itself (the Spark engine):
//! each partition from its stored offset (or the step's `start`) to its end when the step
//! opens, worked out exactly as the kafka extract does, and the stored offsets moved to those
//! ends once the run's loads have committed.

use super::extract_options::{KafkaExtractOptions, StartAt};
use super::offsets::{OffsetStore, Offsets};
use super::{client, kafka_error};
use pipeline_base::StepError;
use pipeline_data::ConnectionSetup;
use rskafka::chrono::DateTime;
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use std::path::Path;

/// One partition's records to read: offsets `start..end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRange {
    pub topic: String,
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

/// What a bounded read covers, and where its offsets are kept.
pub struct KafkaRanges {
    pub ranges: Vec<PartitionRange>,
    store: Option<OffsetStore>,
}

impl KafkaRanges {
    /// Stores each partition's end as its next offset (call after every load committed).
    pub async fn commit(&self) -> Result<(), StepError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let mut next = Offsets::new();
        for r in &self.ranges {
            next.entry(r.topic.clone())
                .or_default()
                .insert(r.partition, r.end);
        }
        store.save(&next).await
    }

    /// Where the offsets are kept, for messages.
    pub fn store(&self) -> Option<String> {
        self.store.as_ref().map(OffsetStore::describe)
    }
}

/// A partition's earliest offset and its end (the next offset to be written).
pub(super) async fn bounds(pc: &PartitionClient, doing: &str) -> Result<(i64, i64), StepError> {
    let earliest = pc
        .get_offset(OffsetAt::Earliest)
        .await
        .map_err(|e| kafka_error(e, doing))?;
    let end = pc
        .get_offset(OffsetAt::Latest)
        .await
        .map_err(|e| kafka_error(e, doing))?;
    Ok((earliest, end))
}

/// A stored offset, when the partition still keeps it.
pub(super) fn stored_start(
    o: i64,
    earliest: i64,
    end: i64,
    step: &str,
    at: &str,
) -> Result<i64, StepError> {
    if o < earliest || o > end {
        return Err(StepError::user(format!(
            "step \"{step}\": the stored offset {o} of {at} is outside what the partition keeps ({earliest} to {end})"
        ))
        .with_hint("records were deleted by retention, or the topic was recreated; remove the partition from the offsets file to start from \"start\""));
    }
    Ok(o)
}

/// Where a partition is, for messages and the start rules.
pub(super) struct Place<'a> {
    pub step: &'a str,
    pub at: &'a str,
    pub name: &'a str,
    pub partition: i32,
    pub earliest: i64,
    pub end: i64,
}

/// Where a partition without a stored offset starts, by the step's `start`.
pub(super) async fn initial_start(
    options: &KafkaExtractOptions,
    pc: &PartitionClient,
    p: &Place<'_>,
    doing: &str,
) -> Result<i64, StepError> {
    let (earliest, end) = (p.earliest, p.end);
    Ok(match &options.start {
        StartAt::Earliest => earliest,
        StartAt::Latest => end,
        StartAt::Timestamp(ts) => {
            let t = DateTime::parse_from_rfc3339(ts)
                .map_err(|e| StepError::user(format!("start timestamp \"{ts}\": {e}")))?;
            let o = pc
                .get_offset(OffsetAt::Timestamp(t.to_utc()))
                .await
                .map_err(|e| kafka_error(e, doing))?;
            // No record at or after the time: nothing to read.
            if o < 0 { end } else { o.clamp(earliest, end) }
        }
        StartAt::Offsets(map) => {
            let explicit = map
                .get(&format!("{}/{}", p.name, p.partition))
                .or_else(|| map.get(&p.partition.to_string()));
            match explicit {
                Some(&o) if o < earliest || o > end => {
                    return Err(StepError::user(format!(
                        "step \"{}\": offset {o} of {} is outside what the partition keeps ({earliest} to {end})",
                        p.step, p.at
                    )));
                }
                Some(&o) => o,
                None => earliest,
            }
        }
    })
}

/// The ranges of `options`' topics now. `offsets_connection` is the s3 connection of an
/// `s3://` offsets store; relative store paths are from `base_dir`.
pub async fn kafka_ranges(
    options: &KafkaExtractOptions,
    connection: &ConnectionSetup,
    step: &str,
    offsets_connection: Option<ConnectionSetup>,
    base_dir: &Path,
) -> Result<KafkaRanges, StepError> {
    let store = match &options.offsets {
        Some(o) => Some(
            OffsetStore::open(&o.store, offsets_connection, |p| base_dir.join(p))
                .map_err(|e| e.context(format!("step \"{step}\"")))?,
        ),
        None => None,
    };
    let stored = match &store {
        Some(s) => s.load().await?,
        None => Offsets::new(),
    };
    let (client, servers) = client(connection).await?;
    let listed = client
        .list_topics()
        .await
        .map_err(|e| kafka_error(e, &format!("listing topics on {servers}")))?;
    let mut ranges = Vec::new();
    for name in &options.topics {
        let Some(topic) = listed.iter().find(|t| &t.name == name) else {
            return Err(StepError::user(format!(
                "step \"{step}\": topic \"{name}\" does not exist on {servers}"
            )));
        };
        let partitions: Vec<i32> = match &options.partitions {
            Some(wanted) => wanted.clone(),
            None => topic.partitions.iter().copied().collect(),
        };
        for partition in partitions {
            let doing = format!("opening topic \"{name}\" partition {partition}");
            let pc = client
                .partition_client(name.clone(), partition, UnknownTopicHandling::Error)
                .await
                .map_err(|e| kafka_error(e, &doing))?;
            let (earliest, end) = bounds(&pc, &doing).await?;
            let at = format!("topic \"{name}\" partition {partition}");
            let start = match stored.get(name).and_then(|m| m.get(&partition)).copied() {
                Some(o) => stored_start(o, earliest, end, step, &at)?,
                None => {
                    let place = Place {
                        step,
                        at: &at,
                        name,
                        partition,
                        earliest,
                        end,
                    };
                    initial_start(options, &pc, &place, &doing).await?
                }
            };
            tracing::info!(step, topic = %name, partition, start, end, lag = end.saturating_sub(start), "reading");
            ranges.push(PartitionRange {
                topic: name.clone(),
                partition,
                start,
                end,
            });
        }
    }
    Ok(KafkaRanges { ranges, store })
}
