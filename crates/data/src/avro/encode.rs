//! DataFrame → Avro: object containers written block by block straight from the columns, and
//! record values for single-datum writers (Kafka).

use super::{ATTR_COLUMN, ATTR_DTYPE, avro_name};
use crate::batch::AvroBatch;
use crate::errors::PolarsResultExt;
use apache_avro::types::Value;
use apache_avro::{Decimal, Schema};
use pipeline_base::StepError;
use polars::prelude::*;
use serde_json::json;
use std::collections::HashSet;

/// Encodes a DataFrame as an Avro object container with a record schema named `record_name`
/// (written block by block straight from the columns, see [`AvroEncoder`]).
pub fn frame_to_avro(df: &DataFrame, record_name: &str) -> Result<AvroBatch, StepError> {
    let encoder = AvroEncoder::new(df, record_name)?;
    let mut bytes = encoder.header();
    encoder.write_blocks(df, &mut bytes)?;
    Ok(AvroBatch::new(bytes, df.height()))
}

/// The record schema of a DataFrame (every column a nullable field, see the module doc) and
/// its rows as Avro record values of that schema, for writers of single datums (Kafka).
pub fn frame_to_avro_records(
    df: &DataFrame,
    record_name: &str,
) -> Result<(Schema, Vec<Value>), StepError> {
    let (schema_json, names) = record_schema(df, record_name)?;
    let schema = Schema::parse(&schema_json)
        .map_err(|e| StepError::internal(format!("building the Avro schema: {e}")))?;
    let mut df = df.clone();
    df.rechunk_mut();
    let cells = df
        .columns()
        .iter()
        .map(|c| Cells::of(c.as_materialized_series()))
        .collect::<Result<Vec<_>, _>>()?;
    let records = (0..df.height())
        .map(|i| {
            Value::Record(
                names
                    .iter()
                    .zip(&cells)
                    .map(|(n, c)| (n.clone(), c.value(i)))
                    .collect(),
            )
        })
        .collect();
    Ok((schema, records))
}

/// Rows per Avro block: a block is encoded in memory before it is written.
const BLOCK_ROWS: usize = 65_536;

/// Writes DataFrames with one schema as an Avro object container: the header once, then any
/// number of blocks, each encoded directly from the columns (no value per cell), so a file of
/// any size is written in memory bounded by a block.
pub struct AvroEncoder {
    schema_json: String,
    /// The columns, in the file's order, with their types.
    schema: SchemaRef,
    sync: [u8; 16],
}

impl AvroEncoder {
    /// An encoder for frames with the columns and types of `schema_of`.
    pub fn new(schema_of: &DataFrame, record_name: &str) -> Result<Self, StepError> {
        let (schema, _) = record_schema(schema_of, record_name)?;
        let mut sync = [0u8; 16];
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
            ^ (std::ptr::addr_of!(sync) as usize as u128);
        for (i, b) in sync.iter_mut().enumerate() {
            *b = (seed.rotate_left((i as u32).wrapping_mul(8)) as u8) ^ (i as u8).wrapping_mul(151);
        }
        Ok(AvroEncoder {
            schema_json: schema.to_string(),
            schema: schema_of.schema().clone(),
            sync,
        })
    }

