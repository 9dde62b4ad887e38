//! What the executor drives: sources that yield batches, operators that turn batches into
//! batches, and sinks that write them and publish at commit.

use crate::batch::Batch;
use crate::spill::{DatasetReader, SpillDir, Stored};
use crate::stream::StreamOffsets;
use async_trait::async_trait;
use pipeline_base::StepError;
use polars::prelude::DataFrame;
use std::collections::HashMap;
use std::sync::Mutex;

/// Side inputs of a step, gathered whole, by step name.
pub type Datasets = HashMap<String, DataFrame>;

/// Counters a method reports beyond rows in/out (e.g. `failed`, `files_written`).
pub type Metrics = Vec<(&'static str, u64)>;

/// Shared state of one run attempt: the named datasets that later steps read.
#[derive(Default)]
pub struct RunContext {
    pub(crate) datasets: Mutex<HashMap<String, Stored>>,
    /// Datasets later steps read batch by batch (not as a side input): they spill to disk.
    streamed: std::collections::HashSet<String>,
    pub(crate) spill: Mutex<Option<SpillDir>>,
    /// Columns dropped because no later step reads them, with the step that dropped them.
    dropped: Mutex<std::collections::BTreeMap<String, String>>,
    /// For the datasets whose readers are known, how many reads are still to come: a dataset
    /// leaves the context at its last read, so that its memory goes with its last reader.
    readers: Mutex<HashMap<String, usize>>,
}

impl RunContext {
    pub fn new() -> Self {
        Self::default()
    }

    /// A context whose `streamed` datasets (read by later steps batch by batch, never as a
    /// side input) go to disk past [`crate::spill::SPILL_BYTES`] in memory.
    pub fn with_streamed(streamed: impl IntoIterator<Item = String>) -> Self {
        RunContext {
            streamed: streamed.into_iter().collect(),
            ..Self::default()
        }
    }

    /// Declares how many times each dataset will be read (by [`RunContext::reader`] or
    /// [`RunContext::dataset`]): a dataset is let go at its last read. Datasets not named are
    /// kept to the end of the attempt.
    pub fn with_readers(self, readers: HashMap<String, usize>) -> Self {
        *self.readers.lock().unwrap_or_else(|p| p.into_inner()) = readers;
        self
    }

    /// Appends a batch to a named dataset (a streamed one may go to disk).
    pub fn store(&self, name: &str, batch: Batch) -> Result<(), StepError> {
        let mut guard = self.datasets.lock().unwrap_or_else(|p| p.into_inner());
        let stored = guard.entry(name.to_string()).or_default();
        stored.bytes = stored.bytes.saturating_add(batch.size_bytes());
        stored.memory.push(batch);
        if stored.bytes > crate::spill::SPILL_BYTES && self.streamed.contains(name) {
            let mut spill = self.spill.lock().unwrap_or_else(|p| p.into_inner());
            if spill.is_none() {
                *spill = Some(SpillDir::new()?);
            }
            if let Some(dir) = spill.as_mut() {
                dir.spill(name, stored)?;
            }
        }
        Ok(())
    }

    /// Reads a named dataset batch by batch (`None` when no step produced it).
    pub fn reader(&self, name: &str) -> Option<DatasetReader> {
        let mut guard = self.datasets.lock().unwrap_or_else(|p| p.into_inner());
        let reader = guard
            .get(name)
            .map(|stored| DatasetReader::new(name, stored))?;
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(left) = readers.get_mut(name) {
            *left = left.saturating_sub(1);
            if *left == 0 {
                // The last reader holds what it needs (its files stay in the spill directory).
                readers.remove(name);
                guard.remove(name);
            }
        }
        Some(reader)
    }

    /// Marks a dataset as existing even when no batch came (zero rows).
    pub fn declare(&self, name: &str) {
        let mut guard = self.datasets.lock().unwrap_or_else(|p| p.into_inner());
        guard.entry(name.to_string()).or_default();
    }

    /// Records columns that `step` dropped because no later step reads them.
    pub fn note_dropped<'a>(&self, step: &str, columns: impl IntoIterator<Item = &'a str>) {
        let mut guard = self.dropped.lock().unwrap_or_else(|p| p.into_inner());
        for c in columns {
            guard
                .entry(c.to_string())
                .or_insert_with(|| step.to_string());
        }
    }

    /// Every column dropped so far in this attempt, by name, with the step that dropped it.
    pub fn dropped_columns(&self) -> Vec<(String, String)> {
        let guard = self.dropped.lock().unwrap_or_else(|p| p.into_inner());
        guard.iter().map(|(c, s)| (c.clone(), s.clone())).collect()
    }

    /// A named dataset as one DataFrame. An empty dataset is an empty frame without columns.
    pub fn dataset(&self, name: &str) -> Result<DataFrame, StepError> {
        let mut reader = self.reader(name).ok_or_else(|| {
            StepError::internal(format!(
                "dataset \"{name}\" was not produced before it was read"
            ))
        })?;
        let mut out: Option<DataFrame> = None;
        while let Some(b) = reader.next_batch()? {
            let df = b.into_frame()?;
            match &mut out {
                None => out = Some(df),
                Some(acc) => {
                    acc.vstack_mut_owned(df).map_err(|e| {
                        crate::errors::polars_error(e, &format!("gathering dataset \"{name}\""))
                    })?;
                }
            }
        }
        Ok(out.unwrap_or_default())
    }
}

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The step's data is now visible (or it had nothing to publish).
    Published,
    /// An earlier run with the same run id already published this step's data; nothing was
    /// written again (see `pipectl run --resume`).
    AlreadyPublished,
}

