//! Exact-frame tests of the whole-input transforms.

use super::*;

fn orders() -> DataFrame {
    df!(
        "order_id" => [1i64, 2, 3, 4, 5],
        "customer_id" => [Some(10i64), Some(20), Some(10), None, Some(30)],
        "amount" => [5.0f64, 7.5, 2.5, 1.0, 4.0],
        "status" => ["paid", "paid", "refunded", "paid", "pending"],
    )
    .unwrap()
}

fn customers() -> DataFrame {
    df!("customer_id" => [10i64, 20, 40], "country" => ["FR", "DE", "US"]).unwrap()
}

fn side(name: &str, df: DataFrame) -> Datasets {
    Datasets::from([(name.to_string(), df)])
}

#[test]
fn aggregate_groups_in_first_seen_order() {
    let o = AggregateOptions {
        group_by: vec!["status".into()],
        aggregations: IndexMap::from([
            ("revenue".into(), "sum(amount)".into()),
            ("orders".into(), "count(*)".into()),
        ]),
    };
    let out = UserMethods::aggregate(orders(), &o, &Datasets::new()).unwrap();
    let expected = df!("status" => ["paid", "refunded", "pending"], "revenue" => [13.5f64, 2.5, 4.0], "orders" => [3u32, 1, 1]).unwrap();
    assert!(
        out.equals_missing(
            &expected
                .lazy()
                .with_column(col("orders").cast(out.column("orders").unwrap().dtype().clone()))
                .collect()
                .unwrap()
        ),
        "{out}"
    );
    let whole = AggregateOptions {
        group_by: vec![],
        aggregations: IndexMap::from([("n".into(), "count(*)".into())]),
    };
    assert_eq!(
        UserMethods::aggregate(orders(), &whole, &Datasets::new())
            .unwrap()
            .height(),
        1
    );
    let empty = UserMethods::aggregate(orders().head(Some(0)), &o, &Datasets::new()).unwrap();
    assert_eq!(empty.height(), 0);
    let bad = AggregateOptions {
        group_by: vec![],
        aggregations: IndexMap::from([("x".into(), "sum(amout)".into())]),
    };
    let err = UserMethods::aggregate(orders(), &bad, &Datasets::new())
        .err()
        .unwrap();
    assert!(
        err.message()
            .contains("available columns: order_id, customer_id, amount, status"),
        "{}",
        err.message()
    );
}

#[test]
fn joins_of_every_kind() {
    let on = |how| JoinOptions {
        on: vec!["customer_id".into()],
        left_on: vec![],
        right_on: vec![],
        how,
        suffix: "_right".into(),
    };
    let s = side("customers", customers());
    let ids = |df: &DataFrame| -> Vec<Option<i64>> {
        Vec::from(df.column("order_id").unwrap().i64().unwrap())
    };
    let inner = UserMethods::join(orders(), &on(JoinHow::Inner), &s).unwrap();
    assert_eq!(ids(&inner), vec![Some(1), Some(2), Some(3)]);
    assert_eq!(
        Vec::from(inner.column("country").unwrap().str().unwrap()),
        vec![Some("FR"), Some("DE"), Some("FR")]
    );
    let left = UserMethods::join(orders(), &on(JoinHow::Left), &s).unwrap();
    assert_eq!(left.height(), 5);
    assert_eq!(left.column("country").unwrap().null_count(), 2);
    let right = UserMethods::join(orders(), &on(JoinHow::Right), &s).unwrap();
    assert_eq!(right.height(), 4);
    let full = UserMethods::join(orders(), &on(JoinHow::Full), &s).unwrap();
    assert_eq!(full.height(), 6);
    assert_eq!(
        full.column("customer_id").unwrap().null_count(),
        1,
        "keys are coalesced: {full}"
    );
    let semi = UserMethods::join(orders(), &on(JoinHow::Semi), &s).unwrap();
    assert_eq!(ids(&semi), vec![Some(1), Some(2), Some(3)]);
    assert_eq!(semi.width(), 4);
    let anti = UserMethods::join(orders(), &on(JoinHow::Anti), &s).unwrap();
    assert_eq!(ids(&anti), vec![Some(4), Some(5)]);
    let err = UserMethods::join(orders(), &on(JoinHow::Inner), &Datasets::new())
        .err()
        .unwrap();
    assert_eq!(err.message(), "join needs exactly one other input");
}

