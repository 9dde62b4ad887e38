//! Unit tests of the kafka load module.
use super::*;

fn sink(options: serde_json::Value) -> KafkaSink {
    KafkaSink {
        step: "out".into(),
        options: serde_json::from_value(options).unwrap(),
        avro: Some(AvroWriter::Derived {
            record_name: "t".into(),
        }),
        registry: None,
        partitions: Vec::new(),
        pending: BTreeMap::new(),
        round_robin: 0,
        records: 0,
        bytes: 0,
    }
}

fn text(b: &Option<Vec<u8>>) -> String {
    String::from_utf8(b.clone().unwrap_or_default()).unwrap()
}

#[test]
fn every_type_in_a_json_value_with_key_and_headers_apart() {
    let mut df = df!(
        "id" => [1i64, 2],
        "small" => [Some(-3i8), None],
        "big" => [Some(u64::MAX), Some(0)],
        "f" => [Some(0.25f32), None],
        "raw" => [Some(&b"\x01\xff"[..]), None],
        "source" => [Some("web"), None],
    )
    .unwrap();
    let day = Int32Chunked::new("day".into(), [Some(19_782), None]).into_date();
    df.with_column(day.into_column()).unwrap();
    for (name, unit) in [
        ("at_ns", TimeUnit::Nanoseconds),
        ("at_us", TimeUnit::Microseconds),
        ("at_ms", TimeUnit::Milliseconds),
    ] {
        let per_second = match unit {
            TimeUnit::Nanoseconds => 1_000_000_000,
            TimeUnit::Microseconds => 1_000_000,
            TimeUnit::Milliseconds => 1_000,
        };
        let t = Int64Chunked::new(name.into(), [Some(1_700_000_000 * per_second), None])
            .into_datetime(unit, Some(TimeZone::UTC));
        df.with_column(t.into_column()).unwrap();
    }
    let dec = Int128Chunked::from_iter_options("price".into(), [Some(1999i128), None].into_iter())
        .into_decimal_unchecked(10, 2);
    df.with_column(dec.into_column()).unwrap();
    let s =
        sink(serde_json::json!({"topic": "t", "key_column": "id", "header_columns": ["source"]}));
    let records = s.records(&df, None).unwrap();
    assert_eq!(text(&records[0].key), "1");
    assert_eq!(records[0].headers.get("source"), Some(&b"web".to_vec()));
    assert!(records[1].headers.is_empty(), "a NULL header is left out");
    let v: serde_json::Value = serde_json::from_slice(records[0].value.as_ref().unwrap()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "small": -3, "big": 18446744073709551615u64, "f": 0.25, "raw": "01ff",
            "day": "2024-02-29", "at_ns": "2023-11-14T22:13:20.000000Z",
            "at_us": "2023-11-14T22:13:20.000000Z", "at_ms": "2023-11-14T22:13:20.000000Z",
            "price": 19.99
        })
    );
    let v: serde_json::Value = serde_json::from_slice(records[1].value.as_ref().unwrap()).unwrap();
    assert!(
        v.as_object()
            .unwrap()
            .values()
            .filter(|x| x.is_null())
            .count()
            >= 8
    );

    let nested = DataFrame::new(
        1,
        vec![Series::new("l".into(), [Series::new("".into(), [1i32])]).into_column()],
    )
    .unwrap();
    let err = s.records(&nested, None).err().unwrap();
    assert!(err.message().contains("column \"l\""), "{err}");
}

#[test]
fn one_column_values_as_text_or_bytes() {
    let df = df!("payload" => [Some("a"), None], "n" => [1i32, 2]).unwrap();
    let s = sink(serde_json::json!({"topic": "t", "format": "string", "value_column": "payload"}));
    let r = s.records(&df, None).unwrap();
    assert_eq!(
        (text(&r[0].value), r[1].value.clone()),
        ("a".to_string(), None)
    );
    assert!(r[0].key.is_none());
    let s = sink(serde_json::json!({"topic": "t", "format": "bytes", "value_column": "n"}));
    assert_eq!(text(&s.records(&df, None).unwrap()[1].value), "2");
    let bin = df!("b" => [&b"\x00\x01"[..]]).unwrap();
    let s = sink(serde_json::json!({"topic": "t", "format": "bytes", "value_column": "b"}));
    assert_eq!(s.records(&bin, None).unwrap()[0].value, Some(vec![0, 1]));
    let s = sink(serde_json::json!({"topic": "t", "format": "string", "value_column": "gone"}));
    assert!(
        s.records(&df, None)
            .err()
            .unwrap()
            .message()
            .contains("\"gone\" is not in the data")
    );
    let s = sink(serde_json::json!({"topic": "t", "key_column": "gone"}));
    assert!(
        s.records(&df, None)
            .err()
            .unwrap()
            .message()
            .contains("\"gone\" is not in the data")
    );
}

#[test]
fn options_are_checked() {
    let check = |v: serde_json::Value| {
        serde_json::from_value::<KafkaLoadOptions>(v)
            .unwrap()
            .check()
            .err()
            .map(|e| e.pointer)
    };
    assert_eq!(
        check(serde_json::json!({"topic": " "})),
        Some("/topic".into())
    );
    assert_eq!(
        check(serde_json::json!({"topic": "t", "value_column": "v"})),
        Some("/value_column".into())
    );
    assert_eq!(
        check(serde_json::json!({"topic": "t", "format": "bytes"})),
        Some("/value_column".into())
    );
    assert_eq!(
        check(serde_json::json!({"topic": "t", "format": "avro"})),
        None
    );
    assert_eq!(
        check(serde_json::json!({"topic": "t", "format": "avro", "value_column": "v"})),
        Some("/value_column".into())
    );
    assert_eq!(
        check(serde_json::json!({"topic": "t", "avro_schema": "a.avsc"})),
        Some("/avro_schema".into())
    );
    assert_eq!(
        check(serde_json::json!({"topic": "t", "batch_bytes": 10})),
        Some("/batch_bytes".into())
    );
    assert_eq!(
        check(serde_json::json!({"topic": "t", "compression": "zstd"})),
        None
    );
    for c in ["none", "gzip", "lz4", "snappy", "zstd"] {
        let o: KafkaLoadOptions =
            serde_json::from_value(serde_json::json!({"topic": "t", "compression": c})).unwrap();
        let _ = o.compression.rskafka();
    }
}
