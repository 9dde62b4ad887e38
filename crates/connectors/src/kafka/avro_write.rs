//! Avro record values for the kafka load: one datum per row (no container, no registry
//! header), written with the schema of an `.avsc` file (the frame's values resolved against it:
//! nullable unions, promotions, field defaults) or with the schema derived from the frame (every
//! column a nullable field, the mapping of the Avro inter-step format).

use apache_avro::Schema;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use pipeline_base::StepError;
use pipeline_data::avro::{AvroEncoder, frame_to_avro_records};
use pipeline_data::polars::prelude::DataFrame;
use std::collections::HashSet;

/// The writer schema of an avro load.
pub(super) enum AvroWriter {
    /// Derived from each frame, its record named after the topic.
    Derived { record_name: String },
    /// Parsed from the user's `.avsc` file (shown in errors), with its text.
    File {
        schema: Schema,
        path: String,
        text: String,
    },
}

impl AvroWriter {
    /// The writer schema of the `.avsc` text read from `path`.
    pub fn from_file(text: &str, path: &str) -> Result<Self, StepError> {
        let schema = Schema::parse_str(text)
            .map_err(|e| StepError::user(format!("the Avro schema {path} does not parse: {e}")))?;
        if !matches!(schema, Schema::Record(_)) {
            return Err(StepError::user(format!(
                "the Avro schema {path} is not a record: each row is written as one record"
            )));
        }
        Ok(AvroWriter::File {
            schema,
            path: path.to_string(),
            text: text.to_string(),
        })
    }

    /// The writer schema's JSON text for the value columns of `df` (for a registry).
    pub fn schema_text(&self, df: &DataFrame) -> Result<String, StepError> {
        match self {
            AvroWriter::File { text, .. } => Ok(text.clone()),
            AvroWriter::Derived { record_name } => {
                let (schema, _) = frame_to_avro_records(&df.head(Some(0)), record_name)?;
                serde_json::to_string(&schema)
                    .map_err(|e| StepError::internal(format!("the derived Avro schema: {e}")))
            }
        }
    }

    /// One datum per row of `df` (the value columns only).
    pub fn datums(&self, df: &DataFrame) -> Result<Vec<Vec<u8>>, StepError> {
        let record_name = match self {
            // The derived schema: encoded column-wise, as Avro files are.
            AvroWriter::Derived { record_name } => {
                return AvroEncoder::new(df, record_name)?.datums(df);
            }
            AvroWriter::File { .. } => "row",
        };
        let (derived, rows) = frame_to_avro_records(df, record_name)?;
        let (schema, file) = match self {
            AvroWriter::Derived { .. } => (&derived, None),
            AvroWriter::File { schema, path, .. } => {
                check_columns(schema, &derived, path)?;
                (schema, Some(path))
            }
        };
        let writer = GenericDatumWriter::builder(schema)
            .build()
            .map_err(|e| StepError::internal(format!("the Avro writer: {e}")))?;
        rows.into_iter()
            .enumerate()
            .map(|(i, row)| {
                let row = match file {
                    Some(path) => fit_times(row, schema).resolve(schema).map_err(|e| {
                        StepError::user(format!(
                            "row {i} does not fit the Avro schema {path}: {e}"
                        ))
                        .with_hint("cast the columns to the schema's types, or give a nullable field (a union with null) to a column with nulls")
                    })?,
                    None => row,
                };
                writer
                    .write_value_to_vec(row)
                    .map_err(|e| StepError::internal(format!("writing row {i} as Avro: {e}")))
            })
            .collect()
    }
}

