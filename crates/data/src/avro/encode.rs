//! DataFrame → Avro object container.

use super::{ATTR_COLUMN, ATTR_DTYPE, avro_name};
use crate::batch::AvroBatch;
use crate::errors::PolarsResultExt;
use apache_avro::types::Value;
use apache_avro::{Decimal, Schema, Writer};
use pipeline_base::StepError;
use polars::prelude::*;
use serde_json::json;
use std::collections::HashSet;

/// Encodes a DataFrame as an Avro object container with a record schema named `record_name`.
pub fn frame_to_avro(df: &DataFrame, record_name: &str) -> Result<AvroBatch, StepError> {
    let (schema, records) = frame_to_avro_records(df, record_name)?;
    let mut writer = Writer::new(&schema, Vec::with_capacity(df.height() * 16 + 1024))
        .map_err(|e| StepError::internal(format!("creating the Avro writer: {e}")))?;
    for record in records {
        writer
            .append_value(record)
            .map_err(|e| StepError::internal(format!("writing an Avro record: {e}")))?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| StepError::internal(format!("finishing the Avro container: {e}")))?;
    Ok(AvroBatch::new(bytes, df.height()))
}

/// The record schema of a DataFrame (every column a nullable field, see the module doc) and
/// its rows as Avro record values of that schema, for writers of single datums (Kafka).
pub fn frame_to_avro_records(
    df: &DataFrame,
    record_name: &str,
) -> Result<(Schema, Vec<Value>), StepError> {
    let mut df = df.clone();
    df.rechunk_mut();
    let mut fields = Vec::with_capacity(df.width());
    let mut columns: Vec<Vec<Value>> = Vec::with_capacity(df.width());
    let mut used = HashSet::new();
    for column in df.columns() {
        let series = column.as_materialized_series();
        let original = series.name().as_str();
        let mut name = avro_name(original);
        while !used.insert(name.clone()) {
            name.push('_');
        }
        let (avro_type, tag, values) = encode_column(series)?;
        let mut field = json!({"name": name, "type": avro_type, "default": null, ATTR_DTYPE: tag});
        if name != original {
            field[ATTR_COLUMN] = json!(original);
        }
        fields.push(field);
        columns.push(values);
    }
    let record_name = if record_name.is_empty() {
        super::DEFAULT_RECORD_NAME
    } else {
        record_name
    };
    let schema_json = json!({"type": "record", "name": avro_name(record_name), "fields": fields});
    let schema = Schema::parse(&schema_json)
        .map_err(|e| StepError::internal(format!("building the Avro schema: {e}")))?;
    let names: Vec<String> = fields
        .iter()
        .map(|f| f["name"].as_str().unwrap_or_default().to_string())
        .collect();
    let mut iters: Vec<_> = columns.into_iter().map(Vec::into_iter).collect();
    let records = (0..df.height())
        .map(|_| {
            Value::Record(
                names
                    .iter()
                    .zip(iters.iter_mut())
                    .map(|(n, it)| (n.clone(), it.next().unwrap_or(Value::Null)))
                    .collect(),
            )
        })
        .collect();
    Ok((schema, records))
}

fn nullable(v: Option<Value>) -> Value {
    match v {
        Some(v) => Value::Union(1, Box::new(v)),
        None => Value::Union(0, Box::new(Value::Null)),
    }
}

