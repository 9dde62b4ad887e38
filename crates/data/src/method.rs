//! Registry entries. Each entry wraps one associated function of ExtractMethods, LoadMethods or
//! UserMethods, together with what the chain builder needs to know without running it: its
//! kind, the formats it accepts and produces, whether it needs its whole input, which
//! connection systems it talks to, and its typed options (checked without I/O, and described
//! in `pipectl schema`).
//!
//! A new method is one function plus one line in a registry list, e.g.
//! `MethodEntry::transform("filter", "Keep rows matching a SQL condition", UserMethods::filter)`.

use crate::batch::Batch;
use crate::runtime::{Datasets, Metrics, Operator, RunContext, Runtime, Sink, Source, blocking};
use crate::validation::{Check, sample_rows};
use async_trait::async_trait;
use futures::future::BoxFuture;
use pipeline_base::{Format, OnFailure, StepError, StepKind};
use pipeline_config::ConnectionConfig;
use polars::prelude::*;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::future::Future;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;

/// Typed options of a method. `check` runs at validation time and must not do I/O.
pub trait MethodOptions: DeserializeOwned + JsonSchema + Send + Sync + 'static {
    fn check(&self) -> Result<(), OptionsError> {
        Ok(())
    }
}

/// A problem with a step's options, located relative to the `options` object.
#[derive(Debug, Clone, PartialEq)]
pub struct OptionsError {
    /// JSON Pointer inside `options`, e.g. `/condition`; empty for the object itself.
    pub pointer: String,
    pub message: String,
    pub hint: Option<String>,
}

impl OptionsError {
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        OptionsError {
            pointer: pointer.into(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// What format a method hands to the next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Produces {
    Format(Format),
    /// The same format it received (loads pass their input through).
    Input,
}

/// Whether a method talks to an external system through a named connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionUse {
    None,
    /// It may use one of these systems (local paths need none).
    Optional(&'static [&'static str]),
    /// It needs one of these systems.
    Required(&'static [&'static str]),
}

/// Everything a method needs to open a step, owned so that it can move into a task.
#[derive(Clone, Debug)]
pub struct StepSetup {
    pub pipeline: String,
    pub step: String,
    pub options: Value,
    /// The step's connection, by name.
    pub connection: Option<(String, ConnectionConfig)>,
    pub on_failure: OnFailure,
    /// Where invalid rows go with `on_failure: quarantine`.
    pub quarantine: Option<String>,
    /// Invalid fraction above which `filter`/`quarantine` fail the run.
    pub max_invalid_fraction: Option<f64>,
    /// The name of the step's main input (for methods that refer to inputs by name, like `sql`).
    pub main_input: Option<String>,
    /// Names of the step's inputs after the first (gathered whole).
    pub side_inputs: Vec<String>,
    /// The directory of the pipeline file, for relative paths.
    pub base_dir: PathBuf,
}

impl StepSetup {
    /// Deserializes the typed options (already checked by validation).
    pub fn options<O: DeserializeOwned>(&self) -> Result<O, StepError> {
        serde_json::from_value(self.options.clone())
            .map_err(|e| StepError::user(format!("step \"{}\": invalid options: {e}", self.step)))
    }

    /// A path from the options, relative paths taken from the pipeline file's directory.
    pub fn resolve_path(&self, path: &str) -> PathBuf {
        let p = PathBuf::from(path);
        if p.is_absolute() {
            p
        } else {
            self.base_dir.join(p)
        }
    }

    fn side_datasets(&self, cx: &RunContext) -> Result<Datasets, StepError> {
        self.side_inputs
            .iter()
            .map(|n| Ok((n.clone(), cx.dataset(n)?)))
            .collect()
    }
}

trait MethodImpl: Send + Sync {
    fn options_schema(&self, generator: &mut SchemaGenerator) -> Schema;
    fn check(&self, options: &Value) -> Vec<OptionsError>;
    fn open(&self, setup: StepSetup) -> BoxFuture<'static, Result<Runtime, StepError>>;
}

