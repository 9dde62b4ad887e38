//! The fast path of Avro decoding: an uncompressed object container whose record fields are
//! primitive or logical types, each optionally in a union with null, is decoded straight from
//! its blocks into column builders, without a value per cell. Anything else (compressed
//! blocks, nested types, wider unions) returns `None` and goes through apache-avro's reader.

use super::decode::{Builder, Field, bad, decimal_from_bytes, field_plan, finish, len};
use apache_avro::Schema;
use pipeline_base::StepError;
use polars::prelude::*;

/// How one field's value is laid out in the binary encoding.
#[derive(Clone, Copy)]
enum Wire {
    Null,
    Bool,
    Int,
    Long,
    /// `time-millis` (int) as nanoseconds.
    TimeMillis,
    /// `time-micros` (long) as nanoseconds.
    TimeMicros,
    Float,
    Double,
    Str,
    Bytes,
    Fixed(usize),
    Enum,
    DecimalBytes,
    DecimalFixed(usize),
}

/// A field: its union's null branch (if any) and its value's layout.
struct Plan {
    null_branch: Option<i64>,
    value_branch: i64,
    wire: Wire,
    /// Symbols of an enum.
    symbols: Vec<String>,
}

fn wire_of(schema: &Schema) -> Option<(Wire, Vec<String>)> {
    Some(match schema {
        Schema::Null => (Wire::Null, vec![]),
        Schema::Boolean => (Wire::Bool, vec![]),
        Schema::Int | Schema::Date => (Wire::Int, vec![]),
        Schema::Long
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => (Wire::Long, vec![]),
        Schema::TimeMillis => (Wire::TimeMillis, vec![]),
        Schema::TimeMicros => (Wire::TimeMicros, vec![]),
        Schema::Float => (Wire::Float, vec![]),
        Schema::Double => (Wire::Double, vec![]),
        Schema::String => (Wire::Str, vec![]),
        Schema::Bytes => (Wire::Bytes, vec![]),
        Schema::Fixed(f) => (Wire::Fixed(f.size), vec![]),
        Schema::Enum(e) => (Wire::Enum, e.symbols.clone()),
        Schema::Decimal(d) => match &d.inner {
            apache_avro::schema::InnerDecimalSchema::Bytes => (Wire::DecimalBytes, vec![]),
            apache_avro::schema::InnerDecimalSchema::Fixed(f) => {
                (Wire::DecimalFixed(f.size), vec![])
            }
        },
        _ => return None,
    })
}

fn plan_of(schema: &Schema) -> Option<Plan> {
    match schema {
        Schema::Union(u) => {
            let variants = u.variants();
            let null = variants.iter().position(|s| matches!(s, Schema::Null));
            match (variants.len(), null) {
                (1, Some(_)) => Some(Plan {
                    null_branch: Some(0),
                    value_branch: -1,
                    wire: Wire::Null,
                    symbols: vec![],
                }),
                (2, Some(n)) => {
                    let value = usize::from(n == 0);
                    let (wire, symbols) = wire_of(variants.get(value)?)?;
                    Some(Plan {
                        null_branch: Some(n as i64),
                        value_branch: value as i64,
                        wire,
                        symbols,
                    })
                }
                _ => None,
            }
        }
        other => {
            let (wire, symbols) = wire_of(other)?;
            Some(Plan {
                null_branch: None,
                value_branch: 0,
                wire,
                symbols,
            })
        }
    }
}

/// A cursor over bytes; every read is bounds-checked.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

fn corrupt() -> StepError {
    StepError::user("reading Avro data: the data ends early or is corrupt")
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StepError> {
        let end = self.at.checked_add(n).ok_or_else(corrupt)?;
        let out = self.bytes.get(self.at..end).ok_or_else(corrupt)?;
        self.at = end;
        Ok(out)
    }

    fn long(&mut self) -> Result<i64, StepError> {
        let mut z: u64 = 0;
        let mut shift = 0u32;
        loop {
            let b = *self.bytes.get(self.at).ok_or_else(corrupt)?;
            self.at = self.at.saturating_add(1);
            if shift > 63 {
                return Err(corrupt());
            }
            z |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift = shift.saturating_add(7);
        }
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    fn len(&mut self) -> Result<usize, StepError> {
        usize::try_from(self.long()?).map_err(|_| corrupt())
    }

    fn bytes(&mut self) -> Result<&'a [u8], StepError> {
        let n = self.len()?;
        self.take(n)
    }
}

