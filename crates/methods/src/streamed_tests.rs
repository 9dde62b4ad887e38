//! The streamed methods against the in-memory ones on the same data, fed in small batches:
//! same columns, types and rows (in the same order where the in-memory method defines one),
//! including null keys, duplicate keys on the other side and empty batches.

use crate::combine::{AggregateOptions, JoinHow, JoinOptions, UnionOptions};
use crate::{ReferentialIntegrityOptions, UserMethods, partial, streamed};
use indexmap::IndexMap;
use pipeline_data::polars::prelude::*;
use pipeline_data::{Datasets, Gathers, Incremental, StepSetup};
use rstest::rstest;

fn orders() -> DataFrame {
    df!(
        "order_id" => [1i64, 2, 3, 4, 5, 6, 7, 8, 9],
        "customer_id" => [Some(10i64), Some(20), Some(10), None, Some(30), Some(40), Some(20), None, Some(10)],
        "amount" => [Some(5.0f64), Some(7.5), Some(2.5), Some(1.0), None, Some(4.25), Some(-3.0), Some(0.5), Some(1.5)],
        "status" => [Some("paid"), Some("paid"), Some("refunded"), Some("paid"), Some("pending"), None, Some("paid"), Some("pending"), Some("paid")],
        "qty" => [1i32, 2, 3, 4, 5, 6, 7, 8, 9],
    )
    .unwrap()
}

/// Customer 20 appears twice (a join emits both), 50 never matches.
fn customers() -> DataFrame {
    df!(
        "customer_id" => [10i64, 20, 40, 20, 50],
        "country" => [Some("FR"), Some("DE"), None, Some("AT"), Some("US")],
        "status" => ["gold", "silver", "gold", "bronze", "gold"],
    )
    .unwrap()
}

/// A step whose state may hold `limit` bytes before it spills.
fn setup(limit: u64) -> StepSetup {
    let mut s = StepSetup::bare("p", "t", std::path::PathBuf::from("."));
    s.memory_limit = limit;
    s
}

/// A join on `customer_id`.
fn on_customer_id(how: JoinHow, suffix: &str) -> JoinOptions {
    JoinOptions {
        on: vec!["customer_id".into()],
        left_on: vec![],
        right_on: vec![],
        how,
        suffix: suffix.into(),
    }
}

fn side(df: DataFrame) -> Datasets {
    Datasets::from([("customers".to_string(), df)])
}

/// Feeds `df` in batches of `size` rows (between empty batches) and collects the outputs.
fn run(mut state: Box<dyn Incremental>, df: &DataFrame, size: usize) -> DataFrame {
    let mut outs = Vec::new();
    outs.extend(state.push(df.clear()).unwrap());
    let mut offset = 0;
    while offset < df.height() {
        outs.extend(state.push(df.slice(offset as i64, size)).unwrap());
        offset += size;
    }
    outs.extend(state.push(df.clear()).unwrap());
    outs.extend(state.finish().unwrap());
    let mut all = outs.remove(0);
    for o in outs {
        all.vstack_mut_owned(o).unwrap();
    }
    all
}

fn sorted(df: &DataFrame) -> DataFrame {
    let names: Vec<PlSmallStr> = df.get_column_names().into_iter().cloned().collect();
    df.sort(
        names,
        SortMultipleOptions::default().with_maintain_order(true),
    )
    .unwrap()
}

fn assert_same(streamed: &DataFrame, in_memory: &DataFrame, any_order: bool) {
    assert_eq!(streamed.schema(), in_memory.schema(), "columns and types");
    let (a, b) = if any_order {
        (sorted(streamed), sorted(in_memory))
    } else {
        (streamed.clone(), in_memory.clone())
    };
    assert!(a.equals_missing(&b), "streamed:\n{a}\nin memory:\n{b}");
}

#[rstest]
#[case::inner(JoinHow::Inner)]
#[case::left(JoinHow::Left)]
#[case::semi(JoinHow::Semi)]
#[case::anti(JoinHow::Anti)]
#[case::right(JoinHow::Right)]
#[case::full(JoinHow::Full)]
fn join_streamed_equals_in_memory(#[case] how: JoinHow, #[values(1, 2, 4, 100)] size: usize) {
    let o = on_customer_id(how, "_c");
    let expected = UserMethods::join(orders(), &o, &side(customers())).unwrap();
    let state = streamed::open_join(&o, &side(customers()), &setup(u64::MAX)).unwrap();
    assert_same(&run(state, &orders(), size), &expected, true);
    assert_eq!(streamed::join_gathers(&o), Gathers::SideInputs);
}

