//! Credentials for steps and connection checks: each connection's Vault fields are read once
//! per run (through a [`CachedProvider`]) and handed to the step that opens the connection;
//! `validate --connect` opens every connection without running a step.

use crate::pipeline::Pipeline;
use crate::registry::Registry;
use pipeline_base::StepError;
use pipeline_config::{ConnectionConfig, suggest};
use pipeline_credentials::{CachedProvider, CredentialProvider, SecretFields, SecretRef};
use pipeline_data::{ConnectionSetup, StepUse};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The fields of a connection's credentials, or `None` when it has none.
pub(crate) async fn connection_credentials(
    name: &str,
    config: &ConnectionConfig,
    provider: Option<&CachedProvider>,
) -> Result<Option<Arc<SecretFields>>, StepError> {
    let Some(reference) = &config.credentials else {
        return Ok(None);
    };
    let Some(provider) = provider else {
        return Err(StepError::user(format!(
            "connection \"{name}\" keeps its credentials in Vault at {}, but no Vault is configured",
            reference.vault_path
        ))
        .with_hint("export VAULT_ADDR and VAULT_TOKEN (or VAULT_ROLE_ID and VAULT_SECRET_ID for AppRole)"));
    };
    let secret = SecretRef::new(&reference.vault_path).with_kv_version(reference.kv_version);
    let started = Instant::now();
    let fields = provider
        .get(&secret)
        .await
        .map_err(|e| StepError::from(e).context(format!("connection \"{name}\"")))?;
    tracing::debug!(connection = name, vault_path = %reference.vault_path, fields = fields.len(), elapsed_ms = started.elapsed().as_millis() as u64, "credentials read");
    Ok(Some(fields))
}

/// The outcome of opening one connection.
#[derive(Debug)]
pub struct ConnectionCheck {
    pub name: String,
    pub system: String,
    pub vault_path: Option<String>,
    /// What answered (e.g. a server version), or why it failed.
    pub outcome: Result<String, StepError>,
    pub elapsed: Duration,
}

/// How long one connection may take to answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

async fn check_one(
    name: &str,
    config: &ConnectionConfig,
    registry: &Registry,
    provider: Option<&CachedProvider>,
    base_dir: &Path,
    uses: Vec<StepUse>,
) -> Result<String, StepError> {
    let Some(system) = registry.system(&config.system) else {
        let known: Vec<&str> = registry.systems().iter().map(|s| s.system).collect();
        let hint = suggest(&config.system, known.iter().copied())
            .map(|s| format!("did you mean \"{s}\"?"))
            .unwrap_or_else(|| format!("known systems: {}", known.join(", ")));
        return Err(StepError::user(format!(
            "connection \"{name}\": pipectl has no connector for system \"{}\"",
            config.system
        ))
        .with_hint(hint));
    };
    let credentials = connection_credentials(name, config, provider).await?;
    let setup = ConnectionSetup {
        name: name.to_string(),
        config: config.clone(),
        credentials,
        base_dir: base_dir.to_path_buf(),
        uses,
    };
    match tokio::time::timeout(CHECK_TIMEOUT, system.check(setup)).await {
        Ok(result) => result.map_err(|e| e.context(format!("connection \"{name}\""))),
        Err(_) => Err(StepError::transient(format!(
            "connection \"{name}\": no answer within {} s",
            CHECK_TIMEOUT.as_secs()
        ))),
    }
}

impl Pipeline {
    /// Fetches every connection's credentials and opens each connection, without running a step.
    pub async fn check_connections(
        &self,
        provider: Option<Arc<dyn CredentialProvider>>,
    ) -> Vec<ConnectionCheck> {
        let cache = provider.map(CachedProvider::new);
        let mut out = Vec::new();
        for (name, config) in &self.config().connections {
            let started = Instant::now();
            let uses = self
                .plan()
                .steps
                .iter()
                .filter(|s| s.connection.as_deref() == Some(name.as_str()))
                .map(|s| StepUse {
                    step: s.name.clone(),
                    method: s.method.clone(),
                    options: s.options.clone(),
                })
                .collect();
            let outcome = check_one(
                name,
                config,
                self.registry(),
                cache.as_ref(),
                &self.plan().base_dir,
                uses,
            )
            .await;
            match &outcome {
                Ok(what) => {
                    tracing::debug!(connection = %name, system = %config.system, elapsed_ms = started.elapsed().as_millis() as u64, "connection ok: {what}")
                }
                Err(e) => {
                    tracing::debug!(connection = %name, system = %config.system, error = %e.full_message(), "connection failed")
                }
            }
            out.push(ConnectionCheck {
                name: name.clone(),
                system: config.system.clone(),
                vault_path: config.credentials.as_ref().map(|c| c.vault_path.clone()),
                outcome,
                elapsed: started.elapsed(),
            });
        }
        out
    }
}

impl Pipeline {
    /// The setup step `name` would get in a run (its connections' credentials read from
    /// Vault), for tools acting on a step's target outside a run (`pipectl delta`).
    pub async fn step_setup(
        &self,
        name: &str,
        provider: Option<Arc<dyn CredentialProvider>>,
    ) -> Result<pipeline_data::StepSetup, StepError> {
        let plan = self.plan();
        let Some(step) = plan.steps.iter().find(|s| s.name == name) else {
            let names: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
            let hint = suggest(name, names.iter().copied())
                .map(|s| format!("did you mean \"{s}\"?"))
                .unwrap_or_else(|| format!("steps: {}", names.join(", ")));
            return Err(
                StepError::user(format!("the pipeline has no step \"{name}\"")).with_hint(hint),
            );
        };
        let cache = provider.map(CachedProvider::new);
        let (credentials, other_connections) =
            crate::execute::step_credentials(step, &plan.base_dir, cache.as_ref()).await?;
        Ok(crate::execute::step_setup(
            plan,
            step,
            crate::RunId::generate().to_string(),
            false,
            credentials,
            other_connections,
            None,
        ))
    }
}
