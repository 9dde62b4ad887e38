//! UserMethods: the transforms and validations a pipeline step can call by name, all on Polars
//! DataFrames. Each method is an associated function of [`UserMethods`] with typed options; the
//! registry list in [`entries`] is the only place a method is made known.

mod checks;
mod combine;
mod convert;
mod expr;
mod helpers;
mod reshape;
mod transform;
mod validate;

use pipeline_base::{Format, StepKind};
use pipeline_data::{MethodEntry, Produces};

/// The transforms and validations. Associated functions without `self`, selected by name.
pub struct UserMethods;

pub use checks::{
    AcceptedValuesOptions, ExpressionOptions, FreshnessOptions, PatternOptions, RangeOptions, ReferentialIntegrityOptions,
    RowCountOptions, SchemaOptions, UniqueOptions,
};
pub use combine::{AggregateOptions, DedupeOptions, JoinHow, JoinOptions, Keep, OneOrMany, SortOptions, SqlOptions, UnionOptions};
pub use convert::{ToAvroOptions, ToDataFrameOptions};
pub use reshape::{CastOptions, DropOptions, FillNullOptions, RenameOptions};
pub use transform::{DeriveOptions, FilterOptions, SelectOptions};
pub use validate::NotNullOptions;

const NONE: (usize, Option<usize>) = (0, Some(0));
const ONE: (usize, Option<usize>) = (1, Some(1));
const ANY: (usize, Option<usize>) = (1, None);
const ANY_OR_NONE: (usize, Option<usize>) = (0, None);

/// Every user method, in the order `pipectl methods` lists them.
pub fn entries() -> Vec<MethodEntry> {
    vec![
        MethodEntry::transform(
            "filter",
            "Keep the rows for which a SQL condition holds",
            UserMethods::filter,
        ),
        MethodEntry::transform(
            "derive",
            "Add or replace columns computed from SQL expressions",
            UserMethods::derive,
        ),
        MethodEntry::transform(
            "select",
            "Keep only the listed columns, in that order",
            UserMethods::select,
        ),
        MethodEntry::validation(
            "not_null",
            "The listed columns must not be null",
            false,
            false,
            UserMethods::not_null,
        ),
        MethodEntry::operator(
            "to_avro",
            StepKind::Transform,
            "Convert DataFrames to Avro records",
            &[Format::DataFrame],
            Produces::Format(Format::Avro),
            UserMethods::to_avro,
        ),
        MethodEntry::operator(
            "to_dataframe",
            StepKind::Transform,
            "Convert Avro records to DataFrames",
            &[Format::Avro],
            Produces::Format(Format::DataFrame),
            UserMethods::to_dataframe,
        ),
    ]
}