/// Right and full joins stream too: the main input's rows come as they arrive, the other
/// input's unmatched rows at the end (every row when nothing matches).
#[rstest]
#[case::right(JoinHow::Right)]
#[case::full(JoinHow::Full)]
fn outer_join_emits_as_it_goes_and_the_unmatched_at_the_end(#[case] how: JoinHow) {
    let o = on_customer_id(how, "_c");
    let mut state = streamed::open_join(&o, &side(customers()), &setup(u64::MAX)).unwrap();
    let first = state.push(orders().slice(0, 2)).unwrap().unwrap();
    assert_eq!(
        first.height(),
        3,
        "orders 1 and 2 (twice) on the way:\n{first}"
    );
    let rest = state.finish().unwrap().unwrap();
    assert_eq!(
        rest.height(),
        2,
        "customers 40 and 50 never matched:\n{rest}"
    );
    assert_eq!(rest.column("order_id").unwrap().null_count(), 2);
    // Nothing of the main input matches: the other input comes whole at the end.
    let none = orders()
        .lazy()
        .with_column(lit(NULL).cast(DataType::Int64).alias("customer_id"));
    let none = none.collect().unwrap();
    let expected = UserMethods::join(none.clone(), &o, &side(customers())).unwrap();
    let state = streamed::open_join(&o, &side(customers()), &setup(u64::MAX)).unwrap();
    assert_same(&run(state, &none, 4), &expected, true);
}

#[rstest]
#[case::inner(JoinHow::Inner)]
#[case::left(JoinHow::Left)]
#[case::right(JoinHow::Right)]
#[case::full(JoinHow::Full)]
fn join_on_differently_named_composite_keys(#[case] how: JoinHow) {
    let main = orders()
        .lazy()
        .with_column(col("status").alias("tier"))
        .collect()
        .unwrap();
    let other = customers()
        .lazy()
        .rename(["customer_id", "status"], ["cid", "tier_name"], true)
        .collect()
        .unwrap();
    let o = JoinOptions {
        on: vec![],
        left_on: vec!["customer_id".into(), "tier".into()],
        right_on: vec!["cid".into(), "tier_name".into()],
        how,
        suffix: "_right".into(),
    };
    let main = main
        .lazy()
        .with_column(
            when(col("order_id").eq(lit(2)))
                .then(lit("silver"))
                .otherwise(col("tier"))
                .alias("tier"),
        )
        .collect()
        .unwrap();
    let expected = UserMethods::join(main.clone(), &o, &side(other.clone())).unwrap();
    let state = streamed::open_join(&o, &side(other), &setup(u64::MAX)).unwrap();
    let out = run(state, &main, 3);
    assert_same(&out, &expected, true);
    if how == JoinHow::Inner {
        assert_eq!(out.height(), 1, "only order 2 matches (20, silver):\n{out}");
    }
}

#[rstest]
fn join_with_integer_keys_of_different_widths_equals_in_memory(
    #[values(JoinHow::Inner, JoinHow::Left, JoinHow::Semi, JoinHow::Anti)] how: JoinHow,
) {
    let o = on_customer_id(how, "_right");
    let other = customers()
        .lazy()
        .with_column(col("customer_id").cast(DataType::Int32))
        .collect()
        .unwrap();
    let expected = UserMethods::join(orders(), &o, &side(other.clone())).unwrap();
    let state = streamed::open_join(&o, &side(other), &setup(u64::MAX)).unwrap();
    assert_same(&run(state, &orders(), 4), &expected, true);
}

#[test]
fn join_with_keys_of_unrelated_types_names_both() {
    let o = on_customer_id(JoinHow::Inner, "_right");
    let other = customers()
        .lazy()
        .with_column(col("customer_id").cast(DataType::String))
        .collect()
        .unwrap();
    let mut state = streamed::open_join(&o, &side(other), &setup(u64::MAX)).unwrap();
    let err = state.push(orders()).unwrap_err();
    assert!(err.message().contains("is i64 in the main input"), "{err}");
}

