//! The load ledger of the SQL sinks: a table `_pipectl_loads` beside the target (same schema /
//! database), one row per committed load — pipeline, run id, step, target, rows, time —
//! inserted in the load's own transaction. The row commits exactly when the data does, so a
//! run resumed with the same id (`pipectl run --resume`) finds it and does not load the step
//! twice, and a commit whose answer was lost can be checked afterwards. Like dlt's `_dlt_loads`;
//! `"ledger": false` on the load turns it off for a user who may not create tables. In a stream
//! the SQL sinks keep offsets instead (`postgres/stream.rs`, `mysql/stream.rs`); their shared
//! errors are here too.

/// The ledger's table name.
pub(crate) const LEDGER: &str = "_pipectl_loads";

/// The ledger's name, quoted, in the schema of the user's `table` (`shop.orders` →
/// `"shop"."_pipectl_loads"`; unqualified → unqualified).
pub(crate) fn ledger_name(table: &str, quote: impl Fn(&str) -> String) -> String {
    match table.rsplit_once('.') {
        Some((schema, _)) => format!("{}.{}", quote(schema), quote(LEDGER)),
        None => quote(LEDGER),
    }
}

/// The hint when the ledger cannot be created.
pub(crate) const CREATE_HINT: &str = "grant CREATE on the schema/database, or set \"ledger\": false on the load (a resumed run then cannot skip it)";

/// Logs that a resumed run found this load committed.
pub(crate) fn found(step: &str, table: &str, run_id: &str, rows: i64) {
    tracing::info!(step = %step, table = %table, run_id = %run_id, rows, "this load committed in the run being resumed; not loading it again");
}

/// Logs that another process committed this load under the same run id first.
pub(crate) fn lost_race(step: &str, run_id: &str) {
    tracing::info!(step = %step, run_id = %run_id, "another process committed this load for the same run id; rolling back");
}

/// What a resumed run is told when the ledger is off.
pub(crate) fn no_ledger_warning(step: &str) {
    tracing::warn!(
        step = %step,
        "resumed run, but this load keeps no ledger (\"ledger\": false): it cannot tell whether the earlier run committed it, and loads it again"
    );
}

/// A SQL load with `"mode": "overwrite"` in a stream.
pub(crate) fn overwrite_in_stream(step: &str) -> pipeline_base::StepError {
    pipeline_base::StepError::user(format!(
        "step \"{step}\": \"mode\": \"overwrite\" would replace the table with every micro-batch of the stream"
    ))
    .with_hint("use \"append\" or \"upsert\" in a stream")
}

/// A SQL sink's stream offsets (table `offsets`) do not fit the cursor's micro-batch (`why`).
pub(crate) fn offsets_conflict(
    step: &str,
    cursor: &pipeline_data::stream::StreamCursor,
    offsets: &str,
    why: &str,
) -> pipeline_base::StepError {
    pipeline_base::StepError::external(format!(
        "step \"{step}\": stream \"{}\": {why}; another stream with the same id writes this table, or {offsets} was changed",
        cursor.app()
    ))
    .with_hint("stop the other stream (each stream needs its own \"streaming\": {\"id\"}); nothing of this micro-batch was committed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_sits_in_the_targets_schema() {
        let q = |s: &str| format!("\"{s}\"");
        assert_eq!(ledger_name("orders", q), "\"_pipectl_loads\"");
        assert_eq!(ledger_name("shop.orders", q), "\"shop\".\"_pipectl_loads\"");
    }
}
