//! The operators behind registry entries: row-wise transforms, whole-input transforms and
//! loads (validations are in `validate`).

use crate::batch::Batch;
use crate::method::{MethodOptions, StepSetup};
use crate::runtime::{CommitOutcome, Datasets, Metrics, Operator, RunContext, Sink, blocking};
use async_trait::async_trait;
use pipeline_base::StepError;
use polars::prelude::*;
use std::sync::Arc;

pub(crate) fn with_step(step: &str) -> impl Fn(StepError) -> StepError + '_ {
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
pub(crate) fn gather(
    acc: &mut Option<DataFrame>,
    batch: Batch,
    step: &str,
) -> Result<(), StepError> {
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
