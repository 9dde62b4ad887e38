//! Validations beyond `not_null`: unique, range, pattern, accepted_values,
//! referential_integrity, schema, row_count, expression, freshness.
//!
//! Row rules mark each row valid or not. Table rules (schema, row_count, freshness) judge the
//! input as a whole: when they fail, every row counts as invalid and the step fails unless
//! `on_failure` is `warn` (there is no single row to filter out).

use crate::UserMethods;
use crate::expr;
use crate::helpers::{check_type_map, json_lit, mask, parse_type, require_columns, yes};
use indexmap::IndexMap;
use pipeline_base::StepError;
use pipeline_data::method::MethodOptions;
use pipeline_data::polars::prelude::*;
use pipeline_data::{Check, Datasets, OptionsError, PolarsResultExt};
use schemars::JsonSchema;
use serde::Deserialize;

fn all(df: &DataFrame, valid: bool) -> BooleanChunked {
    BooleanChunked::full("valid".into(), valid, df.height())
}

/// Options of `unique`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UniqueOptions {
    /// The key: one column or several (composite). Every row of a repeated key is invalid.
    pub columns: Vec<String>,
}
impl MethodOptions for UniqueOptions {}

/// Options of `range`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RangeOptions {
    pub column: String,
    /// Lower bound (number, or ISO date/time string for temporal columns).
    #[serde(default)]
    pub min: Option<serde_json::Value>,
    /// Upper bound.
    #[serde(default)]
    pub max: Option<serde_json::Value>,
    /// Whether the bounds themselves are allowed (default true).
    #[serde(default = "yes")]
    pub inclusive: bool,
}
impl MethodOptions for RangeOptions {
    fn check(&self) -> Result<(), OptionsError> {
        if self.min.is_none() && self.max.is_none() {
            return Err(OptionsError::new("", "give \"min\", \"max\" or both"));
        }
        Ok(())
    }
}

/// Options of `pattern`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PatternOptions {
    pub column: String,
    /// A regular expression the whole value must match (anchor it with ^...$ yourself to be strict).
    pub regex: String,
}
impl MethodOptions for PatternOptions {
    fn check(&self) -> Result<(), OptionsError> {
        regex_syntax_ok(&self.regex)
            .map_err(|e| OptionsError::new("/regex", format!("invalid regex: {e}")))
    }
}

fn regex_syntax_ok(r: &str) -> Result<(), String> {
    // Polars compiles it with the `regex` crate; validate the same way without running anything.
    let probe = Series::new("p".into(), [""]);
    probe
        .str()
        .map_err(|e| e.to_string())?
        .contains(r, true)
        .map(|_| ())
        .map_err(|e| e.to_string().lines().next().unwrap_or_default().to_string())
}

/// Options of `accepted_values`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptedValuesOptions {
    pub column: String,
    /// The allowed values.
    pub values: Vec<serde_json::Value>,
}
impl MethodOptions for AcceptedValuesOptions {
    fn check(&self) -> Result<(), OptionsError> {
        if self.values.is_empty() {
            return Err(OptionsError::new("/values", "no accepted value listed"));
        }
        Ok(())
    }
}

/// Options of `referential_integrity`: keys must exist in the second entry of `inputs`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReferentialIntegrityOptions {
    /// The key column of the main input.
    pub column: String,
    /// The key column of the other input (default: the same name).
    #[serde(default)]
    pub reference_column: Option<String>,
}
impl MethodOptions for ReferentialIntegrityOptions {}
impl ReferentialIntegrityOptions {
    /// The key column of the other input.
    pub fn reference_column(&self) -> String {
        self.reference_column
            .clone()
            .unwrap_or_else(|| self.column.clone())
    }
}

/// Options of `schema`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaOptions {
    /// Required columns and their types, e.g. `{"order_id": "int64", "amount": "float64"}`.
    pub columns: IndexMap<String, String>,
    /// Whether columns not listed are allowed (default true).
    #[serde(default = "yes")]
    pub allow_extra: bool,
}
impl MethodOptions for SchemaOptions {
    fn check(&self) -> Result<(), OptionsError> {
        check_type_map(&self.columns)
    }
}

/// Options of `row_count`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RowCountOptions {
    #[serde(default)]
    pub min: Option<u64>,
    #[serde(default)]
    pub max: Option<u64>,
}
impl MethodOptions for RowCountOptions {
    fn check(&self) -> Result<(), OptionsError> {
        match (self.min, self.max) {
            (None, None) => Err(OptionsError::new("", "give \"min\", \"max\" or both")),
            (Some(a), Some(b)) if a > b => Err(OptionsError::new("/min", "min is above max")),
            _ => Ok(()),
        }
    }
}

