//! Which input columns each method reads, given the columns needed of its output (see
//! `pipeline_data::needs`). A method missing here keeps every column; `schema` must (it
//! checks for extra columns), and so must methods whose output columns depend on their input
//! in ways these rules would not follow (`sql`, `rename`, `cast`, ...).

use crate::combine::{
    AggregateOptions, DedupeOptions, JoinHow, JoinOptions, SortOptions, UnionOptions,
};
use crate::{
    AcceptedValuesOptions, ExpressionOptions, FilterOptions, FreshnessOptions, NotNullOptions,
    PatternOptions, RangeOptions, ReferentialIntegrityOptions, RowCountOptions, SelectOptions,
    UniqueOptions,
};
use pipeline_data::needs::{only, with};
use pipeline_data::polars::prelude::Expr;
use pipeline_data::{Needs, OptionsError};
use std::collections::BTreeSet;

/// The columns a SQL expression reads, `None` when it may read any (a wildcard).
fn columns_of(text: &str) -> Option<BTreeSet<String>> {
    let parsed = crate::expr::parse(text, "")
        .map_err(|_: OptionsError| ())
        .ok()?;
    let mut out = BTreeSet::new();
    for node in &parsed {
        match node {
            Expr::Column(c) => {
                out.insert(c.to_string());
            }
            Expr::Selector(_) | Expr::Element => return None,
            _ => {}
        }
    }
    Some(out)
}

/// `needs` plus what `text` reads.
fn with_expr(needs: &Needs, text: &str) -> Needs {
    columns_of(text).and_then(|c| with(needs, &c))
}

pub(crate) fn aggregate(o: &AggregateOptions, _: &Needs, _: usize) -> Vec<Needs> {
    let mut main = only(&o.group_by);
    for e in o.aggregations.values() {
        main = with_expr(&main, e);
    }
    vec![main]
}

pub(crate) fn join(o: &JoinOptions, out: &Needs, _: usize) -> Vec<Needs> {
    let (l, r) = o.keys();
    // A needed `name_SUFFIX` is the other input's `name`, which keeps its suffix only while
    // the main input still has `name`: both keep it.
    let unsuffixed: Vec<String> = out
        .iter()
        .flatten()
        .filter_map(|n| n.strip_suffix(o.suffix.as_str()).map(str::to_string))
        .collect();
    let main = with(&with(out, &l), &unsuffixed);
    let other = match o.how {
        JoinHow::Semi | JoinHow::Anti => only(&r),
        _ => with(&with(out, &r), &unsuffixed),
    };
    vec![main, other]
}

pub(crate) fn union(_: &UnionOptions, out: &Needs, inputs: usize) -> Vec<Needs> {
    // Rows without any column would lose their count: keep every column then.
    let out = out.clone().filter(|n| !n.is_empty());
    vec![out; inputs]
}

pub(crate) fn select(o: &SelectOptions, _: &Needs, _: usize) -> Vec<Needs> {
    vec![only(&o.columns)]
}

pub(crate) fn filter(o: &FilterOptions, out: &Needs, _: usize) -> Vec<Needs> {
    vec![with_expr(out, &o.condition)]
}

pub(crate) fn sort(o: &SortOptions, out: &Needs, _: usize) -> Vec<Needs> {
    vec![with(out, &o.by)]
}

pub(crate) fn dedupe(o: &DedupeOptions, out: &Needs, _: usize) -> Vec<Needs> {
    vec![with(&with(out, &o.keys), &o.order_by)]
}

pub(crate) fn not_null(o: &NotNullOptions, out: &Needs, _: usize) -> Vec<Needs> {
    vec![with(out, &o.columns)]
}

pub(crate) fn unique(o: &UniqueOptions, out: &Needs, _: usize) -> Vec<Needs> {
    vec![with(out, &o.columns)]
}

pub(crate) fn range(o: &RangeOptions, out: &Needs, _: usize) -> Vec<Needs> {
    vec![with(out, [&o.column])]
}

pub(crate) fn pattern(o: &PatternOptions, out: &Needs, _: usize) -> Vec<Needs> {
    vec![with(out, [&o.column])]
}

pub(crate) fn accepted_values(o: &AcceptedValuesOptions, out: &Needs, _: usize) -> Vec<Needs> {
    vec![with(out, [&o.column])]
}

pub(crate) fn referential_integrity(
    o: &ReferentialIntegrityOptions,
    out: &Needs,
    _: usize,
) -> Vec<Needs> {
    vec![with(out, [&o.column]), only([&o.reference_column()])]
}

pub(crate) fn row_count(_: &RowCountOptions, out: &Needs, _: usize) -> Vec<Needs> {
    vec![out.clone()]
}

pub(crate) fn expression(o: &ExpressionOptions, out: &Needs, _: usize) -> Vec<Needs> {
    vec![with_expr(out, &o.condition)]
}

pub(crate) fn freshness(o: &FreshnessOptions, out: &Needs, _: usize) -> Vec<Needs> {
    vec![with(out, [&o.column])]
}

#[cfg(test)]
mod tests {
    use super::*;
    use indexmap::IndexMap;

    fn set(v: &[&str]) -> Needs {
        Some(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn aggregate_reads_its_keys_and_the_columns_of_its_expressions() {
        let o = AggregateOptions {
            group_by: vec!["country".into()],
            aggregations: IndexMap::from([
                ("r".into(), "round(sum(amount), 2)".into()),
                ("n".into(), "count(*)".into()),
            ]),
        };
        assert_eq!(aggregate(&o, &None, 1), vec![set(&["amount", "country"])]);
    }

    #[test]
    fn join_keeps_keys_and_both_sides_of_a_suffixed_column() {
        let o = JoinOptions {
            on: vec!["id".into()],
            left_on: vec![],
            right_on: vec![],
            how: JoinHow::Inner,
            suffix: "_right".into(),
        };
        let needs = join(&o, &set(&["amount", "status_right"]), 2);
        assert_eq!(needs[0], set(&["amount", "id", "status", "status_right"]));
        assert_eq!(needs[1], set(&["amount", "id", "status", "status_right"]));
        assert_eq!(join(&o, &None, 2), vec![None, None]);
        let semi = JoinOptions {
            how: JoinHow::Semi,
            ..o
        };
        assert_eq!(join(&semi, &None, 2)[1], set(&["id"]));
    }

    #[test]
    fn validations_add_their_columns_and_a_wildcard_needs_all() {
        let out = set(&["a"]);
        let o = ReferentialIntegrityOptions {
            column: "cid".into(),
            reference_column: Some("id".into()),
        };
        assert_eq!(
            referential_integrity(&o, &out, 2),
            vec![set(&["a", "cid"]), set(&["id"])]
        );
        let e = ExpressionOptions {
            condition: "amount > 0 AND status = 'paid'".into(),
        };
        assert_eq!(
            expression(&e, &out, 1),
            vec![set(&["a", "amount", "status"])]
        );
        assert_eq!(columns_of("count(*)"), Some(BTreeSet::new()));
    }
}
