//! UserMethods: the transforms and validations a pipeline step can call by name, all on Polars
//! DataFrames. Each method is an associated function of [`UserMethods`] with typed options; the
//! registry list in [`entries`] is the only place a method is made known.

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

mod checks;
mod combine;
mod convert;
mod expr;
mod helpers;
mod reshape;
mod transform;
mod validate;

use pipeline_base::{Format, StepKind};
use pipeline_data::{MethodEntry, Produces, Streaming};

/// The transforms and validations. Associated functions without `self`, selected by name.
pub struct UserMethods;

pub use checks::{
    AcceptedValuesOptions, ExpressionOptions, FreshnessOptions, PatternOptions, RangeOptions,
    ReferentialIntegrityOptions, RowCountOptions, SchemaOptions, UniqueOptions,
};
pub use combine::{
    AggregateOptions, DedupeOptions, JoinHow, JoinOptions, Keep, OneOrMany, SortOptions,
    SqlOptions, UnionOptions,
};
pub use convert::{ToAvroOptions, ToDataFrameOptions};
pub use helpers::parse_type;
pub use reshape::{CastOptions, DropOptions, FillNullOptions, RenameOptions};
pub use transform::{DeriveOptions, FilterOptions, SelectOptions};
pub use validate::NotNullOptions;

const NONE: (usize, Option<usize>) = (0, Some(0));
const ONE: (usize, Option<usize>) = (1, Some(1));
const ANY: (usize, Option<usize>) = (1, None);
const ANY_OR_NONE: (usize, Option<usize>) = (0, None);

/// Every user method, in the order `pipectl methods` lists them: the one place a method is made
/// known.
pub fn entries() -> Vec<MethodEntry> {
    use MethodEntry as M;
    vec![
        M::transform(
            "filter",
            "Keep the rows for which a SQL condition holds",
            UserMethods::filter,
        ),
        M::transform(
            "derive",
            "Add or replace columns computed from SQL expressions",
            UserMethods::derive,
        ),
        M::transform(
            "select",
            "Keep only the listed columns, in that order",
            UserMethods::select,
        ),
        M::transform("drop", "Remove columns", UserMethods::drop),
        M::transform("rename", "Rename columns", UserMethods::rename),
        M::transform("cast", "Convert columns to other types", UserMethods::cast),
        M::transform(
            "fill_null",
            "Replace nulls with values",
            UserMethods::fill_null,
        ),
        M::transform_whole(
            "aggregate",
            "Group by columns and aggregate with SQL expressions",
            NONE,
            UserMethods::aggregate,
        ),
        M::transform_whole(
            "join",
            "Join with another input (inner, left, right, full, semi, anti)",
            ONE,
            UserMethods::join,
        ),
        M::transform_whole(
            "union",
            "Stack inputs by column name; missing columns become null",
            ANY,
            UserMethods::union,
        ),
        M::transform_whole(
            "sql",
            "A Polars SQL query over the named inputs",
            ANY_OR_NONE,
            UserMethods::sql,
        ),
        M::transform_whole("sort", "Sort by columns", NONE, UserMethods::sort),
        M::transform_whole(
            "dedupe",
            "Keep one row per key, first or last by an order column",
            NONE,
            UserMethods::dedupe,
        ),
        M::validation(
            "not_null",
            "The listed columns must not be null",
            false,
            NONE,
            UserMethods::not_null,
        ),
        M::validation(
            "unique",
            "A column or composite key must not repeat",
            true,
            NONE,
            UserMethods::unique,
        ),
        M::validation(
            "range",
            "Values within min/max bounds",
            false,
            NONE,
            UserMethods::range,
        ),
        M::validation(
            "pattern",
            "String values matching a regular expression",
            false,
            NONE,
            UserMethods::pattern,
        ),
        M::validation(
            "accepted_values",
            "Values from a given list",
            false,
            NONE,
            UserMethods::accepted_values,
        ),
        M::validation(
            "referential_integrity",
            "Keys present in another input",
            false,
            ONE,
            UserMethods::referential_integrity,
        ),
        M::validation(
            "schema",
            "Required columns with their types",
            false,
            NONE,
            UserMethods::schema,
        ),
        M::validation(
            "row_count",
            "Total row count within bounds",
            true,
            NONE,
            UserMethods::row_count,
        )
        .with_streaming(Streaming::Refused(
            "it bounds the rows of a whole run, and a stream has no end; check a micro-batch's rows with \"expression\" or watch the metrics line",
        )),
        M::validation(
            "expression",
            "A SQL boolean expression holds for every row",
            false,
            NONE,
            UserMethods::expression,
        ),
        M::validation(
            "freshness",
            "The newest timestamp is recent enough",
            true,
            NONE,
            UserMethods::freshness,
        ),
        M::operator(
            "to_avro",
            StepKind::Transform,
            "Convert DataFrames to Avro records",
            &[Format::DataFrame],
            Produces::Format(Format::Avro),
            UserMethods::to_avro,
        ),
        M::operator(
            "to_dataframe",
            StepKind::Transform,
            "Convert Avro records to DataFrames",
            &[Format::Avro],
            Produces::Format(Format::DataFrame),
            UserMethods::to_dataframe,
        ),
    ]
}

#[cfg(test)]
mod empty_tests;
