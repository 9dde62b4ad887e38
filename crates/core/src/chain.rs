//! The Chain of Responsibility: each [`PipelineStep`] runs its method on a batch and hands the
//! result to the next link. Steps that only look at one batch at a time stream; steps that need
//! their whole input gather it and emit when their input ends (`finish`).

use crate::execute::RunObserver;
use futures::future::BoxFuture;
use pipeline_base::{Format, StepError};
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
        }
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
            let result = self.op.push(batch, cx).instrument(self.span.clone()).await;
            self.stats.busy += start.elapsed();
            let outputs = result.map_err(|e| self.fail(e))?;
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
                cx.store(&self.name, out.clone());
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
            let outputs = result.map_err(|e| self.fail(e))?;
            self.emit(outputs, cx).await?;
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
