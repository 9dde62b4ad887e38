//! Micro-batch streaming's shared cursor. In `"mode": "streaming"` the executor runs the plan
//! once per micro-batch; one [`StreamCursor`] is shared by the streaming source and the loads
//! of every micro-batch:
//! - the executor says where each partition starts and how far a replay may read;
//! - the source fixes the micro-batch's ranges when it opens (`start..end` per partition, end
//!   exclusive), so that every sink commits exactly those offsets with its data;
//! - an exactly-once sink commits the ranges' ends in the same transaction as the rows (a Delta
//!   `txn` per partition, a row per partition in PostgreSQL) and answers the executor's question
//!   "how far did you commit?" when the stream starts.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// `(topic, partition)`.
pub type PartitionKey = (String, i32);

/// The next offset to read, per partition.
pub type StreamOffsets = BTreeMap<PartitionKey, i64>;

/// One partition's share of a micro-batch: the records at offsets `start..end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRange {
    pub topic: String,
    pub partition: i32,
    pub start: i64,
    pub end: i64,
    /// The partition's high watermark when the range was fixed (for the lag).
    pub high_watermark: i64,
}

impl PartitionRange {
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// What a stream does when a partition no longer holds the offset it should resume at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutOfRange {
    /// Fail, naming the partition and the offsets.
    #[default]
    Fail,
    /// Resume at the earliest record the partition keeps (the records in between are lost).
    Earliest,
    /// Resume at the partition's end (everything not yet read is skipped).
    Latest,
}

/// Bounds of one micro-batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Records per micro-batch, over all partitions.
    pub max_records: u64,
    /// Record bytes (keys and values) per micro-batch, over all partitions.
    pub max_bytes: u64,
    pub on_out_of_range: OutOfRange,
}

/// A sink's committed offsets compared with a micro-batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamProgress {
    /// The sink has not committed any of the micro-batch: write it.
    Behind,
    /// The sink committed every range of the micro-batch already (a replay after a crash):
    /// write nothing.
    Committed,
}

#[derive(Default)]
struct State {
    /// The executor asks the source only to list its partitions (at the stream's start).
    discovering: bool,
    partitions: Vec<PartitionKey>,
    starts: StreamOffsets,
    caps: StreamOffsets,
    /// Partitions some load has not committed yet start no later than this.
    floors: StreamOffsets,
    /// The source's own stored offsets (found while discovering).
    stored: StreamOffsets,
    /// The caps are this micro-batch's exact ends (a retry reads what the failed attempt read).
    exact: bool,
    /// The highest high watermark seen per partition during the micro-batch.
    watermarks: StreamOffsets,
    ranges: Vec<PartitionRange>,
    /// Kafka record timestamps (ms since the epoch) of this micro-batch, for the latency.
    timestamps: Vec<i64>,
    bytes: u64,
    /// Records and bytes read since the stream started (for the mean record size).
    seen: (u64, u64),
}

/// The cursor of one stream (see the module doc).
pub struct StreamCursor {
    app: String,
    limits: StreamLimits,
    state: Mutex<State>,
    /// What a step keeps from one micro-batch to the next (an open table, known offsets), by
    /// a key of the step's choosing.
    kept: Mutex<HashMap<String, Box<dyn Any + Send>>>,
}

impl std::fmt::Debug for StreamCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StreamCursor({})", self.app)
    }
}

