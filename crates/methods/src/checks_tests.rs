//! Tests of the validations: exact masks, nulls, empty input, error messages.

use super::*;

fn frame() -> DataFrame {
    df!(
        "id" => [1i64, 2, 2, 3, 4],
        "email" => [Some("a@x.io"), Some("bad"), None, Some("c@y.org"), Some("d@z.fr")],
        "amount" => [Some(5.0f64), Some(-1.0), Some(10.0), None, Some(100.0)],
        "status" => ["paid", "paid", "weird", "pending", "refunded"],
    )
    .unwrap()
}

fn valid(check: &Check) -> Vec<bool> {
    check.mask().iter().map(|v| v.unwrap_or(false)).collect()
}

#[test]
fn unique_marks_every_repeat() {
    let c = UserMethods::unique(
        &frame(),
        &UniqueOptions {
            columns: vec!["id".into()],
        },
        &Datasets::new(),
    )
    .unwrap();
    assert_eq!(c.rule, "unique(id)");
    assert_eq!(valid(&c), vec![true, false, false, true, true]);
    let composite = UserMethods::unique(
        &frame(),
        &UniqueOptions {
            columns: vec!["id".into(), "status".into()],
        },
        &Datasets::new(),
    )
    .unwrap();
    assert_eq!(valid(&composite), vec![true; 5]);
}

#[test]
fn range_inclusive_exclusive_and_nulls() {
    let o = RangeOptions {
        column: "amount".into(),
        min: Some(serde_json::json!(0)),
        max: Some(serde_json::json!(10)),
        inclusive: true,
    };
    let c = UserMethods::range(&frame(), &o, &Datasets::new()).unwrap();
    assert_eq!(valid(&c), vec![true, false, true, false, false]);
    let exclusive = RangeOptions {
        inclusive: false,
        ..o
    };
    assert_eq!(
        valid(&UserMethods::range(&frame(), &exclusive, &Datasets::new()).unwrap()),
        vec![true, false, false, false, false]
    );
    let err = UserMethods::range(
        &frame(),
        &RangeOptions {
            column: "amout".into(),
            min: None,
            max: Some(serde_json::json!(1)),
            inclusive: true,
        },
        &Datasets::new(),
    )
    .err()
    .unwrap();
    assert_eq!(err.hint(), Some("did you mean \"amount\"?"));
}

#[test]
fn pattern_and_accepted_values() {
    let p = PatternOptions {
        column: "email".into(),
        regex: r"^[^@]+@[^@]+\.[a-z]+$".into(),
    };
    assert_eq!(
        valid(&UserMethods::pattern(&frame(), &p, &Datasets::new()).unwrap()),
        vec![true, false, false, true, true]
    );
    assert!(
        PatternOptions {
            column: "email".into(),
            regex: "(".into()
        }
        .check()
        .is_err()
    );
    let a = AcceptedValuesOptions {
        column: "status".into(),
        values: vec![
            serde_json::json!("paid"),
            serde_json::json!("pending"),
            serde_json::json!("refunded"),
        ],
    };
    assert_eq!(
        valid(&UserMethods::accepted_values(&frame(), &a, &Datasets::new()).unwrap()),
        vec![true, true, false, true, true]
    );
}

#[test]
fn referential_integrity_against_another_input() {
    let customers = Datasets::from([("customers".to_string(), df!("id" => [1i32, 3]).unwrap())]);
    let o = ReferentialIntegrityOptions {
        column: "id".into(),
        reference_column: None,
    };
    let c = UserMethods::referential_integrity(&frame(), &o, &customers).unwrap();
    assert_eq!(c.rule, "referential_integrity(id -> customers.id)");
    assert_eq!(valid(&c), vec![true, false, false, true, false]);
}

#[test]
fn table_rules() {
    let s = SchemaOptions {
        columns: IndexMap::from([
            ("id".into(), "int64".into()),
            ("amount".into(), "string".into()),
        ]),
        allow_extra: false,
    };
    let c = UserMethods::schema(&frame(), &s, &Datasets::new()).unwrap();
    assert!(c.table_violation);
    assert_eq!(
        c.rule,
        "schema: column amount is f64, expected str; unexpected column email; unexpected column status"
    );
    let ok = SchemaOptions {
        columns: IndexMap::from([("id".into(), "int64".into())]),
        allow_extra: true,
    };
    assert!(
        !UserMethods::schema(&frame(), &ok, &Datasets::new())
            .unwrap()
            .table_violation
    );

    let empty = frame().head(Some(0));
    let rc = UserMethods::row_count(
        &empty,
        &RowCountOptions {
            min: Some(1),
            max: None,
        },
        &Datasets::new(),
    )
    .unwrap();
    assert!(rc.table_violation, "zero rows must fail min=1");
    assert_eq!(rc.rule, "row_count: 0 rows, fewer than 1");

    let recent = df!("t" => [Some(0i64), None])
        .unwrap()
        .lazy()
        .with_column(
            (lit(std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros() as i64)
                - col("t"))
            .cast(DataType::Datetime(TimeUnit::Microseconds, None))
            .alias("t"),
        )
        .collect()
        .unwrap();
    let f = FreshnessOptions {
        column: "t".into(),
        max_age: "1h".into(),
    };
    assert!(
        !UserMethods::freshness(&recent, &f, &Datasets::new())
            .unwrap()
            .table_violation
    );
    let old = df!("t" => [0i64])
        .unwrap()
        .lazy()
        .with_column(col("t").cast(DataType::Datetime(TimeUnit::Microseconds, None)))
        .collect()
        .unwrap();
    let stale = UserMethods::freshness(&old, &f, &Datasets::new()).unwrap();
    assert!(
        stale.table_violation && stale.rule.starts_with("freshness(t, 1h): newest value is"),
        "{}",
        stale.rule
    );
    assert!(
        FreshnessOptions {
            column: "t".into(),
            max_age: "1 fortnight".into()
        }
        .check()
        .is_err()
    );
    // Overflowing ages are refused (they once panicked in debug and wrapped in release).
    for age in [
        "200000000d",
        "9223372036854775807s",
        "99999999999999999999h",
    ] {
        assert!(
            FreshnessOptions {
                column: "t".into(),
                max_age: age.into()
            }
            .check()
            .is_err(),
            "{age}"
        );
    }
}

#[test]
fn expression_rows_and_errors() {
    let e = ExpressionOptions {
        condition: "amount >= 0 OR status = 'refunded'".into(),
    };
    assert_eq!(
        valid(&UserMethods::expression(&frame(), &e, &Datasets::new()).unwrap()),
        vec![true, false, true, false, true]
    );
    let not_bool = ExpressionOptions {
        condition: "amount + 1".into(),
    };
    let err = UserMethods::expression(&frame(), &not_bool, &Datasets::new())
        .err()
        .unwrap();
    assert_eq!(
        err.message(),
        "condition \"amount + 1\" is not a boolean expression"
    );
}
