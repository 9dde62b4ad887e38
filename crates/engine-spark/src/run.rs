//! Running a plan on Spark: credentials fetched once, the session opened (retried while the
//! endpoint is unreachable, per the pipeline's retry policy), every step registered as a
//! temporary view, validations judged and counted, then the loads run in plan order.

use crate::client::SparkSession;
use crate::compile::{Op, Program, Query, compile};
use crate::expr::ident;
use crate::proto;
use crate::relations;
use crate::relations::{drop_columns, rename};
use crate::remote::Remote;
use crate::setup::connection_setups;
use pipeline_base::StepError;
use pipeline_core::Plan;
use pipeline_credentials::CredentialProvider;
use pipeline_data::ConnectionSetup;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `run` needs besides the plan.
pub struct SparkOptions {
    pub remote: Remote,
    pub credentials: Option<Arc<dyn CredentialProvider>>,
    /// Streaming pipelines: read what the topics hold now, then stop (`--once`).
    pub once: bool,
    /// Cancelling it stops a streaming run's queries cleanly (a signal).
    pub cancel: pipeline_core::CancelToken,
}

/// Rows a step produced or a validation judged, as Spark counted them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepCount {
    pub step: String,
    pub rows: Option<u64>,
    pub invalid: Option<u64>,
}

/// The outcome of a run on Spark.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SparkReport {
    pub pipeline: String,
    /// `sc://host:port` (never a token).
    pub remote: String,
    pub attempts: u32,
    pub steps: Vec<StepCount>,
    pub loads: Vec<String>,
    pub elapsed_seconds: f64,
}

/// Runs the plan on the Spark Connect endpoint.
pub async fn run(plan: &Plan, options: SparkOptions) -> Result<SparkReport, StepError> {
    let started = Instant::now();
    let programs = compile(plan).map_err(|refusals| {
        let lines: Vec<String> = refusals.iter().map(|r| format!("  {r}")).collect();
        StepError::user(format!(
            "the pipeline cannot run on Spark:\n{}",
            lines.join("\n")
        ))
        .with_hint("run it with the Polars engine (--engine polars), or change these steps")
    })?;
    let span = tracing::info_span!("run", pipeline = %plan.pipeline, engine = "spark", remote = %options.remote);
    use tracing::Instrument;
    attempts(plan, &programs, &options, started)
        .instrument(span)
        .await
}

/// The attempts of a run, retried while the failure is transient.
async fn attempts(
    plan: &Plan,
    programs: &[Program],
    options: &SparkOptions,
    started: Instant,
) -> Result<SparkReport, StepError> {
    let setups = connection_setups(plan, options.credentials.clone()).await?;
    let max_attempts = plan.retry.max_retries.saturating_add(1);
    let delay =
        Duration::try_from_secs_f64(plan.retry.delay_seconds.max(0.0)).unwrap_or(Duration::ZERO);
    let mut attempt = 0u32;
    loop {
        attempt = attempt.saturating_add(1);
        tracing::info!(attempt, max_attempts, "spark attempt started");
        match attempt_run(plan, programs, options, &setups).await {
            Ok((steps, loads)) => {
                let elapsed = started.elapsed().as_secs_f64();
                tracing::info!(
                    elapsed_s = elapsed,
                    loads = loads.len(),
                    "pipeline finished on spark"
                );
                return Ok(SparkReport {
                    pipeline: plan.pipeline.clone(),
                    remote: options.remote.to_string(),
                    attempts: attempt,
                    steps,
                    loads,
                    elapsed_seconds: elapsed,
                });
            }
            Err(e) if e.retryable() && attempt < max_attempts => {
                tracing::warn!(attempt, error = %e.message(), retry_in_s = delay.as_secs_f64(), "transient failure; retrying");
                tokio::time::sleep(delay).await;
            }
            Err(e) if e.retryable() => {
                return Err(StepError::transient(format!(
                    "{} (gave up after {attempt} attempts)",
                    e.message()
                ))
                .with_hint(
                    e.hint()
                        .unwrap_or("check the Spark Connect endpoint")
                        .to_string(),
                ));
            }
            Err(e) => return Err(e),
        }
    }
}

