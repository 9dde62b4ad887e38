//! Every transform and validation accepts an empty input (schema only) and returns no row.

use super::*;
use crate::checks::*;
use crate::combine::{
    AggregateOptions, DedupeOptions, JoinHow, JoinOptions, Keep, OneOrMany, SortOptions,
    SqlOptions, UnionOptions,
};
use crate::reshape::*;
use crate::transform::*;
use crate::validate::NotNullOptions;
use indexmap::IndexMap;
use pipeline_data::Datasets;
use pipeline_data::polars::prelude::*;
use serde_json::json;

fn empty() -> DataFrame {
    df!("id" => Vec::<i64>::new(), "name" => Vec::<String>::new(), "amount" => Vec::<f64>::new())
        .unwrap()
}

fn side() -> Datasets {
    Datasets::from([(
        "other".to_string(),
        df!("id" => [1i64], "extra" => ["x"]).unwrap(),
    )])
}

#[test]
fn transforms_on_empty_input() {
    let none = Datasets::new();
    let cols = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let outs = vec![
        UserMethods::filter(
            empty(),
            &FilterOptions {
                condition: "amount > 0".into(),
            },
        )
        .unwrap(),
        UserMethods::derive(
            empty(),
            &DeriveOptions {
                columns: IndexMap::from([("x".into(), "amount * 2".into())]),
            },
        )
        .unwrap(),
        UserMethods::select(
            empty(),
            &SelectOptions {
                columns: cols(&["id"]),
            },
        )
        .unwrap(),
        UserMethods::drop(
            empty(),
            &DropOptions {
                columns: cols(&["name"]),
            },
        )
        .unwrap(),
        UserMethods::rename(
            empty(),
            &RenameOptions {
                columns: IndexMap::from([("name".into(), "n".into())]),
            },
        )
        .unwrap(),
        UserMethods::cast(
            empty(),
            &CastOptions {
                columns: IndexMap::from([("amount".into(), "string".into())]),
                strict: true,
            },
        )
        .unwrap(),
        UserMethods::fill_null(
            empty(),
            &FillNullOptions {
                columns: IndexMap::from([("name".into(), json!("?"))]),
            },
        )
        .unwrap(),
        UserMethods::join(
            empty(),
            &JoinOptions {
                on: cols(&["id"]),
                left_on: vec![],
                right_on: vec![],
                how: JoinHow::Left,
                suffix: "_r".into(),
            },
            &side(),
        )
        .unwrap(),
        UserMethods::union(empty(), &UnionOptions {}, &side())
            .unwrap()
            .head(Some(0)),
        UserMethods::sql(
            empty(),
            &SqlOptions {
                query: "SELECT id FROM self".into(),
            },
            &none,
        )
        .unwrap(),
        UserMethods::sort(
            empty(),
            &SortOptions {
                by: cols(&["amount"]),
                descending: OneOrMany::One(true),
                nulls_last: false,
            },
            &none,
        )
        .unwrap(),
        UserMethods::dedupe(
            empty(),
            &DedupeOptions {
                keys: cols(&["id"]),
                keep: Keep::First,
                order_by: None,
            },
            &none,
        )
        .unwrap(),
        UserMethods::aggregate(
            empty(),
            &AggregateOptions {
                group_by: cols(&["name"]),
                aggregations: IndexMap::from([("s".into(), "sum(amount)".into())]),
            },
            &none,
        )
        .unwrap(),
    ];
    for out in outs {
        assert_eq!(out.height(), 0, "{out}");
    }
}

#[test]
fn validations_on_empty_input() {
    let none = Datasets::new();
    let e = empty();
    let checks = vec![
        UserMethods::not_null(
            &e,
            &NotNullOptions {
                columns: vec!["id".into()],
            },
            &none,
        )
        .unwrap(),
        UserMethods::unique(
            &e,
            &UniqueOptions {
                columns: vec!["id".into()],
            },
            &none,
        )
        .unwrap(),
        UserMethods::range(
            &e,
            &RangeOptions {
                column: "amount".into(),
                min: Some(json!(0)),
                max: None,
                inclusive: true,
            },
            &none,
        )
        .unwrap(),
        UserMethods::pattern(
            &e,
            &PatternOptions {
                column: "name".into(),
                regex: "^a".into(),
            },
            &none,
        )
        .unwrap(),
        UserMethods::accepted_values(
            &e,
            &AcceptedValuesOptions {
                column: "name".into(),
                values: vec![json!("a")],
            },
            &none,
        )
        .unwrap(),
        UserMethods::referential_integrity(
            &e,
            &ReferentialIntegrityOptions {
                column: "id".into(),
                reference_column: None,
            },
            &side(),
        )
        .unwrap(),
        UserMethods::schema(
            &e,
            &SchemaOptions {
                columns: IndexMap::from([("id".into(), "int64".into())]),
                allow_extra: true,
            },
            &none,
        )
        .unwrap(),
        UserMethods::row_count(
            &e,
            &RowCountOptions {
                min: None,
                max: Some(10),
            },
            &none,
        )
        .unwrap(),
        UserMethods::expression(
            &e,
            &ExpressionOptions {
                condition: "amount > 0".into(),
            },
            &none,
        )
        .unwrap(),
    ];
    for c in checks {
        assert_eq!(c.valid.len(), 0, "{}", c.rule);
        assert!(!c.table_violation, "{}", c.rule);
    }
    let times = df!("t" => Vec::<i64>::new())
        .unwrap()
        .lazy()
        .with_column(col("t").cast(DataType::Datetime(TimeUnit::Microseconds, None)))
        .collect()
        .unwrap();
    let fresh = UserMethods::freshness(
        &times,
        &FreshnessOptions {
            column: "t".into(),
            max_age: "1d".into(),
        },
        &none,
    )
    .unwrap();
    assert!(
        !fresh.table_violation,
        "no row is not stale: row_count is the rule for emptiness"
    );
}
