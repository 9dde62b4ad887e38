//! Unit tests of the kafka decode module.
use super::*;
use rskafka::chrono::{TimeZone, Utc};
use rskafka::record::Record;
use std::collections::BTreeMap;

fn rec(offset: i64, value: Option<&str>) -> RecordAndOffset {
    RecordAndOffset {
        record: Record {
            key: Some(b"k1".to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
            headers: BTreeMap::from([("source".to_string(), b"test".to_vec())]),
            timestamp: Utc.timestamp_millis_opt(1_700_000_000_123).unwrap(),
        },
        offset,
    }
}

#[test]
fn json_with_an_inferred_schema_is_enforced_afterwards() {
    let mut d = Decoder::new(ValueFormat::Json, vec![], true);
    d.push(
        "t",
        0,
        &rec(
            5,
            Some(r#"{"id": 1, "amount": 2.5, "tags": ["a"], "ok": true}"#),
        ),
    )
    .unwrap();
    d.push(
        "t",
        0,
        &rec(6, Some(r#"{"id": 2, "amount": 3, "ok": null}"#)),
    )
    .unwrap();
    let err = d
        .push("t", 0, &rec(7, Some(r#"{"id": "three"}"#)))
        .unwrap_err();
    assert_eq!(err, "field \"id\": \"three\" is not a int64");
    assert!(
        d.push("t", 0, &rec(8, Some("not json")))
            .unwrap_err()
            .contains("not JSON")
    );
    assert!(
        d.push("t", 0, &rec(9, None))
            .unwrap_err()
            .contains("tombstone")
    );
    let df = d.take_frame().unwrap();
    assert_eq!(df.height(), 2, "refused records leave nothing behind");
    let names: Vec<&str> = df
        .get_column_names()
        .into_iter()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "id",
            "amount",
            "tags",
            "ok",
            "_topic",
            "_partition",
            "_offset",
            "_timestamp",
            "_key",
            "_headers"
        ]
    );
    assert_eq!(
        df.column("amount").unwrap().f64().unwrap().get(1),
        Some(3.0)
    );
    assert_eq!(
        df.column("tags").unwrap().str().unwrap().get(0),
        Some("[\"a\"]")
    );
    assert_eq!(df.column("_offset").unwrap().i64().unwrap().get(1), Some(6));
    assert_eq!(
        df.column("_headers").unwrap().str().unwrap().get(0),
        Some("{\"source\":\"test\"}")
    );
}

#[test]
fn declared_types_parse_dates_and_times() {
    let schema = vec![
        ("d".to_string(), FieldType::Date),
        ("t".to_string(), FieldType::Datetime),
        ("ms".to_string(), FieldType::Datetime),
    ];
    let mut d = Decoder::new(ValueFormat::Json, schema, false);
    d.push(
        "t",
        0,
        &rec(
            0,
            Some(r#"{"d": "1970-01-02", "t": "1970-01-01T00:00:01+01:00", "ms": 1500}"#),
        ),
    )
    .unwrap();
    d.push("t", 0, &rec(1, Some(r#"{"d": "2024-02-30"}"#)))
        .unwrap_err();
    let df = d.take_frame().unwrap();
    assert_eq!(df.height(), 1);
    assert_eq!(
        df.column("d").unwrap().date().unwrap().physical().get(0),
        Some(1)
    );
    assert_eq!(
        df.column("t")
            .unwrap()
            .datetime()
            .unwrap()
            .physical()
            .get(0),
        Some(-3_599_000_000)
    );
    assert_eq!(
        df.column("ms")
            .unwrap()
            .datetime()
            .unwrap()
            .physical()
            .get(0),
        Some(1_500_000)
    );
}

#[test]
fn avro_datums_of_every_mapped_type() {
    let avsc = r#"{"type": "record", "name": "r", "fields": [
        {"name": "i", "type": "int"},
        {"name": "f", "type": "float"},
        {"name": "ok", "type": "boolean"},
        {"name": "color", "type": {"type": "enum", "name": "c", "symbols": ["RED", "BLUE"]}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "maybe", "type": ["null", "string"]},
        {"name": "either", "type": ["null", "long", "string"]},
        {"name": "tags", "type": {"type": "array", "items": "string"}}
    ]}"#;
    let schema = AvroSchema::parse_str(avsc).unwrap();
    let datum = AvroValue::Record(vec![
        ("i".into(), AvroValue::Int(7)),
        ("f".into(), AvroValue::Float(0.5)),
        ("ok".into(), AvroValue::Boolean(true)),
        ("color".into(), AvroValue::Enum(1, "BLUE".into())),
        ("day".into(), AvroValue::Date(19_782)),
        ("ms".into(), AvroValue::TimestampMillis(1_500)),
        (
            "maybe".into(),
            AvroValue::Union(0, Box::new(AvroValue::Null)),
        ),
        (
            "either".into(),
            AvroValue::Union(1, Box::new(AvroValue::Long(3))),
        ),
        (
            "tags".into(),
            AvroValue::Array(vec![AvroValue::String("a".into())]),
        ),
    ]);
    let bytes = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()
        .unwrap()
        .write_value_to_vec(datum)
        .unwrap();
    let mut d = Decoder::avro(avsc, false).unwrap();
    let mut r = rec(0, None);
    r.record.value = Some(bytes.clone());
    d.push("t", 0, &r).unwrap();
    let mut extra = bytes;
    extra.push(0);
    r.record.value = Some(extra);
    assert!(
        d.push("t", 0, &r)
            .unwrap_err()
            .contains("left after the Avro datum")
    );
    r.record.value = None;
    assert!(d.push("t", 0, &r).unwrap_err().contains("tombstone"));
    let df = d.take_frame().unwrap();
    assert_eq!(df.height(), 1);
    assert_eq!(df.column("i").unwrap().i64().unwrap().get(0), Some(7));
    assert_eq!(df.column("f").unwrap().f64().unwrap().get(0), Some(0.5));
    assert_eq!(
        df.column("color").unwrap().str().unwrap().get(0),
        Some("BLUE")
    );
    assert_eq!(
        df.column("ms")
            .unwrap()
            .datetime()
            .unwrap()
            .physical()
            .get(0),
        Some(1_500_000)
    );
    assert_eq!(df.column("maybe").unwrap().null_count(), 1);
    assert_eq!(
        df.column("either").unwrap().str().unwrap().get(0),
        Some("3")
    );
    assert_eq!(
        df.column("tags").unwrap().str().unwrap().get(0),
        Some("[\"a\"]")
    );
    assert!(Decoder::avro("{", false).is_err());
    assert!(Decoder::avro(r#""string""#, false).is_err());
    // A value of another type than the schema's column.
    assert!(avro_cell(&AvroValue::String("x".into()), FieldType::I64).is_err());
}

#[test]
fn strings_and_bytes() {
    let mut d = Decoder::new(ValueFormat::String, vec![], false);
    d.push("t", 0, &rec(0, Some("héllo"))).unwrap();
    let mut bad = rec(1, None);
    bad.record.value = Some(vec![0xff, 0xfe]);
    assert!(d.push("t", 0, &bad).unwrap_err().contains("UTF-8"));
    assert_eq!(d.take_frame().unwrap().height(), 1);
    let mut d = Decoder::new(ValueFormat::Bytes, vec![], false);
    d.push("t", 0, &bad).unwrap();
    d.push("t", 0, &rec(2, None)).unwrap();
    let df = d.take_frame().unwrap();
    assert_eq!(df.column("value").unwrap().null_count(), 1);
}
