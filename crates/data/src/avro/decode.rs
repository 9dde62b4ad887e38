//! Avro object container → DataFrame.

use super::{ATTR_COLUMN, ATTR_DTYPE};
use crate::batch::AvroBatch;
use crate::errors::PolarsResultExt;
use apache_avro::schema::RecordField;
use apache_avro::types::Value;
use apache_avro::{Reader, Schema};
use pipeline_base::StepError;
use polars::prelude::*;

/// What a field decodes to before the final cast.
pub(super) enum Builder {
    Null(usize),
    Bool(Vec<Option<bool>>),
    I32(Vec<Option<i32>>),
    I64(Vec<Option<i64>>),
    F32(Vec<Option<f32>>),
    F64(Vec<Option<f64>>),
    Str(Vec<Option<String>>),
    Bin(Vec<Option<Vec<u8>>>),
    I128(Vec<Option<i128>>),
}

pub(super) struct Field {
    pub(super) name: String,
    pub(super) target: DataType,
    pub(super) builder: Builder,
}

pub(super) fn bad(field: &str, what: impl std::fmt::Display) -> StepError {
    StepError::user(format!("Avro field \"{field}\": {what}"))
}

/// Decodes an Avro object container into a DataFrame.
pub fn avro_to_frame(batch: &AvroBatch) -> Result<DataFrame, StepError> {
    if let Some(df) = super::blocks::decode(batch.bytes())? {
        return Ok(df);
    }
    let reader = Reader::new(batch.bytes())
        .map_err(|e| StepError::user(format!("reading Avro data: {e}")))?;
    let Schema::Record(record) = reader.writer_schema().clone() else {
        return Err(StepError::user(
            "Avro data whose schema is not a record cannot become a DataFrame",
        ));
    };
    let mut fields: Vec<Field> = record
        .fields
        .iter()
        .map(field_plan)
        .collect::<Result<_, _>>()?;
    for value in reader {
        let value = value.map_err(|e| StepError::user(format!("reading an Avro record: {e}")))?;
        let Value::Record(values) = value else {
            return Err(StepError::user("an Avro datum is not a record"));
        };
        for (field, (_, v)) in fields.iter_mut().zip(values) {
            push(field, v)?;
        }
    }
    let height = fields.first().map(len).unwrap_or(batch.rows());
    let columns = fields
        .into_iter()
        .map(finish)
        .collect::<Result<Vec<_>, _>>()?;
    DataFrame::new(height, columns).step_err("building a DataFrame from Avro")
}

pub(super) fn len(f: &Field) -> usize {
    match &f.builder {
        Builder::Null(n) => *n,
        Builder::Bool(v) => v.len(),
        Builder::I32(v) => v.len(),
        Builder::I64(v) => v.len(),
        Builder::F32(v) => v.len(),
        Builder::F64(v) => v.len(),
        Builder::Str(v) => v.len(),
        Builder::Bin(v) => v.len(),
        Builder::I128(v) => v.len(),
    }
}

/// The non-null branch of `["null", T]`, or the schema itself.
fn strip_null(schema: &Schema) -> Result<&Schema, String> {
    match schema {
        Schema::Union(u) => {
            let non_null: Vec<&Schema> = u
                .variants()
                .iter()
                .filter(|s| !matches!(s, Schema::Null))
                .collect();
            match non_null.as_slice() {
                [one] => Ok(one),
                [] => Ok(&Schema::Null),
                _ => Err("unions of several non-null types are not supported".into()),
            }
        }
        other => Ok(other),
    }
}

fn parse_unit(unit: &str) -> Option<TimeUnit> {
    match unit {
        "ms" => Some(TimeUnit::Milliseconds),
        "μs" | "us" => Some(TimeUnit::Microseconds),
        "ns" => Some(TimeUnit::Nanoseconds),
        _ => None,
    }
}

