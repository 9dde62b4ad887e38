//! Building the plan: everything that can be checked without I/O. Method names, options,
//! connections, inputs and the formats between neighbouring steps are checked here, and every
//! problem is reported with its file, JSON path and line:column.

use crate::registry::Registry;
use pipeline_base::{Format, Mode, OnFailure, StepKind};
use pipeline_config::{
    ConfigError, ConfigErrors, ConnectionConfig, LoadedPipeline, RetryConfig, join_pointer, suggest,
};
use pipeline_data::{ConnectionUse, MethodEntry, Produces};
use serde::Serialize;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

/// One step, resolved and checked.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    pub name: String,
    pub kind: StepKind,
    pub method: String,
    /// Inputs by step name; the first is the main input.
    pub inputs: Vec<String>,
    /// Format of the main input as it arrives (before any conversion).
    pub input_format: Option<Format>,
    /// A conversion inserted before the method (`auto_convert`).
    pub auto_convert_to: Option<Format>,
    pub output_format: Format,
    pub whole_input: bool,
    /// What the step holds in memory while its input goes through, e.g. `streams its main
    /// input; reads customers whole` (`None` for steps that take one batch at a time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// The columns of its main input the step reads, the others dropped before it (`None`:
    /// all); see `plan_columns`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    /// The columns of `columns` the method itself reads: when one is missing from a batch,
    /// nothing is dropped, so that the method's error lists every column.
    #[serde(skip)]
    pub required: Vec<String>,
    /// The columns later steps read of this step's output when it is kept as a dataset.
    #[serde(skip)]
    pub keep_columns: Option<Vec<String>>,
    /// Its side inputs are complete when its first batch arrives (see `plan_segments`).
    #[serde(skip)]
    pub side_ready: bool,
    pub connection: Option<String>,
    #[serde(skip)]
    pub connection_config: Option<ConnectionConfig>,
    /// Connections named inside the options (`"connection": "NAME"` at any depth).
    #[serde(skip)]
    pub other_connections: Vec<(String, ConnectionConfig)>,
    pub on_failure: Option<OnFailure>,
    /// The dataset invalid rows go to (`on_failure: quarantine`).
    pub quarantine: Option<String>,
    pub max_invalid_fraction: Option<f64>,
    #[serde(skip)]
    pub options: Value,
}

/// The checked chain of a pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub pipeline: String,
    pub mode: Mode,
    /// How the pipeline streams (`"mode": "streaming"` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streaming: Option<crate::plan_stream::StreamPlan>,
    pub retry: RetryConfig,
    pub steps: Vec<PlannedStep>,
    /// Connections by name with their system and Vault path (never a secret).
    pub connections: Vec<(String, String, Option<String>)>,
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// Bytes a step needing its whole input may hold before it spills (`memory_limit_mb`).
    pub memory_limit: u64,
}

/// `(JSON pointer of the object, name)` of every `"connection": "NAME"` inside `options`.
fn nested_connections(options: &serde_json::Map<String, Value>, at: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (key, value) in options {
        match value {
            Value::String(name) if key == "connection" => out.push((at.to_string(), name.clone())),
            Value::Object(inner) => {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                out.extend(nested_connections(inner, &format!("{at}/{escaped}")));
            }
            _ => {}
        }
    }
    out
}

fn step_pointer(i: usize, field: &str) -> String {
    let base = format!("/steps/{i}");
    if field.is_empty() {
        base
    } else {
        join_pointer(&base, field)
    }
}

