//! Words of the pipeline language shared by every layer: step kinds, data formats between steps,
//! execution modes and what a validation does with invalid rows.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a step does. Each step calls one method of the matching family: extract methods,
/// load methods, or user methods (transforms and validations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// Reads data from a source (ExtractMethods).
    Extract,
    /// Reshapes data (UserMethods).
    Transform,
    /// Checks data-quality rules and handles invalid rows per `on_failure` (UserMethods).
    Validate,
    /// Writes data to a sink (LoadMethods); passes its input through unchanged.
    Load,
}

impl StepKind {
    pub const ALL: [StepKind; 4] = [
        StepKind::Extract,
        StepKind::Transform,
        StepKind::Validate,
        StepKind::Load,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Extract => "extract",
            StepKind::Transform => "transform",
            StepKind::Validate => "validate",
            StepKind::Load => "load",
        }
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The data format that flows between two steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// A Polars DataFrame (columnar, in memory).
    #[serde(rename = "dataframe")]
    DataFrame,
    /// Avro records in an object container (schema embedded).
    Avro,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Format::DataFrame => "DataFrame",
            Format::Avro => "Avro",
        })
    }
}

/// How a pipeline runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Read the sources to their end once, then stop.
    #[default]
    Batch,
    /// Micro-batch streaming: poll the sources continuously.
    Streaming,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Mode::Batch => "batch",
            Mode::Streaming => "streaming",
        })
    }
}

/// What a validation step does with rows that break its rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The run fails, with the count and sample failing rows.
    #[default]
    Fail,
    /// Invalid rows are dropped and counted.
    Filter,
    /// Invalid rows are only counted and logged.
    Warn,
    /// Invalid rows go, with a `_pipectl_reason` column, to a named dataset that a load can write.
    Quarantine,
}

impl fmt::Display for OnFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            OnFailure::Fail => "fail",
            OnFailure::Filter => "filter",
            OnFailure::Warn => "warn",
            OnFailure::Quarantine => "quarantine",
        })
    }
}
