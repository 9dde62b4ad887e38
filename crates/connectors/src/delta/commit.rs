//! The Delta load's commit: one log entry per run, written with a conditional put, retried on
//! a lost race after checking what the winners did. Appends pass other appends and compactions;
//! an overwrite or an upsert fails if another writer changed the table's data since the step
//! opened it, and an append fails if another writer replaced or deleted rows meanwhile: one
//! clear winner, never a mixed table. After the commit: a checkpoint every N versions and an
//! optional compaction, best-effort (the data is already committed).

use super::table::{CommitSummary, commits_since};
use super::{DeltaWriteMode, delta_error};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake::kernel::{Action, Transaction};
use deltalake::protocol::DeltaOperation;
use deltalake::{DeltaTable, DeltaTableError};
use pipeline_base::StepError;
use pipeline_data::stream::{PartitionKey, StreamCursor, StreamOffsets, StreamProgress};
use std::sync::Arc;
use std::time::Duration;

/// Lost races tolerated before giving up (each one means another writer committed first).
const MAX_RACES: u32 = 100;

/// The rule a commit must pass against what others committed since `base`.
pub(crate) fn conflict(mode: DeltaWriteMode, winner: &CommitSummary) -> Option<String> {
    let what = if winner.operation.is_empty() {
        "a commit".to_string()
    } else {
        format!("a {} commit", winner.operation)
    };
    let v = winner.version;
    match mode {
        DeltaWriteMode::Append if winner.data_removes > 0 => Some(format!(
            "another writer replaced or deleted rows ({what}, version {v}) while this load ran; appending now would mix the old table's rows into the new one"
        )),
        DeltaWriteMode::Overwrite | DeltaWriteMode::Upsert
            if winner.data_removes > 0 || winner.data_adds > 0 =>
        {
            Some(format!(
                "another writer changed the table's data ({what}, version {v}) after this load read it"
            ))
        }
        // An upsert removes the files it rewrote as it read them: a compaction that replaced
        // them meanwhile would leave the old rows of its keys in the compacted file.
        DeltaWriteMode::Upsert if winner.removes > 0 => Some(format!(
            "another writer rewrote files of the table ({what}, version {v}) after this upsert read them"
        )),
        _ => None,
    }
}

/// What the commit loop needs to know about the load.
pub(crate) struct CommitRequest<'a> {
    pub mode: DeltaWriteMode,
    /// The version the load read (its rules apply to every commit after it).
    pub base: u64,
    /// The actions besides the removes an overwrite derives from the latest snapshot.
    pub actions: Vec<Action>,
    pub operation: DeltaOperation,
    pub properties: CommitProperties,
    /// How this load's commit is recognised in the log.
    pub landing: &'a Landing,
    /// The table is at the version this process committed last (nothing to read first).
    pub fresh: bool,
    pub location: &'a str,
}

