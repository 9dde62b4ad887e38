//! Avro record values (datums written with a known schema) as cells of typed columns: a
//! field's column type from its schema, and each value converted to it.

use super::decode::{Cell, FieldType, name};
use apache_avro::Schema as AvroSchema;
use apache_avro::types::Value as AvroValue;
use serde_json::Value;

/// The column type of an Avro field: a nullable union takes its other branch's type.
pub(super) fn avro_type(s: &AvroSchema) -> FieldType {
    match s {
        AvroSchema::Long | AvroSchema::Int => FieldType::I64,
        AvroSchema::Float | AvroSchema::Double => FieldType::F64,
        AvroSchema::String | AvroSchema::Enum(_) => FieldType::Str,
        AvroSchema::Boolean => FieldType::Bool,
        AvroSchema::Date => FieldType::Date,
        AvroSchema::TimestampMillis | AvroSchema::TimestampMicros => FieldType::Datetime,
        AvroSchema::Union(u) => match u.variants() {
            [AvroSchema::Null, other] | [other, AvroSchema::Null] => avro_type(other),
            _ => FieldType::Json,
        },
        _ => FieldType::Json,
    }
}

/// Converts an Avro value to a field's type; `Err` says why it does not fit.
pub(super) fn avro_cell(v: &AvroValue, ty: FieldType) -> Result<Cell, String> {
    let wrong = || {
        let shown: String = format!("{v:?}").chars().take(60).collect();
        format!("{shown} is not a {}", name(ty))
    };
    Ok(match (v, ty) {
        (AvroValue::Null, _) => Cell::Null,
        (AvroValue::Union(_, inner), _) => return avro_cell(inner, ty),
        (AvroValue::Long(x), FieldType::I64)
        | (AvroValue::TimestampMicros(x), FieldType::Datetime)
        | (AvroValue::LocalTimestampMicros(x), FieldType::Datetime) => Cell::I64(*x),
        (AvroValue::Int(x), FieldType::I64) => Cell::I64(i64::from(*x)),
        (
            AvroValue::TimestampMillis(x) | AvroValue::LocalTimestampMillis(x),
            FieldType::Datetime,
        ) => Cell::I64(x.checked_mul(1000).ok_or_else(wrong)?),
        (AvroValue::Double(x), FieldType::F64) => Cell::F64(*x),
        (AvroValue::Float(x), FieldType::F64) => Cell::F64(f64::from(*x)),
        (AvroValue::String(s) | AvroValue::Enum(_, s), FieldType::Str) => Cell::Str(s.clone()),
        (AvroValue::Boolean(b), FieldType::Bool) => Cell::Bool(*b),
        (AvroValue::Date(d), FieldType::Date) => Cell::I32(*d),
        (other, FieldType::Json) => Cell::Str(
            Value::try_from(other.clone())
                .map(|j| j.to_string())
                .map_err(|e| e.to_string())?,
        ),
        _ => return Err(wrong()),
    })
}
