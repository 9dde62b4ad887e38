//! Datasets that later steps read batch by batch (a quarantine dataset, a branch read by
//! another load) do not stay in memory as they grow: past a threshold their batches go to a
//! Parquet file in a private temporary directory, and the reader brings them back one file at
//! a time, in the order they were stored. Side inputs, which are read whole anyway, stay in
//! memory.

use crate::batch::Batch;
use pipeline_base::StepError;
use polars::prelude::*;
use std::path::PathBuf;

/// In-memory bytes above which a streamed dataset is written out.
pub const SPILL_BYTES: usize = 2 * 1024 * 1024;

/// The default `memory_limit_mb`: a quarter of the memory this process may use — the
/// machine's, or less when its cgroup (a container's memory limit) says so; 1 GiB when
/// neither is known.
pub fn default_memory_limit() -> u64 {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let total = read("/proc/meminfo").and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb.saturating_mul(1024))
    });
    // cgroup v2, then v1 ("max" or a huge number when unlimited).
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(|v| cgroup_limit(&v));
    quarter_of(total, cgroup)
}

/// A cgroup memory limit file's bytes (`None` for "max").
fn cgroup_limit(text: &str) -> Option<u64> {
    text.trim().parse::<u64>().ok()
}

/// A quarter of the smaller known limit.
fn quarter_of(total: Option<u64>, cgroup: Option<u64>) -> u64 {
    let bytes = match (total, cgroup) {
        (Some(t), Some(c)) => t.min(c),
        (Some(b), None) | (None, Some(b)) => b,
        (None, None) => 4 << 30,
    };
    bytes / 4
}

/// One dataset's batches: files written so far (oldest first), then those still in memory.
#[derive(Default)]
pub(crate) struct Stored {
    pub(crate) files: Vec<PathBuf>,
    pub(crate) memory: Vec<Batch>,
    pub(crate) bytes: usize,
}

/// Where a run's spilled datasets go; deleted with the run context.
pub(crate) struct SpillDir {
    dir: tempfile::TempDir,
    next: usize,
}

impl SpillDir {
    pub(crate) fn new() -> Result<Self, StepError> {
        let dir = tempfile::Builder::new()
            .prefix("pipectl-spill-")
            .tempdir()
            .map_err(|e| {
                StepError::external(format!(
                    "cannot create a directory for spilled data under {}: {e}",
                    std::env::temp_dir().display()
                ))
                .with_hint("set TMPDIR to a writable directory with free space")
            })?;
        Ok(SpillDir { dir, next: 0 })
    }

    /// Writes the in-memory batches of `stored` to new files: one per run of batches with the
    /// same columns (a dataset's batches may differ, e.g. files inferred apart). Avro batches
    /// stay in memory (they would come back as DataFrames).
    pub(crate) fn spill(&mut self, name: &str, stored: &mut Stored) -> Result<(), StepError> {
        if stored.memory.iter().any(|b| matches!(b, Batch::Avro(_))) {
            return Ok(());
        }
        let mut groups: Vec<DataFrame> = Vec::new();
        for batch in stored.memory.drain(..) {
            let df = batch.into_frame()?;
            match groups.last_mut() {
                Some(last) if last.schema() == df.schema() => {
                    last.vstack_mut_owned(df).map_err(|e| {
                        crate::errors::polars_error(e, &format!("spilling dataset \"{name}\""))
                    })?;
                }
                _ => groups.push(df),
            }
        }
        stored.bytes = 0;
        for mut df in groups {
            self.next = self.next.saturating_add(1);
            let path = self.dir.path().join(format!("{}.parquet", self.next));
            let file = std::fs::File::create(&path).map_err(|e| {
                StepError::external(format!(
                    "spilling dataset \"{name}\" to {}: {e}",
                    path.display()
                ))
            })?;
            ParquetWriter::new(file)
                .with_compression(ParquetCompression::Lz4Raw)
                .finish(&mut df)
                .map_err(|e| {
                    crate::errors::polars_error(e, &format!("spilling dataset \"{name}\""))
                })?;
            tracing::debug!(dataset = name, rows = df.height(), file = %path.display(), "dataset spilled to disk");
            stored.files.push(path);
        }
        Ok(())
    }
}

/// Reads a dataset back batch by batch: each spilled file, then the batches in memory.
pub struct DatasetReader {
    name: String,
    files: std::vec::IntoIter<PathBuf>,
    memory: std::vec::IntoIter<Batch>,
}

