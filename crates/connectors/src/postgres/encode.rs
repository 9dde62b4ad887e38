//! Encodes DataFrame rows in PostgreSQL's binary COPY format for the target table's column
//! types: each column is first cast (strictly) to the Polars type matching the PostgreSQL type,
//! then written value by value from its Arrow buffers.

use pipeline_base::StepError;
use pipeline_data::polars::prelude::*;
use tokio_postgres::types::Type;

pub(crate) const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
pub(crate) const TRAILER: &[u8] = &[0xff, 0xff];

const PG_EPOCH_DAYS: i32 = 10_957;
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// The Polars type a value must have to be written into a PostgreSQL column of type `ty`.
pub(crate) fn polars_type_for(ty: &Type, column: &str) -> Result<DataType, StepError> {
    Ok(match *ty {
        Type::BOOL => DataType::Boolean,
        Type::INT2 => DataType::Int16,
        Type::INT4 => DataType::Int32,
        Type::INT8 => DataType::Int64,
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 => DataType::Float64,
        Type::TEXT
        | Type::VARCHAR
        | Type::BPCHAR
        | Type::NAME
        | Type::JSON
        | Type::JSONB
        | Type::UUID
        | Type::NUMERIC => DataType::String,
        Type::BYTEA => DataType::Binary,
        Type::DATE => DataType::Date,
        Type::TIMESTAMP => DataType::Datetime(TimeUnit::Microseconds, None),
        Type::TIMESTAMPTZ => DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)),
        _ => {
            return Err(StepError::user(format!(
                "column \"{column}\" of the target table has type {}, which the postgres load cannot write",
                ty.name()
            )));
        }
    })
}

/// One column ready to encode: its values cast and rechunked.
pub(crate) struct ColumnEncoder {
    ty: Type,
    series: Series,
}

impl ColumnEncoder {
    pub fn new(column: &Column, ty: &Type) -> Result<Self, StepError> {
        let name = column.name().to_string();
        let target = polars_type_for(ty, &name)?;
        let series = column.as_materialized_series();
        if *ty == Type::NUMERIC && series.dtype().is_float() {
            // Rust prints floats without exponents, which numeric's text form needs.
            let f = series
                .cast(&DataType::Float64)
                .map_err(|e| StepError::internal(format!("encoding {name}: {e}")))?;
            let f = f
                .f64()
                .map_err(|e| StepError::internal(format!("encoding {name}: {e}")))?;
            let text: StringChunked = f
                .iter()
                .map(|o| o.filter(|v| v.is_finite()).map(|v| v.to_string()))
                .collect();
            return Ok(ColumnEncoder {
                ty: ty.clone(),
                series: text.with_name(name.into()).into_series(),
            });
        }
        let cast = if *series.dtype() == target {
            series.clone()
        } else {
            series.strict_cast(&target).map_err(|e| {
                StepError::user(format!(
                    "column \"{name}\" ({}) cannot be written to a {} column: {e}",
                    series.dtype(),
                    ty.name()
                ))
            })?
        };
        Ok(ColumnEncoder {
            ty: ty.clone(),
            series: cast.rechunk(),
        })
    }

