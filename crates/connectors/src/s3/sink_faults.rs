//! Error paths of the S3 sink against a faulty store: an in-memory object store whose calls fail
//! where a mockall mock says (with exact call counts); each case checks the error's class,
//! whether a retry is offered, that the message names the object, and what is left behind.

use super::S3LoadOptions;
use super::sink::open_sink;
use super::target::Location;
use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use pipeline_base::{ErrorClass, StepError};
use pipeline_data::polars::prelude::*;
use pipeline_data::{Sink, StepSetup};
use std::sync::Arc;

/// Which calls fail: a mockall mock answers, per call, the error to return (or none).
#[mockall::automock]
pub(super) trait Faults: Send + Sync {
    fn put(&self, path: &str) -> Option<object_store::Error>;
    /// After a put was stored: whether its answer is lost (the caller sees an error).
    fn put_lost(&self, path: &str) -> bool;
    fn head(&self, path: &str) -> Option<object_store::Error>;
    fn delete(&self, path: &str) -> Option<object_store::Error>;
    fn list(&self, prefix: &str) -> Option<object_store::Error>;
}

/// An in-memory store whose calls fail where the mock says.
pub(super) struct Faulty {
    pub(super) mem: InMemory,
    pub(super) faults: Arc<MockFaults>,
}

impl std::fmt::Display for Faulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a faulty in-memory store")
    }
}

impl std::fmt::Debug for Faulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Faulty")
    }
}

#[async_trait]
impl ObjectStore for Faulty {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if let Some(e) = self.faults.put(location.as_ref()) {
            return Err(e);
        }
        let stored = self.mem.put_opts(location, payload, opts).await?;
        if self.faults.put_lost(location.as_ref()) {
            return Err(generic("error sending request: connection reset by peer"));
        }
        Ok(stored)
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.mem.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if options.head
            && let Some(e) = self.faults.head(location.as_ref())
        {
            return Err(e);
        }
        self.mem.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        use futures::StreamExt;
        let faults = self.faults.clone();
        let denied: Vec<object_store::Result<Path>> =
            futures::executor::block_on(locations.collect::<Vec<_>>());
        let mut pass = Vec::new();
        let mut out = Vec::new();
        for p in denied {
            match p {
                Ok(p) => match faults.delete(p.as_ref()) {
                    Some(e) => out.push(Err(e)),
                    None => pass.push(Ok(p)),
                },
                Err(e) => out.push(Err(e)),
            }
        }
        let deleted = self.mem.delete_stream(futures::stream::iter(pass).boxed());
        futures::stream::iter(out).chain(deleted).boxed()
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        use futures::StreamExt;
        match self
            .faults
            .list(prefix.map(|p| p.as_ref()).unwrap_or_default())
        {
            Some(e) => futures::stream::once(async move { Err(e) }).boxed(),
            None => self.mem.list(prefix),
        }
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.mem.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.mem.copy_opts(from, to, options).await
    }
}

fn denied(path: &str) -> object_store::Error {
    object_store::Error::PermissionDenied {
        path: path.to_string(),
        source: "AccessDenied".into(),
    }
}

pub(super) fn generic(text: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "S3",
        source: text.to_string().into(),
    }
}

/// A mock where nothing fails.
pub(super) fn healthy() -> MockFaults {
    let mut m = MockFaults::new();
    m.expect_put().returning(|_| None);
    m.expect_put_lost().returning(|_| false);
    m.expect_head().returning(|_| None);
    m.expect_delete().returning(|_| None);
    m.expect_list().returning(|_| None);
    m
}

fn setup(run_id: &str, resumed: bool) -> StepSetup {
    StepSetup {
        run_id: run_id.into(),
        resumed,
        ..StepSetup::bare("p", "to_lake", std::env::temp_dir())
    }
}

fn options(mode: &str) -> S3LoadOptions {
    serde_json::from_value(serde_json::json!({"path": "s3://lake/orders/", "mode": mode})).unwrap()
}

/// A sink on `mem` (one shared in-memory bucket), failing where `faults` says.
async fn sink(
    mem: &InMemory,
    faults: MockFaults,
    mode: &str,
    resumed: bool,
) -> Result<Box<dyn Sink>, StepError> {
    Ok(Box::new(
        open_sink(options(mode), &setup("r1", resumed), location(mem, faults)).await?,
    ))
}

