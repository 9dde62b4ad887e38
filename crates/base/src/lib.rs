//! Shared vocabulary of pipectl: the error taxonomy every layer reports in, the step kinds,
//! the inter-step data formats and the invalid-row policies. Kept free of heavy dependencies so
//! that the config crate and its tests build in seconds.

mod error;
mod vocab;

pub use error::{BoxError, ErrorClass, StepError};
pub use vocab::{Format, Mode, OnFailure, StepKind};
