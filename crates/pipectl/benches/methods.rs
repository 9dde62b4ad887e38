//! Micro-benchmark of the user methods on 1,000,000 generated rows (not a test): prints rows/s
//! (best of 5) for each transform and validation. Run: `cargo bench -p pipectl --bench methods`.

use indexmap::IndexMap;
use pipeline_data::Datasets;
use pipeline_data::polars::prelude::{
    DataFrame, Int64Chunked, IntoColumn, IntoSeries, TimeUnit, TimeZone, df,
};
use pipeline_methods::{
    AcceptedValuesOptions, AggregateOptions, DedupeOptions, DeriveOptions, ExpressionOptions,
    FilterOptions, FreshnessOptions, JoinHow, JoinOptions, Keep, NotNullOptions, OneOrMany,
    PatternOptions, RangeOptions, ReferentialIntegrityOptions, RowCountOptions, SchemaOptions,
    SortOptions, UniqueOptions, UserMethods,
};
use serde_json::json;
use std::time::Instant;

const ROWS: u64 = 1_000_000;

fn bench(name: &str, mut f: impl FnMut() -> usize) {
    let mut best = f64::MAX;
    let mut out = 0;
    for _ in 0..5 {
        let t = Instant::now();
        out = f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{name:<24} {:>12.0} rows/s  {:>8.2} ms  ({out} rows out)",
        ROWS as f64 / best,
        best * 1000.0
    );
}

/// Deterministic orders like `generate` makes (order_id, customer_id with 1% nulls, amount, status, created_at).
fn orders() -> DataFrame {
    let n = ROWS as i64;
    let h = |i: i64| (i.wrapping_mul(2_654_435_761) ^ (i >> 7)).rem_euclid(1_000_003);
    let statuses = ["paid", "paid", "paid", "pending", "refunded", "cancelled"];
    let created = Int64Chunked::from_vec(
        "created_at".into(),
        (0..n)
            .map(|i| 1_735_689_600_000_000 + i * 1_000_000)
            .collect(),
    )
    .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
    .into_series()
    .into_column();
    let mut df = df!(
        "order_id" => (1..=n).collect::<Vec<_>>(),
        "customer_id" => (0..n).map(|i| if h(i) % 100 == 0 { None } else { Some(1 + h(i) % 60_000) }).collect::<Vec<_>>(),
        "amount" => (0..n).map(|i| (h(i) % 100_000) as f64 / 100.0 - 50.0).collect::<Vec<_>>(),
        "status" => (0..n).map(|i| statuses[(h(i) % 6) as usize]).collect::<Vec<_>>(),
    )
    .unwrap();
    df.with_column(created).unwrap();
    df
}

fn main() {
    let orders = orders();
    let customers = df!("customer_id" => (1..=50_000i64).collect::<Vec<_>>(), "country" => (0..50_000).map(|i| ["FR", "DE", "US"][i % 3]).collect::<Vec<_>>()).unwrap();
    let side = Datasets::from([("customers".to_string(), customers)]);
    let none = Datasets::new();
    println!(
        "pipectl user methods on {ROWS} rows, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    let o = || orders.clone();
    bench("filter", || {
        UserMethods::filter(
            o(),
            &FilterOptions {
                condition: "status = 'paid' AND amount > 0".into(),
            },
        )
        .unwrap()
        .height()
    });
    let derive = DeriveOptions {
        columns: IndexMap::from([
            ("with_tax".into(), "round(amount * 1.2, 2)".into()),
            ("status".into(), "upper(status)".into()),
        ]),
    };
    bench("derive", || {
        UserMethods::derive(o(), &derive).unwrap().height()
    });
    let join = JoinOptions {
        on: vec!["customer_id".into()],
        left_on: vec![],
        right_on: vec![],
        how: JoinHow::Inner,
        suffix: "_r".into(),
    };
    bench("join (50k customers)", || {
        UserMethods::join(o(), &join, &side).unwrap().height()
    });
    let agg = AggregateOptions {
        group_by: vec!["status".into()],
        aggregations: IndexMap::from([
            ("revenue".into(), "sum(amount)".into()),
            ("n".into(), "count(*)".into()),
        ]),
    };
    bench("aggregate", || {
        UserMethods::aggregate(o(), &agg, &none).unwrap().height()
    });
    let dedupe = DedupeOptions {
        keys: vec!["customer_id".into()],
        keep: Keep::Last,
        order_by: Some("created_at".into()),
    };
    bench("dedupe", || {
        UserMethods::dedupe(o(), &dedupe, &none).unwrap().height()
    });
    let sort = SortOptions {
        by: vec!["amount".into()],
        descending: OneOrMany::One(true),
        nulls_last: true,
    };
    bench("sort", || {
        UserMethods::sort(o(), &sort, &none).unwrap().height()
    });

    let valid = |c: pipeline_data::Check| c.mask().num_trues();
    bench("not_null", || {
        valid(
            UserMethods::not_null(
                &o(),
                &NotNullOptions {
                    columns: vec!["customer_id".into()],
                },
                &none,
            )
            .unwrap(),
        )
    });
    bench("unique", || {
        valid(
            UserMethods::unique(
                &o(),
                &UniqueOptions {
                    columns: vec!["order_id".into()],
                },
                &none,
            )
            .unwrap(),
        )
    });
    let range = RangeOptions {
        column: "amount".into(),
        min: Some(json!(-1000)),
        max: Some(json!(1000)),
        inclusive: true,
    };
    bench("range", || {
        valid(UserMethods::range(&o(), &range, &none).unwrap())
    });
    let pattern = PatternOptions {
        column: "status".into(),
        regex: "^(paid|pending)$".into(),
    };
    bench("pattern", || {
        valid(UserMethods::pattern(&o(), &pattern, &none).unwrap())
    });
    let accepted = AcceptedValuesOptions {
        column: "status".into(),
        values: vec![json!("paid"), json!("pending"), json!("refunded")],
    };
    bench("accepted_values", || {
        valid(UserMethods::accepted_values(&o(), &accepted, &none).unwrap())
    });
    let refint = ReferentialIntegrityOptions {
        column: "customer_id".into(),
        reference_column: None,
    };
    bench("referential_integrity", || {
        valid(UserMethods::referential_integrity(&o(), &refint, &side).unwrap())
    });
    let schema = SchemaOptions {
        columns: IndexMap::from([
            ("order_id".into(), "int64".into()),
            ("amount".into(), "float64".into()),
        ]),
        allow_extra: true,
    };
    bench("schema", || {
        valid(UserMethods::schema(&o(), &schema, &none).unwrap())
    });
    bench("row_count", || {
        valid(
            UserMethods::row_count(
                &o(),
                &RowCountOptions {
                    min: Some(1),
                    max: None,
                },
                &none,
            )
            .unwrap(),
        )
    });
    let expression = ExpressionOptions {
        condition: "amount > 0 OR status = 'refunded'".into(),
    };
    bench("expression", || {
        valid(UserMethods::expression(&o(), &expression, &none).unwrap())
    });
    let fresh = FreshnessOptions {
        column: "created_at".into(),
        max_age: "100000d".into(),
    };
    bench("freshness", || {
        valid(UserMethods::freshness(&o(), &fresh, &none).unwrap())
    });
}
