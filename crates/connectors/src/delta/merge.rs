//! Upsert into a Delta table without a query engine: the load's rows are collapsed to the last
//! row of each key; the table's files are scanned on the key columns only, and only the files
//! holding a key of the load are rewritten without those rows (their removes go into the same
//! commit as the new files). One `MERGE` commit; a concurrent change to the table's data fails
//! it (see `commit`), so an upsert never works from a stale picture.

use super::sink::DeltaSink;
use super::source::{DataFile, read_files, table_files};
use crate::arrow_bridge::frame_to_arrow;
use deltalake::kernel::Action;
use deltalake::protocol::{DeltaOperation, MergePredicate};
use futures::StreamExt;
use pipeline_base::StepError;
use pipeline_data::PolarsResultExt;
use pipeline_data::polars::prelude::*;
use std::collections::{BTreeMap, HashMap};

/// The log's record of the operation (what Delta engines show in `DESCRIBE HISTORY`).
pub(super) fn operation(key: &[String]) -> DeltaOperation {
    let predicate = key
        .iter()
        .map(|k| format!("target.`{k}` = source.`{k}`"))
        .collect::<Vec<_>>()
        .join(" AND ");
    DeltaOperation::Merge {
        predicate: None,
        merge_predicate: Some(predicate),
        matched_predicates: vec![MergePredicate {
            action_type: "update".into(),
            predicate: None,
        }],
        not_matched_predicates: vec![MergePredicate {
            action_type: "insert".into(),
            predicate: None,
        }],
        not_matched_by_source_predicates: vec![],
    }
}

/// The load's rows with one row per key: the last one given.
pub(super) fn last_per_key(frames: Vec<DataFrame>, key: &[String]) -> Result<DataFrame, StepError> {
    let mut iter = frames.into_iter();
    let Some(mut all) = iter.next() else {
        return Ok(DataFrame::empty());
    };
    for f in iter {
        all.vstack_mut_owned(f)
            .step_err("collecting the upsert's rows")?;
    }
    for k in key {
        if !all.schema().contains(k.as_str()) {
            let names: Vec<&str> = all.get_column_names().iter().map(|n| n.as_str()).collect();
            return Err(StepError::user(format!(
                "the upsert key column \"{k}\" is not in the data"
            ))
            .with_hint(format!("the data's columns: {}", names.join(", "))));
        }
    }
    all.unique_stable(Some(key), UniqueKeepStrategy::Last, None)
        .step_err("collapsing the upsert's rows by key")
}

fn keep_rows(
    df: DataFrame,
    keys: &DataFrame,
    key: &[String],
    how: JoinType,
) -> Result<DataFrame, StepError> {
    let k: Vec<Expr> = key.iter().map(|c| col(c.as_str())).collect();
    // Keys are compared in the table's types: the load's key columns cast to them first.
    let casts: Vec<Expr> = key
        .iter()
        .filter_map(|c| {
            df.schema()
                .get(c.as_str())
                .map(|t| col(c.as_str()).cast(t.clone()))
        })
        .collect();
    df.lazy()
        .join(
            keys.clone().lazy().select(casts),
            k.clone(),
            k,
            JoinArgs::new(how),
        )
        .collect()
        .step_err("matching upsert keys")
}

impl DeltaSink {
    /// Collapses the load's rows, rewrites the table files holding their keys and writes the
    /// rows; everything lands in the commit.
    pub(super) async fn prepare_upsert(&mut self) -> Result<(), StepError> {
        let key = self.options.key.clone();
        let rows = last_per_key(std::mem::take(&mut self.upsert_rows), &key)?;
        if rows.width() == 0 {
            return Ok(());
        }
        let keys = rows
            .select(key.iter().map(|k| k.as_str()))
            .step_err("the upsert's keys")?;
        if let Some(table) = &self.table {
            let columns = table
                .snapshot()
                .map_err(|e| super::delta_error(e, "reading the table"))?
                .schema();
            for k in &key {
                if columns.field(k).is_none() {
                    return Err(StepError::user(format!(
                        "the upsert key column \"{k}\" is not a column of the table"
                    )));
                }
            }
            let files = table_files(table, &BTreeMap::new())?;
            let mut matched: Vec<DataFile> = Vec::new();
            let mut scan = read_files(table, files.clone(), Some(&key))?;
            let mut i = 0usize;
            while let Some(frame) = scan.next().await {
                let frame = frame?;
                if keep_rows(frame, &keys, &key, JoinType::Semi)?.height() > 0
                    && let Some(f) = files.get(i)
                {
                    matched.push(f.clone());
                }
                i = i.saturating_add(1);
            }
            let removes: HashMap<String, Action> = table
                .snapshot()
                .map_err(|e| super::delta_error(e, "reading the table"))?
                .log_data()
                .iter()
                .map(|f| (f.path().to_string(), Action::Remove(f.remove_action(true))))
                .collect();
            tracing::info!(
                files = files.len(),
                rewritten = matched.len(),
                keys = keys.height(),
                "Delta upsert: files holding the load's keys"
            );
            let mut kept = Vec::new();
            let mut rewrite = read_files(table, matched.clone(), None)?;
            while let Some(frame) = rewrite.next().await {
                kept.push(keep_rows(frame?, &keys, &key, JoinType::Anti)?);
            }
            for f in &matched {
                if let Some(r) = removes.get(&f.path) {
                    self.rewritten.push(r.clone());
                }
            }
            for df in kept {
                for batch in frame_to_arrow(&df)? {
                    self.write_batch(batch).await?;
                }
            }
        }
        for batch in frame_to_arrow(&rows)? {
            self.write_batch(batch).await?;
        }
        self.flush_staged().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_row_of_a_key_wins_and_keys_are_matched_in_the_tables_types() {
        let a = df!("id" => [1i64, 2, 1], "v" => ["a", "b", "c"]).unwrap();
        let b = df!("id" => [2i64, 3], "v" => ["d", "e"]).unwrap();
        let key = vec!["id".to_string()];
        let rows = last_per_key(vec![a, b], &key).unwrap();
        assert_eq!(rows.height(), 3);
        let v: Vec<_> = rows
            .column("v")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        assert_eq!(v, ["c", "d", "e"]);
        let table = df!("id" => [1i32, 5], "v" => ["old", "other"]).unwrap();
        let keys = rows.select(["id"]).unwrap();
        assert_eq!(
            keep_rows(table.clone(), &keys, &key, JoinType::Semi)
                .unwrap()
                .height(),
            1
        );
        let kept = keep_rows(table, &keys, &key, JoinType::Anti).unwrap();
        assert_eq!(
            kept.column("v").unwrap().str().unwrap().get(0),
            Some("other")
        );
        let e = last_per_key(vec![df!("x" => [1]).unwrap()], &key).unwrap_err();
        assert!(e.message().contains("\"id\""));
    }
}
