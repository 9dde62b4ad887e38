//! Validation steps on Spark, with pipectl's rule names and semantics: a row whose rule gives
//! null is invalid; `unique` marks every row of a repeated key; table rules (schema,
//! row_count, freshness) fail the step unless `on_failure` is `warn`. Invalid rows are counted
//! before anything is written, so `fail` and `max_invalid_fraction` stop a run with nothing
//! loaded; quarantined rows carry `_pipectl_reason`, the rule they broke.

use crate::check::Refusal;
use crate::compile::{At, json_literal, spark_type};
use crate::expr::{Context, ident, string_literal};
use pipeline_base::{OnFailure, StepError};
use pipeline_methods as m;

/// The column naming the rule a quarantined row broke (as the Polars engine writes it).
pub const REASON_COLUMN: &str = "_pipectl_reason";

pub struct Validation {
    pub input: String,
    /// pipectl's name of the rule, e.g. `not_null(customer_id)`.
    pub rule: String,
    pub kind: RuleKind,
    pub on_failure: OnFailure,
    pub quarantine: Option<String>,
    pub max_invalid_fraction: Option<f64>,
}

pub enum RuleKind {
    /// A condition true for valid rows, over the input's columns (null: invalid).
    Row(String),
    /// Rows whose key appears more than once are invalid.
    Unique(Vec<String>),
    /// The column's value must be in the other input's column.
    Reference {
        column: String,
        other: String,
        other_column: String,
    },
    /// Required columns with their Spark types.
    Schema {
        columns: Vec<(String, String, String)>,
        allow_extra: bool,
    },
    RowCount {
        min: Option<u64>,
        max: Option<u64>,
    },
    Freshness {
        column: String,
        max_age_seconds: i64,
    },
}

pub fn compile_validation(at: &At<'_>) -> Result<Validation, Refusal> {
    let input = at.input(0)?;
    let (rule, kind) = match at.step.method.as_str() {
        "not_null" => {
            let o: m::NotNullOptions = at.options()?;
            let conditions: Vec<String> = o
                .columns
                .iter()
                .map(|c| format!("{} IS NOT NULL", ident(c)))
                .collect();
            (
                format!("not_null({})", o.columns.join(", ")),
                RuleKind::Row(conditions.join(" AND ")),
            )
        }
        "unique" => {
            let o: m::UniqueOptions = at.options()?;
            (
                format!("unique({})", o.columns.join(", ")),
                RuleKind::Unique(o.columns),
            )
        }
        "range" => {
            let o: m::RangeOptions = at.options()?;
            let shown = |v: &Option<serde_json::Value>| {
                v.as_ref()
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into())
            };
            let rule = format!("range({}, {}..{})", o.column, shown(&o.min), shown(&o.max));
            let c = ident(&o.column);
            let mut parts = Vec::new();
            for (bound, op) in [
                (&o.min, if o.inclusive { ">=" } else { ">" }),
                (&o.max, if o.inclusive { "<=" } else { "<" }),
            ] {
                if let Some(v) = bound {
                    let literal = json_literal(v).ok_or_else(|| {
                        at.refuse("/options", "bounds must be numbers or strings")
                    })?;
                    parts.push(format!("{c} {op} {literal}"));
                }
            }
            (rule, RuleKind::Row(parts.join(" AND ")))
        }
        "pattern" => {
            let o: m::PatternOptions = at.options()?;
            let rule = format!("pattern({}, /{}/)", o.column, o.regex);
            let regex = java_regex(&o.regex).map_err(|why| {
                at.refuse("/options/regex", format!("the regex /{}/ {why}, which Java's regex engine reads differently from Rust's", o.regex))
            })?;
            (
                rule,
                RuleKind::Row(format!(
                    "CAST({} AS STRING) RLIKE {}",
                    ident(&o.column),
                    string_literal(&regex)
                )),
            )
        }
        "accepted_values" => {
            let o: m::AcceptedValuesOptions = at.options()?;
            let shown: Vec<String> = o.values.iter().map(|v| v.to_string()).collect();
            let rule = format!("accepted_values({}, [{}])", o.column, shown.join(", "));
            let literals: Vec<String> = o.values.iter().filter_map(json_literal).collect();
            let condition = if literals.is_empty() {
                "FALSE".to_string()
            } else {
                format!("{} IN ({})", ident(&o.column), literals.join(", "))
            };
            (rule, RuleKind::Row(condition))
        }
        "referential_integrity" => {
            let o: m::ReferentialIntegrityOptions = at.options()?;
            let other = at.input(1)?;
            let other_column = o.reference_column();
            let rule = format!(
                "referential_integrity({} -> {other}.{other_column})",
                o.column
            );
            (
                rule,
                RuleKind::Reference {
                    column: o.column,
                    other,
                    other_column,
                },
            )
        }
        "expression" => {
            let o: m::ExpressionOptions = at.options()?;
            let condition = at.expr("/options/condition", &o.condition, Context::Row)?;
            (
                format!("expression({})", o.condition),
                RuleKind::Row(condition),
            )
        }
        "schema" => {
            let o: m::SchemaOptions = at.options()?;
            let mut columns = Vec::new();
            for (name, type_name) in &o.columns {
                let spark = spark_type(type_name).ok_or_else(|| {
                    at.refuse(
                        "/options/columns",
                        format!("the type \"{type_name}\" has no Spark equivalent"),
                    )
                })?;
                columns.push((name.clone(), type_name.clone(), spark));
            }
            (
                "schema".to_string(),
                RuleKind::Schema {
                    columns,
                    allow_extra: o.allow_extra,
                },
            )
        }
        "row_count" => {
            let o: m::RowCountOptions = at.options()?;
            (
                "row_count".to_string(),
                RuleKind::RowCount {
                    min: o.min,
                    max: o.max,
                },
            )
        }
        "freshness" => {
            let o: m::FreshnessOptions = at.options()?;
            let seconds = age_seconds(&o.max_age)
                .ok_or_else(|| at.refuse("/options/max_age", "invalid duration"))?;
            (
                format!("freshness({}, {})", o.column, o.max_age),
                RuleKind::Freshness {
                    column: o.column,
                    max_age_seconds: seconds,
                },
            )
        }
        other => {
            return Err(at.refuse(
                "/method",
                format!("the validation \"{other}\" has no Spark translation"),
            ));
        }
    };
    Ok(Validation {
        input,
        rule,
        kind,
        on_failure: at.step.on_failure.unwrap_or(OnFailure::Fail),
        quarantine: at.step.quarantine.clone(),
        max_invalid_fraction: at.step.max_invalid_fraction,
    })
}

