//! Kafka record values into typed column buffers: JSON objects by a declared schema (or one
//! inferred from the first record, then enforced), UTF-8 strings, raw bytes; plus the metadata
//! columns `_topic`, `_partition`, `_offset`, `_timestamp`, `_key` and `_headers`. A record that
//! does not fit is refused whole (nothing of it is pushed), with the reason.

use super::avro::{avro_cell, avro_type};
use super::extract::ValueFormat;
use crate::columns::{ColumnBuffer, Logical, Values, take_frame};
use apache_avro::Schema as AvroSchema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value as AvroValue;
use pipeline_base::StepError;
use pipeline_data::polars::prelude::DataFrame;
use polars_arrow::array::MutableBinaryViewArray;
use rskafka::chrono::{DateTime, NaiveDate, NaiveDateTime};
use rskafka::record::RecordAndOffset;
use serde_json::Value;

/// The type of a JSON field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldType {
    Str,
    I64,
    F64,
    Bool,
    /// `YYYY-MM-DD`.
    Date,
    /// RFC 3339 (a naive time is UTC), or milliseconds since the epoch.
    Datetime,
    /// Any JSON value, kept as its JSON text.
    Json,
}

impl FieldType {
    pub const NAMES: &'static str = "string, int64, float64, bool, date, datetime, json";

    pub fn parse(name: &str) -> Option<FieldType> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "string" | "str" | "utf8" => FieldType::Str,
            "int64" | "int" | "integer" | "long" | "i64" => FieldType::I64,
            "float64" | "float" | "double" | "f64" => FieldType::F64,
            "bool" | "boolean" => FieldType::Bool,
            "date" => FieldType::Date,
            "datetime" | "timestamp" => FieldType::Datetime,
            "json" => FieldType::Json,
            _ => return None,
        })
    }

    /// The type a value suggests (used on the first record when no schema is declared).
    fn infer(v: &Value) -> FieldType {
        match v {
            Value::Bool(_) => FieldType::Bool,
            Value::Number(n) if n.is_i64() => FieldType::I64,
            Value::Number(_) => FieldType::F64,
            Value::Object(_) | Value::Array(_) => FieldType::Json,
            Value::String(_) | Value::Null => FieldType::Str,
        }
    }

    fn buffer(self, name: &str) -> ColumnBuffer {
        let (values, logical) = match self {
            FieldType::Str | FieldType::Json => {
                (Values::Str(MutableBinaryViewArray::new()), Logical::Plain)
            }
            FieldType::I64 => (Values::I64(Vec::new()), Logical::Plain),
            FieldType::F64 => (Values::F64(Vec::new()), Logical::Plain),
            FieldType::Bool => (Values::Bool(Vec::new()), Logical::Plain),
            FieldType::Date => (Values::I32(Vec::new()), Logical::Date),
            FieldType::Datetime => (Values::I64(Vec::new()), Logical::Datetime { utc: true }),
        };
        ColumnBuffer::new(name, values, logical)
    }
}

/// One decoded value, held until the whole record has decoded.
pub(super) enum Cell {
    Null,
    Str(String),
    I64(i64),
    I32(i32),
    F64(f64),
    Bool(bool),
    Bin(Vec<u8>),
}

impl Cell {
    fn push(self, col: &mut ColumnBuffer) {
        match (self, &mut col.values) {
            (Cell::Str(s), Values::Str(v)) => v.push_value(s.as_str()),
            (Cell::I64(x), Values::I64(v)) => v.push(x),
            (Cell::I32(x), Values::I32(v)) => v.push(x),
            (Cell::F64(x), Values::F64(v)) => v.push(x),
            (Cell::Bool(x), Values::Bool(v)) => v.push(x),
            (Cell::Bin(b), Values::Bin(v)) => v.push_value(b.as_slice()),
            // NULL; and (never, as cells are made for their column's type) a mismatch: the
            // row count stays right either way.
            (_, _) => {
                col.push_null();
                return;
            }
        }
        col.validity.push(true);
    }
}