/// The header's schema and codec, and the sync marker; `None` when this is not a container
/// (the slow path says why).
/// The writer's schema (JSON), its codec, and the sync marker.
type Header<'a> = (String, Option<String>, &'a [u8]);

fn header<'a>(c: &mut Cursor<'a>) -> Result<Option<Header<'a>>, StepError> {
    if c.take(4).ok() != Some(b"Obj\x01".as_slice()) {
        return Ok(None);
    }
    let (mut schema, mut codec) = (None, None);
    loop {
        let mut count = c.long()?;
        if count == 0 {
            break;
        }
        if count < 0 {
            count = count.checked_neg().ok_or_else(corrupt)?;
            let _size = c.long()?;
        }
        for _ in 0..count {
            let key = c.bytes()?;
            let value = c.bytes()?;
            match key {
                b"avro.schema" => schema = Some(String::from_utf8_lossy(value).into_owned()),
                b"avro.codec" => codec = Some(String::from_utf8_lossy(value).into_owned()),
                _ => {}
            }
        }
    }
    let sync = c.take(16)?;
    Ok(schema.map(|s| (s, codec, sync)))
}

/// An uncompressed container being decoded block by block.
pub struct BlockReader {
    bytes: Vec<u8>,
    at: usize,
    sync: [u8; 16],
    record: Vec<apache_avro::schema::RecordField>,
    plans: Vec<Plan>,
}

impl BlockReader {
    /// A reader of `bytes` when they take the fast path (see the module doc); otherwise the
    /// bytes back, for apache-avro's reader.
    pub fn new(bytes: Vec<u8>) -> Result<Self, Vec<u8>> {
        let Some((at, sync, record, plans)) = Self::layout(&bytes) else {
            return Err(bytes);
        };
        Ok(BlockReader {
            bytes,
            at,
            sync,
            record,
            plans,
        })
    }

    #[allow(clippy::type_complexity)]
    fn layout(
        bytes: &[u8],
    ) -> Option<(
        usize,
        [u8; 16],
        Vec<apache_avro::schema::RecordField>,
        Vec<Plan>,
    )> {
        let mut c = Cursor { bytes, at: 0 };
        let (schema, codec, sync) = header(&mut c).ok()??;
        if codec.as_deref().is_some_and(|c| c != "null") {
            return None;
        }
        let sync = <[u8; 16]>::try_from(sync).ok()?;
        let Ok(Schema::Record(record)) = Schema::parse_str(&schema) else {
            return None;
        };
        let mut plans = Vec::with_capacity(record.fields.len());
        for f in &record.fields {
            field_plan(f).ok()?;
            plans.push(plan_of(&f.schema)?);
        }
        Some((c.at, sync, record.fields, plans))
    }

    /// The next whole blocks holding at least `rows` rows (fewer at the end); `None` after
    /// the last block. The first call always answers a frame, so an empty file still says its
    /// columns.
    pub fn next_frame(&mut self, rows: usize) -> Result<Option<DataFrame>, StepError> {
        if self.at == usize::MAX {
            return Ok(None);
        }
        let mut fields: Vec<Field> = self
            .record
            .iter()
            .map(field_plan)
            .collect::<Result<_, _>>()?;
        let mut c = Cursor {
            bytes: &self.bytes,
            at: self.at,
        };
        let mut height = 0usize;
        while c.at < self.bytes.len() && height < rows {
            let count = c.len()?;
            let size = c.len()?;
            let block = c.take(size)?;
            if c.take(16)? != self.sync {
                return Err(StepError::user(
                    "reading Avro data: a block's sync marker does not match the header's",
                ));
            }
            let mut b = Cursor {
                bytes: block,
                at: 0,
            };
            for _ in 0..count {
                for (field, plan) in fields.iter_mut().zip(&self.plans) {
                    read_value(&mut b, field, plan)?;
                }
            }
            height = height.saturating_add(count);
        }
        // Past the end: the next call says so.
        self.at = if c.at >= self.bytes.len() {
            usize::MAX
        } else {
            c.at
        };
        let height = fields.first().map(len).unwrap_or(height);
        let columns = fields
            .into_iter()
            .map(finish)
            .collect::<Result<Vec<_>, _>>()?;
        DataFrame::new(height, columns)
            .map_err(|e| crate::errors::polars_error(e, "building a DataFrame from Avro"))
            .map(Some)
    }
}

