//! The Delta load in a stream: what it keeps from one micro-batch to the next (the open table
//! and the offsets its `txn` actions hold), and the stream's id, epoch and offsets-only commits.

use super::{DeltaSink, DeltaWriteMode, Landing};
use deltalake::DeltaTable;
use pipeline_data::stream::{StreamCursor, StreamOffsets};

/// What a stream's Delta load keeps from one micro-batch to the next: the table at the version
/// it committed last (holding the commit's own snapshot, so the next micro-batch reads no log;
/// another writer's commit shows as a lost race and is checked then) and the offsets its `txn`
/// actions hold as of `version`.
pub(super) struct KeptTable {
    pub(super) table: DeltaTable,
    pub(super) version: u64,
    pub(super) offsets: StreamOffsets,
}

pub(super) fn kept_key(step: &str) -> String {
    format!("delta:{step}")
}

impl DeltaSink {
    /// In a stream, after committing `version`: keeps the table and the offsets it now holds
    /// for the next micro-batch.
    pub(super) fn remember(&mut self, version: u64) {
        let Landing::Stream(cursor, _) = &self.landing else {
            return;
        };
        let (Some(table), Some(mut offsets)) = (self.table.take(), self.known.take()) else {
            return;
        };
        for r in cursor.ranges().iter().filter(|r| r.end > 0) {
            offsets.insert((r.topic.clone(), r.partition), r.end);
        }
        cursor.keep(
            &kept_key(&self.step),
            KeptTable {
                table,
                version,
                offsets,
            },
        );
    }

    pub(super) fn stream_cursor(&self) -> Option<&StreamCursor> {
        match &self.landing {
            Landing::Stream(c, _) => Some(c),
            Landing::Run(_) => None,
        }
    }

    /// The stream's id (empty outside a stream).
    pub(super) fn stream_id(&self) -> String {
        match &self.landing {
            Landing::Stream(c, _) => c.app().to_string(),
            Landing::Run(_) => String::new(),
        }
    }

    /// A micro-batch's epoch: the sum of its end offsets (grows with every micro-batch).
    pub(super) fn epoch(&self) -> i64 {
        match &self.landing {
            Landing::Stream(c, _) => c.ranges().iter().fold(0i64, |a, r| a.saturating_add(r.end)),
            Landing::Run(_) => 0,
        }
    }

    /// In a stream, a micro-batch that read records but has no rows for this table: only its
    /// offsets are committed (to an existing table).
    pub(super) fn streaming_offsets_only(&self) -> bool {
        matches!(&self.landing, Landing::Stream(c, _) if c.ranges().iter().any(|r| !r.is_empty()))
            && self.table.is_some()
            && self.options.mode == DeltaWriteMode::Append
    }
}
