//! The result of a validation rule over a batch, and sample rows for failure messages.

use pipeline_base::StepError;
use polars::prelude::*;

/// A rule's verdict: which rows hold (`true`); `false` and null mean invalid.
pub struct Check {
    /// A short description of the rule, e.g. `not_null(customer_id)`.
    pub rule: String,
    pub valid: BooleanChunked,
    /// A table rule (schema, row count, freshness) failed for the input as a whole: the step
    /// fails unless `on_failure` is `warn`, even when there is no row.
    pub table_violation: bool,
}

impl Check {
    /// A row rule's verdict.
    pub fn rows(rule: impl Into<String>, valid: BooleanChunked) -> Self {
        Check {
            rule: rule.into(),
            valid,
            table_violation: false,
        }
    }

    /// A failed table rule; `valid` marks every row invalid.
    pub fn table(rule: impl Into<String>, valid: BooleanChunked) -> Self {
        Check {
            rule: rule.into(),
            valid,
            table_violation: true,
        }
    }

    /// The mask with nulls counted as invalid.
    pub fn mask(&self) -> BooleanChunked {
        self.valid
            .fill_null_with_values(false)
            .unwrap_or_else(|_| self.valid.clone())
    }
}

/// Up to `n` rows rendered as `{col: value, ...}`, leaving out columns whose names look secret.
pub fn sample_rows(
    df: &DataFrame,
    n: usize,
    is_secret: impl Fn(&str) -> bool,
) -> Result<Vec<String>, StepError> {
    let head = df.head(Some(n));
    let mut rows = Vec::with_capacity(head.height());
    for i in 0..head.height() {
        let mut parts = Vec::new();
        for c in head.columns() {
            if is_secret(c.name().as_str()) {
                parts.push(format!("{}: <redacted>", c.name()));
                continue;
            }
            let v = c
                .get(i)
                .map_err(|e| crate::errors::polars_error(e, "sampling rows"))?;
            parts.push(format!("{}: {}", c.name(), v));
        }
        rows.push(format!("{{{}}}", parts.join(", ")));
    }
    Ok(rows)
}
