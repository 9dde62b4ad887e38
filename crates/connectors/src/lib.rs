//! ExtractMethods and LoadMethods: the sources and sinks a pipeline step can call by name.
//! Each connector lives in its own module; [`entries`] is the one registry list.

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

mod arrow_bridge;
mod columns;
mod delta;
mod generate;
mod kafka;
mod ledger;
mod mysql;
mod postgres;
mod s3;
mod sql;
mod statements;
mod tls;

use pipeline_data::{ConnectionUse, MethodEntry, Streaming, SystemEntry};

/// Sources. Associated functions without `self`, selected by name.
pub struct ExtractMethods;

/// Sinks. Associated functions without `self`, selected by name.
pub struct LoadMethods;

pub use arrow_bridge::{arrow_to_frame, frame_to_arrow};
pub use delta::maintenance as delta_maintenance;
pub use delta::{
    DeltaExtractOptions, DeltaLoadOptions, DeltaWriteMode, PartitionValue, SchemaEvolution,
    read_delta_location, read_delta_table,
};
pub use generate::{GenerateOptions, GeneratedDataset, generate_frame};
pub use kafka::{
    KafkaCompression, KafkaExtractOptions, KafkaLoadOptions, KafkaRanges, OnDecodeError,
    PartitionRange, StartAt, ValueFormat, kafka_ranges,
};
pub use mysql::{MysqlExtractOptions, MysqlLoadOptions, MysqlWriteMode};
pub use postgres::{NumericMode, PgWriteMode, PostgresExtractOptions, PostgresLoadOptions};
pub use s3::{FileFormat, ObjectWriteMode, ParquetCompression, S3ExtractOptions, S3LoadOptions};
pub use sql::PartitionOptions;
pub use statements::execute_statements;

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
        MethodEntry::extract(
            "mysql",
            "Read a MySQL/MariaDB table or query with the binary protocol (optionally in parallel ranges)",
            ConnectionUse::Required(&["mysql"]),
            ExtractMethods::mysql,
        ),
        MethodEntry::extract(
            "kafka",
            "Read Kafka topics up to their offsets at the start (json, string or bytes values; stored offsets)",
            ConnectionUse::Required(&["kafka"]),
            ExtractMethods::kafka,
        )
        .with_streaming(Streaming::Source),
        MethodEntry::extract(
            "s3",
            "Read Parquet, Avro, CSV or JSON lines from S3 or a local directory (object, prefix or glob)",
            ConnectionUse::Optional(&["s3"]),
            ExtractMethods::s3,
        ),
        MethodEntry::load(
            "delta",
            "Write a Delta Lake table, atomically at the end of the run",
            ConnectionUse::Optional(&["delta"]),
            LoadMethods::delta,
        )
        .with_streaming(Streaming::ExactlyOnce),
        MethodEntry::load(
            "postgres",
            "Write a PostgreSQL table by binary COPY through a staging table (append, overwrite, upsert), in one transaction",
            ConnectionUse::Required(&["postgres"]),
            LoadMethods::postgres,
        )
        .with_streaming(Streaming::ExactlyOnce),
        MethodEntry::load(
            "mysql",
            "Write a MySQL/MariaDB InnoDB table by LOAD DATA LOCAL INFILE (append, overwrite, upsert), in one transaction",
            ConnectionUse::Required(&["mysql"]),
            LoadMethods::mysql,
        )
        .with_streaming(Streaming::ExactlyOnce),
        MethodEntry::load(
            "kafka",
            "Produce each row as a Kafka record (JSON or one column; key partitioned like the Java client), at-least-once",
            ConnectionUse::Required(&["kafka"]),
            LoadMethods::kafka,
        ),
        MethodEntry::load(
            "s3",
            "Write Parquet, Avro, CSV or JSON lines to S3 or a local directory, published when the run succeeds",
            ConnectionUse::Optional(&["s3"]),
            LoadMethods::s3,
        )
        .with_streaming(Streaming::ExactlyOnce),
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
