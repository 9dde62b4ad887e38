//! Credentials for connections. Pipeline files only say where a secret lives (a Vault path);
//! a [`CredentialProvider`] fetches the fields, and the typed configs ([`JdbcConfig`],
//! [`IamConfig`], [`OtherConfig`]) hold secret fields in [`secrecy::SecretString`], which is
//! redacted in `Debug` and zeroed on drop.
//!
//! The Vault-backed provider is the production one; [`StaticProvider`] serves unit tests.

use async_trait::async_trait;
use pipeline_base::StepError;
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::fmt;

/// The fields stored at one secret path. Values are secret until a typed config says otherwise.
#[derive(Default)]
pub struct SecretFields(HashMap<String, SecretString>);

impl SecretFields {
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), SecretString::from(value.into()));
    }

    pub fn get(&self, key: &str) -> Option<&SecretString> {
        self.0.get(key)
    }

    /// A required field, or an error naming it and the credential type that needs it.
    pub fn require(&self, key: &str, kind: &str, path: &str) -> Result<SecretString, StepError> {
        self.0.get(key).cloned().ok_or_else(|| {
            StepError::user(format!(
                "{kind} credentials at {path} lack the field \"{key}\""
            ))
            .with_hint(format!("add it: vault kv put {path} {key}=..."))
        })
    }

    /// A non-secret field as plain text.
    pub fn plain(&self, key: &str) -> Option<String> {
        self.0.get(key).map(|s| s.expose_secret().to_string())
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

impl fmt::Debug for SecretFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<&str> = self.keys().collect();
        keys.sort_unstable();
        write!(f, "SecretFields({} = [REDACTED])", keys.join(", "))
    }
}

/// Fetches the fields stored at a secret path.
#[async_trait]
pub trait CredentialProvider: Send + Sync {
    async fn fetch(&self, path: &str) -> Result<SecretFields, StepError>;
}

/// An in-memory provider for unit tests.
#[derive(Default)]
pub struct StaticProvider {
    secrets: HashMap<String, Vec<(String, String)>>,
}

impl StaticProvider {
    pub fn with(mut self, path: &str, fields: &[(&str, &str)]) -> Self {
        self.secrets.insert(
            path.to_string(),
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        self
    }
}

#[async_trait]
impl CredentialProvider for StaticProvider {
    async fn fetch(&self, path: &str) -> Result<SecretFields, StepError> {
        let entries = self
            .secrets
            .get(path)
            .ok_or_else(|| StepError::user(format!("no secret at {path}")))?;
        let mut fields = SecretFields::default();
        for (k, v) in entries {
            fields.insert(k.clone(), v.clone());
        }
        Ok(fields)
    }
}

/// PostgreSQL / MySQL credentials.
#[derive(Debug, Clone)]
pub struct JdbcConfig {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub username: String,
    pub password: SecretString,
}

impl JdbcConfig {
    /// Builds the config from the fields at `path`.
    pub fn from_fields(fields: &SecretFields, path: &str) -> Result<Self, StepError> {
        let kind = "JDBC";
        let port = fields.require("port", kind, path)?;
        Ok(JdbcConfig {
            host: fields
                .require("host", kind, path)?
                .expose_secret()
                .to_string(),
            port: port.expose_secret().parse().map_err(|_| {
                StepError::user(format!(
                    "JDBC credentials at {path}: \"port\" is not a port number"
                ))
            })?,
            database: fields
                .require("database", kind, path)?
                .expose_secret()
                .to_string(),
            username: fields
                .require("username", kind, path)?
                .expose_secret()
                .to_string(),
            password: fields.require("password", kind, path)?,
        })
    }
}

/// Amazon S3 credentials.
#[derive(Debug, Clone)]
pub struct IamConfig {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub region: String,
    pub session_token: Option<SecretString>,
    pub endpoint: Option<String>,
}

/// Kafka and Delta Lake settings and credentials.
#[derive(Debug, Clone)]
pub struct OtherConfig {
    pub settings: HashMap<String, String>,
    pub secrets: HashMap<String, SecretString>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jdbc_from_provider_redacts_the_password() {
        let provider = StaticProvider::default().with(
            "secret/db",
            &[
                ("host", "localhost"),
                ("port", "5432"),
                ("database", "shop"),
                ("username", "app"),
                ("password", "s3cr3t-value"),
            ],
        );
        let fields = provider.fetch("secret/db").await.unwrap();
        assert!(!format!("{fields:?}").contains("s3cr3t-value"));
        let jdbc = JdbcConfig::from_fields(&fields, "secret/db").unwrap();
        assert_eq!(jdbc.port, 5432);
        assert_eq!(jdbc.password.expose_secret(), "s3cr3t-value");
        assert!(!format!("{jdbc:?}").contains("s3cr3t-value"));
    }

    #[tokio::test]
    async fn a_missing_field_names_field_type_and_path() {
        let provider = StaticProvider::default().with("secret/db", &[("host", "h")]);
        let fields = provider.fetch("secret/db").await.unwrap();
        let err = JdbcConfig::from_fields(&fields, "secret/db").err().unwrap();
        assert_eq!(
            err.message(),
            "JDBC credentials at secret/db lack the field \"port\""
        );
    }
}
