//! `Pipeline`: parses the files, builds the checked plan, and runs it with the retry policy.

use crate::cancel::CancelToken;
use crate::execute::{AttemptContext, NoopObserver, RunObserver, run_attempt};
use crate::plan::{Plan, build_plan};
use crate::registry::Registry;
use crate::report::{ReportError, RunReport, StepReport, StepStatus};
use crate::run_id::RunId;
use pipeline_base::{StepError, StepKind};
use pipeline_config::{
    ConfigErrors, LoadedPipeline, Override, PipelineConfig, load_pipeline, load_pipeline_str,
};
use pipeline_credentials::{CachedProvider, CredentialProvider};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::Instrument;

/// A pipeline read from its files and checked; ready to run any number of times.
pub struct Pipeline {
    loaded: LoadedPipeline,
    plan: Plan,
    registry: Arc<Registry>,
}

/// How to run.
#[derive(Clone)]
pub struct RunOptions {
    pub observer: Arc<dyn RunObserver>,
    /// Where connections' credentials come from (Vault in production); each secret path is read
    /// once per run. `None`: a connection with `credentials` fails with a clear error.
    pub credentials: Option<Arc<dyn CredentialProvider>>,
    /// Cancelling it stops the run cleanly: nothing more is read or committed, and every load
    /// not yet committed is aborted.
    pub cancel: CancelToken,
    /// The run's id. `None`: a new one. An earlier run's id resumes that run: every load that
    /// run committed is recognised by its sink and not written again (`pipectl run --resume`).
    pub run_id: Option<RunId>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            observer: Arc::new(NoopObserver),
            credentials: None,
            cancel: CancelToken::new(),
            run_id: None,
        }
    }
}

/// A run that failed after its retries, or was cancelled.
#[derive(Debug, thiserror::Error)]
#[error("pipeline \"{pipeline}\" failed at step \"{step}\" after {attempts} attempt{}: {}", if *.attempts == 1 { "" } else { "s" }, .error.full_message())]
pub struct RunFailure {
    pub pipeline: String,
    pub step: String,
    pub attempts: u32,
    pub error: StepError,
    /// The signal (or other reason) that cancelled the run, when it was cancelled.
    pub interrupted: Option<String>,
    pub report: Box<RunReport>,
}

impl Pipeline {
    /// Reads, resolves and checks a pipeline file with the standard methods.
    pub fn from_file(path: &Path, overrides: &[Override]) -> Result<Self, ConfigErrors> {
        Self::from_file_with(path, overrides, Arc::new(Registry::standard()))
    }

    /// Same, with a registry of one's own.
    pub fn from_file_with(
        path: &Path,
        overrides: &[Override],
        registry: Arc<Registry>,
    ) -> Result<Self, ConfigErrors> {
        let loaded = load_pipeline(path, overrides)?;
        let plan = build_plan(&loaded, &registry)?;
        Ok(Pipeline {
            loaded,
            plan,
            registry,
        })
    }