    /// The container's header: magic, schema, codec (none) and sync marker.
    pub fn header(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.schema_json.len().saturating_add(64));
        out.extend_from_slice(b"Obj\x01");
        put_long(&mut out, 2);
        put_bytes(&mut out, b"avro.schema");
        put_bytes(&mut out, self.schema_json.as_bytes());
        put_bytes(&mut out, b"avro.codec");
        put_bytes(&mut out, b"null");
        put_long(&mut out, 0);
        out.extend_from_slice(&self.sync);
        out
    }

    /// One Avro datum per row of `df` (a Kafka message's value), encoded from the columns as
    /// the container's blocks are.
    pub fn datums(&self, df: &DataFrame) -> Result<Vec<Vec<u8>>, StepError> {
        let mut df = self.conform(df)?;
        df.rechunk_mut();
        let cells = df
            .columns()
            .iter()
            .map(|c| Cells::of(c.as_materialized_series()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((0..df.height())
            .map(|i| {
                let mut datum = Vec::new();
                for c in &cells {
                    c.write(i, &mut datum);
                }
                datum
            })
            .collect())
    }

    /// `df` with the encoder's columns in its order (matched by name).
    fn conform(&self, df: &DataFrame) -> Result<DataFrame, StepError> {
        Ok(if df.schema() == &self.schema {
            df.clone()
        } else {
            let reordered = df.select(self.schema.iter_names().cloned()).ok();
            match reordered.filter(|r| r.schema() == &self.schema) {
                Some(r) => r,
                None => {
                    return Err(StepError::user(format!(
                        "a batch's columns ({:?}) differ from the Avro file's ({:?})",
                        df.schema().iter().collect::<Vec<_>>(),
                        self.schema.iter().collect::<Vec<_>>()
                    ))
                    .with_hint("give every batch the same columns and types before writing Avro"));
                }
            }
        })
    }

    /// Appends `df`'s rows to `out` as blocks.
    pub fn write_blocks(&self, df: &DataFrame, out: &mut Vec<u8>) -> Result<(), StepError> {
        // Columns are matched by name (a batch may list them in another order).
        let df = &self.conform(df)?;
        let mut offset = 0usize;
        let mut block = Vec::new();
        while offset < df.height() {
            let mut part = df.slice(offset as i64, BLOCK_ROWS);
            part.rechunk_mut();
            let cells = part
                .columns()
                .iter()
                .map(|c| Cells::of(c.as_materialized_series()))
                .collect::<Result<Vec<_>, _>>()?;
            block.clear();
            for i in 0..part.height() {
                for c in &cells {
                    c.write(i, &mut block);
                }
            }
            put_long(out, part.height() as i64);
            put_long(out, block.len() as i64);
            out.extend_from_slice(&block);
            out.extend_from_slice(&self.sync);
            offset = offset.saturating_add(BLOCK_ROWS);
        }
        Ok(())
    }
}

/// Avro's variable-length zig-zag long.
fn put_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

/// The record schema of `df`'s columns (JSON) and the field names.
fn record_schema(
    df: &DataFrame,
    record_name: &str,
) -> Result<(serde_json::Value, Vec<String>), StepError> {
    let mut fields = Vec::with_capacity(df.width());
    let mut names = Vec::with_capacity(df.width());
    let mut used = HashSet::new();
    for column in df.columns() {
        let original = column.name().as_str();
        let mut name = avro_name(original);
        while !used.insert(name.clone()) {
            name.push('_');
        }
        let (avro_type, tag) = column_type(column.dtype(), column.name())?;
        let mut field = json!({"name": name, "type": avro_type, "default": null, ATTR_DTYPE: tag});
        if name != original {
            field[ATTR_COLUMN] = json!(original);
        }
        fields.push(field);
        names.push(name);
    }
    let record_name = if record_name.is_empty() {
        super::DEFAULT_RECORD_NAME
    } else {
        record_name
    };
    let schema = json!({"type": "record", "name": avro_name(record_name), "fields": fields});
    Ok((schema, names))
}

fn nullable(v: Option<Value>) -> Value {
    match v {
        Some(v) => Value::Union(1, Box::new(v)),
        None => Value::Union(0, Box::new(Value::Null)),
    }
}

/// Big-endian two's complement bytes of an i128, minimal length.
fn decimal_bytes(v: i128) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    while start < 15 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0x00 && next & 0x80 == 0) || (b == 0xFF && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    bytes[start..].to_vec()
}