#[rstest]
fn union_streamed_equals_in_memory(#[values(1, 4, 100)] size: usize) {
    let other = df!("order_id" => [100i64], "extra" => ["x"], "amount" => [Some(1.0f64)]).unwrap();
    let expected = UserMethods::union(orders(), &UnionOptions {}, &side(other.clone())).unwrap();
    let state = streamed::open_union(&UnionOptions {}, &side(other), &setup(u64::MAX)).unwrap();
    assert_same(&run(state, &orders(), size), &expected, false);
}

#[rstest]
#[case::same_name(None)]
#[case::other_name(Some("cid"))]
fn referential_integrity_streamed_equals_in_memory(#[case] reference: Option<&str>) {
    let o = ReferentialIntegrityOptions {
        column: "customer_id".into(),
        reference_column: reference.map(str::to_string),
    };
    let other = match reference {
        Some(name) => customers()
            .lazy()
            .rename(["customer_id"], [name], true)
            .collect()
            .unwrap(),
        None => customers(),
    };
    let side = side(other);
    let expected = UserMethods::referential_integrity(&orders(), &o, &side).unwrap();
    let prepared = UserMethods::reference(&o, &side).unwrap();
    for size in [1, 3, 9] {
        let mut valid: Vec<bool> = Vec::new();
        let mut offset = 0;
        while offset < orders().height() {
            let batch = orders().slice(offset as i64, size);
            let check = UserMethods::referential_integrity_streamed(&batch, &o, &prepared).unwrap();
            assert_eq!(check.rule, expected.rule);
            valid.extend(check.mask().iter().map(|v| v.unwrap_or(false)));
            offset += size;
        }
        let expected: Vec<bool> = expected.mask().iter().map(|v| v.unwrap_or(false)).collect();
        assert_eq!(valid, expected);
        assert_eq!(
            valid,
            vec![true, true, true, false, false, true, true, false, true]
        );
    }
}

fn aggregate(group_by: &[&str], aggregations: &[(&str, &str)]) -> AggregateOptions {
    AggregateOptions {
        group_by: group_by.iter().map(|s| s.to_string()).collect(),
        aggregations: aggregations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<IndexMap<_, _>>(),
    }
}

#[rstest]
#[case::sums_and_counts(&["status"], &[("revenue", "sum(amount)"), ("orders", "count(*)"), ("with_amount", "count(amount)")])]
#[case::rounded(&["status"], &[("revenue", "round(sum(amount), 2)"), ("avg", "avg(amount)")])]
#[case::min_max_first_last(&["customer_id"], &[("lo", "min(amount)"), ("hi", "max(qty)"), ("first", "first(order_id)"), ("last", "last(order_id)")])]
#[case::arithmetic_over_aggregates(&["status", "customer_id"], &[("per_order", "sum(amount) / count(*)"), ("q", "sum(qty) * 2 + 1")])]
#[case::group_without_values(&["customer_id"], &[("revenue", "sum(amount)"), ("avg", "avg(amount)"), ("n", "count(amount)")])]
#[case::integer_mean(&["status"], &[("mean_qty", "avg(qty)")])]
#[case::no_group(&[], &[("revenue", "sum(amount)"), ("n", "count(*)"), ("lo", "min(status)"), ("first", "first(order_id)"), ("last", "last(order_id)")])]
#[case::inside_expression(&["status"], &[("big", "sum(CASE WHEN amount > 2 THEN 1 ELSE 0 END)")])]
fn aggregate_in_partials_equals_in_memory(
    #[case] group_by: &[&str],
    #[case] aggregations: &[(&str, &str)],
    #[values(1, 2, 5, 100)] size: usize,
) {
    let o = aggregate(group_by, aggregations);
    assert_eq!(
        partial::aggregate_gathers(&o),
        Gathers::Groups,
        "decomposes"
    );
    let expected = UserMethods::aggregate(orders(), &o, &Datasets::new()).unwrap();
    let state = partial::open_aggregate(&o, &Datasets::new(), &setup(u64::MAX)).unwrap();
    assert_same(&run(state, &orders(), size), &expected, false);
}