/// A Rust regex as the Java regex that matches the same strings, or why there is none:
/// Rust's `$` is the end of the text where Java's also matches before a final newline (so a
/// final `$` becomes `\z`); Rust's `\d`, `\w`, `\s`, `\b` are Unicode-aware and Java's ASCII.
fn java_regex(regex: &str) -> Result<String, &'static str> {
    let mut out = String::with_capacity(regex.len());
    let mut chars = regex.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(next) = chars.next() else {
                    return Err("ends with a lone backslash");
                };
                if matches!(
                    next,
                    'd' | 'D' | 'w' | 'W' | 's' | 'S' | 'b' | 'B' | 'p' | 'P'
                ) {
                    return Err(
                        "uses a character class (\\d, \\w, \\s, \\b, \\p) that is Unicode-aware in Rust",
                    );
                }
                out.push(c);
                out.push(next);
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            '(' if !in_class && chars.peek() == Some(&'?') => {
                return Err("uses a group with flags or a look-around");
            }
            '$' if !in_class => {
                if chars.peek().is_some() {
                    return Err("uses $ before its end");
                }
                out.push_str("\\z");
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// `90s`, `30m`, `24h`, `7d` in seconds.
fn age_seconds(text: &str) -> Option<i64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = t.split_at(split);
    let n: i64 = n.parse().ok()?;
    n.checked_mul(match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    })
}

impl Validation {
    /// The input with `_pipectl_reason`: null for valid rows, the rule for invalid ones (row
    /// rules only).
    pub fn judged_query(&self) -> Option<String> {
        let from = ident(&self.input);
        let reason = string_literal(&self.rule);
        let r = ident(REASON_COLUMN);
        Some(match &self.kind {
            RuleKind::Row(condition) => {
                format!(
                    "SELECT *, CASE WHEN coalesce(({condition}), FALSE) THEN CAST(NULL AS STRING) ELSE {reason} END AS {r} FROM {from}"
                )
            }
            RuleKind::Unique(columns) => {
                let keys: Vec<String> = columns.iter().map(|c| ident(c)).collect();
                format!(
                    "SELECT *, CASE WHEN count(1) OVER (PARTITION BY {}) <= 1 THEN CAST(NULL AS STRING) ELSE {reason} END AS {r} FROM {from}",
                    keys.join(", ")
                )
            }
            RuleKind::Reference {
                column,
                other,
                other_column,
            } => {
                // A left join with the distinct keys (what a stream can do with a static side).
                format!(
                    "SELECT `__pipectl_in`.*, CASE WHEN `__pipectl_ref`.`__pipectl_key` IS NOT NULL THEN CAST(NULL AS STRING) ELSE {reason} END AS {r} FROM {from} AS `__pipectl_in` LEFT JOIN (SELECT DISTINCT {oc} AS `__pipectl_key` FROM {o}) AS `__pipectl_ref` ON `__pipectl_in`.{c} = `__pipectl_ref`.`__pipectl_key`",
                    c = ident(column),
                    oc = ident(other_column),
                    o = ident(other),
                )
            }
            RuleKind::Schema { .. } | RuleKind::RowCount { .. } | RuleKind::Freshness { .. } => {
                return None;
            }
        })
    }
}

