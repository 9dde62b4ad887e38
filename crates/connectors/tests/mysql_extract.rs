//! The mysql extract against the local server (MariaDB natively, MySQL 8.4 under compose; each
//! test runs once per flavor and the absent one is skipped visibly): every mapped type with
//! NULLs, zero dates, parallel and consistent reads, and errors naming the column.

mod common;

use common::{read_all, step};
use mysql_async::prelude::Queryable;
use pipeline_base::StepKind;
use pipeline_connectors::entries;
use pipeline_data::polars::prelude::*;
use pipeline_testkit::{
    Env, MysqlFlavor, drop_mysql_table_on_exit, mysql_client, mysql_service, unique,
};
use rstest::rstest;
use serde_json::{Value, json};

fn extract() -> pipeline_data::MethodEntry {
    entries()
        .into_iter()
        .find(|e| e.kind == StepKind::Extract && e.name == "mysql")
        .expect("mysql extract registered")
}

async fn sql(env: &Env, statements: &str) {
    let mut conn = mysql_client(env).await;
    conn.query_drop(statements).await.expect(statements);
    let _ = conn.disconnect().await;
}

async fn read(env: &Env, options: Value) -> Result<DataFrame, pipeline_base::StepError> {
    let setup = step(env, "mysql", "mysql", json!({}), options).await;
    Ok(read_all(extract().open(setup).await?).await)
}

/// Like `read`, with errors raised while streaming returned too.
async fn try_read(env: &Env, options: Value) -> Result<usize, pipeline_base::StepError> {
    let setup = step(env, "mysql", "mysql", json!({}), options).await;
    let pipeline_data::Runtime::Source(mut source) = extract().open(setup).await? else {
        panic!("not a source")
    };
    let mut rows = 0;
    while let Some(batch) = source.next_batch().await? {
        rows += batch.rows();
    }
    Ok(rows)
}

/// `n` rows `id` = 1..=n (digits cross-joined: portable to MariaDB and MySQL 8).
fn numbers(n: u32) -> String {
    let d = "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)";
    format!(
        "SELECT 1 + a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d + 100000 * g.d AS id
         FROM {d} a, {d} b, {d} c, {d} e, {d} f, {d} g
         HAVING id <= {n}"
    )
}