impl StreamCursor {
    /// A cursor for the stream `app` (the pipeline's name unless the file names another).
    pub fn new(app: impl Into<String>, limits: StreamLimits) -> Self {
        StreamCursor {
            app: app.into(),
            limits,
            state: Mutex::new(State::default()),
            kept: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps `value` for the next micro-batch under `key`.
    pub fn keep<T: Any + Send>(&self, key: &str, value: T) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.insert(key.to_string(), Box::new(value));
    }

    /// Takes what was kept under `key` (`None` when nothing, or something of another type).
    pub fn take_kept<T: Any + Send>(&self, key: &str) -> Option<T> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.remove(key)
            .and_then(|b| b.downcast::<T>().ok())
            .map(|b| *b)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stream's id, the same for every run of the pipeline.
    pub fn app(&self) -> &str {
        &self.app
    }

    pub fn limits(&self) -> StreamLimits {
        self.limits
    }

    /// The application id that names one load's offsets of one partition in a sink
    /// (`APP/STEP/TOPIC/PARTITION`: Delta's `txn` actions; two loads of a stream writing one
    /// table keep apart).
    pub fn partition_id(&self, step: &str, topic: &str, partition: i32) -> String {
        format!("{}/{step}/{topic}/{partition}", self.app)
    }

    /// The stream is starting: the source lists its partitions (`set_partitions`) and reads
    /// nothing, then the sinks say how far they committed.
    pub fn discover(&self) {
        self.state().discovering = true;
    }

    pub fn is_discovering(&self) -> bool {
        self.state().discovering
    }

    /// The source keeps offsets of its own (for at-least-once loads): where they stand.
    pub fn set_stored(&self, stored: StreamOffsets) {
        self.state().stored = stored;
    }

    pub fn stored(&self) -> StreamOffsets {
        self.state().stored.clone()
    }

    pub fn set_partitions(&self, partitions: Vec<PartitionKey>) {
        self.state().partitions = partitions;
    }

    /// Every partition the stream reads (known once the source has opened).
    pub fn partitions(&self) -> Vec<PartitionKey> {
        self.state().partitions.clone()
    }

    /// The next micro-batch starts at `starts` (partitions not named start where the source's
    /// own options say) and reads no further than `caps` (a replay of a micro-batch some sink
    /// committed and another did not).
    pub fn begin(&self, starts: StreamOffsets, caps: StreamOffsets) {
        let mut s = self.state();
        s.discovering = false;
        s.starts = starts;
        s.caps = caps;
        s.exact = false;
        s.ranges.clear();
        s.timestamps.clear();
        s.watermarks.clear();
        s.bytes = 0;
    }

    /// Like `begin`, but the micro-batch reads exactly up to `ends` (no budget): a retry of a
    /// failed attempt, which must read the same records.
    pub fn begin_exact(&self, starts: StreamOffsets, ends: StreamOffsets) {
        self.begin(starts, ends);
        self.state().exact = true;
    }

    pub fn is_exact(&self) -> bool {
        self.state().exact
    }

    /// Partitions a load has never committed start no later than the other loads' offsets.
    pub fn set_floors(&self, floors: StreamOffsets) {
        self.state().floors = floors;
    }

    pub fn floor_of(&self, topic: &str, partition: i32) -> Option<i64> {
        self.state()
            .floors
            .get(&(topic.to_string(), partition))
            .copied()
    }

    /// A fetch saw this high watermark.
    pub fn observe_watermark(&self, topic: &str, partition: i32, high_watermark: i64) {
        let mut s = self.state();
        let w = s
            .watermarks
            .entry((topic.to_string(), partition))
            .or_insert(high_watermark);
        *w = (*w).max(high_watermark);
    }

    /// The highest high watermark seen per partition in this micro-batch.
    pub fn watermarks(&self) -> StreamOffsets {
        self.state().watermarks.clone()
    }

    pub fn start_of(&self, topic: &str, partition: i32) -> Option<i64> {
        self.state()
            .starts
            .get(&(topic.to_string(), partition))
            .copied()
    }

    pub fn cap_of(&self, topic: &str, partition: i32) -> Option<i64> {
        self.state()
            .caps
            .get(&(topic.to_string(), partition))
            .copied()
    }

    /// The source fixed this micro-batch's ranges.
    pub fn set_ranges(&self, ranges: Vec<PartitionRange>) {
        self.state().ranges = ranges;
    }

    /// This micro-batch's ranges (empty before the source opened).
    pub fn ranges(&self) -> Vec<PartitionRange> {
        self.state().ranges.clone()
    }

    /// The source read records with these timestamps and this many key and value bytes.
    pub fn record(&self, timestamps: impl IntoIterator<Item = i64>, bytes: u64) {
        let mut s = self.state();
        let before = s.timestamps.len();
        s.timestamps.extend(timestamps);
        let n = s.timestamps.len().saturating_sub(before) as u64;
        s.bytes = s.bytes.saturating_add(bytes);
        s.seen = (s.seen.0.saturating_add(n), s.seen.1.saturating_add(bytes));
    }

    /// The mean bytes of a record read so far (`None` before any).
    pub fn mean_record_bytes(&self) -> Option<u64> {
        let (n, bytes) = self.state().seen;
        bytes.checked_div(n).map(|b| b.max(1))
    }

    /// The record timestamps and bytes read in this micro-batch, taken.
    pub fn take_read(&self) -> (Vec<i64>, u64) {
        let mut s = self.state();
        (
            std::mem::take(&mut s.timestamps),
            std::mem::take(&mut s.bytes),
        )
    }

    /// Where the sink stands against this micro-batch, from the next offsets it committed per
    /// partition (`committed`; a partition it never committed is absent). A sink never stands
    /// inside a micro-batch: each of its commits holds whole micro-batches, and a replay reads
    /// exactly the ranges the ahead sink committed; anything else is an error naming the
    /// partition (two streams writing with the same id, or offsets edited by hand).
    pub fn progress(&self, committed: &StreamOffsets) -> Result<StreamProgress, String> {
        let ranges = self.ranges();
        let (mut ahead, mut behind) = (Vec::new(), Vec::new());
        for r in ranges.iter().filter(|r| !r.is_empty()) {
            match committed.get(&(r.topic.clone(), r.partition)) {
                Some(&c) if c >= r.end => ahead.push(r),
                None => behind.push(r),
                Some(&c) if c <= r.start => behind.push(r),
                Some(&c) => {
                    return Err(format!(
                        "topic \"{}\" partition {}: the sink committed up to offset {c}, inside this micro-batch's range {}..{}",
                        r.topic, r.partition, r.start, r.end
                    ));
                }
            }
        }
        match (ahead.first(), behind.first()) {
            (Some(_), None) => Ok(StreamProgress::Committed),
            (None, _) => Ok(StreamProgress::Behind),
            (Some(a), Some(b)) => Err(format!(
                "the sink committed topic \"{}\" partition {} past offset {} but not topic \"{}\" partition {} from offset {}",
                a.topic, a.partition, a.end, b.topic, b.partition, b.start
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(ranges: &[(i32, i64, i64)]) -> StreamCursor {
        let c = StreamCursor::new(
            "orders_stream",
            StreamLimits {
                max_records: 10,
                max_bytes: 10,
                on_out_of_range: OutOfRange::Fail,
            },
        );
        c.set_ranges(
            ranges
                .iter()
                .map(|&(partition, start, end)| PartitionRange {
                    topic: "orders".into(),
                    partition,
                    start,
                    end,
                    high_watermark: end,
                })
                .collect(),
        );
        c
    }

    fn offsets(list: &[(i32, i64)]) -> StreamOffsets {
        list.iter()
            .map(|&(p, o)| (("orders".into(), p), o))
            .collect()
    }

    #[test]
    fn a_sink_is_behind_or_has_committed_whole_micro_batches() {
        let c = cursor(&[(0, 10, 20), (1, 5, 5), (2, 0, 7)]);
        assert_eq!(
            c.partition_id("to_lake", "orders", 2),
            "orders_stream/to_lake/orders/2"
        );
        assert_eq!(c.progress(&offsets(&[])), Ok(StreamProgress::Behind));
        assert_eq!(
            c.progress(&offsets(&[(0, 10), (1, 5)])),
            Ok(StreamProgress::Behind)
        );
        assert_eq!(
            c.progress(&offsets(&[(0, 20), (2, 7)])),
            Ok(StreamProgress::Committed)
        );
        // Partition 1 is empty in this micro-batch: its offset says nothing.
        assert_eq!(
            c.progress(&offsets(&[(0, 25), (1, 0), (2, 9)])),
            Ok(StreamProgress::Committed)
        );
        let inside = c.progress(&offsets(&[(0, 15)])).unwrap_err();
        assert!(
            inside.contains("partition 0") && inside.contains("10..20"),
            "{inside}"
        );
        let mixed = c.progress(&offsets(&[(0, 20)])).unwrap_err();
        assert!(mixed.contains("partition 2 from offset 0"), "{mixed}");
    }

    #[test]
    fn a_step_keeps_state_between_micro_batches() {
        let c = cursor(&[]);
        c.keep("delta:to_lake", 42u64);
        assert_eq!(c.take_kept::<String>("delta:to_lake"), None, "another type");
        c.keep("delta:to_lake", 42u64);
        assert_eq!(c.take_kept::<u64>("delta:to_lake"), Some(42));
        assert_eq!(c.take_kept::<u64>("delta:to_lake"), None, "taken");
    }

    #[test]
    fn begin_resets_the_micro_batch() {
        let c = cursor(&[(0, 1, 2)]);
        c.record([5, 6], 40);
        c.begin(offsets(&[(0, 2)]), offsets(&[(0, 9)]));
        assert!(c.ranges().is_empty());
        assert_eq!(c.take_read(), (Vec::new(), 0));
        assert_eq!(c.start_of("orders", 0), Some(2));
        assert_eq!(c.cap_of("orders", 0), Some(9));
        assert_eq!(c.start_of("orders", 1), None);
    }
}
