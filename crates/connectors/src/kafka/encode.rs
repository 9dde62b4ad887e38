//! Rows of a DataFrame as the bytes of Kafka records: each row's JSON object, written column by
//! column from the typed buffers (no per-row values), and a column's text.

use crate::columns::write_decimal;
use pipeline_base::StepError;
use pipeline_data::polars::prelude::*;
use rskafka::chrono::{DateTime, NaiveDate, Utc};

/// A JSON string literal.
fn json_str(s: &str, out: &mut Vec<u8>) {
    // serde_json escapes exactly as JSON requires; writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Appends column `c`'s value in each row's JSON object (`"name":value`).
pub(super) fn append_json(c: &Column, first: bool, rows: &mut [Vec<u8>]) -> Result<(), StepError> {
    let mut key = Vec::new();
    if !first {
        key.push(b',');
    }
    json_str(c.name(), &mut key);
    key.push(b':');
    let s = c.as_materialized_series();
    let unsupported = || {
        StepError::user(format!(
            "column \"{}\" has type {}, which the kafka load cannot write as JSON",
            c.name(),
            c.dtype()
        ))
        .with_hint("cast it (a cast step) or leave it out (select/drop)")
    };
    macro_rules! each {
        ($ca:expr, $write:expr) => {{
            for (row, v) in rows.iter_mut().zip($ca.iter()) {
                row.extend_from_slice(&key);
                match v {
                    None => row.extend_from_slice(b"null"),
                    Some(v) => $write(v, row),
                }
            }
        }};
    }
    let int =
        |v: i64, out: &mut Vec<u8>| out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    let float = |v: f64, out: &mut Vec<u8>| {
        if v.is_finite() {
            out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
        } else {
            out.extend_from_slice(b"null");
        }
    };
    let err =
        |e: PolarsError| StepError::internal(format!("encoding column \"{}\": {e}", c.name()));
    match c.dtype() {
        DataType::Boolean => each!(s.bool().map_err(err)?, |v: bool, o: &mut Vec<u8>| o
            .extend_from_slice(if v { b"true" } else { b"false" })),
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => {
            let cast = s.cast(&DataType::Int64).map_err(err)?;
            each!(cast.i64().map_err(err)?, int)
        }
        DataType::UInt64 => each!(s.u64().map_err(err)?, |v: u64, o: &mut Vec<u8>| o
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes())),
        DataType::Float32 | DataType::Float64 => {
            let cast = s.cast(&DataType::Float64).map_err(err)?;
            each!(cast.f64().map_err(err)?, float)
        }
        DataType::String => each!(s.str().map_err(err)?, |v: &str, o: &mut Vec<u8>| json_str(
            v, o
        )),
        DataType::Binary => each!(s.binary().map_err(err)?, |v: &[u8], o: &mut Vec<u8>| {
            let hex: String = v.iter().map(|b| format!("{b:02x}")).collect();
            json_str(&hex, o)
        }),
        DataType::Date => each!(
            s.date().map_err(err)?.physical(),
            |v: i32, o: &mut Vec<u8>| {
                let day = NaiveDate::from_num_days_from_ce_opt(v.saturating_add(719_163));
                match day {
                    Some(d) => json_str(&d.format("%Y-%m-%d").to_string(), o),
                    None => o.extend_from_slice(b"null"),
                }
            }
        ),
        DataType::Datetime(unit, _) => {
            let unit = *unit;
            each!(
                s.datetime().map_err(err)?.physical(),
                |v: i64, o: &mut Vec<u8>| {
                    let us = match unit {
                        TimeUnit::Nanoseconds => v.div_euclid(1000),
                        TimeUnit::Microseconds => v,
                        TimeUnit::Milliseconds => v.saturating_mul(1000),
                    };
                    match DateTime::<Utc>::from_timestamp_micros(us) {
                        Some(t) => json_str(&t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(), o),
                        None => o.extend_from_slice(b"null"),
                    }
                }
            )
        }
        DataType::Decimal(_, scale) => {
            let scale = *scale;
            each!(
                s.decimal().map_err(err)?.physical(),
                |v: i128, o: &mut Vec<u8>| write_decimal(v, scale, o)
            )
        }
        _ => return Err(unsupported()),
    }
    Ok(())
}

/// Each row's text in column `name` (`None` for NULL).
pub(super) fn texts(
    df: &DataFrame,
    name: &str,
    step: &str,
) -> Result<Vec<Option<String>>, StepError> {
    let c = df.column(name).map_err(|_| {
        StepError::user(format!(
            "step \"{step}\": column \"{name}\" is not in the data"
        ))
    })?;
    let s = c
        .as_materialized_series()
        .cast(&DataType::String)
        .map_err(|e| StepError::user(format!("step \"{step}\": column \"{name}\" as text: {e}")))?;
    let ca = s
        .str()
        .map_err(|e| StepError::internal(format!("column \"{name}\": {e}")))?;
    Ok(ca.iter().map(|v| v.map(str::to_string)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_json_objects() {
        let df = df!(
            "id" => [1i64, 2],
            "name" => [Some("a\"b"), None],
            "x" => [1.5f64, f64::NAN],
            "ok" => [true, false],
        )
        .unwrap();
        let mut rows = vec![vec![b'{'], vec![b'{']];
        for (i, c) in df.columns().iter().enumerate() {
            append_json(c, i == 0, &mut rows).unwrap();
        }
        let rows: Vec<String> = rows
            .into_iter()
            .map(|mut r| {
                r.push(b'}');
                String::from_utf8(r).unwrap()
            })
            .collect();
        assert_eq!(rows[0], r#"{"id":1,"name":"a\"b","x":1.5,"ok":true}"#);
        assert_eq!(rows[1], r#"{"id":2,"name":null,"x":null,"ok":false}"#);
        let mut out = Vec::new();
        write_decimal(-12345, 3, &mut out);
        assert_eq!(out, b"-12.345");
    }
}