#[rstest]
#[case::mariadb(MysqlFlavor::MariaDb)]
#[case::mysql84(MysqlFlavor::Mysql)]
#[tokio::test(flavor = "multi_thread")]
async fn every_mapped_type_round_trips_with_nulls(#[case] flavor: MysqlFlavor) {
    let Some(env) = mysql_service(flavor).await else {
        return;
    };
    let table = unique("my_types");
    let _drop = drop_mysql_table_on_exit(&env, &table);
    sql(
        &env,
        &format!(
            "CREATE TABLE {table} (
               b BOOL, ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
               mi MEDIUMINT, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
               f FLOAT, d DOUBLE, d12 DECIMAL(12,3), d38 DECIMAL(38,10),
               c CHAR(5), vc VARCHAR(50), tx TEXT, bn BINARY(3), vb VARBINARY(10), bl BLOB,
               dt DATE, dtm DATETIME(6), dtm0 DATETIME, ts TIMESTAMP(6) NULL DEFAULT NULL,
               tm TIME(6), yr YEAR, js JSON, en ENUM('a','b'), st SET('x','y'), bt BIT(12)
             ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
             INSERT INTO {table} VALUES
               (1, -128, 255, -32768, 65535, -8388608, -2147483648, 4294967295,
                -9223372036854775808, 18446744073709551615, 1.5, 2.25, 12345.678,
                '1234567890123456789012345678.0123456789', 'ab', 'héllo 😀', 'tab\there\nnew',
                X'0102FF', X'00', X'DEADBEEF', '2024-02-29', '2024-01-02 03:04:05.123456',
                '2024-01-02 03:04:05', '2024-01-02 03:04:05.5', '12:34:56.5', 2024, '{{\"a\": 1}}',
                'b', 'x,y', b'101'),
               (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                NULL, NULL);"
        ),
    )
    .await;
    let df = read(&env, json!({"table": table})).await.unwrap();
    assert_eq!(df.height(), 2);
    for c in df.columns() {
        assert_eq!(c.null_count(), 1, "column {}", c.name());
    }
    let dtypes: Vec<String> = df.dtypes().iter().map(|d| d.to_string()).collect();
    assert_eq!(
        dtypes,
        [
            "bool",
            "i8",
            "i16",
            "i16",
            "i32",
            "i32",
            "i32",
            "i64",
            "i64",
            "u64",
            "f32",
            "f64",
            "decimal[12,3]",
            "decimal[38,10]",
            "str",
            "str",
            "str",
            "binary",
            "binary",
            "binary",
            "date",
            "datetime[μs]",
            "datetime[μs]",
            "datetime[μs, UTC]",
            "time",
            "i16",
            "str",
            "str",
            "str",
            "u64"
        ]
    );
    let row = df.slice(0, 1);
    let text = |c: &str| row.column(c).unwrap().get(0).unwrap().to_string();
    let expect = [
        ("b", "true"),
        ("ti", "-128"),
        ("tiu", "255"),
        ("si", "-32768"),
        ("siu", "65535"),
        ("mi", "-8388608"),
        ("i", "-2147483648"),
        ("iu", "4294967295"),
        ("bi", "-9223372036854775808"),
        ("biu", "18446744073709551615"),
        ("f", "1.5"),
        ("d", "2.25"),
        ("d12", "12345.678"),
        ("d38", "1234567890123456789012345678.0123456789"),
        ("c", "\"ab\""),
        ("vc", "\"héllo 😀\""),
        ("tx", "\"tab\there\nnew\""),
        ("dt", "2024-02-29"),
        ("dtm", "2024-01-02 03:04:05.123456"),
        ("dtm0", "2024-01-02 03:04:05"),
        ("ts", "2024-01-02 03:04:05.500 UTC"),
        ("tm", "12:34:56.500"),
        ("yr", "2024"),
        ("en", "\"b\""),
        ("st", "\"x,y\""),
        ("bt", "5"),
    ];
    for (column, want) in expect {
        assert_eq!(text(column), want, "column {column}");
    }
    assert!(text("js").contains("\"a\": 1") || text("js").contains("\"a\":1"));
    let bin = |c: &str| {
        row.column(c)
            .unwrap()
            .binary()
            .unwrap()
            .get(0)
            .unwrap()
            .to_vec()
    };
    assert_eq!(bin("bn"), [1, 2, 255]);
    assert_eq!(bin("vb"), [0]);
    assert_eq!(bin("bl"), [0xde, 0xad, 0xbe, 0xef]);
}

#[rstest]
#[case::mariadb(MysqlFlavor::MariaDb)]
#[case::mysql84(MysqlFlavor::Mysql)]
#[tokio::test(flavor = "multi_thread")]
async fn zero_dates_are_read_as_null(#[case] flavor: MysqlFlavor) {
    let Some(env) = mysql_service(flavor).await else {
        return;
    };
    let table = unique("my_zero");
    let _drop = drop_mysql_table_on_exit(&env, &table);
    sql(
        &env,
        &format!(
            "SET SESSION sql_mode = '';
             CREATE TABLE {table} (id INT, d DATE, t DATETIME) ENGINE=InnoDB;
             INSERT INTO {table} VALUES (1, '0000-00-00', '0000-00-00 00:00:00'), (2, '2024-05-06', '2024-05-06 07:08:09');"
        ),
    )
    .await;
    let df = read(
        &env,
        json!({"query": format!("SELECT * FROM {table} ORDER BY id")}),
    )
    .await
    .unwrap();
    assert_eq!(df.column("d").unwrap().null_count(), 1);
    assert_eq!(df.column("t").unwrap().null_count(), 1);
    assert_eq!(
        df.column("d").unwrap().get(1).unwrap().to_string(),
        "2024-05-06"
    );
}