/// A column's Avro type (always nullable) and its `pipectl.dtype` tag.
fn column_type(dtype: &DataType, name: &str) -> Result<(serde_json::Value, String), StepError> {
    let prim = |t: &str| json!(["null", t]);
    let logical = |t: &str, l: &str| json!(["null", {"type": t, "logicalType": l}]);
    Ok(match dtype {
        DataType::Null => (json!("null"), "null".into()),
        DataType::Boolean => (prim("boolean"), "bool".into()),
        DataType::Int8 => (prim("int"), "i8".into()),
        DataType::Int16 => (prim("int"), "i16".into()),
        DataType::Int32 => (prim("int"), "i32".into()),
        DataType::UInt8 => (prim("int"), "u8".into()),
        DataType::UInt16 => (prim("int"), "u16".into()),
        DataType::Int64 => (prim("long"), "i64".into()),
        DataType::UInt32 => (prim("long"), "u32".into()),
        DataType::UInt64 => (prim("long"), "u64".into()),
        DataType::Float32 => (prim("float"), "f32".into()),
        DataType::Float64 => (prim("double"), "f64".into()),
        DataType::String => (prim("string"), "str".into()),
        DataType::Binary => (prim("bytes"), "bin".into()),
        DataType::Date => (logical("int", "date"), "date".into()),
        DataType::Time => (prim("long"), "time[ns]".into()),
        DataType::Datetime(unit, tz) => {
            let kind = match unit {
                TimeUnit::Milliseconds => "millis",
                TimeUnit::Microseconds => "micros",
                TimeUnit::Nanoseconds => "nanos",
            };
            let local = if tz.is_some() { "" } else { "local-" };
            let tag = match tz {
                Some(tz) => format!("datetime[{unit}, {tz}]"),
                None => format!("datetime[{unit}]"),
            };
            (logical("long", &format!("{local}timestamp-{kind}")), tag)
        }
        DataType::Decimal(p, sc) => (
            json!(["null", {"type": "bytes", "logicalType": "decimal", "precision": p, "scale": sc}]),
            format!("decimal[{p},{sc}]"),
        ),
        other => {
            return Err(StepError::user(format!(
                "column \"{name}\" has type {other} which cannot be converted to Avro"
            ))
            .with_hint("cast or drop the column before converting to Avro"));
        }
    })
}