/// Converts a JSON value to a field's type; `Err` says why it does not fit.
fn cell(v: &Value, ty: FieldType) -> Result<Cell, String> {
    if v.is_null() {
        return Ok(Cell::Null);
    }
    let wrong = || format!("{} is not a {}", short(v), name(ty));
    Ok(match ty {
        FieldType::Str => match v {
            Value::String(s) => Cell::Str(s.clone()),
            Value::Number(n) => Cell::Str(n.to_string()),
            Value::Bool(b) => Cell::Str(b.to_string()),
            _ => return Err(wrong()),
        },
        FieldType::I64 => Cell::I64(v.as_i64().ok_or_else(wrong)?),
        FieldType::F64 => Cell::F64(v.as_f64().ok_or_else(wrong)?),
        FieldType::Bool => Cell::Bool(v.as_bool().ok_or_else(wrong)?),
        FieldType::Date => {
            let s = v.as_str().ok_or_else(wrong)?;
            let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| wrong())?;
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
            let days = d.signed_duration_since(epoch).num_days();
            Cell::I32(i32::try_from(days).map_err(|_| wrong())?)
        }
        FieldType::Datetime => Cell::I64(match v {
            Value::Number(n) => n
                .as_i64()
                .and_then(|ms| ms.checked_mul(1000))
                .ok_or_else(wrong)?,
            Value::String(s) => match DateTime::parse_from_rfc3339(s) {
                Ok(t) => t.timestamp_micros(),
                Err(_) => NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                    .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
                    .map_err(|_| wrong())?
                    .and_utc()
                    .timestamp_micros(),
            },
            _ => return Err(wrong()),
        }),
        FieldType::Json => Cell::Str(match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
    })
}

pub(super) fn name(ty: FieldType) -> &'static str {
    match ty {
        FieldType::Str => "string",
        FieldType::I64 => "int64",
        FieldType::F64 => "float64",
        FieldType::Bool => "bool",
        FieldType::Date => "date (YYYY-MM-DD)",
        FieldType::Datetime => "datetime (RFC 3339 or epoch milliseconds)",
        FieldType::Json => "json",
    }
}

/// A value for a message: its JSON, cut at 60 characters.
fn short(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", s.get(..at).unwrap_or_default()),
        None => s,
    }
}

/// Fills the columns of one extract step, record by record.
pub(crate) struct Decoder {
    format: ValueFormat,
    /// For `avro`: the reader of the writer schema.
    avro: Option<GenericDatumReader<'static>>,
    /// JSON fields, in column order (empty until inferred when no schema is declared).
    fields: Vec<(String, FieldType)>,
    metadata: bool,
    columns: Vec<ColumnBuffer>,
    rows: usize,
    cells: Vec<Cell>,
}

impl Decoder {
    pub fn new(format: ValueFormat, schema: Vec<(String, FieldType)>, metadata: bool) -> Self {
        let mut d = Decoder {
            format,
            avro: None,
            fields: schema,
            metadata,
            columns: Vec::new(),
            rows: 0,
            cells: Vec::new(),
        };
        if format != ValueFormat::Json || !d.fields.is_empty() {
            d.columns = d.buffers();
        }
        d
    }

    /// A decoder of Avro datums written with the record schema `avsc` (JSON text).
    pub fn avro(avsc: &str, metadata: bool) -> Result<Self, StepError> {
        let schema = AvroSchema::parse_str(avsc)
            .map_err(|e| StepError::user(format!("the Avro schema does not parse: {e}")))?;
        let AvroSchema::Record(record) = &schema else {
            return Err(StepError::user(
                "the Avro schema is not a record: each record value must be one row",
            ));
        };
        let fields = record
            .fields
            .iter()
            .map(|f| (f.name.clone(), avro_type(&f.schema)))
            .collect();
        // The reader borrows its schema for as long as the step reads: one small schema per
        // opened step is kept for the life of the process.
        let schema: &'static AvroSchema = Box::leak(Box::new(schema));
        let reader = GenericDatumReader::builder(schema)
            .build()
            .map_err(|e| StepError::user(format!("the Avro schema cannot be read with: {e}")))?;
        let mut d = Decoder::new(ValueFormat::Avro, fields, metadata);
        d.avro = Some(reader);
        Ok(d)
    }

    fn buffers(&self) -> Vec<ColumnBuffer> {
        let mut out: Vec<ColumnBuffer> = match self.format {
            ValueFormat::Json | ValueFormat::Avro => {
                self.fields.iter().map(|(n, t)| t.buffer(n)).collect()
            }
            ValueFormat::String => vec![FieldType::Str.buffer("value")],
            ValueFormat::Bytes => vec![ColumnBuffer::new(
                "value",
                Values::Bin(MutableBinaryViewArray::new()),
                Logical::Plain,
            )],
        };
        if self.metadata {
            out.push(FieldType::Str.buffer("_topic"));
            out.push(ColumnBuffer::new(
                "_partition",
                Values::I32(Vec::new()),
                Logical::Plain,
            ));
            out.push(FieldType::I64.buffer("_offset"));
            out.push(FieldType::Datetime.buffer("_timestamp"));
            out.push(FieldType::Str.buffer("_key"));
            out.push(FieldType::Str.buffer("_headers"));
        }
        out
    }

