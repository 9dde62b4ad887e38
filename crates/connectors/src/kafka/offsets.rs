//! Stored offsets of a Kafka extract: the next offset to read per topic and partition, in a
//! small JSON file (`{"version": 1, "topics": {"orders": {"0": 1200, "1": 1187}}}`). The file is
//! read when the step opens and written only after every load of the run has committed, by
//! writing a temporary file beside it and renaming it over the old one (atomic on POSIX), so a
//! reader sees the old offsets or the new ones, never a torn file.

use pipeline_base::StepError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Topic → partition → the next offset to read.
pub(crate) type Offsets = BTreeMap<String, BTreeMap<i32, i64>>;

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    topics: Offsets,
}

/// Where a step keeps its offsets.
#[derive(Debug, Clone)]
pub(crate) struct OffsetStore {
    path: PathBuf,
}

impl OffsetStore {
    pub fn new(path: PathBuf) -> Self {
        OffsetStore { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored offsets; none when the file does not exist yet.
    pub fn load(&self) -> Result<Offsets, StepError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Offsets::new()),
            Err(e) => {
                return Err(StepError::external(format!(
                    "reading the stored offsets {}: {e}",
                    self.path.display()
                )));
            }
        };
        let file: File = serde_json::from_str(&text).map_err(|e| {
            StepError::user(format!(
                "the stored offsets {} are not an offsets file: {e}",
                self.path.display()
            ))
            .with_hint("restore the file, or delete it to start from the step's \"start\"")
        })?;
        if file.version != 1 {
            return Err(StepError::user(format!(
                "the stored offsets {} have version {}, which this pipectl does not read",
                self.path.display(),
                file.version
            )));
        }
        Ok(file.topics)
    }

    /// Merges `next` into the stored offsets (other topics and partitions are kept) and writes
    /// them atomically.
    pub fn save(&self, next: &Offsets) -> Result<(), StepError> {
        let mut all = self.load()?;
        for (topic, partitions) in next {
            all.entry(topic.clone())
                .or_default()
                .extend(partitions.iter().map(|(p, o)| (*p, *o)));
        }
        let text = serde_json::to_string_pretty(&File {
            version: 1,
            topics: all,
        })
        .map_err(|e| StepError::internal(format!("serializing offsets: {e}")))?;
        let fail = |e: std::io::Error| {
            StepError::external(format!(
                "writing the stored offsets {}: {e}",
                self.path.display()
            ))
            .with_hint("the loads committed; the next run reads these records again unless the offsets are stored")
        };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let tmp = self
            .path
            .with_extension(format!("tmp-{}", std::process::id()));
        let mut f = std::fs::File::create(&tmp).map_err(fail)?;
        f.write_all(text.as_bytes()).map_err(fail)?;
        f.sync_all().map_err(fail)?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            fail(e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_merge_and_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let store = OffsetStore::new(dir.path().join("sub/offsets.json"));
        assert!(store.load().unwrap().is_empty());
        let mut a = Offsets::new();
        a.entry("orders".into()).or_default().insert(0, 10);
        a.entry("orders".into()).or_default().insert(1, 20);
        store.save(&a).unwrap();
        let mut b = Offsets::new();
        b.entry("orders".into()).or_default().insert(1, 25);
        b.entry("refunds".into()).or_default().insert(0, 3);
        store.save(&b).unwrap();
        let got = store.load().unwrap();
        assert_eq!(got["orders"][&0], 10);
        assert_eq!(got["orders"][&1], 25);
        assert_eq!(got["refunds"][&0], 3);
        std::fs::write(store.path(), "{").unwrap();
        assert!(
            store
                .load()
                .unwrap_err()
                .message()
                .contains("not an offsets file")
        );
        std::fs::write(store.path(), r#"{"version": 2, "topics": {}}"#).unwrap();
        assert!(store.load().unwrap_err().message().contains("version 2"));
        // A directory where the file should be: reading and writing fail with the path named.
        let dir_store = OffsetStore::new(dir.path().to_path_buf());
        let err = dir_store.load().unwrap_err();
        assert!(
            err.message().contains("reading the stored offsets"),
            "{err}"
        );
        // A save reads first: an unreadable store is never overwritten blindly.
        let blocked = OffsetStore::new(dir.path().join("sub/offsets.json/inner.json"));
        let err = blocked.save(&a).unwrap_err();
        assert!(
            err.message().contains("reading the stored offsets"),
            "{err}"
        );
    }
}
