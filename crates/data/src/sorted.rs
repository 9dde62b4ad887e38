//! Whole-input steps whose output is their input in a sort order (`sort`): under
//! `memory_limit_mb` they sort in memory with the method's own function; past it their input
//! goes to local disk in sorted runs and comes back merged a chunk at a time (see `ordered`),
//! with the very order of the in-memory sort, ties in arrival order.

use crate::incremental::Gathers;
use crate::method::{MethodEntry, MethodOptions};
use crate::ordered::{Merge, SortSpec, with_order, write_run};
use crate::spilling::{Finished, Frames, Held, WholeFn};
use pipeline_base::StepError;
use polars::prelude::*;
use std::collections::VecDeque;
use std::path::PathBuf;

/// The input held by a sorting step.
pub(crate) struct Sorter {
    step: String,
    spec: SortSpec,
    limit: u64,
    held: Frames,
    /// Rows already written to runs (the next arrival number).
    seq: u64,
    dir: Option<tempfile::TempDir>,
    runs: Vec<VecDeque<PathBuf>>,
    pub(crate) spilled_bytes: u64,
}

impl Sorter {
    pub(crate) fn new(step: &str, spec: SortSpec, limit: u64) -> Self {
        Sorter {
            step: step.to_string(),
            spec,
            limit,
            held: Frames::default(),
            seq: 0,
            dir: None,
            runs: Vec::new(),
            spilled_bytes: 0,
        }
    }

    pub(crate) fn push_frame(&mut self, df: DataFrame) -> Result<(), StepError> {
        self.held.add(df);
        // Sorting a run takes a copy of it: runs of half the limit.
        if self.held.bytes > self.limit / 2 {
            self.spill()?;
        }
        Ok(())
    }

    /// Writes what is held as one sorted run.
    fn spill(&mut self) -> Result<(), StepError> {
        let what = format!("step \"{}\": sorting a run on disk", self.step);
        let Some(mut all) = self.held.take(&what)? else {
            return Ok(());
        };
        if let Some(missing) = self
            .spec
            .by
            .iter()
            .find(|c| all.schema().get(c.as_str()).is_none())
        {
            if !self.runs.is_empty() {
                return Err(StepError::user(format!(
                    "step \"{}\": a batch has no column \"{missing}\" to sort by",
                    self.step
                ))
                .with_hint("every batch of the input needs the sort columns"));
            }
            // The method names the missing column itself.
            self.held.add(all);
            return Ok(());
        }
        all.rechunk_mut();
        let height = all.height() as u64;
        let sorted = with_order(all, &self.spec, self.seq, &what)?;
        self.seq = self.seq.saturating_add(height);
        if self.dir.is_none() {
            self.dir = Some(
                tempfile::Builder::new()
                    .prefix("pipectl-sort-")
                    .tempdir()
                    .map_err(|e| {
                        StepError::external(format!("{what}: cannot create a directory: {e}"))
                            .with_hint("set TMPDIR to a writable directory with free space")
                    })?,
            );
        }
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let (files, bytes) = write_run(
            dir.path(),
            &format!("run{}", self.runs.len()),
            &sorted,
            &what,
        )?;
        self.runs.push(files);
        self.spilled_bytes = self.spilled_bytes.saturating_add(bytes);
        tracing::debug!(step = %self.step, runs = self.runs.len(), spilled_bytes = self.spilled_bytes, "sorted run written to disk");
        Ok(())
    }

    fn finish_input(
        mut self,
        f: &mut dyn FnMut(DataFrame) -> Result<DataFrame, StepError>,
    ) -> Result<(Finished, u64), StepError> {
        if self.runs.is_empty() {
            let all = self.held.take_whole(&format!("step \"{}\"", self.step))?;
            return Ok((Finished::Whole(f(all)?), 0));
        }
        self.spill()?;
        if !self.held.is_empty() {
            return Err(StepError::internal(format!(
                "step \"{}\": rows left in memory after the last run",
                self.step
            )));
        }
        let what = format!("step \"{}\": merging sorted runs", self.step);
        let dir = self
            .dir
            .take()
            .ok_or_else(|| StepError::internal(format!("{what}: no run directory")))?;
        let merge = Merge::new(std::mem::take(&mut self.runs), &what);
        Ok((Finished::Merged(merge, dir), self.spilled_bytes))
    }
}

impl Held for Sorter {
    type Input = DataFrame;

    fn push(&mut self, df: DataFrame) -> Result<(), StepError> {
        self.push_frame(df)
    }

    fn finish(
        self,
        f: &mut dyn FnMut(DataFrame) -> Result<DataFrame, StepError>,
    ) -> Result<(Finished, u64), StepError> {
        self.finish_input(f)
    }
}

impl MethodEntry {
    /// A transform whose output is its whole input in the order `spec` gives (`f` must sort
    /// exactly so, stably): past the pipeline's `memory_limit_mb` its input is sorted in runs
    /// on local disk and merged (see the module doc).
    pub fn transform_sorted<O: MethodOptions>(
        name: &'static str,
        summary: &'static str,
        f: WholeFn<O>,
        spec: fn(&O) -> Result<SortSpec, StepError>,
    ) -> Self {
        let hold = move |options: &O, setup: &crate::method::StepSetup| {
            Ok(Sorter::new(&setup.step, spec(options)?, setup.memory_limit))
        };
        Self::spilling(name, summary, (0, Some(0)), f, hold, Gathers::Sorted)
    }
}