#[test]
fn union_with_an_empty_input_adds_no_rows() {
    let a = df!("id" => [1i64, 2], "x" => ["a", "b"]).unwrap();
    let mut side = side("never_filled", DataFrame::empty());
    side.insert(
        "no_rows".into(),
        df!("id" => Vec::<i64>::new(), "y" => Vec::<f64>::new()).unwrap(),
    );
    let out = UserMethods::union(a, &UnionOptions {}, &side).unwrap();
    assert_eq!(out.height(), 2, "{out}");
    assert_eq!(out.get_column_names(), ["id", "x", "y"]);
    let none = UserMethods::union(DataFrame::empty(), &UnionOptions {}, &side).unwrap();
    assert_eq!((none.height(), none.width()), (0, 2), "{none}");
}

#[test]
fn union_by_name_fills_missing_columns() {
    let a = df!("id" => [1i64], "x" => ["a"]).unwrap();
    let b = df!("y" => [2.5f64], "id" => [2i64]).unwrap();
    let out = UserMethods::union(a, &UnionOptions {}, &side("b", b)).unwrap();
    let expected =
        df!("id" => [1i64, 2], "x" => [Some("a"), None], "y" => [None, Some(2.5f64)]).unwrap();
    assert!(out.equals_missing(&expected), "{out}");
    let clash = UserMethods::union(
        df!("id" => [1i64]).unwrap(),
        &UnionOptions {},
        &side("b", df!("id" => ["x"]).unwrap()),
    );
    assert!(
        clash
            .err()
            .unwrap()
            .message()
            .contains("column \"id\" is i64 in one input and str in another")
    );
}

#[test]
fn sql_over_named_inputs() {
    let o = SqlOptions {
        query: "SELECT c.country, sum(o.amount) AS revenue FROM self o JOIN customers c ON o.customer_id = c.customer_id GROUP BY c.country ORDER BY c.country".into(),
    };
    let out = UserMethods::sql(orders(), &o, &side("customers", customers())).unwrap();
    let expected = df!("country" => ["DE", "FR"], "revenue" => [7.5f64, 7.5]).unwrap();
    assert!(out.equals_missing(&expected), "{out}");
    let err = UserMethods::sql(
        orders(),
        &SqlOptions {
            query: "SELECT * FROM nope".into(),
        },
        &Datasets::new(),
    )
    .err()
    .unwrap();
    assert!(err.message().contains("tables: self"), "{}", err.message());
}

#[test]
fn sort_and_dedupe() {
    let o = SortOptions {
        by: vec!["status".into(), "amount".into()],
        descending: OneOrMany::Many(vec![false, true]),
        nulls_last: false,
    };
    let out = UserMethods::sort(orders(), &o, &Datasets::new()).unwrap();
    assert_eq!(
        Vec::from(out.column("order_id").unwrap().i64().unwrap()),
        vec![Some(2), Some(1), Some(4), Some(5), Some(3)]
    );
    let latest = DedupeOptions {
        keys: vec!["customer_id".into()],
        keep: Keep::Last,
        order_by: Some("amount".into()),
    };
    let out = UserMethods::dedupe(orders(), &latest, &Datasets::new()).unwrap();
    let mut got: Vec<(Option<i64>, f64)> = out
        .column("customer_id")
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .zip(
            out.column("amount")
                .unwrap()
                .f64()
                .unwrap()
                .iter()
                .map(|v| v.unwrap()),
        )
        .collect();
    got.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(
        got,
        vec![
            (None, 1.0),
            (Some(10), 5.0),
            (Some(20), 7.5),
            (Some(30), 4.0)
        ]
    );
    let first = DedupeOptions {
        keys: vec!["status".into()],
        keep: Keep::First,
        order_by: None,
    };
    let out = UserMethods::dedupe(orders(), &first, &Datasets::new()).unwrap();
    assert_eq!(
        Vec::from(out.column("order_id").unwrap().i64().unwrap()),
        vec![Some(1), Some(3), Some(5)]
    );
}
