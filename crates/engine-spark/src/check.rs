//! What Spark cannot run the way pipectl does, found without I/O: each step is compiled into
//! its Spark program (the same code `run` uses), and every refusal names the step and why.

use crate::compile::compile;
use pipeline_core::Plan;
use std::fmt;

/// A step Spark would not run as pipectl means it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub step: String,
    /// The option it concerns, as a JSON pointer under the step (`/options/condition`), or empty.
    pub at: String,
    pub message: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.at.is_empty() {
            write!(f, "step \"{}\": {}", self.step, self.message)
        } else {
            write!(f, "step \"{}\" ({}): {}", self.step, self.at, self.message)
        }
    }
}

/// Every refusal of the plan (empty: Spark can run it).
pub fn check(plan: &Plan) -> Vec<Refusal> {
    match compile(plan) {
        Ok(_) => Vec::new(),
        Err(refusals) => refusals,
    }
}