/// Datetimes in the unit and kind of the file's fields: a naive column fits a `timestamp-*`
/// field (read as UTC) and an aware one a `local-timestamp-*` field; millis, micros and nanos
/// are converted (Avro's own resolution does neither).
fn fit_times(row: Value, schema: &Schema) -> Value {
    let (fields, record) = match (row, schema) {
        (Value::Record(fields), Schema::Record(record)) => (fields, record),
        (row, _) => return row,
    };
    let unit = |s: &Schema| -> Option<i64> {
        let s = match s {
            Schema::Union(u) => u.variants().iter().find(|v| !matches!(v, Schema::Null))?,
            other => other,
        };
        match s {
            Schema::TimestampMillis | Schema::LocalTimestampMillis => Some(1_000),
            Schema::TimestampMicros | Schema::LocalTimestampMicros => Some(1_000_000),
            Schema::TimestampNanos | Schema::LocalTimestampNanos => Some(1_000_000_000),
            _ => None,
        }
    };
    let convert = |v: Value, per_second: i64| -> Value {
        let (x, from) = match v {
            Value::TimestampMillis(x) | Value::LocalTimestampMillis(x) => (x, 1_000),
            Value::TimestampMicros(x) | Value::LocalTimestampMicros(x) => (x, 1_000_000),
            Value::TimestampNanos(x) | Value::LocalTimestampNanos(x) => (x, 1_000_000_000),
            other => return other,
        };
        let scaled = if per_second >= from {
            per_second.checked_div(from).and_then(|f| x.checked_mul(f))
        } else {
            from.checked_div(per_second).and_then(|f| x.checked_div(f))
        };
        scaled.map_or(Value::Null, Value::Long)
    };
    Value::Record(
        fields
            .into_iter()
            .map(|(name, v)| {
                let target = record
                    .lookup
                    .get(&name)
                    .and_then(|&i| record.fields.get(i))
                    .and_then(|f| unit(&f.schema));
                let v = match (target, v) {
                    (Some(per_second), Value::Union(_, inner)) => convert(*inner, per_second),
                    (Some(per_second), v) => convert(v, per_second),
                    (None, v) => v,
                };
                (name, v)
            })
            .collect(),
    )
}