/// `s3://lake/orders/` on `mem`, failing where `faults` says.
pub(super) fn location(mem: &InMemory, faults: MockFaults) -> Location {
    Location {
        store: Arc::new(Faulty {
            mem: mem.clone(),
            faults: Arc::new(faults),
        }),
        root: "s3://lake".into(),
        key: Path::from("orders"),
        is_dir: true,
    }
}

/// Writes one small frame and commits (aborting on failure, as the executor does).
async fn load(mut s: Box<dyn Sink>) -> Result<(), StepError> {
    s.write(df!("id" => [1i64, 2, 3]).unwrap()).await?;
    s.prepare().await?;
    let done = s.commit().await.map(|_| ());
    if done.is_err() {
        s.abort().await;
    }
    done
}

pub(super) async fn keys(mem: &InMemory) -> Vec<String> {
    let listed: Vec<ObjectMeta> = futures::TryStreamExt::try_collect(mem.list(None))
        .await
        .unwrap();
    listed.into_iter().map(|m| m.location.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_overwrite_that_cannot_delete_the_old_files_fails_without_retry() {
    let mem = InMemory::new();
    load(sink(&mem, healthy(), "append", false).await.unwrap())
        .await
        .unwrap();
    let mut faults = healthy();
    faults.checkpoint();
    faults.expect_put().returning(|_| None);
    faults.expect_put_lost().returning(|_| false);
    faults.expect_head().returning(|_| None);
    faults.expect_list().returning(|_| None);
    // The old data file and the old run's marker: both refused, each asked once.
    faults
        .expect_delete()
        .times(2)
        .returning(|p| Some(denied(p)));
    let err = load(sink(&mem, faults, "overwrite", false).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::External);
    assert!(!err.retryable());
    assert!(
        err.message().contains("could not delete"),
        "{}",
        err.message()
    );
    assert!(err.hint().unwrap_or_default().contains("delete permission"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_connection_while_writing_the_marker_is_retryable_and_named() {
    let mem = InMemory::new();
    let mut faults = MockFaults::new();
    faults.expect_head().never();
    faults.expect_list().never();
    faults.expect_delete().returning(|_| None);
    faults
        .expect_put()
        .times(1)
        .returning(|_| Some(generic("error sending request: connection reset by peer")));
    let err = load(sink(&mem, faults, "append", false).await.unwrap())
        .await
        .unwrap_err();
    assert!(err.retryable(), "{}", err.message());
    assert!(
        err.message()
            .contains("s3://lake/orders/_pipectl/r1.to_lake.json"),
        "{}",
        err.message()
    );
    assert!(
        keys(&mem).await.is_empty(),
        "the abort removed the published file"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_marker_lookup_on_resume_stops_the_step_with_a_hint() {
    let mem = InMemory::new();
    let mut faults = MockFaults::new();
    faults
        .expect_head()
        .withf(|p| p == "orders/_pipectl/r1.to_lake.json")
        .times(1)
        .returning(|p| Some(denied(p)));
    let err = sink(&mem, faults, "append", true).await.err().unwrap();
    assert_eq!(err.class(), ErrorClass::External);
    assert!(!err.retryable());
    assert!(
        err.message()
            .contains("looking for s3://lake/orders/_pipectl/r1.to_lake.json"),
        "{}",
        err.message()
    );
    assert!(err.hint().unwrap_or_default().contains("access keys"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_503_while_listing_for_an_overwrite_is_retryable_and_publishes_nothing() {
    let mem = InMemory::new();
    let mut faults = MockFaults::new();
    faults.expect_put().never();
    faults
        .expect_list()
        .times(1)
        .returning(|_| Some(generic("Service Unavailable (503): please retry")));
    faults.expect_delete().returning(|_| None);
    let err = load(sink(&mem, faults, "overwrite", false).await.unwrap())
        .await
        .unwrap_err();
    assert!(err.retryable(), "{}", err.message());
    assert!(
        err.message().contains("listing s3://lake/orders"),
        "{}",
        err.message()
    );
    assert!(keys(&mem).await.is_empty(), "nothing published");
}