/// One method in the registry.
pub struct MethodEntry {
    pub name: &'static str,
    pub kind: StepKind,
    pub summary: &'static str,
    /// Formats the method accepts as its main input (empty for extracts).
    pub accepts: &'static [Format],
    pub produces: Produces,
    /// Whether it must see all its input before emitting anything.
    pub whole_input: bool,
    pub connection: ConnectionUse,
    /// How many other named datasets it reads besides its main input: (min, max).
    pub side_inputs: (usize, Option<usize>),
    imp: Box<dyn MethodImpl>,
}

impl std::fmt::Debug for MethodEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MethodEntry({} {})", self.kind, self.name)
    }
}

const DATAFRAME: &[Format] = &[Format::DataFrame];

impl MethodEntry {
    /// JSON Schema of the options object.
    pub fn options_schema(&self, generator: &mut SchemaGenerator) -> Schema {
        self.imp.options_schema(generator)
    }

    /// Checks options without I/O; every problem is returned.
    pub fn check_options(&self, options: &Value) -> Vec<OptionsError> {
        self.imp.check(options)
    }

    /// Opens the step for one run attempt.
    pub fn open(&self, setup: StepSetup) -> BoxFuture<'static, Result<Runtime, StepError>> {
        self.imp.open(setup)
    }

    /// An extract method: `f(options, setup)` opens a [`Source`].
    pub fn extract<O, Fut>(
        name: &'static str,
        summary: &'static str,
        connection: ConnectionUse,
        f: fn(O, StepSetup) -> Fut,
    ) -> Self
    where
        O: MethodOptions,
        Fut: Future<Output = Result<Box<dyn Source>, StepError>> + Send + 'static,
    {
        let open = move |setup: StepSetup| -> BoxFuture<'static, Result<Runtime, StepError>> {
            Box::pin(async move {
                let options: O = setup.options()?;
                Ok(Runtime::Source(f(options, setup).await?))
            })
        };
        Self::entry::<O>(
            name,
            StepKind::Extract,
            summary,
            &[],
            Produces::Format(Format::DataFrame),
            false,
            connection,
            Box::new(open),
        )
    }

    /// A load method: `f(options, setup)` opens a [`Sink`]; the step passes its input through.
    pub fn load<O, Fut>(
        name: &'static str,
        summary: &'static str,
        connection: ConnectionUse,
        f: fn(O, StepSetup) -> Fut,
    ) -> Self
    where
        O: MethodOptions,
        Fut: Future<Output = Result<Box<dyn Sink>, StepError>> + Send + 'static,
    {
        let open = move |setup: StepSetup| -> BoxFuture<'static, Result<Runtime, StepError>> {
            Box::pin(async move {
                let options: O = setup.options()?;
                let sink = f(options, setup).await?;
                Ok(Runtime::Operator(Box::new(SinkOperator { sink })))
            })
        };
        Self::entry::<O>(
            name,
            StepKind::Load,
            summary,
            DATAFRAME,
            Produces::Input,
            false,
            connection,
            Box::new(open),
        )
    }

    /// A row-wise transform: `f` maps each batch on its own, so memory stays bounded.
    pub fn transform<O: MethodOptions>(
        name: &'static str,
        summary: &'static str,
        f: fn(DataFrame, &O) -> Result<DataFrame, StepError>,
    ) -> Self {
        let open = move |setup: StepSetup| -> BoxFuture<'static, Result<Runtime, StepError>> {
            Box::pin(async move {
                let options: O = setup.options()?;
                Ok(Runtime::Operator(Box::new(RowWise {
                    f,
                    options: Arc::new(options),
                    step: setup.step,
                })))
            })
        };
        Self::entry::<O>(
            name,
            StepKind::Transform,
            summary,
            DATAFRAME,
            Produces::Format(Format::DataFrame),
            false,
            ConnectionUse::None,
            Box::new(open),
        )
    }

    /// A transform that needs its whole input (and any side inputs) at once.
    pub fn transform_whole<O: MethodOptions>(
        name: &'static str,
        summary: &'static str,
        side_inputs: (usize, Option<usize>),
        f: fn(DataFrame, &O, &Datasets) -> Result<DataFrame, StepError>,
    ) -> Self {
        let open = move |setup: StepSetup| -> BoxFuture<'static, Result<Runtime, StepError>> {
            Box::pin(async move {
                let options: O = setup.options()?;
                Ok(Runtime::Operator(Box::new(Whole {
                    f,
                    options: Arc::new(options),
                    setup,
                    gathered: None,
                })))
            })
        };
        let mut e = Self::entry::<O>(
            name,
            StepKind::Transform,
            summary,
            DATAFRAME,
            Produces::Format(Format::DataFrame),
            true,
            ConnectionUse::None,
            Box::new(open),
        );
        e.side_inputs = side_inputs;
        e
    }

    /// A validation rule. Row-level rules stream; `whole` rules (uniqueness, counts) and rules
    /// with side inputs gather their input first. Invalid rows are handled per `on_failure`.
    pub fn validation<O: MethodOptions>(
        name: &'static str,
        summary: &'static str,
        whole: bool,
        side_inputs: (usize, Option<usize>),
        f: fn(&DataFrame, &O, &Datasets) -> Result<Check, StepError>,
    ) -> Self {
        let open = move |setup: StepSetup| -> BoxFuture<'static, Result<Runtime, StepError>> {
            Box::pin(async move {
                let options: O = setup.options()?;
                let gather = whole || !setup.side_inputs.is_empty();
                Ok(Runtime::Operator(Box::new(Validate {
                    f,
                    options: Arc::new(options),
                    setup,
                    gather,
                    gathered: None,
                    counts: [0; 3],
                    quarantined: Vec::new(),
                })))
            })
        };
        let mut e = Self::entry::<O>(
            name,
            StepKind::Validate,
            summary,
            DATAFRAME,
            Produces::Format(Format::DataFrame),
            whole,
            ConnectionUse::None,
            Box::new(open),
        );
        e.side_inputs = side_inputs;
        e
    }

    /// A method with its own operator (format conversions and the like).
    pub fn operator<O: MethodOptions>(
        name: &'static str,
        kind: StepKind,
        summary: &'static str,
        accepts: &'static [Format],
        produces: Produces,
        f: fn(O, StepSetup) -> Result<Box<dyn Operator>, StepError>,
    ) -> Self {
        let open = move |setup: StepSetup| -> BoxFuture<'static, Result<Runtime, StepError>> {
            Box::pin(async move {
                let options: O = setup.options()?;
                Ok(Runtime::Operator(f(options, setup)?))
            })
        };
        Self::entry::<O>(
            name,
            kind,
            summary,
            accepts,
            produces,
            false,
            ConnectionUse::None,
            Box::new(open),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn entry<O: MethodOptions>(
        name: &'static str,
        kind: StepKind,
        summary: &'static str,
        accepts: &'static [Format],
        produces: Produces,
        whole_input: bool,
        connection: ConnectionUse,
        open: Box<
            dyn Fn(StepSetup) -> BoxFuture<'static, Result<Runtime, StepError>> + Send + Sync,
        >,
    ) -> Self {
        MethodEntry {
            name,
            kind,
            summary,
            accepts,
            produces,
            whole_input,
            connection,
            side_inputs: (0, Some(0)),
            imp: Box::new(Typed::<O> {
                open,
                _options: PhantomData,
            }),
        }
    }
}

