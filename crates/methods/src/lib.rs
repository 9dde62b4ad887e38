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
mod keys;
mod needs;
mod outer;
mod partial;
mod payload;
mod reshape;
mod streamed;
mod transform;
mod validate;

use pipeline_base::{Format, StepKind};
use pipeline_data::{Gathers, MethodEntry, Produces, Streaming};

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
pub use streamed::Reference;
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
        )
        .with_needs(needs::filter),
        M::transform(
            "derive",
            "Add or replace columns computed from SQL expressions",
            UserMethods::derive,
        ),
        M::transform(
            "select",
            "Keep only the listed columns, in that order",
            UserMethods::select,
        )
        .with_needs(needs::select),
        M::transform("drop", "Remove columns", UserMethods::drop),
        M::transform("rename", "Rename columns", UserMethods::rename),
        M::transform("cast", "Convert columns to other types", UserMethods::cast),
        M::transform(
            "fill_null",
            "Replace nulls with values",
            UserMethods::fill_null,
        ),
        M::transform_incremental(
            "aggregate",
            "Group by columns and aggregate with SQL expressions",
            NONE,
            partial::aggregate_gathers,
            partial::open_aggregate,
        )
        .with_needs(needs::aggregate),
        M::transform_incremental(
            "join",
            "Join with another input (inner, left, right, full, semi, anti)",
            ONE,
            streamed::join_gathers,
            streamed::open_join,
        )
        .with_needs(needs::join),
        M::transform_incremental(
            "union",
            "Stack inputs by column name; missing columns become null",
            ANY,
            |_| Gathers::SideInputs,
            streamed::open_union,
        )
        .with_needs(needs::union),
        M::transform_scanned(
            "sql",
            "A Polars SQL query over the named inputs",
            ANY_OR_NONE,
            UserMethods::sql_scan,
        ),
        M::transform_sorted("sort", "Sort by columns", UserMethods::sort, combine::sort_spec)
            .with_needs(needs::sort),
        M::transform_partitioned(
            "dedupe",
            "Keep one row per key, first or last by an order column",
            NONE,
            UserMethods::dedupe,
            |o: &DedupeOptions| o.keys.clone(),
            combine::dedupe_order,
        )
        .with_needs(needs::dedupe),
        M::validation(
            "not_null",
            "The listed columns must not be null",
            false,
            NONE,
            UserMethods::not_null,
        )
        .with_needs(needs::not_null),
        M::validation_partitioned(
            "unique",
            "A column or composite key must not repeat",
            UserMethods::unique,
            |o: &UniqueOptions| o.columns.clone(),
        )
        .with_needs(needs::unique),
        M::validation(
            "range",
            "Values within min/max bounds",
            false,
            NONE,
            UserMethods::range,
        )
        .with_needs(needs::range),
        M::validation(
            "pattern",
            "String values matching a regular expression",
            false,
            NONE,
            UserMethods::pattern,
        )
        .with_needs(needs::pattern),
        M::validation(
            "accepted_values",
            "Values from a given list",
            false,
            NONE,
            UserMethods::accepted_values,
        )
        .with_needs(needs::accepted_values),
        M::validation_prepared(
            "referential_integrity",
            "Keys present in another input",
            ONE,
            UserMethods::reference,
            UserMethods::referential_integrity_streamed,
        )
        .with_needs(needs::referential_integrity),
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
        ))
        .with_needs(needs::row_count),
        M::validation(
            "expression",
            "A SQL boolean expression holds for every row",
            false,
            NONE,
            UserMethods::expression,
        )
        .with_needs(needs::expression),
        M::validation(
            "freshness",
            "The newest timestamp is recent enough",
            true,
            NONE,
            UserMethods::freshness,
        )
        .with_needs(needs::freshness),
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
#[cfg(test)]
mod streamed_tests;
