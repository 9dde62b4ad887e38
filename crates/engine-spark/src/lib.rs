//! pipectl's Spark engine: the same checked plan the Polars executor runs, compiled into Spark
//! Connect relations and run on a Spark cluster (or a local Spark Connect server).
//!
//! - [`check`] refuses, without I/O, what Spark would not compute the way pipectl does (a
//!   method, an option, an expression), naming the step and why (`validate --engine spark`).
//! - [`run`] fetches each connection's credentials once, opens a Spark Connect session, turns
//!   every step into a temporary view, counts what validations must count before anything is
//!   written, then runs the loads in plan order.
//!
//! The gRPC client is generated from Spark 4.0's published protos (`proto/`, Apache-2.0): the
//! Spark Connect crates on crates.io target older Spark versions or another Arrow major.

// Generated code and tests aside, no unwrap, panic or unchecked indexing on data from a
// pipeline file or a server.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod align;
mod arrow_ipc;
mod check;
mod client;
mod compile;
pub mod expr;
mod join;
mod kafka;
mod proto;
mod relations;
mod remote;
mod run;
mod setup;
mod sinks;
mod sources;
mod sql_query;
mod streaming;
mod validations;

pub use check::{Refusal, check};
pub use remote::{DEFAULT_PORT, Remote};
pub use run::{SparkOptions, SparkReport, StepCount, run};
