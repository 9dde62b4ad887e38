//! Run-id idempotent commits, for every sink (one rstest table): a load committed under a run id
//! is recognised when the run is resumed with that id and nothing is written again; a run id
//! that never committed loads normally; and two processes committing the same run id and step
//! publish once (the SQL ledger's key decides). Each target is read back with a client of its
//! own (SQL count, the Delta reader, the object listing).

mod common;

use common::step;
use futures::TryStreamExt;
use mysql_async::prelude::Queryable;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt};
use pipeline_connectors::{GenerateOptions, LoadMethods, generate_frame};
use pipeline_data::polars::prelude::*;
use pipeline_data::{CommitOutcome, Sink, StepSetup};
use pipeline_testkit::{
    Env, MysqlFlavor, Service, drop_mysql_table_on_exit, mysql_client, mysql_service, service,
    unique,
};
use rstest::rstest;
use serde_json::json;
use std::path::PathBuf;

fn orders(start: u64, len: u64) -> DataFrame {
    let o = GenerateOptions {
        dataset: Default::default(),
        rows: start + len,
        seed: 11,
        batch_size: 1000,
        null_fraction: 0.0,
    };
    generate_frame(&o, start, len).unwrap()
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Postgres,
    Mysql(MysqlFlavor),
    DeltaLocal,
    FilesLocal,
    FilesS3,
}

/// One sink under test: how to open it and how many rows its target holds.
struct Target {
    kind: Kind,
    env: Option<Env>,
    dir: tempfile::TempDir,
    name: String,
}

impl Target {
    async fn new(kind: Kind) -> Option<Target> {
        let env = match kind {
            Kind::Postgres => Some(service(Service::Postgres)?),
            Kind::Mysql(flavor) => Some(mysql_service(flavor).await?),
            Kind::FilesS3 => Some(service(Service::S3)?),
            Kind::DeltaLocal | Kind::FilesLocal => None,
        };
        Some(Target {
            kind,
            env,
            dir: tempfile::tempdir().unwrap(),
            name: unique("resume"),
        })
    }

    fn env(&self) -> &Env {
        self.env.as_ref().expect("a service")
    }

    async fn setup(&self, run_id: &str, resumed: bool) -> StepSetup {
        let mut s = match self.kind {
            Kind::Postgres => {
                let o = json!({"table": self.name, "create_table": true});
                step(self.env(), "postgres", "postgres", json!({}), o).await
            }
            Kind::Mysql(_) => {
                let o = json!({"table": self.name, "create_table": true});
                step(self.env(), "mysql", "mysql", json!({}), o).await
            }
            Kind::FilesS3 => {
                let bucket = self.env().get("S3_BUCKET").to_string();
                let o = json!({"path": format!("s3://{bucket}/{}/", self.name)});
                step(self.env(), "s3", "s3", json!({"bucket": bucket}), o).await
            }
            Kind::DeltaLocal => {
                common::local_step(self.dir.path(), "to_lake", json!({"path": "lake"}))
            }
            Kind::FilesLocal => {
                common::local_step(self.dir.path(), "to_files", json!({"path": "files/"}))
            }
        };
        s.pipeline = "resume_test".into();
        s.run_id = run_id.into();
        s.resumed = resumed;
        s
    }

    async fn open(&self, run_id: &str, resumed: bool) -> Box<dyn Sink> {
        let s = self.setup(run_id, resumed).await;
        let sink = match self.kind {
            Kind::Postgres => LoadMethods::postgres(s.options().unwrap(), s).await,
            Kind::Mysql(_) => LoadMethods::mysql(s.options().unwrap(), s).await,
            Kind::DeltaLocal => LoadMethods::delta(s.options().unwrap(), s).await,
            Kind::FilesLocal | Kind::FilesS3 => LoadMethods::s3(s.options().unwrap(), s).await,
        };
        sink.expect("the sink opens")
    }

    /// Writes, prepares and commits `df`.
    async fn load(&self, run_id: &str, resumed: bool, df: DataFrame) -> CommitOutcome {
        let mut sink = self.open(run_id, resumed).await;
        sink.write(df).await.unwrap();
        sink.prepare().await.unwrap();
        sink.commit().await.unwrap()
    }

