//! Decodes PostgreSQL's binary COPY format straight into Polars column buffers: one typed
//! buffer per column, no per-row objects. The format: an 11-byte signature, flags and header
//! extension, then tuples (`i16` field count, then per field an `i32` length, -1 for NULL, and
//! the value in the type's binary send format), then a `-1` trailer.

use crate::columns::{ColumnBuffer, Logical, Values, take_frame};
use pipeline_base::StepError;
use pipeline_data::polars::prelude::*;
use polars_arrow::array::MutableBinaryViewArray;
use tokio_postgres::types::Type;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// Days and microseconds between 1970-01-01 and PostgreSQL's epoch 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// How a PostgreSQL type lands in Polars.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    Bool,
    I16,
    I32,
    I64,
    F32,
    F64,
    Text,
    Jsonb,
    Bytea,
    Date,
    Timestamp,
    TimestampTz,
    Uuid,
    Decimal { precision: usize, scale: usize },
    NumericF64,
}

/// The Polars column kind of a PostgreSQL type, or an error naming the column and type.
pub(crate) fn kind_of(
    column: &str,
    ty: &Type,
    type_modifier: i32,
    numeric_as_f64: bool,
) -> Result<Kind, StepError> {
    Ok(match *ty {
        Type::BOOL => Kind::Bool,
        Type::INT2 => Kind::I16,
        Type::INT4 => Kind::I32,
        Type::INT8 => Kind::I64,
        Type::FLOAT4 => Kind::F32,
        Type::FLOAT8 => Kind::F64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::JSON | Type::UNKNOWN => {
            Kind::Text
        }
        Type::JSONB => Kind::Jsonb,
        Type::BYTEA => Kind::Bytea,
        Type::DATE => Kind::Date,
        Type::TIMESTAMP => Kind::Timestamp,
        Type::TIMESTAMPTZ => Kind::TimestampTz,
        Type::UUID => Kind::Uuid,
        Type::NUMERIC if numeric_as_f64 => Kind::NumericF64,
        Type::NUMERIC if type_modifier >= 4 => {
            let m = type_modifier.saturating_sub(4);
            let (precision, scale) = (((m >> 16) & 0xffff) as usize, (m & 0xffff) as usize);
            if precision > 38 {
                return Err(StepError::user(format!(
                    "column \"{column}\" is numeric({precision},{scale}), wider than the 38 digits a decimal holds"
                ))
                .with_hint("set \"numeric\": \"f64\" in the step's options, or cast the column in the query"));
            }
            Kind::Decimal { precision, scale }
        }
        // Unconstrained numeric: 38 digits, 18 after the point; wider values are refused.
        Type::NUMERIC => Kind::Decimal {
            precision: 38,
            scale: 18,
        },
        _ => {
            return Err(StepError::user(format!(
                "column \"{column}\" has type {}, which the postgres extract cannot read",
                ty.name()
            ))
            .with_hint(format!(
                "cast it in a query, e.g. \"query\": \"SELECT ..., {column}::text AS {column} FROM ...\""
            )));
        }
    })
}

/// Decodes tuples into column buffers; `take_frame` hands over what it holds.
pub(crate) struct Decoder {
    columns: Vec<ColumnBuffer>,
    kinds: Vec<Kind>,
    rows: usize,
    header_done: bool,
}

/// The first `N` bytes of `b` as an array, zeros past its end (every caller has checked the
/// length; this keeps a short value from ever panicking).
fn be<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (o, i) in out.iter_mut().zip(b) {
        *o = *i;
    }
    out
}

/// A COPY stream the decoder cannot follow.
fn framing(what: &str) -> StepError {
    StepError::internal(format!("malformed binary COPY stream: {what}"))
}

fn bad(column: &str, what: &str) -> StepError {
    StepError::internal(format!(
        "column \"{column}\": unexpected binary COPY value ({what})"
    ))
}

