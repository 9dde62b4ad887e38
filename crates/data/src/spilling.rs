//! The operator shared by whole-input steps that spill past `memory_limit_mb` (`sort` through
//! `sorted`, `dedupe` through `partitioned`): it hands each batch to what holds the input,
//! and at the end either emits the in-memory result or drains a merge from disk piece by
//! piece, each piece going down the chain before the next is read.

use crate::batch::Batch;
use crate::incremental::Gathers;
use crate::method::{ConnectionUse, DATAFRAME, MethodEntry, MethodOptions, Produces, StepSetup};
use crate::ordered::Merge;
use crate::runtime::{Datasets, Metrics, Operator, RunContext, Runtime, blocking};
use async_trait::async_trait;
use futures::future::BoxFuture;
use pipeline_base::{Format, StepError, StepKind};
use polars::prelude::DataFrame;
use std::sync::Arc;

/// Stacks frames into one (`None` for none).
pub(crate) fn stack(frames: Vec<DataFrame>, what: &str) -> Result<Option<DataFrame>, StepError> {
    let mut all: Option<DataFrame> = None;
    for f in frames {
        match &mut all {
            None => all = Some(f),
            Some(a) => {
                a.vstack_mut_owned(f)
                    .map_err(|e| crate::errors::polars_error(e, what))?;
            }
        }
    }
    Ok(all)
}

/// The batches a spilling step holds in memory, with their size and the input's columns.
#[derive(Default)]
pub(crate) struct Frames {
    frames: Vec<DataFrame>,
    pub(crate) bytes: u64,
    /// The input's columns without rows (for an empty input).
    empty: Option<DataFrame>,
}

impl Frames {
    pub(crate) fn add(&mut self, df: DataFrame) {
        if self.empty.is_none() {
            self.empty = Some(df.clear());
        }
        self.bytes = self.bytes.saturating_add(df.estimated_size() as u64);
        self.frames.push(df);
    }

    /// Everything held, stacked (nothing stays held).
    pub(crate) fn take(&mut self, what: &str) -> Result<Option<DataFrame>, StepError> {
        self.bytes = 0;
        stack(std::mem::take(&mut self.frames), what)
    }

    /// Everything held as one contiguous frame; the input's columns when no row came.
    pub(crate) fn take_whole(&mut self, what: &str) -> Result<DataFrame, StepError> {
        let mut all = self
            .take(what)?
            .or_else(|| self.empty.take())
            .unwrap_or_default();
        all.rechunk_mut();
        Ok(all)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// A merge in progress and the directory of its runs.
pub(crate) type Merging = Option<(Merge, tempfile::TempDir)>;

/// The next piece of a merge from disk (`None` at its end, when its directory goes).
pub(crate) async fn drain_merge(
    merging: &mut Merging,
    step: &str,
) -> Result<Option<Vec<Batch>>, StepError> {
    let Some((mut merge, dir)) = merging.take() else {
        return Ok(None);
    };
    let (merge, next) = blocking(move || {
        let next = merge.next_frame();
        Ok((merge, next))
    })
    .await?;
    match next.map_err(|e| e.context(format!("step \"{step}\"")))? {
        Some(df) => {
            *merging = Some((merge, dir));
            Ok(Some(vec![Batch::Frame(df)]))
        }
        None => Ok(None),
    }
}

/// The method's function on a whole input (or on one partition of it).
pub(crate) type WholeFn<O> = fn(DataFrame, &O, &Datasets) -> Result<DataFrame, StepError>;

/// What a spilling step has at the end of its input.
pub(crate) enum Finished {
    /// Computed in memory.
    Whole(DataFrame),
    /// Merged back from disk a piece at a time; the directory holds the runs.
    Merged(Merge, tempfile::TempDir),
}

/// What holds a spilling step's input.
pub(crate) trait Held: Send + 'static {
    /// What the method's function gets: the input (or a part of it), or a query over it.
    type Input;

    fn push(&mut self, df: DataFrame) -> Result<(), StepError>;

    /// The end of the input: the result (`f` run in memory, or the merge), and the bytes
    /// written to disk.
    fn finish(
        self,
        f: &mut dyn FnMut(Self::Input) -> Result<DataFrame, StepError>,
    ) -> Result<(Finished, u64), StepError>;
}

struct Spilling<O, H: Held> {
    f: fn(H::Input, &O, &Datasets) -> Result<DataFrame, StepError>,
    options: Arc<O>,
    setup: StepSetup,
    held: Option<H>,
    merging: Merging,
    spilled_bytes: u64,
}

#[async_trait]
impl<O: MethodOptions, H: Held> Operator for Spilling<O, H> {
    async fn push(&mut self, batch: Batch, _cx: &RunContext) -> Result<Vec<Batch>, StepError> {
        let df = batch.into_frame()?;
        let Some(mut held) = self.held.take() else {
            return Err(StepError::internal("input after the end"));
        };
        // Spilling writes files: off the async workers.
        let held = blocking(move || held.push(df).map(|()| held)).await?;
        self.held = Some(held);
        Ok(Vec::new())
    }

    async fn finish(&mut self, cx: &RunContext) -> Result<Vec<Batch>, StepError> {
        let Some(held) = self.held.take() else {
            return Ok(Vec::new());
        };
        let side = self.setup.side_datasets(cx)?;
        let (f, options, step) = (self.f, self.options.clone(), self.setup.step.clone());
        let (out, spilled) = blocking(move || held.finish(&mut |df| f(df, &options, &side)))
            .await
            .map_err(|e| e.context(format!("step \"{step}\"")))?;
        self.spilled_bytes = spilled;
        match out {
            Finished::Whole(df) => Ok(vec![Batch::Frame(df)]),
            Finished::Merged(merge, dir) => {
                self.merging = Some((merge, dir));
                Ok(Vec::new())
            }
        }
    }

    async fn drain(&mut self, _cx: &RunContext) -> Result<Option<Vec<Batch>>, StepError> {
        drain_merge(&mut self.merging, &self.setup.step).await
    }

    fn metrics(&self) -> Metrics {
        if self.spilled_bytes > 0 {
            vec![("spilled_bytes", self.spilled_bytes)]
        } else {
            Vec::new()
        }
    }
}

impl MethodEntry {
    /// A DataFrame transform running `f` through a spilling holder made by `hold`.
    pub(crate) fn spilling<O: MethodOptions, H: Held>(
        name: &'static str,
        summary: &'static str,
        side_inputs: (usize, Option<usize>),
        f: fn(H::Input, &O, &Datasets) -> Result<DataFrame, StepError>,
        hold: impl Fn(&O, &StepSetup) -> Result<H, StepError> + Copy + Send + Sync + 'static,
        gathers: Gathers,
    ) -> Self {
        let open = move |setup: StepSetup| -> BoxFuture<'static, Result<Runtime, StepError>> {
            Box::pin(async move {
                let options: O = setup.options()?;
                let held = hold(&options, &setup)?;
                Ok(Runtime::Operator(Box::new(Spilling {
                    f,
                    options: Arc::new(options),
                    setup,
                    held: Some(held),
                    merging: None,
                    spilled_bytes: 0,
                })))
            })
        };
        let mut entry = Self::entry::<O>(
            name,
            StepKind::Transform,
            summary,
            DATAFRAME,
            Produces::Format(Format::DataFrame),
            true,
            side_inputs,
            ConnectionUse::None,
            Box::new(open),
        );
        entry.gathers = gathers;
        entry
    }
}