    /// A pipeline from text, as if it were the file at `path`, with a registry of one's own.
    pub fn from_str_with(
        path: &Path,
        text: &str,
        registry: Arc<Registry>,
    ) -> Result<Self, ConfigErrors> {
        let loaded = load_pipeline_str(path, text, &[])?;
        let plan = build_plan(&loaded, &registry)?;
        Ok(Pipeline {
            loaded,
            plan,
            registry,
        })
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The typed pipeline file.
    pub fn config(&self) -> &PipelineConfig {
        &self.loaded.config
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The resolved document (all `$ref`s included), e.g. for `plan --resolved`.
    pub fn resolved_document(&self) -> &serde_json::Value {
        &self.loaded.document
    }

    /// The main execution method: runs attempts until one succeeds, an error that retrying
    /// cannot fix occurs, or the retries are used up.
    pub async fn run(&self, options: &RunOptions) -> Result<RunReport, RunFailure> {
        let plan = &self.plan;
        // The plan bounds both (a day, 1,000 retries); saturate anyway for a library caller.
        let max_attempts = plan.retry.max_retries.saturating_add(1);
        let delay = Duration::try_from_secs_f64(plan.retry.delay_seconds.max(0.0))
            .unwrap_or(Duration::ZERO);
        let started = Instant::now();
        let started_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let resumed = options.run_id.is_some();
        let run_id = options.run_id.clone().unwrap_or_else(RunId::generate);
        let run_span = tracing::info_span!("run", pipeline = %plan.pipeline, run_id = %run_id);
        tracing::info!(parent: &run_span, mode = %plan.mode, steps = plan.steps.len(), max_attempts, resumed, "pipeline started");
        // One cache per run: a path read by an attempt is not read again by a retry.
        let credentials = options.credentials.clone().map(|p| {
            tracing::info!(parent: &run_span, source = %p.describe(), "credentials from Vault");
            CachedProvider::new(p)
        });
        let mut attempt = 0;
        // Loads committed by an attempt are not written again by a retry.
        let mut committed: Vec<String> = Vec::new();
        // Loads an earlier run with this id had committed (found by their sinks).
        let mut already: Vec<String> = Vec::new();
        loop {
            attempt += 1;
            options.observer.attempt_started(attempt, max_attempts);
            let attempt_span = tracing::info_span!(parent: &run_span, "attempt", attempt);
            let before: BTreeSet<String> = committed.iter().cloned().collect();
            let ctx = AttemptContext {
                registry: &self.registry,
                observer: options.observer.clone(),
                credentials: credentials.as_ref(),
                cancel: &options.cancel,
                committed: &before,
                run_id: &run_id,
                resumed,
                stream: None,
                side_inputs: None,
            };
            let outcome = run_attempt(plan, ctx, &attempt_span)
                .instrument(attempt_span.clone())
                .await;
            committed.extend(outcome.committed.iter().cloned());
            already.extend(outcome.already.iter().cloned());
            let report = self.report(
                &outcome,
                Progress {
                    attempts: attempt,
                    started,
                    started_at,
                    run_id: &run_id,
                    committed: &committed,
                    already: &already,
                },
            );
            let Some(failure) = outcome.failure else {
                tracing::info!(
                    parent: &run_span,
                    attempts = attempt,
                    rows_read = report.rows_read,
                    rows_written = report.rows_written,
                    elapsed_ms = report.elapsed_ms,
                    "pipeline succeeded"
                );
                return Ok(report);
            };
            let interrupted = options
                .cancel
                .reason()
                .filter(|_| options.cancel.is_cancelled());
            let retryable = failure.error.retryable() && interrupted.is_none();
            if retryable && attempt < max_attempts {
                tracing::warn!(
                    parent: &run_span,
                    attempt,
                    max_attempts,
                    step = %failure.step,
                    error = %failure.error.full_message(),
                    delay_s = delay.as_secs_f64(),
                    "attempt failed with a transient error; retrying"
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = options.cancel.cancelled() => {}
                }
                if !options.cancel.is_cancelled() {
                    continue;
                }
            }
            let why = if interrupted.is_some() || options.cancel.is_cancelled() {
                "interrupted"
            } else if retryable {
                "retries exhausted"
            } else {
                "not retryable"
            };
            tracing::error!(
                parent: &run_span,
                attempt,
                step = %failure.step,
                class = %failure.error.class(),
                error = %failure.error.full_message(),
                committed = %report.commit_summary(),
                "pipeline failed ({why})"
            );
            return Err(RunFailure {
                pipeline: plan.pipeline.clone(),
                step: failure.step,
                attempts: attempt,
                error: failure.error,
                interrupted: options
                    .cancel
                    .reason()
                    .filter(|_| options.cancel.is_cancelled()),
                report: Box::new(report),
            });
        }
    }

    pub(crate) fn report(
        &self,
        outcome: &crate::execute::AttemptOutcome,
        progress: Progress<'_>,
    ) -> RunReport {
        let Progress {
            attempts,
            started,
            started_at,
            run_id,
            committed,
            already,
        } = progress;
        let failed_index = outcome.failure.as_ref().map(|f| f.index);
        let mut steps = Vec::with_capacity(self.plan.steps.len());
        let (mut rows_read, mut rows_written) = (0, 0);
        for (i, planned) in self.plan.steps.iter().enumerate() {
            let (stats, metrics) = outcome.stats[i].clone().unwrap_or_default();
            let status = if failed_index == Some(i) {
                StepStatus::Failed
            } else if outcome.stats[i].is_none()
                || (stats.batches_in == 0 && !stats.finished && planned.kind != StepKind::Extract)
            {
                StepStatus::NotRun
            } else if outcome.failure.is_some() {
                StepStatus::Aborted
            } else {
                StepStatus::Ok
            };
            if planned.kind == StepKind::Extract {
                rows_read += stats.rows_out;
            }
            if planned.kind == StepKind::Load && status == StepStatus::Ok {
                rows_written += stats.rows_in;
            }
            let secs = stats.busy.as_secs_f64();
            let dropped = match planned.kind {
                StepKind::Validate => stats.rows_in.saturating_sub(stats.rows_out),
                StepKind::Transform if !planned.whole_input => {
                    stats.rows_in.saturating_sub(stats.rows_out)
                }
                _ => 0,
            };
            steps.push(StepReport {
                name: planned.name.clone(),
                kind: planned.kind,
                method: planned.method.clone(),
                status,
                rows_in: stats.rows_in,
                rows_out: stats.rows_out,
                rows_dropped: dropped,
                elapsed_ms: stats.busy.as_millis() as u64,
                rows_per_sec: if secs > 0.0 {
                    (stats.rows_in.max(stats.rows_out) as f64 / secs) as u64
                } else {
                    0
                },
                metrics: metrics
                    .iter()
                    .map(|(k, v)| (k.to_string(), *v))
                    .collect::<BTreeMap<_, _>>(),
                details: stats.details.clone(),
            });
        }
        RunReport {
            pipeline: self.plan.pipeline.clone(),
            run_id: run_id.to_string(),
            status: if outcome.failure.is_some() {
                "failed".into()
            } else {
                "succeeded".into()
            },
            attempts,
            started_at_unix_ms: started_at,
            elapsed_ms: started.elapsed().as_millis() as u64,
            rows_read,
            rows_written,
            committed_loads: committed.to_vec(),
            already_committed_loads: already.to_vec(),
            uncommitted_loads: self
                .plan
                .steps
                .iter()
                .filter(|s| {
                    s.kind == StepKind::Load
                        && !committed.contains(&s.name)
                        && !already.contains(&s.name)
                })
                .map(|s| s.name.clone())
                .collect(),
            error: outcome.failure.as_ref().map(|f| ReportError {
                step: f.step.clone(),
                class: f.error.class(),
                retryable: f.error.retryable(),
                message: f.error.full_message(),
                hint: f.error.hint().map(str::to_string),
            }),
            steps,
        }
    }
}

/// Where a run stands, for its report.
pub(crate) struct Progress<'a> {
    pub attempts: u32,
    pub started: Instant,
    pub started_at: u64,
    pub run_id: &'a RunId,
    pub committed: &'a [String],
    pub already: &'a [String],
}
