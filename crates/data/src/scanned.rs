//! Whole-input steps that are a query over their input (`sql`): under `memory_limit_mb` the
//! query runs on the input in memory, exactly as before; past it the input goes to local
//! Parquet files as it comes, and the query scans them on Polars' streaming engine, which
//! reads them in morsels and keeps only what the query needs (groups for an aggregation, the
//! matching rows for a filter) instead of the whole input.

use crate::incremental::Gathers;
use crate::method::{MethodEntry, MethodOptions, StepSetup};
use crate::runtime::Datasets;
use crate::spilling::{Finished, Frames, Held};
use pipeline_base::StepError;
use polars::prelude::*;
use std::path::PathBuf;

/// The input of a query step: a lazy frame, and the engine to collect it with.
pub struct Scan {
    pub frame: LazyFrame,
    /// `InMemory` for an input held in memory, `Streaming` for one scanned from disk.
    pub engine: Engine,
}

/// The input held by a query step.
pub(crate) struct Scanned {
    step: String,
    limit: u64,
    held: Frames,
    files: Option<(tempfile::TempDir, Vec<PathBuf>)>,
    spilled_bytes: u64,
}

impl Scanned {
    pub(crate) fn new(step: &str, limit: u64) -> Self {
        Scanned {
            step: step.to_string(),
            limit,
            held: Frames::default(),
            files: None,
            spilled_bytes: 0,
        }
    }

    /// Writes what is held to one more Parquet file.
    fn spill(&mut self) -> Result<(), StepError> {
        let what = format!("step \"{}\": writing its input to disk", self.step);
        let Some(mut all) = self.held.take(&what)? else {
            return Ok(());
        };
        if self.files.is_none() {
            let dir = tempfile::Builder::new()
                .prefix("pipectl-scan-")
                .tempdir()
                .map_err(|e| {
                    StepError::external(format!("{what}: cannot create a directory: {e}"))
                        .with_hint("set TMPDIR to a writable directory with free space")
                })?;
            self.files = Some((dir, Vec::new()));
        }
        let Some((dir, files)) = self.files.as_mut() else {
            return Ok(());
        };
        let path = dir.path().join(format!("{}.parquet", files.len()));
        let file = std::fs::File::create(&path)
            .map_err(|e| StepError::external(format!("{what}: {}: {e}", path.display())))?;
        ParquetWriter::new(file)
            .with_compression(ParquetCompression::Lz4Raw)
            .finish(&mut all)
            .map_err(|e| crate::errors::polars_error(e, &what))?;
        self.spilled_bytes = self
            .spilled_bytes
            .saturating_add(all.estimated_size() as u64);
        files.push(path);
        Ok(())
    }
}

impl Held for Scanned {
    type Input = Scan;

    fn push(&mut self, df: DataFrame) -> Result<(), StepError> {
        self.held.add(df);
        if self.held.bytes > self.limit {
            self.spill()?;
        }
        Ok(())
    }

    fn finish(
        mut self,
        f: &mut dyn FnMut(Scan) -> Result<DataFrame, StepError>,
    ) -> Result<(Finished, u64), StepError> {
        if self.files.is_none() {
            let all = self.held.take_whole(&format!("step \"{}\"", self.step))?;
            let scan = Scan {
                frame: all.lazy(),
                engine: Engine::InMemory,
            };
            return Ok((Finished::Whole(f(scan)?), 0));
        }
        self.spill()?;
        let what = format!("step \"{}\": scanning its input from disk", self.step);
        let Some((dir, files)) = self.files.take() else {
            return Err(StepError::internal(format!("{what}: no files")));
        };
        let paths = files
            .iter()
            .map(|p| PlRefPath::from(p.to_string_lossy().as_ref()));
        let frame = LazyFrame::scan_parquet_files(paths.collect(), ScanArgsParquet::default())
            .map_err(|e| crate::errors::polars_error(e, &what))?;
        let out = f(Scan {
            frame,
            engine: Engine::Streaming,
        })?;
        drop(dir);
        Ok((Finished::Whole(out), self.spilled_bytes))
    }
}

impl MethodEntry {
    /// A transform that is a query over its whole input (and its side inputs): `f` collects
    /// the lazy frame with the engine it is given. Past the pipeline's `memory_limit_mb` the
    /// input goes to local disk and the query runs on Polars' streaming engine (see the
    /// module doc).
    pub fn transform_scanned<O: MethodOptions>(
        name: &'static str,
        summary: &'static str,
        side_inputs: (usize, Option<usize>),
        f: fn(Scan, &O, &Datasets) -> Result<DataFrame, StepError>,
    ) -> Self {
        let hold = |_: &O, setup: &StepSetup| Ok(Scanned::new(&setup.step, setup.memory_limit));
        Self::spilling(name, summary, side_inputs, f, hold, Gathers::Scanned)
    }
}
