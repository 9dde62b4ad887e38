//! Column types as pipectl's Polars engine gives them. The two engines type some expressions
//! differently (Polars widens decimal arithmetic to precision 38, Spark keeps it narrow; a
//! `count` is u32 in Polars). So for steps that compute new columns, the pipectl method itself
//! runs on empty frames with the inputs' columns and types, and Spark's result is cast to the
//! types it gives, wherever Spark has that type.

use crate::expr::ident;
use pipeline_base::StepError;
use pipeline_data::Datasets;
use pipeline_data::polars::prelude::*;

/// A Spark type name (`run::type_name`) as a Polars type.
pub fn polars_type(spark: &str) -> Option<DataType> {
    Some(match spark {
        "boolean" => DataType::Boolean,
        "tinyint" => DataType::Int8,
        "smallint" => DataType::Int16,
        "int" => DataType::Int32,
        "bigint" => DataType::Int64,
        "float" => DataType::Float32,
        "double" => DataType::Float64,
        "string" => DataType::String,
        "binary" => DataType::Binary,
        "date" => DataType::Date,
        "timestamp" => DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)),
        "timestamp_ntz" => DataType::Datetime(TimeUnit::Microseconds, None),
        other => {
            let inner = other.strip_prefix("decimal(")?.strip_suffix(')')?;
            let (p, s) = inner.split_once(',')?;
            DataType::Decimal(p.trim().parse().ok()?, s.trim().parse().ok()?)
        }
    })
}

/// A Polars type as Spark SQL, when Spark has it (no unsigned integers, one timestamp unit).
pub fn spark_type(dtype: &DataType) -> Option<String> {
    Some(match dtype {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::String => "STRING".into(),
        DataType::Binary => "BINARY".into(),
        DataType::Date => "DATE".into(),
        DataType::Datetime(_, Some(_)) => "TIMESTAMP".into(),
        DataType::Datetime(_, None) => "TIMESTAMP_NTZ".into(),
        DataType::Decimal(p, s) => format!("DECIMAL({p}, {s})"),
        _ => return None,
    })
}

/// An empty frame with these `(name, Spark type)` columns (types Polars lacks become null).
pub fn empty_frame(fields: &[(String, String)]) -> Result<DataFrame, StepError> {
    let columns = fields
        .iter()
        .map(|(name, t)| {
            Column::new_empty(
                name.as_str().into(),
                &polars_type(t).unwrap_or(DataType::Null),
            )
        })
        .collect();
    DataFrame::new(0, columns).map_err(|e| StepError::internal(format!("an empty frame: {e}")))
}

/// The output columns of pipectl's method on empty inputs, or `None` when the method has no
/// typing rule of its own to follow here.
pub fn polars_output(
    method: &str,
    options: &serde_json::Value,
    main: DataFrame,
    side: &Datasets,
) -> Result<Option<Vec<(String, DataType)>>, StepError> {
    use pipeline_methods as m;
    let parse = |e: serde_json::Error| StepError::internal(format!("{method} options: {e}"));
    let out = match method {
        "derive" => m::UserMethods::derive(
            main,
            &serde_json::from_value(options.clone()).map_err(parse)?,
        )?,
        "aggregate" => m::UserMethods::aggregate(
            main,
            &serde_json::from_value(options.clone()).map_err(parse)?,
            side,
        )?,
        "sql" => m::UserMethods::sql(
            main,
            &serde_json::from_value(options.clone()).map_err(parse)?,
            side,
        )?,
        _ => return Ok(None),
    };
    Ok(Some(
        out.schema()
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect(),
    ))
}

/// `(column, CAST expression)` for every Spark column whose type differs from Polars' where
/// Spark has Polars' type.
pub fn casts(spark: &[(String, String)], polars: &[(String, DataType)]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, spark_name) in spark {
        let Some((_, want)) = polars.iter().find(|(n, _)| n == name) else {
            continue;
        };
        if polars_type(spark_name).as_ref() == Some(want) {
            continue;
        }
        if let Some(target) = spark_type(want) {
            out.push((name.clone(), format!("CAST({} AS {target})", ident(name))));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn derive_types_follow_polars() {
        let main = empty_frame(&[
            ("amount".into(), "decimal(12,2)".into()),
            ("status".into(), "string".into()),
        ])
        .expect("frame");
        let options = json!({"columns": {"net": "CASE WHEN status = 'refunded' THEN -amount ELSE amount END"}});
        let out = polars_output("derive", &options, main, &Datasets::new())
            .expect("runs")
            .expect("typed");
        let spark = vec![
            ("amount".to_string(), "decimal(12,2)".to_string()),
            ("status".to_string(), "string".to_string()),
            ("net".to_string(), "decimal(12,2)".to_string()),
        ];
        let casts = casts(&spark, &out);
        assert_eq!(
            casts,
            vec![(
                "net".to_string(),
                "CAST(`net` AS DECIMAL(38, 2))".to_string()
            )]
        );
    }

    #[test]
    fn unsigned_counts_stay_as_spark_has_them() {
        let polars = vec![("orders".to_string(), DataType::UInt32)];
        assert!(casts(&[("orders".into(), "bigint".into())], &polars).is_empty());
    }
}