/// Parses the `pipectl.dtype` tag written by the encoder.
fn parse_tag(tag: &str) -> Option<DataType> {
    Some(match tag {
        "null" => DataType::Null,
        "bool" => DataType::Boolean,
        "i8" => DataType::Int8,
        "i16" => DataType::Int16,
        "i32" => DataType::Int32,
        "i64" => DataType::Int64,
        "u8" => DataType::UInt8,
        "u16" => DataType::UInt16,
        "u32" => DataType::UInt32,
        "u64" => DataType::UInt64,
        "f32" => DataType::Float32,
        "f64" => DataType::Float64,
        "str" => DataType::String,
        "bin" => DataType::Binary,
        "date" => DataType::Date,
        "time[ns]" => DataType::Time,
        _ => {
            if let Some(inner) = tag
                .strip_prefix("datetime[")
                .and_then(|t| t.strip_suffix(']'))
            {
                let (unit, tz) = match inner.split_once(", ") {
                    Some((u, tz)) => (u, Some(tz)),
                    None => (inner, None),
                };
                let tz = TimeZone::opt_try_new(tz).ok()?;
                DataType::Datetime(parse_unit(unit)?, tz)
            } else if let Some(inner) = tag
                .strip_prefix("decimal[")
                .and_then(|t| t.strip_suffix(']'))
            {
                let (p, s) = inner.split_once(',')?;
                DataType::Decimal(p.trim().parse().ok()?, s.trim().parse().ok()?)
            } else {
                return None;
            }
        }
    })
}

pub(super) fn field_plan(f: &RecordField) -> Result<Field, StepError> {
    let name = match f.custom_attributes.get(ATTR_COLUMN) {
        Some(serde_json::Value::String(original)) => original.clone(),
        _ => f.name.clone(),
    };
    let schema = strip_null(&f.schema).map_err(|e| bad(&name, e))?;
    let utc = || Some(TimeZone::UTC);
    let (natural, builder) = match schema {
        Schema::Null => (DataType::Null, Builder::Null(0)),
        Schema::Boolean => (DataType::Boolean, Builder::Bool(vec![])),
        Schema::Int => (DataType::Int32, Builder::I32(vec![])),
        Schema::Long => (DataType::Int64, Builder::I64(vec![])),
        Schema::Float => (DataType::Float32, Builder::F32(vec![])),
        Schema::Double => (DataType::Float64, Builder::F64(vec![])),
        Schema::String | Schema::Uuid(_) | Schema::Enum(_) => {
            (DataType::String, Builder::Str(vec![]))
        }
        Schema::Bytes | Schema::Fixed(_) => (DataType::Binary, Builder::Bin(vec![])),
        Schema::Date => (DataType::Date, Builder::I32(vec![])),
        Schema::TimeMillis | Schema::TimeMicros => (DataType::Time, Builder::I64(vec![])),
        Schema::TimestampMillis => (
            DataType::Datetime(TimeUnit::Milliseconds, utc()),
            Builder::I64(vec![]),
        ),
        Schema::TimestampMicros => (
            DataType::Datetime(TimeUnit::Microseconds, utc()),
            Builder::I64(vec![]),
        ),
        Schema::TimestampNanos => (
            DataType::Datetime(TimeUnit::Nanoseconds, utc()),
            Builder::I64(vec![]),
        ),
        Schema::LocalTimestampMillis => (
            DataType::Datetime(TimeUnit::Milliseconds, None),
            Builder::I64(vec![]),
        ),
        Schema::LocalTimestampMicros => (
            DataType::Datetime(TimeUnit::Microseconds, None),
            Builder::I64(vec![]),
        ),
        Schema::LocalTimestampNanos => (
            DataType::Datetime(TimeUnit::Nanoseconds, None),
            Builder::I64(vec![]),
        ),
        Schema::Decimal(d) => (
            DataType::Decimal(d.precision, d.scale),
            Builder::I128(vec![]),
        ),
        other => {
            return Err(bad(
                &name,
                format!("type {other:?} is not supported; only flat records are"),
            ));
        }
    };
    let target = match f.custom_attributes.get(ATTR_DTYPE) {
        Some(serde_json::Value::String(tag)) => parse_tag(tag).unwrap_or(natural),
        _ => natural,
    };
    Ok(Field {
        name,
        target,
        builder,
    })
}

pub(super) fn decimal_from_bytes(bytes: &[u8]) -> Option<i128> {
    if bytes.is_empty() || bytes.len() > 16 {
        return None;
    }
    let fill = if bytes[0] & 0x80 != 0 { 0xFF } else { 0x00 };
    let mut buf = [fill; 16];
    buf[16 - bytes.len()..].copy_from_slice(bytes);
    Some(i128::from_be_bytes(buf))
}