/// One attempt: a fresh session, every step, then the loads.
async fn attempt_run(
    plan: &Plan,
    programs: &[Program],
    options: &SparkOptions,
    setups: &HashMap<String, ConnectionSetup>,
) -> Result<(Vec<StepCount>, Vec<String>), StepError> {
    let session = SparkSession::connect(&options.remote).await?;
    let mut runner = Runner {
        session,
        setups: setups.clone(),
        base_dir: plan.base_dir.clone(),
        counts: Vec::new(),
        quarantine_parts: HashMap::new(),
        cached: Vec::new(),
        offsets: Vec::new(),
        streaming: plan.mode == pipeline_base::Mode::Streaming,
        max_records: plan.streaming.as_ref().map(|s| s.config.max_records),
        stream_source: plan.streaming.as_ref().map(|s| s.source.clone()),
        committed: Vec::new(),
    };
    let result = match runner.views(programs).await {
        Ok(()) if runner.streaming => {
            runner
                .stream(plan, programs, options.once, options.cancel.cancelled())
                .await
        }
        Ok(()) => runner.loads(programs).await,
        Err(e) => Err(e),
    };
    for view in std::mem::take(&mut runner.cached) {
        let _ = runner
            .session
            .command(
                relations::sql_command(format!("UNCACHE TABLE IF EXISTS {}", ident(&view))),
                "uncaching",
            )
            .await;
    }
    let counts = std::mem::take(&mut runner.counts);
    let committed = std::mem::take(&mut runner.committed);
    runner.session.close().await;
    result.map(|loads| (counts, loads)).map_err(|e| {
        if committed.is_empty() || !e.retryable() {
            return e;
        }
        // A retry would write the committed loads again: the run stops here, saying which.
        let hint = e.hint().map(str::to_string);
        let error = StepError::external(format!(
            "{} (after {} committed on Spark; not retried, which would write {} again)",
            e.message(),
            committed.join(", "),
            if committed.len() == 1 { "it" } else { "them" }
        ));
        match hint {
            Some(h) => error.with_hint(h),
            None => error,
        }
    })
}

/// The state of one attempt: the session, the connections, what was counted.
pub struct Runner {
    pub session: SparkSession,
    pub(crate) setups: HashMap<String, ConnectionSetup>,
    pub(crate) base_dir: PathBuf,
    pub counts: Vec<StepCount>,
    /// Views holding each quarantine dataset's rows so far.
    pub quarantine_parts: HashMap<String, Vec<String>>,
    /// Views cached for this run (uncached at its end).
    pub cached: Vec<String>,
    /// Kafka reads whose offsets are stored once every load has committed.
    pub offsets: Vec<pipeline_connectors::KafkaRanges>,
    /// A streaming run: sources are streams, validations are not counted first.
    pub streaming: bool,
    /// Streaming: records per micro-batch at most (`max_records`).
    pub max_records: Option<u64>,
    /// Streaming: the extract read as a stream (others are static side inputs).
    pub stream_source: Option<String>,
    /// Loads Spark committed in this attempt.
    pub committed: Vec<String>,
}

impl Runner {
    /// Every step but the loads as a temporary view (validations judged and counted).
    async fn views(&mut self, programs: &[Program]) -> Result<(), StepError> {
        use tracing::Instrument;
        self.session
            .set_config(&[
                ("spark.sql.session.timeZone", "UTC".to_string()),
                // Column names are case-sensitive in pipectl, as in Polars.
                ("spark.sql.caseSensitive", "true".to_string()),
                // A strict cast fails on a bad value, as in Polars; string literals read
                // backslash escapes (how expressions are printed).
                ("spark.sql.ansi.enabled", "true".to_string()),
                (
                    "spark.sql.parser.escapedStringLiterals",
                    "false".to_string(),
                ),
                // Parquet timestamps as pipectl writes them (Spark's default is INT96).
                (
                    "spark.sql.parquet.outputTimestampType",
                    "TIMESTAMP_MICROS".to_string(),
                ),
            ])
            .await?;
        for program in programs {
            let started = Instant::now();
            let span = tracing::info_span!("step", step = %program.step);
            let planned = async {
                match &program.op {
                    Op::Source(source) => self.source(&program.step, source).await,
                    Op::Query(query) => self.query(program, query).await,
                    Op::Validate(v) => self.validate(&program.step, v).await,
                    // A load passes its input on (a later step may read it by the load's name).
                    Op::Load(load) => {
                        let what = format!("step \"{}\"", program.step);
                        self.view(&program.step, relations::table(load.input()), &what)
                            .await
                    }
                }
            };
            planned.instrument(span.clone()).await?;
            if !matches!(program.op, Op::Load(_)) {
                tracing::info!(parent: &span, elapsed_ms = started.elapsed().as_millis() as u64, "step planned on spark");
            }
        }
        Ok(())
    }

