//! The streaming side of the plan (`"mode": "streaming"`): which extract heads the stream,
//! which extracts are side inputs read again every `side_input_refresh`, what each load
//! guarantees (exactly-once or at-least-once), and what cannot stream, refused with the step
//! named.

use crate::plan::PlannedStep;
use crate::registry::Registry;
use pipeline_base::{Mode, StepKind};
use pipeline_config::{ConfigErrors, LoadedPipeline, StepConfig, StreamingConfig, suggest};
use pipeline_data::{MethodEntry, Streaming};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::fmt;

/// How a stream runs, from the plan.
#[derive(Debug, Clone, Serialize)]
pub struct StreamPlan {
    pub config: StreamingConfig,
    /// The stream's id in the sinks' offsets.
    pub id: String,
    /// The extract that reads continuously.
    pub source: String,
    /// Extracts read to their end and used as side inputs.
    pub side_inputs: Vec<String>,
    /// Each load with what it guarantees.
    pub loads: Vec<LoadDelivery>,
    /// The streaming extract keeps offsets of its own (`"offsets": {"store": ...}`).
    pub source_keeps_offsets: bool,
}

/// What a load guarantees in a stream.
#[derive(Debug, Clone, Serialize)]
pub struct LoadDelivery {
    pub step: String,
    pub exactly_once: bool,
}

impl fmt::Display for StreamPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "streaming: id {}, source {}, trigger {} every {:?}, at most {} records / {} MiB per micro-batch",
            self.id,
            self.source,
            match c.trigger {
                pipeline_config::Trigger::ProcessingTime => "processing_time",
                pipeline_config::Trigger::AvailableNow => "available_now",
            },
            c.trigger_interval.0,
            c.max_records,
            c.max_bytes >> 20
        )?;
        for l in &self.loads {
            if l.exactly_once {
                writeln!(
                    f,
                    "  {}: exactly-once (offsets committed with the data)",
                    l.step
                )?;
            } else {
                writeln!(
                    f,
                    "  {}: at-least-once (offsets stored after every load has committed; a crash between the two writes the micro-batch again)",
                    l.step
                )?;
            }
        }
        if self.loads.iter().any(|l| !l.exactly_once) && !self.source_keeps_offsets {
            writeln!(
                f,
                "  note: the at-least-once loads restart from the extract's \"start\" after every restart: give the stream a \"checkpoint\": {{\"location\": ...}} (or step {} \"offsets\": {{\"store\": ...}})",
                self.source
            )?;
        }
        if let Some(cp) = &c.checkpoint {
            writeln!(
                f,
                "  checkpoint: {} (the offsets of {})",
                cp.offsets_of(&self.source),
                self.source
            )?;
        }
        for s in &self.side_inputs {
            writeln!(
                f,
                "  {s}: side input, read once and again every {:?}",
                c.side_input_refresh.0
            )?;
        }
        Ok(())
    }
}

/// A step's options; for the streaming extract of a stream with a `"checkpoint"`, with the
/// checkpoint as its offsets store (`"offsets": {"store": LOCATION/STEP.offsets.json}`).
pub(crate) fn with_checkpoint(
    loaded: &LoadedPipeline,
    step: &StepConfig,
    entry: Option<&MethodEntry>,
    errors: &mut ConfigErrors,
) -> Map<String, Value> {
    let mut options = step.options.clone();
    let config = &loaded.config;
    let checkpoint = config
        .streaming
        .as_ref()
        .and_then(|s| s.checkpoint.as_ref());
    let (Mode::Streaming, Some(cp), Some(e)) = (config.mode, checkpoint, entry) else {
        return options;
    };
    if e.streaming != Streaming::Source {
        return options;
    }
    let at = "/streaming/checkpoint";
    if options.contains_key("offsets") {
        errors.push(
            loaded
                .error_at(
                    at,
                    format!(
                        "step \"{}\" keeps its offsets in its own \"offsets\" store, and the stream's checkpoint would be a second one",
                        step.name
                    ),
                )
                .with_hint("remove one of the two"),
        );
        return options;
    }
    let location = cp.location.trim();
    let bucket = location
        .strip_prefix("s3://")
        .map(|rest| rest.split('/').next().unwrap_or_default());
    let bad = if location.trim_end_matches('/').is_empty() {
        Some("the checkpoint's location is empty")
    } else if bucket == Some("") {
        Some("the checkpoint's location names no bucket")
    } else if bucket.is_none() && location.contains("://") {
        Some("the checkpoint's location is a local directory or s3://BUCKET/PREFIX")
    } else {
        None
    };
    if let Some(why) = bad {
        errors.push(loaded.error_at(&format!("{at}/location"), why).with_hint(
            "e.g. \"location\": \"state/orders_stream\" or \"s3://lake/checkpoints/orders_stream\"",
        ));
        return options;
    }
    if let Some(c) = cp
        .connection
        .as_ref()
        .and_then(|n| config.connections.get(n))
        && c.system != "s3"
    {
        errors.push(loaded.error_at(
            &format!("{at}/connection"),
            format!(
                "an s3:// checkpoint is written through an s3 connection, not a {} one",
                c.system
            ),
        ));
        return options;
    }
    let mut store = json!({"store": cp.offsets_of(&step.name)});
    match (&cp.connection, bucket.is_some()) {
        (None, true) => {
            errors.push(
                loaded
                    .error_at(
                        at,
                        format!("the checkpoint {} needs an s3 connection", cp.location),
                    )
                    .with_hint(
                        "add \"connection\": \"NAME\" (an s3 connection) beside \"location\"",
                    ),
            );
            return options;
        }
        (Some(_), false) => {
            errors.push(loaded.error_at(
                &format!("{at}/connection"),
                "a local checkpoint directory takes no connection",
            ));
            return options;
        }
        (Some(name), true) if !config.connections.contains_key(name) => {
            let hint = suggest(name, config.connections.keys().map(String::as_str))
                .map(|s| format!("did you mean \"{s}\"?"))
                .unwrap_or_else(|| "define it under \"connections\"".into());
            errors.push(
                loaded
                    .error_at(
                        &format!("{at}/connection"),
                        format!("unknown connection \"{name}\""),
                    )
                    .with_hint(hint),
            );
            return options;
        }
        (Some(name), true) => {
            store["connection"] = Value::String(name.clone());
        }
        (None, false) => {}
    }
    options.insert("offsets".into(), store);
    options
}

