//! What the SQL database connectors (PostgreSQL, MySQL) share: the table-or-query source and its
//! checks, the parallel-range option and the split of a value range into predicates, and the
//! key check of upserting loads. Each connector brings its own quoting and SQL dialect.

use pipeline_base::StepError;
use pipeline_data::polars::prelude::DataFrame;
use pipeline_data::{Batch, OptionsError, Source};
use schemars::JsonSchema;
use serde::Deserialize;

/// Parallel reads of ranges of one column.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartitionOptions {
    /// A numeric, date or timestamp column to split on.
    pub column: String,
    /// Number of ranges read in parallel (one connection each).
    pub partitions: u32,
    /// Lower bound (a number, or a date/timestamp string); the column's minimum when absent.
    #[serde(default)]
    pub lower_bound: Option<serde_json::Value>,
    /// Upper bound; the column's maximum when absent.
    #[serde(default)]
    pub upper_bound: Option<serde_json::Value>,
}

/// The source options every SQL extract has.
pub(crate) struct SourceShape<'a> {
    pub table: Option<&'a str>,
    pub columns: &'a [String],
    pub query: Option<&'a str>,
    pub batch_size: usize,
    pub partition: Option<&'a PartitionOptions>,
}

impl SourceShape<'_> {
    /// A table or a query (not both), columns only with a table, sane sizes.
    pub fn check(&self) -> Result<(), OptionsError> {
        match (self.table, self.query) {
            (None, None) => return Err(OptionsError::new("", "give \"table\" or \"query\"")),
            (Some(_), Some(_)) => {
                return Err(OptionsError::new(
                    "/query",
                    "give \"table\" or \"query\", not both",
                ));
            }
            (None, Some(_)) if !self.columns.is_empty() => {
                return Err(
                    OptionsError::new("/columns", "\"columns\" goes with \"table\"")
                        .with_hint("list the columns in the query's SELECT instead"),
                );
            }
            _ => {}
        }
        if self.batch_size == 0 {
            return Err(OptionsError::new(
                "/batch_size",
                "batch_size must be at least 1",
            ));
        }
        if let Some(p) = self.partition {
            if !(1..=64).contains(&p.partitions) {
                return Err(OptionsError::new(
                    "/partition/partitions",
                    "partitions must be between 1 and 64",
                ));
            }
            for (pointer, bound) in [
                ("/partition/lower_bound", &p.lower_bound),
                ("/partition/upper_bound", &p.upper_bound),
            ] {
                if let Some(b) = bound
                    && !(b.is_number() || b.is_string())
                {
                    return Err(OptionsError::new(
                        pointer,
                        "a bound is a number, or a date or timestamp string",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The SELECT this source reads, with the connector's identifier quoting.
    pub fn select(&self, ident: fn(&str) -> String, table: fn(&str) -> String) -> String {
        match (self.query, self.table) {
            (Some(q), _) => q.trim().trim_end_matches(';').to_string(),
            (None, Some(t)) => {
                let cols = if self.columns.is_empty() {
                    "*".to_string()
                } else {
                    self.columns
                        .iter()
                        .map(|c| ident(c))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                format!("SELECT {cols} FROM {}", table(t))
            }
            (None, None) => String::new(),
        }
    }
}

/// `key` is given exactly when the mode is an upsert.
pub(crate) fn check_key(upsert: bool, key: &[String], example: &str) -> Result<(), OptionsError> {
    if upsert && key.is_empty() {
        return Err(OptionsError::new("/key", "upsert needs the key columns")
            .with_hint(format!("e.g. \"key\": [\"{example}\"]")));
    }
    if !upsert && !key.is_empty() {
        return Err(OptionsError::new(
            "/key",
            "\"key\" is only used by mode \"upsert\"",
        ));
    }
    Ok(())
}

/// `n` predicates on `col` splitting `lo..=hi` into equal ranges that together cover every row:
/// the first range is open below and takes the NULLs, the last is open above. `literal` writes
/// a boundary value in the column's domain.
pub(crate) fn range_predicates(
    col: &str,
    lo: f64,
    hi: f64,
    n: usize,
    literal: impl Fn(f64) -> String,
) -> Vec<String> {
    let n = n.max(1);
    let step = (hi - lo) / n as f64;
    (0..n)
        .map(|i| {
            let mut conds = Vec::new();
            if i > 0 {
                conds.push(format!("{col} >= {}", literal(lo + step * i as f64)));
            }
            let next = i.saturating_add(1);
            if next < n {
                conds.push(format!("{col} < {}", literal(lo + step * next as f64)));
            }
            let predicate = if conds.is_empty() {
                "TRUE".to_string()
            } else {
                conds.join(" AND ")
            };
            if i == 0 {
                format!("({predicate} OR {col} IS NULL)")
            } else {
                predicate
            }
        })
        .collect()
}

/// A source fed by reader tasks through a channel of frames (the SQL extracts: one task per
/// connection or range). When the channel closes, the tasks are awaited: a task that panicked
/// (a defect, or a dependency's) is an error, never a silent end of the data.
pub(crate) struct ReaderSource {
    pub rx: tokio::sync::mpsc::Receiver<Result<DataFrame, StepError>>,
    /// The server's row estimate, for the progress bar.
    pub estimate: Option<u64>,
    pub readers: Vec<tokio::task::JoinHandle<()>>,
    /// Kept open until the source is dropped (PostgreSQL's exported-snapshot session).
    pub _keep: Option<Box<dyn std::any::Any + Send>>,
}

#[async_trait::async_trait]
impl Source for ReaderSource {
    async fn next_batch(&mut self) -> Result<Option<Batch>, StepError> {
        match self.rx.recv().await {
            Some(Ok(df)) => Ok(Some(Batch::Frame(df))),
            Some(Err(e)) => Err(e),
            None => {
                for reader in self.readers.drain(..) {
                    if let Err(e) = reader.await {
                        return Err(StepError::internal(format!(
                            "a reader task stopped before the end of the data: {e}"
                        )));
                    }
                }
                Ok(None)
            }
        }
    }

    fn total_rows(&self) -> Option<u64> {
        self.estimate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_everything_once() {
        let p = range_predicates("c", 0.0, 100.0, 4, |v| format!("{}", v as i64));
        assert_eq!(
            p,
            [
                "(c < 25 OR c IS NULL)",
                "c >= 25 AND c < 50",
                "c >= 50 AND c < 75",
                "c >= 75"
            ]
        );
        assert_eq!(
            range_predicates("c", 1.0, 1.0, 1, |_| "x".into()),
            ["(TRUE OR c IS NULL)"]
        );
    }

    #[test]
    fn shapes_are_checked() {
        let shape = |table, query, columns: &'static [String]| SourceShape {
            table,
            columns,
            query,
            batch_size: 10,
            partition: None,
        };
        assert!(shape(None, None, &[]).check().is_err());
        assert_eq!(
            shape(Some("t"), Some("q"), &[])
                .check()
                .unwrap_err()
                .pointer,
            "/query"
        );
        assert!(shape(Some("t"), None, &[]).check().is_ok());
        assert!(check_key(true, &[], "id").is_err());
        assert!(check_key(false, &["id".into()], "id").is_err());
        assert!(check_key(true, &["id".into()], "id").is_ok());
    }
}