impl DatasetReader {
    pub(crate) fn new(name: &str, stored: &Stored) -> Self {
        DatasetReader {
            name: name.to_string(),
            files: stored.files.clone().into_iter(),
            memory: stored.memory.clone().into_iter(),
        }
    }

    /// The next batch, or `None` at the end.
    pub fn next_batch(&mut self) -> Result<Option<Batch>, StepError> {
        if let Some(path) = self.files.next() {
            let file = std::fs::File::open(&path).map_err(|e| {
                StepError::internal(format!(
                    "reading spilled dataset \"{}\" from {}: {e}",
                    self.name,
                    path.display()
                ))
            })?;
            let df = ParquetReader::new(file).finish().map_err(|e| {
                crate::errors::polars_error(
                    e,
                    &format!("reading spilled dataset \"{}\"", self.name),
                )
            })?;
            return Ok(Some(Batch::Frame(df)));
        }
        Ok(self.memory.next())
    }
}

#[cfg(test)]
mod tests {
    use crate::RunContext;
    use crate::batch::Batch;
    use polars::prelude::*;

    #[test]
    fn the_default_limit_is_a_quarter_of_the_smaller_of_machine_and_cgroup() {
        use super::{cgroup_limit, quarter_of};
        const GIB: u64 = 1 << 30;
        assert_eq!(cgroup_limit("max\n"), None);
        assert_eq!(cgroup_limit("2147483648\n"), Some(2 * GIB));
        assert_eq!(quarter_of(Some(24 * GIB), Some(2 * GIB)), GIB / 2);
        assert_eq!(quarter_of(Some(24 * GIB), None), 6 * GIB);
        // cgroup v1 says "unlimited" with a huge number: the machine's memory wins.
        assert_eq!(quarter_of(Some(8 * GIB), Some(u64::MAX / 2)), 2 * GIB);
        assert_eq!(quarter_of(None, None), GIB);
        assert!(super::default_memory_limit() >= 16 << 20);
    }

    fn batch(start: i64, rows: i64) -> Batch {
        let ids: Vec<i64> = (start..start + rows).collect();
        let names: Vec<String> = ids.iter().map(|i| format!("row {i}")).collect();
        Batch::Frame(df!("id" => ids, "name" => names).unwrap())
    }

    #[test]
    fn a_streamed_dataset_spills_and_reads_back_in_order_a_side_input_stays() {
        let cx = RunContext::with_streamed(["q".to_string()]);
        for i in 0..12 {
            cx.store("q", batch(i * 100_000, 100_000)).unwrap();
            cx.store("side", batch(i * 100_000, 100_000)).unwrap();
        }
        {
            let guard = cx.datasets.lock().unwrap();
            let q = guard.get("q").unwrap();
            assert!(
                !q.files.is_empty(),
                "past 2 MB the streamed dataset is on disk"
            );
            assert!(q.bytes <= super::SPILL_BYTES);
            assert!(guard.get("side").unwrap().files.is_empty());
            assert!(q.files.iter().all(|f| f.exists()));
        }
        let mut reader = cx.reader("q").unwrap();
        let mut next = 0i64;
        while let Some(b) = reader.next_batch().unwrap() {
            let df = b.into_frame().unwrap();
            let ids = df.column("id").unwrap().i64().unwrap();
            for id in ids.iter() {
                assert_eq!(id, Some(next));
                next += 1;
            }
            assert_eq!(df.column("name").unwrap().dtype(), &DataType::String);
        }
        assert_eq!(next, 1_200_000, "every row, once, in order");
        assert_eq!(cx.dataset("q").unwrap().height(), 1_200_000);
        // Batches with other columns go to files of their own.
        for i in 0..12 {
            let b = if i % 2 == 0 {
                batch(0, 100_000)
            } else {
                Batch::Frame(df!("other" => vec![1.5f64; 200_000]).unwrap())
            };
            cx.store("q", b).unwrap();
        }
        let mut reader = cx.reader("q").unwrap();
        let mut rows = 0;
        while let Some(b) = reader.next_batch().unwrap() {
            rows += b.rows();
        }
        assert_eq!(rows, 1_200_000 + 6 * 100_000 + 6 * 200_000);
        let dir = {
            let guard = cx.spill.lock().unwrap();
            guard.as_ref().unwrap().dir.path().to_path_buf()
        };
        drop(cx);
        assert!(!dir.exists(), "the spill directory goes with the run");
    }
}
