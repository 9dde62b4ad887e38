//! Row-wise reshaping: drop, rename, cast, fill_null. They stream batch by batch.

use crate::UserMethods;
use crate::helpers::{check_type_map, json_lit, parse_type, require_columns, yes};
use indexmap::IndexMap;
use pipeline_base::StepError;
use pipeline_data::method::MethodOptions;
use pipeline_data::polars::prelude::*;
use pipeline_data::{OptionsError, PolarsResultExt};
use schemars::JsonSchema;
use serde::Deserialize;

/// Options of `drop`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DropOptions {
    /// Columns to remove.
    pub columns: Vec<String>,
}
impl MethodOptions for DropOptions {}

/// Options of `rename`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameOptions {
    /// Old name → new name, e.g. `{"amt": "amount"}`.
    pub columns: IndexMap<String, String>,
}
impl MethodOptions for RenameOptions {}

/// Options of `cast`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CastOptions {
    /// Column → type, e.g. `{"amount": "float64", "day": "date", "price": "decimal(10,2)"}`.
    pub columns: IndexMap<String, String>,
    /// Fail on a value that does not convert (default), or make it null when false.
    #[serde(default = "yes")]
    pub strict: bool,
}
impl MethodOptions for CastOptions {
    fn check(&self) -> Result<(), OptionsError> {
        check_type_map(&self.columns)
    }
}

/// Options of `fill_null`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FillNullOptions {
    /// Column → value used where the column is null, e.g. `{"country": "unknown", "amount": 0}`.
    pub columns: IndexMap<String, serde_json::Value>,
}
impl MethodOptions for FillNullOptions {
    fn check(&self) -> Result<(), OptionsError> {
        for (c, v) in &self.columns {
            if json_lit(v).is_none() || v.is_null() {
                return Err(OptionsError::new(
                    pipeline_config::join_pointer("/columns", c),
                    "the fill value must be a string, number or boolean",
                ));
            }
        }
        Ok(())
    }
}

impl UserMethods {
    /// Removes columns.
    pub fn drop(df: DataFrame, o: &DropOptions) -> Result<DataFrame, StepError> {
        require_columns(&df, &o.columns, "drop")?;
        Ok(df.drop_many(o.columns.iter().map(String::as_str)))
    }

    /// Renames columns.
    pub fn rename(mut df: DataFrame, o: &RenameOptions) -> Result<DataFrame, StepError> {
        require_columns(&df, o.columns.keys(), "rename")?;
        for (old, new) in &o.columns {
            df.rename(old, new.as_str().into()).step_err("rename")?;
        }
        Ok(df)
    }

    /// Converts columns to other types.
    pub fn cast(df: DataFrame, o: &CastOptions) -> Result<DataFrame, StepError> {
        require_columns(&df, o.columns.keys(), "cast")?;
        let exprs: Vec<Expr> = o
            .columns
            .iter()
            .map(|(c, t)| {
                let dt = parse_type(t).unwrap_or(DataType::String);
                if o.strict {
                    col(c.as_str()).strict_cast(dt)
                } else {
                    col(c.as_str()).cast(dt)
                }
            })
            .collect();
        df.lazy().with_columns(exprs).collect().map_err(|e| {
            StepError::user(format!(
                "cast: {}",
                e.to_string().lines().next().unwrap_or_default()
            ))
            .with_hint("set \"strict\": false to turn values that do not convert into nulls")
        })
    }

    /// Replaces nulls with given values.
    pub fn fill_null(df: DataFrame, o: &FillNullOptions) -> Result<DataFrame, StepError> {
        require_columns(&df, o.columns.keys(), "fill_null")?;
        let exprs: Vec<Expr> = o
            .columns
            .iter()
            .filter_map(|(c, v)| json_lit(v).map(|l| col(c.as_str()).fill_null(l)))
            .collect();
        df.lazy()
            .with_columns(exprs)
            .collect()
            .step_err("fill_null")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> DataFrame {
        df!("id" => [1i64, 2, 3], "amt" => [Some("1.5"), None, Some("x")], "country" => [Some("FR"), None, Some("DE")]).unwrap()
    }

    #[test]
    fn drop_and_rename() {
        let out = UserMethods::drop(
            frame(),
            &DropOptions {
                columns: vec!["amt".into()],
            },
        )
        .unwrap();
        assert_eq!(out.get_column_names(), ["id", "country"]);
        let out = UserMethods::rename(
            frame(),
            &RenameOptions {
                columns: IndexMap::from([("amt".into(), "amount".into())]),
            },
        )
        .unwrap();
        assert_eq!(out.get_column_names(), ["id", "amount", "country"]);
        let err = UserMethods::drop(
            frame(),
            &DropOptions {
                columns: vec!["contry".into()],
            },
        )
        .err()
        .unwrap();
        assert_eq!(err.message(), "drop: no column \"contry\"");
        assert_eq!(err.hint(), Some("did you mean \"country\"?"));
    }

    #[test]
    fn cast_strict_and_lenient() {
        let o = CastOptions {
            columns: IndexMap::from([("amt".into(), "float64".into())]),
            strict: false,
        };
        let out = UserMethods::cast(frame(), &o).unwrap();
        assert_eq!(
            Vec::from(out.column("amt").unwrap().f64().unwrap()),
            vec![Some(1.5), None, None]
        );
        let strict = CastOptions { strict: true, ..o };
        let err = UserMethods::cast(frame(), &strict).err().unwrap();
        assert!(err.message().starts_with("cast:"), "{}", err.message());
        let bad = CastOptions {
            columns: IndexMap::from([("amt".into(), "float99".into())]),
            strict: true,
        };
        assert_eq!(bad.check().err().unwrap().pointer, "/columns/amt");
    }

    #[test]
    fn fill_null_per_column() {
        let o = FillNullOptions {
            columns: IndexMap::from([("country".into(), serde_json::json!("unknown"))]),
        };
        let out = UserMethods::fill_null(frame(), &o).unwrap();
        assert_eq!(
            Vec::from(out.column("country").unwrap().str().unwrap()),
            vec![Some("FR"), Some("unknown"), Some("DE")]
        );
        let empty = UserMethods::fill_null(frame().head(Some(0)), &o).unwrap();
        assert_eq!(empty.height(), 0);
    }
}
