//! Round-trip tests of the Avro conversion, including multi-chunk frames and apache-avro as an
//! independent reader.

use super::*;
use crate::batch::AvroBatch;
use apache_avro::types::Value;
use polars::prelude::*;

fn sample() -> DataFrame {
    let n = 5;
    let dt = |unit: TimeUnit, tz: Option<TimeZone>| {
        Int64Chunked::from_iter_options(
            "x".into(),
            [
                Some(1_700_000_000_123i64),
                None,
                Some(-5),
                Some(0),
                Some(42),
            ]
            .into_iter(),
        )
        .into_datetime(unit, tz)
        .into_series()
    };
    let mut cols: Vec<Column> = vec![
        Series::new(
            "i8".into(),
            [Some(-8i8), None, Some(127), Some(0), Some(-128)],
        )
        .into_column(),
        Series::new(
            "i16".into(),
            [Some(-16i16), Some(1), None, Some(0), Some(2)],
        )
        .into_column(),
        Series::new(
            "i32".into(),
            [Some(i32::MIN), Some(1), None, Some(0), Some(i32::MAX)],
        )
        .into_column(),
        Series::new(
            "i64".into(),
            [Some(i64::MIN), None, Some(3), Some(0), Some(i64::MAX)],
        )
        .into_column(),
        Series::new("u8".into(), [Some(255u8), None, Some(1), Some(0), Some(2)]).into_column(),
        Series::new(
            "u16".into(),
            [Some(65535u16), None, Some(1), Some(0), Some(2)],
        )
        .into_column(),
        Series::new(
            "u32".into(),
            [Some(u32::MAX), None, Some(1), Some(0), Some(2)],
        )
        .into_column(),
        Series::new(
            "u64".into(),
            [Some(i64::MAX as u64), None, Some(1), Some(0), Some(2)],
        )
        .into_column(),
        Series::new(
            "f32".into(),
            [
                Some(1.5f32),
                None,
                Some(f32::MAX),
                Some(-0.0),
                Some(f32::MIN_POSITIVE),
            ],
        )
        .into_column(),
        Series::new(
            "f64".into(),
            [
                Some(1.25f64),
                None,
                Some(f64::MAX),
                Some(-1e-300),
                Some(3.0),
            ],
        )
        .into_column(),
        Series::new(
            "text".into(),
            [Some("a"), None, Some("ünïcødé"), Some(""), Some("x,y\"z")],
        )
        .into_column(),
        Series::new(
            "flag".into(),
            [Some(true), None, Some(false), Some(true), Some(false)],
        )
        .into_column(),
        BinaryChunked::from_iter_options(
            "bin".into(),
            [
                Some(&b"\x00\x01"[..]),
                None,
                Some(&b""[..]),
                Some(&b"abc"[..]),
                Some(&b"\xff"[..]),
            ]
            .into_iter(),
        )
        .into_series()
        .into_column(),
        Int32Chunked::from_iter_options(
            "day".into(),
            [Some(19000), None, Some(-1), Some(0), Some(1)].into_iter(),
        )
        .into_date()
        .into_series()
        .into_column(),
        Int128Chunked::from_iter_options(
            "amount".into(),
            [
                Some(12345i128),
                None,
                Some(-1),
                Some(0),
                Some(99999999999999999999999999999999999i128),
            ]
            .into_iter(),
        )
        .into_decimal(38, 4)
        .unwrap()
        .into_series()
        .into_column(),
        Series::full_null("nothing".into(), n, &DataType::Null).into_column(),
        Series::new(
            "odd name-1".into(),
            [Some(1i32), Some(2), Some(3), Some(4), Some(5)],
        )
        .into_column(),
        Int64Chunked::from_iter_options(
            "t".into(),
            [
                Some(1_000i64),
                None,
                Some(86_399_999_999_999),
                Some(0),
                Some(5),
            ]
            .into_iter(),
        )
        .into_time()
        .into_series()
        .into_column(),
    ];
    let mut s = dt(TimeUnit::Microseconds, None);
    s.rename("ts_naive_us".into());
    cols.push(s.into_column());
    let mut s = dt(TimeUnit::Milliseconds, Some(TimeZone::UTC));
    s.rename("ts_utc_ms".into());
    cols.push(s.into_column());
    let mut s = dt(
        TimeUnit::Nanoseconds,
        TimeZone::opt_try_new(Some("Europe/Paris")).unwrap(),
    );
    s.rename("ts_paris_ns".into());
    cols.push(s.into_column());
    DataFrame::new(n, cols).unwrap()
}

#[test]
fn round_trip_is_lossless_for_every_supported_type() {
    let df = sample();
    let avro = frame_to_avro(&df, "orders").unwrap();
    assert_eq!(avro.rows(), 5);
    let back = avro_to_frame(&avro).unwrap();
    assert_eq!(back.schema(), df.schema());
    assert!(back.equals_missing(&df), "{back}\n!=\n{df}");
}