fn unsupported(series: &Series) -> StepError {
    StepError::user(format!(
        "column \"{}\" has type {} which cannot be converted to Avro",
        series.name(),
        series.dtype()
    ))
    .with_hint("cast or drop the column before converting to Avro")
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

type Encoded = (serde_json::Value, String, Vec<Value>);

fn encode_column(s: &Series) -> Result<Encoded, StepError> {
    let ctx = "converting to Avro";
    let prim = |t: &str| json!(["null", t]);
    let logical = |t: &str, l: &str| json!(["null", {"type": t, "logicalType": l}]);
    let out = match s.dtype() {
        DataType::Null => (json!("null"), "null".into(), vec![Value::Null; s.len()]),
        DataType::Boolean => {
            let v = s
                .bool()
                .step_err(ctx)?
                .iter()
                .map(|o| nullable(o.map(Value::Boolean)))
                .collect();
            (prim("boolean"), "bool".into(), v)
        }
        dt @ (DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::UInt8
        | DataType::UInt16) => {
            let tag = match dt {
                DataType::Int8 => "i8",
                DataType::Int16 => "i16",
                DataType::Int32 => "i32",
                DataType::UInt8 => "u8",
                _ => "u16",
            };
            let c = s.cast(&DataType::Int32).step_err(ctx)?;
            let v = c
                .i32()
                .step_err(ctx)?
                .iter()
                .map(|o| nullable(o.map(Value::Int)))
                .collect();
            (prim("int"), tag.into(), v)
        }
        dt @ (DataType::Int64 | DataType::UInt32 | DataType::UInt64) => {
            let tag = match dt {
                DataType::Int64 => "i64",
                DataType::UInt32 => "u32",
                _ => "u64",
            };
            let c = s.strict_cast(&DataType::Int64).map_err(|_| {
                StepError::user(format!(
                    "column \"{}\" holds u64 values above the Avro long range",
                    s.name()
                ))
            })?;
            let v = c
                .i64()
                .step_err(ctx)?
                .iter()
                .map(|o| nullable(o.map(Value::Long)))
                .collect();
            (prim("long"), tag.into(), v)
        }
        DataType::Float32 => {
            let v = s
                .f32()
                .step_err(ctx)?
                .iter()
                .map(|o| nullable(o.map(Value::Float)))
                .collect();
            (prim("float"), "f32".into(), v)
        }
        DataType::Float64 => {
            let v = s
                .f64()
                .step_err(ctx)?
                .iter()
                .map(|o| nullable(o.map(Value::Double)))
                .collect();
            (prim("double"), "f64".into(), v)
        }
        DataType::String => {
            let v = s
                .str()
                .step_err(ctx)?
                .iter()
                .map(|o| nullable(o.map(|x| Value::String(x.to_string()))))
                .collect();
            (prim("string"), "str".into(), v)
        }
        DataType::Binary => {
            let v = s
                .binary()
                .step_err(ctx)?
                .iter()
                .map(|o| nullable(o.map(|x| Value::Bytes(x.to_vec()))))
                .collect();
            (prim("bytes"), "bin".into(), v)
        }
        DataType::Date => {
            let v = s
                .date()
                .step_err(ctx)?
                .physical()
                .iter()
                .map(|o| nullable(o.map(Value::Date)))
                .collect();
            (logical("int", "date"), "date".into(), v)
        }
        DataType::Time => {
            let v = s
                .time()
                .step_err(ctx)?
                .physical()
                .iter()
                .map(|o| nullable(o.map(Value::Long)))
                .collect();
            (prim("long"), "time[ns]".into(), v)
        }
        DataType::Datetime(unit, tz) => {
            let zoned = tz.is_some();
            let (logical_type, make): (&str, fn(i64) -> Value) = match (unit, zoned) {
                (TimeUnit::Milliseconds, true) => ("timestamp-millis", Value::TimestampMillis),
                (TimeUnit::Microseconds, true) => ("timestamp-micros", Value::TimestampMicros),
                (TimeUnit::Nanoseconds, true) => ("timestamp-nanos", Value::TimestampNanos),
                (TimeUnit::Milliseconds, false) => {
                    ("local-timestamp-millis", Value::LocalTimestampMillis)
                }
                (TimeUnit::Microseconds, false) => {
                    ("local-timestamp-micros", Value::LocalTimestampMicros)
                }
                (TimeUnit::Nanoseconds, false) => {
                    ("local-timestamp-nanos", Value::LocalTimestampNanos)
                }
            };
            let tag = match tz {
                Some(tz) => format!("datetime[{unit}, {tz}]"),
                None => format!("datetime[{unit}]"),
            };
            let v = s
                .datetime()
                .step_err(ctx)?
                .physical()
                .iter()
                .map(|o| nullable(o.map(make)))
                .collect();
            (logical("long", logical_type), tag, v)
        }
        DataType::Decimal(precision, scale) => {
            let (p, sc) = (*precision, *scale);
            let v = s
                .decimal()
                .step_err(ctx)?
                .physical()
                .iter()
                .map(|o| nullable(o.map(|x| Value::Decimal(Decimal::from(decimal_bytes(x))))))
                .collect();
            let t = json!(["null", {"type": "bytes", "logicalType": "decimal", "precision": p, "scale": sc}]);
            (t, format!("decimal[{p},{sc}]"), v)
        }
        _ => return Err(unsupported(s)),
    };
    Ok(out)
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
