//! Registry entries. Each entry wraps one associated function of ExtractMethods, LoadMethods or
//! UserMethods, together with what the chain builder needs to know without running it: its
//! kind, the formats it accepts and produces, whether it needs its whole input, which
//! connection systems it talks to, and its typed options (checked without I/O, and described
//! in `pipectl schema`).
//!
//! A new method is one function plus one line in a registry list, e.g.
//! `MethodEntry::transform("filter", "Keep rows matching a SQL condition", UserMethods::filter)`.

use crate::incremental::{Gathers, OpenIncremental, Streamed};
use crate::needs::Needs;
use crate::operators::{RowWise, SinkOperator, Whole};
use crate::runtime::{Datasets, Operator, RunContext, Runtime, Sink, Source};
use crate::system::ConnectionSetup;
use futures::future::BoxFuture;
use pipeline_base::{Format, OnFailure, StepError, StepKind};
use pipeline_config::ConnectionConfig;
use pipeline_credentials::SecretFields;
use polars::prelude::*;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
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
    /// The run's id: the same for every attempt, and for a run resumed with
    /// `pipectl run --resume`. Loads record it with each commit so that a resumed run never
    /// publishes a step twice.
    pub run_id: String,
    /// The run resumes an earlier one (`--resume`): loads look for their earlier commit.
    pub resumed: bool,
    pub options: Value,
    /// The step's connection, by name.
    pub connection: Option<(String, ConnectionConfig)>,
    /// The connection's fields read from Vault (once per run), when it has `credentials`.
    pub credentials: Option<Arc<SecretFields>>,
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
    /// Other connections the options name (`"connection": "NAME"` anywhere inside them, e.g. a
    /// Kafka extract's `"offsets": {"store": "s3://...", "connection": "lake"}`), with their
    /// credentials.
    pub other_connections: BTreeMap<String, ConnectionSetup>,
    /// In `"mode": "streaming"`: the stream's cursor, shared by the source and the loads of
    /// every micro-batch (`None` in a batch run).
    pub stream: Option<Arc<crate::stream::StreamCursor>>,
    /// For an extract: the columns later steps read (`None`: all). It may leave out the others
    /// (a Parquet file's other column chunks are never fetched).
    pub columns: Option<Vec<String>>,
    /// The side inputs are complete when the first batch of the main input arrives. When they
    /// are not (produced in the step's own chain), the step gathers its main input first.
    pub side_inputs_ready: bool,
    /// Bytes of input the step may hold before it spills to local disk (`memory_limit_mb`).
    pub memory_limit: u64,
}

impl StepSetup {
    /// A step without a connection, options or inputs whose relative paths start at
    /// `base_dir` (for embedders and tests; the executor fills every field itself).
    pub fn bare(pipeline: &str, step: &str, base_dir: PathBuf) -> Self {
        StepSetup {
            pipeline: pipeline.into(),
            step: step.into(),
            run_id: String::new(),
            resumed: false,
            options: Value::Null,
            connection: None,
            credentials: None,
            on_failure: OnFailure::Fail,
            quarantine: None,
            max_invalid_fraction: None,
            main_input: None,
            side_inputs: Vec::new(),
            base_dir,
            other_connections: BTreeMap::new(),
            stream: None,
            columns: None,
            side_inputs_ready: true,
            memory_limit: crate::spill::default_memory_limit(),
        }
    }

    /// A connection the options name (checked to exist when the pipeline was planned).
    pub fn other_connection(&self, name: &str) -> Result<ConnectionSetup, StepError> {
        self.other_connections.get(name).cloned().ok_or_else(|| {
            StepError::user(format!(
                "step \"{}\": connection \"{name}\" is not defined",
                self.step
            ))
            .with_hint("define it under \"connections\"")
        })
    }

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

    /// The step's connection with its credentials, or an error naming the step.
    pub fn connection_setup(&self) -> Result<crate::ConnectionSetup, StepError> {
        let (name, config) = self
            .connection
            .clone()
            .ok_or_else(|| StepError::user(format!("step \"{}\" needs a connection", self.step)))?;
        Ok(crate::ConnectionSetup {
            name,
            config,
            credentials: self.credentials.clone(),
            base_dir: self.base_dir.clone(),
            uses: Vec::new(),
        })
    }

    pub(crate) fn side_datasets(&self, cx: &RunContext) -> Result<Datasets, StepError> {
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
    /// What it holds in memory while its input goes through (see [`MethodEntry::gathers_for`]).
    pub gathers: Gathers,
    gathers_of: Option<GathersOf>,
    needs_of: Option<NeedsOf>,
    /// The options' Rust type, to catch a `with_needs` given another method's function.
    options_type: std::any::TypeId,
    pub connection: ConnectionUse,
    /// How many other named datasets it reads besides its main input: (min, max).
    pub side_inputs: (usize, Option<usize>),
    /// What it does in `"mode": "streaming"`.
    pub streaming: Streaming,
    imp: Box<dyn MethodImpl>,
}

/// What a method does in `"mode": "streaming"` (set with [`MethodEntry::with_streaming`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streaming {
    /// An extract that reads continuously and can head a stream (Kafka).
    Source,
    /// An extract read to its end: in a stream only a side input, read again every
    /// `side_input_refresh`.
    Bounded,
    /// A transform or validation: runs on each micro-batch on its own (whole-input methods see
    /// one micro-batch at a time).
    PerMicroBatch,
    /// Refused in streaming, with the reason.
    Refused(&'static str),
    /// A load that commits each micro-batch together with its offsets: exactly-once.
    ExactlyOnce,
    /// A load that may write a micro-batch again after a crash: at-least-once.
    AtLeastOnce,
}

impl std::fmt::Debug for MethodEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MethodEntry({} {})", self.kind, self.name)
    }
}