/// Options of `expression`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpressionOptions {
    /// A SQL boolean expression every row must satisfy, e.g. `amount >= 0 OR status = 'refunded'`.
    pub condition: String,
}
impl MethodOptions for ExpressionOptions {
    fn check(&self) -> Result<(), OptionsError> {
        expr::parse(&self.condition, "/condition").map(|_| ())
    }
}

/// Options of `freshness`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FreshnessOptions {
    /// A date or datetime column.
    pub column: String,
    /// How old the newest value may be: `90s`, `30m`, `24h`, `7d`.
    pub max_age: String,
}
impl MethodOptions for FreshnessOptions {
    fn check(&self) -> Result<(), OptionsError> {
        parse_age(&self.max_age).map(|_| ()).ok_or_else(|| {
            OptionsError::new("/max_age", format!("invalid duration \"{}\"", self.max_age))
                .with_hint("write e.g. 90s, 30m, 24h or 7d")
        })
    }
}

/// `30m` → microseconds.
fn parse_age(s: &str) -> Option<i64> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = n.parse().ok()?;
    let secs = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    // An age too long for microseconds in an i64 (~292,000 years) is refused, not wrapped.
    n.checked_mul(secs)?.checked_mul(1_000_000)
}

impl UserMethods {
    /// Rows whose key appears more than once are invalid.
    pub fn unique(df: &DataFrame, o: &UniqueOptions, _: &Datasets) -> Result<Check, StepError> {
        let rule = format!("unique({})", o.columns.join(", "));
        require_columns(df, &o.columns, &rule)?;
        let keys: Vec<Expr> = o.columns.iter().map(|c| col(c.as_str())).collect();
        let counts = len()
            .over(keys)
            .map_err(|e| pipeline_data::polars_error(e, &rule))?;
        let valid = mask(df, counts.lt_eq(lit(1u32)), &rule)?;
        Ok(Check::rows(rule, valid))
    }

