//! One attempt of a run: open every step, drive the sources through the chains, then commit
//! every load, or abort them all so that nothing is half-written.
//!
//! Commit protocol: every load stages its data while the run streams and prepares when its
//! input ends; only when every step has succeeded do the loads commit, one after another in the
//! order of the plan. When a commit fails, the loads not yet committed are aborted, and the
//! loads that did commit are named in the outcome: the next attempt runs the pipeline again but
//! passes their input through without writing it a second time. A cancelled run (a signal)
//! stops between batches and before each commit, and aborts what has not committed.
//!
//! Across runs: every load records the run id with its commit, so a run resumed with the same
//! id (a crash between two commits, or a load that failed for good) finds the loads that
//! already published — the sink answers `AlreadyPublished` — and writes only the others.

use crate::cancel::CancelToken;
use crate::chain::{PipelineStep, StepFailure, StepStats, link, visit_mut};
use crate::connect::connection_credentials;
use crate::plan::Plan;
use crate::registry::Registry;
use crate::run_id::RunId;
use crate::side_cache::{Recording, Replay, SideInputs};
use async_trait::async_trait;
use pipeline_base::{StepError, StepKind};
use pipeline_credentials::CachedProvider;
use pipeline_data::stream::StreamCursor;
use pipeline_data::{
    Batch, CommitOutcome, Metrics, Operator, RunContext, Runtime, Source, StepSetup,
};
use std::collections::BTreeSet;
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
    /// Loads this attempt committed, in commit order.
    pub committed: Vec<String>,
    /// Loads whose sink found them committed by an earlier run with the same id.
    pub already: Vec<String>,
}

/// What an attempt is given besides the plan.
pub(crate) struct AttemptContext<'a> {
    pub registry: &'a Registry,
    pub observer: Arc<dyn RunObserver>,
    pub credentials: Option<&'a CachedProvider>,
    pub cancel: &'a CancelToken,
    /// Loads an earlier attempt of this run committed: not written again.
    pub committed: &'a BTreeSet<String>,
    pub run_id: &'a RunId,
    /// The run id was given: a resumed run.
    pub resumed: bool,
    /// In a stream: the cursor shared by the source and the loads of this micro-batch.
    pub stream: Option<Arc<StreamCursor>>,
    /// In a stream: the side inputs kept between micro-batches.
    pub side_inputs: Option<Arc<SideInputs>>,
}

