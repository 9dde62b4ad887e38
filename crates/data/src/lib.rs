//! Data between pipeline steps and the contracts steps implement.
//!
//! - [`Batch`]: what flows between steps, a Polars DataFrame or an Avro object container.
//! - [`avro`]: lossless DataFrame ↔ Avro conversion.
//! - [`method`]: the registry entry ([`MethodEntry`]) that wraps one ExtractMethods,
//!   LoadMethods or UserMethods function, and the runtime traits ([`Source`], [`Operator`],
//!   [`Sink`]) the executor drives.

pub mod avro;
mod batch;
mod errors;
pub mod incremental;
pub mod memory;
pub mod method;
pub mod needs;
mod operators;
mod ordered;
mod partitioned;
mod runtime;
mod scanned;
mod sorted;
pub mod spill;
mod spilling;
pub mod stream;
mod system;
mod validate;
mod validation;

pub use batch::{AvroBatch, Batch};
pub use errors::{PolarsResultExt, polars_error};
pub use incremental::{Gathers, Incremental};
pub use method::{ConnectionUse, MethodEntry, OptionsError, Produces, StepSetup, Streaming};
pub use needs::Needs;
pub use ordered::SortSpec;
pub use partitioned::{ARRIVAL, ByKey};
pub use runtime::{
    CommitOutcome, Datasets, Metrics, Operator, RunContext, Runtime, Sink, Source, blocking,
};
pub use scanned::Scan;
pub use system::{ConnectionSetup, StepUse, SystemEntry};
pub use validate::REASON_COLUMN;
pub use validation::{Check, sample_rows};

/// Re-exported so that connectors and methods use the exact same Polars.
pub use polars;
