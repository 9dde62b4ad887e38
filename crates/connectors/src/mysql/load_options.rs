//! Options of the `mysql` load, and the column types a table it creates gets.

use crate::sql::check_key;
use pipeline_base::StepError;
use pipeline_data::OptionsError;
use pipeline_data::method::MethodOptions;
use pipeline_data::polars::prelude::DataType;
#[cfg(test)]
use pipeline_data::polars::prelude::TimeUnit;
use schemars::JsonSchema;
use serde::Deserialize;

/// How rows land in the target table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MysqlWriteMode {
    /// Add the rows.
    #[default]
    Append,
    /// Replace the table's rows (DELETE and load, in the same transaction).
    Overwrite,
    /// Insert, or update the row with the same `key` (`ON DUPLICATE KEY UPDATE`); within the
    /// load the last row of a key wins.
    Upsert,
}

/// Options of the `mysql` load.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MysqlLoadOptions {
    /// The target table (`customers` or `shop.customers`); it must use InnoDB.
    pub table: String,
    /// `append` (default), `overwrite` or `upsert`.
    #[serde(default)]
    pub mode: MysqlWriteMode,
    /// Key columns for `upsert` (a primary key or unique index must cover exactly them).
    #[serde(default)]
    pub key: Vec<String>,
    /// Create the table (InnoDB, utf8mb4) from the data's columns when it does not exist.
    #[serde(default)]
    pub create_table: bool,
    /// Record each committed load in `_pipectl_loads` (same database, same transaction), so a
    /// resumed run (`pipectl run --resume`) never loads this step twice. Default true; false
    /// for a user who may not create tables.
    #[serde(default = "yes")]
    pub ledger: bool,
}

fn yes() -> bool {
    true
}

impl MethodOptions for MysqlLoadOptions {
    fn check(&self) -> Result<(), OptionsError> {
        if self.table.trim().is_empty() {
            return Err(OptionsError::new("/table", "the table name is empty"));
        }
        check_key(
            self.mode == MysqlWriteMode::Upsert,
            &self.key,
            "customer_id",
        )
    }
}

/// The column type a new table gets for a Polars type (`key`: part of the primary key).
pub(super) fn sql_type(dtype: &DataType, column: &str, key: bool) -> Result<String, StepError> {
    Ok(match dtype {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "TINYINT UNSIGNED".into(),
        DataType::UInt16 => "SMALLINT UNSIGNED".into(),
        DataType::UInt32 => "INT UNSIGNED".into(),
        DataType::UInt64 => "BIGINT UNSIGNED".into(),
        DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal(p, s) => format!("DECIMAL({p},{s})"),
        DataType::String if key => "VARCHAR(255)".into(),
        DataType::String => "LONGTEXT".into(),
        DataType::Binary if key => "VARBINARY(255)".into(),
        DataType::Binary => "LONGBLOB".into(),
        DataType::Date => "DATE".into(),
        // TIMESTAMP ends in 2038; zoned values are stored as their UTC wall time.
        DataType::Datetime(_, _) => "DATETIME(6)".into(),
        DataType::Time => "TIME(6)".into(),
        other => {
            return Err(StepError::user(format!(
                "column \"{column}\" has type {other}, for which the mysql load has no column type"
            ))
            .with_hint("cast it first (a cast step), or create the table yourself"));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(DataType::Boolean, false, "BOOLEAN")]
    #[case(DataType::Int8, false, "TINYINT")]
    #[case(DataType::Int16, false, "SMALLINT")]
    #[case(DataType::Int32, false, "INT")]
    #[case(DataType::Int64, false, "BIGINT")]
    #[case(DataType::UInt8, false, "TINYINT UNSIGNED")]
    #[case(DataType::UInt16, false, "SMALLINT UNSIGNED")]
    #[case(DataType::UInt32, false, "INT UNSIGNED")]
    #[case(DataType::UInt64, false, "BIGINT UNSIGNED")]
    #[case(DataType::Float32, false, "FLOAT")]
    #[case(DataType::Float64, false, "DOUBLE")]
    #[case(DataType::Decimal(12, 2), false, "DECIMAL(12,2)")]
    #[case(DataType::String, true, "VARCHAR(255)")]
    #[case(DataType::String, false, "LONGTEXT")]
    #[case(DataType::Binary, true, "VARBINARY(255)")]
    #[case(DataType::Binary, false, "LONGBLOB")]
    #[case(DataType::Date, false, "DATE")]
    #[case(DataType::Datetime(TimeUnit::Microseconds, None), false, "DATETIME(6)")]
    #[case(DataType::Time, false, "TIME(6)")]
    fn new_tables_get_these_column_types(
        #[case] dtype: DataType,
        #[case] key: bool,
        #[case] want: &str,
    ) {
        assert_eq!(sql_type(&dtype, "c", key).unwrap(), want);
    }

    #[test]
    fn a_type_without_a_column_type_is_named() {
        let list = DataType::List(Box::new(DataType::Int64));
        let err = sql_type(&list, "tags", false).unwrap_err();
        assert!(err.message().contains("column \"tags\""), "{err}");
        assert!(err.hint().unwrap_or_default().contains("cast"));
    }

    #[test]
    fn options_are_checked() {
        let o: MysqlLoadOptions =
            serde_json::from_value(serde_json::json!({"table": " "})).unwrap();
        assert_eq!(o.check().unwrap_err().pointer, "/table");
        let o: MysqlLoadOptions =
            serde_json::from_value(serde_json::json!({"table": "t", "mode": "upsert"})).unwrap();
        assert_eq!(o.check().unwrap_err().pointer, "/key");
        let o: MysqlLoadOptions =
            serde_json::from_value(serde_json::json!({"table": "t"})).unwrap();
        assert!(o.ledger, "the ledger is on by default");
    }
}
