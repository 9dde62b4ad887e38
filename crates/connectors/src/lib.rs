//! ExtractMethods and LoadMethods: the sources and sinks a pipeline step can call by name.
//! Each connector lives in its own module; [`entries`] is the one registry list.

mod arrow_bridge;
mod delta;
mod generate;

use pipeline_data::{ConnectionUse, MethodEntry};

/// Sources. Associated functions without `self`, selected by name.
pub struct ExtractMethods;

/// Sinks. Associated functions without `self`, selected by name.
pub struct LoadMethods;

pub use arrow_bridge::frame_to_arrow;
pub use delta::{
    DeltaExtractOptions, DeltaLoadOptions, DeltaWriteMode, SchemaEvolution, read_delta_table,
};
pub use generate::{GenerateOptions, GeneratedDataset, generate_frame};

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
        MethodEntry::load(
            "delta",
            "Write a Delta Lake table, atomically at the end of the run",
            ConnectionUse::Optional(&["delta"]),
            LoadMethods::delta,
        ),
    ]
}