/// A column's values in the form Avro writes them (one chunk).
enum Cells<'a> {
    Null,
    Bool(Vec<Option<bool>>),
    Int(Vec<Option<i32>>, fn(i32) -> Value),
    Long(Vec<Option<i64>>, fn(i64) -> Value),
    Float(Vec<Option<f32>>),
    Double(Vec<Option<f64>>),
    Str(Vec<Option<&'a str>>),
    Bin(Vec<Option<&'a [u8]>>),
    Decimal(Vec<Option<i128>>),
}

impl<'a> Cells<'a> {
    fn of(s: &'a Series) -> Result<Self, StepError> {
        let ctx = "converting to Avro";
        Ok(match s.dtype() {
            DataType::Null => Cells::Null,
            DataType::Boolean => Cells::Bool(s.bool().step_err(ctx)?.iter().collect()),
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::UInt8
            | DataType::UInt16 => {
                let c = s.cast(&DataType::Int32).step_err(ctx)?;
                Cells::Int(c.i32().step_err(ctx)?.iter().collect(), Value::Int)
            }
            DataType::Int64 | DataType::UInt32 | DataType::UInt64 => {
                let c = s.strict_cast(&DataType::Int64).map_err(|_| {
                    StepError::user(format!(
                        "column \"{}\" holds u64 values above the Avro long range",
                        s.name()
                    ))
                })?;
                Cells::Long(c.i64().step_err(ctx)?.iter().collect(), Value::Long)
            }
            DataType::Float32 => Cells::Float(s.f32().step_err(ctx)?.iter().collect()),
            DataType::Float64 => Cells::Double(s.f64().step_err(ctx)?.iter().collect()),
            DataType::String => Cells::Str(s.str().step_err(ctx)?.iter().collect()),
            DataType::Binary => Cells::Bin(s.binary().step_err(ctx)?.iter().collect()),
            DataType::Date => Cells::Int(
                s.date().step_err(ctx)?.physical().iter().collect(),
                Value::Date,
            ),
            DataType::Time => Cells::Long(
                s.time().step_err(ctx)?.physical().iter().collect(),
                Value::Long,
            ),
            DataType::Datetime(unit, tz) => {
                let make: fn(i64) -> Value = match (unit, tz.is_some()) {
                    (TimeUnit::Milliseconds, true) => Value::TimestampMillis,
                    (TimeUnit::Microseconds, true) => Value::TimestampMicros,
                    (TimeUnit::Nanoseconds, true) => Value::TimestampNanos,
                    (TimeUnit::Milliseconds, false) => Value::LocalTimestampMillis,
                    (TimeUnit::Microseconds, false) => Value::LocalTimestampMicros,
                    (TimeUnit::Nanoseconds, false) => Value::LocalTimestampNanos,
                };
                Cells::Long(
                    s.datetime().step_err(ctx)?.physical().iter().collect(),
                    make,
                )
            }
            DataType::Decimal(_, _) => {
                Cells::Decimal(s.decimal().step_err(ctx)?.physical().iter().collect())
            }
            other => {
                return Err(column_type(other, s.name())
                    .err()
                    .unwrap_or_else(|| StepError::internal(format!("no Avro cells for {other}"))));
            }
        })
    }

    /// Row `i` in Avro's binary encoding (the union branch, then the value).
    fn write(&self, i: usize, out: &mut Vec<u8>) {
        // The union is ["null", T]: branch 0 is null (one byte 0x00), branch 1 the value (0x02).
        fn branch<'v, T>(out: &mut Vec<u8>, v: Option<&'v Option<T>>) -> Option<&'v T> {
            match v.and_then(Option::as_ref) {
                Some(x) => {
                    out.push(2);
                    Some(x)
                }
                None => {
                    out.push(0);
                    None
                }
            }
        }
        match self {
            Cells::Null => {}
            Cells::Bool(v) => {
                if let Some(b) = branch(out, v.get(i)) {
                    out.push(u8::from(*b));
                }
            }
            Cells::Int(v, _) => {
                if let Some(x) = branch(out, v.get(i)) {
                    put_long(out, i64::from(*x));
                }
            }
            Cells::Long(v, _) => {
                if let Some(x) = branch(out, v.get(i)) {
                    put_long(out, *x);
                }
            }
            Cells::Float(v) => {
                if let Some(x) = branch(out, v.get(i)) {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
            Cells::Double(v) => {
                if let Some(x) = branch(out, v.get(i)) {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
            Cells::Str(v) => {
                if let Some(x) = branch(out, v.get(i)) {
                    put_bytes(out, x.as_bytes());
                }
            }
            Cells::Bin(v) => {
                if let Some(x) = branch(out, v.get(i)) {
                    put_bytes(out, x);
                }
            }
            Cells::Decimal(v) => {
                if let Some(x) = branch(out, v.get(i)) {
                    put_bytes(out, &decimal_bytes(*x));
                }
            }
        }
    }

    /// Row `i` as an Avro value of the nullable field.
    fn value(&self, i: usize) -> Value {
        let get = |o: Option<Value>| nullable(o);
        match self {
            Cells::Null => Value::Null,
            Cells::Bool(v) => get(v.get(i).copied().flatten().map(Value::Boolean)),
            Cells::Int(v, make) => get(v.get(i).copied().flatten().map(make)),
            Cells::Long(v, make) => get(v.get(i).copied().flatten().map(make)),
            Cells::Float(v) => get(v.get(i).copied().flatten().map(Value::Float)),
            Cells::Double(v) => get(v.get(i).copied().flatten().map(Value::Double)),
            Cells::Str(v) => get(v
                .get(i)
                .copied()
                .flatten()
                .map(|s| Value::String(s.to_string()))),
            Cells::Bin(v) => get(v
                .get(i)
                .copied()
                .flatten()
                .map(|b| Value::Bytes(b.to_vec()))),
            Cells::Decimal(v) => get(v
                .get(i)
                .copied()
                .flatten()
                .map(|x| Value::Decimal(Decimal::from(decimal_bytes(x))))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::decimal_bytes;

    #[test]
    fn decimal_bytes_are_minimal_twos_complement() {
        assert_eq!(decimal_bytes(0), vec![0]);
        assert_eq!(decimal_bytes(1), vec![1]);
        assert_eq!(decimal_bytes(127), vec![127]);
        assert_eq!(decimal_bytes(128), vec![0, 128]);
        assert_eq!(decimal_bytes(-1), vec![0xFF]);
        assert_eq!(decimal_bytes(-128), vec![0x80]);
        assert_eq!(decimal_bytes(-129), vec![0xFF, 0x7F]);
    }
}
