//! The Kafka extract in a stream (`StepSetup::stream`): where each partition resumes (the
//! sinks' committed offsets through the cursor, else the stored offsets, else `start`), what a
//! partition that lost those records does (`on_offset_out_of_range`), and how far one
//! micro-batch reads: every partition's lag up to `max_records` / `max_bytes`, shared by lag,
//! and never past a replay's cap.

use pipeline_base::StepError;
use pipeline_data::stream::{OutOfRange, PartitionRange, StreamCursor};

/// A partition's place when a micro-batch opens.
pub(super) struct Place {
    pub topic: String,
    pub partition: i32,
    pub latest: i64,
    pub start: i64,
}

/// Records read by the first micro-batch, before the mean record size is known.
const FIRST_BUDGET: u64 = 1000;

/// Checks a resume offset against what the partition keeps.
pub(super) fn resume_at(
    cursor: &StreamCursor,
    step: &str,
    at: &str,
    offset: i64,
    earliest: i64,
    latest: i64,
) -> Result<i64, StepError> {
    if (earliest..=latest).contains(&offset) {
        return Ok(offset);
    }
    if offset > latest {
        // The loads are ahead of the log: the topic was recreated (or its records deleted to
        // the end). Going on would skip, or mistake new records for committed ones.
        return Err(StepError::user(format!(
            "step \"{step}\": the stream committed {at} up to offset {offset}, but the partition ends at {latest}"
        ))
        .with_hint("the topic was recreated: give the stream a new \"streaming\": {\"id\"} (it starts afresh at \"start\"), or delete its offsets from the sinks"));
    }
    match cursor.limits().on_out_of_range {
        OutOfRange::Earliest => {
            tracing::warn!(step, "{at}: offset {offset} is no longer kept (the partition holds {earliest} to {latest}); resuming at the earliest, {earliest}, as \"on_offset_out_of_range\" says");
            Ok(earliest)
        }
        OutOfRange::Latest => {
            tracing::warn!(step, "{at}: offset {offset} is no longer kept (the partition holds {earliest} to {latest}); resuming at the end, {latest}, as \"on_offset_out_of_range\" says");
            Ok(latest)
        }
        OutOfRange::Fail => Err(StepError::user(format!(
            "step \"{step}\": the stream should resume {at} at offset {offset}, but the partition keeps {earliest} to {latest}"
        ))
        .with_hint("records were deleted by retention (or the topic was recreated): set \"streaming\": {\"on_offset_out_of_range\": \"earliest\"} (or \"latest\") to go on without them")),
    }
}

