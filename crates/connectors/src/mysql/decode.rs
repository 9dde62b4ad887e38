//! Decodes binary-protocol rows (`exec_iter`) straight into Polars column buffers: each
//! column's kind is fixed from the result's metadata, and every value is moved into a typed
//! buffer with a validity bitmap (no per-row AnyValue or intermediate frame).
//!
//! Zero dates (`0000-00-00`, or a zero month or day) and invalid ones (`2024-02-31`, stored
//! under `ALLOW_INVALID_DATES`) have no calendar meaning: they are read as NULL and counted, and
//! the extract logs the count once.

use crate::columns::{ColumnBuffer, Logical, Values, take_frame};
use mysql_async::Value;
use mysql_async::consts::{ColumnFlags, ColumnType};
use pipeline_base::StepError;
use pipeline_data::polars::prelude::*;
use polars_arrow::array::MutableBinaryViewArray;

/// How a MySQL column lands in Polars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    I8,
    I16,
    I32,
    I64,
    U64,
    F32,
    F64,
    Decimal { precision: usize, scale: usize },
    Text,
    Binary,
    Date,
    DateTime,
    Timestamp,
    Time,
    Year,
    Bit,
    Null,
}

/// The widest decimal Polars holds.
const MAX_PRECISION: usize = 38;
const BINARY_CHARSET: u16 = 63;

/// The Polars kind of a result column, or an error naming the column and its type.
pub(crate) fn kind_of(c: &mysql_async::Column) -> Result<Kind, StepError> {
    use ColumnType::*;
    let unsigned = c.flags().contains(ColumnFlags::UNSIGNED_FLAG);
    let name = c.name_str();
    Ok(match c.column_type() {
        // TINYINT(1) is MySQL's BOOL.
        MYSQL_TYPE_TINY if c.column_length() == 1 => Kind::Bool,
        MYSQL_TYPE_TINY if unsigned => Kind::I16,
        MYSQL_TYPE_TINY => Kind::I8,
        MYSQL_TYPE_SHORT if unsigned => Kind::I32,
        MYSQL_TYPE_SHORT => Kind::I16,
        MYSQL_TYPE_INT24 => Kind::I32,
        MYSQL_TYPE_LONG if unsigned => Kind::I64,
        MYSQL_TYPE_LONG => Kind::I32,
        MYSQL_TYPE_LONGLONG if unsigned => Kind::U64,
        MYSQL_TYPE_LONGLONG => Kind::I64,
        MYSQL_TYPE_FLOAT => Kind::F32,
        MYSQL_TYPE_DOUBLE => Kind::F64,
        MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => {
            let scale = c.decimals() as usize;
            // The display length counts the sign and the point.
            let precision = (c.column_length() as usize)
                .saturating_sub(usize::from(scale > 0))
                .saturating_sub(usize::from(!unsigned));
            if scale > MAX_PRECISION {
                return Err(StepError::user(format!(
                    "column \"{name}\" is DECIMAL with {scale} digits after the point; a decimal holds at most 38"
                ))
                .with_hint(format!("cast it in a query, e.g. CAST({name} AS DOUBLE)")));
            }
            // Wider declared precisions (computed columns often are) are read as decimal(38, s);
            // a value that does not fit is an error naming the column.
            Kind::Decimal {
                precision: precision.clamp(scale.max(1), MAX_PRECISION),
                scale,
            }
        }
        MYSQL_TYPE_JSON => Kind::Text,
        MYSQL_TYPE_VARCHAR
        | MYSQL_TYPE_VAR_STRING
        | MYSQL_TYPE_STRING
        | MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB
        | MYSQL_TYPE_BLOB
        | MYSQL_TYPE_ENUM
        | MYSQL_TYPE_SET => {
            if c.character_set() == BINARY_CHARSET {
                Kind::Binary
            } else {
                Kind::Text
            }
        }
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => Kind::Date,
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => Kind::DateTime,
        MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => Kind::Timestamp,
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => Kind::Time,
        MYSQL_TYPE_YEAR => Kind::Year,
        MYSQL_TYPE_BIT => Kind::Bit,
        MYSQL_TYPE_NULL => Kind::Null,
        other => {
            return Err(StepError::user(format!(
                "column \"{name}\" has type {other:?}, which the mysql extract cannot read"
            ))
            .with_hint(format!(
                "convert it in a query, e.g. \"query\": \"SELECT ..., ST_AsText({name}) AS {name} FROM ...\""
            )));
        }
    })
}

/// Rows in, frames out.
pub(crate) struct Decoder {
    columns: Vec<ColumnBuffer>,
    kinds: Vec<Kind>,
    rows: usize,
    /// Zero dates read as NULL so far.
    pub zero_dates: u64,
}