    async fn rows(&self) -> u64 {
        match self.kind {
            Kind::Postgres => {
                let c = common::pg(self.env()).await;
                let n: i64 = c
                    .query_one(&format!("SELECT count(*) FROM \"{}\"", self.name), &[])
                    .await
                    .unwrap()
                    .get(0);
                n as u64
            }
            Kind::Mysql(_) => {
                let mut c = mysql_client(self.env()).await;
                let n: Option<i64> = c
                    .query_first(format!("SELECT COUNT(*) FROM `{}`", self.name))
                    .await
                    .unwrap();
                n.unwrap_or(-1) as u64
            }
            Kind::DeltaLocal => {
                pipeline_connectors::read_delta_table(&self.dir.path().join("lake"))
                    .await
                    .unwrap()
                    .height() as u64
            }
            Kind::FilesLocal => {
                let dir = self.dir.path().join("files");
                data_files(&dir).iter().map(|p| parquet_rows(p)).sum()
            }
            Kind::FilesS3 => {
                let store = pipeline_testkit::s3_store(self.env()).await;
                let listed: Vec<_> = store
                    .list(Some(&ObjPath::from(self.name.as_str())))
                    .try_collect()
                    .await
                    .unwrap();
                let mut rows = 0;
                for m in listed {
                    if m.location.parts().any(|p| p.as_ref().starts_with('_')) {
                        continue;
                    }
                    let bytes = store.get(&m.location).await.unwrap().bytes().await.unwrap();
                    let df = ParquetReader::new(std::io::Cursor::new(bytes.to_vec()))
                        .finish()
                        .unwrap();
                    rows += df.height() as u64;
                }
                rows
            }
        }
    }

    fn cleanup(&self) {
        match self.kind {
            Kind::Postgres => {
                let _guard = pipeline_testkit::drop_table_on_exit(self.env(), &self.name);
            }
            Kind::Mysql(_) => {
                let _guard = drop_mysql_table_on_exit(self.env(), &self.name);
            }
            _ => {}
        }
    }
}

/// Data files under a local dataset directory (not `_SUCCESS`, not `_pipectl/`).
fn data_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with(['_', '.']) {
            continue;
        }
        if p.is_dir() {
            out.extend(data_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn parquet_rows(path: &std::path::Path) -> u64 {
    let file = std::fs::File::open(path).unwrap();
    ParquetReader::new(file).finish().unwrap().height() as u64
}

#[rstest]
#[case::postgres(Kind::Postgres)]
#[case::mariadb(Kind::Mysql(MysqlFlavor::MariaDb))]
#[case::mysql84(Kind::Mysql(MysqlFlavor::Mysql))]
#[case::delta_local(Kind::DeltaLocal)]
#[case::files_local(Kind::FilesLocal)]
#[case::files_s3(Kind::FilesS3)]
#[tokio::test(flavor = "multi_thread")]
async fn a_resumed_run_does_not_publish_a_committed_load_again(#[case] kind: Kind) {
    let Some(t) = Target::new(kind).await else {
        return;
    };
    let run = unique("run");
    assert_eq!(
        t.load(&run, false, orders(0, 3000)).await,
        CommitOutcome::Published
    );
    assert_eq!(t.rows().await, 3000);

    // The same run resumed: recognised, nothing written.
    assert_eq!(
        t.load(&run, true, orders(0, 3000)).await,
        CommitOutcome::AlreadyPublished,
        "{kind:?}"
    );
    assert_eq!(t.rows().await, 3000, "{kind:?}: nothing written twice");

    // A resumed run that never committed this load loads it.
    let other = unique("run");
    assert_eq!(
        t.load(&other, true, orders(3000, 500)).await,
        CommitOutcome::Published
    );
    assert_eq!(t.rows().await, 3500, "{kind:?}");
    t.cleanup();
}

/// A retry attempt of the same run (not a resume) whose earlier commit landed although it
/// answered with an error: the Delta log's `txn` for the run says so, nothing is appended twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_delta_retry_after_a_commit_that_landed_appends_nothing() {
    let Some(t) = Target::new(Kind::DeltaLocal).await else {
        return;
    };
    let run = unique("run");
    assert_eq!(
        t.load(&run, false, orders(0, 3000)).await,
        CommitOutcome::Published
    );
    assert_eq!(
        t.load(&run, false, orders(0, 3000)).await,
        CommitOutcome::AlreadyPublished
    );
    assert_eq!(t.rows().await, 3000);
    assert_eq!(
        t.load(&unique("run"), false, orders(3000, 10)).await,
        CommitOutcome::Published,
        "another run appends"
    );
    assert_eq!(t.rows().await, 3010);
    t.cleanup();
}

/// Two processes committing one run id and step (a resume started while the first was still
/// committing): the SQL ledger's primary key lets exactly one publish.
#[rstest]
#[case::postgres(Kind::Postgres)]
#[case::mariadb(Kind::Mysql(MysqlFlavor::MariaDb))]
#[case::mysql84(Kind::Mysql(MysqlFlavor::Mysql))]
#[tokio::test(flavor = "multi_thread")]
async fn the_ledger_lets_one_of_two_commits_with_one_run_id_publish(#[case] kind: Kind) {
    let Some(t) = Target::new(kind).await else {
        return;
    };
    let run = unique("run");
    // Create the table first, so that both sinks below find it.
    t.load(&unique("run"), false, orders(0, 10)).await;
    let mut first = t.open(&run, false).await;
    let mut second = t.open(&run, false).await;
    first.write(orders(100, 1000)).await.unwrap();
    first.prepare().await.unwrap();
    second.write(orders(100, 1000)).await.unwrap();
    // The second's ledger row waits for the first's transaction; commit the first meanwhile.
    let (prepared, committed) = tokio::join!(second.prepare(), async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        first.commit().await
    });
    assert_eq!(committed.unwrap(), CommitOutcome::Published);
    prepared.unwrap();
    assert_eq!(
        second.commit().await.unwrap(),
        CommitOutcome::AlreadyPublished
    );
    assert_eq!(t.rows().await, 1010, "{kind:?}: the run's rows once");
    t.cleanup();
}

