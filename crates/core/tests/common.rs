//! Test-only methods: a flaky source that fails with transient errors a set number of times.

#![allow(dead_code)]

use async_trait::async_trait;
use pipeline_base::StepError;
use pipeline_core::Registry;
use pipeline_data::method::MethodOptions;
use pipeline_data::polars::prelude::*;
use pipeline_data::{Batch, CommitOutcome, ConnectionUse, MethodEntry, Sink, Source, StepSetup};
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlakyOptions {
    /// Counter name, unique per test.
    pub key: String,
    /// Attempts that fail before one succeeds.
    pub failures: u32,
    /// Fail with a user error instead of a transient one.
    #[serde(default)]
    pub user_error: bool,
}

impl MethodOptions for FlakyOptions {}

fn counters() -> &'static Mutex<HashMap<String, u32>> {
    static C: OnceLock<Mutex<HashMap<String, u32>>> = OnceLock::new();
    C.get_or_init(Default::default)
}

pub fn opened(key: &str) -> u32 {
    counters().lock().unwrap().get(key).copied().unwrap_or(0)
}

struct Once(Option<DataFrame>);

#[async_trait]
impl Source for Once {
    async fn next_batch(&mut self) -> Result<Option<Batch>, StepError> {
        Ok(self.0.take().map(Batch::Frame))
    }
}

async fn flaky(o: FlakyOptions, _: StepSetup) -> Result<Box<dyn Source>, StepError> {
    let n = {
        let mut c = counters().lock().unwrap();
        let n = c.entry(o.key.clone()).or_default();
        *n += 1;
        *n
    };
    if n <= o.failures {
        return Err(if o.user_error {
            StepError::user("bad option value")
        } else {
            StepError::transient(format!("connection refused (try {n})"))
        });
    }
    Ok(Box::new(Once(Some(df!("id" => [1i64, 2, 3]).unwrap()))))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRowsOptions {}

impl MethodOptions for SecretRowsOptions {}

/// A source that needs its connection's `password` and yields one row saying it had it.
async fn secret_rows(_: SecretRowsOptions, setup: StepSetup) -> Result<Box<dyn Source>, StepError> {
    let conn = setup.connection_setup()?;
    let has = conn
        .credentials
        .as_ref()
        .and_then(|f| f.get("password"))
        .is_some();
    if !has {
        return Err(StepError::internal(
            "the step did not get its connection's password",
        ));
    }
    Ok(Box::new(Once(Some(df!("had_password" => [has]).unwrap()))))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlakyCommitOptions {
    /// Counter name, unique per test.
    pub key: String,
    /// Commits that fail (transiently) before one succeeds.
    pub failures: u32,
    /// Fail with a user error instead (never retried).
    #[serde(default)]
    pub user_error: bool,
}

impl MethodOptions for FlakyCommitOptions {}

/// Rows committed per key by `flaky_commit` loads.
pub fn committed_rows(key: &str) -> u64 {
    committed().lock().unwrap().get(key).copied().unwrap_or(0)
}

fn committed() -> &'static Mutex<HashMap<String, u64>> {
    static C: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();
    C.get_or_init(Default::default)
}

fn committed_runs() -> &'static Mutex<std::collections::HashSet<(String, String)>> {
    static C: OnceLock<Mutex<std::collections::HashSet<(String, String)>>> = OnceLock::new();
    C.get_or_init(Default::default)
}

/// A sink that counts rows and fails its first `failures` commits; like the real sinks, it
/// remembers the run ids it committed and does not commit one twice.
struct FlakyCommit {
    o: FlakyCommitOptions,
    rows: u64,
    run_id: String,
}

#[async_trait]
impl Sink for FlakyCommit {
    async fn write(&mut self, df: DataFrame) -> Result<(), StepError> {
        self.rows += df.height() as u64;
        Ok(())
    }
    async fn prepare(&mut self) -> Result<(), StepError> {
        Ok(())
    }
    async fn commit(&mut self) -> Result<CommitOutcome, StepError> {
        if committed_runs()
            .lock()
            .unwrap()
            .contains(&(self.o.key.clone(), self.run_id.clone()))
        {
            return Ok(CommitOutcome::AlreadyPublished);
        }
        let n = {
            let mut c = counters().lock().unwrap();
            let n = c.entry(format!("commit:{}", self.o.key)).or_default();
            *n += 1;
            *n
        };
        if n <= self.o.failures {
            return Err(if self.o.user_error {
                StepError::user("the target refused the commit")
            } else {
                StepError::transient(format!("connection reset while committing (try {n})"))
            });
        }
        *committed()
            .lock()
            .unwrap()
            .entry(self.o.key.clone())
            .or_default() += self.rows;
        committed_runs()
            .lock()
            .unwrap()
            .insert((self.o.key.clone(), self.run_id.clone()));
        Ok(CommitOutcome::Published)
    }
    async fn abort(&mut self) {}
}

async fn flaky_commit(o: FlakyCommitOptions, setup: StepSetup) -> Result<Box<dyn Sink>, StepError> {
    Ok(Box::new(FlakyCommit {
        o,
        rows: 0,
        run_id: setup.run_id,
    }))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceCommitOptions {
    /// Counter name, unique per test.
    pub key: String,
    /// Source commits (recording how far it read) that fail before one succeeds.
    pub failures: u32,
}

impl MethodOptions for SourceCommitOptions {}

/// A source of 100 rows whose commit fails its first `failures` times (transient).
struct CommitFails {
    rows: Option<DataFrame>,
    key: String,
    failures: u32,
}

#[async_trait]
impl Source for CommitFails {
    async fn next_batch(&mut self) -> Result<Option<Batch>, StepError> {
        Ok(self.rows.take().map(Batch::Frame))
    }

    async fn commit(&mut self) -> Result<(), StepError> {
        let n = {
            let mut c = counters().lock().unwrap();
            let n = c.entry(self.key.clone()).or_default();
            *n += 1;
            *n
        };
        if n <= self.failures {
            return Err(StepError::transient(format!(
                "storing offsets failed (try {n})"
            )));
        }
        Ok(())
    }
}

async fn source_commit_fails(
    o: SourceCommitOptions,
    _: StepSetup,
) -> Result<Box<dyn Source>, StepError> {
    let ids: Vec<i64> = (1..=100).collect();
    let df = DataFrame::new(100, vec![Column::new("order_id".into(), ids)]).unwrap();
    Ok(Box::new(CommitFails {
        rows: Some(df),
        key: o.key,
        failures: o.failures,
    }))
}

pub fn registry() -> Arc<Registry> {
    let mut r = Registry::standard();
    r.register(MethodEntry::extract(
        "source_commit_fails",
        "100 rows; its commit fails at first",
        ConnectionUse::None,
        source_commit_fails,
    ));
    r.register(MethodEntry::extract(
        "secret_rows",
        "needs a postgres connection's credentials",
        ConnectionUse::Required(&["postgres"]),
        secret_rows,
    ));
    r.register(MethodEntry::load(
        "flaky_commit",
        "counts rows, fails its first commits",
        ConnectionUse::None,
        flaky_commit,
    ));
    r.register(MethodEntry::extract(
        "flaky",
        "fails then works",
        ConnectionUse::None,
        flaky,
    ));
    Arc::new(r)
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}
