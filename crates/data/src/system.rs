//! What a connector knows about its system beyond its methods: how to check that a connection
//! works (`pipectl validate --connect`), given the connection block and its Vault fields.

use futures::future::BoxFuture;
use pipeline_base::StepError;
use pipeline_config::ConnectionConfig;
use pipeline_credentials::{FieldSources, SecretFields};
use std::path::PathBuf;
use std::sync::Arc;

/// A named connection with its credentials, ready to be opened.
#[derive(Clone, Debug)]
pub struct ConnectionSetup {
    pub name: String,
    pub config: ConnectionConfig,
    /// Fields read from Vault, when the connection has `credentials`.
    pub credentials: Option<Arc<SecretFields>>,
    /// The directory of the pipeline file, for relative paths.
    pub base_dir: PathBuf,
    /// The steps that use this connection, for checks that need more than the connection
    /// (a Delta table's location comes with each step). Empty outside `validate --connect`.
    pub uses: Vec<StepUse>,
}

/// A step that uses a connection: its name, method and options.
#[derive(Clone, Debug)]
pub struct StepUse {
    pub step: String,
    pub method: String,
    pub options: serde_json::Value,
}

impl ConnectionSetup {
    /// Settings of the connection block over the Vault fields, for the typed configs.
    pub fn sources(&self) -> FieldSources<'_> {
        FieldSources::new(
            &self.name,
            &self.config.settings,
            self.credentials.as_deref(),
        )
    }
}

type CheckFn = fn(ConnectionSetup) -> BoxFuture<'static, Result<String, StepError>>;

/// One system (`postgres`, `s3`, ...) and its connection check.
pub struct SystemEntry {
    pub system: &'static str,
    pub summary: &'static str,
    check: CheckFn,
}

impl SystemEntry {
    /// `check` opens the connection and returns a one-line description of what answered
    /// (e.g. the server version); it must not change anything.
    pub fn new(system: &'static str, summary: &'static str, check: CheckFn) -> Self {
        SystemEntry {
            system,
            summary,
            check,
        }
    }

    pub fn check(&self, setup: ConnectionSetup) -> BoxFuture<'static, Result<String, StepError>> {
        (self.check)(setup)
    }
}