/// A commit that completed its files but died before writing the run's marker: the resumed run
/// replaces those files instead of adding its own beside them.
#[rstest]
#[case::files_local(Kind::FilesLocal)]
#[case::files_s3(Kind::FilesS3)]
#[tokio::test(flavor = "multi_thread")]
async fn a_resume_replaces_files_an_interrupted_commit_left(#[case] kind: Kind) {
    let Some(t) = Target::new(kind).await else {
        return;
    };
    let run = unique("run");
    t.load(&run, false, orders(0, 2000)).await;
    // As if the process died after completing the uploads of a bigger attempt: its marker is
    // missing and a second file of the run lies beside the first.
    match kind {
        Kind::FilesLocal => {
            let files = t.dir.path().join("files");
            std::fs::remove_dir_all(files.join("_pipectl")).unwrap();
            let first = data_files(&files).pop().unwrap();
            let name = first.file_name().unwrap().to_string_lossy().to_string();
            assert!(name.ends_with("-00001.parquet"), "{name}");
            std::fs::copy(&first, files.join(name.replace("-00001.", "-00002."))).unwrap();
        }
        _ => {
            let store = pipeline_testkit::s3_store(t.env()).await;
            let prefix = ObjPath::from(t.name.as_str());
            let listed: Vec<_> = store.list(Some(&prefix)).try_collect().await.unwrap();
            let mut markers = 0;
            for m in listed {
                let key = m.location.to_string();
                if key.contains("/_pipectl/") {
                    store.delete(&m.location).await.unwrap();
                    markers += 1;
                } else if key.ends_with("-00001.parquet") {
                    let copy = ObjPath::from(key.replace("-00001.", "-00002."));
                    store.copy(&m.location, &copy).await.unwrap();
                }
            }
            assert_eq!(markers, 1);
        }
    }
    assert_eq!(t.rows().await, 4000);
    assert_eq!(
        t.load(&run, true, orders(0, 2000)).await,
        CommitOutcome::Published
    );
    assert_eq!(t.rows().await, 2000, "{kind:?}: replaced, not doubled");
    t.cleanup();
}
