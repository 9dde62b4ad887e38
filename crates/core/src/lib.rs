//! pipectl's engine, usable as a library from other Rust services.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let pipeline = pipeline_core::Pipeline::from_file("configs/quickstart.json".as_ref(), &[])?;
//! println!("{}", pipeline.plan());
//! let report = pipeline.run(&pipeline_core::RunOptions::default()).await?;
//! println!("{} rows written", report.steps.last().map(|s| s.rows_out).unwrap_or(0));
//! # Ok(()) }
//! ```
//!
//! - [`Pipeline`] parses the files and builds the plan ([`plan`]); `run` applies the retry
//!   policy around attempts ([`execute`]), each attempt a Chain of Responsibility of
//!   [`chain::PipelineStep`]s.
//! - [`Registry`] is the one explicit list of methods (connectors + user methods).

mod cancel;
pub mod chain;
mod connect;
pub mod execute;
pub mod init;
mod pipeline;
pub mod plan;
mod plan_columns;
mod plan_display;
mod plan_graph;
mod plan_segments;
pub mod plan_stream;
mod registry;
pub mod report;
mod run_id;
mod schema;
mod side_cache;
pub mod streaming;
pub mod testing;

pub use cancel::CancelToken;
pub use connect::ConnectionCheck;
pub use execute::{NoopObserver, RunObserver};
pub use pipeline::{Pipeline, RunFailure, RunOptions};
pub use pipeline_connectors::delta_maintenance;
pub use plan::{Plan, PlannedStep};
pub use registry::Registry;
pub use report::{RunReport, StepReport, StepStatus};
pub use run_id::{InvalidRunId, RunId};
pub use schema::pipeline_schema;
pub use streaming::{MetricsLine, MicroBatch, StreamObserver, StreamOptions};

pub use pipeline_base::{ErrorClass, Format, Mode, OnFailure, StepError, StepKind};
pub use pipeline_config::{ConfigError, ConfigErrors, Engine, Override};
pub use pipeline_credentials::{CredentialProvider, VaultProvider};
pub use pipeline_data::{MethodEntry, Produces};
