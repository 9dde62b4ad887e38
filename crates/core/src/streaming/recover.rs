//! Where a stream resumes. At start the source lists its partitions and every load says how
//! far it committed (`Operator::stream_offsets`). Each partition resumes at the lowest offset
//! an exactly-once load committed, and the first micro-batches read no further than the
//! highest: a crash between two loads' commits leaves one load a micro-batch ahead, the replay
//! is exactly that micro-batch, and the load that has it already writes nothing. The source's
//! stored offsets (`checkpoint`, or the extract's `offsets` store) count as one more position.

use crate::chain::StepFailure;
use crate::execute::{step_credentials, step_setup};
use crate::plan::Plan;
use crate::registry::Registry;
use pipeline_base::{StepError, StepKind};
use pipeline_credentials::CachedProvider;
use pipeline_data::Runtime;
use pipeline_data::stream::{PartitionKey, StreamCursor, StreamOffsets};
use std::sync::Arc;

/// Where each partition resumes, from each tracking load's committed offsets.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Resume {
    /// Partitions every tracking load knows: the lowest offset.
    pub starts: StreamOffsets,
    /// A replay reads no further than the highest offset a load committed.
    pub replay: StreamOffsets,
    /// Partitions only some loads know start no later than the lowest known offset (the
    /// source's own start when it is earlier).
    pub floors: StreamOffsets,
}

/// Starts, replay caps and floors from the partitions and each tracking load's offsets.
pub(crate) fn resume_points(partitions: &[PartitionKey], sinks: &[StreamOffsets]) -> Resume {
    let mut out = Resume::default();
    if sinks.is_empty() {
        return out;
    }
    for key in partitions {
        let known: Vec<i64> = sinks.iter().filter_map(|s| s.get(key).copied()).collect();
        let (Some(&low), Some(&high)) = (known.iter().min(), known.iter().max()) else {
            continue; // no load has it: the source's own start
        };
        if known.len() == sinks.len() {
            out.starts.insert(key.clone(), low);
            if high > low {
                out.replay.insert(key.clone(), high);
            }
        } else {
            // Some load never committed this partition (a new load, or a crash before its
            // first commit): from the source's start, or the lowest known offset if earlier,
            // up to where the furthest load is.
            out.floors.insert(key.clone(), low);
            out.replay.insert(key.clone(), high);
        }
    }
    out
}

/// The caps of the next micro-batch: while a replay is pending it reads only the replayed
/// partitions (the others are capped at nothing), so that every load either has all of it or
/// none; then the `--once` targets, if any.
pub(crate) fn caps(
    partitions: &[PartitionKey],
    replay: &StreamOffsets,
    targets: Option<&StreamOffsets>,
) -> StreamOffsets {
    if !replay.is_empty() {
        return partitions
            .iter()
            .map(|k| (k.clone(), replay.get(k).copied().unwrap_or(0)))
            .collect();
    }
    targets.cloned().unwrap_or_default()
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

/// Lists the source's partitions and asks every load how far it committed; returns where
/// the stream resumes and the loads that keep offsets.
pub(crate) async fn recover(
    plan: &Plan,
    registry: &Registry,
    credentials: Option<&CachedProvider>,
    run_id: &str,
    cursor: &Arc<StreamCursor>,
    source: usize,
) -> Result<(Resume, Vec<String>), StepFailure> {
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
    // The source's stored offsets are where the at-least-once loads resume: next to the
    // exactly-once loads' offsets they are one more position to reconcile (a stop between a
    // load's commit and the store's save leaves the store behind, and the replay up to the
    // loads is then written only to the loads without offsets).
    let stored = cursor.stored();
    if !tracked.is_empty() && !stored.is_empty() {
        tracked.push(stored);
        let name = plan
            .steps
            .get(source)
            .map_or("the source", |s| s.name.as_str());
        names.push(format!("{name} (stored offsets)"));
    }
    Ok((resume_points(&cursor.partitions(), &tracked), names))
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
        let r = resume_points(&parts, &[o(&[(0, 20), (1, 7)]), o(&[(0, 10), (1, 7)])]);
        assert_eq!(r.starts, o(&[(0, 10), (1, 7)]));
        assert_eq!(r.replay, o(&[(0, 20)]));
        assert!(r.floors.is_empty());
        // While it replays, the other partitions read nothing.
        assert_eq!(caps(&parts, &r.replay, None), o(&[(0, 20), (1, 0), (2, 0)]));
        // Then the --once targets.
        let t = o(&[(0, 90)]);
        assert_eq!(caps(&parts, &o(&[]), Some(&t)), t);
        // One load never committed partition 1: no later than the other's offset, up to it.
        let r = resume_points(&parts, &[o(&[(0, 5), (1, 9)]), o(&[(0, 5)])]);
        assert_eq!(r.starts, o(&[(0, 5)]));
        assert_eq!(r.replay, o(&[(1, 9)]));
        assert_eq!(r.floors, o(&[(1, 9)]));
        // No load keeps offsets: the source decides everything.
        assert_eq!(resume_points(&parts, &[]), Resume::default());
    }
}
