//! The operators behind registry entries: row-wise transforms, whole-input transforms,
//! validations (with their fail / filter / quarantine / warn handling) and loads.

use crate::batch::Batch;
use crate::method::{MethodOptions, StepSetup};
use crate::runtime::{CommitOutcome, Datasets, Metrics, Operator, RunContext, Sink, blocking};
use crate::validation::{Check, sample_rows};
use async_trait::async_trait;
use pipeline_base::{OnFailure, StepError};
use polars::prelude::*;
use std::sync::Arc;

fn with_step(step: &str) -> impl Fn(StepError) -> StepError + '_ {
    move |e| e.context(format!("step \"{step}\""))
}

pub(crate) struct RowWise<O> {
    pub(crate) f: fn(DataFrame, &O) -> Result<DataFrame, StepError>,
    pub(crate) options: Arc<O>,
    pub(crate) step: String,
}

#[async_trait]
impl<O: MethodOptions> Operator for RowWise<O> {
    async fn push(&mut self, batch: Batch, _cx: &RunContext) -> Result<Vec<Batch>, StepError> {
        let (f, options) = (self.f, self.options.clone());
        let out = blocking(move || f(batch.into_frame()?, &options))
            .await
            .map_err(with_step(&self.step))?;
        Ok(vec![Batch::Frame(out)])
    }
}

/// Appends a batch to a gathered frame.
fn gather(acc: &mut Option<DataFrame>, batch: Batch, step: &str) -> Result<(), StepError> {
    let df = batch.into_frame()?;
    match acc {
        None => *acc = Some(df),
        Some(a) => {
            a.vstack_mut_owned(df).map_err(|e| {
                crate::errors::polars_error(e, &format!("step \"{step}\": gathering input"))
            })?;
        }
    }
    Ok(())
}

pub(crate) struct Whole<O> {
    pub(crate) f: fn(DataFrame, &O, &Datasets) -> Result<DataFrame, StepError>,
    pub(crate) options: Arc<O>,
    pub(crate) setup: StepSetup,
    pub(crate) gathered: Option<DataFrame>,
}

#[async_trait]
impl<O: MethodOptions> Operator for Whole<O> {
    async fn push(&mut self, batch: Batch, _cx: &RunContext) -> Result<Vec<Batch>, StepError> {
        gather(&mut self.gathered, batch, &self.setup.step)?;
        Ok(Vec::new())
    }

    async fn finish(&mut self, cx: &RunContext) -> Result<Vec<Batch>, StepError> {
        let mut input = self.gathered.take().unwrap_or_default();
        let side = self.setup.side_datasets(cx)?;
        let (f, options) = (self.f, self.options.clone());
        let out = blocking(move || {
            input.rechunk_mut();
            f(input, &options, &side)
        })
        .await
        .map_err(with_step(&self.setup.step))?;
        Ok(vec![Batch::Frame(out)])
    }
}

/// A rule made ready for batches: its options and side inputs bound (a side input's key index
/// built once).
pub(crate) type RowCheck = Arc<dyn Fn(&DataFrame) -> Result<Check, StepError> + Send + Sync>;
/// Makes the rule ready from the side inputs (called once, when the first batch arrives).
pub(crate) type PrepareCheck = Arc<dyn Fn(&Datasets) -> Result<RowCheck, StepError> + Send + Sync>;

pub(crate) struct Validate {
    pub(crate) prepare: PrepareCheck,
    pub(crate) check: Option<RowCheck>,
    pub(crate) setup: StepSetup,
    /// The rule needs the whole input at once (uniqueness, counts).
    pub(crate) gather: bool,
    pub(crate) gathered: Option<DataFrame>,
    /// checked, passed, failed
    pub(crate) counts: [u64; 3],
    /// Invalid rows with their reason, for `on_failure: quarantine`.
    pub(crate) quarantined: Vec<DataFrame>,
}

/// The column naming the rule a quarantined row broke.
pub const REASON_COLUMN: &str = "_pipectl_reason";

