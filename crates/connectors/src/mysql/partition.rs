//! Range partitioning of a MySQL read: bounds from the options or the column's min/max, split
//! into equal ranges of the column's value (integers, decimals and floats, dates, datetimes).
//! NULLs go to the first range.

use super::decode::Kind;
use super::{my_error, quote_ident, quote_literal};
use crate::sql::{PartitionOptions, range_predicates};
use mysql_async::prelude::Queryable;
use pipeline_base::StepError;

/// How a column's values map onto numbers and back into SQL.
#[derive(Clone, Copy)]
enum Domain {
    Int,
    Float,
    /// Days since 1970-01-01.
    Date,
    /// Microseconds since 1970-01-01 (session time zone UTC).
    DateTime,
}

impl Domain {
    fn of(kind: Kind, column: &str) -> Result<Self, StepError> {
        Ok(match kind {
            Kind::I8 | Kind::I16 | Kind::I32 | Kind::I64 | Kind::U64 | Kind::Year => Domain::Int,
            Kind::F32 | Kind::F64 | Kind::Decimal { .. } => Domain::Float,
            Kind::Date => Domain::Date,
            Kind::DateTime | Kind::Timestamp => Domain::DateTime,
            other => {
                return Err(StepError::user(format!(
                    "partition column \"{column}\" is {other:?}; partitioning needs a number, date or datetime"
                )));
            }
        })
    }

    /// SQL giving a value of this domain as a DOUBLE.
    fn to_number(self, expr: &str) -> String {
        match self {
            Domain::Int | Domain::Float => format!("CAST({expr} AS DOUBLE)"),
            Domain::Date => format!("CAST(DATEDIFF({expr}, '1970-01-01') AS DOUBLE)"),
            Domain::DateTime => {
                format!("CAST(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {expr}) AS DOUBLE)")
            }
        }
    }

    /// A SQL literal for a number of this domain.
    fn literal(self, v: f64) -> String {
        match self {
            Domain::Int => format!("{}", v.round() as i64),
            Domain::Float => format!("{v:?}"),
            Domain::Date => format!("(DATE '1970-01-01' + INTERVAL {} DAY)", v.round() as i64),
            Domain::DateTime => format!(
                "(TIMESTAMP '1970-01-01 00:00:00' + INTERVAL {} MICROSECOND)",
                v.round() as i64
            ),
        }
    }
}

/// The WHERE predicates of the ranges, covering every row.
pub(crate) async fn ranges(
    conn: &mut mysql_async::Conn,
    sql: &str,
    p: &PartitionOptions,
    kind: Kind,
) -> Result<Vec<String>, StepError> {
    let domain = Domain::of(kind, &p.column)?;
    let col = quote_ident(&p.column);
    let bound = |v: &serde_json::Value| -> String {
        match v {
            serde_json::Value::String(s) => domain.to_number(&quote_literal(s)),
            other => format!("CAST({other} AS DOUBLE)"),
        }
    };
    let lo = p
        .lower_bound
        .as_ref()
        .map(bound)
        .unwrap_or_else(|| format!("MIN({})", domain.to_number(&col)));
    let hi = p
        .upper_bound
        .as_ref()
        .map(bound)
        .unwrap_or_else(|| format!("MAX({})", domain.to_number(&col)));
    let bounds_sql = if p.lower_bound.is_some() && p.upper_bound.is_some() {
        format!("SELECT {lo}, {hi}")
    } else {
        format!("SELECT {lo}, {hi} FROM ({sql}) AS pipectl_q")
    };
    let row: Option<(Option<f64>, Option<f64>)> =
        conn.query_first(bounds_sql).await.map_err(|e| {
            my_error(
                e,
                &format!("finding the bounds of partition column \"{}\"", p.column),
            )
        })?;
    let (Some(lo), Some(hi)) = row.unwrap_or((None, None)) else {
        // No rows (or only NULLs): one range reads whatever is there.
        return Ok(vec!["TRUE".into()]);
    };
    Ok(range_predicates(&col, lo, hi, p.partitions as usize, |v| {
        domain.literal(v)
    }))
}
