//! The `s3` load in a stream: exactly-once files without a transaction. Each micro-batch this
//! load commits gets the next number (its epoch), and every file of it a name fixed by the
//! stream, the step, the epoch and the micro-batch's offset ranges
//! (`part-STREAM.STEP.EPOCH.RANGES.00001.parquet`; the parts never hold a `.`). The commit point is a manifest written last,
//! `PREFIX/_pipectl/stream/STREAM.STEP/EPOCH.json` (only if absent), naming the epoch's files
//! and the next offset per partition; the latest manifest is where the load stands when a
//! stream starts.
//!
//! A micro-batch interrupted before its manifest (a crash, a failed commit) may have left files
//! of its epoch; the next commit of that epoch (in the next process, or the retry) first deletes
//! the files of the epoch it does not write itself. A replay of the same ranges writes the same
//! names and replaces them; a micro-batch with other ranges replaces them too, by deleting
//! them. Either way the prefix ends up holding each event once. A second process writing the
//! same stream after the first finds the manifest of its epoch written and stops before
//! publishing anything (two running at the same moment can still disturb each other's files:
//! S3 has no transaction; the other sinks and the manifest stop one of them at its commit).
//!
//! A manifest write whose answer is lost is read back: the manifest carries the attempt's token,
//! so a write that landed counts as committed, and files are never deleted while it is unknown
//! whether their manifest landed (the next commit of that epoch replaces them).

use super::{ObjectSink, key_safe};
use crate::s3::store_error;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use pipeline_base::StepError;
use pipeline_data::stream::{StreamCursor, StreamOffsets, StreamProgress};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;

/// Manifests kept per stream and step: older ones are deleted as new ones are written (the
/// latest is all a restart reads).
const MANIFESTS_KEPT: u64 = 100;

/// Where a stream's `s3` load stands: its last committed epoch and the offsets it holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Known {
    epoch: u64,
    offsets: StreamOffsets,
    /// Files of an interrupted attempt at the next epoch may be under the prefix.
    dirty: bool,
}

/// The stream side of an `s3` load.
pub(super) struct StreamState {
    cursor: Arc<StreamCursor>,
    known: Known,
    /// No commit of this process precedes this micro-batch: files of an interrupted one may
    /// be under the prefix.
    recovering: bool,
    /// `PREFIX/_pipectl/stream/STREAM.STEP`.
    manifests: Path,
}

/// One partition's next offset in a manifest.
#[derive(Debug, Serialize, Deserialize)]
struct Offset {
    topic: String,
    partition: i32,
    next_offset: i64,
}

/// The commit record of one micro-batch.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    version: u32,
    stream: String,
    step: String,
    epoch: u64,
    offsets: Vec<Offset>,
    rows: u64,
    format: String,
    files: Vec<String>,
    /// The attempt that wrote it (a lost answer is recognised by it).
    attempt: String,
}

/// A token for one commit attempt: process, time and a counter.
fn attempt_token() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}-{nanos}-{n}", std::process::id())
}

fn kept_key(step: &str) -> String {
    format!("s3:{step}")
}

fn manifest_name(epoch: u64) -> String {
    format!("{epoch:020}.json")
}

/// A short stable hash of a micro-batch's ranges (FNV-1a), for its file names.
fn ranges_hash(cursor: &StreamCursor) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for r in cursor.ranges() {
        let text = format!("{}/{}/{}/{};", r.topic, r.partition, r.start, r.end);
        for b in text.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    (h ^ (h >> 32)) as u32
}

impl ObjectSink {
    /// `part-STREAM.STEP.EPOCH.`: the start of the names of one epoch's files.
    fn epoch_stem(&self, cursor: &StreamCursor, epoch: u64) -> String {
        format!(
            "part-{}.{}.{epoch:010}.",
            key_safe(cursor.app()),
            key_safe(&self.step)
        )
    }

