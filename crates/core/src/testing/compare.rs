//! Comparing what a step produced with what a test expects: rows (as JSON values, in any order
//! unless asked), row counts and column types, with a readable diff on failure.

use pipeline_data::polars::prelude::*;
use serde_json::{Map, Value};

/// How many differing rows a failure shows on each side.
const SHOWN: usize = 10;

/// One cell as JSON: numbers and booleans as such, everything else as its text.
fn cell(v: AnyValue<'_>) -> Value {
    match v {
        AnyValue::Null => Value::Null,
        AnyValue::Boolean(b) => Value::Bool(b),
        AnyValue::Int8(i) => i.into(),
        AnyValue::Int16(i) => i.into(),
        AnyValue::Int32(i) => i.into(),
        AnyValue::Int64(i) => i.into(),
        AnyValue::UInt8(i) => i.into(),
        AnyValue::UInt16(i) => i.into(),
        AnyValue::UInt32(i) => i.into(),
        AnyValue::UInt64(i) => i.into(),
        AnyValue::Float32(f) => {
            serde_json::Number::from_f64(f64::from(f)).map_or(Value::Null, Value::Number)
        }
        AnyValue::Float64(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        AnyValue::String(s) => Value::String(s.to_string()),
        AnyValue::StringOwned(s) => Value::String(s.to_string()),
        other => Value::String(other.to_string().trim_matches('"').to_string()),
    }
}

/// The frame's rows as JSON objects.
pub fn frame_rows(df: &DataFrame) -> Vec<Map<String, Value>> {
    let names = df.get_column_names_owned();
    (0..df.height())
        .map(|i| {
            names
                .iter()
                .zip(df.columns())
                .map(|(n, c)| (n.to_string(), c.get(i).map(cell).unwrap_or(Value::Null)))
                .collect()
        })
        .collect()
}

/// Text of temporal values, so `2026-11-28T10:00:00Z` matches `2026-11-28 10:00:00 UTC`.
fn normal_text(s: &str) -> String {
    let s = s.trim();
    // The date/time separator only (a `T` elsewhere, as in `UTC`, stays).
    let mut t = match (s.get(..10), s.get(10..11), s.get(11..)) {
        (Some(date), Some("T"), Some(rest)) => format!("{date} {rest}"),
        _ => s.to_string(),
    };
    for suffix in [" UTC", "Z", "+00:00"] {
        if let Some(x) = t.strip_suffix(suffix) {
            t = x.to_string();
        }
    }
    for zeros in [".000000000", ".000000", ".000"] {
        if let Some(x) = t.strip_suffix(zeros) {
            t = x.to_string();
        }
    }
    t
}

/// Text that starts like a date (`YYYY-MM-DD`): the only text compared loosely.
fn temporal(s: &str) -> bool {
    let b = s.trim().as_bytes();
    b.len() >= 10
        && b.iter().take(4).all(u8::is_ascii_digit)
        && b.get(4) == Some(&b'-')
        && b.get(7) == Some(&b'-')
}

/// Whether an actual value is what the test expects.
pub fn same(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        // Integers exactly; a float on either side within a relative 1e-9.
        (Value::Number(e), Value::Number(a)) => match (e.as_i64(), a.as_i64()) {
            (Some(e), Some(a)) => e == a,
            _ => match (e.as_f64(), a.as_f64()) {
                (Some(e), Some(a)) => (e - a).abs() <= 1e-9 * e.abs().max(1.0),
                _ => false,
            },
        },
        // Decimals and other exact numbers come back as text.
        (Value::Number(e), Value::String(a)) => match (e.as_f64(), a.parse::<f64>()) {
            (Some(e), Ok(a)) => (e - a).abs() <= 1e-9 * e.abs().max(1.0),
            _ => false,
        },
        (Value::String(e), Value::String(a)) => {
            e == a || (temporal(e) && temporal(a) && normal_text(e) == normal_text(a))
        }
        (e, a) => e == a,
    }
}

/// Whether `actual` has every column `expected` names, with the expected values.
fn row_matches(expected: &Map<String, Value>, actual: &Map<String, Value>) -> bool {
    expected
        .iter()
        .all(|(k, v)| actual.get(k).is_some_and(|a| same(v, a)))
}

fn show(row: &Map<String, Value>) -> String {
    Value::Object(row.clone()).to_string()
}