    /// The loads in plan order, then the Kafka offsets they read up to.
    async fn loads(&mut self, programs: &[Program]) -> Result<Vec<String>, StepError> {
        use tracing::Instrument;
        let mut loads = Vec::new();
        for program in programs {
            if let Op::Load(load) = &program.op {
                let started = Instant::now();
                let span = tracing::info_span!("step", step = %program.step);
                let rows = self
                    .load(&program.step, load)
                    .instrument(span.clone())
                    .await?;
                let seconds = started.elapsed().as_secs_f64();
                match rows {
                    Some(rows) => tracing::info!(
                        parent: &span,
                        rows,
                        elapsed_s = seconds,
                        rows_per_sec = (rows as f64 / seconds.max(1e-9)) as u64,
                        "load committed by spark (rows as Spark counted them)"
                    ),
                    None => {
                        tracing::info!(parent: &span, elapsed_s = seconds, "load committed by spark")
                    }
                }
                self.counts.push(StepCount {
                    step: program.step.clone(),
                    rows,
                    invalid: None,
                });
                loads.push(program.step.clone());
                self.committed.push(program.step.clone());
            }
        }
        for read in &self.offsets {
            read.commit().await?;
            if let Some(store) = read.store() {
                tracing::info!(store = %store, "kafka offsets stored after the loads committed");
            }
        }
        Ok(loads)
    }

    async fn query(&mut self, program: &Program, query: &Query) -> Result<(), StepError> {
        let step = program.step.as_str();
        let what = format!("step \"{step}\"");
        // Spark ignores a missing column in drop and withColumnsRenamed; pipectl refuses it.
        let named: Vec<String> = match (program.method.as_str(), query) {
            ("drop", Query::Sql { drop, .. }) => drop.clone(),
            (_, Query::Rename { pairs, .. }) => {
                pairs.iter().map(|(from, _)| from.clone()).collect()
            }
            _ => Vec::new(),
        };
        if let (false, Some(input)) = (named.is_empty(), program.inputs.first()) {
            let have: Vec<String> =
                fields(&self.session.schema(relations::table(input), &what).await?)
                    .into_iter()
                    .map(|(n, _)| n)
                    .collect();
            if let Some(missing) = named.iter().find(|n| !have.contains(n)) {
                return Err(StepError::user(format!("{what}: no column \"{missing}\""))
                    .with_hint(format!("available columns: {}", have.join(", "))));
            }
        }
        let relation = match query {
            Query::Sql { query, drop, main } => {
                if let Some(main) = main {
                    // The `sql` method's main input is `self`, as in pipectl's Polars engine.
                    self.view("self", relations::table(main), &what).await?;
                }
                drop_columns(relations::sql(query.clone()), drop)
            }
            // One after the other, as pipectl's derive: a column may use the ones before it.
            Query::WithColumns { input, columns } => {
                columns.iter().fold(relations::table(input), |acc, column| {
                    relations::with_columns(acc, vec![column.clone()])
                })
            }
            Query::Rename { input, pairs } => rename(relations::table(input), pairs),
            Query::Join(spec) => {
                let left = fields(
                    &self
                        .session
                        .schema(relations::table(&spec.left), &what)
                        .await?,
                );
                let right = fields(
                    &self
                        .session
                        .schema(relations::table(&spec.right), &what)
                        .await?,
                );
                let names =
                    |f: Vec<(String, String)>| f.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
                relations::sql(
                    spec.query(&names(left), &names(right))
                        .map_err(|e| e.context(&what))?,
                )
            }
            Query::Union(inputs) => relations::union_by_name(inputs),
            Query::Same(input) => relations::table(input),
        };
        let relation = self.aligned(program, relation, &what).await?;
        self.view(step, relation, &what).await
    }