    /// Makes this sink a stream's: refuses what cannot stream, finds where the load stands
    /// (kept from the last micro-batch, else the latest manifest) and names the files.
    pub(super) async fn attach_stream(
        &mut self,
        cursor: Arc<StreamCursor>,
    ) -> Result<(), StepError> {
        if self.single.is_some() {
            return Err(StepError::user(format!(
                "step \"{}\": in a stream every micro-batch would replace the single object {}",
                self.step, self.options.path
            ))
            .with_hint("end the path with \"/\" so that the micro-batches are files of a dataset directory"));
        }
        if self.options.mode == super::ObjectWriteMode::Overwrite {
            return Err(StepError::user(format!(
                "step \"{}\": \"mode\": \"overwrite\" would replace the dataset with every micro-batch of the stream",
                self.step
            ))
            .with_hint("use \"append\" in a stream"));
        }
        let manifests = self
            .dir
            .clone()
            .join("_pipectl")
            .join("stream")
            .join(format!(
                "{}.{}",
                key_safe(cursor.app()),
                key_safe(&self.step)
            ));
        let (known, recovering) = match cursor.take_kept::<Known>(&kept_key(&self.step)) {
            Some(k) => {
                let dirty = k.dirty;
                (k, dirty)
            }
            None => (self.latest_manifest(&cursor, &manifests).await?, true),
        };
        if !cursor.is_discovering() {
            match cursor.progress(&known.offsets) {
                Ok(StreamProgress::Committed) => {
                    tracing::info!(step = %self.step, to = %self.loc.display(&self.dir), "this micro-batch is already in the dataset (committed before a restart); not writing it again");
                    self.already = true;
                }
                Ok(StreamProgress::Behind) => {}
                Err(why) => return Err(self.conflict(&cursor, &why)),
            }
        }
        let epoch = known.epoch.saturating_add(1);
        self.stem = format!(
            "{}{:08x}.",
            self.epoch_stem(&cursor, epoch),
            ranges_hash(&cursor)
        );
        self.stream = Some(StreamState {
            cursor,
            known,
            recovering,
            manifests,
        });
        Ok(())
    }

    fn conflict(&self, cursor: &StreamCursor, why: &str) -> StepError {
        StepError::external(format!(
            "step \"{}\": stream \"{}\": {why}; another stream with the same id writes {}",
            self.step,
            cursor.app(),
            self.loc.display(&self.dir)
        ))
        .with_hint("stop the other stream (each stream needs its own \"streaming\": {\"id\"}); nothing of this micro-batch was committed")
    }

