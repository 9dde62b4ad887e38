//! Whole-input methods that do not hold their whole main input: the main input goes through
//! batch by batch, and only what the method really needs stays in memory — the side inputs
//! (gathered once, when the first batch arrives) and the method's own state (a key index,
//! partial aggregates). A join against a dimension table, a referential-integrity check or an
//! aggregation then runs in memory bounded by the side input and the number of groups, not by
//! the size of the main input.

use crate::batch::Batch;
use crate::method::{MethodOptions, StepSetup};
use crate::runtime::{Datasets, Operator, RunContext, blocking};
use async_trait::async_trait;
use pipeline_base::StepError;
use polars::prelude::DataFrame;
use std::sync::Arc;

/// What a method keeps from one batch of its main input to the next.
pub trait Incremental: Send {
    /// One batch of the main input; the rows ready now, if any.
    fn push(&mut self, df: DataFrame) -> Result<Option<DataFrame>, StepError>;

    /// The main input has ended: whatever is left.
    fn finish(&mut self) -> Result<Option<DataFrame>, StepError> {
        Ok(None)
    }

    /// The bytes the state wrote to local disk (past `memory_limit_mb`), for the report.
    fn spilled_bytes(&self) -> u64 {
        0
    }
}

/// What a whole-input method holds in memory while its main input goes through (said by
/// `pipectl plan` and `pipectl methods`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gathers {
    /// Nothing: each batch on its own.
    Nothing,
    /// Its side inputs, whole; the main input streams through.
    SideInputs,
    /// One row per group (partial aggregates); the main input streams through.
    Groups,
    /// Its whole input, spilled to disk by key past `memory_limit_mb`.
    Partitioned,
    /// Its whole input, sorted in runs on disk past `memory_limit_mb`.
    Sorted,
    /// Its whole input, on disk past `memory_limit_mb` and then queried by Polars' streaming
    /// engine.
    Scanned,
    /// Its whole input.
    Everything,
}

impl Gathers {
    /// How `plan` describes it, e.g. `streams its main input; reads customers whole`.
    pub fn describe(self, side_inputs: &[String]) -> Option<String> {
        let side = if side_inputs.is_empty() {
            String::new()
        } else {
            format!("; reads {} whole", side_inputs.join(", "))
        };
        match self {
            Gathers::Nothing => None,
            Gathers::SideInputs => Some(format!("streams its main input{side}")),
            Gathers::Groups => Some(format!(
                "streams its main input, keeping one partial row per group{side}"
            )),
            Gathers::Partitioned => Some(format!(
                "gathers its whole input, spilling it to disk by key past memory_limit_mb{side}"
            )),
            Gathers::Sorted => Some(format!(
                "gathers its whole input, sorting it in runs on disk past memory_limit_mb{side}"
            )),
            Gathers::Scanned => Some(format!(
                "gathers its whole input, writing it to disk past memory_limit_mb for Polars' streaming engine{side}"
            )),
            Gathers::Everything => Some(format!("gathers its whole input{side}")),
        }
    }
}

/// Opens a method's state from its options, its side inputs and its step (its name and
/// memory limit).
pub type OpenIncremental<O> =
    fn(&O, &Datasets, &StepSetup) -> Result<Box<dyn Incremental>, StepError>;

/// The operator behind [`crate::MethodEntry::transform_incremental`].
pub(crate) struct Streamed<O> {
    pub(crate) open: OpenIncremental<O>,
    pub(crate) options: Arc<O>,
    pub(crate) setup: StepSetup,
    pub(crate) state: Option<Box<dyn Incremental>>,
    pub(crate) pushed: bool,
    /// The main input held until the end, when a side input is produced in the step's own
    /// chain (`StepSetup::side_inputs_ready` false).
    pub(crate) held: Option<DataFrame>,
    pub(crate) spilled_bytes: u64,
}

impl<O: MethodOptions> Streamed<O> {
    fn context(&self) -> impl Fn(StepError) -> StepError + '_ {
        move |e| e.context(format!("step \"{}\"", self.setup.step))
    }

    /// The state, opened on first use (the side inputs are complete by then: they come from
    /// earlier segments of the plan).
    async fn state(&mut self, cx: &RunContext) -> Result<Box<dyn Incremental>, StepError> {
        if let Some(state) = self.state.take() {
            return Ok(state);
        }
        let side = self.setup.side_datasets(cx)?;
        if !side.is_empty() {
            let rows: usize = side.values().map(DataFrame::height).sum();
            let bytes: usize = side.values().map(DataFrame::estimated_size).sum();
            tracing::debug!(step = %self.setup.step, rows, bytes, "side inputs gathered");
        }
        let (open, options, setup) = (self.open, self.options.clone(), self.setup.clone());
        let state = blocking(move || open(&options, &side, &setup)).await;
        // Gathering and indexing the side inputs left transient copies behind.
        crate::memory::release_free_memory();
        state
    }

    async fn run(
        &mut self,
        df: Option<DataFrame>,
        cx: &RunContext,
    ) -> Result<Vec<Batch>, StepError> {
        let mut state = self.state(cx).await.map_err(self.context())?;
        let (state, out) = blocking(move || {
            let out = match df {
                Some(df) => state.push(df),
                None => state.finish(),
            };
            Ok((state, out))
        })
        .await
        .map_err(self.context())?;
        self.state = Some(state);
        let out = out.map_err(self.context())?;
        Ok(out.map(Batch::Frame).into_iter().collect())
    }
}

#[async_trait]
impl<O: MethodOptions> Operator for Streamed<O> {
    async fn push(&mut self, batch: Batch, cx: &RunContext) -> Result<Vec<Batch>, StepError> {
        let df = batch.into_frame()?;
        if !self.setup.side_inputs_ready && !self.setup.side_inputs.is_empty() {
            match &mut self.held {
                None => self.held = Some(df),
                Some(all) => {
                    all.vstack_mut_owned(df).map_err(|e| {
                        crate::errors::polars_error(
                            e,
                            &format!("step \"{}\": gathering input", self.setup.step),
                        )
                    })?;
                }
            }
            return Ok(Vec::new());
        }
        self.pushed = true;
        self.run(Some(df), cx).await
    }

    async fn finish(&mut self, cx: &RunContext) -> Result<Vec<Batch>, StepError> {
        let mut out = Vec::new();
        if let Some(held) = self.held.take() {
            self.pushed = true;
            out = self.run(Some(held), cx).await?;
        }
        if !self.pushed {
            // No batch at all: the method sees an empty input, as when gathering.
            self.pushed = true;
            out = self.run(Some(DataFrame::default()), cx).await?;
        }
        out.extend(self.run(None, cx).await?);
        // Done: the side inputs and their index go now, not with the run.
        if let Some(state) = self.state.take() {
            self.spilled_bytes = state.spilled_bytes();
        }
        Ok(out)
    }

    fn metrics(&self) -> crate::runtime::Metrics {
        if self.spilled_bytes > 0 {
            vec![("spilled_bytes", self.spilled_bytes)]
        } else {
            Vec::new()
        }
    }
}