#[rstest]
#[case::mariadb(MysqlFlavor::MariaDb)]
#[case::mysql84(MysqlFlavor::Mysql)]
#[tokio::test(flavor = "multi_thread")]
async fn partitioned_and_consistent_reads_return_every_row_once(#[case] flavor: MysqlFlavor) {
    let Some(env) = mysql_service(flavor).await else {
        return;
    };
    let table = unique("my_part");
    let _drop = drop_mysql_table_on_exit(&env, &table);
    sql(
        &env,
        &format!(
            "CREATE TABLE {table} (id BIGINT, at DATETIME(6), d DATE, x DECIMAL(10,1)) ENGINE=InnoDB;
             INSERT INTO {table} SELECT id, TIMESTAMP('2024-01-01') + INTERVAL id MINUTE,
               DATE('2020-01-01') + INTERVAL (id % 2000) DAY, id / 2 FROM ({}) AS n;
             INSERT INTO {table} VALUES (NULL, NULL, NULL, 1);",
            numbers(100_000)
        ),
    )
    .await;
    let cases = [
        json!({"partition": {"column": "id", "partitions": 4}}),
        json!({"partition": {"column": "at", "partitions": 3}}),
        json!({"partition": {"column": "d", "partitions": 4}}),
        json!({"partition": {"column": "x", "partitions": 2}}),
        json!({"partition": {"column": "id", "partitions": 4, "lower_bound": 1000, "upper_bound": 2000}}),
        json!({"partition": {"column": "d", "partitions": 2, "lower_bound": "2020-06-01", "upper_bound": "2021-01-01"}}),
        json!({"consistent": true}),
    ];
    for extra in cases {
        let mut options = json!({"table": table, "batch_size": 7_000});
        options
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let df = read(&env, options.clone()).await.unwrap();
        assert_eq!(df.height(), 100_001, "{options}");
        let ids = df.column("id").unwrap().as_materialized_series().clone();
        assert_eq!(ids.null_count(), 1, "{options}");
        assert_eq!(ids.n_unique().unwrap(), 100_001, "{options}");
        let sum: i64 = ids.i64().unwrap().sum().unwrap();
        assert_eq!(sum, 100_000 * 100_001 / 2, "{options}");
    }
}

#[rstest]
#[case::mariadb(MysqlFlavor::MariaDb)]
#[case::mysql84(MysqlFlavor::Mysql)]
#[tokio::test(flavor = "multi_thread")]
async fn errors_name_the_column_or_the_problem(#[case] flavor: MysqlFlavor) {
    let Some(env) = mysql_service(flavor).await else {
        return;
    };
    let err = try_read(&env, json!({"query": "SELECT 1 AS ok, POINT(1, 2) AS p"}))
        .await
        .unwrap_err();
    assert!(err.message().contains("column \"p\""), "{}", err.message());
    assert!(!err.retryable());
    let err = try_read(&env, json!({"table": "no_such_table_here"}))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("no_such_table_here"),
        "{}",
        err.message()
    );
    assert!(!err.retryable());
    let err = try_read(
        &env,
        json!({"query": "SELECT TIME('30:00:00') AS long_time"}),
    )
    .await
    .unwrap_err();
    assert!(err.message().contains("long_time"), "{}", err.message());
    let errors = extract().check_options(
        &json!({"table": "customers", "consistent": true, "partition": {"column": "customer_id", "partitions": 2}}),
    );
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].pointer, "/consistent");
}

#[rstest]
#[case::mariadb(MysqlFlavor::MariaDb)]
#[case::mysql84(MysqlFlavor::Mysql)]
#[tokio::test(flavor = "multi_thread")]
async fn the_seeded_tables_read_with_their_types(#[case] flavor: MysqlFlavor) {
    let Some(env) = mysql_service(flavor).await else {
        return;
    };
    let df = read(
        &env,
        json!({"table": "customers", "columns": ["customer_id", "email", "created_at"]}),
    )
    .await
    .unwrap();
    assert!(df.height() >= 1000, "seeded customers: {}", df.height());
    let dtypes: Vec<String> = df.dtypes().iter().map(|d| d.to_string()).collect();
    assert_eq!(dtypes, ["i32", "str", "datetime[μs]"]);
    assert_eq!(df.column("customer_id").unwrap().null_count(), 0);
}
