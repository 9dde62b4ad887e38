//! What a run needs from the plan's connections: each connection's Vault fields read once,
//! typed JDBC settings, locations as Spark reads them, and S3 credentials as Hadoop S3A
//! options passed with each read and write.

use crate::run::Runner;
use pipeline_base::StepError;
use pipeline_core::Plan;
use pipeline_credentials::{CachedProvider, CredentialProvider, IamConfig, JdbcConfig, SecretRef};
use pipeline_data::ConnectionSetup;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

impl Runner {
    /// The pipeline file's directory (relative paths start there).
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    pub fn setup(&self, connection: &str) -> Result<ConnectionSetup, StepError> {
        self.setups
            .get(connection)
            .cloned()
            .ok_or_else(|| StepError::user(format!("no connection \"{connection}\"")))
    }

    pub fn jdbc_config(
        &self,
        system: crate::sources::Jdbc,
        connection: &str,
    ) -> Result<JdbcConfig, StepError> {
        let setup = self.setup(connection)?;
        let port = match system {
            crate::sources::Jdbc::Postgres => 5432,
            crate::sources::Jdbc::Mysql => 3306,
        };
        JdbcConfig::from_sources(setup.sources(), port).map_err(|e| {
            StepError::user(e.to_string()).context(format!("connection \"{connection}\""))
        })
    }

    /// A location as Spark reads it: `s3://` as `s3a://`, a relative path from the pipeline
    /// file's directory.
    pub fn location(&self, path: &str) -> String {
        if path.contains("://") {
            crate::sources::s3a(path)
        } else {
            let p = Path::new(path);
            let full = if p.is_absolute() {
                p.to_path_buf()
            } else {
                self.base_dir.join(p)
            };
            normalize(&full).to_string_lossy().into_owned()
        }
    }

    /// The object store options of a connection (S3 keys, endpoint, region) as Hadoop S3A
    /// options, passed with each read and write.
    pub fn storage_options(
        &self,
        connection: Option<&str>,
        path: &str,
    ) -> Result<HashMap<String, String>, StepError> {
        use secrecy::ExposeSecret;
        let mut options = HashMap::new();
        let Some(name) = connection else {
            return Ok(options);
        };
        if !path.starts_with("s3://") && !path.starts_with("s3a://") {
            return Ok(options);
        }
        let setup = self.setup(name)?;
        let (access, secret, region, endpoint, token) = if setup.config.system == "delta" {
            let config = pipeline_credentials::DeltaConfig::from_sources(setup.sources()).expose();
            let get = |k: &str| {
                config
                    .get(k)
                    .cloned()
                    .or_else(|| config.get(&k.to_uppercase()).cloned())
            };
            (
                get("aws_access_key_id"),
                get("aws_secret_access_key"),
                get("aws_region"),
                get("aws_endpoint_url").or_else(|| get("aws_endpoint")),
                get("aws_session_token"),
            )
        } else {
            let iam = IamConfig::from_sources(setup.sources()).map_err(|e| {
                StepError::user(e.to_string()).context(format!("connection \"{name}\""))
            })?;
            (
                Some(iam.access_key_id.expose_secret().to_string()),
                Some(iam.secret_access_key.expose_secret().to_string()),
                Some(iam.region.clone()),
                iam.endpoint.clone(),
                iam.session_token
                    .as_ref()
                    .map(|t| t.expose_secret().to_string()),
            )
        };
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                options.insert(format!("fs.s3a.{k}"), v);
            }
        };
        let keys = access.is_some() && secret.is_some();
        put("access.key", access);
        put("secret.key", secret);
        put("endpoint.region", region);
        // With keys, exactly those; without, the cluster's own (instance role, environment).
        if let Some(t) = token {
            put("session.token", Some(t));
            put(
                "aws.credentials.provider",
                Some("org.apache.hadoop.fs.s3a.TemporaryAWSCredentialsProvider".into()),
            );
        } else if keys {
            put(
                "aws.credentials.provider",
                Some("org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider".into()),
            );
        }
        if let Some(e) = endpoint {
            put("path.style.access", Some("true".into()));
            put(
                "connection.ssl.enabled",
                Some(e.starts_with("https").to_string()),
            );
            put("endpoint", Some(e));
        }
        Ok(options)
    }
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Each connection the plan uses, with its Vault fields read once.
pub async fn connection_setups(
    plan: &Plan,
    credentials: Option<Arc<dyn CredentialProvider>>,
) -> Result<HashMap<String, ConnectionSetup>, StepError> {
    let provider = credentials.map(CachedProvider::new);
    let mut setups = HashMap::new();
    let configs = plan
        .steps
        .iter()
        .filter_map(|s| s.connection.clone().zip(s.connection_config.clone()))
        .chain(plan.steps.iter().flat_map(|s| s.other_connections.clone()));
    for (name, config) in configs {
        if setups.contains_key(&name) {
            continue;
        }
        let fields = match (&config.credentials, &provider) {
            (Some(reference), Some(p)) => {
                let secret = SecretRef::new(reference.vault_path.clone())
                    .with_kv_version(reference.kv_version);
                Some(p.get(&secret).await.map_err(|e| {
                    let retry = e.retryable();
                    let error = format!("connection \"{name}\": {e}");
                    if retry {
                        StepError::transient(error)
                    } else {
                        StepError::user(error)
                    }
                })?)
            }
            (Some(_), None) => {
                return Err(StepError::user(format!("connection \"{name}\" needs credentials from Vault, and no Vault is configured"))
                    .with_hint("set VAULT_ADDR and VAULT_TOKEN (eval \"$(scripts/dev-env env)\" for the local one)"));
            }
            (None, _) => None,
        };
        setups.insert(
            name.clone(),
            ConnectionSetup {
                name,
                config,
                credentials: fields,
                base_dir: plan.base_dir.clone(),
                uses: Vec::new(),
            },
        );
    }
    Ok(setups)
}
