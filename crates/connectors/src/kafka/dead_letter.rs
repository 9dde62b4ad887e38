//! Dead letters of a Kafka extract (`"on_error": "dead_letter"`): each record that cannot be
//! decoded is kept with its raw key, value and headers, plus headers saying where it came from
//! and why (`pipectl.error`, `pipectl.topic`, `pipectl.partition`, `pipectl.offset`,
//! `pipectl.step`, `pipectl.run_id`), and produced to the dead-letter topic when the source
//! commits: after every load of the run committed and before the offsets are stored. A failed
//! run publishes none (its rerun reads and dead-letters the same records again); a crash
//! between the two writes can publish a dead letter twice (at-least-once, like the load).

use super::kafka_error;
use pipeline_base::StepError;
use rskafka::client::partition::{Compression, PartitionClient};
use rskafka::record::{Record, RecordAndOffset};

/// Dead letters held per run at most (bytes of keys, values and headers): more undecodable
/// records than this means the input is not what the step expects.
const MAX_HELD_BYTES: usize = 64 << 20;
/// Bytes per produce request.
const REQUEST_BYTES: usize = 256 << 10;

pub(super) struct DeadLetters {
    pub topic: String,
    partitions: Vec<PartitionClient>,
    step: String,
    run_id: String,
    held: Vec<(usize, Record)>,
    bytes: usize,
    pub produced: u64,
}

impl DeadLetters {
    pub fn new(topic: String, partitions: Vec<PartitionClient>, step: &str, run_id: &str) -> Self {
        DeadLetters {
            topic,
            partitions,
            step: step.to_string(),
            run_id: run_id.to_string(),
            held: Vec::new(),
            bytes: 0,
            produced: 0,
        }
    }

    /// Keeps the record read at `topic`/`partition` with the reason it was refused.
    pub fn hold(
        &mut self,
        topic: &str,
        partition: i32,
        r: &RecordAndOffset,
        why: &str,
    ) -> Result<(), StepError> {
        let mut record = r.record.clone();
        for (k, v) in [
            ("pipectl.error", why.to_string()),
            ("pipectl.topic", topic.to_string()),
            ("pipectl.partition", partition.to_string()),
            ("pipectl.offset", r.offset.to_string()),
            ("pipectl.step", self.step.clone()),
            ("pipectl.run_id", self.run_id.clone()),
        ] {
            record.headers.insert(k.to_string(), v.into_bytes());
        }
        let size = record.approximate_size();
        self.bytes = self.bytes.saturating_add(size);
        if self.bytes > MAX_HELD_BYTES {
            return Err(StepError::user(format!(
                "step \"{}\": more than {} MiB of records could not be decoded in this run (the last at topic \"{topic}\" partition {partition} offset {}: {why})",
                self.step,
                MAX_HELD_BYTES >> 20,
                r.offset
            ))
            .with_hint("check the step's format and schema against the topic's records"));
        }
        let n = self.partitions.len().max(1);
        let target = usize::try_from(partition)
            .unwrap_or(0)
            .checked_rem(n)
            .unwrap_or(0);
        self.held.push((target, record));
        Ok(())
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Produces every held dead letter (each source partition's in order).
    pub async fn publish(&mut self) -> Result<(), StepError> {
        let held = std::mem::take(&mut self.held);
        for (target, client) in self.partitions.iter().enumerate() {
            let mut batch: Vec<Record> = Vec::new();
            let mut size = 0usize;
            let mine = held.iter().filter(|(t, _)| *t == target).map(|(_, r)| r);
            for record in mine {
                size = size.saturating_add(record.approximate_size());
                batch.push(record.clone());
                if size >= REQUEST_BYTES {
                    self.produce(client, std::mem::take(&mut batch), target)
                        .await?;
                    size = 0;
                }
            }
            if !batch.is_empty() {
                self.produce(client, batch, target).await?;
            }
            self.produced = self
                .produced
                .saturating_add(held.iter().filter(|(t, _)| *t == target).count() as u64);
        }
        self.bytes = 0;
        Ok(())
    }

    async fn produce(
        &self,
        client: &PartitionClient,
        batch: Vec<Record>,
        partition: usize,
    ) -> Result<(), StepError> {
        let n = batch.len() as u64;
        client
            .produce(batch, Compression::NoCompression)
            .await
            .map_err(|e| {
                kafka_error(
                    e,
                    &format!(
                        "step \"{}\": producing dead letters to topic \"{}\" partition {partition}",
                        self.step, self.topic
                    ),
                )
            })?;
        tracing::debug!(step = %self.step, topic = %self.topic, records = n, "dead letters produced");
        Ok(())
    }
}
