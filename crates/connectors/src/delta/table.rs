//! Opening a table (latest, at a version, or as of a timestamp) and reading what other writers
//! committed since a version, for the sink's conflict rules.

use super::{delta_error, store};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use deltalake::logstore::LogStore;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use pipeline_base::StepError;
use std::collections::HashMap;
use url::Url;

/// Which version of a table to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TableAt {
    Latest,
    Version(u64),
    /// The latest version committed at or before this time.
    Timestamp(DateTime<Utc>),
}

/// Parses a time-travel timestamp: RFC 3339, `YYYY-MM-DD HH:MM:SS` (UTC) or a date (midnight UTC).
pub(crate) fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let t = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(d) = NaiveDateTime::parse_from_str(t, f) {
            return Some(d.and_utc());
        }
    }
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
}

impl TableAt {
    pub(crate) fn from_options(
        version: Option<u64>,
        timestamp: Option<&str>,
    ) -> Result<Self, StepError> {
        match (version, timestamp) {
            (Some(v), None) => Ok(TableAt::Version(v)),
            (None, Some(t)) => parse_timestamp(t).map(TableAt::Timestamp).ok_or_else(|| {
                StepError::user(format!("\"timestamp\": cannot read \"{t}\" as a time"))
                    .with_hint("use RFC 3339 (2026-11-28T10:00:00Z) or a date (2026-11-28)")
            }),
            (None, None) => Ok(TableAt::Latest),
            (Some(_), Some(_)) => Err(StepError::user(
                "\"version\" and \"timestamp\" both given; a read is at one of them",
            )),
        }
    }
}

/// The table URL's location as shown to users.
fn shown(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_string()
}

/// A builder for the table with its storage options (S3 handlers registered first).
pub(crate) fn builder(
    url: &Url,
    storage: HashMap<String, String>,
) -> Result<DeltaTableBuilder, StepError> {
    store::register();
    Ok(DeltaTableBuilder::from_url(url.clone())
        .map_err(|e| delta_error(e, &format!("opening Delta table {}", shown(url))))?
        .with_storage_options(storage))
}

/// Loads the table at `at`. A location without a table is a user error naming it.
pub(crate) async fn open_table(
    url: Url,
    storage: HashMap<String, String>,
    at: TableAt,
) -> Result<DeltaTable, StepError> {
    let mut b = builder(&url, storage)?;
    match at {
        TableAt::Latest => {}
        TableAt::Version(v) => b = b.with_version(v),
        TableAt::Timestamp(t) => b = b.with_timestamp(t),
    }
    let what = match at {
        TableAt::Latest => String::new(),
        TableAt::Version(v) => format!(" at version {v}"),
        TableAt::Timestamp(t) => format!(" as of {}", t.to_rfc3339()),
    };
    b.load().await.map_err(|e| match e {
        DeltaTableError::NotATable(_) => StepError::user(format!(
            "{} is not a Delta table (no _delta_log there)",
            shown(&url)
        ))
        .with_hint("check the path; a load creates the table on its first run"),
        e => delta_error(e, &format!("loading Delta table {}{what}", shown(&url))),
    })
}

/// Loads the latest version, or `None` when there is no table at `url` yet.
pub(crate) async fn open_if_exists(
    url: &Url,
    storage: HashMap<String, String>,
) -> Result<Option<DeltaTable>, StepError> {
    // A local directory without a log is simply a table to create (asking deltalake would log
    // a misleading error).
    if url.scheme() == "file"
        && url
            .to_file_path()
            .map(|p| !p.join("_delta_log").exists())
            .unwrap_or(false)
    {
        return Ok(None);
    }
    // Likewise on an object store: no object under `_delta_log/` is no table (one LIST).
    if url.scheme() != "file" {
        use futures::TryStreamExt;
        let log = builder(url, storage.clone())?
            .build_storage()
            .map_err(|e| delta_error(e, &format!("opening {}", shown(url))))?;
        let store = log.object_store(None);
        let prefix = object_store::path::Path::from("_delta_log");
        let first = store
            .list(Some(&prefix))
            .try_next()
            .await
            .map_err(|e| crate::s3::store_error(e, &format!("listing {}", shown(url))))?;
        if first.is_none() {
            return Ok(None);
        }
    }
    match builder(url, storage)?.load().await {
        Ok(t) => Ok(Some(t)),
        Err(DeltaTableError::NotATable(_)) => Ok(None),
        Err(e) => Err(delta_error(
            e,
            &format!("loading Delta table {}", shown(url)),
        )),
    }
}