/// Every value column must be a field of the file's schema: none is dropped unsaid.
fn check_columns(schema: &Schema, derived: &Schema, path: &str) -> Result<(), StepError> {
    let (Schema::Record(file), Schema::Record(frame)) = (schema, derived) else {
        return Ok(());
    };
    let fields: HashSet<&str> = file.fields.iter().map(|f| f.name.as_str()).collect();
    let extra: Vec<&str> = frame
        .fields
        .iter()
        .map(|f| f.name.as_str())
        .filter(|n| !fields.contains(n))
        .collect();
    if extra.is_empty() {
        return Ok(());
    }
    Err(StepError::user(format!(
        "columns {} are not fields of the Avro schema {path}",
        extra.join(", ")
    ))
    .with_hint("drop them before the load (a select or drop transform), or add them to the schema"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::reader::datum::GenericDatumReader;
    use pipeline_data::polars::prelude::*;

    const AVSC: &str = r#"{"type": "record", "name": "order", "fields": [
        {"name": "id", "type": "long"},
        {"name": "status", "type": ["null", "string"]},
        {"name": "amount", "type": "double", "default": 0.0}]}"#;

    fn frame() -> DataFrame {
        df!("id" => [1i64, 2], "status" => [Some("PAID"), None], "amount" => [1.5f64, 2.0]).unwrap()
    }

    fn from_avro_datum(
        schema: &apache_avro::Schema,
        bytes: &mut &[u8],
        _: Option<()>,
    ) -> Result<Value, String> {
        let reader = GenericDatumReader::builder(schema)
            .build()
            .map_err(|e| e.to_string())?;
        reader.read_value(bytes).map_err(|e| e.to_string())
    }

    #[test]
    fn rows_are_datums_of_the_file_schema() {
        let w = AvroWriter::from_file(AVSC, "order.avsc").unwrap();
        let datums = w.datums(&frame()).unwrap();
        let AvroWriter::File { schema, .. } = &w else {
            unreachable!()
        };
        let back = from_avro_datum(schema, &mut datums[1].as_slice(), None).unwrap();
        assert_eq!(
            back,
            Value::Record(vec![
                ("id".into(), Value::Long(2)),
                ("status".into(), Value::Union(0, Box::new(Value::Null))),
                ("amount".into(), Value::Double(2.0)),
            ])
        );
    }

    #[test]
    fn the_derived_schema_writes_every_column() {
        let w = AvroWriter::Derived {
            record_name: "orders".into(),
        };
        let datums = w.datums(&frame()).unwrap();
        let (schema, _) = frame_to_avro_records(&frame(), "orders").unwrap();
        let back = from_avro_datum(&schema, &mut datums[0].as_slice(), None).unwrap();
        let Value::Record(fields) = back else {
            panic!("a record")
        };
        assert_eq!(fields.len(), 3);
        assert_eq!(fields[0].1, Value::Union(1, Box::new(Value::Long(1))));
    }

    #[test]
    fn column_wise_datums_are_the_bytes_apache_avro_writes_from_values() {
        let dt = |unit, tz| {
            Int64Chunked::from_vec("t".into(), vec![1_700_000_000_123, -5, 0])
                .into_datetime(unit, tz)
                .into_series()
                .into_column()
        };
        let mut df = df!(
            "i" => [Some(1i64), None, Some(-7)],
            "i8" => [1i8, -2, 3],
            "u32" => [1u32, 2, u32::MAX],
            "f" => [Some(1.5f64), Some(f64::NAN), None],
            "s" => [Some("PAID"), None, Some("a longer string than twelve bytes")],
            "b" => [Some(true), Some(false), None],
        )
        .unwrap();
        df.with_column(dt(TimeUnit::Microseconds, Some(TimeZone::UTC)).with_name("utc".into()))
            .unwrap();
        df.with_column(dt(TimeUnit::Nanoseconds, None).with_name("naive".into()))
            .unwrap();
        let ours = AvroEncoder::new(&df, "orders")
            .unwrap()
            .datums(&df)
            .unwrap();
        let (schema, rows) = frame_to_avro_records(&df, "orders").unwrap();
        let writer = GenericDatumWriter::builder(&schema).build().unwrap();
        let theirs: Vec<Vec<u8>> = rows
            .into_iter()
            .map(|r| writer.write_value_to_vec(r).unwrap())
            .collect();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn datetimes_fit_the_unit_and_kind_of_the_field() {
        let avsc = r#"{"type": "record", "name": "t", "fields": [
            {"name": "naive_ms", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "aware_us", "type": ["null", {"type": "long", "logicalType": "local-timestamp-millis"}]}]}"#;
        let w = AvroWriter::from_file(avsc, "t.avsc").unwrap();
        let df = df!("naive_ms" => [1_700_000_000_123i64], "aware_us" => [Some(1_700_000_000_123_456i64)])
            .unwrap()
            .lazy()
            .with_columns([
                col("naive_ms").cast(DataType::Datetime(TimeUnit::Milliseconds, None)),
                col("aware_us").cast(DataType::Datetime(
                    TimeUnit::Microseconds,
                    Some(TimeZone::UTC),
                )),
            ])
            .collect()
            .unwrap();
        let datums = w.datums(&df).unwrap();
        let AvroWriter::File { schema, .. } = &w else {
            unreachable!()
        };
        let back = from_avro_datum(schema, &mut datums[0].as_slice(), None).unwrap();
        assert_eq!(
            back,
            Value::Record(vec![
                (
                    "naive_ms".into(),
                    Value::TimestampMicros(1_700_000_000_123_000)
                ),
                (
                    "aware_us".into(),
                    Value::Union(1, Box::new(Value::LocalTimestampMillis(1_700_000_000_123)))
                ),
            ])
        );
    }

    #[test]
    fn misfits_name_the_row_the_columns_and_the_file() {
        let w = AvroWriter::from_file(AVSC, "order.avsc").unwrap();
        let nulls = df!("id" => [Some(1i64), None], "status" => ["a", "b"], "amount" => [1.0, 2.0])
            .unwrap();
        let e = w.datums(&nulls).unwrap_err();
        assert!(
            e.message()
                .contains("row 1 does not fit the Avro schema order.avsc"),
            "{}",
            e.message()
        );
        let extra = df!("id" => [1i64], "note" => ["x"]).unwrap();
        let e = w.datums(&extra).unwrap_err();
        assert!(
            e.message().contains("columns note are not fields"),
            "{}",
            e.message()
        );
        let e = AvroWriter::from_file("\"long\"", "x.avsc").err().unwrap();
        assert!(e.message().contains("not a record"), "{}", e.message());
        assert!(AvroWriter::from_file("{", "x.avsc").is_err());
    }
}