/// Reads batches from a source system.
#[async_trait]
pub trait Source: Send {
    /// The next batch, or `None` at the end of the data.
    async fn next_batch(&mut self) -> Result<Option<Batch>, StepError>;

    /// The total number of rows when known in advance, for progress display.
    fn total_rows(&self) -> Option<u64> {
        None
    }

    /// Columns of its data the source did not read because no later step reads them
    /// (`StepSetup::columns`): noted with the columns steps drop, for the hint of a later
    /// "column not found".
    fn left_out(&self) -> Vec<String> {
        Vec::new()
    }

    /// Every load of the run has committed: record how far the source was read (e.g. a Kafka
    /// extract's stored offsets). Never called for a run that failed.
    async fn commit(&mut self) -> Result<(), StepError> {
        Ok(())
    }

    /// Counters beyond rows (e.g. `records_read`, `skipped_records`), for the report.
    fn metrics(&self) -> Metrics {
        Vec::new()
    }

    /// What the source read beyond counters, for the run report (e.g. each Kafka partition's
    /// start, end and lag).
    fn details(&self) -> Option<serde_json::Value> {
        None
    }
}

/// Turns batches into batches. Row-wise operators answer each `push`; whole-input ones gather
/// and answer at `finish`. Loads write in `push`/`finish` and publish in `commit`.
#[async_trait]
pub trait Operator: Send {
    async fn push(&mut self, batch: Batch, cx: &RunContext) -> Result<Vec<Batch>, StepError>;

    /// The input has ended: emit whatever is left.
    async fn finish(&mut self, _cx: &RunContext) -> Result<Vec<Batch>, StepError> {
        Ok(Vec::new())
    }

    /// After `finish`: more output, a piece at a time, until `None` (an operator whose output
    /// does not fit in memory at once, e.g. a merge of sorted runs). Each piece goes down the
    /// chain before the next is asked for.
    async fn drain(&mut self, _cx: &RunContext) -> Result<Option<Vec<Batch>>, StepError> {
        Ok(None)
    }

    /// Every step succeeded: make written data visible.
    async fn commit(&mut self) -> Result<CommitOutcome, StepError> {
        Ok(CommitOutcome::Published)
    }

    /// The attempt failed: discard anything written and not committed.
    async fn abort(&mut self) {}

