//! The Spark Connect protocol (package `spark.connect`), generated at build time by
//! tonic-prost-build from the protos in `proto/` (Spark 4.0.0, Apache-2.0).

#![allow(
    clippy::all,
    clippy::pedantic,
    dead_code,
    missing_docs,
    rustdoc::all,
    unused_qualifications
)]

tonic::include_proto!("spark.connect");
