//! Where a stream resumes. At start the source lists its partitions and every load says how
//! far it committed (`Operator::stream_offsets`). Each partition resumes at the lowest offset
//! an exactly-once load committed, and the first micro-batches read no further than the
//! highest: a crash between two loads' commits leaves one load a micro-batch ahead, the replay
//! is exactly that micro-batch, and the load that has it already writes nothing.

use crate::chain::StepFailure;
use crate::execute::{step_credentials, step_setup};
use crate::plan::Plan;
use crate::registry::Registry;
use pipeline_base::{StepError, StepKind};
use pipeline_credentials::CachedProvider;
use pipeline_data::Runtime;
use pipeline_data::stream::{PartitionKey, StreamCursor, StreamOffsets};
use std::sync::Arc;

/// Starts and caps from the partitions and each tracking load's committed offsets.
pub(crate) fn resume_points(
    partitions: &[PartitionKey],
    sinks: &[StreamOffsets],
) -> (StreamOffsets, StreamOffsets) {
    let (mut starts, mut caps) = (StreamOffsets::new(), StreamOffsets::new());
    if sinks.is_empty() {
        return (starts, caps);
    }
    for key in partitions {
        let known: Vec<i64> = sinks.iter().filter_map(|s| s.get(key).copied()).collect();
        let (Some(&low), Some(&high)) = (known.iter().min(), known.iter().max()) else {
            continue; // no load has it: the source's own start
        };
        if known.len() == sinks.len() {
            starts.insert(key.clone(), low);
            if high > low {
                caps.insert(key.clone(), high);
            }
        } else {
            // Some load never committed this partition: it starts where the source says, and
            // the replay stops where the furthest load is.
            caps.insert(key.clone(), high);
        }
    }
    (starts, caps)
}

/// Opens step `i` for the stream's cursor.
async fn open(
    plan: &Plan,
    registry: &Registry,
    credentials: Option<&CachedProvider>,
    i: usize,
    run_id: &str,
    cursor: &Arc<StreamCursor>,
) -> Result<Runtime, StepFailure> {
    let step = &plan.steps[i];
    let fail = |error: StepError| StepFailure {
        index: i,
        step: step.name.clone(),
        error,
    };
    let entry = registry
        .get(step.kind, &step.method)
        .ok_or_else(|| fail(StepError::internal("method vanished from the registry")))?;
    let (creds, others) = step_credentials(step, &plan.base_dir, credentials)
        .await
        .map_err(fail)?;
    let setup = step_setup(
        plan,
        step,
        run_id.to_string(),
        false,
        creds,
        others,
        Some(cursor.clone()),
    );
    entry.open(setup).await.map_err(fail)
}

/// Lists the source's partitions and asks every load how far it committed; returns the
/// starts and caps of the first micro-batch and the loads that keep offsets.
pub(crate) async fn recover(
    plan: &Plan,
    registry: &Registry,
    credentials: Option<&CachedProvider>,
    run_id: &str,
    cursor: &Arc<StreamCursor>,
    source: usize,
) -> Result<(StreamOffsets, StreamOffsets, Vec<String>), StepFailure> {
    cursor.discover();
    drop(open(plan, registry, credentials, source, run_id, cursor).await?);
    let mut tracked = Vec::new();
    let mut names = Vec::new();
    for (i, step) in plan.steps.iter().enumerate() {
        if step.kind != StepKind::Load {
            continue;
        }
        let Runtime::Operator(mut op) =
            open(plan, registry, credentials, i, run_id, cursor).await?
        else {
            continue;
        };
        let offsets = op.stream_offsets().await;
        op.abort().await;
        let offsets = offsets.map_err(|error| StepFailure {
            index: i,
            step: step.name.clone(),
            error,
        })?;
        if let Some(o) = offsets {
            for ((topic, partition), next) in &o {
                tracing::info!(step = %step.name, topic = %topic, partition, next_offset = next, "committed offset found in the sink");
            }
            tracked.push(o);
            names.push(step.name.clone());
        }
    }
    let (starts, caps) = resume_points(&cursor.partitions(), &tracked);
    Ok((starts, caps, names))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(list: &[(i32, i64)]) -> StreamOffsets {
        list.iter()
            .map(|&(p, v)| (("t".to_string(), p), v))
            .collect()
    }

    #[test]
    fn a_stream_resumes_at_the_lowest_and_replays_to_the_highest() {
        let parts: Vec<PartitionKey> = (0..3).map(|p| ("t".to_string(), p)).collect();
        // Delta committed micro-batch n, PostgreSQL only n-1 (a crash between the commits).
        let (starts, caps) = resume_points(&parts, &[o(&[(0, 20), (1, 7)]), o(&[(0, 10), (1, 7)])]);
        assert_eq!(starts, o(&[(0, 10), (1, 7)]));
        assert_eq!(caps, o(&[(0, 20)]));
        // One load never committed partition 1: the source's start, up to the other's offset.
        let (starts, caps) = resume_points(&parts, &[o(&[(0, 5), (1, 9)]), o(&[(0, 5)])]);
        assert_eq!(starts, o(&[(0, 5)]));
        assert_eq!(caps, o(&[(1, 9)]));
        // No load keeps offsets: the source decides everything.
        assert_eq!(resume_points(&parts, &[]), (o(&[]), o(&[])));
    }
}
