//! Row-wise transforms: filter, derive, select.

use crate::UserMethods;
use crate::expr;
use indexmap::IndexMap;
use pipeline_base::StepError;
use pipeline_data::method::MethodOptions;
use pipeline_data::polars::prelude::*;
use pipeline_data::{OptionsError, PolarsResultExt};
use schemars::JsonSchema;
use serde::Deserialize;

/// Options of `filter`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterOptions {
    /// A SQL boolean expression; rows where it is false or null are dropped.
    /// Example: `status = 'paid' AND amount > 0`.
    pub condition: String,
}

impl MethodOptions for FilterOptions {
    fn check(&self) -> Result<(), OptionsError> {
        expr::parse(&self.condition, "/condition").map(|_| ())
    }
}

/// Options of `derive`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeriveOptions {
    /// New or replaced columns, each a SQL expression over the input columns, applied in order
    /// (a later expression may use an earlier derived column).
    /// Example: `{"amount_eur": "amount * 0.92", "status": "upper(status)"}`.
    pub columns: IndexMap<String, String>,
}

impl MethodOptions for DeriveOptions {
    fn check(&self) -> Result<(), OptionsError> {
        if self.columns.is_empty() {
            return Err(OptionsError::new("/columns", "no column to derive"));
        }
        for (name, e) in &self.columns {
            let _ = expr::parse(e, &pipeline_config::join_pointer("/columns", name))?;
        }
        Ok(())
    }
}

/// Options of `select`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SelectOptions {
    /// The columns to keep, in output order.
    pub columns: Vec<String>,
}

impl MethodOptions for SelectOptions {
    fn check(&self) -> Result<(), OptionsError> {
        if self.columns.is_empty() {
            return Err(OptionsError::new("/columns", "no column to select"));
        }
        Ok(())
    }
}

impl UserMethods {
    /// Keeps the rows for which `condition` is true.
    pub fn filter(df: DataFrame, options: &FilterOptions) -> Result<DataFrame, StepError> {
        let condition = expr::parse(&options.condition, "/condition")
            .map_err(|e| StepError::user(e.message))?;
        let schema = df.schema().clone();
        df.lazy().filter(condition).collect().map_err(|e| {
            expr::eval_error(
                e,
                "condition",
                &options.condition,
                &DataFrame::empty_with_schema(&schema),
            )
        })
    }

    /// Adds or replaces columns computed from SQL expressions, in the order given.
    pub fn derive(df: DataFrame, options: &DeriveOptions) -> Result<DataFrame, StepError> {
        let mut out = df;
        for (name, e) in &options.columns {
            let parsed = expr::parse(e, "/columns").map_err(|err| StepError::user(err.message))?;
            let before = out.clone();
            out = out
                .lazy()
                .with_column(parsed.alias(name.as_str()))
                .collect()
                .map_err(|err| {
                    expr::eval_error(err, &format!("expression for \"{name}\":"), e, &before)
                })?;
        }
        Ok(out)
    }

    /// Keeps only the listed columns.
    pub fn select(df: DataFrame, options: &SelectOptions) -> Result<DataFrame, StepError> {
        let available: Vec<String> = df
            .get_column_names()
            .iter()
            .map(|c| c.to_string())
            .collect();
        for c in &options.columns {
            if !available.contains(c) {
                let hint = pipeline_config::suggest(c, available.iter().map(String::as_str))
                    .map(|s| format!("did you mean \"{s}\"?"))
                    .unwrap_or_else(|| format!("available columns: {}", available.join(", ")));
                return Err(StepError::user(format!("select: no column \"{c}\"")).with_hint(hint));
            }
        }
        df.select(options.columns.iter().map(String::as_str))
            .step_err("select")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orders() -> DataFrame {
        df!(
            "id" => [1i64, 2, 3, 4],
            "status" => [Some("paid"), Some("pending"), None, Some("paid")],
            "amount" => [Some(10.0f64), Some(5.0), Some(7.0), None],
        )
        .unwrap()
    }

    #[test]
    fn filter_keeps_matching_rows_and_drops_nulls() {
        let out = UserMethods::filter(
            orders(),
            &FilterOptions {
                condition: "status = 'paid' AND amount > 0".into(),
            },
        )
        .unwrap();
        assert!(out.equals_missing(
            &df!("id" => [1i64], "status" => ["paid"], "amount" => [10.0f64]).unwrap()
        ));
    }

    #[test]
    fn filter_on_empty_input_keeps_the_schema() {
        let empty = orders().head(Some(0));
        let out = UserMethods::filter(
            empty.clone(),
            &FilterOptions {
                condition: "amount > 1".into(),
            },
        )
        .unwrap();
        assert_eq!(out.height(), 0);
        assert_eq!(out.schema(), empty.schema());
    }

    #[test]
    fn filter_on_an_unknown_column_lists_the_columns() {
        let err = UserMethods::filter(
            orders(),
            &FilterOptions {
                condition: "amout > 1".into(),
            },
        )
        .err()
        .unwrap();
        assert_eq!(err.class(), pipeline_base::ErrorClass::User);
        assert!(
            err.message().contains("condition \"amout > 1\""),
            "{}",
            err.message()
        );
        assert!(
            err.message()
                .contains("available columns: id, status, amount"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn bad_sql_is_caught_at_validation() {
        let err = FilterOptions {
            condition: "amount >> AND".into(),
        }
        .check()
        .err()
        .unwrap();
        assert_eq!(err.pointer, "/condition");
        assert!(
            err.message
                .contains("invalid SQL expression \"amount >> AND\""),
            "{}",
            err.message
        );
        assert!(
            FilterOptions {
                condition: " ".into()
            }
            .check()
            .is_err()
        );
    }

    #[test]
    fn derive_applies_in_order_and_replaces() {
        let columns = IndexMap::from([
            ("double".to_string(), "amount * 2".to_string()),
            ("quad".to_string(), "double * 2".to_string()),
            ("status".to_string(), "upper(status)".to_string()),
        ]);
        let out = UserMethods::derive(orders(), &DeriveOptions { columns }).unwrap();
        let expected = df!(
            "id" => [1i64, 2, 3, 4],
            "status" => [Some("PAID"), Some("PENDING"), None, Some("PAID")],
            "amount" => [Some(10.0f64), Some(5.0), Some(7.0), None],
            "double" => [Some(20.0f64), Some(10.0), Some(14.0), None],
            "quad" => [Some(40.0f64), Some(20.0), Some(28.0), None],
        )
        .unwrap();
        assert!(out.equals_missing(&expected), "{out}");
    }

    #[test]
    fn derive_error_names_the_column_and_expression() {
        let columns = IndexMap::from([("x".to_string(), "nope + 1".to_string())]);
        let err = UserMethods::derive(orders(), &DeriveOptions { columns })
            .err()
            .unwrap();
        assert!(
            err.message().contains("expression for \"x\": \"nope + 1\""),
            "{}",
            err.message()
        );
        assert!(
            err.message()
                .contains("available columns: id, status, amount")
        );
    }

    #[test]
    fn select_orders_columns_and_suggests() {
        let out = UserMethods::select(
            orders(),
            &SelectOptions {
                columns: vec!["amount".into(), "id".into()],
            },
        )
        .unwrap();
        assert_eq!(out.get_column_names(), ["amount", "id"]);
        let err = UserMethods::select(
            orders(),
            &SelectOptions {
                columns: vec!["stauts".into()],
            },
        )
        .err()
        .unwrap();
        assert_eq!(err.hint(), Some("did you mean \"status\"?"));
    }
}