#[rstest]
#[case::median(&[("m", "median(amount)")])]
#[case::distinct(&[("n", "count(DISTINCT customer_id)")])]
#[case::bare_column(&[("a", "amount")])]
#[case::nested(&[("s", "sum(amount - avg(amount))")])]
#[case::constant(&[("c", "sum(1)")])]
fn aggregate_that_does_not_decompose_holds_by_key_and_still_matches(
    #[case] aggregations: &[(&str, &str)],
    #[values(&["status"][..], &["customer_id", "status"][..])] group_by: &[&str],
    #[values(u64::MAX, 1)] limit: u64,
) {
    let o = aggregate(group_by, aggregations);
    assert_eq!(partial::aggregate_gathers(&o), Gathers::Partitioned);
    let expected = UserMethods::aggregate(orders(), &o, &Datasets::new()).unwrap();
    let state = partial::open_aggregate(&o, &Datasets::new(), &setup(limit)).unwrap();
    let (out, spilled) = run_spilled(state, &orders(), 2);
    // Same groups in the same order (first appearance), null keys included.
    assert_same(&out, &expected, false);
    assert_eq!(spilled > 0, limit == 1, "spilled {spilled} bytes");
}

#[test]
fn aggregate_that_does_not_decompose_without_group_by_gathers() {
    let o = aggregate(&[], &[("m", "median(amount)")]);
    assert_eq!(partial::aggregate_gathers(&o), Gathers::Everything);
    let expected = UserMethods::aggregate(orders(), &o, &Datasets::new()).unwrap();
    let state = partial::open_aggregate(&o, &Datasets::new(), &setup(1)).unwrap();
    assert_same(&run(state, &orders(), 2), &expected, false);
}

/// As [`run`], with the bytes the state spilled.
fn run_spilled(mut state: Box<dyn Incremental>, df: &DataFrame, size: usize) -> (DataFrame, u64) {
    let mut outs = Vec::new();
    let mut offset = 0;
    while offset < df.height() {
        outs.extend(state.push(df.slice(offset as i64, size)).unwrap());
        offset += size;
    }
    outs.extend(state.finish().unwrap());
    let spilled = state.spilled_bytes();
    let mut all = outs.remove(0);
    for o in outs {
        all.vstack_mut_owned(o).unwrap();
    }
    (all, spilled)
}

#[test]
fn aggregate_over_many_batches_merges_its_partials() {
    // 40 batches: the partial rows are merged (every 16) several times on the way.
    let big = DataFrame::new(
        400,
        vec![
            Column::new("g".into(), (0..400i64).map(|i| i % 7).collect::<Vec<_>>()),
            Column::new("v".into(), (0..400i64).collect::<Vec<_>>()),
        ],
    )
    .unwrap();
    let o = aggregate(
        &["g"],
        &[("s", "sum(v)"), ("n", "count(*)"), ("hi", "max(v)")],
    );
    let expected = UserMethods::aggregate(big.clone(), &o, &Datasets::new()).unwrap();
    let state = partial::open_aggregate(&o, &Datasets::new(), &setup(u64::MAX)).unwrap();
    assert_same(&run(state, &big, 10), &expected, false);
}

#[test]
fn mean_of_a_non_numeric_column_gathers() {
    let o = aggregate(&["status"], &[("m", "max(order_id)"), ("d", "avg(status)")]);
    let expected = UserMethods::aggregate(orders(), &o, &Datasets::new());
    let state = partial::open_aggregate(&o, &Datasets::new(), &setup(u64::MAX)).unwrap();
    let mut state = state;
    let got = state.push(orders()).and_then(|_| state.finish());
    assert_eq!(got.is_ok(), expected.is_ok(), "same verdict as in memory");
}

/// A side input whose text payload repeats (held dictionary-encoded) joins to the same rows.
#[rstest]
#[case::inner(JoinHow::Inner)]
#[case::left(JoinHow::Left)]
#[case::full(JoinHow::Full)]
fn join_with_a_repetitive_text_payload_equals_in_memory(#[case] how: JoinHow) {
    let countries = [
        Some("FR"),
        None,
        Some("a long country name, past twelve bytes"),
        Some("DE"),
    ];
    let other = df!(
        "customer_id" => (0..400i64).collect::<Vec<_>>(),
        "country" => (0..400).map(|i| countries[i % 4]).collect::<Vec<_>>(),
    )
    .unwrap();
    let main = df!(
        "order_id" => (0..1000i64).collect::<Vec<_>>(),
        "customer_id" => (0..1000i64).map(|i| (i * 7) % 450).collect::<Vec<_>>(),
    )
    .unwrap();
    let o = on_customer_id(how, "_right");
    let expected = UserMethods::join(main.clone(), &o, &side(other.clone())).unwrap();
    let state = streamed::open_join(&o, &side(other), &setup(u64::MAX)).unwrap();
    assert_same(&run(state, &main, 64), &expected, true);
}