type OpenFn =
    Box<dyn Fn(StepSetup) -> BoxFuture<'static, Result<Runtime, StepError>> + Send + Sync>;

struct Typed<O> {
    open: OpenFn,
    _options: PhantomData<fn() -> O>,
}

impl<O: MethodOptions> MethodImpl for Typed<O> {
    fn options_schema(&self, generator: &mut SchemaGenerator) -> Schema {
        generator.subschema_for::<O>()
    }

    fn check(&self, options: &Value) -> Vec<OptionsError> {
        let schema = schemars::schema_for!(O);
        let known: Vec<&str> = schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let denies_unknown = schema.get("additionalProperties") == Some(&Value::Bool(false));
        if denies_unknown && let Some(obj) = options.as_object() {
            let unknown = pipeline_config::check_known_keys(obj, &known, "options");
            if !unknown.is_empty() {
                return unknown
                    .into_iter()
                    .map(|(k, message, hint)| OptionsError {
                        pointer: pipeline_config::join_pointer("", &k),
                        message,
                        hint,
                    })
                    .collect();
            }
        }
        match serde_path_to_error::deserialize::<_, O>(options) {
            Ok(o) => o.check().err().into_iter().collect(),
            Err(e) => {
                let mut pointer = String::new();
                for segment in e.path().iter() {
                    use serde_path_to_error::Segment;
                    match segment {
                        Segment::Seq { index } => {
                            pointer = pipeline_config::join_pointer(&pointer, &index.to_string())
                        }
                        Segment::Map { key } | Segment::Enum { variant: key } => {
                            pointer = pipeline_config::join_pointer(&pointer, key)
                        }
                        Segment::Unknown => {}
                    }
                }
                vec![OptionsError::new(
                    pointer,
                    format!("invalid options: {}", e.into_inner()),
                )]
            }
        }
    }