#[test]
fn apache_avro_reads_what_we_write() {
    let df = sample();
    let avro = frame_to_avro(&df, "").unwrap();
    let reader = apache_avro::Reader::new(avro.bytes()).unwrap();
    let schema = reader.writer_schema().clone();
    let apache_avro::Schema::Record(record) = schema else {
        panic!("record expected")
    };
    assert_eq!(record.name.name(), DEFAULT_RECORD_NAME);
    assert_eq!(
        record
            .fields
            .iter()
            .find(|f| f.name == "odd_name_1")
            .unwrap()
            .custom_attributes[ATTR_COLUMN],
        "odd name-1"
    );
    let rows: Vec<Value> = reader.map(Result::unwrap).collect();
    assert_eq!(rows.len(), 5);
    let Value::Record(first) = &rows[0] else {
        panic!()
    };
    let get = |n: &str| first.iter().find(|(k, _)| k == n).unwrap().1.clone();
    assert_eq!(get("i64"), Value::Union(1, Box::new(Value::Long(i64::MIN))));
    assert_eq!(
        get("text"),
        Value::Union(1, Box::new(Value::String("a".into())))
    );
    assert_eq!(get("day"), Value::Union(1, Box::new(Value::Date(19000))));
    assert_eq!(
        get("ts_naive_us"),
        Value::Union(1, Box::new(Value::LocalTimestampMicros(1_700_000_000_123)))
    );
    assert_eq!(
        get("ts_utc_ms"),
        Value::Union(1, Box::new(Value::TimestampMillis(1_700_000_000_123)))
    );
    let Value::Union(1, d) = get("amount") else {
        panic!()
    };
    let Value::Decimal(d) = *d else { panic!() };
    assert_eq!(
        Vec::<u8>::try_from(&d).unwrap(),
        12345i128.to_be_bytes()[14..].to_vec()
    );
    let Value::Record(second) = &rows[1] else {
        panic!()
    };
    assert_eq!(
        second.iter().find(|(k, _)| k == "i8").unwrap().1,
        Value::Union(0, Box::new(Value::Null))
    );
}

#[test]
fn many_chunks_round_trip() {
    // More than 131,072 rows spread over many chunks: the case that corrupts polars' own writer.
    let chunk = |start: i64| {
        let ids: Vec<i64> = (start..start + 20_000).collect();
        let names: Vec<String> = ids.iter().map(|i| format!("n{i}")).collect();
        df!("id" => ids, "name" => names).unwrap()
    };
    let mut df = chunk(0);
    for i in 1..8 {
        df.vstack_mut_owned(chunk(i * 20_000)).unwrap();
    }
    assert!(df.first_col_n_chunks() > 1);
    let back = avro_to_frame(&frame_to_avro(&df, "x").unwrap()).unwrap();
    assert_eq!(back.height(), 160_000);
    assert!(back.equals_missing(&df));
}

#[test]
fn foreign_avro_uses_the_natural_mapping() {
    let schema = apache_avro::Schema::parse_str(
        r#"{"type": "record", "name": "ev", "fields": [
            {"name": "id", "type": "long"},
            {"name": "kind", "type": {"type": "enum", "name": "k", "symbols": ["A", "B"]}},
            {"name": "at", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}]},
            {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}}
        ]}"#,
    )
    .unwrap();
    let mut w = apache_avro::Writer::new(&schema, Vec::new()).unwrap();
    w.append_value(Value::Record(vec![
        ("id".into(), Value::Long(7)),
        ("kind".into(), Value::Enum(1, "B".into())),
        (
            "at".into(),
            Value::Union(1, Box::new(Value::TimestampMicros(5))),
        ),
        (
            "price".into(),
            Value::Decimal(apache_avro::Decimal::from(vec![0xFFu8, 0x38])),
        ),
    ]))
    .unwrap();
    let df = avro_to_frame(&AvroBatch::new(w.into_inner().unwrap(), 1)).unwrap();
    assert_eq!(df.column("id").unwrap().dtype(), &DataType::Int64);
    assert_eq!(df.column("kind").unwrap().str().unwrap().get(0), Some("B"));
    assert_eq!(
        df.column("at").unwrap().dtype(),
        &DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
    );
    assert_eq!(
        df.column("price").unwrap().dtype(),
        &DataType::Decimal(10, 2)
    );
    assert_eq!(
        df.column("price")
            .unwrap()
            .decimal()
            .unwrap()
            .physical()
            .get(0),
        Some(-200)
    );
}

#[test]
fn empty_frames_and_unsupported_types() {
    let empty = df!("a" => Vec::<i64>::new()).unwrap();
    let back = avro_to_frame(&frame_to_avro(&empty, "e").unwrap()).unwrap();
    assert_eq!(back.height(), 0);
    assert_eq!(back.schema(), empty.schema());

    let list = df!("l" => [Series::new("".into(), [1i32, 2])]).unwrap();
    let err = frame_to_avro(&list, "x").err().unwrap();
    assert!(
        err.message().contains("column \"l\" has type list[i32]"),
        "{}",
        err.message()
    );
}