impl Validate {
    /// Hands the invalid rows kept so far to the quarantine dataset.
    fn push_quarantine(&mut self, cx: &RunContext) -> Result<(), StepError> {
        if let Some(name) = &self.setup.quarantine {
            for bad in self.quarantined.drain(..) {
                cx.store(name, Batch::Frame(bad))?;
            }
            cx.declare(name);
        }
        Ok(())
    }

    /// The rule, made ready on first use.
    async fn rule(&mut self, cx: &RunContext) -> Result<RowCheck, StepError> {
        if let Some(check) = &self.check {
            return Ok(check.clone());
        }
        let side = self.setup.side_datasets(cx)?;
        let prepare = self.prepare.clone();
        let check = blocking(move || prepare(&side))
            .await
            .map_err(with_step(&self.setup.step))?;
        self.check = Some(check.clone());
        Ok(check)
    }

    async fn apply(&mut self, df: DataFrame, cx: &RunContext) -> Result<DataFrame, StepError> {
        let step = self.setup.step.clone();
        let rule = self.rule(cx).await?;
        let (df, check) = blocking(move || {
            let check = rule(&df)?;
            Ok((df, check))
        })
        .await
        .map_err(with_step(&step))?;
        let mask = check.mask();
        let passed = mask.num_trues() as u64;
        let failed = df.height() as u64 - passed;
        self.counts[0] += df.height() as u64;
        self.counts[1] += passed;
        self.counts[2] += failed;
        if check.table_violation {
            if self.setup.on_failure == OnFailure::Warn {
                tracing::warn!(step = %step, rule = %check.rule, "validation failed (warn only)");
                return Ok(df);
            }
            return Err(StepError::user(format!("step \"{step}\": validation {} failed", check.rule))
                .with_hint("table rules (schema, row_count, freshness) fail the step unless \"on_failure\" is \"warn\""));
        }
        if failed == 0 {
            return Ok(df);
        }
        let invalid = df
            .filter(&!&mask)
            .map_err(|e| crate::errors::polars_error(e, "selecting invalid rows"))?;
        if self.setup.on_failure == OnFailure::Quarantine {
            let mut bad = invalid;
            let reason = Column::new_scalar(
                REASON_COLUMN.into(),
                Scalar::from(PlSmallStr::from(check.rule.as_str())),
                bad.height(),
            );
            bad.with_column(reason)
                .map_err(|e| crate::errors::polars_error(e, "adding the quarantine reason"))?;
            self.quarantined.push(bad);
            return df
                .filter(&mask)
                .map_err(|e| crate::errors::polars_error(e, "dropping invalid rows"));
        }
        let samples = sample_rows(&invalid, 5, pipeline_config::is_sensitive_key)?;
        match self.setup.on_failure {
            OnFailure::Fail => Err(StepError::user(format!(
                "step \"{step}\": validation {} failed for {failed} of {} rows; first failing rows:\n  {}",
                check.rule,
                df.height(),
                samples.join("\n  ")
            ))
            .with_hint("fix the data, or set \"on_failure\": \"filter\" or \"warn\" on this step")),
            OnFailure::Filter => {
                tracing::debug!(step = %step, rule = %check.rule, dropped = failed, "validation dropped invalid rows");
                df.filter(&mask).map_err(|e| crate::errors::polars_error(e, "dropping invalid rows"))
            }
            OnFailure::Warn => {
                tracing::warn!(step = %step, rule = %check.rule, failed, sample = %samples.join("; "), "validation found invalid rows");
                Ok(df)
            }
            OnFailure::Quarantine => Err(StepError::internal("quarantine handled above")),
        }
    }
}

#[async_trait]
impl Operator for Validate {
    async fn push(&mut self, batch: Batch, cx: &RunContext) -> Result<Vec<Batch>, StepError> {
        if self.gather {
            gather(&mut self.gathered, batch, &self.setup.step)?;
            return Ok(Vec::new());
        }
        let out = self.apply(batch.into_frame()?, cx).await?;
        // Invalid rows go to their dataset as they come (it may spill to disk).
        self.push_quarantine(cx)?;
        Ok(vec![Batch::Frame(out)])
    }