impl Decoder {
    pub fn new(columns: &[(String, Kind)]) -> Self {
        Decoder {
            columns: columns
                .iter()
                .map(|(name, kind)| {
                    let (values, logical) = Self::buffer(*kind);
                    ColumnBuffer::new(name, values, logical)
                })
                .collect(),
            kinds: columns.iter().map(|(_, k)| *k).collect(),
            rows: 0,
            header_done: false,
        }
    }

    /// The buffer a kind is decoded into, and what its values mean.
    fn buffer(kind: Kind) -> (Values, Logical) {
        match kind {
            Kind::Bool => (Values::Bool(Vec::new()), Logical::Plain),
            Kind::I16 => (Values::I16(Vec::new()), Logical::Plain),
            Kind::I32 => (Values::I32(Vec::new()), Logical::Plain),
            Kind::Date => (Values::I32(Vec::new()), Logical::Date),
            Kind::I64 => (Values::I64(Vec::new()), Logical::Plain),
            Kind::Timestamp => (Values::I64(Vec::new()), Logical::Datetime { utc: false }),
            Kind::TimestampTz => (Values::I64(Vec::new()), Logical::Datetime { utc: true }),
            Kind::F32 => (Values::F32(Vec::new()), Logical::Plain),
            Kind::F64 | Kind::NumericF64 => (Values::F64(Vec::new()), Logical::Plain),
            Kind::Decimal { precision, scale } => (
                Values::I128(Vec::new()),
                Logical::Decimal { precision, scale },
            ),
            Kind::Text | Kind::Jsonb | Kind::Uuid => {
                (Values::Str(MutableBinaryViewArray::new()), Logical::Plain)
            }
            Kind::Bytea => (Values::Bin(MutableBinaryViewArray::new()), Logical::Plain),
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Decodes every complete tuple at the start of `buf`; returns the bytes consumed and whether
    /// the trailer was reached.
    pub fn decode(&mut self, buf: &[u8]) -> Result<(usize, bool), StepError> {
        const HEADER: usize = SIGNATURE.len() + 8;
        let mut pos = 0usize;
        if !self.header_done {
            if buf.len() < HEADER {
                return Ok((0, false));
            }
            if buf.get(..SIGNATURE.len()) != Some(SIGNATURE) {
                return Err(StepError::internal(
                    "the COPY stream is not in binary format",
                ));
            }
            let ext = i32::from_be_bytes(be(buf
                .get(SIGNATURE.len().saturating_add(4)..)
                .unwrap_or_default()));
            let ext = usize::try_from(ext).map_err(|_| framing("negative header extension"))?;
            let end = HEADER
                .checked_add(ext)
                .ok_or_else(|| framing("header extension too long"))?;
            if buf.len() < end {
                return Ok((0, false));
            }
            pos = end;
            self.header_done = true;
        }
        let n = self.columns.len();
        loop {
            let rest = buf.get(pos..).unwrap_or_default();
            if rest.len() < 2 {
                return Ok((pos, false));
            }
            let count = i16::from_be_bytes(be(rest));
            if count == -1 {
                return Ok((pos.saturating_add(2), true));
            }
            if usize::try_from(count).ok() != Some(n) {
                return Err(StepError::internal(format!(
                    "COPY tuple has {count} fields, expected {n}"
                )));
            }
            // Check that the whole tuple is here before decoding any of it (lengths are at most
            // i32::MAX each, and `p` never passes `rest.len()` by more than one of them).
            let mut p = 2usize;
            for _ in 0..n {
                let Some(field) = rest.get(p..p.saturating_add(4)) else {
                    return Ok((pos, false));
                };
                let len = usize::try_from(i32::from_be_bytes(be(field))).unwrap_or(0);
                p = p.saturating_add(4).saturating_add(len);
            }
            if rest.len() < p {
                return Ok((pos, false));
            }
            let mut p = 2usize;
            for c in 0..n {
                let len = i32::from_be_bytes(be(rest.get(p..).unwrap_or_default()));
                p = p.saturating_add(4);
                match usize::try_from(len) {
                    Err(_) => self.push_null(c)?,
                    Ok(len) => {
                        let end = p.saturating_add(len);
                        let v = rest.get(p..end).ok_or_else(|| framing("short field"))?;
                        self.push(c, v)?;
                        p = end;
                    }
                }
            }
            self.rows = self.rows.saturating_add(1);
            pos = pos.saturating_add(p);
        }
    }

    fn push_null(&mut self, c: usize) -> Result<(), StepError> {
        self.columns
            .get_mut(c)
            .ok_or_else(|| framing("more fields than columns"))?
            .push_null();
        Ok(())
    }

    fn push(&mut self, c: usize, v: &[u8]) -> Result<(), StepError> {
        let (Some(kind), Some(col)) = (self.kinds.get(c).copied(), self.columns.get_mut(c)) else {
            return Err(framing("more fields than columns"));
        };
        let name = col.name.as_str();
        col.validity.push(true);
        let need = |n: usize| {
            if v.len() == n {
                Ok(())
            } else {
                Err(bad(name, &format!("{} bytes, expected {n}", v.len())))
            }
        };
        match (&mut col.values, kind) {
            (Values::Bool(out), _) => {
                need(1)?;
                out.push(v.first() != Some(&0))
            }
            (Values::I16(out), _) => {
                need(2)?;
                out.push(i16::from_be_bytes(be(v)))
            }
            (Values::I32(out), Kind::Date) => {
                need(4)?;
                let days = i32::from_be_bytes(be(v));
                let shifted = days
                    .checked_add(PG_EPOCH_DAYS)
                    .filter(|_| days != i32::MAX && days != i32::MIN);
                out.push(shifted.ok_or_else(|| {
                    StepError::user(format!("column \"{name}\" holds an infinite date"))
                        .with_hint("filter or replace 'infinity' dates in the query")
                })?)
            }
            (Values::I32(out), _) => {
                need(4)?;
                out.push(i32::from_be_bytes(be(v)))
            }
            (Values::I64(out), Kind::I64) => {
                need(8)?;
                out.push(i64::from_be_bytes(be(v)))
            }
            (Values::I64(out), _) => {
                need(8)?;
                let us = i64::from_be_bytes(be(v));
                if us == i64::MAX || us == i64::MIN {
                    return Err(StepError::user(format!(
                        "column \"{name}\" holds an infinite timestamp"
                    ))
                    .with_hint("filter or replace 'infinity' timestamps in the query"));
                }
                out.push(us.checked_add(PG_EPOCH_US).ok_or_else(|| {
                    bad(
                        name,
                        "a timestamp outside the range of microseconds since 1970",
                    )
                })?)
            }
            (Values::F32(out), _) => {
                need(4)?;
                out.push(f32::from_be_bytes(be(v)))
            }
            (Values::F64(out), Kind::NumericF64) => out.push(numeric_f64(v, name)?),
            (Values::F64(out), _) => {
                need(8)?;
                out.push(f64::from_be_bytes(be(v)))
            }
            (Values::I128(out), Kind::Decimal { precision, scale }) => {
                out.push(numeric_i128(v, name, precision, scale)?)
            }
            (Values::I128(_), _) => return Err(bad(name, "decimal buffer")),
            (Values::Str(out), Kind::Uuid) => {
                need(16)?;
                out.push_value(uuid_text(v).as_str())
            }
            (Values::Str(out), kind) => {
                let bytes = if kind == Kind::Jsonb {
                    v.get(1..).ok_or_else(|| bad(name, "empty jsonb"))?
                } else {
                    v
                };
                let text =
                    std::str::from_utf8(bytes).map_err(|_| bad(name, "text that is not UTF-8"))?;
                out.push_value(text)
            }
            (Values::Bin(out), _) => out.push_value(v),
            (_, kind) => return Err(bad(name, &format!("no buffer for {kind:?}"))),
        }
        Ok(())
    }

    /// The rows decoded so far as a DataFrame; the buffers start empty again.
    pub fn take_frame(&mut self) -> Result<DataFrame, StepError> {
        let rows = std::mem::take(&mut self.rows);
        take_frame(&mut self.columns, rows)
    }
}

fn uuid_text(b: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        for nibble in [byte >> 4, byte & 15] {
            s.push(char::from(
                HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
    s
}

/// A numeric's sign, weight and base-10000 digits (big-endian `i16`s).
type NumericParts<'a> = (bool, i16, &'a [u8]);

/// A numeric's parts; `None` for NaN.
fn numeric_parts<'a>(v: &'a [u8], column: &str) -> Result<Option<NumericParts<'a>>, StepError> {
    if v.len() < 8 {
        return Err(bad(column, "short numeric"));
    }
    let ndigits = usize::try_from(i16::from_be_bytes(be(v)))
        .map_err(|_| bad(column, "negative numeric digit count"))?;
    let weight = i16::from_be_bytes(be(v.get(2..).unwrap_or_default()));
    let sign = u16::from_be_bytes(be(v.get(4..).unwrap_or_default()));
    // ndigits < 2^15, so this cannot overflow.
    let digits = v
        .get(8..8usize.saturating_add(ndigits.saturating_mul(2)))
        .ok_or_else(|| bad(column, "short numeric digits"))?;
    match sign {
        0x0000 => Ok(Some((false, weight, digits))),
        0x4000 => Ok(Some((true, weight, digits))),
        _ => Ok(None),
    }
}

// Float arithmetic, and a weight and index widened from 16 bits: cannot overflow.
#[allow(clippy::arithmetic_side_effects)]
fn numeric_f64(v: &[u8], column: &str) -> Result<f64, StepError> {
    let Some((neg, weight, digits)) = numeric_parts(v, column)? else {
        return Ok(f64::NAN);
    };
    let mut x = 0f64;
    for (i, d) in digits.chunks_exact(2).enumerate() {
        let d = i16::from_be_bytes(be(d)) as f64;
        x += d * 10000f64.powi(weight as i32 - i as i32);
    }
    Ok(if neg { -x } else { x })
}

// The exponent is computed in i64 from 16-bit parts; the i128 value only grows by checked
// operations; the division is by a power of ten (never zero) and the negation of a value below
// 10^38 in magnitude cannot overflow.
#[allow(clippy::arithmetic_side_effects)]
fn numeric_i128(v: &[u8], column: &str, precision: usize, scale: usize) -> Result<i128, StepError> {
    let overflow = || {
        StepError::user(format!(
            "column \"{column}\" holds a value that does not fit decimal({precision},{scale})"
        ))
        .with_hint(
            "cast the column in the query (e.g. ::numeric(38,6)) or set \"numeric\": \"f64\"",
        )
    };
    let Some((neg, weight, digits)) = numeric_parts(v, column)? else {
        return Err(StepError::user(format!(
            "column \"{column}\" holds NaN, which a decimal cannot"
        ))
        .with_hint("set \"numeric\": \"f64\", or filter NaN in the query"));
    };
    let mut x: i128 = 0;
    for (i, d) in digits.chunks_exact(2).enumerate() {
        let d = i16::from_be_bytes(be(d)) as i128;
        // digit i is worth 10000^(weight - i) = 10^(4 * (weight - i)); scaled by 10^scale.
        let exp = 4 * (weight as i64 - i as i64) + scale as i64;
        if exp >= 0 {
            let f = 10i128.checked_pow(exp as u32).ok_or_else(overflow)?;
            x = d
                .checked_mul(f)
                .and_then(|t| x.checked_add(t))
                .ok_or_else(overflow)?;
        } else if d != 0 {
            let f = 10i128.pow((-exp).min(38) as u32);
            if d % f != 0 {
                return Err(overflow());
            }
            x += d / f;
        }
    }
    if x.unsigned_abs() >= 10u128.pow(precision as u32) {
        return Err(overflow());
    }
    Ok(if neg { -x } else { x })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(neg: bool, weight: i16, dscale: u16, digits: &[i16]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend((digits.len() as i16).to_be_bytes());
        v.extend(weight.to_be_bytes());
        v.extend((if neg { 0x4000u16 } else { 0 }).to_be_bytes());
        v.extend(dscale.to_be_bytes());
        for d in digits {
            v.extend(d.to_be_bytes());
        }
        v
    }

    #[test]
    fn numerics_decode_exactly() {
        // 12345.67 = [1, 2345, 6700] with weight 1
        let v = numeric(false, 1, 2, &[1, 2345, 6700]);
        assert_eq!(numeric_i128(&v, "c", 10, 2).unwrap(), 1_234_567);
        assert!((numeric_f64(&v, "c").unwrap() - 12345.67).abs() < 1e-9);
        let v = numeric(true, -1, 4, &[5]); // -0.0005
        assert_eq!(numeric_i128(&v, "c", 10, 4).unwrap(), -5);
        let err = numeric_i128(&v, "c", 10, 2).unwrap_err();
        assert!(err.message().contains("does not fit decimal(10,2)"));
    }

    /// A server answer the decoder cannot follow is an error, never a panic.
    #[test]
    fn malformed_streams_and_values_are_errors() {
        let columns = [("id".to_string(), Kind::I64)];
        let mut header = SIGNATURE.to_vec();
        header.extend(0i32.to_be_bytes());
        header.extend((-5i32).to_be_bytes()); // a negative header extension
        let err = Decoder::new(&columns).decode(&header).unwrap_err();
        assert!(err.message().contains("negative header extension"), "{err}");

        let mut stream = SIGNATURE.to_vec();
        stream.extend([0u8; 8]);
        stream.extend(1i16.to_be_bytes());
        stream.extend(3i32.to_be_bytes()); // an int8 of 3 bytes
        stream.extend([1, 2, 3]);
        let err = Decoder::new(&columns).decode(&stream).unwrap_err();
        assert!(err.message().contains("3 bytes, expected 8"), "{err}");

        // A numeric with a negative digit count, and one whose digits are cut short.
        let mut v = numeric(false, 0, 0, &[1]);
        v[0..2].copy_from_slice(&(-1i16).to_be_bytes());
        assert!(numeric_i128(&v, "c", 10, 0).is_err());
        let mut v = numeric(false, 0, 0, &[1]);
        v[0..2].copy_from_slice(&i16::MAX.to_be_bytes());
        assert!(numeric_f64(&v, "c").is_err());
        assert!(numeric_i128(&numeric(false, i16::MAX, 0, &[9999]), "c", 38, 0).is_err());
    }

    #[test]
    fn tuples_split_across_messages_and_nulls() {
        let mut stream = SIGNATURE.to_vec();
        stream.extend(0i32.to_be_bytes());
        stream.extend(0i32.to_be_bytes());
        for (id, name) in [(1i64, Some("a")), (2, None)] {
            stream.extend(2i16.to_be_bytes());
            stream.extend(8i32.to_be_bytes());
            stream.extend(id.to_be_bytes());
            match name {
                Some(n) => {
                    stream.extend((n.len() as i32).to_be_bytes());
                    stream.extend(n.as_bytes());
                }
                None => stream.extend((-1i32).to_be_bytes()),
            }
        }
        stream.extend((-1i16).to_be_bytes());
        let mut d = Decoder::new(&[("id".into(), Kind::I64), ("name".into(), Kind::Text)]);
        let mut buf = Vec::new();
        let mut done = false;
        for chunk in stream.chunks(7) {
            buf.extend_from_slice(chunk);
            let (used, end) = d.decode(&buf).unwrap();
            buf.drain(..used);
            done |= end;
        }
        assert!(done);
        let df = d.take_frame().unwrap();
        assert_eq!(df.height(), 2);
        assert_eq!(df.column("name").unwrap().null_count(), 1);
        assert_eq!(df.column("id").unwrap().i64().unwrap().get(1), Some(2));
    }

    #[test]
    fn uuids_are_hyphenated() {
        let b: Vec<u8> = (0u8..16).collect();
        assert_eq!(uuid_text(&b), "00010203-0405-0607-0809-0a0b0c0d0e0f");
    }
}
