//! One attempt of a run: open every step, drive the sources through the chains, then commit
//! every load, or abort them all so that nothing is half-written.

use crate::chain::{PipelineStep, StepFailure, StepStats, link, visit_mut};
use crate::connect::connection_credentials;
use crate::plan::Plan;
use crate::registry::Registry;
use async_trait::async_trait;
use pipeline_base::{StepError, StepKind};
use pipeline_credentials::CachedProvider;
use pipeline_data::{Batch, Metrics, Operator, RunContext, Runtime, Source, StepSetup};
use std::sync::Arc;
use std::time::Instant;

/// Receives progress while a run works (the CLI draws a progress bar with it).
pub trait RunObserver: Send + Sync {
    fn attempt_started(&self, _attempt: u32, _of: u32) {}
    /// Rows a step has emitted so far; `total` is the expected count when known.
    fn source_rows(&self, _step: &str, _rows: u64, _total: Option<u64>) {}
    fn rows(&self, _step: &str, _rows_out: u64) {}
    fn step_finished(&self, _step: &str) {}
    fn attempt_finished(&self) {}
}

/// An observer that ignores everything.
pub struct NoopObserver;

impl RunObserver for NoopObserver {}

/// What an attempt left behind, per planned step.
pub(crate) struct AttemptOutcome {
    pub stats: Vec<Option<(StepStats, Metrics)>>,
    pub failure: Option<StepFailure>,
}

/// Extract steps pass their source's batches on unchanged.
struct Identity;

#[async_trait]
impl Operator for Identity {
    async fn push(&mut self, batch: Batch, _: &RunContext) -> Result<Vec<Batch>, StepError> {
        Ok(vec![batch])
    }
}

enum Head {
    Source {
        index: usize,
        source: Box<dyn Source>,
    },
    Dataset(String),
}

struct Segment {
    head: Head,
    chain: Box<PipelineStep>,
}

pub(crate) async fn run_attempt(
    plan: &Plan,
    registry: &Registry,
    observer: Arc<dyn RunObserver>,
    credentials: Option<&CachedProvider>,
    run_span: &tracing::Span,
) -> AttemptOutcome {
    let mut stats: Vec<Option<(StepStats, Metrics)>> = vec![None; plan.steps.len()];
    let keep = plan.kept_datasets();

    // Open every step and group them into chains.
    let mut segments: Vec<(Head, Vec<PipelineStep>)> = Vec::new();
    let mut failure: Option<StepFailure> = None;
    for (i, step) in plan.steps.iter().enumerate() {
        let Some(entry) = registry.get(step.kind, &step.method) else {
            failure = Some(StepFailure {
                index: i,
                step: step.name.clone(),
                error: StepError::internal("method vanished from the registry"),
            });
            break;
        };
        let creds = match (&step.connection, &step.connection_config) {
            (Some(name), Some(config)) => connection_credentials(name, config, credentials).await,
            _ => Ok(None),
        };
        let creds = match creds {
            Ok(c) => c,
            Err(error) => {
                failure = Some(StepFailure {
                    index: i,
                    step: step.name.clone(),
                    error,
                });
                break;
            }
        };
        let setup = StepSetup {
            pipeline: plan.pipeline.clone(),
            step: step.name.clone(),
            options: step.options.clone(),
            connection: step.connection.clone().zip(step.connection_config.clone()),
            credentials: creds,
            on_failure: step.on_failure.unwrap_or_default(),
            quarantine: step.quarantine.clone(),
            max_invalid_fraction: step.max_invalid_fraction,
            main_input: step.inputs.first().cloned(),
            side_inputs: step.inputs.iter().skip(1).cloned().collect(),
            base_dir: plan.base_dir.clone(),
        };
        let span = tracing::info_span!(parent: run_span, "step", step = %step.name);
        let runtime = match entry.open(setup).await {
            Ok(r) => r,
            Err(e) => {
                failure = Some(StepFailure {
                    index: i,
                    step: step.name.clone(),
                    error: e,
                });
                break;
            }
        };
        let (op, source): (Box<dyn Operator>, Option<Box<dyn Source>>) = match runtime {
            Runtime::Source(s) => (Box::new(Identity), Some(s)),
            Runtime::Operator(op) => (op, None),
        };
        let link = PipelineStep::new(
            i,
            step.name.clone(),
            op,
            step.auto_convert_to,
            keep.contains(&step.name),
            span,
            observer.clone(),
        );
        let chained = step.kind != StepKind::Extract
            && i > 0
            && step.inputs.first() == Some(&plan.steps[i - 1].name)
            && !segments.is_empty();
        match (source, chained) {
            (Some(source), _) => segments.push((Head::Source { index: i, source }, vec![link])),
            (None, true) => segments.last_mut().map(|s| s.1.push(link)).unwrap_or(()),
            (None, false) => {
                let input = step.inputs.first().cloned().unwrap_or_default();
                segments.push((Head::Dataset(input), vec![link]));
            }
        }
    }
    let mut segments: Vec<Segment> = segments
        .into_iter()
        .filter_map(|(head, links)| link(links).map(|chain| Segment { head, chain }))
        .collect();

    let cx = RunContext::new();
    if failure.is_none() {
        for segment in segments.iter_mut() {
            if let Err(f) = drive(segment, &cx, plan, observer.as_ref()).await {
                failure = Some(f);
                break;
            }
        }
    }

    // Publish, or discard.
    if failure.is_none() {
        'commit: for segment in segments.iter_mut() {
            let mut current = Some(segment.chain.as_mut());
            while let Some(step) = current {
                if let Err(e) = step.op.commit().await {
                    failure = Some(StepFailure {
                        index: step.index,
                        step: step.name.clone(),
                        error: e,
                    });
                    break 'commit;
                }
                step.stats.committed = true;
                current = step.next.as_deref_mut();
            }
        }
    }
    if failure.is_some() {
        for segment in segments.iter_mut() {
            let mut current = Some(segment.chain.as_mut());
            while let Some(step) = current {
                if !step.stats.committed {
                    step.op.abort().await;
                }
                current = step.next.as_deref_mut();
            }
        }
    }
    for segment in segments.iter_mut() {
        visit_mut(&mut segment.chain, |step| {
            stats[step.index] = Some((step.stats.clone(), step.metrics()))
        });
    }
    observer.attempt_finished();
    AttemptOutcome { stats, failure }
}

async fn drive(
    segment: &mut Segment,
    cx: &RunContext,
    plan: &Plan,
    observer: &dyn RunObserver,
) -> Result<(), StepFailure> {
    match &mut segment.head {
        Head::Source { index, source } => {
            let name = plan.steps[*index].name.clone();
            let total = source.total_rows();
            let mut read = 0u64;
            loop {
                let start = Instant::now();
                let next = source.next_batch().await;
                segment.chain.add_busy(start.elapsed());
                let batch = next.map_err(|error| StepFailure {
                    index: *index,
                    step: name.clone(),
                    error,
                })?;
                let Some(batch) = batch else { break };
                read += batch.rows() as u64;
                observer.source_rows(&name, read, total);
                segment.chain.handle(batch, cx).await?;
            }
        }
        Head::Dataset(name) => {
            for batch in cx.batches(name).unwrap_or_default() {
                segment.chain.handle(batch, cx).await?;
            }
        }
    }
    segment.chain.finish(cx).await
}