/// Commits `req` to `table`, returning the new version.
pub(crate) async fn commit(
    table: &mut DeltaTable,
    req: CommitRequest<'_>,
) -> Result<u64, StepError> {
    let mut checked = req.base;
    let mut races = 0u32;
    loop {
        // A table known to be at the version of this process's own last commit (a stream's
        // kept table) tries at once; a lost race reads the log like any other.
        if !(req.fresh && races == 0) {
            table
                .update_state()
                .await
                .map_err(|e| delta_error(e, &format!("reading {}", req.location)))?;
        }
        let latest = version_of(table);
        // Nothing committed since the load read the table (it looked for its own commit then):
        // no need to look again.
        if (latest > req.base || races > 0)
            && let Some(v) = landed(table, req.landing).await?
        {
            return Ok(v);
        }
        if latest > checked {
            for winner in commits_since(table.log_store().as_ref(), checked).await? {
                if let Some(why) = conflict(req.mode, &winner) {
                    // Not retried on its own: the other writer's change may be the one meant to
                    // win; running again is the user's call.
                    return Err(StepError::external(format!(
                        "committing to {}: {why}; nothing of this load was committed",
                        req.location
                    ))
                    .with_hint(
                        "run the pipeline again to apply this load to the table's new state",
                    ));
                }
            }
            checked = latest;
        }
        let snapshot = table
            .snapshot()
            .map_err(|e| delta_error(e, &format!("reading {}", req.location)))?;
        let mut actions = Vec::with_capacity(req.actions.len());
        if req.mode == DeltaWriteMode::Overwrite {
            actions.extend(
                snapshot
                    .log_data()
                    .iter()
                    .map(|f| Action::Remove(f.remove_action(true))),
            );
        }
        actions.extend(req.actions.iter().cloned());
        let attempt = CommitBuilder::from(req.properties.clone())
            .with_max_retries(0)
            .with_actions(actions)
            .build(Some(snapshot), table.log_store(), req.operation.clone())
            .await;
        match attempt {
            Ok(done) => {
                // The table is now at the new version without reading the log again.
                table.state = Some(done.snapshot());
                return Ok(done.version());
            }
            Err(e) if lost_race(&e) => {
                races = races.saturating_add(1);
                if races > MAX_RACES {
                    return Err(StepError::transient(format!(
                        "committing to {}: {MAX_RACES} other commits won the race for the next version",
                        req.location
                    )));
                }
                // Jittered, growing pause so racing writers spread out.
                let jitter = u64::from(std::process::id() % 50);
                let pause = 20u64
                    .saturating_mul(u64::from(races.min(10)))
                    .saturating_add(jitter);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            Err(e) => {
                // The entry may have been written before the error came back.
                if let Ok(Some(v)) = landed(table, req.landing).await {
                    return Ok(v);
                }
                return Err(delta_error(e, &format!("committing to {}", req.location)));
            }
        }
    }
}

/// The loaded version (0 before any).
pub(crate) fn version_of(table: &DeltaTable) -> u64 {
    table.version().unwrap_or_default()
}

/// A race lost to another writer (the next version existed, or appeared meanwhile).
fn lost_race(e: &DeltaTableError) -> bool {
    matches!(
        e,
        DeltaTableError::VersionAlreadyExists(_)
            | DeltaTableError::Transaction {
                source: TransactionError::VersionAlreadyExists(_)
                    | TransactionError::MaxCommitAttempts(_)
            }
    )
}

/// How a load's commit is recognised in the log.
pub(crate) enum Landing {
    /// A batch run: a `txn` with the run's application id (`pipectl/PIPELINE/RUN_ID/STEP`).
    Run(String),
    /// A micro-batch of a stream, for the load step named: one `txn` per partition
    /// (`STREAM/STEP/TOPIC/PARTITION`, version the last offset read), at the micro-batch's ends.
    Stream(Arc<StreamCursor>, String),
}

impl Landing {
    /// The `txn` actions a commit of this load carries.
    pub(crate) fn transactions(&self) -> Vec<Transaction> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .ok();
        match self {
            Landing::Run(app_id) => vec![Transaction::new_with_last_update(app_id, 0, now)],
            // Every partition of the micro-batch, read or not, so that the table knows them all.
            Landing::Stream(cursor, step) => cursor
                .ranges()
                .iter()
                .filter(|r| r.end > 0)
                .map(|r| {
                    Transaction::new_with_last_update(
                        cursor.partition_id(step, &r.topic, r.partition),
                        r.end.saturating_sub(1),
                        now,
                    )
                })
                .collect(),
        }
    }
}

/// The next offset per partition a stream committed to the table (its `txn` versions + 1).
pub(crate) async fn stream_offsets(
    table: &DeltaTable,
    cursor: &StreamCursor,
    step: &str,
    partitions: &[PartitionKey],
) -> Result<StreamOffsets, StepError> {
    let snapshot = table
        .snapshot()
        .map_err(|e| delta_error(e, "reading the table log"))?;
    let mut out = StreamOffsets::new();
    for (topic, partition) in partitions {
        let id = cursor.partition_id(step, topic, *partition);
        if let Some(v) = snapshot
            .transaction_version(table.log_store().as_ref(), &id)
            .await
            .map_err(|e| delta_error(e, "reading the table log"))?
        {
            out.insert((topic.clone(), *partition), v.saturating_add(1));
        }
    }
    Ok(out)
}

/// Where a stream's sink stands against the micro-batch in the cursor.
pub(crate) async fn stream_progress(
    table: &DeltaTable,
    cursor: &StreamCursor,
    step: &str,
) -> Result<StreamProgress, StepError> {
    let keys: Vec<PartitionKey> = cursor
        .ranges()
        .iter()
        .filter(|r| !r.is_empty())
        .map(|r| (r.topic.clone(), r.partition))
        .collect();
    let committed = stream_offsets(table, cursor, step, &keys).await?;
    progress_of(cursor, &committed)
}