/// The failure of a cancelled run.
fn interrupted(cancel: &CancelToken, index: usize, step: &str) -> StepFailure {
    let reason = cancel.reason().unwrap_or_else(|| "a cancellation".into());
    StepFailure {
        index,
        step: step.to_string(),
        error: StepError::external(format!("interrupted by {reason}")),
    }
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
    ctx: AttemptContext<'_>,
    run_span: &tracing::Span,
) -> AttemptOutcome {
    let AttemptContext {
        registry,
        observer,
        credentials,
        cancel,
        committed: committed_before,
        run_id,
        resumed,
        stream,
        side_inputs,
    } = ctx;
    let mut stats: Vec<Option<(StepStats, Metrics)>> = vec![None; plan.steps.len()];
    let keep = plan.kept_datasets();

    // Open every step and group them into chains.
    let mut segments: Vec<(Head, Vec<PipelineStep>)> = Vec::new();
    let mut failure: Option<StepFailure> = None;
    for (i, step) in plan.steps.iter().enumerate() {
        if step.kind == StepKind::Load && committed_before.contains(&step.name) {
            // Committed by an earlier attempt: pass the input on, write nothing.
            tracing::info!(parent: run_span, step = %step.name, "already committed by an earlier attempt of this run; not written again");
            let link = identity_link(i, step, keep.contains(&step.name), run_span, &observer);
            add_link(&mut segments, plan, i, link, None);
            continue;
        }
        // A stream's side input read recently: its kept batches, without opening it.
        if let Some(kept) = side_inputs
            .as_ref()
            .filter(|c| c.is_side_input(&step.name))
            .and_then(|c| c.fresh(&step.name))
        {
            let link = identity_link(i, step, keep.contains(&step.name), run_span, &observer);
            let replay = Replay {
                batches: kept,
                next: 0,
            };
            add_link(&mut segments, plan, i, link, Some(Box::new(replay)));
            continue;
        }
        let Some(entry) = registry.get(step.kind, &step.method) else {
            failure = Some(StepFailure {
                index: i,
                step: step.name.clone(),
                error: StepError::internal("method vanished from the registry"),
            });
            break;
        };
        let (creds, other_connections) =
            match step_credentials(step, &plan.base_dir, credentials).await {
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
        let setup = step_setup(
            plan,
            step,
            run_id.to_string(),
            resumed,
            creds,
            other_connections,
            stream.clone(),
        );
        let span = tracing::info_span!(parent: run_span, "step", step = %step.name);
        let opening = Instant::now();
        let opened = entry.open(setup).await;
        tracing::debug!(parent: &span, elapsed_ms = opening.elapsed().as_millis() as u64, "step opened");
        let runtime = match opened {
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
            Runtime::Source(s) => {
                match side_inputs.as_ref().filter(|c| c.is_side_input(&step.name)) {
                    Some(cache) => (
                        Box::new(Identity),
                        Some(Box::new(Recording {
                            inner: s,
                            step: step.name.clone(),
                            cache: cache.clone(),
                            batches: Vec::new(),
                        })),
                    ),
                    None => (Box::new(Identity), Some(s)),
                }
            }
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
        )
        .with_columns(step);
        add_link(&mut segments, plan, i, link, source);
    }
    let mut segments: Vec<Segment> = segments
        .into_iter()
        .filter_map(|(head, links)| link(links).map(|chain| Segment { head, chain }))
        .collect();
    if stream.is_some() {
        // A stream logs a metrics line per interval instead of every step of every micro-batch.
        for segment in segments.iter_mut() {
            visit_mut(&mut segment.chain, |step| step.quiet = true);
        }
    }

    let cx =
        RunContext::with_streamed(plan.streamed_datasets()).with_readers(plan.dataset_readers());
    if failure.is_none() {
        for segment in segments.iter_mut() {
            if let Err(f) = drive(segment, &cx, plan, observer.as_ref(), cancel).await {
                failure = Some(f);
                break;
            }
        }
    }

    // Publish, or discard.
    let mut committed = Vec::new();
    let mut already = Vec::new();
    if failure.is_none() {
        'commit: for segment in segments.iter_mut() {
            let mut current = Some(segment.chain.as_mut());
            while let Some(step) = current {
                if cancel.is_cancelled() {
                    failure = Some(interrupted(cancel, step.index, &step.name));
                    break 'commit;
                }
                let outcome = match step.op.commit().await {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        failure = Some(StepFailure {
                            index: step.index,
                            step: step.name.clone(),
                            error: e,
                        });
                        break 'commit;
                    }
                };
                step.stats.committed = true;
                if plan.steps.get(step.index).map(|p| p.kind) == Some(StepKind::Load)
                    && !committed_before.contains(&step.name)
                {
                    match outcome {
                        CommitOutcome::Published => committed.push(step.name.clone()),
                        CommitOutcome::AlreadyPublished if stream.is_some() => {
                            // The sink said so (a micro-batch replayed after a restart).
                            already.push(step.name.clone());
                        }
                        CommitOutcome::AlreadyPublished => {
                            tracing::info!(step = %step.name, run_id = %run_id, "already committed by an earlier run with this id; not written again");
                            already.push(step.name.clone());
                        }
                    }
                }
                current = step.next.as_deref_mut();
            }
        }
    }
    // Every load committed: the sources record how far they read (stored offsets). A failure
    // here fails the attempt; a retry passes the committed loads through and tries again.
    if failure.is_none() {
        for segment in segments.iter_mut() {
            if let Head::Source { index, source } = &mut segment.head
                && let Err(error) = source.commit().await
            {
                let step = plan
                    .steps
                    .get(*index)
                    .map(|s| s.name.clone())
                    .unwrap_or_default();
                failure = Some(StepFailure {
                    index: *index,
                    step,
                    error,
                });
                break;
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
        if let Head::Source { index, source } = &segment.head
            && let Some(Some((step_stats, metrics))) = stats.get_mut(*index)
        {
            metrics.extend(source.metrics());
            step_stats.details = source.details();
        }
    }
    observer.attempt_finished();
    AttemptOutcome {
        stats,
        failure,
        committed,
        already,
    }
}

/// A link that passes its input on (a load an earlier attempt committed, a kept side input).
fn identity_link(
    i: usize,
    step: &crate::plan::PlannedStep,
    keep: bool,
    run_span: &tracing::Span,
    observer: &Arc<dyn RunObserver>,
) -> PipelineStep {
    let span = tracing::info_span!(parent: run_span, "step", step = %step.name);
    PipelineStep::new(
        i,
        step.name.clone(),
        Box::new(Identity),
        step.auto_convert_to,
        keep,
        span,
        observer.clone(),
    )
    .with_columns(step)
}

/// Appends a step to the chain of the step before it, or starts a new chain (a source, or a
/// step reading a named dataset).
fn add_link(
    segments: &mut Vec<(Head, Vec<PipelineStep>)>,
    plan: &Plan,
    i: usize,
    link: PipelineStep,
    source: Option<Box<dyn Source>>,
) {
    let Some(step) = plan.steps.get(i) else {
        return;
    };
    let chained = step.kind != StepKind::Extract
        && i > 0
        && plan.steps.get(i - 1).map(|p| &p.name) == step.inputs.first()
        && !segments.is_empty();
    match (source, chained, segments.last_mut()) {
        (Some(source), _, _) => segments.push((Head::Source { index: i, source }, vec![link])),
        (None, true, Some(last)) => last.1.push(link),
        (None, _, _) => {
            let input = step.inputs.first().cloned().unwrap_or_default();
            segments.push((Head::Dataset(input), vec![link]));
        }
    }
}

async fn drive(
    segment: &mut Segment,
    cx: &RunContext,
    plan: &Plan,
    observer: &dyn RunObserver,
    cancel: &CancelToken,
) -> Result<(), StepFailure> {
    match &mut segment.head {
        Head::Source { index, source } => {
            let name = plan.steps[*index].name.clone();
            let total = source.total_rows();
            let (mut read, mut batches) = (0u64, 0u64);
            loop {
                let start = Instant::now();
                let next = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return Err(interrupted(cancel, *index, &name)),
                    next = source.next_batch() => next,
                };
                segment.chain.add_busy(start.elapsed());
                let batch = next.map_err(|error| StepFailure {
                    index: *index,
                    step: name.clone(),
                    error,
                })?;
                let Some(batch) = batch else { break };
                if batches == 0 {
                    // Noted as dropped before the step after the source (as a projection
                    // there would have been).
                    let left_out = source.left_out();
                    let before = segment.chain.next.as_ref().unwrap_or(&segment.chain);
                    if !left_out.is_empty() {
                        cx.note_dropped(&before.name, left_out.iter().map(String::as_str));
                    }
                }
                read += batch.rows() as u64;
                batches += 1;
                if batches % pipeline_data::memory::RELEASE_EVERY_BATCHES == 0 {
                    pipeline_data::memory::release_free_memory();
                }
                observer.source_rows(&name, read, total);
                segment.chain.handle(batch, cx).await?;
            }
        }
        Head::Dataset(name) => {
            // Every dataset a step reads is declared by the step that produces it, even when
            // empty: a missing one is a defect, never silently no rows.
            let mut reader = cx.reader(name).ok_or_else(|| StepFailure {
                index: segment.chain.index,
                step: segment.chain.name.clone(),
                error: StepError::internal(format!(
                    "dataset \"{name}\" was not produced before step \"{}\" read it",
                    segment.chain.name
                )),
            })?;
            loop {
                let batch = reader.next_batch().map_err(|error| StepFailure {
                    index: segment.chain.index,
                    step: segment.chain.name.clone(),
                    error,
                })?;
                let Some(batch) = batch else { break };
                segment.chain.handle(batch, cx).await?;
            }
        }
    }
    let finished = segment.chain.finish(cx).await;
    pipeline_data::memory::release_free_memory();
    finished
}