    /// The latest manifest's epoch and offsets (epoch 0 and none when the load never committed).
    async fn latest_manifest(
        &mut self,
        cursor: &StreamCursor,
        manifests: &Path,
    ) -> Result<Known, StepError> {
        let store = self.loc.store.clone();
        let listed: Vec<_> = store
            .list(Some(manifests))
            .try_collect()
            .await
            .map_err(|e| {
                store_error(
                    e,
                    &format!(
                        "step \"{}\": listing {}",
                        self.step,
                        self.loc.display(manifests)
                    ),
                )
            })?;
        let Some(latest) = listed
            .into_iter()
            .map(|m| m.location)
            .filter(|p| p.filename().is_some_and(|f| f.ends_with(".json")))
            .max_by(|a, b| a.filename().cmp(&b.filename()))
        else {
            return Ok(Known::default());
        };
        let shown = self.loc.display(&latest);
        let reading = |e| store_error(e, &format!("step \"{}\": reading {shown}", self.step));
        let bytes = store
            .get(&latest)
            .await
            .map_err(reading)?
            .bytes()
            .await
            .map_err(reading)?;
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            StepError::user(format!(
                "step \"{}\": {shown} is not a stream manifest of pipectl: {e}",
                self.step
            ))
            .with_hint("restore it from the bucket's versions, or give the stream a new \"streaming\": {\"id\"} (it then starts again from the extract's \"start\")")
        })?;
        if m.version != 1 || m.stream != cursor.app() || m.step != self.step {
            return Err(StepError::user(format!(
                "step \"{}\": {shown} is version {} of stream \"{}\" step \"{}\", not a manifest this pipectl writes for this stream and step",
                self.step, m.version, m.stream, m.step
            )));
        }
        Ok(Known {
            epoch: m.epoch,
            offsets: m
                .offsets
                .into_iter()
                .map(|o| ((o.topic, o.partition), o.next_offset))
                .collect(),
            dirty: true,
        })
    }

    /// The offsets this load committed (for the stream's start).
    pub(super) fn stream_offsets_known(&self) -> Option<StreamOffsets> {
        self.stream.as_ref().map(|s| s.known.offsets.clone())
    }

    /// Deletes the files an interrupted attempt at `epoch` left (any name of the epoch that
    /// this attempt does not write).
    async fn delete_leftovers(
        &mut self,
        cursor: &StreamCursor,
        epoch: u64,
    ) -> Result<(), StepError> {
        let stem = self.epoch_stem(cursor, epoch);
        let ours: HashSet<&Path> = self.staged.iter().map(|s| &s.published).collect();
        let leftovers: Vec<Path> = super::existing_files(
            self.loc.store.clone(),
            &self.dir,
            self.loc.display(&self.dir),
        )
        .await?
        .into_iter()
        .filter(|p| p.filename().is_some_and(|f| f.starts_with(&stem)))
        .filter(|p| !ours.contains(p))
        .collect();
        if leftovers.is_empty() {
            return Ok(());
        }
        tracing::info!(step = %self.step, files = leftovers.len(), epoch, "deleting the files of a micro-batch that did not commit");
        super::delete_all(self.loc.store.clone(), leftovers, self.step.clone())
            .await
            .map_err(|(failed, e)| {
                store_error(
                    e,
                    &format!(
                        "step \"{}\": deleting {failed} files of a micro-batch that did not commit",
                        self.step
                    ),
                )
            })
    }

    /// Commits a micro-batch: leftovers of its epoch deleted, its files published, then its
    /// manifest written only if absent.
    pub(super) async fn commit_stream(&mut self) -> Result<(), StepError> {
        let Some(state) = self.stream.take() else {
            return Err(StepError::internal("not a stream"));
        };
        let result = self.commit_epoch(&state).await;
        match result {
            Ok(known) => {
                state.cursor.keep(&kept_key(&self.step), known);
                Ok(())
            }
            Err(e) => {
                self.stream = Some(state);
                Err(e)
            }
        }
    }

    async fn commit_epoch(&mut self, state: &StreamState) -> Result<Known, StepError> {
        let cursor = &state.cursor;
        if self.already {
            return Ok(Known {
                dirty: state.recovering,
                ..state.known.clone()
            });
        }
        let mut offsets = state.known.offsets.clone();
        for r in cursor.ranges().iter().filter(|r| r.end > 0) {
            offsets.insert((r.topic.clone(), r.partition), r.end);
        }
        if offsets == state.known.offsets && self.staged.is_empty() {
            // An idle micro-batch: nothing to record.
            return Ok(Known {
                dirty: state.recovering,
                ..state.known.clone()
            });
        }
        let epoch = state.known.epoch.saturating_add(1);
        let manifest = state.manifests.clone().join(manifest_name(epoch));
        let shown = self.loc.display(&manifest);
        let store: Arc<dyn ObjectStore> = self.loc.store.clone();
        // Another process committed this epoch: stop before publishing anything.
        match store.head(&manifest).await {
            Ok(_) => {
                return Err(self.conflict(
                    cursor,
                    &format!("micro-batch {epoch} was committed meanwhile ({shown})"),
                ));
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                return Err(store_error(
                    e,
                    &format!("step \"{}\": looking for {shown}", self.step),
                ));
            }
        }
        if state.recovering {
            self.delete_leftovers(cursor, epoch).await?;
        }
        self.publish_staged().await?;
        let mut files: Vec<String> = self.completed.iter().map(|p| self.loc.display(p)).collect();
        files.sort();
        let record = Manifest {
            version: 1,
            stream: cursor.app().to_string(),
            step: self.step.clone(),
            epoch,
            offsets: offsets
                .iter()
                .map(|((topic, partition), next)| Offset {
                    topic: topic.clone(),
                    partition: *partition,
                    next_offset: *next,
                })
                .collect(),
            rows: self.rows,
            format: self.format.extension().to_string(),
            files,
            attempt: attempt_token(),
        };
        let attempt = record.attempt.clone();
        let bytes = serde_json::to_vec_pretty(&record)
            .map_err(|e| StepError::internal(format!("writing a manifest: {e}")))?;
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        if let Err(e) = store.put_opts(&manifest, bytes.into(), create).await {
            // The write may have landed with its answer lost (or the client's own retry found
            // it): the manifest says whose it is.
            match self.read_manifest(&manifest).await {
                Some(m) if m.attempt == attempt => {}
                Some(m) => {
                    // Lost the race: files the winner named too are its (same ranges, same
                    // names), and stay; the rest are deleted by `abort`.
                    let names: HashSet<String> = m.files.into_iter().collect();
                    let loc = &self.loc;
                    self.completed.retain(|p| !names.contains(&loc.display(p)));
                    return Err(self.conflict(
                        cursor,
                        &format!("micro-batch {epoch} was committed meanwhile ({shown})"),
                    ));
                }
                None => {
                    // Not committed as far as can be seen; the files stay (their manifest may
                    // still land) and the next commit of this epoch replaces them.
                    self.completed.clear();
                    return Err(match e {
                        object_store::Error::AlreadyExists { .. } => self.conflict(
                            cursor,
                            &format!("micro-batch {epoch} was committed meanwhile ({shown})"),
                        ),
                        other => {
                            store_error(other, &format!("step \"{}\": writing {shown}", self.step))
                        }
                    });
                }
            }
        }
        tracing::debug!(step = %self.step, epoch, files = self.completed.len(), rows = self.rows, bytes = self.bytes, to = %self.loc.display(&self.dir), "published");
        self.completed.clear();
        if let Some(old) = epoch.checked_sub(MANIFESTS_KEPT).filter(|e| *e > 0) {
            let path = state.manifests.clone().join(manifest_name(old));
            if let Err(e) = store.delete(&path).await {
                tracing::debug!(step = %self.step, path = %path, error = %e, "could not delete an old manifest");
            }
        }
        Ok(Known {
            epoch,
            offsets,
            dirty: false,
        })
    }

    /// The manifest at `path` (none when it is absent or cannot be read).
    async fn read_manifest(&mut self, path: &Path) -> Option<Manifest> {
        let got = self.loc.store.get(path).await.ok()?;
        let bytes = got.bytes().await.ok()?;
        serde_json::from_slice::<Manifest>(&bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline_data::stream::{OutOfRange, PartitionRange, StreamLimits};

    fn cursor(end: i64) -> StreamCursor {
        let c = StreamCursor::new(
            "s",
            StreamLimits {
                max_records: 10,
                max_bytes: 10,
                on_out_of_range: OutOfRange::Fail,
            },
        );
        c.set_ranges(vec![PartitionRange {
            topic: "t".into(),
            partition: 0,
            start: 0,
            end,
            high_watermark: end,
        }]);
        c
    }

    #[test]
    fn the_same_ranges_give_the_same_names_and_others_differ() {
        assert_eq!(ranges_hash(&cursor(5)), ranges_hash(&cursor(5)));
        assert_ne!(ranges_hash(&cursor(5)), ranges_hash(&cursor(6)));
        assert_eq!(manifest_name(42), "00000000000000000042.json");
    }
}