    /// Values within bounds.
    pub fn range(df: &DataFrame, o: &RangeOptions, _: &Datasets) -> Result<Check, StepError> {
        let bound = |v: &Option<serde_json::Value>| {
            v.as_ref()
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into())
        };
        let rule = format!("range({}, {}..{})", o.column, bound(&o.min), bound(&o.max));
        require_columns(df, std::iter::once(&o.column), &rule)?;
        let dtype = df.column(&o.column).step_err(&rule)?.dtype().clone();
        let c = col(o.column.as_str());
        let mut e = lit(true);
        let as_bound = |v: &serde_json::Value| {
            json_lit(v).map(|l| {
                if dtype.is_temporal() {
                    l.cast(dtype.clone())
                } else {
                    l
                }
            })
        };
        if let Some(min) = o.min.as_ref().and_then(as_bound) {
            e = e.and(if o.inclusive {
                c.clone().gt_eq(min)
            } else {
                c.clone().gt(min)
            });
        }
        if let Some(max) = o.max.as_ref().and_then(as_bound) {
            e = e.and(if o.inclusive {
                c.clone().lt_eq(max)
            } else {
                c.lt(max)
            });
        }
        Ok(Check::rows(rule.clone(), mask(df, e, &rule)?))
    }

    /// String values matching a regex.
    pub fn pattern(df: &DataFrame, o: &PatternOptions, _: &Datasets) -> Result<Check, StepError> {
        let rule = format!("pattern({}, /{}/)", o.column, o.regex);
        require_columns(df, std::iter::once(&o.column), &rule)?;
        let column = df.column(&o.column).step_err(&rule)?;
        let text = column.cast(&DataType::String).step_err(&rule)?;
        let valid = text
            .str()
            .step_err(&rule)?
            .contains(&o.regex, true)
            .step_err(&rule)?;
        Ok(Check::rows(rule, valid))
    }

    /// Values from a list.
    pub fn accepted_values(
        df: &DataFrame,
        o: &AcceptedValuesOptions,
        _: &Datasets,
    ) -> Result<Check, StepError> {
        let shown: Vec<String> = o.values.iter().map(|v| v.to_string()).collect();
        let rule = format!("accepted_values({}, [{}])", o.column, shown.join(", "));
        require_columns(df, std::iter::once(&o.column), &rule)?;
        let mut e = lit(false);
        for v in &o.values {
            if let Some(l) = json_lit(v) {
                e = e.or(col(o.column.as_str()).eq(l));
            }
        }
        Ok(Check::rows(rule.clone(), mask(df, e, &rule)?))
    }

    /// Keys present in the other input (the whole input at once; the executor runs
    /// [`UserMethods::referential_integrity_streamed`] batch by batch against an index built
    /// once).
    pub fn referential_integrity(
        df: &DataFrame,
        o: &ReferentialIntegrityOptions,
        side: &Datasets,
    ) -> Result<Check, StepError> {
        let reference = Self::reference(o, side)?;
        Self::referential_integrity_streamed(df, o, &reference)
    }

    /// Required columns with their types (a table rule).
    pub fn schema(df: &DataFrame, o: &SchemaOptions, _: &Datasets) -> Result<Check, StepError> {
        let rule = "schema".to_string();
        let mut problems = Vec::new();
        for (c, t) in &o.columns {
            let want = parse_type(t).unwrap_or(DataType::Null);
            match df.schema().get(c.as_str()) {
                None => problems.push(format!("missing column {c}")),
                Some(have) if have != &want => {
                    problems.push(format!("column {c} is {have}, expected {want}"))
                }
                Some(_) => {}
            }
        }
        if !o.allow_extra {
            for name in df.get_column_names() {
                if !o.columns.contains_key(name.as_str()) {
                    problems.push(format!("unexpected column {name}"));
                }
            }
        }
        Ok(table_check(df, rule, problems))
    }

    /// Total rows within bounds (a table rule).
    pub fn row_count(
        df: &DataFrame,
        o: &RowCountOptions,
        _: &Datasets,
    ) -> Result<Check, StepError> {
        let n = df.height() as u64;
        let mut problems = Vec::new();
        if let Some(min) = o.min.filter(|m| n < *m) {
            problems.push(format!("{n} rows, fewer than {min}"));
        }
        if let Some(max) = o.max.filter(|m| n > *m) {
            problems.push(format!("{n} rows, more than {max}"));
        }
        Ok(table_check(df, "row_count".into(), problems))
    }

    /// A SQL boolean expression holds.
    pub fn expression(
        df: &DataFrame,
        o: &ExpressionOptions,
        _: &Datasets,
    ) -> Result<Check, StepError> {
        let rule = format!("expression({})", o.condition);
        let e =
            expr::parse(&o.condition, "/condition").map_err(|err| StepError::user(err.message))?;
        let valid = df
            .clone()
            .lazy()
            .select([e.alias("__v")])
            .collect()
            .map_err(|err| expr::eval_error(err, "condition", &o.condition, df))?;
        let column = valid.column("__v").step_err(&rule)?;
        let column = if column.len() == df.height() {
            column.clone()
        } else {
            column.new_from_index(0, df.height())
        };
        let valid = column
            .bool()
            .map_err(|_| {
                StepError::user(format!(
                    "condition \"{}\" is not a boolean expression",
                    o.condition
                ))
            })?
            .clone();
        Ok(Check::rows(rule, valid))
    }

    /// The newest value is recent enough (a table rule).
    pub fn freshness(
        df: &DataFrame,
        o: &FreshnessOptions,
        _: &Datasets,
    ) -> Result<Check, StepError> {
        let rule = format!("freshness({}, {})", o.column, o.max_age);
        require_columns(df, std::iter::once(&o.column), &rule)?;
        let max_age = parse_age(&o.max_age).unwrap_or(0);
        let as_us = df
            .column(&o.column)
            .step_err(&rule)?
            .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
            .map_err(|_| {
                StepError::user(format!(
                    "{rule}: {} is not a date or datetime column",
                    o.column
                ))
            })?;
        let newest = as_us
            .as_materialized_series()
            .datetime()
            .step_err(&rule)?
            .physical()
            .max();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        let problems = match newest {
            None if df.height() > 0 => vec!["no value".to_string()],
            Some(t) if now.saturating_sub(t) > max_age => {
                let age = now.saturating_sub(t) / 1_000_000;
                vec![format!("newest value is {age}s old")]
            }
            _ => vec![],
        };
        Ok(table_check(df, rule, problems))
    }
}

fn table_check(df: &DataFrame, rule: String, problems: Vec<String>) -> Check {
    if problems.is_empty() {
        Check::rows(rule, all(df, true))
    } else {
        Check::table(format!("{rule}: {}", problems.join("; ")), all(df, false))
    }
}

#[cfg(test)]
#[path = "checks_tests.rs"]
mod tests;