/// The micro-batch's ranges: each partition from its start, the records shared out by lag so
/// that the total stays within the cursor's limits (`record_bytes`: the mean size seen so far).
pub(super) fn ranges(
    cursor: &StreamCursor,
    places: &[Place],
    record_bytes: Option<u64>,
) -> Vec<PartitionRange> {
    let limits = cursor.limits();
    let by_bytes = match record_bytes {
        Some(size) => limits
            .max_bytes
            .checked_div(size.max(1))
            .unwrap_or(u64::MAX),
        None => FIRST_BUDGET,
    };
    let budget = limits.max_records.min(by_bytes).max(1);
    if cursor.is_exact() {
        // A retry: the failed attempt's ranges, whatever the budget says now.
        return places
            .iter()
            .map(|p| PartitionRange {
                topic: p.topic.clone(),
                partition: p.partition,
                start: p.start,
                end: cursor
                    .cap_of(&p.topic, p.partition)
                    .unwrap_or(p.start)
                    .clamp(p.start, p.latest.max(p.start)),
                high_watermark: p.latest,
            })
            .collect();
    }
    let lag = |p: &Place| {
        let cap = cursor
            .cap_of(&p.topic, p.partition)
            .unwrap_or(p.latest)
            .min(p.latest);
        u64::try_from(cap.saturating_sub(p.start)).unwrap_or(0)
    };
    let total: u64 = places.iter().map(lag).fold(0, u64::saturating_add);
    places
        .iter()
        .map(|p| {
            let own = lag(p);
            let share = if total <= budget {
                own
            } else {
                // This partition's part of the budget, at least one record when it has any.
                let part = u128::from(budget)
                    .saturating_mul(u128::from(own))
                    .checked_div(u128::from(total))
                    .unwrap_or(0);
                u64::try_from(part).unwrap_or(own).clamp(own.min(1), own)
            };
            PartitionRange {
                topic: p.topic.clone(),
                partition: p.partition,
                start: p.start,
                end: p
                    .start
                    .saturating_add(i64::try_from(share).unwrap_or(i64::MAX)),
                high_watermark: p.latest,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline_data::stream::{StreamLimits, StreamOffsets};

    fn cursor(max_records: u64, max_bytes: u64, on: OutOfRange) -> StreamCursor {
        StreamCursor::new(
            "s",
            StreamLimits {
                max_records,
                max_bytes,
                on_out_of_range: on,
            },
        )
    }

    fn place(partition: i32, start: i64, latest: i64) -> Place {
        Place {
            topic: "t".into(),
            partition,
            latest,
            start,
        }
    }

    #[test]
    fn a_micro_batch_takes_everything_within_its_limits() {
        let c = cursor(1000, 1 << 30, OutOfRange::Fail);
        let r = ranges(&c, &[place(0, 10, 20), place(1, 5, 5)], Some(100));
        assert_eq!((r[0].start, r[0].end, r[0].high_watermark), (10, 20, 20));
        assert!(r[1].is_empty());
    }

    #[test]
    fn a_stream_behind_shares_the_budget_by_lag() {
        let c = cursor(100, 1 << 30, OutOfRange::Fail);
        let r = ranges(
            &c,
            &[place(0, 0, 300), place(1, 0, 100), place(2, 0, 1)],
            Some(10),
        );
        let sizes: Vec<i64> = r.iter().map(|r| r.end - r.start).collect();
        assert_eq!(sizes, vec![74, 24, 1]);
        // The byte limit bounds the records by their mean size.
        let c = cursor(1000, 500, OutOfRange::Fail);
        let r = ranges(&c, &[place(0, 0, 300)], Some(10));
        assert_eq!(r[0].end, 50);
        // Before any record was read, the first micro-batch stays small.
        let c = cursor(1_000_000, 1 << 30, OutOfRange::Fail);
        let r = ranges(&c, &[place(0, 0, 1_000_000)], None);
        assert_eq!(r[0].end, 1000);
    }

    #[test]
    fn a_replay_stops_at_its_cap() {
        let c = cursor(1000, 1 << 30, OutOfRange::Fail);
        let caps: StreamOffsets = [(("t".to_string(), 0), 15)].into_iter().collect();
        c.begin(StreamOffsets::new(), caps);
        let r = ranges(&c, &[place(0, 10, 20)], Some(1));
        assert_eq!(r[0].end, 15);
        // A retry reads exactly the failed attempt's range, even past today's budget.
        let c = cursor(2, 1 << 30, OutOfRange::Fail);
        let ends: StreamOffsets = [(("t".to_string(), 0), 18), (("t".to_string(), 1), 4)]
            .into_iter()
            .collect();
        c.begin_exact(StreamOffsets::new(), ends);
        let r = ranges(
            &c,
            &[place(0, 10, 20), place(1, 4, 9), place(2, 3, 7)],
            Some(1),
        );
        let got: Vec<(i64, i64)> = r.iter().map(|r| (r.start, r.end)).collect();
        assert_eq!(got, vec![(10, 18), (4, 4), (3, 3)]);
    }

    #[test]
    fn an_offset_no_longer_kept_fails_or_moves_as_asked() {
        let err = resume_at(
            &cursor(1, 1, OutOfRange::Fail),
            "read",
            "partition 0",
            3,
            10,
            20,
        )
        .unwrap_err();
        assert!(
            err.message().contains("offset 3") && err.message().contains("10 to 20"),
            "{err}"
        );
        assert_eq!(
            resume_at(&cursor(1, 1, OutOfRange::Earliest), "r", "p", 3, 10, 20).unwrap(),
            10
        );
        assert_eq!(
            resume_at(&cursor(1, 1, OutOfRange::Latest), "r", "p", 3, 10, 20).unwrap(),
            20
        );
        assert_eq!(
            resume_at(&cursor(1, 1, OutOfRange::Fail), "r", "p", 12, 10, 20).unwrap(),
            12
        );
    }
}
