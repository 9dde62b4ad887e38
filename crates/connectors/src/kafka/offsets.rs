//! Stored offsets of a Kafka extract: the next offset to read per topic and partition, as a
//! small JSON object (`{"version": 1, "topics": {"orders": {"0": 1200, "1": 1187}}}`). It is
//! read when the step opens and written only after every load of the run has committed:
//! - a local file: a temporary file beside it renamed over the old one (atomic on POSIX), so a
//!   reader sees the old offsets or the new ones, never a torn file;
//! - an S3 object (`s3://bucket/key` with an S3 connection): a conditional put on the version
//!   read when the step opened (If-Match, or If-None-Match when there was none), so offsets
//!   another run committed in between are never moved back: that save fails and says so.

use crate::s3;
use object_store::aws::AmazonS3;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use pipeline_base::StepError;
use pipeline_data::ConnectionSetup;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

/// Topic → partition → the next offset to read.
pub(crate) type Offsets = BTreeMap<String, BTreeMap<i32, i64>>;

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    topics: Offsets,
}

/// Where a step keeps its offsets.
pub(crate) enum OffsetStore {
    Local(LocalOffsets),
    S3(S3Offsets),
}

impl OffsetStore {
    /// The store for `location`: `s3://bucket/key` through `connection`, else a local path.
    pub fn open(
        location: &str,
        connection: Option<ConnectionSetup>,
        base: impl Fn(&str) -> PathBuf,
    ) -> Result<Self, StepError> {
        let Some(rest) = location.strip_prefix("s3://") else {
            return Ok(OffsetStore::Local(LocalOffsets::new(base(location))));
        };
        let Some(conn) = connection else {
            return Err(StepError::user(format!(
                "the offsets store {location} needs an S3 connection"
            ))
            .with_hint("add \"connection\": \"NAME\" (an s3 connection) beside \"store\""));
        };
        if conn.config.system != "s3" {
            return Err(StepError::user(format!(
                "the offsets store {location} needs an s3 connection, and \"{}\" is a {} connection",
                conn.name, conn.config.system
            )));
        }
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() || key.is_empty() || key.ends_with('/') {
            return Err(StepError::user(format!(
                "the offsets store {location} is not s3://BUCKET/KEY"
            )));
        }
        Ok(OffsetStore::S3(S3Offsets {
            store: s3::store(&conn, bucket)?,
            url: location.to_string(),
            key: ObjectPath::from(key),
            seen: Mutex::new(None),
        }))
    }

    /// Where the offsets are, for messages.
    pub fn describe(&self) -> String {
        match self {
            OffsetStore::Local(l) => l.path.display().to_string(),
            OffsetStore::S3(s) => s.url.clone(),
        }
    }

    /// The stored offsets; none when nothing is stored yet.
    pub async fn load(&self) -> Result<Offsets, StepError> {
        match self {
            OffsetStore::Local(l) => l.load(),
            OffsetStore::S3(s) => s.load().await,
        }
    }

    /// Merges `next` into the stored offsets (other topics and partitions are kept) and writes
    /// them atomically.
    pub async fn save(&self, next: &Offsets) -> Result<(), StepError> {
        match self {
            OffsetStore::Local(l) => l.save(next),
            OffsetStore::S3(s) => s.save(next).await,
        }
    }
}

fn parse(text: &str, at: &str) -> Result<Offsets, StepError> {
    let file: File = serde_json::from_str(text).map_err(|e| {
        StepError::user(format!(
            "the stored offsets {at} are not an offsets file: {e}"
        ))
        .with_hint("restore the file, or delete it to start from the step's \"start\"")
    })?;
    if file.version != 1 {
        return Err(StepError::user(format!(
            "the stored offsets {at} have version {}, which this pipectl does not read",
            file.version
        )));
    }
    Ok(file.topics)
}

/// `next` merged into `all`, and its JSON text.
fn merged(mut all: Offsets, next: &Offsets) -> Result<(Offsets, String), StepError> {
    for (topic, partitions) in next {
        all.entry(topic.clone())
            .or_default()
            .extend(partitions.iter().map(|(p, o)| (*p, *o)));
    }
    let file = File {
        version: 1,
        topics: all,
    };
    let text = serde_json::to_string_pretty(&file)
        .map_err(|e| StepError::internal(format!("serializing offsets: {e}")))?;
    Ok((file.topics, text))
}

/// Offsets in a local file.
pub(crate) struct LocalOffsets {
    path: PathBuf,
}

impl LocalOffsets {
    pub fn new(path: PathBuf) -> Self {
        LocalOffsets { path }
    }

    fn load(&self) -> Result<Offsets, StepError> {
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
        parse(&text, &self.path.display().to_string())
    }

