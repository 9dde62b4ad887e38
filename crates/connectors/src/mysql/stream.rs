//! A MySQL/MariaDB load in a stream: the InnoDB table `_pipectl_stream_offsets` beside the
//! target (same database) holds each partition's next offset per stream and load step, and a
//! micro-batch moves them in the same transaction as its rows. Each row is locked
//! (`SELECT ... FOR UPDATE`) and moved only from the micro-batch's start: a second process
//! running the same stream, or a replay of a committed micro-batch, moves nothing and the load
//! rolls back.

use super::{my_error, quote_ident};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use pipeline_base::StepError;
use pipeline_data::stream::{StreamCursor, StreamOffsets, StreamProgress};

/// The offsets table's name.
const OFFSETS: &str = "_pipectl_stream_offsets";

/// The offsets table, quoted, in the database of the user's `table`.
pub(super) fn offsets_table(table: &str) -> String {
    match table.rsplit_once('.') {
        Some((db, _)) => format!("{}.{}", quote_ident(db), quote_ident(OFFSETS)),
        None => quote_ident(OFFSETS),
    }
}

/// Creates the offsets table when missing (DDL: outside the load's transaction).
pub(super) async fn ensure(conn: &mut Conn, offsets: &str, step: &str) -> Result<(), StepError> {
    let ddl = format!(
        "CREATE TABLE IF NOT EXISTS {offsets} (stream VARCHAR(255) NOT NULL, step VARCHAR(255) NOT NULL, topic VARCHAR(255) NOT NULL, `partition` INT NOT NULL, next_offset BIGINT NOT NULL, committed_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), PRIMARY KEY (stream, step, topic, `partition`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    );
    conn.query_drop(ddl).await.map_err(|e| {
        my_error(
            e,
            &format!("step \"{step}\": creating the stream offsets table {offsets}"),
        )
        .with_hint(
            "grant CREATE on the target's database: a stream keeps its offsets beside the table",
        )
    })
}

/// The stream's committed next offsets for this load step.
pub(super) async fn committed(
    conn: &mut Conn,
    offsets: &str,
    cursor: &StreamCursor,
    step: &str,
) -> Result<StreamOffsets, StepError> {
    let rows: Vec<(String, i32, i64)> = conn
        .exec(
            format!(
                "SELECT topic, `partition`, next_offset FROM {offsets} WHERE stream = ? AND step = ?"
            ),
            (cursor.app(), step),
        )
        .await
        .map_err(|e| my_error(e, &format!("step \"{step}\": reading {offsets}")))?;
    Ok(rows.into_iter().map(|(t, p, o)| ((t, p), o)).collect())
}

/// Where the table stands against the cursor's micro-batch.
pub(super) async fn progress(
    conn: &mut Conn,
    offsets: &str,
    cursor: &StreamCursor,
    step: &str,
) -> Result<StreamProgress, StepError> {
    let done = committed(conn, offsets, cursor, step).await?;
    cursor
        .progress(&done)
        .map_err(|why| crate::ledger::offsets_conflict(step, cursor, offsets, &why))
}

/// Moves the micro-batch's offsets inside the load's open transaction. `false`: another
/// process committed this micro-batch first (roll back, nothing to write).
pub(super) async fn advance(
    conn: &mut Conn,
    offsets: &str,
    cursor: &StreamCursor,
    step: &str,
) -> Result<bool, StepError> {
    let fail = |e| my_error(e, &format!("step \"{step}\": writing {offsets}"));
    for r in cursor.ranges().iter().filter(|r| r.end > 0) {
        let key = (cursor.app(), step, r.topic.as_str(), r.partition);
        let now: Option<i64> = conn
            .exec_first(
                format!(
                    "SELECT next_offset FROM {offsets} WHERE stream = ? AND step = ? AND topic = ? AND `partition` = ? FOR UPDATE"
                ),
                key,
            )
            .await
            .map_err(fail)?;
        match now {
            // Another process committed this micro-batch first.
            Some(at) if at >= r.end && r.end > r.start => return Ok(false),
            Some(at) if at > r.start => {
                let why = format!(
                    "topic \"{}\" partition {}: the sink committed up to offset {at}, inside this micro-batch's range {}..{}",
                    r.topic, r.partition, r.start, r.end
                );
                return Err(crate::ledger::offsets_conflict(step, cursor, offsets, &why));
            }
            Some(_) => conn
                .exec_drop(
                    format!(
                        "UPDATE {offsets} SET next_offset = ?, committed_at = CURRENT_TIMESTAMP(6) WHERE stream = ? AND step = ? AND topic = ? AND `partition` = ?"
                    ),
                    (r.end, cursor.app(), step, r.topic.as_str(), r.partition),
                )
                .await
                .map_err(fail)?,
            None => conn
                .exec_drop(
                    format!(
                        "INSERT INTO {offsets} (stream, step, topic, `partition`, next_offset) VALUES (?, ?, ?, ?, ?)"
                    ),
                    (cursor.app(), step, r.topic.as_str(), r.partition, r.end),
                )
                .await
                .map_err(fail)?,
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_offsets_sit_beside_the_target() {
        assert_eq!(
            super::offsets_table("shop.orders"),
            "`shop`.`_pipectl_stream_offsets`"
        );
        assert_eq!(super::offsets_table("orders"), "`_pipectl_stream_offsets`");
    }
}