    /// In a stream: the next offset per partition this load has committed, or `None` when it
    /// keeps no offsets (an at-least-once sink). Asked when a stream starts.
    async fn stream_offsets(&mut self) -> Result<Option<StreamOffsets>, StepError> {
        Ok(None)
    }

    fn metrics(&self) -> Metrics {
        Vec::new()
    }
}

/// Writes DataFrames to a sink system. Nothing may become visible to readers before `commit`.
#[async_trait]
pub trait Sink: Send {
    async fn write(&mut self, df: DataFrame) -> Result<(), StepError>;

    /// Flushes everything written so far; afterwards only `commit` or `abort` follow.
    async fn prepare(&mut self) -> Result<(), StepError>;

    /// Publishes the written data atomically — unless the sink finds that a load with the
    /// same run id and step already published (a resumed run), in which case it publishes
    /// nothing and answers `AlreadyPublished`.
    async fn commit(&mut self) -> Result<CommitOutcome, StepError>;

    /// Discards the written data.
    async fn abort(&mut self);

    /// In a stream (`StepSetup::stream`): the next offset per partition this sink committed
    /// with its data, or `None` when it keeps no offsets (at-least-once). See [`crate::stream`].
    async fn stream_offsets(&mut self) -> Result<Option<StreamOffsets>, StepError> {
        Ok(None)
    }

    fn metrics(&self) -> Metrics {
        Vec::new()
    }
}

/// An opened step.
pub enum Runtime {
    Source(Box<dyn Source>),
    Operator(Box<dyn Operator>),
}

/// Runs CPU-bound DataFrame work on tokio's blocking pool. Polars must not run on an async worker
/// thread: it would stall other tasks, and its lazy engine's `block_in_place` panics on a
/// current-thread runtime.
pub async fn blocking<T, F>(f: F) -> Result<T, StepError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StepError> + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle
            .spawn_blocking(f)
            .await
            .map_err(|e| StepError::internal(format!("a DataFrame task did not complete: {e}")))?,
        Err(_) => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::*;

    #[test]
    fn datasets_stack_their_batches_and_a_missing_one_is_named() {
        let cx = RunContext::new();
        cx.declare("empty");
        assert_eq!(cx.dataset("empty").unwrap().height(), 0);
        let a = df!("id" => [1i64, 2]).unwrap();
        let b = df!("id" => [3i64]).unwrap();
        cx.store("ids", Batch::Frame(a)).unwrap();
        let avro = crate::avro::frame_to_avro(&b, "r").unwrap();
        cx.store("ids", Batch::Avro(avro)).unwrap();
        let all = cx.dataset("ids").unwrap();
        assert_eq!(all.column("id").unwrap().i64().unwrap().sum(), Some(6));
        let err = cx.dataset("nope").unwrap_err();
        assert!(err.message().contains("\"nope\" was not produced"), "{err}");
        let mismatched = df!("other" => ["x"]).unwrap();
        cx.store("ids", Batch::Frame(mismatched)).unwrap();
        assert!(
            cx.dataset("ids").is_err(),
            "frames that do not stack are an error"
        );
    }

    #[test]
    fn a_dataset_is_let_go_at_its_last_declared_read() {
        let readers = HashMap::from([("twice".to_string(), 2), ("once".to_string(), 1)]);
        let cx = RunContext::new().with_readers(readers);
        let ids = df!("id" => [1i64, 2]).unwrap();
        for name in ["twice", "once", "kept"] {
            cx.store(name, Batch::Frame(ids.clone())).unwrap();
        }
        let frame = cx.dataset("once").unwrap();
        assert_eq!(frame.height(), 2, "the last reader still gets every row");
        assert!(cx.reader("once").is_none(), "gone after its one read");
        assert_eq!(cx.dataset("twice").unwrap().height(), 2);
        assert!(cx.reader("twice").is_some(), "second read");
        assert!(cx.reader("twice").is_none(), "gone after the second");
        for _ in 0..3 {
            assert_eq!(cx.dataset("kept").unwrap().height(), 2, "undeclared: kept");
        }
    }
}
