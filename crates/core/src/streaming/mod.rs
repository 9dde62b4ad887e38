//! Micro-batch streaming (`"mode": "streaming"`). The plan runs once per micro-batch with the
//! batch executor and its commit protocol: the Kafka extract fixes the micro-batch's offset
//! ranges when it opens (within `max_records`/`max_bytes`), the steps run on those records,
//! every load commits (the exactly-once ones with the ranges' offsets in the same commit),
//! then the source stores its offsets. One micro-batch is in flight at a time, so memory is
//! bounded by one micro-batch; a stream that is behind gets full micro-batches back to back.
//!
//! - A micro-batch that fails with a transient error is retried on the same ranges under the
//!   pipeline's retry policy; then the stream stops with exit 1, offsets intact.
//! - SIGTERM/Ctrl-C: the micro-batch in flight may finish within `shutdown_timeout`, else it
//!   is aborted; the stream then ends with success.
//! - `--once` / `"trigger": "available_now"`: up to the offsets the partitions had at the
//!   start, then stop.

mod metrics;
mod recover;

pub use metrics::{MetricsLine, MicroBatch};

use crate::cancel::CancelToken;
use crate::execute::{AttemptContext, AttemptOutcome, NoopObserver, run_attempt};
use crate::pipeline::{Pipeline, Progress, RunFailure, RunOptions};
use crate::report::RunReport;
use crate::run_id::RunId;
use metrics::{Interval, LagTrend};
use pipeline_base::{StepError, StepKind};
use pipeline_config::{OnOffsetOutOfRange, Trigger};
use pipeline_credentials::CachedProvider;
use pipeline_data::stream::{OutOfRange, StreamCursor, StreamLimits, StreamOffsets};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::Instrument;

/// Receives what a stream does (e.g. the CLI's Prometheus endpoint).
pub trait StreamObserver: Send + Sync {
    fn micro_batch(&self, _batch: &MicroBatch) {}
    fn metrics_line(&self, _line: &MetricsLine) {}
}

/// How to run a stream, besides [`RunOptions`].
#[derive(Clone, Default)]
pub struct StreamOptions {
    /// What is available at the start, then stop (`pipectl run --once`).
    pub once: bool,
    pub observer: Option<Arc<dyn StreamObserver>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Every step's rows and time, summed over micro-batches.
struct Totals(Vec<(u64, u64, Duration)>);

impl Totals {
    fn add(&mut self, outcome: &AttemptOutcome) {
        for (t, s) in self.0.iter_mut().zip(&outcome.stats) {
            if let Some((stats, _)) = s {
                t.0 = t.0.saturating_add(stats.rows_in);
                t.1 = t.1.saturating_add(stats.rows_out);
                t.2 = t.2.saturating_add(stats.busy);
            }
        }
    }
}

/// The ends that make a retry read exactly the ranges of the failed attempt (`None` when it
/// failed before the source fixed them).
fn same_ranges(cursor: &StreamCursor) -> Option<StreamOffsets> {
    let ranges = cursor.ranges();
    (!ranges.is_empty()).then(|| {
        ranges
            .into_iter()
            .map(|r| ((r.topic, r.partition), r.end))
            .collect()
    })
}

impl Pipeline {
    /// Runs a streaming pipeline until it is stopped (a signal, `options.cancel`) or, with
    /// `once`, until what was available at the start is processed.
    pub async fn stream(
        &self,
        options: &RunOptions,
        stream: &StreamOptions,
    ) -> Result<RunReport, RunFailure> {
        let plan = self.plan();
        let Some(sp) = plan.streaming.clone() else {
            return Err(self.failure(
                options,
                "",
                StepError::user("the pipeline is not a streaming one (\"mode\": \"streaming\")"),
            ));
        };
        let cfg = &sp.config;
        let once = stream.once || cfg.trigger == Trigger::AvailableNow;
        let run_id = options.run_id.clone().unwrap_or_else(RunId::generate);
        let run_span = tracing::info_span!("run", pipeline = %plan.pipeline, run_id = %run_id, stream = %sp.id);
        let credentials = options.credentials.clone().map(CachedProvider::new);
        let cursor = Arc::new(StreamCursor::new(
            sp.id.clone(),
            StreamLimits {
                max_records: cfg.max_records.max(1),
                max_bytes: cfg.max_bytes.max(1),
                on_out_of_range: match cfg.on_offset_out_of_range {
                    OnOffsetOutOfRange::Fail => OutOfRange::Fail,
                    OnOffsetOutOfRange::Earliest => OutOfRange::Earliest,
                    OnOffsetOutOfRange::Latest => OutOfRange::Latest,
                },
            },
        ));
        let source = plan
            .steps
            .iter()
            .position(|s| s.name == sp.source)
            .unwrap_or_default();
        for l in &sp.loads {
            if l.exactly_once {
                tracing::info!(parent: &run_span, step = %l.step, "exactly-once: offsets commit with the data");
            } else {
                tracing::warn!(parent: &run_span, step = %l.step, "at-least-once: after a crash this load may get a micro-batch again (its offsets are the Kafka extract's offsets store, saved after every load committed)");
            }
        }
        // A stopping signal lets the micro-batch in flight finish for `shutdown_timeout`.
        let inner = CancelToken::new();
        let watcher = {
            let (outer, inner, grace) = (
                options.cancel.clone(),
                inner.clone(),
                cfg.shutdown_timeout.0,
            );
            tokio::spawn(async move {
                outer.cancelled().await;
                let reason = outer.reason().unwrap_or_else(|| "a cancellation".into());
                tracing::warn!(signal = %reason, grace_s = grace.as_secs_f64(), "stopping the stream: the micro-batch in flight may finish, then nothing more is read");
                tokio::time::sleep(grace).await;
                inner.cancel(&reason);
            })
        };
        let result = self
            .stream_loop(
                options,
                stream,
                &run_id,
                &cursor,
                source,
                once,
                credentials.as_ref(),
                &inner,
            )
            .instrument(run_span.clone())
            .await;
        watcher.abort();
        result
    }