/// Where a table with these committed offsets stands against the cursor's micro-batch.
pub(crate) fn progress_of(
    cursor: &StreamCursor,
    committed: &StreamOffsets,
) -> Result<StreamProgress, StepError> {
    cursor.progress(committed).map_err(|why| {
        StepError::external(format!(
            "stream \"{}\": {why}; another stream with the same id writes this table, or its offsets were changed",
            cursor.app()
        ))
        .with_hint("stop the other stream (each stream needs its own \"streaming\": {\"id\"}); nothing of this micro-batch was committed")
    })
}

/// The version at which this load's commit landed, if it did.
pub(crate) async fn landed(
    table: &mut DeltaTable,
    landing: &Landing,
) -> Result<Option<u64>, StepError> {
    table
        .update_state()
        .await
        .map_err(|e| delta_error(e, "reading the table log"))?;
    match landing {
        Landing::Run(app_id) => {
            let snapshot = table
                .snapshot()
                .map_err(|e| delta_error(e, "reading the table log"))?;
            let found = snapshot
                .transaction_version(table.log_store().as_ref(), app_id)
                .await
                .map_err(|e| delta_error(e, "reading the table log"))?;
            Ok(found.map(|_| version_of(table)))
        }
        Landing::Stream(cursor, step) => match stream_progress(table, cursor, step).await? {
            StreamProgress::Committed => Ok(Some(version_of(table))),
            StreamProgress::Behind => Ok(None),
        },
    }
}

/// After a commit at `version`: a checkpoint when `version` is a multiple of `checkpoint_every`,
/// a compaction when it is a multiple of `optimize_every`. Failures are logged, not returned:
/// the load's data is committed either way.
pub(crate) async fn hygiene(
    table: &mut DeltaTable,
    version: u64,
    checkpoint_every: u64,
    optimize_every: u64,
    target_file_size: u64,
    step: &str,
) {
    let due = |every: u64| version > 0 && version.checked_rem(every) == Some(0);
    if due(optimize_every) {
        match super::maintenance::optimize(table, target_file_size).await {
            Ok(r) => tracing::info!(
                step,
                version = r.version,
                files_removed = r.files_removed,
                files_added = r.files_added,
                "Delta compaction"
            ),
            Err(e) => {
                tracing::warn!(step, error = %e.full_message(), "Delta compaction after the commit failed (the load is committed)")
            }
        }
    }
    if due(checkpoint_every) {
        match super::maintenance::checkpoint(table).await {
            Ok(v) => tracing::info!(step, version = v, "Delta checkpoint written"),
            Err(e) => {
                tracing::warn!(step, error = %e.full_message(), "Delta checkpoint after the commit failed (the load is committed)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(op: &str, adds: usize, removes: usize) -> CommitSummary {
        CommitSummary {
            version: 4,
            operation: op.into(),
            data_adds: adds,
            data_removes: removes,
            removes,
            metadata_changed: false,
        }
    }

    #[test]
    fn one_winner_never_a_mixed_table() {
        use DeltaWriteMode::*;
        let append = summary("WRITE", 3, 0);
        let overwrite = summary("WRITE", 3, 5);
        let compaction = summary("OPTIMIZE", 0, 0);
        assert!(conflict(Append, &append).is_none());
        assert!(conflict(Append, &compaction).is_none());
        let e = conflict(Append, &overwrite).unwrap();
        assert!(e.contains("version 4") && e.contains("WRITE"), "{e}");
        for mode in [Overwrite, Upsert] {
            assert!(conflict(mode, &append).is_some());
            assert!(conflict(mode, &overwrite).is_some());
            assert!(conflict(mode, &compaction).is_none());
        }
        // A compaction that replaced files: an overwrite removes what is there at commit time;
        // an upsert's removes were taken when it read, so it must not pass.
        let compacted = CommitSummary {
            removes: 5,
            ..summary("OPTIMIZE", 0, 0)
        };
        assert!(conflict(Overwrite, &compacted).is_none());
        assert!(conflict(Append, &compacted).is_none());
        let e = conflict(Upsert, &compacted).unwrap();
        assert!(e.contains("OPTIMIZE"), "{e}");
    }
}