pub(crate) const DATAFRAME: &[Format] = &[Format::DataFrame];

/// Reads only its main input.
const NO_SIDE_INPUTS: (usize, Option<usize>) = (0, Some(0));

impl MethodEntry {
    /// Says what the method does in a stream (the default: extracts are bounded, loads
    /// at-least-once, other methods run per micro-batch).
    pub fn with_streaming(mut self, streaming: Streaming) -> Self {
        self.streaming = streaming;
        self
    }

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
            NO_SIDE_INPUTS,
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
                Ok(Runtime::Operator(Box::new(SinkOperator::new(sink))))
            })
        };
        Self::entry::<O>(
            name,
            StepKind::Load,
            summary,
            DATAFRAME,
            Produces::Input,
            false,
            NO_SIDE_INPUTS,
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
            NO_SIDE_INPUTS,
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
        Self::entry::<O>(
            name,
            StepKind::Transform,
            summary,
            DATAFRAME,
            Produces::Format(Format::DataFrame),
            true,
            side_inputs,
            ConnectionUse::None,
            Box::new(open),
        )
    }

    /// A transform that needs more than one batch but not its whole main input: `open` makes
    /// its state from the options and the side inputs (gathered once), then each batch of the
    /// main input goes through it (see [`crate::incremental`]). `gathers` says what the state
    /// holds with given options, for `plan`.
    pub fn transform_incremental<O: MethodOptions>(
        name: &'static str,
        summary: &'static str,
        side_inputs: (usize, Option<usize>),
        gathers: fn(&O) -> Gathers,
        open: OpenIncremental<O>,
    ) -> Self {
        let open_step = move |setup: StepSetup| -> BoxFuture<'static, Result<Runtime, StepError>> {
            Box::pin(async move {
                let options: O = setup.options()?;
                Ok(Runtime::Operator(Box::new(Streamed {
                    open,
                    options: Arc::new(options),
                    setup,
                    state: None,
                    pushed: false,
                    held: None,
                    spilled_bytes: 0,
                })))
            })
        };
        let mut entry = Self::entry::<O>(
            name,
            StepKind::Transform,
            summary,
            DATAFRAME,
            Produces::Format(Format::DataFrame),
            true,
            side_inputs,
            ConnectionUse::None,
            Box::new(open_step),
        );
        entry.gathers = Gathers::SideInputs;
        entry.gathers_of = Some(Box::new(move |options: &Value| {
            serde_json::from_value::<O>(options.clone())
                .ok()
                .map(|o| gathers(&o))
        }));
        entry
    }

    /// Says which columns of its inputs the method reads (main input first, then the side
    /// inputs), given the columns needed of its output: the executor drops the others before
    /// the step (see [`crate::needs`]). `O` must be the method's options type.
    pub fn with_needs<O: MethodOptions>(mut self, f: fn(&O, &Needs, usize) -> Vec<Needs>) -> Self {
        debug_assert_eq!(
            self.options_type,
            std::any::TypeId::of::<O>(),
            "with_needs on \"{}\" takes another method's options",
            self.name
        );
        self.needs_of = Some(Box::new(move |options: &Value, output: &Needs, inputs| {
            serde_json::from_value::<O>(options.clone())
                .ok()
                .map(|o| f(&o, output, inputs))
        }));
        self
    }

    /// The columns needed of each of `inputs` inputs (all of them unless the method says).
    pub fn input_needs(&self, options: &Value, output: &Needs, inputs: usize) -> Vec<Needs> {
        let mut needs = self
            .needs_of
            .as_ref()
            .and_then(|f| f(options, output, inputs))
            .unwrap_or_default();
        needs.resize(inputs, None);
        needs
    }

    /// What the method holds in memory with these options.
    pub fn gathers_for(&self, options: &Value) -> Gathers {
        self.gathers_of
            .as_ref()
            .and_then(|f| f(options))
            .unwrap_or(self.gathers)
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
            NO_SIDE_INPUTS,
            ConnectionUse::None,
            Box::new(open),
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn entry<O: MethodOptions>(
        name: &'static str,
        kind: StepKind,
        summary: &'static str,
        accepts: &'static [Format],
        produces: Produces,
        whole_input: bool,
        side_inputs: (usize, Option<usize>),
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
            gathers: if whole_input {
                Gathers::Everything
            } else if side_inputs.0 > 0 {
                Gathers::SideInputs
            } else {
                Gathers::Nothing
            },
            gathers_of: None,
            needs_of: None,
            options_type: std::any::TypeId::of::<O>(),
            connection,
            side_inputs,
            streaming: match kind {
                StepKind::Extract => Streaming::Bounded,
                StepKind::Load => Streaming::AtLeastOnce,
                _ => Streaming::PerMicroBatch,
            },
            imp: Box::new(Typed::<O> {
                open,
                _options: PhantomData,
            }),
        }
    }
}

/// The columns of each input a method needs, given its options and the columns needed of its
/// output (`None` when the options do not parse).
type NeedsOf = Box<dyn Fn(&Value, &Needs, usize) -> Option<Vec<Needs>> + Send + Sync>;

/// What a method holds for given options (`None` when they do not parse).
type GathersOf = Box<dyn Fn(&Value) -> Option<Gathers> + Send + Sync>;

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