    async fn finish(&mut self, cx: &RunContext) -> Result<Vec<Batch>, StepError> {
        let out = if self.gather {
            let mut input = self.gathered.take().unwrap_or_default();
            input.rechunk_mut();
            vec![Batch::Frame(self.apply(input, cx).await?)]
        } else {
            Vec::new()
        };
        let [checked, _, failed] = self.counts;
        if let Some(max) = self.setup.max_invalid_fraction
            && checked > 0
            && failed as f64 / checked as f64 > max
        {
            return Err(StepError::user(format!(
                "step \"{}\": {failed} of {checked} rows ({:.2}%) are invalid, above max_invalid_fraction {max}",
                self.setup.step,
                100.0 * failed as f64 / checked as f64
            ))
            .with_hint("fix the data, or raise max_invalid_fraction"));
        }
        self.push_quarantine(cx)?;
        Ok(out)
    }

    fn metrics(&self) -> Metrics {
        vec![
            ("checked", self.counts[0]),
            ("passed", self.counts[1]),
            ("failed", self.counts[2]),
        ]
    }
}

/// Runs a load. Writing happens on its own task, fed through a bounded channel, so that encoding
/// and upload overlap with the steps before it while at most `QUEUE` batches wait in memory.
pub(crate) struct SinkOperator {
    sink: Option<Box<dyn Sink>>,
    tx: Option<tokio::sync::mpsc::Sender<DataFrame>>,
    task: Option<WriterTask>,
}

/// The writer task hands the sink back with its result.
type WriterTask = tokio::task::JoinHandle<(Box<dyn Sink>, Result<(), StepError>)>;

const QUEUE: usize = 2;

impl SinkOperator {
    pub(crate) fn new(sink: Box<dyn Sink>) -> Self {
        SinkOperator {
            sink: Some(sink),
            tx: None,
            task: None,
        }
    }

    fn start(&mut self) -> Result<(), StepError> {
        let mut sink = self
            .sink
            .take()
            .ok_or_else(|| StepError::internal("the sink was already started"))?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<DataFrame>(QUEUE);
        self.tx = Some(tx);
        self.task = Some(tokio::spawn(async move {
            while let Some(df) = rx.recv().await {
                if let Err(e) = sink.write(df).await {
                    return (sink, Err(e));
                }
            }
            (sink, Ok(()))
        }));
        Ok(())
    }

    /// Waits for the writer task and takes the sink back, with the task's result.
    async fn join(&mut self) -> Result<(), StepError> {
        self.tx = None;
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        let (sink, result) = task
            .await
            .map_err(|e| StepError::internal(format!("the load task failed: {e}")))?;
        self.sink = Some(sink);
        result
    }
}

#[async_trait]
impl Operator for SinkOperator {
    async fn push(&mut self, batch: Batch, _cx: &RunContext) -> Result<Vec<Batch>, StepError> {
        if self.task.is_none() {
            self.start()?;
        }
        let df = batch.clone().into_frame()?;
        let sent = match &self.tx {
            Some(tx) => tx.send(df).await.is_ok(),
            None => false,
        };
        if !sent {
            // The writer stopped early: report its error.
            self.join().await?;
            return Err(StepError::internal(
                "the load task stopped without an error",
            ));
        }
        Ok(vec![batch])
    }

    async fn finish(&mut self, _cx: &RunContext) -> Result<Vec<Batch>, StepError> {
        self.join().await?;
        if let Some(sink) = self.sink.as_mut() {
            sink.prepare().await?;
        }
        Ok(Vec::new())
    }

    async fn commit(&mut self) -> Result<CommitOutcome, StepError> {
        match self.sink.as_mut() {
            Some(sink) => sink.commit().await,
            None => Err(StepError::internal("commit before the load finished")),
        }
    }

    async fn abort(&mut self) {
        let _ = self.join().await;
        if let Some(sink) = self.sink.as_mut() {
            sink.abort().await;
        }
    }

    async fn stream_offsets(&mut self) -> Result<Option<crate::stream::StreamOffsets>, StepError> {
        match self.sink.as_mut() {
            Some(sink) => sink.stream_offsets().await,
            None => Err(StepError::internal("offsets asked of a running load")),
        }
    }

    fn metrics(&self) -> Metrics {
        self.sink.as_ref().map(|s| s.metrics()).unwrap_or_default()
    }
}