impl crate::run::Runner {
    /// Judges the input, counts valid and invalid rows (before anything is written), applies
    /// `on_failure` and `max_invalid_fraction`, and registers the step's view and its share of
    /// the quarantine dataset.
    pub async fn validate(&mut self, step: &str, v: &Validation) -> Result<(), StepError> {
        use crate::relations;
        let what = format!("step \"{step}\"");
        let Some(query) = v.judged_query() else {
            return self.table_rule(step, v, &what).await;
        };
        let judged = format!("{step}__pipectl_judged");
        self.view(&judged, relations::sql(query), &what).await?;
        if self.streaming {
            // A stream is judged row by row in each micro-batch: nothing to count first.
            return self.route(step, v, &judged, &what).await;
        }
        self.session
            .command(
                relations::sql_command(format!("CACHE LAZY TABLE {}", ident(&judged))),
                &what,
            )
            .await?;
        self.cached.push(judged.clone());
        let r = ident(REASON_COLUMN);
        let counts = self
            .collect_strings(
                relations::sql(format!(
                    "SELECT count(1), count({r}) FROM {}",
                    ident(&judged)
                )),
                &what,
            )
            .await?;
        let number = |i: usize| {
            counts
                .first()
                .and_then(|row| row.get(i).cloned().flatten())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let (checked, failed) = (number(0), number(1));
        self.counts.push(crate::run::StepCount {
            step: step.to_string(),
            rows: Some(checked.saturating_sub(failed)),
            invalid: Some(failed),
        });
        tracing::info!(rule = %v.rule, checked, failed, "validation judged on spark");
        if failed > 0 && v.on_failure == OnFailure::Fail {
            let samples = self.samples(&judged, &what).await?;
            return Err(StepError::user(format!(
                "{what}: validation {} failed for {failed} of {checked} rows; first failing rows:\n  {}",
                v.rule,
                samples.join("\n  ")
            ))
            .with_hint("fix the data, or set \"on_failure\": \"filter\" or \"warn\" on this step"));
        }
        if let Some(max) = v.max_invalid_fraction
            && checked > 0
            && failed as f64 / checked as f64 > max
        {
            return Err(StepError::user(format!(
                "{what}: {failed} of {checked} rows ({:.2}%) are invalid, above max_invalid_fraction {max}",
                100.0 * failed as f64 / checked as f64
            ))
            .with_hint("fix the data, or raise max_invalid_fraction"));
        }
        if v.on_failure == OnFailure::Warn && failed > 0 {
            let samples = self.samples(&judged, &what).await?;
            tracing::warn!(rule = %v.rule, failed, sample = %samples.join("; "), "validation found invalid rows");
        }
        self.route(step, v, &judged, &what).await
    }

    /// The step's view (the valid rows, or every row with `warn`) and its share of the
    /// quarantine dataset.
    async fn route(
        &mut self,
        step: &str,
        v: &Validation,
        judged: &str,
        what: &str,
    ) -> Result<(), StepError> {
        use crate::relations;
        let r = ident(REASON_COLUMN);
        let passing = match v.on_failure {
            OnFailure::Warn => format!("SELECT * FROM {}", ident(judged)),
            _ => format!("SELECT * FROM {} WHERE {r} IS NULL", ident(judged)),
        };
        self.view(
            step,
            crate::relations::drop_reason(relations::sql(passing)),
            what,
        )
        .await?;
        if v.on_failure == OnFailure::Quarantine
            && let Some(dataset) = &v.quarantine
        {
            let part = format!("{step}__pipectl_quarantined");
            self.view(
                &part,
                relations::sql(format!(
                    "SELECT * FROM {} WHERE {r} IS NOT NULL",
                    ident(judged)
                )),
                what,
            )
            .await?;
            let parts = self.quarantine_parts.entry(dataset.clone()).or_default();
            parts.push(part);
            let parts = parts.clone();
            self.view(dataset, crate::relations::union_by_name(&parts), what)
                .await?;
        }
        Ok(())
    }

    /// Up to five invalid rows as JSON, leaving out columns whose names look secret.
    async fn samples(&mut self, judged: &str, what: &str) -> Result<Vec<String>, StepError> {
        use crate::relations;
        let columns =
            crate::run::fields(&self.session.schema(relations::table(judged), what).await?);
        let shown: Vec<String> = columns
            .iter()
            .map(|(n, _)| n)
            .filter(|n| n.as_str() != REASON_COLUMN && !pipeline_config::is_sensitive_key(n))
            .map(|n| ident(n))
            .collect();
        let rows = self
            .collect_strings(
                relations::sql(format!(
                    "SELECT to_json(struct({})) FROM {} WHERE {} IS NOT NULL LIMIT 5",
                    shown.join(", "),
                    ident(judged),
                    ident(REASON_COLUMN)
                )),
                what,
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .collect())
    }

    /// schema, row_count and freshness: judged on the whole input; a violation fails the step
    /// unless `on_failure` is `warn`. The input passes unchanged.
    async fn table_rule(
        &mut self,
        step: &str,
        v: &Validation,
        what: &str,
    ) -> Result<(), StepError> {
        use crate::relations;
        let from = ident(&v.input);
        let mut problems = Vec::new();
        match &v.kind {
            RuleKind::Schema {
                columns,
                allow_extra,
            } => {
                let have = crate::run::fields(
                    &self
                        .session
                        .schema(relations::table(&v.input), what)
                        .await?,
                );
                for (name, written, spark) in columns {
                    match have.iter().find(|(n, _)| n == name) {
                        None => problems.push(format!("missing column {name}")),
                        Some((_, t)) if !same_type(t, spark) => {
                            problems.push(format!("column {name} is {t}, expected {written}"));
                        }
                        Some(_) => {}
                    }
                }
                if !allow_extra {
                    for (name, _) in &have {
                        if !columns.iter().any(|(n, _, _)| n == name) {
                            problems.push(format!("unexpected column {name}"));
                        }
                    }
                }
            }
            RuleKind::RowCount { min, max } => {
                let rows = self
                    .collect_strings(relations::sql(format!("SELECT count(1) FROM {from}")), what)
                    .await?;
                let n: u64 = rows
                    .first()
                    .and_then(|r| r.first().cloned().flatten())
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                if let Some(min) = min
                    && n < *min
                {
                    problems.push(format!("{n} rows, fewer than {min}"));
                }
                if let Some(max) = max
                    && n > *max
                {
                    problems.push(format!("{n} rows, more than {max}"));
                }
            }
            RuleKind::Freshness {
                column,
                max_age_seconds,
            } => {
                let c = ident(column);
                let rows = self
                    .collect_strings(
                        relations::sql(format!(
                            "SELECT unix_micros(current_timestamp()) - unix_micros(CAST(max({c}) AS TIMESTAMP)) FROM {from}"
                        )),
                        what,
                    )
                    .await?;
                match rows
                    .first()
                    .and_then(|r| r.first().cloned().flatten())
                    .and_then(|t| t.parse::<i64>().ok())
                {
                    // An empty input has no newest value to judge (as on Polars).
                    None => {}
                    Some(age) if age > max_age_seconds.saturating_mul(1_000_000) => {
                        problems.push(format!("newest value is {}s old", age / 1_000_000));
                    }
                    Some(_) => {}
                }
            }
            RuleKind::Row(_) | RuleKind::Unique(_) | RuleKind::Reference { .. } => {}
        }
        if !problems.is_empty() {
            let rule = format!("{}: {}", v.rule, problems.join("; "));
            if v.on_failure == OnFailure::Warn {
                tracing::warn!(rule = %rule, "validation failed (warn only)");
            } else {
                return Err(StepError::user(format!("{what}: validation {rule} failed"))
                    .with_hint("table rules (schema, row_count, freshness) fail the step unless \"on_failure\" is \"warn\""));
            }
        }
        self.view(step, relations::table(&v.input), what).await
    }
}

/// Whether Spark's type name matches the Spark type a pipectl type name maps to.
fn same_type(have: &str, want: &str) -> bool {
    let want = want.to_lowercase().replace(' ', "");
    have.replace(' ', "") == want
}

#[cfg(test)]
mod tests {
    use super::java_regex;

    #[test]
    fn regexes_translate_or_are_refused() {
        assert_eq!(
            java_regex(r"^[^@ ]+@[^@ ]+\.[a-z]+$"),
            Ok(r"^[^@ ]+@[^@ ]+\.[a-z]+\z".to_string())
        );
        assert_eq!(java_regex(r"^(pai|ref)$"), Ok(r"^(pai|ref)\z".to_string()));
        assert_eq!(java_regex(r"[$]x"), Ok(r"[$]x".to_string()));
        for refused in [r"\d+", r"a$b", r"(?i)a", r"\w", "a\\"] {
            assert!(java_regex(refused).is_err(), "{refused}");
        }
    }
}
