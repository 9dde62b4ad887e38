//! Shared helpers: column checks with suggestions, boolean masks from expressions, type names.

use pipeline_base::StepError;
use pipeline_data::PolarsResultExt;
use pipeline_data::polars::prelude::*;

/// Errors unless every listed column exists, suggesting close names.
pub fn require_columns<'a>(
    df: &DataFrame,
    columns: impl IntoIterator<Item = &'a String>,
    what: &str,
) -> Result<(), StepError> {
    let available: Vec<&str> = df
        .get_column_names()
        .into_iter()
        .map(|c| c.as_str())
        .collect();
    for c in columns {
        if !available.contains(&c.as_str()) {
            let hint = pipeline_config::suggest(c, available.iter().copied())
                .map(|s| format!("did you mean \"{s}\"?"))
                .unwrap_or_else(|| format!("available columns: {}", available.join(", ")));
            return Err(StepError::user(format!("{what}: no column \"{c}\"")).with_hint(hint));
        }
    }
    Ok(())
}

/// Evaluates a boolean expression over a frame.
pub fn mask(df: &DataFrame, expr: Expr, what: &str) -> Result<BooleanChunked, StepError> {
    let out = df
        .clone()
        .lazy()
        .select([expr.alias("__pipectl_valid")])
        .collect()
        .map_err(|e| crate::expr::eval_error(e, what, "", df))?;
    let column = out.column("__pipectl_valid").step_err(what)?;
    let column = if column.len() == df.height() {
        column.clone()
    } else {
        // A scalar result (e.g. a literal condition) applies to every row.
        column.new_from_index(0, df.height())
    };
    Ok(column.bool().step_err(what)?.clone())
}

/// Parses a type name: `int8`..`int64`, `uint8`..`uint64`, `float32`, `float64`, `string`, `bool`,
/// `date`, `datetime` (µs, naive), `datetime[ms|us|ns]`, `datetime[us, UTC]`, `decimal(p,s)`.
pub fn parse_type(name: &str) -> Option<DataType> {
    let n = name.trim().to_lowercase();
    Some(match n.as_str() {
        "int8" | "i8" => DataType::Int8,
        "int16" | "i16" => DataType::Int16,
        "int32" | "i32" | "int" | "integer" => DataType::Int32,
        "int64" | "i64" | "bigint" | "long" => DataType::Int64,
        "uint8" | "u8" => DataType::UInt8,
        "uint16" | "u16" => DataType::UInt16,
        "uint32" | "u32" => DataType::UInt32,
        "uint64" | "u64" => DataType::UInt64,
        "float32" | "f32" | "float" => DataType::Float32,
        "float64" | "f64" | "double" => DataType::Float64,
        "string" | "str" | "text" | "utf8" => DataType::String,
        "bool" | "boolean" => DataType::Boolean,
        "date" => DataType::Date,
        "binary" | "bytes" => DataType::Binary,
        "datetime" | "timestamp" => DataType::Datetime(TimeUnit::Microseconds, None),
        _ => {
            if let Some(inner) = n
                .strip_prefix("datetime[")
                .and_then(|t| t.strip_suffix(']'))
            {
                let (unit, tz) = match inner.split_once(',') {
                    // The time zone keeps its case: take it from the name as written.
                    Some((u, _)) => {
                        let written = name.trim().strip_suffix(']')?.split_once(',')?.1;
                        (u.trim(), Some(written.trim().to_string()))
                    }
                    None => (inner.trim(), None),
                };
                let unit = match unit {
                    "ms" => TimeUnit::Milliseconds,
                    "us" | "μs" => TimeUnit::Microseconds,
                    "ns" => TimeUnit::Nanoseconds,
                    _ => return None,
                };
                DataType::Datetime(unit, TimeZone::opt_try_new(tz).ok()?)
            } else if let Some(inner) = n.strip_prefix("decimal(").and_then(|t| t.strip_suffix(')'))
            {
                let (p, s) = inner.split_once(',')?;
                DataType::Decimal(p.trim().parse().ok()?, s.trim().parse().ok()?)
            } else {
                return None;
            }
        }
    })
}

/// Serde default `true`.
pub fn yes() -> bool {
    true
}

/// Checks a column → type-name map, pointing at the first unknown type.
pub fn check_type_map(
    columns: &indexmap::IndexMap<String, String>,
) -> Result<(), pipeline_data::OptionsError> {
    for (c, t) in columns {
        if parse_type(t).is_none() {
            return Err(pipeline_data::OptionsError::new(
                pipeline_config::join_pointer("/columns", c),
                format!("unknown type \"{t}\""),
            )
            .with_hint(format!("types: {TYPE_NAMES}")));
        }
    }
    Ok(())
}

pub const TYPE_NAMES: &str = "int8, int16, int32, int64, uint8..uint64, float32, float64, string, bool, date, binary, datetime, datetime[us, UTC], decimal(p,s)";

/// A JSON scalar as a Polars literal.
pub fn json_lit(v: &serde_json::Value) -> Option<Expr> {
    Some(match v {
        serde_json::Value::Bool(b) => lit(*b),
        serde_json::Value::Number(n) if n.is_i64() => lit(n.as_i64()?),
        serde_json::Value::Number(n) => lit(n.as_f64()?),
        serde_json::Value::String(s) => lit(s.clone()),
        serde_json::Value::Null => lit(NULL),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_with_unicode_whitespace_do_not_panic() {
        // A trailing em space once made the time-zone slice cut a character in two.
        assert_eq!(
            parse_type("datetime[us, UTC]\u{2003}"),
            Some(DataType::Datetime(
                TimeUnit::Microseconds,
                Some(TimeZone::UTC)
            ))
        );
        // An empty time zone after the comma is read as none.
        assert!(matches!(
            parse_type("\u{2003}datetime[us,\u{2003}]\u{2003}\u{2003}"),
            None | Some(DataType::Datetime(_, None))
        ));
        assert_eq!(
            parse_type("datetime[ms, Europe/Paris]").map(|t| t.to_string()),
            Some("datetime[ms, Europe/Paris]".into())
        );
    }

    #[test]
    fn type_names() {
        assert_eq!(parse_type("INT64"), Some(DataType::Int64));
        assert_eq!(parse_type("decimal(10, 2)"), Some(DataType::Decimal(10, 2)));
        assert_eq!(
            parse_type("datetime[ms]"),
            Some(DataType::Datetime(TimeUnit::Milliseconds, None))
        );
        assert_eq!(
            parse_type("datetime[us, UTC]"),
            Some(DataType::Datetime(
                TimeUnit::Microseconds,
                Some(TimeZone::UTC)
            ))
        );
        assert_eq!(parse_type("nope"), None);
    }
}
