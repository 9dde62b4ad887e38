//! Encodes DataFrame rows for MySQL: as `LOAD DATA` text (tab-separated, backslash-escaped,
//! NULL as `\N`, binary columns as hex decoded by `UNHEX` on the server) and, for the INSERT
//! fallback, as statement parameters. Numbers, decimals, dates and times are written from their
//! Arrow buffers in MySQL's literal formats; zoned datetimes are written in UTC (the session's
//! time zone).

use crate::columns::write_decimal;
use mysql_async::Value;
use pipeline_base::StepError;
use pipeline_data::polars::prelude::*;
use std::io::Write;

/// One column ready to encode.
enum Col {
    Bool(BooleanChunked),
    I64(Int64Chunked),
    U64(UInt64Chunked),
    F32(Float32Chunked),
    F64(Float64Chunked),
    Decimal(Int128Chunked, usize),
    Str(StringChunked),
    Bin(BinaryChunked),
    /// Days since 1970-01-01.
    Date(Int32Chunked),
    /// Microseconds since 1970-01-01 (UTC for zoned columns).
    Datetime(Int64Chunked),
    /// Nanoseconds since midnight.
    Time(Int64Chunked),
}

/// The columns of one frame, in the order of the load's column list.
pub(crate) struct FrameEncoder {
    cols: Vec<Col>,
    rows: usize,
}

fn internal(e: PolarsError) -> StepError {
    StepError::internal(format!("encoding rows for MySQL: {e}"))
}

/// Whether a column of this type is sent as hex and decoded with `UNHEX` by `LOAD DATA`.
pub(crate) fn is_binary(dtype: &DataType) -> bool {
    matches!(dtype, DataType::Binary | DataType::BinaryOffset)
}

fn binary(s: &Series) -> Result<BinaryChunked, StepError> {
    let s = if *s.dtype() == DataType::Binary {
        s.clone()
    } else {
        s.cast(&DataType::Binary).map_err(internal)?
    };
    Ok(s.binary().map_err(internal)?.clone())
}

