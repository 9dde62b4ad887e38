//! Classifying Polars errors: expression and schema mistakes are the user's, I/O is external and
//! worth a retry, anything else is ours.

use pipeline_base::StepError;
use polars::prelude::PolarsError;

/// Converts a Polars error into a classified step error with context.
pub fn polars_error(error: PolarsError, context: &str) -> StepError {
    let message = format!("{context}: {}", first_line(&error));
    match &error {
        PolarsError::ColumnNotFound(_)
        | PolarsError::ComputeError(_)
        | PolarsError::Duplicate(_)
        | PolarsError::InvalidOperation(_)
        | PolarsError::NoData(_)
        | PolarsError::OutOfBounds(_)
        | PolarsError::SchemaFieldNotFound(_)
        | PolarsError::SchemaMismatch(_)
        | PolarsError::ShapeMismatch(_)
        | PolarsError::SQLInterface(_)
        | PolarsError::SQLSyntax(_)
        | PolarsError::StructFieldNotFound(_)
        | PolarsError::AssertionError(_) => StepError::user(message),
        PolarsError::IO { .. } => StepError::transient(message).with_source(error),
        PolarsError::Context { error: inner, .. }
        | PolarsError::ExprContext { error: inner, .. } => {
            let class = polars_error((**inner).clone(), context);
            let mut e = match class.class() {
                pipeline_base::ErrorClass::User => StepError::user(message),
                // Retryable only when the wrapped error is (an I/O error), not for any
                // external error.
                pipeline_base::ErrorClass::External if class.retryable() => {
                    StepError::transient(message)
                }
                pipeline_base::ErrorClass::External => StepError::external(message),
                pipeline_base::ErrorClass::Internal => StepError::internal(message),
            };
            if let Some(h) = class.hint() {
                e = e.with_hint(h.to_string());
            }
            e
        }
        _ => StepError::internal(message),
    }
}

/// Polars messages can be long (they embed plans); keep the first meaningful lines.
fn first_line(error: &PolarsError) -> String {
    let text = error.to_string();
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(3)
        .collect();
    if lines.is_empty() {
        lines.push("unknown error");
    }
    lines.join(" ")
}

/// `.step_err("context")?` on Polars results.
pub trait PolarsResultExt<T> {
    fn step_err(self, context: &str) -> Result<T, StepError>;
}

impl<T> PolarsResultExt<T> for Result<T, PolarsError> {
    fn step_err(self, context: &str) -> Result<T, StepError> {
        self.map_err(|e| polars_error(e, context))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline_base::ErrorClass;

    #[test]
    fn classes() {
        let e = polars_error(PolarsError::ColumnNotFound("amount".into()), "step 'x'");
        assert_eq!(e.class(), ErrorClass::User);
        assert!(e.message().contains("amount"));
        let io = PolarsError::IO {
            error: std::sync::Arc::new(std::io::Error::other("boom")),
            msg: None,
        };
        assert!(polars_error(io, "x").retryable());
    }

    #[test]
    fn wrapped_errors_keep_the_class_of_what_they_wrap() {
        let io = || PolarsError::IO {
            error: std::sync::Arc::new(std::io::Error::other("reset")),
            msg: None,
        };
        let wrapped = io().context("reading a file".into());
        let e = polars_error(wrapped, "step \"s\"");
        assert!(e.retryable(), "{}", e.message());
        let wrapped = PolarsError::ColumnNotFound("x".into()).context("planning".into());
        assert_eq!(polars_error(wrapped, "s").class(), ErrorClass::User);
        let other = PolarsError::StringCacheMismatch("caches".into());
        assert_eq!(polars_error(other, "s").class(), ErrorClass::Internal);
        let empty = PolarsError::ComputeError("".into());
        assert!(polars_error(empty, "s").message().starts_with("s: "));
    }
}