/// The buffer a kind is decoded into, and what its values mean.
fn buffer(kind: Kind) -> (Values, Logical) {
    match kind {
        Kind::Bool => (Values::Bool(Vec::new()), Logical::Plain),
        Kind::I8 => (Values::I8(Vec::new()), Logical::Plain),
        Kind::I16 | Kind::Year => (Values::I16(Vec::new()), Logical::Plain),
        Kind::I32 => (Values::I32(Vec::new()), Logical::Plain),
        Kind::Date => (Values::I32(Vec::new()), Logical::Date),
        Kind::I64 => (Values::I64(Vec::new()), Logical::Plain),
        Kind::DateTime => (Values::I64(Vec::new()), Logical::Datetime { utc: false }),
        Kind::Timestamp => (Values::I64(Vec::new()), Logical::Datetime { utc: true }),
        Kind::Time => (Values::I64(Vec::new()), Logical::Time),
        Kind::U64 | Kind::Bit => (Values::U64(Vec::new()), Logical::Plain),
        Kind::F32 => (Values::F32(Vec::new()), Logical::Plain),
        Kind::F64 => (Values::F64(Vec::new()), Logical::Plain),
        Kind::Decimal { precision, scale } => (
            Values::I128(Vec::new()),
            Logical::Decimal { precision, scale },
        ),
        Kind::Text | Kind::Null => (Values::Str(MutableBinaryViewArray::new()), Logical::Plain),
        Kind::Binary => (Values::Bin(MutableBinaryViewArray::new()), Logical::Plain),
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
// Callers pass a MySQL year (0..=9999, widened to i64), month and day: every intermediate is
// within a few million, far from overflow.
#[allow(clippy::arithmetic_side_effects)]
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Whether a date exists: MySQL stores zero dates (`0000-00-00`, a zero month or day) and,
/// under `ALLOW_INVALID_DATES`, days past the month's end (`2024-02-31`).
pub(crate) fn calendar_date(y: u16, m: u8, d: u8) -> bool {
    let leap = (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// A DECIMAL's text (`-123.4500`) as an integer scaled by `10^scale`.
pub(crate) fn decimal_i128(text: &[u8], precision: usize, scale: usize) -> Option<i128> {
    let (neg, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    let (int, frac) = match digits.iter().position(|&b| b == b'.') {
        Some(p) => {
            let (int, dot_frac) = digits.split_at(p);
            (int, dot_frac.get(1..).unwrap_or_default())
        }
        None => (digits, &[][..]),
    };
    let mut x: i128 = 0;
    let push = |x: i128, b: u8| -> Option<i128> {
        let digit = b.checked_sub(b'0').filter(|d| *d < 10)?;
        x.checked_mul(10)?.checked_add(i128::from(digit))
    };
    for &b in int {
        x = push(x, b)?;
    }
    for i in 0..scale {
        x = push(x, frac.get(i).copied().unwrap_or(b'0'))?;
    }
    // Digits beyond the scale must be zeros (MySQL sends exactly `scale` of them).
    if frac.iter().skip(scale).any(|&b| b != b'0') {
        return None;
    }
    if x.unsigned_abs() >= 10u128.checked_pow(precision as u32)? {
        return None;
    }
    Some(if neg { x.checked_neg()? } else { x })
}

impl Decoder {
    pub fn new(columns: &[(String, Kind)]) -> Self {
        Decoder {
            columns: columns
                .iter()
                .map(|(name, kind)| {
                    let (values, logical) = buffer(*kind);
                    ColumnBuffer::new(name, values, logical)
                })
                .collect(),
            kinds: columns.iter().map(|(_, k)| *k).collect(),
            rows: 0,
            zero_dates: 0,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Moves one row's values into the buffers.
    pub fn push(&mut self, row: Vec<Option<Value>>) -> Result<(), StepError> {
        if row.len() != self.columns.len() {
            return Err(StepError::internal(format!(
                "a row has {} values, the result {} columns",
                row.len(),
                self.columns.len()
            )));
        }
        for ((col, kind), value) in self.columns.iter_mut().zip(&self.kinds).zip(row) {
            match value {
                None | Some(Value::NULL) => col.push_null(),
                Some(v) => {
                    if push_value(col, *kind, v)? {
                        col.validity.push(true);
                    } else {
                        // A zero date: no calendar value.
                        col.push_null();
                        self.zero_dates = self.zero_dates.saturating_add(1);
                    }
                }
            }
        }
        self.rows = self.rows.saturating_add(1);
        Ok(())
    }

    /// Hands over the rows decoded so far as a frame.
    pub fn take_frame(&mut self) -> Result<DataFrame, StepError> {
        let rows = std::mem::take(&mut self.rows);
        take_frame(&mut self.columns, rows)
    }
}

/// The column a value belongs to, for messages.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    name: &'a str,
    kind: Kind,
}

fn unexpected(col: Ctx<'_>, v: &Value) -> StepError {
    StepError::internal(format!(
        "column \"{}\": unexpected value {v:?} for a {:?} column",
        col.name, col.kind
    ))
}

fn out_of_range(col: Ctx<'_>, what: impl std::fmt::Display) -> StepError {
    StepError::user(format!(
        "column \"{}\" holds {what}, which does not fit its {:?} column",
        col.name, col.kind
    ))
}

fn int_of(col: Ctx<'_>, v: &Value) -> Result<i128, StepError> {
    match v {
        Value::Int(i) => Ok(i128::from(*i)),
        Value::UInt(u) => Ok(i128::from(*u)),
        Value::Bytes(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.trim().parse::<i128>().ok())
            .ok_or_else(|| unexpected(col, v)),
        _ => Err(unexpected(col, v)),
    }
}

/// Pushes a non-NULL value (not its validity); `Ok(false)` when it was a zero date, of which
/// nothing was pushed.
// Date and time parts come from the binary protocol as u16/u8/u32 fields of valid ranges
// (years to 9999, hours under 24 once checked); widened to i64 their sums and products stay
// far below i64::MAX.
#[allow(clippy::arithmetic_side_effects)]
fn push_value(buffer: &mut ColumnBuffer, kind: Kind, v: Value) -> Result<bool, StepError> {
    let col = Ctx {
        name: buffer.name.as_str(),
        kind,
    };
    macro_rules! int {
        ($vec:expr, $t:ty) => {{
            let i = int_of(col, &v)?;
            let x = <$t>::try_from(i).map_err(|_| out_of_range(col, i))?;
            $vec.push(x);
        }};
    }
    match (&mut buffer.values, col.kind) {
        (Values::Bool(vec), _) => {
            let i = int_of(col, &v)?;
            vec.push(i != 0);
        }
        (Values::I8(vec), _) => int!(vec, i8),
        (Values::I16(vec), _) => int!(vec, i16),
        (Values::I32(vec), Kind::Date) => match v {
            Value::Date(y, m, d, ..) => {
                if !calendar_date(y, m, d) {
                    return Ok(false);
                }
                vec.push(days_from_civil(i64::from(y), u32::from(m), u32::from(d)) as i32);
            }
            other => return Err(unexpected(col, &other)),
        },
        (Values::I32(vec), _) => int!(vec, i32),
        (Values::I64(vec), Kind::DateTime | Kind::Timestamp) => match v {
            Value::Date(y, m, d, h, mi, s, us) => {
                if !calendar_date(y, m, d) {
                    return Ok(false);
                }
                let days = days_from_civil(i64::from(y), u32::from(m), u32::from(d));
                let secs = days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s);
                vec.push(secs * 1_000_000 + i64::from(us));
            }
            other => return Err(unexpected(col, &other)),
        },
        (Values::I64(vec), Kind::Time) => match v {
            Value::Time(neg, days, h, mi, s, us) => {
                if neg || days > 0 {
                    let sign = if neg { "-" } else { "" };
                    let hours = u64::from(days) * 24 + u64::from(h);
                    return Err(StepError::user(format!(
                        "column \"{}\" holds the TIME {sign}{hours}:{mi:02}:{s:02}, outside a time of day (00:00:00 to 23:59:59.999999)",
                        col.name
                    ))
                    .with_hint(format!(
                        "read it as text or seconds in a query, e.g. TIME_TO_SEC({0}) AS {0}",
                        col.name
                    )));
                }
                let secs = i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s);
                vec.push((secs * 1_000_000 + i64::from(us)) * 1000);
            }
            other => return Err(unexpected(col, &other)),
        },
        (Values::I64(vec), _) => int!(vec, i64),
        (Values::U64(vec), Kind::Bit) => match &v {
            Value::Bytes(b) if b.len() <= 8 => {
                vec.push(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)));
            }
            Value::Int(_) | Value::UInt(_) => int!(vec, u64),
            other => return Err(unexpected(col, other)),
        },
        (Values::U64(vec), _) => int!(vec, u64),
        (Values::F32(vec), _) => match v {
            Value::Float(f) => vec.push(f),
            Value::Double(f) => vec.push(f as f32),
            other => return Err(unexpected(col, &other)),
        },
        (Values::F64(vec), _) => match v {
            Value::Double(f) => vec.push(f),
            Value::Float(f) => vec.push(f64::from(f)),
            other => return Err(unexpected(col, &other)),
        },
        (Values::I128(vec), Kind::Decimal { precision, scale }) => match &v {
            Value::Bytes(b) => {
                let x = decimal_i128(b, precision, scale).ok_or_else(|| {
                    StepError::user(format!(
                        "column \"{}\" holds {}, which does not fit decimal({precision},{scale})",
                        col.name,
                        String::from_utf8_lossy(b)
                    ))
                    .with_hint("cast the column in a query, e.g. CAST(x AS DECIMAL(38,6)) or CAST(x AS DOUBLE)")
                })?;
                vec.push(x);
            }
            other => return Err(unexpected(col, other)),
        },
        (Values::Str(arr), _) => match v {
            Value::Bytes(b) => match std::str::from_utf8(&b) {
                Ok(s) => arr.push_value(s),
                Err(_) => {
                    return Err(StepError::user(format!(
                        "column \"{}\" holds text that is not valid UTF-8",
                        col.name
                    ))
                    .with_hint("convert it in a query, e.g. CONVERT(x USING utf8mb4), or read it as binary with CAST(x AS BINARY)"));
                }
            },
            other => arr.push_value(other.as_sql(true).trim_matches('\'')),
        },
        (Values::Bin(arr), _) => match v {
            Value::Bytes(b) => arr.push_value(&b),
            other => return Err(unexpected(col, &other)),
        },
        (_, kind) => {
            return Err(StepError::internal(format!(
                "column \"{}\": no buffer for {kind:?}",
                col.name
            )));
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(1000, 1, 1), -354_285);
    }

    #[test]
    fn only_calendar_dates_are_dates() {
        assert!(calendar_date(2024, 2, 29));
        assert!(!calendar_date(2023, 2, 29));
        assert!(!calendar_date(2024, 2, 31));
        assert!(!calendar_date(0, 0, 0));
        assert!(!calendar_date(2024, 4, 31));
        assert!(calendar_date(2000, 2, 29) && !calendar_date(1900, 2, 29));
    }

    #[test]
    fn decimals_parse_exactly() {
        assert_eq!(decimal_i128(b"123.4500", 10, 4), Some(1_234_500));
        assert_eq!(decimal_i128(b"-0.0001", 10, 4), Some(-1));
        assert_eq!(decimal_i128(b"12", 10, 2), Some(1200));
        assert_eq!(decimal_i128(b"12.345", 10, 2), None);
        assert_eq!(decimal_i128(b"1000", 3, 0), None);
        assert_eq!(
            decimal_i128(b"1234567890123456789012345678.0123456789", 38, 10),
            Some(12_345_678_901_234_567_890_123_456_780_123_456_789)
        );
        assert_eq!(decimal_i128(b"1x", 10, 0), None);
    }

    #[test]
    fn rows_become_typed_columns_with_nulls_and_zero_dates() {
        let mut d = Decoder::new(&[
            ("id".into(), Kind::U64),
            ("name".into(), Kind::Text),
            ("day".into(), Kind::Date),
            ("at".into(), Kind::Timestamp),
            (
                "amount".into(),
                Kind::Decimal {
                    precision: 12,
                    scale: 2,
                },
            ),
            ("flags".into(), Kind::Bit),
        ]);
        d.push(vec![
            Some(Value::UInt(u64::MAX)),
            Some(Value::Bytes("é\t😀".as_bytes().to_vec())),
            Some(Value::Date(2024, 2, 29, 0, 0, 0, 0)),
            Some(Value::Date(2024, 1, 2, 3, 4, 5, 6)),
            Some(Value::Bytes(b"-12.30".to_vec())),
            Some(Value::Bytes(vec![1, 2])),
        ])
        .unwrap();
        d.push(vec![
            None,
            Some(Value::NULL),
            Some(Value::Date(0, 0, 0, 0, 0, 0, 0)),
            None,
            None,
            None,
        ])
        .unwrap();
        assert_eq!(d.zero_dates, 1);
        let df = d.take_frame().unwrap();
        assert_eq!(df.height(), 2);
        for c in df.columns() {
            assert_eq!(c.null_count(), 1, "{}", c.name());
        }
        assert_eq!(
            df.column("id").unwrap().u64().unwrap().get(0),
            Some(u64::MAX)
        );
        assert_eq!(df.column("flags").unwrap().u64().unwrap().get(0), Some(258));
        let text = |c: &str| df.column(c).unwrap().get(0).unwrap().to_string();
        assert_eq!(text("day"), "2024-02-29");
        assert_eq!(text("at"), "2024-01-02 03:04:05.000006 UTC");
        assert_eq!(text("amount"), "-12.30");
        assert_eq!(d.rows(), 0);
    }

    #[test]
    fn out_of_range_values_name_the_column() {
        let mut d = Decoder::new(&[("t".into(), Kind::Time)]);
        let err = d
            .push(vec![Some(Value::Time(false, 1, 2, 0, 0, 0))])
            .unwrap_err();
        assert!(err.message().contains("column \"t\""), "{}", err.message());
        let mut d = Decoder::new(&[("n".into(), Kind::I8)]);
        let err = d.push(vec![Some(Value::Int(300))]).unwrap_err();
        assert!(err.message().contains("\"n\""));
    }
}
