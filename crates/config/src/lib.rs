//! Pipeline configuration: reads a pipeline JSON file, resolves `{"$ref": ...}` includes,
//! refuses literal secrets, and deserializes the typed model. Every problem becomes a
//! [`ConfigError`] that names the file, the JSON path and the line:column, and all problems of a
//! load are reported together.
//!
//! This crate does no network I/O and knows nothing of methods; the core crate checks method
//! names and options against its registry using the helpers here.

// Panic-free policy for code a pipeline file or a server's answer reaches (tests are exempt):
// no unwrap/expect/panic, no unchecked indexing or slicing, no unchecked arithmetic. Each
// exception is an `#[allow]` on the smallest item, with the reason beside it.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

mod diag;
mod lint;
mod load;
mod model;
mod pointer;
mod resolve;
mod span;
mod streaming;

pub use diag::{ConfigError, ConfigErrors, Location, check_known_keys, suggest};
pub use lint::{is_sensitive_key, lint_secrets};
pub use load::{LoadedPipeline, Override, load_pipeline, load_pipeline_str};
pub use model::{
    ConnectionConfig, CredentialsRef, Engine, PipelineConfig, RetryConfig, SparkConfig, StepConfig,
};
pub use pointer::{escape_token, join_pointer};
pub use resolve::{Locator, MAX_REF_DEPTH};
pub use streaming::{Checkpoint, Interval, OnOffsetOutOfRange, StreamingConfig, Trigger};
