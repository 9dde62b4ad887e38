//! Range partitioning of a read: bounds from the options or the column's min/max, split into
//! equal ranges of the column's value (integers, floats and numerics, dates, timestamps).

use super::{pg_error, quote_ident};
use crate::sql::{PartitionOptions, range_predicates};
use pipeline_base::StepError;
use tokio_postgres::types::Type;

/// How a column's values map onto numbers and back into SQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Domain {
    Int,
    Float,
    /// Days since 1970-01-01.
    Date,
    /// Microseconds since 1970-01-01 UTC.
    Timestamp,
}

impl Domain {
    fn of(ty: &Type, column: &str) -> Result<Self, StepError> {
        Ok(match *ty {
            Type::INT2 | Type::INT4 | Type::INT8 => Domain::Int,
            Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC => Domain::Float,
            Type::DATE => Domain::Date,
            Type::TIMESTAMP | Type::TIMESTAMPTZ => Domain::Timestamp,
            _ => {
                return Err(StepError::user(format!(
                    "partition column \"{column}\" has type {}; partitioning needs a number, date or timestamp",
                    ty.name()
                )));
            }
        })
    }

    /// SQL giving the value as a float8 number in this domain.
    fn to_number(self, expr: &str) -> String {
        match self {
            Domain::Int | Domain::Float => format!("({expr})::float8"),
            Domain::Date => format!("(({expr}) - DATE '1970-01-01')::float8"),
            Domain::Timestamp => format!("(extract(epoch FROM ({expr})) * 1000000)::float8"),
        }
    }

    /// A SQL literal for a number of this domain, typed like the column.
    fn literal(self, v: f64, ty: &Type) -> String {
        match self {
            Domain::Int => format!("{}", v.round() as i64),
            Domain::Float => format!("{v:?}::float8"),
            Domain::Date => format!("(DATE '1970-01-01' + {})", v.round() as i64),
            Domain::Timestamp if *ty == Type::TIMESTAMPTZ => {
                format!("to_timestamp({:?})", v / 1e6)
            }
            Domain::Timestamp => format!("(to_timestamp({:?}) AT TIME ZONE 'UTC')", v / 1e6),
        }
    }
}

/// The WHERE predicates of the ranges, covering every row (NULLs go to the first range).
pub(crate) async fn ranges(
    client: &tokio_postgres::Client,
    sql: &str,
    p: &PartitionOptions,
    ty: &Type,
) -> Result<Vec<String>, StepError> {
    let domain = Domain::of(ty, &p.column)?;
    let col = quote_ident(&p.column);
    let bound = |v: &serde_json::Value| -> String {
        match v {
            serde_json::Value::String(s) => {
                domain.to_number(&format!("'{}'::{}", s.replace('\'', "''"), ty.name()))
            }
            other => format!("({other})::float8"),
        }
    };
    let lo = p
        .lower_bound
        .as_ref()
        .map(bound)
        .unwrap_or_else(|| format!("min({})", domain.to_number(&col)));
    let hi = p
        .upper_bound
        .as_ref()
        .map(bound)
        .unwrap_or_else(|| format!("max({})", domain.to_number(&col)));
    let bounds_sql = if p.lower_bound.is_some() && p.upper_bound.is_some() {
        format!("SELECT {lo}, {hi}")
    } else {
        format!("SELECT {lo}, {hi} FROM ({sql}) AS pipectl_q")
    };
    let row = client.query_one(&bounds_sql, &[]).await.map_err(|e| {
        pg_error(
            e,
            &format!("finding the bounds of partition column \"{}\"", p.column),
        )
    })?;
    let (lo, hi): (Option<f64>, Option<f64>) = (row.get(0), row.get(1));
    let (Some(lo), Some(hi)) = (lo, hi) else {
        // No rows (or only NULLs): one range reads whatever is there.
        return Ok(vec!["TRUE".into()]);
    };
    Ok(range_predicates(&col, lo, hi, p.partitions as usize, |v| {
        domain.literal(v, ty)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_by_column_type_and_their_sql() {
        assert_eq!(Domain::of(&Type::INT8, "id").unwrap(), Domain::Int);
        assert_eq!(Domain::of(&Type::NUMERIC, "amount").unwrap(), Domain::Float);
        assert_eq!(Domain::of(&Type::DATE, "day").unwrap(), Domain::Date);
        assert_eq!(
            Domain::of(&Type::TIMESTAMPTZ, "at").unwrap(),
            Domain::Timestamp
        );
        let e = Domain::of(&Type::TEXT, "name").unwrap_err();
        assert!(
            e.message().contains("\"name\" has type text"),
            "{}",
            e.message()
        );
        assert_eq!(Domain::Int.to_number("c"), "(c)::float8");
        assert!(Domain::Date.to_number("c").contains("DATE '1970-01-01'"));
        assert!(Domain::Timestamp.to_number("c").contains("extract(epoch"));
        assert_eq!(Domain::Int.literal(41.6, &Type::INT8), "42");
        assert_eq!(Domain::Float.literal(1.5, &Type::FLOAT8), "1.5::float8");
        assert_eq!(
            Domain::Date.literal(1.0, &Type::DATE),
            "(DATE '1970-01-01' + 1)"
        );
        assert_eq!(
            Domain::Timestamp.literal(2_000_000.0, &Type::TIMESTAMPTZ),
            "to_timestamp(2.0)"
        );
        assert_eq!(
            Domain::Timestamp.literal(2_000_000.0, &Type::TIMESTAMP),
            "(to_timestamp(2.0) AT TIME ZONE 'UTC')"
        );
    }
}