/// The extract each step's main input comes from (following quarantine datasets to the
/// validation that made them).
fn heads(steps: &[PlannedStep]) -> Vec<Option<usize>> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    let mut head: Vec<Option<usize>> = Vec::with_capacity(steps.len());
    for (i, s) in steps.iter().enumerate() {
        let h = if s.kind == StepKind::Extract {
            Some(i)
        } else {
            s.inputs
                .first()
                .and_then(|input| producer.get(input.as_str()))
                .and_then(|&p| head.get(p).copied().flatten())
        };
        head.push(h);
        producer.insert(s.name.as_str(), i);
        if let Some(q) = &s.quarantine {
            producer.insert(q.as_str(), i);
        }
    }
    head
}

/// Checks a streaming pipeline; `None` in batch mode or when it cannot stream.
pub(crate) fn check(
    loaded: &LoadedPipeline,
    registry: &Registry,
    steps: &[PlannedStep],
    errors: &mut ConfigErrors,
) -> Option<StreamPlan> {
    let config = &loaded.config;
    let streaming = |s: &PlannedStep| registry.get(s.kind, &s.method).map(|e| e.streaming);
    let mut sources = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        match streaming(s) {
            Some(Streaming::Refused(why)) => errors.push(
                loaded
                    .error_at(
                        &format!("/steps/{i}/method"),
                        format!(
                            "step \"{}\": method \"{}\" cannot run in a stream: {why}",
                            s.name, s.method
                        ),
                    )
                    .with_hint("remove the step, or run the pipeline with \"mode\": \"batch\""),
            ),
            Some(Streaming::Source) => sources.push(i),
            _ => {}
        }
    }
    let Some(&source) = sources.first() else {
        errors.push(
            loaded
                .error_at(
                    "/mode",
                    "a stream needs an extract that reads continuously, and this pipeline has none",
                )
                .with_hint(
                    "read a Kafka topic (\"method\": \"kafka\"), or use \"mode\": \"batch\"",
                ),
        );
        return None;
    };
    if let Some(&second) = sources.get(1) {
        errors.push(
            loaded
                .error_at(
                    &format!("/steps/{second}"),
                    format!(
                        "step \"{}\": a stream reads one streaming extract (\"{}\" already is one)",
                        steps[second].name, steps[source].name
                    ),
                )
                .with_hint("name several topics in one kafka extract (\"topics\": [...]), or split the pipeline"),
        );
    }
    let head = heads(steps);
    let mut loads = Vec::new();
    let mut side_inputs = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        if s.kind == StepKind::Extract && i != source {
            side_inputs.push(s.name.clone());
        }
        if s.kind != StepKind::Load {
            continue;
        }
        match head.get(i).copied().flatten() {
            Some(h) if h == source => loads.push(LoadDelivery {
                step: s.name.clone(),
                exactly_once: streaming(s) == Some(Streaming::ExactlyOnce),
            }),
            Some(h) => errors.push(
                loaded
                    .error_at(
                        &format!("/steps/{i}"),
                        format!(
                            "step \"{}\": in a stream its rows come from extract \"{}\" ({}), which is read to its end rather than continuously",
                            s.name, steps[h].name, steps[h].method
                        ),
                    )
                    .with_hint(format!(
                        "load what step \"{}\" reads, and use \"{}\" as a side input (the second input of a join or referential_integrity)",
                        steps[source].name, steps[h].name
                    )),
            ),
            None => {}
        }
    }
    Some(StreamPlan {
        id: config
            .streaming
            .as_ref()
            .and_then(|c| c.id.clone())
            .unwrap_or_else(|| config.name.clone()),
        config: config.streaming.clone().unwrap_or_default(),
        source: steps[source].name.clone(),
        source_keeps_offsets: steps[source].options.get("offsets").is_some(),
        side_inputs,
        loads,
    })
}