    /// Appends the field (length + value) of row `i`.
    pub fn encode(&self, i: usize, out: &mut Vec<u8>) -> Result<(), StepError> {
        macro_rules! fixed {
            ($ca:expr, $conv:expr) => {{
                match $ca.get(i) {
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(v) => {
                        let Some(value) = $conv(v) else {
                            return Err(StepError::user(format!(
                                "column \"{}\": the value in row {i} is outside the range of PostgreSQL's {}",
                                self.series.name(),
                                self.ty.name()
                            )));
                        };
                        let bytes = value.to_be_bytes();
                        out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                        out.extend_from_slice(&bytes);
                    }
                }
            }};
        }
        let s = &self.series;
        let err = |e: PolarsError| StepError::internal(format!("encoding: {e}"));
        match self.ty {
            Type::BOOL => fixed!(s.bool().map_err(err)?, |v: bool| Some(v as u8)),
            Type::INT2 => fixed!(s.i16().map_err(err)?, Some::<i16>),
            Type::INT4 => fixed!(s.i32().map_err(err)?, Some::<i32>),
            Type::INT8 => fixed!(s.i64().map_err(err)?, Some::<i64>),
            Type::FLOAT4 => fixed!(s.f32().map_err(err)?, Some::<f32>),
            Type::FLOAT8 => fixed!(s.f64().map_err(err)?, Some::<f64>),
            Type::DATE => fixed!(s.date().map_err(err)?.physical(), |v: i32| v
                .checked_sub(PG_EPOCH_DAYS)),
            Type::TIMESTAMP | Type::TIMESTAMPTZ => {
                fixed!(s.datetime().map_err(err)?.physical(), |v: i64| v
                    .checked_sub(PG_EPOCH_US))
            }
            Type::BYTEA => match s.binary().map_err(err)?.get(i) {
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(b) => {
                    out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    out.extend_from_slice(b);
                }
            },
            _ => {
                let Some(text) = s.str().map_err(err)?.get(i) else {
                    out.extend_from_slice(&(-1i32).to_be_bytes());
                    return Ok(());
                };
                match self.ty {
                    Type::UUID => {
                        let bytes = uuid_bytes(text).ok_or_else(|| {
                            StepError::user(format!(
                                "column \"{}\": \"{text}\" is not a UUID",
                                s.name()
                            ))
                        })?;
                        out.extend_from_slice(&16i32.to_be_bytes());
                        out.extend_from_slice(&bytes);
                    }
                    Type::NUMERIC => {
                        let bytes = numeric_bytes(text).ok_or_else(|| {
                            StepError::user(format!(
                                "column \"{}\": \"{text}\" is not a number",
                                s.name()
                            ))
                        })?;
                        out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                        out.extend_from_slice(&bytes);
                    }
                    Type::JSONB => {
                        let len = i32::try_from(text.len())
                            .ok()
                            .and_then(|n| n.checked_add(1))
                            .ok_or_else(|| {
                                StepError::user(format!(
                                    "column \"{}\": a JSON value over 2 GiB",
                                    s.name()
                                ))
                            })?;
                        out.extend_from_slice(&len.to_be_bytes());
                        out.push(1);
                        out.extend_from_slice(text.as_bytes());
                    }
                    _ => {
                        out.extend_from_slice(&(text.len() as i32).to_be_bytes());
                        out.extend_from_slice(text.as_bytes());
                    }
                }
            }
        }
        Ok(())
    }
}