fn push(field: &mut Field, value: Value) -> Result<(), StepError> {
    let value = match value {
        Value::Union(_, inner) => *inner,
        v => v,
    };
    let name = field.name.clone();
    let mismatch = |v: &Value| bad(&name, format!("unexpected value {v:?}"));
    match (&mut field.builder, value) {
        (Builder::Null(n), _) => *n += 1,
        (Builder::Bool(b), Value::Null) => b.push(None),
        (Builder::Bool(b), Value::Boolean(x)) => b.push(Some(x)),
        (Builder::I32(b), Value::Null) => b.push(None),
        (Builder::I32(b), Value::Int(x) | Value::Date(x)) => b.push(Some(x)),
        (Builder::I64(b), Value::Null) => b.push(None),
        (Builder::I64(b), Value::TimeMillis(x)) => b.push(Some(x as i64 * 1_000_000)),
        (Builder::I64(b), Value::TimeMicros(x)) => b.push(Some(x * 1_000)),
        (
            Builder::I64(b),
            Value::Long(x)
            | Value::TimestampMillis(x)
            | Value::TimestampMicros(x)
            | Value::TimestampNanos(x)
            | Value::LocalTimestampMillis(x)
            | Value::LocalTimestampMicros(x)
            | Value::LocalTimestampNanos(x),
        ) => b.push(Some(x)),
        (Builder::F32(b), Value::Null) => b.push(None),
        (Builder::F32(b), Value::Float(x)) => b.push(Some(x)),
        (Builder::F64(b), Value::Null) => b.push(None),
        (Builder::F64(b), Value::Double(x)) => b.push(Some(x)),
        (Builder::Str(b), Value::Null) => b.push(None),
        (Builder::Str(b), Value::String(x) | Value::Enum(_, x)) => b.push(Some(x)),
        (Builder::Str(b), Value::Uuid(u)) => b.push(Some(u.to_string())),
        (Builder::Bin(b), Value::Null) => b.push(None),
        (Builder::Bin(b), Value::Bytes(x) | Value::Fixed(_, x)) => b.push(Some(x)),
        (Builder::I128(b), Value::Null) => b.push(None),
        (Builder::I128(b), Value::Decimal(d)) => {
            let bytes = Vec::<u8>::try_from(&d).map_err(|e| bad(&name, e))?;
            b.push(Some(
                decimal_from_bytes(&bytes)
                    .ok_or_else(|| bad(&name, "decimal wider than 128 bits"))?,
            ));
        }
        (_, v) => return Err(mismatch(&v)),
    }
    Ok(())
}

pub(super) fn finish(field: Field) -> Result<Column, StepError> {
    let name = PlSmallStr::from(field.name.as_str());
    let ctx = format!("Avro field \"{}\"", field.name);
    let series = match field.builder {
        Builder::Null(n) => Series::full_null(name, n, &DataType::Null),
        Builder::Bool(v) => Series::new(name, v),
        Builder::I32(v) => {
            let ca = Int32Chunked::from_iter_options(name.clone(), v.into_iter());
            match field.target {
                DataType::Date => ca.into_date().into_series(),
                _ => ca.into_series(),
            }
        }
        Builder::I64(v) => {
            let ca = Int64Chunked::from_iter_options(name.clone(), v.into_iter());
            match &field.target {
                DataType::Datetime(unit, tz) => ca.into_datetime(*unit, tz.clone()).into_series(),
                DataType::Time => ca.into_time().into_series(),
                _ => ca.into_series(),
            }
        }
        Builder::F32(v) => Series::new(name, v),
        Builder::F64(v) => Series::new(name, v),
        Builder::Str(v) => Series::new(name, v),
        Builder::Bin(v) => {
            BinaryChunked::from_iter_options(name.clone(), v.iter().map(|o| o.as_deref()))
                .into_series()
        }
        Builder::I128(v) => match field.target {
            DataType::Decimal(p, s) => {
                Int128Chunked::from_iter_options(name.clone(), v.into_iter())
                    .into_decimal(p, s)
                    .step_err(&ctx)?
                    .into_series()
            }
            _ => Int128Chunked::from_iter_options(name.clone(), v.into_iter()).into_series(),
        },
    };
    let series = if series.dtype() == &field.target {
        series
    } else {
        series.strict_cast(&field.target).step_err(&ctx)?
    };
    Ok(series.into_column())
}