    fn open(&self, setup: StepSetup) -> BoxFuture<'static, Result<Runtime, StepError>> {
        (self.open)(setup)
    }
}

fn with_step(step: &str) -> impl Fn(StepError) -> StepError + '_ {
    move |e| e.context(format!("step \"{step}\""))
}

struct RowWise<O> {
    f: fn(DataFrame, &O) -> Result<DataFrame, StepError>,
    options: Arc<O>,
    step: String,
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

struct Whole<O> {
    f: fn(DataFrame, &O, &Datasets) -> Result<DataFrame, StepError>,
    options: Arc<O>,
    setup: StepSetup,
    gathered: Option<DataFrame>,
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

struct Validate<O> {
    f: fn(&DataFrame, &O, &Datasets) -> Result<Check, StepError>,
    options: Arc<O>,
    setup: StepSetup,
    gather: bool,
    gathered: Option<DataFrame>,
    /// checked, passed, failed
    counts: [u64; 3],
    /// Invalid rows with their reason, for `on_failure: quarantine`.
    quarantined: Vec<DataFrame>,
}

/// The column naming the rule a quarantined row broke.
pub const REASON_COLUMN: &str = "_pipectl_reason";

impl<O: MethodOptions> Validate<O> {
    fn push_quarantine(&mut self, cx: &RunContext) {
        if let Some(name) = &self.setup.quarantine {
            for bad in self.quarantined.drain(..) {
                cx.store(name, Batch::Frame(bad));
            }
            cx.declare(name);
        }
    }

    async fn apply(&mut self, df: DataFrame, side: Datasets) -> Result<DataFrame, StepError> {
        let step = self.setup.step.clone();
        let (f, options) = (self.f, self.options.clone());
        let (df, check) = blocking(move || {
            let check = f(&df, &options, &side)?;
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
impl<O: MethodOptions> Operator for Validate<O> {
    async fn push(&mut self, batch: Batch, _cx: &RunContext) -> Result<Vec<Batch>, StepError> {
        if self.gather {
            gather(&mut self.gathered, batch, &self.setup.step)?;
            return Ok(Vec::new());
        }
        let out = self.apply(batch.into_frame()?, Datasets::new()).await?;
        Ok(vec![Batch::Frame(out)])
    }

    async fn finish(&mut self, cx: &RunContext) -> Result<Vec<Batch>, StepError> {
        let out = if self.gather {
            let mut input = self.gathered.take().unwrap_or_default();
            input.rechunk_mut();
            let side = self.setup.side_datasets(cx)?;
            vec![Batch::Frame(self.apply(input, side).await?)]
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
        self.push_quarantine(cx);
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

struct SinkOperator {
    sink: Box<dyn Sink>,
}

#[async_trait]
impl Operator for SinkOperator {
    async fn push(&mut self, batch: Batch, _cx: &RunContext) -> Result<Vec<Batch>, StepError> {
        let df = batch.clone().into_frame()?;
        self.sink.write(df).await?;
        Ok(vec![batch])
    }

    async fn finish(&mut self, _cx: &RunContext) -> Result<Vec<Batch>, StepError> {
        self.sink.prepare().await?;
        Ok(Vec::new())
    }

    async fn commit(&mut self) -> Result<(), StepError> {
        self.sink.commit().await
    }

    async fn abort(&mut self) {
        self.sink.abort().await
    }

    fn metrics(&self) -> Metrics {
        self.sink.metrics()
    }
}