/// Decodes `bytes` whole when they take the fast path (see the module doc).
pub(super) fn decode(bytes: &[u8]) -> Result<Option<DataFrame>, StepError> {
    match BlockReader::layout(bytes) {
        Some(_) => match BlockReader::new(bytes.to_vec()) {
            Ok(mut reader) => reader.next_frame(usize::MAX),
            Err(_) => Ok(None),
        },
        None => Ok(None),
    }
}

fn read_value(c: &mut Cursor<'_>, field: &mut Field, plan: &Plan) -> Result<(), StepError> {
    let is_null = match plan.null_branch {
        Some(null) => {
            let branch = c.long()?;
            if branch == null {
                true
            } else if branch == plan.value_branch {
                false
            } else {
                return Err(bad(
                    &field.name,
                    format!("union branch {branch} out of range"),
                ));
            }
        }
        None => false,
    };
    let name = &field.name;
    let mismatch = || bad(name, "the data does not match the schema");
    match (&mut field.builder, plan.wire) {
        (Builder::Null(n), _) => *n = n.saturating_add(1),
        (Builder::Bool(v), Wire::Bool) => v.push(if is_null {
            None
        } else {
            Some(c.take(1)?.first().is_some_and(|b| *b != 0))
        }),
        (Builder::I32(v), Wire::Int) => v.push(if is_null {
            None
        } else {
            Some(i32::try_from(c.long()?).map_err(|_| mismatch())?)
        }),
        (Builder::I64(v), Wire::Long | Wire::Int) => {
            v.push(if is_null { None } else { Some(c.long()?) })
        }
        (Builder::I64(v), Wire::TimeMillis) => v.push(if is_null {
            None
        } else {
            Some(c.long()?.saturating_mul(1_000_000))
        }),
        (Builder::I64(v), Wire::TimeMicros) => v.push(if is_null {
            None
        } else {
            Some(c.long()?.saturating_mul(1_000))
        }),
        (Builder::F32(v), Wire::Float) => v.push(if is_null {
            None
        } else {
            let b: [u8; 4] = c.take(4)?.try_into().map_err(|_| corrupt())?;
            Some(f32::from_le_bytes(b))
        }),
        (Builder::F64(v), Wire::Double) => v.push(if is_null {
            None
        } else {
            let b: [u8; 8] = c.take(8)?.try_into().map_err(|_| corrupt())?;
            Some(f64::from_le_bytes(b))
        }),
        (Builder::Str(v), Wire::Str) => v.push(if is_null {
            None
        } else {
            let b = c.bytes()?;
            Some(
                std::str::from_utf8(b)
                    .map_err(|_| bad(name, "a string is not UTF-8"))?
                    .to_string(),
            )
        }),
        (Builder::Str(v), Wire::Enum) => v.push(if is_null {
            None
        } else {
            let i = c.len()?;
            Some(plan.symbols.get(i).cloned().ok_or_else(mismatch)?)
        }),
        (Builder::Bin(v), Wire::Bytes) => v.push(if is_null {
            None
        } else {
            Some(c.bytes()?.to_vec())
        }),
        (Builder::Bin(v), Wire::Fixed(n)) => v.push(if is_null {
            None
        } else {
            Some(c.take(n)?.to_vec())
        }),
        (Builder::I128(v), Wire::DecimalBytes | Wire::DecimalFixed(_)) => v.push(if is_null {
            None
        } else {
            let b = match plan.wire {
                Wire::DecimalFixed(n) => c.take(n)?,
                _ => c.bytes()?,
            };
            Some(decimal_from_bytes(b).ok_or_else(|| bad(name, "decimal wider than 128 bits"))?)
        }),
        _ => return Err(mismatch()),
    }
    Ok(())
}
