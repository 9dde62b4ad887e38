//! The typed pipeline model. Field docs become descriptions in `pipectl schema`.

use pipeline_base::{Mode, OnFailure, StepKind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A pipeline: named connections and an ordered list of steps.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Optional URL or path of this format's JSON Schema, for editors.
    #[serde(default, rename = "$schema", skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The pipeline's name, used in logs and run reports.
    pub name: String,
    /// Free text for readers of the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `batch` (read sources to the end once) or `streaming` (micro-batches).
    #[serde(default)]
    pub mode: Mode,
    /// Memory in MB that steps needing their whole input (`sort`, `dedupe`, `aggregate`, ...)
    /// may hold before they spill it to local disk (at least 16; default: a quarter of the
    /// memory this process may use, the machine's or its cgroup's limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 16))]
    pub memory_limit_mb: Option<u64>,
    /// With `"mode": "streaming"`: micro-batch trigger, bounds, logging and shutdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streaming: Option<crate::streaming::StreamingConfig>,
    /// The engine that runs the pipeline: `polars` (default: this machine, in process) or
    /// `spark` (a Spark cluster through Spark Connect, see `spark`). `pipectl run --engine`
    /// overrides it.
    #[serde(default, skip_serializing_if = "Engine::is_polars")]
    pub engine: Engine,
    /// With `"engine": "spark"`: where the Spark Connect server is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spark: Option<SparkConfig>,
    /// How often and how long to wait before the whole pipeline is tried again after a
    /// transient failure.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Insert DataFrame/Avro conversions between steps automatically. When false, a step whose
    /// input format it does not accept is a configuration error.
    #[serde(default)]
    pub auto_convert: bool,
    /// Connections by name. Each names its system and where its credentials live in Vault;
    /// it never holds a secret.
    #[serde(default)]
    pub connections: BTreeMap<String, ConnectionConfig>,
    /// The steps, run in order. Each takes the previous step's output unless it names `inputs`.
    pub steps: Vec<StepConfig>,
}

/// The engine that runs a pipeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Polars DataFrames on this machine (the default).
    #[default]
    Polars,
    /// Apache Spark through Spark Connect, for data one machine cannot hold.
    Spark,
}

impl Engine {
    pub fn is_polars(&self) -> bool {
        *self == Engine::Polars
    }
}

/// Where the Spark engine runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SparkConfig {
    /// The Spark Connect endpoint, `sc://HOST:PORT` (default port 15002). A token never goes
    /// here: pass it in `SPARK_REMOTE` or `--spark-remote` (`sc://HOST:PORT/;token=...`).
    /// `--spark-remote` and `SPARK_REMOTE` take precedence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
}

/// Retry policy of a pipeline run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Retries after the first attempt (so `3` means up to 4 attempts).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Fixed delay between attempts, in seconds.
    #[serde(default = "default_delay_seconds")]
    #[schemars(range(min = 0.0))]
    pub delay_seconds: f64,
}

fn default_max_retries() -> u32 {
    3
}

fn default_delay_seconds() -> f64 {
    5.0
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: default_max_retries(),
            delay_seconds: default_delay_seconds(),
        }
    }
}

/// One step of a pipeline.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// Unique name of the step; other steps use it in `inputs`.
    pub name: String,
    /// `extract`, `transform`, `validate` or `load`.
    pub kind: StepKind,
    /// The method this step calls, e.g. `generate`, `filter`, `not_null`, `delta`.
    pub method: String,
    /// Name of an entry of `connections`, for methods that talk to an external system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// Names of earlier steps whose output this step reads; the first is the main input.
    /// Defaults to the previous step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<String>>,
    /// The method's options; `pipectl methods` lists them.
    #[serde(default)]
    pub options: Map<String, Value>,
    /// For validations: `fail` (default), `filter`, `quarantine` or `warn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
    /// For `on_failure: quarantine`: the dataset invalid rows go to (default `<step>_quarantine`);
    /// later steps read it by naming it in `inputs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<String>,
    /// For `filter` and `quarantine`: the run fails when more than this fraction (0 to 1) of the
    /// checked rows is invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_invalid_fraction: Option<f64>,
    /// Free text for readers of the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A connection to an external system. Holds only non-secret settings and the Vault location of
/// its credentials.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ConnectionConfig {
    /// The system: `postgres`, `mysql`, `kafka`, `delta`, `s3`, ...
    pub system: String,
    /// Where the secrets live in Vault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<CredentialsRef>,
    /// Non-secret settings of the system (host, database, bucket, ...).
    #[serde(flatten)]
    pub settings: Map<String, Value>,
}

/// A reference to credentials stored in Vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialsRef {
    /// Path of the secret, e.g. `secret/pipelines/shop_db` (mount first).
    pub vault_path: String,
    /// KV engine version of the mount (1 or 2); detected when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_version: Option<u8>,
}
