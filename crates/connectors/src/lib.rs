//! ExtractMethods and LoadMethods: the sources and sinks a pipeline step can call by name.
//! Each connector lives in its own module; [`entries`] is the one registry list.

mod arrow_bridge;
mod delta;
mod generate;
mod kafka;
mod mysql;
mod postgres;
mod s3;

use pipeline_data::{ConnectionUse, MethodEntry, SystemEntry};

/// Sources. Associated functions without `self`, selected by name.
pub struct ExtractMethods;

/// Sinks. Associated functions without `self`, selected by name.
pub struct LoadMethods;

pub use arrow_bridge::frame_to_arrow;
pub use delta::{
    DeltaExtractOptions, DeltaLoadOptions, DeltaWriteMode, SchemaEvolution, read_delta_table,
};
pub use generate::{GenerateOptions, GeneratedDataset, generate_frame};
pub use postgres::{NumericMode, PartitionOptions, PostgresExtractOptions};

/// Every connector method, in the order `pipectl methods` lists them.
pub fn entries() -> Vec<MethodEntry> {
    vec![
        MethodEntry::extract(
            "generate",
            "Deterministic mocked order rows (no external system)",
            ConnectionUse::None,
            ExtractMethods::generate,
        ),
        MethodEntry::extract(
            "delta",
            "Read a Delta Lake table",
            ConnectionUse::Optional(&["delta"]),
            ExtractMethods::delta,
        ),
        MethodEntry::extract(
            "postgres",
            "Read a PostgreSQL table or query by binary COPY (optionally in parallel ranges)",
            ConnectionUse::Required(&["postgres"]),
            ExtractMethods::postgres,
        ),
        MethodEntry::load(
            "delta",
            "Write a Delta Lake table, atomically at the end of the run",
            ConnectionUse::Optional(&["delta"]),
            LoadMethods::delta,
        ),
    ]
}

/// Every system a connection can name, with its connection check (`pipectl validate --connect`).
pub fn systems() -> Vec<SystemEntry> {
    vec![
        SystemEntry::new("postgres", "PostgreSQL", |s| Box::pin(postgres::check(s))),
        SystemEntry::new("mysql", "MySQL / MariaDB", |s| Box::pin(mysql::check(s))),
        SystemEntry::new("kafka", "Apache Kafka", |s| Box::pin(kafka::check(s))),
        SystemEntry::new("s3", "Amazon S3 and S3-compatible stores", |s| {
            Box::pin(s3::check(s))
        }),
        SystemEntry::new("delta", "Delta Lake", |s| Box::pin(delta::check(s))),
    ]
}