impl FrameEncoder {
    /// Prepares `names` of `df` (every one must exist).
    pub fn new(df: &DataFrame, names: &[String]) -> Result<Self, StepError> {
        let mut cols = Vec::with_capacity(names.len());
        for name in names {
            let column = df.column(name).map_err(|_| {
                StepError::user(format!("column \"{name}\" is missing from a later batch"))
            })?;
            let s = column.as_materialized_series().rechunk();
            let col = match s.dtype() {
                DataType::Boolean => Col::Bool(s.bool().map_err(internal)?.clone()),
                DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32 => Col::I64(
                    s.cast(&DataType::Int64)
                        .map_err(internal)?
                        .i64()
                        .map_err(internal)?
                        .clone(),
                ),
                DataType::UInt64 => Col::U64(s.u64().map_err(internal)?.clone()),
                DataType::Float32 => Col::F32(s.f32().map_err(internal)?.clone()),
                DataType::Float64 => Col::F64(s.f64().map_err(internal)?.clone()),
                DataType::Decimal(_, scale) => {
                    let ca = s.decimal().map_err(internal)?;
                    Col::Decimal(ca.physical().clone(), *scale)
                }
                DataType::String => Col::Str(s.str().map_err(internal)?.clone()),
                DataType::Binary | DataType::BinaryOffset => Col::Bin(binary(&s)?),
                DataType::Date => Col::Date(s.date().map_err(internal)?.physical().clone()),
                DataType::Datetime(unit, _) => {
                    let ca = s.datetime().map_err(internal)?.physical().clone();
                    let factor = match unit {
                        TimeUnit::Nanoseconds => -1000,
                        TimeUnit::Microseconds => 1,
                        TimeUnit::Milliseconds => 1000,
                    };
                    let ca = match factor {
                        1 => ca,
                        -1000 => ca.apply_values(|v| v.div_euclid(1000)),
                        f => ca.apply_values(|v| v.saturating_mul(f)),
                    };
                    Col::Datetime(ca)
                }
                DataType::Time => Col::Time(s.time().map_err(internal)?.physical().clone()),
                DataType::List(_) | DataType::Struct(_) => {
                    return Err(StepError::user(format!(
                        "column \"{name}\" has type {}, which the mysql load cannot write",
                        s.dtype()
                    ))
                    .with_hint(
                        "drop it, or turn it into text or columns in a transform step first",
                    ));
                }
                other => {
                    let text = s.cast(&DataType::String).map_err(|e| {
                        StepError::user(format!(
                            "column \"{name}\" has type {other}, which the mysql load cannot write: {e}"
                        ))
                    })?;
                    Col::Str(text.str().map_err(internal)?.clone())
                }
            };
            cols.push(col);
        }
        Ok(FrameEncoder {
            cols,
            rows: df.height(),
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Rows `range` as LOAD DATA text, one line per row.
    pub fn tsv(&self, range: std::ops::Range<usize>, out: &mut Vec<u8>) {
        for i in range {
            for (j, col) in self.cols.iter().enumerate() {
                if j > 0 {
                    out.push(b'\t');
                }
                if !write_tsv(col, i, out) {
                    out.extend_from_slice(b"\\N");
                }
            }
            out.push(b'\n');
        }
    }

    /// Row `i` as statement parameters.
    pub fn values(&self, i: usize, out: &mut Vec<Value>) {
        let mut text = Vec::new();
        for col in &self.cols {
            let v = match col {
                Col::Bin(ca) => ca.get(i).map(|b| Value::Bytes(b.to_vec())),
                Col::Str(ca) => ca.get(i).map(|s| Value::Bytes(s.as_bytes().to_vec())),
                _ => {
                    text.clear();
                    write_plain(col, i, &mut text).then(|| Value::Bytes(text.clone()))
                }
            };
            out.push(v.unwrap_or(Value::NULL));
        }
    }
}

/// The `(year, month, day)` of a day count since 1970-01-01 (Howard Hinnant's algorithm).
// Callers pass days of a Polars date (i32) or of a datetime divided down to days (|days| < 2^38):
// every intermediate stays far below i64::MAX.
#[allow(clippy::arithmetic_side_effects)]
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn write_date(days: i64, out: &mut Vec<u8>) {
    let (y, m, d) = civil_from_days(days);
    let _ = write!(out, "{y:04}-{m:02}-{d:02}");
}

/// `HH:MM:SS[.ffffff]` of microseconds within a day.
fn write_clock(us: i64, out: &mut Vec<u8>) {
    let (secs, frac) = (us.div_euclid(1_000_000), us.rem_euclid(1_000_000));
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    );
    if frac > 0 {
        let _ = write!(out, ".{frac:06}");
    }
}

/// Writes the value's literal text (no escaping); `false` for NULL.
fn write_plain(col: &Col, i: usize, out: &mut Vec<u8>) -> bool {
    match col {
        Col::Bool(ca) => match ca.get(i) {
            Some(b) => out.push(if b { b'1' } else { b'0' }),
            None => return false,
        },
        Col::I64(ca) => match ca.get(i) {
            Some(v) => out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
            None => return false,
        },
        Col::U64(ca) => match ca.get(i) {
            Some(v) => out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
            None => return false,
        },
        // Non-finite floats are written as ryu spells them; the server refuses them with a
        // warning, which fails the load naming the column.
        Col::F32(ca) => match ca.get(i) {
            Some(v) => out.extend_from_slice(ryu::Buffer::new().format(v).as_bytes()),
            None => return false,
        },
        Col::F64(ca) => match ca.get(i) {
            Some(v) => out.extend_from_slice(ryu::Buffer::new().format(v).as_bytes()),
            None => return false,
        },
        Col::Decimal(ca, scale) => match ca.get(i) {
            Some(v) => write_decimal(v, *scale, out),
            None => return false,
        },
        Col::Str(ca) => match ca.get(i) {
            Some(s) => out.extend_from_slice(s.as_bytes()),
            None => return false,
        },
        Col::Bin(ca) => match ca.get(i) {
            Some(b) => out.extend_from_slice(b),
            None => return false,
        },
        Col::Date(ca) => match ca.get(i) {
            Some(d) => write_date(i64::from(d), out),
            None => return false,
        },
        Col::Datetime(ca) => match ca.get(i) {
            Some(us) => {
                write_date(us.div_euclid(86_400_000_000), out);
                out.push(b' ');
                write_clock(us.rem_euclid(86_400_000_000), out);
            }
            None => return false,
        },
        Col::Time(ca) => match ca.get(i) {
            Some(ns) => write_clock(ns / 1000, out),
            None => return false,
        },
    }
    true
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes the value as a LOAD DATA field; `false` for NULL.
fn write_tsv(col: &Col, i: usize, out: &mut Vec<u8>) -> bool {
    match col {
        Col::Str(ca) => match ca.get(i) {
            Some(s) => escape_into(s.as_bytes(), out),
            None => return false,
        },
        Col::Bin(ca) => match ca.get(i) {
            Some(b) => {
                out.reserve(b.len().saturating_mul(2));
                for &x in b {
                    for nibble in [x >> 4, x & 15] {
                        out.push(HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'));
                    }
                }
            }
            None => return false,
        },
        other => return write_plain(other, i, out),
    }
    true
}

/// Backslash-escapes what LOAD DATA would otherwise read as a separator or an escape.
fn escape_into(b: &[u8], out: &mut Vec<u8>) {
    if !b
        .iter()
        .any(|&c| matches!(c, b'\\' | b'\t' | b'\n' | b'\r' | 0))
    {
        out.extend_from_slice(b);
        return;
    }
    for &c in b {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0 => out.extend_from_slice(b"\\0"),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::decode::days_from_civil;

    #[test]
    fn dates_round_trip_through_civil_days() {
        for days in [-800_000i64, -1, 0, 1, 19_782, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn decimals_are_written_exactly() {
        let text = |v, s| {
            let mut out = Vec::new();
            write_decimal(v, s, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(text(1_234_500, 4), "123.4500");
        assert_eq!(text(-5, 3), "-0.005");
        assert_eq!(text(42, 0), "42");
        assert_eq!(text(0, 2), "0.00");
    }

    #[test]
    fn rows_become_escaped_tsv_with_nulls() {
        let df = df!(
            "s" => [Some("a\tb\nc\\d\r\0"), None, Some("\\N")],
            "i" => [Some(1i32), Some(-2), None],
            "f" => [Some(0.5f64), None, Some(1e21)],
        )
        .unwrap();
        let bin = BinaryChunked::from_slice_options(
            "b".into(),
            &[Some(&[0u8, 255][..]), None, Some(&b""[..])],
        );
        let mut df = df;
        df.with_column(bin.into_column()).unwrap();
        let ts = Int64Chunked::new("t".into(), [Some(1_704_164_645_000_006i64), None, Some(-1)])
            .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC));
        df.with_column(ts.into_column()).unwrap();
        let names: Vec<String> = ["s", "i", "f", "b", "t"].map(String::from).to_vec();
        let enc = FrameEncoder::new(&df, &names).unwrap();
        let mut out = Vec::new();
        enc.tsv(0..3, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a\\tb\\nc\\\\d\\r\\0\t1\t0.5\t00ff\t2024-01-02 03:04:05.000006\n\
             \\N\t-2\t\\N\t\\N\t\\N\n\
             \\\\N\t\\N\t1e21\t\t1969-12-31 23:59:59.999999\n"
        );
        let mut values = Vec::new();
        enc.values(1, &mut values);
        assert_eq!(values[0], Value::NULL);
        assert_eq!(values[1], Value::Bytes(b"-2".to_vec()));
    }

    #[test]
    fn every_other_type_as_parameters() {
        let mut df = df!(
            "u" => [Some(u64::MAX), None],
            "f" => [Some(1.5f32), None],
            "b" => [Some(true), Some(false)],
            "i8" => [Some(-3i8), None],
        )
        .unwrap();
        let dec =
            Int128Chunked::from_iter_options("d".into(), [Some(-12345i128), None].into_iter())
                .into_decimal_unchecked(10, 3);
        df.with_column(dec.into_column()).unwrap();
        let day = Int32Chunked::new("day".into(), [Some(19_782), None]).into_date();
        df.with_column(day.into_column()).unwrap();
        let ns = Int64Chunked::new("ns".into(), [Some(1_500_000_001i64), None])
            .into_datetime(TimeUnit::Nanoseconds, None);
        df.with_column(ns.into_column()).unwrap();
        let ms = Int64Chunked::new("ms".into(), [Some(1_500i64), None])
            .into_datetime(TimeUnit::Milliseconds, None);
        df.with_column(ms.into_column()).unwrap();
        let clock =
            Int64Chunked::new("clock".into(), [Some(3_723_000_004_000i64), None]).into_time();
        df.with_column(clock.into_column()).unwrap();
        let names: Vec<String> = df
            .get_column_names()
            .iter()
            .map(|n| n.to_string())
            .collect();
        let enc = FrameEncoder::new(&df, &names).unwrap();
        let mut values = Vec::new();
        enc.values(0, &mut values);
        let text: Vec<String> = values
            .iter()
            .map(|v| match v {
                Value::Bytes(b) => String::from_utf8(b.clone()).unwrap(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            text,
            [
                "18446744073709551615",
                "1.5",
                "1",
                "-3",
                "-12.345",
                "2024-02-29",
                "1970-01-01 00:00:01.500000",
                "1970-01-01 00:00:01.500000",
                "01:02:03.000004"
            ]
        );
        let mut nulls = Vec::new();
        enc.values(1, &mut nulls);
        assert_eq!(nulls.iter().filter(|v| **v == Value::NULL).count(), 8);
        let mut out = Vec::new();
        enc.tsv(1..2, &mut out);
        assert!(String::from_utf8(out).unwrap().starts_with("\\N\t\\N\t0\t"));
        assert!(is_binary(&DataType::Binary) && !is_binary(&DataType::String));
    }

    #[test]
    fn nested_columns_are_refused_by_name() {
        let s = Series::new("l".into(), [Series::new("".into(), [1i32])]);
        let df = DataFrame::new(1, vec![s.into_column()]).unwrap();
        let err = FrameEncoder::new(&df, &["l".to_string()]).err().unwrap();
        assert!(err.message().contains("column \"l\""));
    }
}
