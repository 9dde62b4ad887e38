//! `"mode": "streaming"` on Spark: a Structured Streaming query per Delta load. The Kafka
//! source is read as a stream (from the stored offsets or `start` the first time; from the
//! query's checkpoint after that), the chain's row-by-row steps apply to each micro-batch, and
//! Spark's Delta sink commits each micro-batch exactly once together with the checkpoint.
//! `trigger_interval` becomes the processing-time trigger, `--once` (or `"trigger":
//! "available_now"`) reads what the topic holds and stops; progress is logged from the queries'
//! own progress reports.

use crate::check::Refusal;
use crate::compile::{At, Op, Program};
use crate::proto;
use crate::proto::command::CommandType;
use crate::relations;
use crate::run::Runner;
use crate::sinks::{Load, LoadMode};
use crate::sources::Source;
use pipeline_base::{OnFailure, StepError};
use pipeline_core::Plan;
use std::time::Duration;

/// What a streaming pipeline may use on Spark: one Kafka source (other extracts are static side
/// inputs), row-by-row transforms and validations, Delta loads.
pub fn check_streaming(at: &At<'_>, op: &Op, plan: &Plan) -> Result<(), Refusal> {
    let source = plan
        .streaming
        .as_ref()
        .map(|s| s.source.as_str())
        .unwrap_or_default();
    match op {
        Op::Source(Source::Kafka(_)) if at.step.name == source => Ok(()),
        Op::Source(_) if at.step.name != source => Ok(()),
        Op::Source(_) => Err(at.refuse("/method", "a streaming pipeline on Spark reads Kafka")),
        Op::Query(_) => match at.step.method.as_str() {
            "filter" | "derive" | "select" | "drop" | "rename" | "cast" | "fill_null" | "to_avro" | "to_dataframe" => Ok(()),
            "join" if matches!(at.step.options.get("how").and_then(|h| h.as_str()), None | Some("inner" | "left")) => Ok(()),
            other => Err(at.refuse(
                "/method",
                format!("\"{other}\" needs the whole stream (or an event-time watermark) on Spark; run this pipeline with the Polars engine"),
            )),
        },
        Op::Validate(v) => {
            if matches!(at.step.method.as_str(), "unique" | "row_count" | "freshness") {
                return Err(at.refuse("/method", format!("\"{}\" judges the whole input, which a stream never ends on Spark", at.step.method)));
            }
            if v.on_failure == OnFailure::Fail || v.max_invalid_fraction.is_some() {
                return Err(at.refuse(
                    "/on_failure",
                    "on Spark, a stream cannot stop before writing a micro-batch: use \"filter\", \"quarantine\" or \"warn\" (and no max_invalid_fraction)",
                ));
            }
            Ok(())
        }
        Op::Load(Load::Delta {
            mode: LoadMode::Append,
            ..
        }) => Ok(()),
        Op::Load(_) => Err(at.refuse("/method", "a streaming pipeline on Spark appends to Delta tables, which Spark commits exactly once with its checkpoint")),
    }
}

