//! Where an S3 step reads or writes: `s3://bucket/key-or-prefix`, a `file://` URL or a local
//! path (relative to the pipeline file; no credentials needed), turned into an object store and
//! a key prefix.

use super::store;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use pipeline_base::StepError;
use pipeline_data::StepSetup;
use std::sync::Arc;

/// An object store and a location in it.
pub(crate) struct Location {
    pub store: Arc<dyn ObjectStore>,
    /// `s3://bucket` or `file://` (for messages and keys shown to users).
    pub root: String,
    /// The key or prefix inside the store (no leading slash).
    pub key: Path,
    /// Whether the path ends with `/` (a dataset directory, never a single object).
    pub is_dir: bool,
}

impl Location {
    /// The path as a user would write it.
    pub fn display(&self, key: &Path) -> String {
        if self.root.starts_with("file://") {
            format!("/{key}")
        } else {
            format!("{}/{key}", self.root)
        }
    }
}

/// Resolves a step's `path` option.
pub(crate) fn locate(setup: &StepSetup, path: &str) -> Result<Location, StepError> {
    let is_dir = path.ends_with('/');
    if let Some(rest) = path.strip_prefix("s3://") {
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StepError::user(format!("\"{path}\" names no bucket"))
                .with_hint("write s3://BUCKET/KEY"));
        }
        let conn = setup.connection_setup().map_err(|_| {
            StepError::user(format!(
                "step \"{}\": reading or writing {path} needs an s3 connection for its credentials",
                setup.step
            ))
            .with_hint("add \"connection\": \"NAME\" naming a connection with \"system\": \"s3\"")
        })?;
        let s3 = store(&conn, bucket)?;
        return Ok(Location {
            store: Arc::new(s3),
            root: format!("s3://{bucket}"),
            key: Path::from(key.trim_end_matches('/')),
            is_dir,
        });
    }
    if path.contains("://") && !path.starts_with("file://") {
        return Err(StepError::user(format!(
            "\"{path}\": only s3:// and file:// URLs (or local paths) are supported"
        )));
    }
    let local = path.strip_prefix("file://").unwrap_or(path);
    let absolute = setup.resolve_path(local);
    let absolute = std::path::absolute(&absolute).unwrap_or(absolute);
    let key = Path::from_absolute_path(&absolute)
        .map_err(|e| StepError::user(format!("invalid local path {}: {e}", absolute.display())))?;
    Ok(Location {
        store: Arc::new(LocalFileSystem::new().with_automatic_cleanup(true)),
        root: "file://".into(),
        key,
        is_dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> StepSetup {
        StepSetup::bare("p", "files", std::env::temp_dir())
    }

    #[test]
    fn paths_are_checked_before_any_request() {
        let err = |p: &str| {
            locate(&setup(), p)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(err("s3:///key").contains("names no bucket"));
        assert!(err("s3://lake/key").contains("needs an s3 connection"));
        assert!(err("gs://lake/key").contains("only s3:// and file://"));
        let local = locate(&setup(), "out/files/").unwrap();
        assert!(local.is_dir && local.root == "file://");
        assert!(local.display(&local.key).ends_with("out/files"));
        let url = locate(&setup(), "file:///tmp/x.parquet").unwrap();
        assert!(!url.is_dir);
    }
}