/// What step `step` of `plan` is opened with.
pub(crate) fn step_setup(
    plan: &crate::plan::Plan,
    step: &crate::plan::PlannedStep,
    run_id: String,
    resumed: bool,
    credentials: Option<Arc<pipeline_credentials::SecretFields>>,
    other_connections: std::collections::BTreeMap<String, pipeline_data::ConnectionSetup>,
    stream: Option<Arc<StreamCursor>>,
) -> StepSetup {
    StepSetup {
        pipeline: plan.pipeline.clone(),
        step: step.name.clone(),
        run_id,
        resumed,
        options: step.options.clone(),
        connection: step.connection.clone().zip(step.connection_config.clone()),
        credentials,
        on_failure: step.on_failure.unwrap_or_default(),
        quarantine: step.quarantine.clone(),
        max_invalid_fraction: step.max_invalid_fraction,
        main_input: step.inputs.first().cloned(),
        side_inputs: step.inputs.iter().skip(1).cloned().collect(),
        base_dir: plan.base_dir.clone(),
        other_connections,
        stream,
        side_inputs_ready: step.side_ready,
        memory_limit: plan.memory_limit,
        columns: match step.kind {
            StepKind::Extract => step.keep_columns.clone(),
            _ => None,
        },
    }
}

/// The Vault fields of a step's connection and the other connections its options name.
pub(crate) async fn step_credentials(
    step: &crate::plan::PlannedStep,
    base_dir: &std::path::Path,
    credentials: Option<&CachedProvider>,
) -> Result<
    (
        Option<Arc<pipeline_credentials::SecretFields>>,
        std::collections::BTreeMap<String, pipeline_data::ConnectionSetup>,
    ),
    StepError,
> {
    let creds = match (&step.connection, &step.connection_config) {
        (Some(name), Some(config)) => connection_credentials(name, config, credentials).await?,
        _ => None,
    };
    let mut others = std::collections::BTreeMap::new();
    for (name, config) in &step.other_connections {
        let credentials = connection_credentials(name, config, credentials).await?;
        others.insert(
            name.clone(),
            pipeline_data::ConnectionSetup {
                name: name.clone(),
                config: config.clone(),
                credentials,
                base_dir: base_dir.to_path_buf(),
                uses: Vec::new(),
            },
        );
    }
    Ok((creds, others))
}
