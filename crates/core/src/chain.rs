//! The Chain of Responsibility: each [`PipelineStep`] runs its method on a batch and hands the
//! result to the next link. Steps that only look at one batch at a time stream; steps that need
//! their whole input gather it and emit when their input ends (`finish`).

use crate::execute::RunObserver;
use futures::future::BoxFuture;
use pipeline_base::{Format, StepError};
use pipeline_data::polars::prelude::PlSmallStr;
use pipeline_data::{Batch, Metrics, Operator, RunContext};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Counters of one step over one attempt.
#[derive(Debug, Clone, Default)]
pub struct StepStats {
    pub rows_in: u64,
    pub rows_out: u64,
    pub batches_in: u64,
    pub bytes_out: u64,
    /// Time spent inside this step's own method (not in the steps after it).
    pub busy: Duration,
    pub finished: bool,
    pub committed: bool,
    /// A source's details for the report (`Source::details`).
    pub details: Option<serde_json::Value>,
}

/// A step that failed, with the step's name.
#[derive(Debug)]
pub struct StepFailure {
    pub index: usize,
    pub step: String,
    pub error: StepError,
}

/// One link of the chain.
pub struct PipelineStep {
    pub(crate) index: usize,
    pub(crate) name: String,
    pub(crate) op: Box<dyn Operator>,
    /// Conversion applied to each incoming batch (`auto_convert`).
    convert_to: Option<Format>,
    /// Keep the output as a named dataset for later steps.
    keep: bool,
    pub(crate) stats: StepStats,
    span: tracing::Span,
    observer: Arc<dyn RunObserver>,
    pub(crate) next: Option<Box<PipelineStep>>,
    /// Log the step's summary at debug level (each micro-batch of a stream).
    pub(crate) quiet: bool,
    /// Column pruning (see `plan_columns`).
    columns: Pruning,
    /// The columns this step dropped are noted in the run context.
    noted: [bool; 2],
}

/// The columns a step reads and keeps (see `plan_columns`).
#[derive(Default)]
struct Pruning {
    /// Of its main input (`None`: all).
    read: Option<Vec<PlSmallStr>>,
    /// Read by the method itself: when one is missing, nothing is dropped.
    required: Vec<PlSmallStr>,
    /// Of its output, when kept as a dataset for later steps.
    keep: Option<Vec<PlSmallStr>>,
}

/// The batch with only `columns` (those it has, in its order), unless it lacks one of
/// `required`; the first time a step drops columns, they are noted in `cx` (for errors).
fn project(
    batch: Batch,
    columns: &[PlSmallStr],
    required: &[PlSmallStr],
    noted: &mut bool,
    step: &str,
    cx: &RunContext,
) -> Batch {
    let Batch::Frame(df) = batch else {
        return batch;
    };
    let schema = df.schema();
    if df.width() <= columns.len() && columns.iter().all(|c| schema.contains(c)) {
        return Batch::Frame(df);
    }
    if required.iter().any(|c| !schema.contains(c)) {
        return Batch::Frame(df);
    }
    // In the batch's own order: pruning never reorders columns.
    let (present, dropped): (Vec<&PlSmallStr>, Vec<&PlSmallStr>) =
        schema.iter_names().partition(|c| columns.contains(c));
    // Never down to no column: a frame without columns would lose its row count downstream.
    if dropped.is_empty() || present.is_empty() {
        return Batch::Frame(df);
    }
    if !*noted {
        *noted = true;
        cx.note_dropped(step, dropped.iter().map(|c| c.as_str()));
    }
    let present: Vec<PlSmallStr> = present.into_iter().cloned().collect();
    match df.select(present) {
        Ok(projected) => Batch::Frame(projected),
        Err(_) => Batch::Frame(df),
    }
}

/// A user error about a column, after columns were dropped: says which, and suggests one of
/// them when a quoted name in the message is close to it.
fn explain_pruning(error: StepError, cx: &RunContext) -> StepError {
    let dropped = cx.dropped_columns();
    if dropped.is_empty()
        || error.class() != pipeline_base::ErrorClass::User
        || !error.message().contains("column")
    {
        return error;
    }
    let names = dropped.iter().map(|(c, _)| c.as_str());
    let quoted = error.message().split('"').skip(1).step_by(2);
    let suggestion = quoted
        .filter(|q| !dropped.iter().any(|(c, _)| c == q))
        .find_map(|q| pipeline_config::suggest(q, names.clone()));
    let listed: Vec<String> = dropped
        .iter()
        .map(|(c, step)| format!("{c} (before \"{step}\")"))
        .collect();
    let mut hint = error.hint().map(|h| format!("{h}; ")).unwrap_or_default();
    if let Some(s) = suggestion {
        hint.push_str(&format!("did you mean \"{s}\"? "));
    }
    hint.push_str(&format!(
        "columns no later step was found to read were dropped: {} (`pipectl plan` shows the columns each step reads)",
        listed.join(", ")
    ));
    error.with_hint(hint)
}

impl PipelineStep {
    pub(crate) fn new(
        index: usize,
        name: String,
        op: Box<dyn Operator>,
        convert_to: Option<Format>,
        keep: bool,
        span: tracing::Span,
        observer: Arc<dyn RunObserver>,
    ) -> Self {
        PipelineStep {
            index,
            name,
            op,
            convert_to,
            keep,
            stats: StepStats::default(),
            span,
            observer,
            next: None,
            quiet: false,
            columns: Pruning::default(),
            noted: [false; 2],
        }
    }

