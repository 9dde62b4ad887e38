//! Typed column buffers that the database decoders (PostgreSQL binary COPY, MySQL binary
//! protocol) fill value by value, and their hand-over as Polars columns: one buffer and one
//! validity bitmap per column, no per-row objects.

use pipeline_base::StepError;
use pipeline_data::polars::prelude::*;
use polars_arrow::array::MutableBinaryViewArray;
use polars_arrow::bitmap::MutableBitmap;

/// The physical values of a column.
pub(crate) enum Values {
    Bool(Vec<bool>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U64(Vec<u64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    I128(Vec<i128>),
    Str(MutableBinaryViewArray<str>),
    Bin(MutableBinaryViewArray<[u8]>),
}

impl Values {
    /// An empty buffer of the same variant.
    fn empty_like(&self) -> Values {
        match self {
            Values::Bool(_) => Values::Bool(Vec::new()),
            Values::I8(_) => Values::I8(Vec::new()),
            Values::I16(_) => Values::I16(Vec::new()),
            Values::I32(_) => Values::I32(Vec::new()),
            Values::I64(_) => Values::I64(Vec::new()),
            Values::U64(_) => Values::U64(Vec::new()),
            Values::F32(_) => Values::F32(Vec::new()),
            Values::F64(_) => Values::F64(Vec::new()),
            Values::I128(_) => Values::I128(Vec::new()),
            Values::Str(_) => Values::Str(MutableBinaryViewArray::new()),
            Values::Bin(_) => Values::Bin(MutableBinaryViewArray::new()),
        }
    }
}

/// What a column's physical values mean in Polars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Logical {
    Plain,
    /// Days since 1970-01-01 (`I32`).
    Date,
    /// Microseconds since 1970-01-01 (`I64`), naive or UTC.
    Datetime {
        utc: bool,
    },
    /// Nanoseconds since midnight (`I64`).
    Time,
    /// Integers scaled by `10^scale` (`I128`).
    Decimal {
        precision: usize,
        scale: usize,
    },
}

/// One column being decoded.
pub(crate) struct ColumnBuffer {
    pub name: PlSmallStr,
    pub values: Values,
    pub validity: MutableBitmap,
    logical: Logical,
}

impl ColumnBuffer {
    pub fn new(name: &str, values: Values, logical: Logical) -> Self {
        ColumnBuffer {
            name: name.into(),
            values,
            validity: MutableBitmap::new(),
            logical,
        }
    }

    /// Appends a NULL.
    pub fn push_null(&mut self) {
        self.validity.push(false);
        match &mut self.values {
            Values::Bool(v) => v.push(false),
            Values::I8(v) => v.push(0),
            Values::I16(v) => v.push(0),
            Values::I32(v) => v.push(0),
            Values::I64(v) => v.push(0),
            Values::U64(v) => v.push(0),
            Values::F32(v) => v.push(0.0),
            Values::F64(v) => v.push(0.0),
            Values::I128(v) => v.push(0),
            Values::Str(v) => v.push_null(),
            Values::Bin(v) => v.push_null(),
        }
    }

    /// Hands over the values so far as a Polars column; the buffer starts empty again.
    fn take(&mut self) -> Result<Column, StepError> {
        let empty = self.values.empty_like();
        let values = std::mem::replace(&mut self.values, empty);
        let validity = std::mem::take(&mut self.validity);
        let validity = (validity.unset_bits() > 0).then(|| validity.freeze());
        let name = self.name.clone();
        let series = match (values, self.logical) {
            (Values::Bool(v), _) => {
                let arr = polars_arrow::array::BooleanArray::new(
                    ArrowDataType::Boolean,
                    v.into_iter().collect(),
                    validity,
                );
                BooleanChunked::with_chunk(name, arr).into_series()
            }
            (Values::I8(v), _) => Int8Chunked::from_vec_validity(name, v, validity).into_series(),
            (Values::I16(v), _) => Int16Chunked::from_vec_validity(name, v, validity).into_series(),
            (Values::I32(v), Logical::Date) => Int32Chunked::from_vec_validity(name, v, validity)
                .into_date()
                .into_series(),
            (Values::I32(v), _) => Int32Chunked::from_vec_validity(name, v, validity).into_series(),
            (Values::I64(v), logical) => {
                let ca = Int64Chunked::from_vec_validity(name, v, validity);
                match logical {
                    Logical::Datetime { utc } => ca
                        .into_datetime(TimeUnit::Microseconds, utc.then_some(TimeZone::UTC))
                        .into_series(),
                    Logical::Time => ca.into_time().into_series(),
                    _ => ca.into_series(),
                }
            }
            (Values::U64(v), _) => {
                UInt64Chunked::from_vec_validity(name, v, validity).into_series()
            }
            (Values::F32(v), _) => {
                Float32Chunked::from_vec_validity(name, v, validity).into_series()
            }
            (Values::F64(v), _) => {
                Float64Chunked::from_vec_validity(name, v, validity).into_series()
            }
            (Values::I128(v), Logical::Decimal { precision, scale }) => {
                Int128Chunked::from_vec_validity(name, v, validity)
                    .into_decimal_unchecked(precision, scale)
                    .into_series()
            }
            (Values::I128(_), _) => {
                return Err(StepError::internal(
                    "a decimal buffer without precision and scale",
                ));
            }
            (Values::Str(v), _) => StringChunked::with_chunk(name, v.freeze()).into_series(),
            (Values::Bin(v), _) => BinaryChunked::with_chunk(name, v.freeze()).into_series(),
        };
        Ok(series.into_column())
    }
}

/// The `rows` rows held by `columns` as a DataFrame; the buffers start empty again.
pub(crate) fn take_frame(
    columns: &mut [ColumnBuffer],
    rows: usize,
) -> Result<DataFrame, StepError> {
    let out = columns
        .iter_mut()
        .map(ColumnBuffer::take)
        .collect::<Result<Vec<_>, _>>()?;
    DataFrame::new(rows, out)
        .map_err(|e| StepError::internal(format!("assembling a decoded batch: {e}")))
}

/// An integer scaled by `10^scale` as decimal text.
pub(crate) fn write_decimal(v: i128, scale: usize, out: &mut Vec<u8>) {
    if v < 0 {
        out.push(b'-');
    }
    let digits = v.unsigned_abs().to_string();
    if scale == 0 {
        out.extend_from_slice(digits.as_bytes());
        return;
    }
    let padded = format!("{digits:0>width$}", width = scale.saturating_add(1));
    let (int, frac) = padded.split_at(padded.len().saturating_sub(scale));
    out.extend_from_slice(int.as_bytes());
    out.push(b'.');
    out.extend_from_slice(frac.as_bytes());
}