fn accepts_text(accepts: &[Format]) -> String {
    accepts
        .iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The longest wait between attempts (a day).
const MAX_DELAY_SECONDS: f64 = 86_400.0;
/// The most retries a run may ask for.
const MAX_RETRIES: u32 = 1_000;

/// Checks a loaded pipeline against the registry and builds its plan.
pub fn build_plan(loaded: &LoadedPipeline, registry: &Registry) -> Result<Plan, ConfigErrors> {
    let config = &loaded.config;
    let mut errors = ConfigErrors::default();
    let err = |pointer: &str, message: String| loaded.error_at(pointer, message);

    if config.steps.is_empty() {
        errors.push(err("/steps", "the pipeline has no steps".into()));
    }
    if config.memory_limit_mb.is_some_and(|mb| mb < 16) {
        errors.push(err(
            "/memory_limit_mb",
            "memory_limit_mb must be at least 16".into(),
        ));
    }
    if !config.retry.delay_seconds.is_finite()
        || !(0.0..=MAX_DELAY_SECONDS).contains(&config.retry.delay_seconds)
    {
        errors.push(
            err(
                "/retry/delay_seconds",
                format!(
                    "delay_seconds must be between 0 and {MAX_DELAY_SECONDS} (a day), not {}",
                    config.retry.delay_seconds
                ),
            )
            .with_hint("a retry further off than a day is better left to a scheduler"),
        );
    }
    if config.retry.max_retries > MAX_RETRIES {
        errors.push(err(
            "/retry/max_retries",
            format!(
                "max_retries must be at most {MAX_RETRIES}, not {}",
                config.retry.max_retries
            ),
        ));
    }

    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut formats: HashMap<String, Format> = HashMap::new();
    let mut steps = Vec::with_capacity(config.steps.len());
    let mut previous: Option<&str> = None;

    for (i, step) in config.steps.iter().enumerate() {
        if let Some(first) = seen.insert(step.name.clone(), i) {
            errors.push(err(
                &step_pointer(i, "name"),
                format!(
                    "step name \"{}\" is already used by step {}",
                    step.name,
                    first + 1
                ),
            ));
        }
        if step.name.trim().is_empty() {
            errors.push(err(
                &step_pointer(i, "name"),
                "a step name must not be empty".into(),
            ));
        }

        let entry = match registry.get(step.kind, &step.method) {
            Some(e) => Some(e),
            None => {
                errors.push(unknown_method(loaded, registry, i, step.kind, &step.method));
                None
            }
        };

        // Inputs: explicit, or the previous step.
        let inputs: Vec<String> = match (&step.inputs, step.kind) {
            (Some(inputs), StepKind::Extract) if !inputs.is_empty() => {
                errors.push(err(
                    &step_pointer(i, "inputs"),
                    "an extract step reads from its source and takes no inputs".into(),
                ));
                Vec::new()
            }
            (_, StepKind::Extract) => Vec::new(),
            (Some(inputs), _) if !inputs.is_empty() => inputs.clone(),
            (_, _) => match previous {
                Some(p) => vec![p.to_string()],
                None => {
                    errors.push(
                        err(&step_pointer(i, ""), format!("step \"{}\" has no input: it is the first step and not an extract", step.name))
                            .with_hint("start the pipeline with an extract step, or name earlier steps in \"inputs\""),
                    );
                    Vec::new()
                }
            },
        };
        for (j, input) in inputs.iter().enumerate() {
            if !seen.contains_key(input.as_str()) || input == &step.name {
                let known: Vec<&str> = config.steps[..i].iter().map(|s| s.name.as_str()).collect();
                let hint = suggest(input, known.iter().copied())
                    .map(|s| format!("did you mean \"{s}\"?"))
                    .unwrap_or_else(|| format!("earlier steps: {}", known.join(", ")));
                errors.push(
                    err(
                        &format!("{}/{j}", step_pointer(i, "inputs")),
                        format!("input \"{input}\" is not an earlier step"),
                    )
                    .with_hint(hint),
                );
            }
        }

        // Connection.
        let connection_config = match (&step.connection, entry.map(|e| e.connection)) {
            (Some(name), entry_use) => match config.connections.get(name) {
                None => {
                    let hint = suggest(name, config.connections.keys().map(String::as_str))
                        .map(|s| format!("did you mean \"{s}\"?"))
                        .unwrap_or_else(|| "define it under \"connections\"".into());
                    errors.push(
                        err(
                            &step_pointer(i, "connection"),
                            format!("unknown connection \"{name}\""),
                        )
                        .with_hint(hint),
                    );
                    None
                }
                Some(c) => {
                    match entry_use {
                        Some(ConnectionUse::None) => errors.push(err(
                            &step_pointer(i, "connection"),
                            format!("method \"{}\" does not use a connection", step.method),
                        )),
                        Some(ConnectionUse::Optional(systems) | ConnectionUse::Required(systems))
                            if !systems.contains(&c.system.as_str()) =>
                        {
                            errors.push(err(
                                &step_pointer(i, "connection"),
                                format!(
                                    "connection \"{name}\" is a {} connection but method \"{}\" needs {}",
                                    c.system,
                                    step.method,
                                    systems.join(" or ")
                                ),
                            ))
                        }
                        _ => {}
                    }
                    Some(c.clone())
                }
            },
            (None, Some(ConnectionUse::Required(systems))) => {
                errors.push(err(
                    &step_pointer(i, ""),
                    format!(
                        "method \"{}\" needs a connection ({})",
                        step.method,
                        systems.join(" or ")
                    ),
                ));
                None
            }
            (None, _) => None,
        };

        // Connections named inside the options (e.g. an offsets store on S3).
        let mut other_connections = Vec::new();
        let options = crate::plan_stream::with_checkpoint(loaded, step, entry, &mut errors);
        for (pointer, name) in nested_connections(&options, "") {
            match config.connections.get(&name) {
                Some(c) => other_connections.push((name, c.clone())),
                None => {
                    let hint = suggest(&name, config.connections.keys().map(String::as_str))
                        .map(|s| format!("did you mean \"{s}\"?"))
                        .unwrap_or_else(|| "define it under \"connections\"".into());
                    errors.push(
                        err(
                            &format!("{}{pointer}/connection", step_pointer(i, "options")),
                            format!("unknown connection \"{name}\""),
                        )
                        .with_hint(hint),
                    );
                }
            }
        }

        if step.on_failure.is_some() && step.kind != StepKind::Validate {
            errors.push(err(
                &step_pointer(i, "on_failure"),
                "\"on_failure\" applies to validate steps only".into(),
            ));
        }
        let quarantine = match (step.on_failure, &step.quarantine) {
            (Some(OnFailure::Quarantine), name) => {
                let name = name
                    .clone()
                    .unwrap_or_else(|| format!("{}_quarantine", step.name));
                if seen.contains_key(name.as_str()) || name == step.name {
                    errors.push(err(
                        &step_pointer(i, "quarantine"),
                        format!("dataset name \"{name}\" is already used"),
                    ));
                }
                Some(name)
            }
            (_, Some(_)) => {
                errors.push(err(
                    &step_pointer(i, "quarantine"),
                    "\"quarantine\" needs \"on_failure\": \"quarantine\"".into(),
                ));
                None
            }
            _ => None,
        };
        if let Some(f) = step.max_invalid_fraction {
            if !(0.0..=1.0).contains(&f) {
                errors.push(err(
                    &step_pointer(i, "max_invalid_fraction"),
                    "max_invalid_fraction must be between 0 and 1".into(),
                ));
            }
            if !matches!(
                step.on_failure,
                Some(OnFailure::Filter | OnFailure::Quarantine)
            ) {
                errors.push(err(
                    &step_pointer(i, "max_invalid_fraction"),
                    "max_invalid_fraction applies with \"on_failure\": \"filter\" or \"quarantine\"".into(),
                ));
            }
        }

        let mut planned = PlannedStep {
            name: step.name.clone(),
            kind: step.kind,
            method: step.method.clone(),
            inputs,
            input_format: None,
            auto_convert_to: None,
            output_format: Format::DataFrame,
            whole_input: false,
            memory: None,
            columns: None,
            required: Vec::new(),
            keep_columns: None,
            side_ready: true,
            connection: step.connection.clone(),
            connection_config,
            other_connections,
            on_failure: step.on_failure,
            quarantine,
            max_invalid_fraction: step.max_invalid_fraction,
            options: Value::Object(options),
        };

        if let Some(entry) = entry {
            for problem in entry.check_options(&planned.options) {
                let pointer = format!("{}{}", step_pointer(i, "options"), problem.pointer);
                errors.push(
                    ConfigError::new(
                        Some(loaded.locator.locate(&pointer)),
                        format!("step \"{}\": {}", step.name, problem.message),
                    )
                    .with_hint_opt(problem.hint),
                );
            }
            let side = planned.inputs.len().saturating_sub(1);
            let (min, max) = entry.side_inputs;
            if step.kind != StepKind::Extract && (side < min || max.is_some_and(|m| side > m)) {
                let wanted = match (min, max) {
                    (0, Some(0)) => "one input".to_string(),
                    (a, Some(b)) if a == b => {
                        format!("{} inputs (\"inputs\": [main, other])", a + 1)
                    }
                    (a, None) => format!("at least {} inputs", a + 1),
                    (a, Some(b)) => format!("{} to {} inputs", a + 1, b + 1),
                };
                let n = planned.inputs.len();
                errors.push(err(
                    &step_pointer(i, "inputs"),
                    format!(
                        "method \"{}\" reads {wanted} but {n} {} named",
                        step.method,
                        if n == 1 { "is" } else { "are" }
                    ),
                ));
            }
            check_formats(
                loaded,
                config.auto_convert,
                i,
                entry,
                &mut planned,
                &formats,
                &mut errors,
            );
            planned.whole_input = entry.whole_input || planned.inputs.len() > 1;
            planned.memory = entry
                .gathers_for(&planned.options)
                .describe(planned.inputs.get(1..).unwrap_or_default());
        }
        formats.insert(step.name.clone(), planned.output_format);
        if let Some(q) = &planned.quarantine {
            seen.insert(q.clone(), i);
            formats.insert(q.clone(), Format::DataFrame);
        }
        previous = Some(&step.name);
        steps.push(planned);
    }

    crate::plan_columns::prune(&mut steps, registry);
    crate::plan_segments::mark_side_inputs(&mut steps);
    let connections = config
        .connections
        .iter()
        .map(|(name, c)| {
            (
                name.clone(),
                c.system.clone(),
                c.credentials.as_ref().map(|r| r.vault_path.clone()),
            )
        })
        .collect();
    let base_dir = loaded
        .path
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_default();
    let streaming = if config.mode == Mode::Streaming && !steps.is_empty() {
        crate::plan_stream::check(loaded, registry, &steps, &mut errors)
    } else {
        None
    };
    errors.into_result(Plan {
        pipeline: config.name.clone(),
        mode: config.mode,
        streaming,
        retry: config.retry.clone(),
        steps,
        connections,
        base_dir,
        memory_limit: config
            .memory_limit_mb
            .map(|mb| mb.saturating_mul(1 << 20))
            .unwrap_or_else(pipeline_data::spill::default_memory_limit),
    })
}

fn unknown_method(
    loaded: &LoadedPipeline,
    registry: &Registry,
    i: usize,
    kind: StepKind,
    method: &str,
) -> ConfigError {
    let names = registry.names(kind);
    let other_kinds = registry.kinds_of(method);
    let hint = if let Some(k) = other_kinds.first() {
        format!("\"{method}\" is a {k} method: set \"kind\": \"{k}\"")
    } else if let Some(s) = suggest(method, names.iter().copied()) {
        format!("did you mean \"{s}\"? {kind} methods: {}", names.join(", "))
    } else {
        format!("{kind} methods: {}", names.join(", "))
    };
    loaded
        .error_at(
            &step_pointer(i, "method"),
            format!("unknown {kind} method \"{method}\""),
        )
        .with_hint(hint)
}

#[allow(clippy::too_many_arguments)]
fn check_formats(
    loaded: &LoadedPipeline,
    auto_convert: bool,
    i: usize,
    entry: &MethodEntry,
    planned: &mut PlannedStep,
    formats: &HashMap<String, Format>,
    errors: &mut ConfigErrors,
) {
    let input = planned
        .inputs
        .first()
        .and_then(|n| formats.get(n.as_str()).copied());
    planned.input_format = input;
    let mut effective = input;
    if let Some(format) = input
        && !entry.accepts.is_empty()
        && !entry.accepts.contains(&format)
    {
        let target = entry.accepts[0];
        if auto_convert {
            planned.auto_convert_to = Some(target);
            effective = Some(target);
        } else {
            let conversion = if target == Format::DataFrame {
                "to_dataframe"
            } else {
                "to_avro"
            };
            errors.push(
                    loaded
                        .error_at(
                            &step_pointer(i, "method"),
                            format!(
                                "step \"{}\" ({}) accepts {} but its input \"{}\" produces {}",
                                planned.name,
                                entry.name,
                                accepts_text(entry.accepts),
                                planned.inputs[0],
                                format
                            ),
                        )
                        .with_hint(format!(
                            "add a step {{\"kind\": \"transform\", \"method\": \"{conversion}\"}} before it, or set \"auto_convert\": true"
                        )),
                );
        }
    }
    for side in planned.inputs.iter().skip(1) {
        if formats.get(side) == Some(&Format::Avro) && !auto_convert {
            errors.push(loaded.error_at(
                &step_pointer(i, "inputs"),
                format!("side input \"{side}\" produces Avro; side inputs are read as DataFrames"),
            ).with_hint("convert it with to_dataframe first, or set \"auto_convert\": true"));
        }
    }
    planned.output_format = match entry.produces {
        Produces::Format(f) => f,
        Produces::Input => effective.unwrap_or(Format::DataFrame),
    };
}

impl Plan {
    /// Names of steps whose output must be kept for later steps (read other than by the step
    /// right after them as its main input).
    pub fn kept_datasets(&self) -> HashSet<String> {
        let mut keep = HashSet::new();
        for (i, step) in self.steps.iter().enumerate() {
            for (j, input) in step.inputs.iter().enumerate() {
                let chained = j == 0 && i > 0 && self.steps[i - 1].name == *input;
                if !chained {
                    keep.insert(input.clone());
                }
            }
        }
        keep
    }

    /// How many times each kept dataset is read: once by each step reading it other than
    /// as the step right before it (see [`RunContext::with_readers`]).
    ///
    /// [`RunContext::with_readers`]: pipeline_data::RunContext::with_readers
    pub fn dataset_readers(&self) -> HashMap<String, usize> {
        let mut readers: HashMap<String, usize> = HashMap::new();
        for (i, step) in self.steps.iter().enumerate() {
            for (j, input) in step.inputs.iter().enumerate() {
                let chained = j == 0 && i > 0 && self.steps[i - 1].name == *input;
                if !chained {
                    let n = readers.entry(input.clone()).or_default();
                    *n = n.saturating_add(1);
                }
            }
        }
        readers
    }

    /// Kept datasets that no step reads as a side input: later steps read them batch by
    /// batch, so they may wait on disk (see `pipeline_data::spill`).
    pub fn streamed_datasets(&self) -> HashSet<String> {
        let side: HashSet<&String> = self
            .steps
            .iter()
            .flat_map(|s| s.inputs.iter().skip(1))
            .collect();
        self.kept_datasets()
            .into_iter()
            .filter(|d| !side.contains(d))
            .collect()
    }
}