impl Runner {
    /// Starts a streaming query per load and waits: until the topic is drained (`once`), or
    /// until `stop` resolves (a signal), stopping every query cleanly.
    pub async fn stream(
        &mut self,
        plan: &Plan,
        programs: &[Program],
        once: bool,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<Vec<String>, StepError> {
        let Some(streaming) = &plan.streaming else {
            return Err(StepError::internal(
                "a streaming run without a streaming plan",
            ));
        };
        let config = &streaming.config;
        let available_now = once || config.trigger == pipeline_config::Trigger::AvailableNow;
        let mut queries = Vec::new();
        for program in programs {
            let Op::Load(Load::Delta {
                input,
                connection,
                path,
                partition_by,
                ..
            }) = &program.op
            else {
                continue;
            };
            let what = format!("step \"{}\"", program.step);
            let mut options = self.storage_options(connection.as_deref(), path)?;
            let checkpoint = self.checkpoint(plan, &program.step, path);
            if let Some(bucket) = checkpoint
                .strip_prefix("s3a://")
                .and_then(|r| r.split('/').next())
            {
                // The checkpoint is written with the session's Hadoop settings, not the
                // query's options: the bucket's S3A settings go to the session.
                let scoped: Vec<(String, String)> = options
                    .iter()
                    .filter_map(|(k, v)| {
                        k.strip_prefix("fs.s3a.")
                            .map(|rest| (format!("fs.s3a.bucket.{bucket}.{rest}"), v.clone()))
                    })
                    .collect();
                let pairs: Vec<(&str, String)> = scoped
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.clone()))
                    .collect();
                self.session.set_config(&pairs).await?;
            }
            options.insert("checkpointLocation".into(), checkpoint);
            use proto::write_stream_operation_start::{SinkDestination, Trigger};
            let trigger = if available_now {
                Trigger::AvailableNow(true)
            } else {
                Trigger::ProcessingTimeInterval(format!(
                    "{} milliseconds",
                    config.trigger_interval.0.as_millis()
                ))
            };
            let start = proto::WriteStreamOperationStart {
                input: Some(relations::table(input)),
                format: "delta".into(),
                options,
                partitioning_column_names: partition_by.clone(),
                trigger: Some(trigger),
                output_mode: "append".into(),
                query_name: format!("{}.{}", plan.pipeline, program.step),
                sink_destination: Some(SinkDestination::Path(self.location(path))),
                ..Default::default()
            };
            let started = self
                .session
                .command(CommandType::WriteStreamOperationStart(start), &what)
                .await?;
            let id = started.other.iter().find_map(|r| match r {
                proto::execute_plan_response::ResponseType::WriteStreamOperationStartResult(s) => {
                    s.query_id.clone()
                }
                _ => None,
            });
            let id = id.ok_or_else(|| {
                StepError::external(format!("Spark started no streaming query for {what}"))
            })?;
            tracing::info!(step = %program.step, query = %id.id, "streaming query started on spark");
            queries.push((program.step.clone(), id));
        }
        if available_now {
            for (step, id) in &queries {
                let wait =
                    proto::streaming_query_command::AwaitTerminationCommand { timeout_ms: None };
                let outcome = match self
                    .query_command(id, Command::AwaitTermination(wait), step)
                    .await
                {
                    Ok(_) => self.raise_query_exception(id, step).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = outcome {
                    self.stop_all(&queries).await;
                    return Err(e);
                }
            }
            return Ok(queries.into_iter().map(|(s, _)| s).collect());
        }
        tokio::pin!(stop);
        let interval = config.log_interval.0.max(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(interval) => {}
            }
            for (step, id) in &queries {
                let status = self.query_command(id, Command::Status(true), step).await?;
                if let Some(Result_::Status(s)) = status.and_then(|r| r.result_type)
                    && !s.is_active
                {
                    let failure = match self.raise_query_exception(id, step).await {
                        Err(e) => e,
                        Ok(()) => StepError::external(format!(
                            "the streaming query of step \"{step}\" stopped: {}",
                            s.status_message
                        )),
                    };
                    self.stop_all(&queries).await;
                    return Err(failure);
                }
                if let Some(Result_::RecentProgress(p)) = self
                    .query_command(id, Command::LastProgress(true), step)
                    .await?
                    .and_then(|r| r.result_type)
                    && let Some(last) = p.recent_progress_json.last()
                {
                    log_progress(step, last);
                }
            }
        }
        self.stop_all(&queries).await;
        Ok(queries.into_iter().map(|(s, _)| s).collect())
    }

    /// Stops every query (each commits nothing more after its current micro-batch).
    async fn stop_all(&mut self, queries: &[(String, proto::StreamingQueryInstanceId)]) {
        for (step, id) in queries {
            match self.query_command(id, Command::Stop(true), step).await {
                Ok(_) => tracing::info!(step = %step, "streaming query stopped"),
                Err(e) => {
                    tracing::warn!(step = %step, error = %e.message(), "stopping a streaming query")
                }
            }
        }
    }

    /// Runs a streaming query command; returns its result.
    async fn query_command(
        &mut self,
        id: &proto::StreamingQueryInstanceId,
        command: Command,
        step: &str,
    ) -> Result<Option<proto::StreamingQueryCommandResult>, StepError> {
        let what = format!("step \"{step}\"");
        let out = self
            .session
            .command(
                CommandType::StreamingQueryCommand(proto::StreamingQueryCommand {
                    query_id: Some(id.clone()),
                    command: Some(command),
                }),
                &what,
            )
            .await?;
        Ok(out.other.into_iter().find_map(|r| match r {
            proto::execute_plan_response::ResponseType::StreamingQueryCommandResult(r) => Some(r),
            _ => None,
        }))
    }

    /// The query's failure as an error, if it failed.
    async fn raise_query_exception(
        &mut self,
        id: &proto::StreamingQueryInstanceId,
        step: &str,
    ) -> Result<(), StepError> {
        if let Some(Result_::Exception(e)) = self
            .query_command(id, Command::Exception(true), step)
            .await?
            .and_then(|r| r.result_type)
            && let Some(message) = e.exception_message
        {
            let first = message.lines().next().unwrap_or_default().to_string();
            return Err(StepError::external(format!(
                "the streaming query of step \"{step}\" failed: {first}"
            )));
        }
        Ok(())
    }

    /// Where a load's streaming checkpoint lives: under the pipeline's `streaming.checkpoint`
    /// location when set, else in the Delta table's own directory (`_pipectl_spark_checkpoint`,
    /// which Delta readers skip), so that it is as durable as the table.
    fn checkpoint(&self, plan: &Plan, step: &str, table: &str) -> String {
        match plan
            .streaming
            .as_ref()
            .and_then(|s| s.config.checkpoint.as_ref())
        {
            Some(c) => self.location(&format!(
                "{}/spark/{step}",
                c.location.trim_end_matches('/')
            )),
            None => format!(
                "{}/_pipectl_spark_checkpoint",
                self.location(table).trim_end_matches('/')
            ),
        }
    }
}

use proto::streaming_query_command::Command;
use proto::streaming_query_command_result::ResultType as Result_;

/// One line per progress report: rows, rates and the batch's duration.
fn log_progress(step: &str, json: &str) {
    let Ok(p) = serde_json::from_str::<serde_json::Value>(json) else {
        return;
    };
    let int = |at: &str| {
        p.pointer(at)
            .and_then(serde_json::Value::as_i64)
            .unwrap_or_default()
    };
    let rate = |at: &str| {
        p.pointer(at)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or_default() as u64
    };
    tracing::info!(
        step,
        batch = int("/batchId"),
        rows = int("/numInputRows"),
        input_rows_per_s = rate("/inputRowsPerSecond"),
        processed_rows_per_s = rate("/processedRowsPerSecond"),
        batch_ms = int("/durationMs/triggerExecution"),
        "micro-batch committed by spark"
    );
}
