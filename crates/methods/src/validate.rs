//! Validations. Each returns a [`Check`]; the step's `on_failure` decides what happens to
//! invalid rows (fail, filter, warn).

use crate::UserMethods;
use pipeline_base::StepError;
use pipeline_data::method::MethodOptions;
use pipeline_data::polars::prelude::*;
use pipeline_data::{Check, Datasets, OptionsError};
use schemars::JsonSchema;
use serde::Deserialize;

/// Options of `not_null`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotNullOptions {
    /// Columns that must hold a value in every row.
    pub columns: Vec<String>,
}

impl MethodOptions for NotNullOptions {
    fn check(&self) -> Result<(), OptionsError> {
        if self.columns.is_empty() {
            return Err(OptionsError::new("/columns", "no column to check"));
        }
        Ok(())
    }
}

/// The column, or an error naming it and the available ones.
pub(crate) fn column<'a>(
    df: &'a DataFrame,
    name: &str,
    rule: &str,
) -> Result<&'a Column, StepError> {
    df.column(name).map_err(|_| {
        let available: Vec<&str> = df
            .get_column_names()
            .into_iter()
            .map(|c| c.as_str())
            .collect();
        let hint = pipeline_config::suggest(name, available.iter().copied())
            .map(|s| format!("did you mean \"{s}\"?"))
            .unwrap_or_else(|| format!("available columns: {}", available.join(", ")));
        StepError::user(format!("{rule}: no column \"{name}\"")).with_hint(hint)
    })
}

impl UserMethods {
    /// Rows where every listed column holds a value.
    pub fn not_null(
        df: &DataFrame,
        options: &NotNullOptions,
        _: &Datasets,
    ) -> Result<Check, StepError> {
        let rule = format!("not_null({})", options.columns.join(", "));
        let mut valid = BooleanChunked::full("valid".into(), true, df.height());
        for name in &options.columns {
            let c = column(df, name, &rule)?;
            valid = &valid & &c.is_not_null();
        }
        Ok(Check::rows(rule, valid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_null_marks_rows_with_any_null() {
        let df =
            df!("a" => [Some(1i32), None, Some(3)], "b" => [Some("x"), Some("y"), None]).unwrap();
        let check = UserMethods::not_null(
            &df,
            &NotNullOptions {
                columns: vec!["a".into(), "b".into()],
            },
            &Datasets::new(),
        )
        .unwrap();
        assert_eq!(check.rule, "not_null(a, b)");
        assert_eq!(
            Vec::from(&check.mask()),
            vec![Some(true), Some(false), Some(false)]
        );
    }

    #[test]
    fn not_null_on_empty_input() {
        let df = df!("a" => Vec::<i32>::new()).unwrap();
        let check = UserMethods::not_null(
            &df,
            &NotNullOptions {
                columns: vec!["a".into()],
            },
            &Datasets::new(),
        )
        .unwrap();
        assert_eq!(check.valid.len(), 0);
    }

    #[test]
    fn not_null_on_a_missing_column_suggests() {
        let df = df!("customer_id" => [1i32]).unwrap();
        let err = UserMethods::not_null(
            &df,
            &NotNullOptions {
                columns: vec!["custome_id".into()],
            },
            &Datasets::new(),
        )
        .err()
        .unwrap();
        assert_eq!(
            err.message(),
            "not_null(custome_id): no column \"custome_id\""
        );
        assert_eq!(err.hint(), Some("did you mean \"customer_id\"?"));
    }
}
