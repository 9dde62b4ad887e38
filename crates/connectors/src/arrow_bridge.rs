//! Hands Polars DataFrames to arrow-rs (used by deltalake) through the Arrow C Data Interface,
//! without copying the buffers. Polars uses its own Arrow implementation (polars-arrow); both
//! sides implement the same C ABI.

use arrow::array::{ArrayRef, RecordBatch, make_array};
use arrow::datatypes::{Field, Schema};
use arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi};
use pipeline_base::StepError;
use pipeline_data::polars::prelude::*;
use std::sync::Arc;

/// Converts a DataFrame into arrow-rs record batches (one per chunk).
pub fn frame_to_arrow(df: &DataFrame) -> Result<Vec<RecordBatch>, StepError> {
    let mut df = df.clone();
    df.align_chunks_par();
    let mut out = Vec::new();
    for chunk in df.iter_chunks(CompatLevel::newest(), false) {
        let (schema, arrays) = chunk.into_schema_and_arrays();
        let mut fields = Vec::with_capacity(arrays.len());
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(arrays.len());
        for ((_, field), array) in schema.iter().zip(arrays) {
            let c_schema = polars_arrow::ffi::export_field_to_c(field);
            let c_array = polars_arrow::ffi::export_array_to_c(array);
            // SAFETY: both structs are the `#[repr(C)]` ArrowSchema / ArrowArray of the Arrow C
            // Data Interface; ownership (and the release callback) moves to arrow-rs.
            let (c_schema, c_array): (FFI_ArrowSchema, FFI_ArrowArray) = unsafe {
                (
                    std::mem::transmute::<polars_arrow::ffi::ArrowSchema, FFI_ArrowSchema>(
                        c_schema,
                    ),
                    std::mem::transmute::<polars_arrow::ffi::ArrowArray, FFI_ArrowArray>(c_array),
                )
            };
            let arrow_field = Field::try_from(&c_schema).map_err(|e| {
                StepError::internal(format!("reading exported field {}: {e}", field.name))
            })?;
            // SAFETY: the array was exported together with this schema just above.
            let data = unsafe { from_ffi(c_array, &c_schema) }.map_err(|e| {
                StepError::internal(format!("importing column {}: {e}", field.name))
            })?;
            fields.push(arrow_field);
            columns.push(make_array(data));
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .map_err(|e| StepError::internal(format!("assembling an Arrow batch: {e}")))?;
        out.push(batch);
    }
    Ok(out)
}

/// Converts arrow-rs record batches into one DataFrame (the reverse of [`frame_to_arrow`]).
pub fn arrow_to_frame(batches: &[RecordBatch]) -> Result<DataFrame, StepError> {
    let mut out: Option<DataFrame> = None;
    for batch in batches {
        let mut columns = Vec::with_capacity(batch.num_columns());
        for (field, array) in batch.schema().fields().iter().zip(batch.columns()) {
            let (c_array, c_schema) = arrow::ffi::to_ffi(&array.to_data()).map_err(|e| {
                StepError::internal(format!("exporting column {}: {e}", field.name()))
            })?;
            // SAFETY: the same `#[repr(C)]` structs of the Arrow C Data Interface, moved to
            // polars-arrow which releases them.
            let (c_array, c_schema) = unsafe {
                (
                    std::mem::transmute::<FFI_ArrowArray, polars_arrow::ffi::ArrowArray>(c_array),
                    std::mem::transmute::<FFI_ArrowSchema, polars_arrow::ffi::ArrowSchema>(
                        c_schema,
                    ),
                )
            };
            // SAFETY: the schema and array were exported together just above.
            let imported = unsafe {
                polars_arrow::ffi::import_field_from_c(&c_schema).and_then(|f| {
                    polars_arrow::ffi::import_array_from_c(c_array, f.dtype.clone()).map(|a| (f, a))
                })
            };
            let (_, parray) = imported.map_err(|e| {
                StepError::internal(format!("importing column {}: {e}", field.name()))
            })?;
            let series = Series::from_arrow(field.name().as_str().into(), parray)
                .map_err(|e| StepError::user(format!("column {}: {e}", field.name())))?;
            columns.push(series.into_column());
        }
        let df = DataFrame::new(batch.num_rows(), columns)
            .map_err(|e| StepError::internal(format!("assembling a frame: {e}")))?;
        match &mut out {
            None => out = Some(df),
            Some(acc) => {
                acc.vstack_mut_owned(df)
                    .map_err(|e| StepError::user(format!("stacking batches: {e}")))?;
            }
        }
    }
    Ok(out.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Float64Array, Int64Array};

    #[test]
    fn columns_cross_over_with_nulls_and_chunks() {
        let mut df = df!("id" => [1i64, 2, 3], "v" => [Some(1.5f64), None, Some(3.0)], "s" => ["a", "b", "c"]).unwrap();
        df.vstack_mut_owned(df!("id" => [4i64], "v" => [Some(4.0f64)], "s" => ["d"]).unwrap())
            .unwrap();
        let batches = frame_to_arrow(&df).unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 4);
        let first = &batches[0];
        let ids = first
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(ids.value(2), 3);
        let v = first
            .column(1)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert!(v.is_null(1));
        assert_eq!(first.schema().field(2).name(), "s");
        let back = arrow_to_frame(&batches).unwrap();
        assert!(back.equals_missing(&df));
    }
}