    /// A failure before any attempt ran.
    fn failure(&self, options: &RunOptions, step: &str, error: StepError) -> RunFailure {
        let outcome = AttemptOutcome {
            stats: vec![None; self.plan().steps.len()],
            failure: None,
            committed: Vec::new(),
            already: Vec::new(),
        };
        let run_id = options.run_id.clone().unwrap_or_else(RunId::generate);
        let report = self.report(
            &outcome,
            Progress {
                attempts: 1,
                started: Instant::now(),
                started_at: 0,
                run_id: &run_id,
                committed: &[],
                already: &[],
            },
        );
        RunFailure {
            pipeline: self.plan().pipeline.clone(),
            step: step.to_string(),
            attempts: 1,
            error,
            interrupted: None,
            report: Box::new(report),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn stream_loop(
        &self,
        options: &RunOptions,
        stream: &StreamOptions,
        run_id: &RunId,
        cursor: &Arc<StreamCursor>,
        source: usize,
        once: bool,
        credentials: Option<&CachedProvider>,
        inner: &CancelToken,
    ) -> Result<RunReport, RunFailure> {
        let plan = self.plan();
        let Some(sp) = plan.streaming.as_ref() else {
            return Err(self.failure(options, "", StepError::internal("no stream plan")));
        };
        let cfg = &sp.config;
        let started = Instant::now();
        let started_at = u64::try_from(now_ms()).unwrap_or(0);
        let max_attempts = plan.retry.max_retries.saturating_add(1);
        let delay = Duration::try_from_secs_f64(plan.retry.delay_seconds.max(0.0))
            .unwrap_or(Duration::ZERO);
        let fail_with =
            |outcome: &AttemptOutcome, failure: crate::chain::StepFailure, attempts: u32| {
                let report = self.report(
                    outcome,
                    Progress {
                        attempts,
                        started,
                        started_at,
                        run_id,
                        committed: &outcome.committed,
                        already: &outcome.already,
                    },
                );
                RunFailure {
                    pipeline: plan.pipeline.clone(),
                    step: failure.step,
                    attempts,
                    error: failure.error,
                    interrupted: None,
                    report: Box::new(report),
                }
            };

        // Where to resume: retried like a micro-batch (the servers may be starting).
        let mut attempt = 0u32;
        let (resume, tracked) = loop {
            attempt = attempt.saturating_add(1);
            match recover::recover(
                plan,
                self.registry(),
                credentials,
                &run_id.to_string(),
                cursor,
                source,
            )
            .await
            {
                Ok(found) => break found,
                Err(f)
                    if f.error.retryable()
                        && attempt < max_attempts
                        && !options.cancel.is_cancelled() =>
                {
                    tracing::warn!(step = %f.step, error = %f.error.full_message(), "opening the stream failed with a transient error; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(f) => {
                    let empty = AttemptOutcome {
                        stats: vec![None; plan.steps.len()],
                        failure: None,
                        committed: Vec::new(),
                        already: Vec::new(),
                    };
                    return Err(fail_with(&empty, f, attempt));
                }
            }
        };
        tracing::info!(partitions = cursor.partitions().len(), offsets_from = %if tracked.is_empty() { "the source's offsets store or start".to_string() } else { tracked.join(", ") }, once, "stream started");
        let recover::Resume {
            mut starts,
            mut replay,
            floors,
        } = resume;
        if !replay.is_empty() {
            tracing::info!(
                partitions = replay.len(),
                "a load is behind another one (a stop between their commits): replaying what it missed, to it alone"
            );
        }
        cursor.set_floors(floors);
        let partitions = cursor.partitions();

        let side_inputs =
            crate::side_cache::SideInputs::new(cfg.side_input_refresh.0, sp.side_inputs.clone());
        let mut totals = Totals(vec![(0, 0, Duration::ZERO); plan.steps.len()]);
        let mut interval = Interval::default();
        let mut trend = LagTrend::default();
        let mut line_started = Instant::now();
        let mut number = 0u64;
        let mut targets: Option<StreamOffsets> = None;
        let mut last: Option<AttemptOutcome> = None;
        let (mut events_in, mut events_out) = (0u64, 0u64);
        loop {
            if options.cancel.is_cancelled() {
                break;
            }
            number = number.saturating_add(1);
            let span = tracing::info_span!("micro_batch", number);
            let batch_started = Instant::now();
            let caps = recover::caps(&partitions, &replay, targets.as_ref());
            cursor.begin(starts.clone(), caps.clone());
            let mut committed: BTreeSet<String> = BTreeSet::new();
            let mut attempt = 0u32;
            let outcome = loop {
                attempt = attempt.saturating_add(1);
                let ctx = AttemptContext {
                    registry: self.registry(),
                    observer: Arc::new(NoopObserver),
                    credentials,
                    cancel: inner,
                    committed: &committed,
                    run_id,
                    resumed: false,
                    stream: Some(cursor.clone()),
                    side_inputs: Some(side_inputs.clone()),
                };
                let mut outcome = run_attempt(plan, ctx, &span).instrument(span.clone()).await;
                committed.extend(outcome.committed.iter().cloned());
                let Some(failure) = outcome.failure.take() else {
                    break outcome;
                };
                if inner.is_cancelled() {
                    tracing::warn!(micro_batch = number, committed = ?committed, "the micro-batch in flight was aborted at shutdown; what it had not committed is read again on the next start");
                    return Ok(self.stream_report(
                        &totals,
                        last.as_ref().unwrap_or(&outcome),
                        started,
                        started_at,
                        run_id,
                        events_in,
                        events_out,
                    ));
                }
                if failure.error.retryable() && attempt < max_attempts {
                    tracing::warn!(micro_batch = number, attempt, max_attempts, step = %failure.step, error = %failure.error.full_message(), delay_s = delay.as_secs_f64(), "micro-batch failed with a transient error; retrying it on the same offsets");
                    let again = same_ranges(cursor);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = inner.cancelled() => {}
                    }
                    match again {
                        Some(ends) => cursor.begin_exact(starts.clone(), ends),
                        None => cursor.begin(starts.clone(), caps.clone()),
                    }
                    continue;
                }
                let done: Vec<&str> = committed.iter().map(String::as_str).collect();
                tracing::error!(micro_batch = number, step = %failure.step, class = %failure.error.class(), error = %failure.error.full_message(), committed = %done.join(", "), "stream stopped; the loads that did not commit this micro-batch get it on the next start (the others are not written again)");
                return Err(fail_with(&outcome, failure, attempt));
            };
            // Committed: move on.
            let ranges = cursor.ranges();
            let (timestamps, bytes) = cursor.take_read();
            let commit_ms = now_ms();
            let lat = metrics::latencies(&timestamps, commit_ms);
            committed.extend(outcome.committed.iter().cloned());
            // Rows the loads committed in this micro-batch (summed over loads).
            let out = plan
                .steps
                .iter()
                .zip(&outcome.stats)
                .filter(|(s, _)| s.kind == StepKind::Load && committed.contains(&s.name))
                .filter_map(|(_, s)| s.as_ref().map(|(st, _)| st.rows_in))
                .fold(0u64, u64::saturating_add);
            for r in &ranges {
                let key = (r.topic.clone(), r.partition);
                starts.insert(key.clone(), r.end);
                if replay.get(&key).is_some_and(|&c| c <= r.end) {
                    replay.remove(&key);
                }
            }
            if once && targets.is_none() {
                targets = Some(
                    ranges
                        .iter()
                        .map(|r| ((r.topic.clone(), r.partition), r.high_watermark))
                        .collect(),
                );
            }
            let batch = MicroBatch {
                number,
                events_in: timestamps.len() as u64,
                events_out: out,
                bytes_in: bytes,
                duration: batch_started.elapsed(),
                lag: metrics::lag(&ranges, &cursor.watermarks()),
                latency_ms: (!lat.is_empty()).then(|| {
                    (
                        metrics::percentile(&lat, 50),
                        metrics::percentile(&lat, 95),
                        metrics::percentile(&lat, 99),
                    )
                }),
            };
            events_in = events_in.saturating_add(batch.events_in);
            events_out = events_out.saturating_add(batch.events_out);
            tracing::debug!(parent: &span, events_in = batch.events_in, events_out = batch.events_out, bytes = bytes, elapsed_ms = batch.duration.as_millis() as u64, lag = batch.total_lag(), "micro-batch committed");
            interval.add(&batch, &lat);
            if let Some(o) = &stream.observer {
                o.micro_batch(&batch);
            }
            totals.add(&outcome);
            let full = ranges.iter().any(|r| {
                !r.is_empty()
                    && r.end < r.high_watermark
                    && caps
                        .get(&(r.topic.clone(), r.partition))
                        .is_none_or(|&c| r.end < c)
            });
            last = Some(outcome);
            let done = once
                && targets
                    .as_ref()
                    .is_some_and(|t| t.iter().all(|(k, v)| starts.get(k).is_some_and(|s| s >= v)));
            if done || line_started.elapsed() >= cfg.log_interval.0 {
                let line = interval.take(line_started.elapsed());
                line_started = Instant::now();
                log_line(&line);
                let growing = trend.observe(line.lag_total);
                if cfg.lag_warning_intervals > 0 && growing >= cfg.lag_warning_intervals {
                    tracing::warn!(
                        lag = line.lag_total,
                        intervals = growing,
                        "the stream is falling behind: its lag grew for {growing} intervals in a row; add partitions and pipelines, raise max_records, or lighten the steps"
                    );
                }
                if let Some(o) = &stream.observer {
                    o.metrics_line(&line);
                }
            }
            if done {
                tracing::info!(
                    micro_batches = number,
                    events_in,
                    events_out,
                    "everything available at the start is processed (--once); stopping"
                );
                break;
            }
            if !full {
                let wait = cfg
                    .trigger_interval
                    .0
                    .saturating_sub(batch_started.elapsed());
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = options.cancel.cancelled() => {}
                }
            }
        }
        let report = match &last {
            Some(outcome) => self.stream_report(
                &totals, outcome, started, started_at, run_id, events_in, events_out,
            ),
            None => self.stream_report(
                &totals,
                &AttemptOutcome {
                    stats: vec![None; plan.steps.len()],
                    failure: None,
                    committed: Vec::new(),
                    already: Vec::new(),
                },
                started,
                started_at,
                run_id,
                events_in,
                events_out,
            ),
        };
        tracing::info!(
            micro_batches = number,
            events_in,
            events_out,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "stream stopped"
        );
        Ok(report)
    }

    #[allow(clippy::too_many_arguments)]
    fn stream_report(
        &self,
        totals: &Totals,
        last: &AttemptOutcome,
        started: Instant,
        started_at: u64,
        run_id: &RunId,
        events_in: u64,
        events_out: u64,
    ) -> RunReport {
        let mut report = self.report(
            last,
            Progress {
                attempts: 1,
                started,
                started_at,
                run_id,
                committed: &last.committed,
                already: &last.already,
            },
        );
        report.rows_read = events_in;
        report.rows_written = events_out;
        for (step, (rows_in, rows_out, busy)) in report.steps.iter_mut().zip(&totals.0) {
            step.rows_in = *rows_in;
            step.rows_out = *rows_out;
            step.elapsed_ms = busy.as_millis() as u64;
            let secs = busy.as_secs_f64();
            step.rows_per_sec = if secs > 0.0 {
                ((*rows_in).max(*rows_out) as f64 / secs) as u64
            } else {
                0
            };
        }
        report
    }
}

/// The metrics line.
fn log_line(l: &MetricsLine) {
    let lag: Vec<String> = l.lag.iter().map(|(p, v)| format!("{p}={v}")).collect();
    tracing::info!(
        events_in = l.events_in,
        events_out = l.events_out,
        events_per_sec = l.events_per_sec.round() as u64,
        micro_batches = l.micro_batches,
        batch_ms_mean = l.batch_ms_mean,
        batch_ms_max = l.batch_ms_max,
        latency_p50_ms = l.latency_p50_ms,
        latency_p95_ms = l.latency_p95_ms,
        latency_p99_ms = l.latency_p99_ms,
        lag = l.lag_total,
        lag_by_partition = %lag.join(" "),
        "stream: {} events in, {} out, {:.0}/s; latency p50 {} ms, p95 {} ms, p99 {} ms; lag {}",
        l.events_in, l.events_out, l.events_per_sec, l.latency_p50_ms, l.latency_p95_ms, l.latency_p99_ms, l.lag_total
    );
}
