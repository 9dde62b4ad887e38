//! Arrow IPC streams, the format Spark Connect uses both ways: result batches come back as
//! one stream each, and local data (the `generate` source) goes out as one.

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use pipeline_base::StepError;
use std::io::Cursor;

/// The record batches of one IPC stream.
pub fn decode(data: &[u8]) -> Result<Vec<RecordBatch>, StepError> {
    let reader = StreamReader::try_new(Cursor::new(data), None).map_err(|e| {
        StepError::external(format!(
            "Spark sent an Arrow stream pipectl cannot read: {e}"
        ))
    })?;
    reader.collect::<Result<Vec<_>, _>>().map_err(|e| {
        StepError::external(format!(
            "Spark sent an Arrow batch pipectl cannot read: {e}"
        ))
    })
}

/// Polars hands out string and binary *views*, which Spark 4.0 does not read: they are cast
/// to the plain layouts.
fn spark_readable(batch: &RecordBatch) -> Result<RecordBatch, StepError> {
    use arrow::datatypes::{DataType, Field, Schema};
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let target = match field.data_type() {
            DataType::Utf8View => Some(DataType::LargeUtf8),
            DataType::BinaryView => Some(DataType::LargeBinary),
            _ => None,
        };
        match target {
            Some(t) => {
                let cast = arrow::compute::cast(column, &t).map_err(|e| {
                    StepError::internal(format!("casting {} for Spark: {e}", field.name()))
                })?;
                fields.push(Field::new(field.name(), t, field.is_nullable()));
                columns.push(cast);
            }
            None => {
                fields.push(field.as_ref().clone());
                columns.push(column.clone());
            }
        }
    }
    RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns)
        .map_err(|e| StepError::internal(format!("assembling a batch for Spark: {e}")))
}

/// One IPC stream holding `batches` (at least one, for the schema).
pub fn encode(batches: &[RecordBatch]) -> Result<Vec<u8>, StepError> {
    let batches = batches
        .iter()
        .map(spark_readable)
        .collect::<Result<Vec<_>, _>>()?;
    let first = batches
        .first()
        .ok_or_else(|| StepError::internal("encoding an Arrow stream without a batch"))?;
    let mut out = Vec::new();
    let mut writer = StreamWriter::try_new(&mut out, &first.schema())
        .map_err(|e| StepError::internal(format!("starting an Arrow stream: {e}")))?;
    for batch in &batches {
        writer
            .write(batch)
            .map_err(|e| StepError::internal(format!("writing an Arrow batch: {e}")))?;
    }
    writer
        .finish()
        .map_err(|e| StepError::internal(format!("ending an Arrow stream: {e}")))?;
    drop(writer);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn a_stream_round_trips() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a"), None])),
            ],
        )
        .expect("batch");
        let bytes = encode(&[batch.clone(), batch.clone()]).expect("encode");
        let back = decode(&bytes).expect("decode");
        assert_eq!(back, vec![batch.clone(), batch]);
        assert!(decode(b"not arrow").is_err());
    }
}
