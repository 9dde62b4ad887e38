//! A PostgreSQL load in a stream: the table `_pipectl_stream_offsets` beside the target (same
//! schema) holds each partition's next offset per stream and load step, and a micro-batch moves
//! it (for every partition it covered, read or empty) in the
//! same transaction as its rows, so rows and offsets commit together or not at all. The move
//! only succeeds from the micro-batch's start offsets: a second process running the same
//! stream (or a replay of a micro-batch that committed) moves nothing, and the load rolls back.

use super::pg_error;
use pipeline_base::StepError;
use pipeline_data::stream::{StreamCursor, StreamOffsets, StreamProgress};
use tokio_postgres::Client;

/// The offsets table's name.
const OFFSETS: &str = "_pipectl_stream_offsets";

/// The offsets table, quoted, in the schema of the user's `table`.
pub(super) fn offsets_table(table: &str) -> String {
    crate::ledger::ledger_name(table, super::quote_ident).replace(
        &super::quote_ident(crate::ledger::LEDGER),
        &super::quote_ident(OFFSETS),
    )
}

/// Creates the offsets table when missing.
pub(super) async fn ensure(client: &Client, offsets: &str, step: &str) -> Result<(), StepError> {
    let ddl = format!(
        "CREATE TABLE IF NOT EXISTS {offsets} (stream text NOT NULL, step text NOT NULL, topic text NOT NULL, partition integer NOT NULL, next_offset bigint NOT NULL, committed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (stream, step, topic, partition))"
    );
    if let Err(e) = client.batch_execute(&ddl).await {
        let raced = e.code().is_some_and(|c| {
            *c == tokio_postgres::error::SqlState::UNIQUE_VIOLATION
                || *c == tokio_postgres::error::SqlState::DUPLICATE_TABLE
        });
        if !raced {
            return Err(pg_error(
                e,
                &format!("step \"{step}\": creating the stream offsets table {offsets}"),
            )
            .with_hint(
                "grant CREATE on the target's schema: a stream keeps its offsets beside the table",
            ));
        }
    }
    Ok(())
}

/// The stream's committed next offsets.
pub(super) async fn committed(
    client: &Client,
    offsets: &str,
    cursor: &StreamCursor,
    step: &str,
) -> Result<StreamOffsets, StepError> {
    let doing = format!("step \"{step}\": reading {offsets}");
    let rows = client
        .query(
            &format!(
                "SELECT topic, partition, next_offset FROM {offsets} WHERE stream = $1 AND step = $2"
            ),
            &[&cursor.app(), &step],
        )
        .await
        .map_err(|e| pg_error(e, &doing))?;
    let bad = |e: tokio_postgres::Error| {
        StepError::user(format!("{doing}: {e}"))
            .with_hint("the table has other columns than pipectl's: drop or rename it")
    };
    rows.iter()
        .map(|r| {
            Ok((
                (
                    r.try_get::<_, String>(0).map_err(bad)?,
                    r.try_get::<_, i32>(1).map_err(bad)?,
                ),
                r.try_get::<_, i64>(2).map_err(bad)?,
            ))
        })
        .collect()
}

/// Where the table stands against the cursor's micro-batch.
pub(super) async fn progress(
    client: &Client,
    offsets: &str,
    cursor: &StreamCursor,
    step: &str,
) -> Result<StreamProgress, StepError> {
    let done = committed(client, offsets, cursor, step).await?;
    cursor
        .progress(&done)
        .map_err(|why| crate::ledger::offsets_conflict(step, cursor, offsets, &why))
}

/// Moves the micro-batch's offsets, inside the load's open transaction. `false`: some
/// partition was not at the micro-batch's start (another process committed it).
pub(super) async fn advance(
    client: &Client,
    offsets: &str,
    cursor: &StreamCursor,
    step: &str,
) -> Result<bool, StepError> {
    let sql = format!(
        "INSERT INTO {offsets} AS o (stream, step, topic, partition, next_offset) VALUES ($1, $6, $2, $3, $5) \
         ON CONFLICT (stream, step, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, committed_at = now() \
         WHERE o.next_offset <= $4"
    );
    let statement = client
        .prepare(&sql)
        .await
        .map_err(|e| pg_error(e, &format!("step \"{step}\": writing {offsets}")))?;
    for r in cursor.ranges().iter().filter(|r| r.end > 0) {
        let moved = client
            .execute(
                &statement,
                &[
                    &cursor.app(),
                    &r.topic,
                    &r.partition,
                    &r.start,
                    &r.end,
                    &step,
                ],
            )
            .await
            .map_err(|e| pg_error(e, &format!("step \"{step}\": writing {offsets}")))?;
        if moved != 1 {
            return Ok(false);
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
            "\"shop\".\"_pipectl_stream_offsets\""
        );
        assert_eq!(
            super::offsets_table("orders"),
            "\"_pipectl_stream_offsets\""
        );
    }
}