/// Compares rows: `None` when they match, else the difference as lines. Columns the expected
/// rows do not name are not compared; `ordered` compares position by position.
pub fn compare_rows(
    expected: &[Map<String, Value>],
    actual: &[Map<String, Value>],
    ordered: bool,
) -> Option<String> {
    let mut lines = Vec::new();
    if let Some(missing) = expected
        .iter()
        .flat_map(|r| r.keys())
        .find(|k| actual.first().is_some_and(|a| !a.contains_key(k.as_str())))
    {
        let have: Vec<&str> = actual
            .first()
            .map(|a| a.keys().map(String::as_str).collect())
            .unwrap_or_default();
        return Some(format!(
            "the output has no column \"{missing}\" (columns: {})",
            have.join(", ")
        ));
    }
    if ordered {
        for (i, pair) in expected.iter().zip(actual).enumerate() {
            if !row_matches(pair.0, pair.1) {
                lines.push(format!(
                    "row {i}:\n  - {}\n  + {}",
                    show(pair.0),
                    show(pair.1)
                ));
                if lines.len() >= SHOWN {
                    break;
                }
            }
        }
        if expected.len() != actual.len() {
            lines.push(format!(
                "expected {} rows, got {}",
                expected.len(),
                actual.len()
            ));
        }
        return (!lines.is_empty()).then(|| lines.join("\n"));
    }
    let mut used = vec![false; actual.len()];
    let mut missing = Vec::new();
    for e in expected {
        let found = actual
            .iter()
            .enumerate()
            .position(|(i, a)| !used.get(i).copied().unwrap_or(true) && row_matches(e, a));
        match found {
            Some(i) => {
                if let Some(u) = used.get_mut(i) {
                    *u = true;
                }
            }
            None => missing.push(e),
        }
    }
    let extra: Vec<&Map<String, Value>> = actual
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|(a, _)| a)
        .collect();
    if missing.is_empty() && extra.is_empty() {
        return None;
    }
    lines.push(format!(
        "rows differ (expected {}, got {}; - expected but missing, + produced but not expected):",
        expected.len(),
        actual.len()
    ));
    for m in missing.iter().take(SHOWN) {
        lines.push(format!("  - {}", show(m)));
    }
    if missing.len() > SHOWN {
        lines.push(format!(
            "  - ... {} more",
            missing.len().saturating_sub(SHOWN)
        ));
    }
    for x in extra.iter().take(SHOWN) {
        lines.push(format!("  + {}", show(x)));
    }
    if extra.len() > SHOWN {
        lines.push(format!(
            "  + ... {} more",
            extra.len().saturating_sub(SHOWN)
        ));
    }
    Some(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rows(v: Value) -> Vec<Map<String, Value>> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn rows_match_in_any_order_on_the_named_columns() {
        let actual = rows(
            json!([{"id": 1, "v": 2.0, "t": "2026-11-28 10:00:00 UTC"}, {"id": 2, "v": 3.5, "t": null}]),
        );
        let expected =
            rows(json!([{"id": 2, "v": 3.5}, {"id": 1, "v": 2, "t": "2026-11-28T10:00:00Z"}]));
        assert_eq!(compare_rows(&expected, &actual, false), None);
        let d = compare_rows(&expected, &actual, true).unwrap();
        assert!(d.contains("row 0"), "{d}");
        let wrong = rows(json!([{"id": 1, "v": 2}, {"id": 3, "v": 3.5}]));
        let d = compare_rows(&wrong, &actual, false).unwrap();
        assert!(
            d.contains("- {\"id\":3,\"v\":3.5}") && d.contains("+ {\"id\":2"),
            "{d}"
        );
        let d = compare_rows(&rows(json!([{"nope": 1}])), &actual, false).unwrap();
        assert!(d.contains("no column \"nope\""), "{d}");
        assert!(same(&json!(12.5), &json!("12.50")));
        assert!(!same(
            &json!(1_700_000_000_000i64),
            &json!(1_700_000_000_500i64)
        ));
        assert!(!same(&json!("ABZ"), &json!("AB")));
        assert!(same(
            &json!("2026-11-28T10:00:00.000Z"),
            &json!("2026-11-28 10:00:00 UTC")
        ));
    }

    #[test]
    fn frames_become_json_rows() {
        let df = df!("id" => [1i64, 2], "x" => [Some("a"), None]).unwrap();
        let r = frame_rows(&df);
        assert_eq!(Value::Object(r[0].clone()), json!({"id": 1, "x": "a"}));
        assert_eq!(r[1]["x"], Value::Null);
    }
}