    /// The relation with its columns cast to the types pipectl's Polars engine gives this
    /// step (see `align`).
    async fn aligned(
        &mut self,
        program: &Program,
        relation: proto::Relation,
        what: &str,
    ) -> Result<proto::Relation, StepError> {
        if !matches!(program.method.as_str(), "derive" | "aggregate" | "sql") {
            return Ok(relation);
        }
        let mut frames = Vec::new();
        for input in &program.inputs {
            let fields = fields(&self.session.schema(relations::table(input), what).await?);
            frames.push((input.clone(), crate::align::empty_frame(&fields)?));
        }
        let mut frames = frames.into_iter();
        let Some((_, main)) = frames.next() else {
            return Ok(relation);
        };
        let side: pipeline_data::Datasets = frames.collect();
        let polars =
            match crate::align::polars_output(&program.method, &program.options, main, &side) {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(relation),
                Err(e) => {
                    tracing::debug!(error = %e.message(), "no Polars typing for this step");
                    return Ok(relation);
                }
            };
        let spark = fields(&self.session.schema(relation.clone(), what).await?);
        let casts = crate::align::casts(&spark, &polars);
        if casts.is_empty() {
            return Ok(relation);
        }
        tracing::debug!(
            columns = casts.len(),
            "types aligned with the Polars engine"
        );
        Ok(relations::with_columns(relation, casts))
    }

    /// Registers `relation` as the temporary view `name` (Spark analyzes it now: a missing
    /// column or a type error is reported for this step).
    pub async fn view(
        &mut self,
        name: &str,
        relation: proto::Relation,
        what: &str,
    ) -> Result<(), StepError> {
        self.session
            .command(relations::create_view(relation, name), what)
            .await?;
        Ok(())
    }

    /// Runs a query and returns its rows as strings (`None` for null).
    pub async fn collect_strings(
        &mut self,
        relation: proto::Relation,
        what: &str,
    ) -> Result<Vec<Vec<Option<String>>>, StepError> {
        use arrow::util::display::{ArrayFormatter, FormatOptions};
        let execution = self.session.collect(relation, what).await?;
        let mut rows = Vec::new();
        let options = FormatOptions::default();
        for batch in &execution.batches {
            let formatters = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    StepError::external(format!("reading Spark's answer for {what}: {e}"))
                })?;
            for row in 0..batch.num_rows() {
                let mut values = Vec::new();
                for (column, formatter) in batch.columns().iter().zip(&formatters) {
                    values.push(if column.is_null(row) {
                        None
                    } else {
                        Some(formatter.value(row).to_string())
                    });
                }
                rows.push(values);
            }
        }
        Ok(rows)
    }
}

/// `(name, simple type string)` of a Spark schema's top-level fields.
pub fn fields(schema: &proto::DataType) -> Vec<(String, String)> {
    use proto::data_type::Kind;
    let Some(Kind::Struct(s)) = &schema.kind else {
        return Vec::new();
    };
    s.fields
        .iter()
        .map(|f| {
            (
                f.name.clone(),
                f.data_type.as_ref().map(type_name).unwrap_or_default(),
            )
        })
        .collect()
}

/// A Spark type's short name (`decimal(10,2)`, `string`, `timestamp_ntz`, ...).
pub fn type_name(t: &proto::DataType) -> String {
    use proto::data_type::Kind;
    match &t.kind {
        Some(Kind::Boolean(_)) => "boolean".into(),
        Some(Kind::Byte(_)) => "tinyint".into(),
        Some(Kind::Short(_)) => "smallint".into(),
        Some(Kind::Integer(_)) => "int".into(),
        Some(Kind::Long(_)) => "bigint".into(),
        Some(Kind::Float(_)) => "float".into(),
        Some(Kind::Double(_)) => "double".into(),
        Some(Kind::Decimal(d)) => format!(
            "decimal({},{})",
            d.precision.unwrap_or(10),
            d.scale.unwrap_or(0)
        ),
        Some(Kind::String(_)) => "string".into(),
        Some(Kind::Binary(_)) => "binary".into(),
        Some(Kind::Date(_)) => "date".into(),
        Some(Kind::Timestamp(_)) => "timestamp".into(),
        Some(Kind::TimestampNtz(_)) => "timestamp_ntz".into(),
        Some(other) => format!("{other:?}")
            .split('(')
            .next()
            .unwrap_or_default()
            .to_lowercase(),
        None => "unknown".into(),
    }
}