    /// Drops the columns the plan found unread (see `plan_columns`).
    pub(crate) fn with_columns(mut self, step: &crate::plan::PlannedStep) -> Self {
        let names = |v: &Vec<String>| v.iter().map(|c| PlSmallStr::from(c.as_str())).collect();
        self.columns = Pruning {
            read: step.columns.as_ref().map(names),
            required: names(&step.required),
            keep: step.keep_columns.as_ref().map(names),
        };
        self
    }

    fn fail(&self, error: StepError) -> StepFailure {
        StepFailure {
            index: self.index,
            step: self.name.clone(),
            error,
        }
    }

    /// Takes one batch, processes it, and passes the results down the chain.
    pub fn handle<'a>(
        &'a mut self,
        batch: Batch,
        cx: &'a RunContext,
    ) -> BoxFuture<'a, Result<(), StepFailure>> {
        Box::pin(async move {
            self.stats.rows_in += batch.rows() as u64;
            self.stats.batches_in += 1;
            let start = Instant::now();
            let batch = match self.convert_to {
                Some(format) if batch.format() != format => {
                    batch.convert(format).map_err(|e| self.fail(e))?
                }
                _ => batch,
            };
            let batch = match &self.columns.read {
                Some(columns) => {
                    let required = &self.columns.required;
                    project(batch, columns, required, &mut self.noted[0], &self.name, cx)
                }
                None => batch,
            };
            let result = self.op.push(batch, cx).instrument(self.span.clone()).await;
            self.stats.busy += start.elapsed();
            let outputs = result.map_err(|e| self.fail(explain_pruning(e, cx)))?;
            self.emit(outputs, cx).await
        })
    }

    /// Adds time spent outside `handle` (reading the source) to this step.
    pub(crate) fn add_busy(&mut self, d: Duration) {
        self.stats.busy += d;
    }

    async fn emit(&mut self, outputs: Vec<Batch>, cx: &RunContext) -> Result<(), StepFailure> {
        for out in outputs {
            self.stats.rows_out += out.rows() as u64;
            self.stats.bytes_out += out.size_bytes() as u64;
            self.observer.rows(&self.name, self.stats.rows_out);
            if self.keep {
                let kept = match &self.columns.keep {
                    Some(columns) => project(
                        out.clone(),
                        columns,
                        &[],
                        &mut self.noted[1],
                        &self.name,
                        cx,
                    ),
                    None => out.clone(),
                };
                cx.store(&self.name, kept).map_err(|e| self.fail(e))?;
            }
            if let Some(next) = self.next.as_mut() {
                next.handle(out, cx).await?;
            }
        }
        Ok(())
    }

    /// The input has ended: flush this step, then the rest of the chain.
    pub fn finish<'a>(&'a mut self, cx: &'a RunContext) -> BoxFuture<'a, Result<(), StepFailure>> {
        Box::pin(async move {
            let start = Instant::now();
            let result = self.op.finish(cx).instrument(self.span.clone()).await;
            self.stats.busy += start.elapsed();
            let outputs = result.map_err(|e| self.fail(explain_pruning(e, cx)))?;
            self.emit(outputs, cx).await?;
            loop {
                let start = Instant::now();
                let more = self.op.drain(cx).instrument(self.span.clone()).await;
                self.stats.busy += start.elapsed();
                match more.map_err(|e| self.fail(e))? {
                    Some(outputs) => self.emit(outputs, cx).await?,
                    None => break,
                }
            }
            if self.keep {
                cx.declare(&self.name);
            }
            self.stats.finished = true;
            self.log_finished();
            self.observer.step_finished(&self.name);
            match self.next.as_mut() {
                Some(next) => next.finish(cx).await,
                None => Ok(()),
            }
        })
    }

    fn log_finished(&self) {
        let s = &self.stats;
        let secs = s.busy.as_secs_f64();
        let rate = if secs > 0.0 {
            (s.rows_in.max(s.rows_out) as f64 / secs) as u64
        } else {
            0
        };
        let metrics = format_metrics(&self.op.metrics());
        if self.quiet {
            tracing::debug!(
                parent: &self.span,
                rows_in = s.rows_in,
                rows_out = s.rows_out,
                elapsed_ms = s.busy.as_millis() as u64,
                metrics = %metrics,
                "step finished"
            );
            return;
        }
        tracing::info!(
            parent: &self.span,
            rows_in = s.rows_in,
            rows_out = s.rows_out,
            batches = s.batches_in,
            bytes_out = s.bytes_out,
            elapsed_ms = s.busy.as_millis() as u64,
            rows_per_sec = rate,
            metrics = %metrics,
            "step finished"
        );
    }

    pub(crate) fn metrics(&self) -> Metrics {
        self.op.metrics()
    }
}

fn format_metrics(m: &Metrics) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Links steps in order: each holds the next.
pub(crate) fn link(steps: Vec<PipelineStep>) -> Option<Box<PipelineStep>> {
    let mut next: Option<Box<PipelineStep>> = None;
    for mut step in steps.into_iter().rev() {
        step.next = next;
        next = Some(Box::new(step));
    }
    next
}

/// Calls `f` on each link, first to last.
pub(crate) fn visit_mut(first: &mut PipelineStep, mut f: impl FnMut(&mut PipelineStep)) {
    let mut current = Some(first);
    while let Some(step) = current {
        f(step);
        current = step.next.as_deref_mut();
    }
}