    /// Whether the columns are known (declared, or inferred from a record).
    pub fn has_columns(&self) -> bool {
        !self.columns.is_empty()
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Decodes one record; `Err` is the reason it does not fit (nothing of it was pushed).
    pub fn push(&mut self, topic: &str, partition: i32, r: &RecordAndOffset) -> Result<(), String> {
        self.cells.clear();
        let value = r.record.value.as_deref();
        match self.format {
            ValueFormat::Json => {
                let Some(bytes) = value else {
                    return Err("the record has no value (a tombstone)".into());
                };
                let parsed: Value = serde_json::from_slice(bytes)
                    .map_err(|e| format!("the value is not JSON: {e}"))?;
                let Value::Object(map) = parsed else {
                    return Err(format!(
                        "the value is not a JSON object: {}",
                        short(&parsed)
                    ));
                };
                if self.fields.is_empty() {
                    // No schema: the first record's fields and types, enforced from now on.
                    self.fields = map
                        .iter()
                        .map(|(k, v)| (k.clone(), FieldType::infer(v)))
                        .collect();
                    self.columns = self.buffers();
                }
                for (field, ty) in &self.fields {
                    let c = match map.get(field) {
                        None => Cell::Null,
                        Some(v) => {
                            cell(v, *ty).map_err(|why| format!("field \"{field}\": {why}"))?
                        }
                    };
                    self.cells.push(c);
                }
            }
            ValueFormat::Avro => {
                let (Some(bytes), Some(reader)) = (value, &self.avro) else {
                    return Err("the record has no value (a tombstone)".into());
                };
                let mut rest = bytes;
                let datum = reader
                    .read_value(&mut rest)
                    .map_err(|e| format!("the value is not an Avro datum of the schema: {e}"))?;
                if !rest.is_empty() {
                    return Err(format!(
                        "{} bytes are left after the Avro datum (another schema?)",
                        rest.len()
                    ));
                }
                let AvroValue::Record(values) = datum else {
                    return Err("the Avro value is not a record".into());
                };
                for ((field, ty), (_, v)) in self.fields.iter().zip(&values) {
                    let c = avro_cell(v, *ty).map_err(|why| format!("field \"{field}\": {why}"))?;
                    self.cells.push(c);
                }
            }
            ValueFormat::String => self.cells.push(match value {
                None => Cell::Null,
                Some(b) => Cell::Str(
                    std::str::from_utf8(b)
                        .map_err(|e| format!("the value is not UTF-8: {e}"))?
                        .to_string(),
                ),
            }),
            ValueFormat::Bytes => self.cells.push(match value {
                None => Cell::Null,
                Some(b) => Cell::Bin(b.to_vec()),
            }),
        }
        if self.metadata {
            self.cells.push(Cell::Str(topic.to_string()));
            self.cells.push(Cell::I32(partition));
            self.cells.push(Cell::I64(r.offset));
            self.cells
                .push(Cell::I64(r.record.timestamp.timestamp_micros()));
            self.cells.push(match &r.record.key {
                None => Cell::Null,
                Some(k) => Cell::Str(String::from_utf8_lossy(k).into_owned()),
            });
            let headers: serde_json::Map<String, Value> = r
                .record
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        Value::String(String::from_utf8_lossy(v).into_owned()),
                    )
                })
                .collect();
            self.cells
                .push(Cell::Str(Value::Object(headers).to_string()));
        }
        for (c, col) in self.cells.drain(..).zip(self.columns.iter_mut()) {
            c.push(col);
        }
        self.rows = self.rows.saturating_add(1);
        Ok(())
    }

    /// The rows decoded so far as a frame; the buffers start empty again.
    pub fn take_frame(&mut self) -> Result<DataFrame, StepError> {
        let rows = std::mem::take(&mut self.rows);
        take_frame(&mut self.columns, rows)
    }
}

#[cfg(test)]
mod tests {
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
}