    fn save(&self, next: &Offsets) -> Result<(), StepError> {
        let (_, text) = merged(self.load()?, next)?;
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

/// Offsets in an S3 object, saved on the condition that it is still what the step read.
pub(crate) struct S3Offsets {
    store: AmazonS3,
    url: String,
    key: ObjectPath,
    /// What the step read when it opened: the offsets and the object's version (`None`: no
    /// object yet). Unset until the first load.
    seen: Mutex<Option<(Offsets, Option<UpdateVersion>)>>,
}

impl S3Offsets {
    async fn load(&self) -> Result<Offsets, StepError> {
        let what = format!("reading the stored offsets {}", self.url);
        let (offsets, version) = match self.store.get(&self.key).await {
            Ok(got) => {
                let version = UpdateVersion {
                    e_tag: got.meta.e_tag.clone(),
                    version: got.meta.version.clone(),
                };
                let bytes = got.bytes().await.map_err(|e| s3::store_error(e, &what))?;
                let text = String::from_utf8_lossy(&bytes);
                (parse(&text, &self.url)?, Some(version))
            }
            Err(object_store::Error::NotFound { .. }) => (Offsets::new(), None),
            Err(e) => return Err(s3::store_error(e, &what)),
        };
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some((offsets.clone(), version));
        }
        Ok(offsets)
    }

    async fn save(&self, next: &Offsets) -> Result<(), StepError> {
        let seen = self.seen.lock().ok().and_then(|s| s.clone());
        let (base, version) = match seen {
            Some(seen) => seen,
            None => {
                self.load().await?;
                self.seen
                    .lock()
                    .ok()
                    .and_then(|s| s.clone())
                    .ok_or_else(|| StepError::internal("the offsets were not read"))?
            }
        };
        let (all, text) = merged(base, next)?;
        let mode = match &version {
            Some(v) => PutMode::Update(v.clone()),
            None => PutMode::Create,
        };
        let put = self
            .store
            .put_opts(
                &self.key,
                PutPayload::from(text.into_bytes()),
                PutOptions::from(mode),
            )
            .await;
        match put {
            Ok(result) => {
                if let Ok(mut seen) = self.seen.lock() {
                    let version = UpdateVersion {
                        e_tag: result.e_tag,
                        version: result.version,
                    };
                    *seen = Some((all, Some(version)));
                }
                Ok(())
            }
            Err(object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. }) => {
                Err(StepError::external(format!(
                    "the stored offsets {} changed after this run read them (another run of the pipeline stored its offsets in between); they were left as that run wrote them",
                    self.url
                ))
                .with_hint("run one instance of a pipeline at a time; this run's loads committed, so the records it read after the other run's offsets may be loaded twice"))
            }
            Err(e) => Err(s3::store_error(e, &format!("writing the stored offsets {}", self.url))
                .with_hint("the loads committed; the next run reads these records again unless the offsets are stored")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn saves_merge_and_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let store = OffsetStore::Local(LocalOffsets::new(dir.path().join("sub/offsets.json")));
        assert!(store.load().await.unwrap().is_empty());
        let mut a = Offsets::new();
        a.entry("orders".into()).or_default().insert(0, 10);
        a.entry("orders".into()).or_default().insert(1, 20);
        store.save(&a).await.unwrap();
        let mut b = Offsets::new();
        b.entry("orders".into()).or_default().insert(1, 25);
        b.entry("refunds".into()).or_default().insert(0, 3);
        store.save(&b).await.unwrap();
        let got = store.load().await.unwrap();
        assert_eq!(got["orders"][&0], 10);
        assert_eq!(got["orders"][&1], 25);
        assert_eq!(got["refunds"][&0], 3);
        std::fs::write(dir.path().join("sub/offsets.json"), "{").unwrap();
        assert!(
            store
                .load()
                .await
                .unwrap_err()
                .message()
                .contains("not an offsets file")
        );
        std::fs::write(
            dir.path().join("sub/offsets.json"),
            r#"{"version": 2, "topics": {}}"#,
        )
        .unwrap();
        assert!(
            store
                .load()
                .await
                .unwrap_err()
                .message()
                .contains("version 2")
        );
        // A directory where the file should be: reading and writing fail with the path named.
        let dir_store = OffsetStore::Local(LocalOffsets::new(dir.path().to_path_buf()));
        let err = dir_store.load().await.unwrap_err();
        assert!(
            err.message().contains("reading the stored offsets"),
            "{err}"
        );
        // A save reads first: an unreadable store is never overwritten blindly.
        let blocked = OffsetStore::Local(LocalOffsets::new(
            dir.path().join("sub/offsets.json/inner.json"),
        ));
        let err = blocked.save(&a).await.unwrap_err();
        assert!(
            err.message().contains("reading the stored offsets"),
            "{err}"
        );
    }
}
