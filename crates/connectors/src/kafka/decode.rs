//! Kafka record values into typed column buffers: JSON objects by a declared schema (or one
//! inferred from the first record, then enforced), UTF-8 strings, raw bytes; plus the metadata
//! columns `_topic`, `_partition`, `_offset`, `_timestamp`, `_key` and `_headers`. A record that
//! does not fit is refused whole (nothing of it is pushed), with the reason.

use super::avro::{avro_cell, avro_type};
use super::extract::ValueFormat;
use super::registry::split_wire;
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
use std::collections::HashMap;

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

/// The reader of the record schema `avsc` and its fields as columns. The reader borrows its
/// schema for as long as the step reads: one small schema per opened step (and writer schema
/// id) is kept for the life of the process.
fn avro_reader(
    avsc: &str,
) -> Result<(GenericDatumReader<'static>, Vec<(String, FieldType)>), StepError> {
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
    let schema: &'static AvroSchema = Box::leak(Box::new(schema));
    let reader = GenericDatumReader::builder(schema)
        .build()
        .map_err(|e| StepError::user(format!("the Avro schema cannot be read with: {e}")))?;
    Ok((reader, fields))
}

/// Fills the columns of one extract step, record by record.
pub(crate) struct Decoder {
    format: ValueFormat,
    /// For `avro`: the reader of the writer schema.
    avro: Option<GenericDatumReader<'static>>,
    /// For `avro_confluent`: a reader per writer schema id seen (fields matched by name).
    writers: HashMap<u32, GenericDatumReader<'static>>,
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
            writers: HashMap::new(),
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
        let (reader, fields) = avro_reader(avsc)?;
        let mut d = Decoder::new(ValueFormat::Avro, fields, metadata);
        d.avro = Some(reader);
        Ok(d)
    }

    /// A decoder of `avro_confluent` values whose columns are the fields of the record schema
    /// `avsc` (the reader's); each writer schema is added with [`Decoder::add_writer`].
    pub fn avro_confluent(avsc: &str, metadata: bool) -> Result<Self, StepError> {
        let (_, fields) = avro_reader(avsc)?;
        Ok(Decoder::new(ValueFormat::AvroConfluent, fields, metadata))
    }

    /// The writer schema id of an `avro_confluent` value not seen yet.
    pub fn unknown_writer(&self, r: &RecordAndOffset) -> Option<u32> {
        let bytes = r.record.value.as_deref()?;
        let (id, _) = split_wire(bytes).ok()?;
        (!self.writers.contains_key(&id)).then_some(id)
    }

    /// Adds the writer schema `avsc` of id `id`.
    pub fn add_writer(&mut self, id: u32, avsc: &str) -> Result<(), StepError> {
        let (reader, _) =
            avro_reader(avsc).map_err(|e| e.context(format!("schema id {id} of the registry")))?;
        self.writers.insert(id, reader);
        Ok(())
    }

    fn buffers(&self) -> Vec<ColumnBuffer> {
        let mut out: Vec<ColumnBuffer> = match self.format {
            ValueFormat::Json | ValueFormat::Avro | ValueFormat::AvroConfluent => {
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
            ValueFormat::Avro | ValueFormat::AvroConfluent => {
                let Some(bytes) = value else {
                    return Err("the record has no value (a tombstone)".into());
                };
                let (reader, mut rest, by_name) = match (self.format, &self.avro) {
                    (ValueFormat::AvroConfluent, _) => {
                        let (id, rest) = split_wire(bytes)?;
                        let reader = self
                            .writers
                            .get(&id)
                            .ok_or_else(|| format!("schema id {id} is not known"))?;
                        (reader, rest, true)
                    }
                    (_, Some(reader)) => (reader, bytes, false),
                    (_, None) => return Err("no Avro schema".into()),
                };
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
                if by_name {
                    // Another writer schema: its fields by name, missing ones null.
                    for (field, ty) in &self.fields {
                        let c = match values.iter().find(|(n, _)| n == field) {
                            None => Cell::Null,
                            Some((_, v)) => avro_cell(v, *ty)
                                .map_err(|why| format!("field \"{field}\": {why}"))?,
                        };
                        self.cells.push(c);
                    }
                } else {
                    for ((field, ty), (_, v)) in self.fields.iter().zip(&values) {
                        let c =
                            avro_cell(v, *ty).map_err(|why| format!("field \"{field}\": {why}"))?;
                        self.cells.push(c);
                    }
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
#[path = "decode_tests.rs"]
mod tests;