#[test]
fn garbage_is_a_user_error() {
    let err = avro_to_frame(&AvroBatch::new(b"not avro".to_vec(), 0))
        .err()
        .unwrap();
    assert!(err.message().starts_with("reading Avro data"));
}

/// The same records written by apache-avro without compression (our block decoder) and with
/// deflate (apache-avro's reader): the same frame, with unions in either order, enums, fixed
/// and non-nullable fields.
#[test]
fn the_block_decoder_and_apache_avro_agree() {
    let schema = apache_avro::Schema::parse_str(
        r#"{"type": "record", "name": "ev", "fields": [
            {"name": "id", "type": "long"},
            {"name": "n", "type": ["int", "null"]},
            {"name": "kind", "type": ["null", {"type": "enum", "name": "k", "symbols": ["A", "B"]}]},
            {"name": "tag", "type": {"type": "fixed", "name": "f", "size": 2}},
            {"name": "ok", "type": "boolean"},
            {"name": "x", "type": ["null", "float"]},
            {"name": "t", "type": {"type": "int", "logicalType": "time-millis"}},
            {"name": "s", "type": ["null", "string"]}
        ]}"#,
    )
    .unwrap();
    let record = |i: i64| {
        Value::Record(vec![
            ("id".into(), Value::Long(i * 1_000_003)),
            (
                "n".into(),
                if i % 3 == 0 {
                    Value::Union(1, Box::new(Value::Null))
                } else {
                    Value::Union(0, Box::new(Value::Int(i as i32 - 50)))
                },
            ),
            (
                "kind".into(),
                Value::Union(
                    1,
                    Box::new(Value::Enum(
                        (i % 2) as u32,
                        ["A", "B"][(i % 2) as usize].into(),
                    )),
                ),
            ),
            ("tag".into(), Value::Fixed(2, vec![i as u8, 7])),
            ("ok".into(), Value::Boolean(i % 5 == 0)),
            (
                "x".into(),
                Value::Union(1, Box::new(Value::Float(i as f32 / 8.0))),
            ),
            ("t".into(), Value::TimeMillis(i as i32 * 10)),
            (
                "s".into(),
                if i % 4 == 0 {
                    Value::Union(0, Box::new(Value::Null))
                } else {
                    Value::Union(1, Box::new(Value::String(format!("s{i} é"))))
                },
            ),
        ])
    };
    let write = |codec| {
        let mut w = apache_avro::Writer::with_codec(&schema, Vec::new(), codec).unwrap();
        for i in 0..2_000 {
            w.append_value(record(i)).unwrap();
        }
        w.into_inner().unwrap()
    };
    let plain = write(apache_avro::Codec::Null);
    let deflated = write(apache_avro::Codec::Deflate(Default::default()));
    let fast = super::blocks::decode(&plain)
        .unwrap()
        .expect("the fast path takes it");
    assert!(
        super::blocks::decode(&deflated).unwrap().is_none(),
        "compressed: apache-avro"
    );
    let slow = avro_to_frame(&AvroBatch::new(deflated, 0)).unwrap();
    assert_eq!(fast.height(), 2_000);
    assert_eq!(fast.schema(), slow.schema());
    assert!(fast.equals_missing(&slow), "{fast}\n{slow}");

    // Cut anywhere: an error, never a panic.
    for cut in [plain.len() - 1, plain.len() - 17, plain.len() / 2, 40] {
        let err = avro_to_frame(&AvroBatch::new(plain[..cut].to_vec(), 0)).unwrap_err();
        assert!(err.message().contains("Avro"), "{}", err.message());
    }
}

#[test]
fn batches_listing_columns_in_another_order_are_written_by_name() {
    let a = df!("id" => [1i64, 2], "amount" => [10i64, 20]).unwrap();
    let b = df!("amount" => [30i64], "id" => [3i64]).unwrap();
    let encoder = AvroEncoder::new(&a, "r").unwrap();
    let mut bytes = encoder.header();
    encoder.write_blocks(&a, &mut bytes).unwrap();
    encoder.write_blocks(&b, &mut bytes).unwrap();
    let back = avro_to_frame(&AvroBatch::new(bytes, 3)).unwrap();
    let ids: Vec<Option<i64>> = back.column("id").unwrap().i64().unwrap().iter().collect();
    assert_eq!(ids, vec![Some(1), Some(2), Some(3)]);
    let other = df!("id" => [1i64], "price" => [2i64]).unwrap();
    let err = encoder.write_blocks(&other, &mut Vec::new()).unwrap_err();
    assert!(
        err.message().contains("differ from the Avro file's"),
        "{err}"
    );
}
