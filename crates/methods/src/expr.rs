//! SQL expressions in options: parsed at validation time, evaluated with column-aware errors.

use pipeline_base::StepError;
use pipeline_data::OptionsError;
use pipeline_data::polars::prelude::*;
use pipeline_data::polars::sql::sql_expr;

/// Parses a SQL expression, or says where it is wrong, at the given options pointer.
pub fn parse(expression: &str, pointer: &str) -> Result<Expr, OptionsError> {
    if expression.trim().is_empty() {
        return Err(OptionsError::new(pointer, "the expression is empty"));
    }
    sql_expr(expression).map_err(|e| {
        OptionsError::new(pointer, format!("invalid SQL expression \"{expression}\": {}", first_line(&e.to_string())))
            .with_hint("expressions use SQL syntax, e.g. \"amount > 0 AND status = 'paid'\" or \"upper(name)\"")
    })
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// Turns a failure to evaluate an expression into an error quoting it and listing the columns.
pub fn eval_error(error: PolarsError, what: &str, expression: &str, df: &DataFrame) -> StepError {
    let columns: Vec<&str> = df
        .get_column_names()
        .into_iter()
        .map(|c| c.as_str())
        .collect();
    let base = pipeline_data::polars_error(error, &format!("{what} \"{expression}\""));
    let message = format!(
        "{}; available columns: {}",
        base.message(),
        columns.join(", ")
    );
    match base.class() {
        pipeline_base::ErrorClass::User => StepError::user(message),
        pipeline_base::ErrorClass::External => StepError::transient(message),
        pipeline_base::ErrorClass::Internal => StepError::internal(message),
    }
}