/// What one commit did to the table's data, read from its log entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CommitSummary {
    pub version: u64,
    /// The commit's operation (`WRITE`, `OPTIMIZE`, ...).
    pub operation: String,
    /// Files added with `dataChange: true`.
    pub data_adds: usize,
    /// Files removed with `dataChange: true` (an overwrite, delete or merge).
    pub data_removes: usize,
    /// Files removed, with or without a data change (a compaction removes files too).
    pub removes: usize,
    pub metadata_changed: bool,
}

/// Summarises one log entry (JSON lines of actions).
pub(crate) fn summarize(version: u64, entry: &[u8]) -> CommitSummary {
    let mut s = CommitSummary {
        version,
        ..Default::default()
    };
    for line in entry.split(|b| *b == b'\n') {
        let Ok(action) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        let change = |a: &serde_json::Value| {
            a.get("dataChange")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(true)
        };
        if let Some(a) = action.get("add") {
            s.data_adds = s.data_adds.saturating_add(usize::from(change(a)));
        } else if let Some(r) = action.get("remove") {
            s.data_removes = s.data_removes.saturating_add(usize::from(change(r)));
            s.removes = s.removes.saturating_add(1);
        } else if action.get("metaData").is_some() {
            s.metadata_changed = true;
        } else if let Some(op) = action
            .get("commitInfo")
            .and_then(|c| c.get("operation"))
            .and_then(serde_json::Value::as_str)
        {
            s.operation = op.to_string();
        }
    }
    s
}

/// The commits after `since` up to the latest, summarised.
pub(crate) async fn commits_since(
    log: &dyn LogStore,
    since: u64,
) -> Result<Vec<CommitSummary>, StepError> {
    let latest = log
        .get_latest_version(since)
        .await
        .map_err(|e| delta_error(e, "reading the table's latest version"))?;
    let mut out = Vec::new();
    let mut v = since.saturating_add(1);
    while v <= latest {
        if let Some(bytes) = log
            .read_commit_entry(v)
            .await
            .map_err(|e| delta_error(e, &format!("reading commit {v}")))?
        {
            out.push(summarize(v, &bytes));
        }
        v = v.saturating_add(1);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_three_shapes() {
        let want = parse_timestamp("2026-11-28T10:00:00Z").unwrap();
        assert_eq!(parse_timestamp("2026-11-28 10:00:00"), Some(want));
        assert_eq!(parse_timestamp("2026-11-28T11:00:00+01:00"), Some(want));
        assert_eq!(
            parse_timestamp("2026-11-28").unwrap().to_rfc3339(),
            "2026-11-28T00:00:00+00:00"
        );
        assert!(parse_timestamp("yesterday").is_none());
        assert!(TableAt::from_options(Some(1), Some("2026-11-28")).is_err());
        assert!(TableAt::from_options(None, Some("soon")).is_err());
        assert_eq!(TableAt::from_options(None, None).unwrap(), TableAt::Latest);
    }

    #[test]
    fn a_log_entry_is_summarised() {
        let entry =
            br#"{"commitInfo":{"operation":"WRITE","operationParameters":{"mode":"Overwrite"}}}
{"remove":{"path":"a.parquet","dataChange":true}}
{"remove":{"path":"b.parquet","dataChange":false}}
{"add":{"path":"c.parquet","dataChange":true}}
{"metaData":{"id":"x"}}
not json"#;
        let s = summarize(7, entry);
        assert_eq!(
            s,
            CommitSummary {
                version: 7,
                operation: "WRITE".into(),
                data_adds: 1,
                data_removes: 1,
                removes: 2,
                metadata_changed: true
            }
        );
    }
}