fn uuid_bytes(text: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = text.bytes().filter(|b| *b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (o, pair) in out.iter_mut().zip(hex.chunks(2)) {
        *o = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// A decimal string (`-123.4500`, `1e3` not accepted) in numeric's binary form.
fn numeric_bytes(text: &str) -> Option<Vec<u8>> {
    let t = text.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    if t.eq_ignore_ascii_case("nan") {
        let mut v = Vec::with_capacity(8);
        v.extend(0i16.to_be_bytes());
        v.extend(0i16.to_be_bytes());
        v.extend(0xC000u16.to_be_bytes());
        v.extend(0u16.to_be_bytes());
        return Some(v);
    }
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let dscale = frac.len() as u16;
    // Pad the integer part on the left and the fraction on the right to groups of 4 digits.
    let int = int.trim_start_matches('0');
    // Digits to add so that the length is a multiple of 4: (-len) mod 4.
    let pad_left = int.len().wrapping_neg() % 4;
    let int_digits = format!("{}{int}", "0".repeat(pad_left));
    let pad_right = frac.len().wrapping_neg() % 4;
    let frac_digits = format!("{frac}{}", "0".repeat(pad_right));
    let mut groups: Vec<i16> = int_digits
        .as_bytes()
        .chunks(4)
        .chain(frac_digits.as_bytes().chunks(4))
        .map(|c| {
            std::str::from_utf8(c)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        })
        .collect();
    let mut weight = i16::try_from(int_digits.len() / 4)
        .unwrap_or(i16::MAX)
        .saturating_sub(1);
    // Strip leading and trailing zero groups.
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight = weight.saturating_sub(1);
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let mut v = Vec::with_capacity(groups.len().saturating_mul(2).saturating_add(8));
    v.extend((groups.len() as i16).to_be_bytes());
    v.extend(weight.to_be_bytes());
    v.extend(
        (if neg && !groups.is_empty() {
            0x4000u16
        } else {
            0
        })
        .to_be_bytes(),
    );
    v.extend(dscale.to_be_bytes());
    for g in groups {
        v.extend(g.to_be_bytes());
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field (length + value) of row `i` of `column` encoded for `ty`.
    fn field(column: Column, ty: &Type, i: usize) -> Result<Vec<u8>, StepError> {
        let mut out = Vec::new();
        ColumnEncoder::new(&column, ty)?.encode(i, &mut out)?;
        Ok(out)
    }

    fn be(len: i32, value: &[u8]) -> Vec<u8> {
        let mut v = len.to_be_bytes().to_vec();
        v.extend_from_slice(value);
        v
    }

    #[test]
    fn every_type_encodes_as_postgres_reads_it() {
        let c = |name: &str, s: Series| s.with_name(name.into()).into_column();
        let ok = |col: Column, ty: Type, i: usize| field(col, &ty, i).unwrap();
        assert_eq!(
            ok(c("b", Series::new("b".into(), [true])), Type::BOOL, 0),
            be(1, &[1])
        );
        assert_eq!(
            ok(c("i", Series::new("i".into(), [7i16])), Type::INT2, 0),
            be(2, &7i16.to_be_bytes())
        );
        assert_eq!(
            ok(c("i", Series::new("i".into(), [7i64])), Type::INT4, 0),
            be(4, &7i32.to_be_bytes())
        );
        assert_eq!(
            ok(c("i", Series::new("i".into(), [7i32])), Type::INT8, 0),
            be(8, &7i64.to_be_bytes())
        );
        assert_eq!(
            ok(c("f", Series::new("f".into(), [1.5f32])), Type::FLOAT4, 0),
            be(4, &1.5f32.to_be_bytes())
        );
        assert_eq!(
            ok(c("f", Series::new("f".into(), [1.5f64])), Type::FLOAT8, 0),
            be(8, &1.5f64.to_be_bytes())
        );
        assert_eq!(
            ok(
                c("n", Series::new("n".into(), [None::<i64>])),
                Type::INT8,
                0
            ),
            (-1i32).to_be_bytes().to_vec(),
            "NULL"
        );
        let day = Series::new("d".into(), [10_958i32])
            .cast(&DataType::Date)
            .unwrap();
        assert_eq!(ok(c("d", day), Type::DATE, 0), be(4, &1i32.to_be_bytes()));
        let at = Series::new("t".into(), [946_684_800_000_001i64])
            .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
            .unwrap();
        assert_eq!(
            ok(c("t", at.clone()), Type::TIMESTAMP, 0),
            be(8, &1i64.to_be_bytes())
        );
        let bin = Series::new("b".into(), [Some(&b"\x00"[..]), None]);
        assert_eq!(ok(c("b", bin.clone()), Type::BYTEA, 0), be(1, &[0]));
        assert_eq!(
            ok(c("b", bin), Type::BYTEA, 1),
            (-1i32).to_be_bytes().to_vec()
        );
        let text = Series::new("s".into(), ["héllo"]);
        assert_eq!(
            ok(c("s", text.clone()), Type::TEXT, 0),
            be(6, "héllo".as_bytes())
        );
        assert_eq!(
            ok(c("s", Series::new("s".into(), ["{}"])), Type::JSONB, 0),
            be(3, b"\x01{}")
        );
        let uuid = Series::new("u".into(), ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]);
        assert_eq!(ok(c("u", uuid), Type::UUID, 0).len(), 4 + 16);
        let money = Series::new("m".into(), [12.5f64]);
        let n = numeric_bytes("12.5").unwrap();
        assert_eq!(ok(c("m", money), Type::NUMERIC, 0), be(n.len() as i32, &n));

        // What cannot be written is a user error naming the column.
        let bad = field(c("u", Series::new("u".into(), ["nope"])), &Type::UUID, 0).unwrap_err();
        assert!(bad.message().contains("\"nope\" is not a UUID"), "{bad}");
        let bad = field(c("n", Series::new("n".into(), ["1e3"])), &Type::NUMERIC, 0).unwrap_err();
        assert!(bad.message().contains("is not a number"), "{bad}");
        let bad = field(c("s", Series::new("s".into(), ["x"])), &Type::INT4, 0).unwrap_err();
        assert!(
            bad.message().contains("cannot be written to a int4 column"),
            "{bad}"
        );
        let bad = field(c("s", Series::new("s".into(), ["x"])), &Type::POINT, 0).unwrap_err();
        assert!(bad.message().contains("type point"), "{bad}");
        let far = Series::new("d".into(), [i32::MIN])
            .cast(&DataType::Date)
            .unwrap();
        let bad = field(c("d", far), &Type::DATE, 0).unwrap_err();
        assert!(bad.message().contains("outside the range"), "{bad}");
    }

    #[test]
    fn numerics_encode_like_postgres() {
        // 12345.678 -> digits [1, 2345, 6780], weight 1, dscale 3
        let v = numeric_bytes("12345.678").unwrap();
        assert_eq!(&v[..8], &[0, 3, 0, 1, 0, 0, 0, 3]);
        assert_eq!(&v[8..], &[0, 1, 0x09, 0x29, 0x1a, 0x7c]);
        let v = numeric_bytes("-0.0005").unwrap(); // [5], weight -1
        assert_eq!(&v[..8], &[0, 1, 0xff, 0xff, 0x40, 0, 0, 4]);
        assert!(numeric_bytes("1e3").is_none());
        assert_eq!(
            uuid_bytes("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap()[0],
            0xa0
        );
    }
}
