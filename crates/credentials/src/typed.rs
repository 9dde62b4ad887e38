//! Typed credentials per system: [`JdbcConfig`] (PostgreSQL, MySQL), [`IamConfig`] (S3) and
//! [`OtherConfig`] (Kafka, Delta Lake). Each is built from two sources: the non-secret settings
//! written in the pipeline's connection block, which win, and the fields read from Vault.
//! Secret fields (passwords, secret keys, tokens) come from Vault only.

use crate::error::CredentialError;
use crate::fields::SecretFields;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The two places a connection's fields come from.
#[derive(Clone, Copy)]
pub struct FieldSources<'a> {
    /// Non-secret settings of the connection block (`host`, `database`, ...).
    pub settings: &'a Map<String, Value>,
    /// Fields read from Vault, when the connection has credentials.
    pub vault: Option<&'a SecretFields>,
    /// The connection's name, for errors when there is no Vault path.
    pub connection: &'a str,
}

impl<'a> FieldSources<'a> {
    pub fn new(
        connection: &'a str,
        settings: &'a Map<String, Value>,
        vault: Option<&'a SecretFields>,
    ) -> Self {
        FieldSources {
            settings,
            vault,
            connection,
        }
    }

    fn origin(&self) -> String {
        match self.vault {
            Some(v) => v.path().to_string(),
            None => format!("connection \"{}\" (no Vault credentials)", self.connection),
        }
    }

    /// A non-secret field: the connection block first, then Vault.
    pub fn plain(&self, key: &str) -> Option<String> {
        match self.settings.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Null) | None => self.vault.and_then(|v| v.plain(key)),
            Some(other) => Some(other.to_string()),
        }
    }

    pub fn require_plain(&self, key: &str, kind: &'static str) -> Result<String, CredentialError> {
        self.plain(key)
            .ok_or_else(|| CredentialError::FieldMissing {
                kind,
                path: self.origin(),
                field: key.to_string(),
            })
    }

    /// A secret field: from Vault only.
    pub fn secret(&self, key: &str) -> Option<SecretString> {
        self.vault.and_then(|v| v.get(key).cloned())
    }

    pub fn require_secret(
        &self,
        key: &str,
        kind: &'static str,
    ) -> Result<SecretString, CredentialError> {
        self.secret(key)
            .ok_or_else(|| CredentialError::FieldMissing {
                kind,
                path: self.origin(),
                field: key.to_string(),
            })
    }

    fn parse<T: std::str::FromStr>(
        &self,
        key: &str,
        kind: &'static str,
        what: &str,
    ) -> Result<Option<T>, CredentialError> {
        match self.plain(key) {
            None => Ok(None),
            Some(text) => {
                text.trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| CredentialError::FieldInvalid {
                        kind,
                        path: self.origin(),
                        field: key.to_string(),
                        problem: format!("is not {what} (got \"{text}\")"),
                    })
            }
        }
    }

    fn one_of(
        &self,
        key: &str,
        kind: &'static str,
        allowed: &[&str],
    ) -> Result<Option<String>, CredentialError> {
        match self.plain(key) {
            None => Ok(None),
            Some(v) if allowed.iter().any(|a| a.eq_ignore_ascii_case(&v)) => Ok(Some(v)),
            Some(v) => Err(CredentialError::FieldInvalid {
                kind,
                path: self.origin(),
                field: key.to_string(),
                problem: format!("must be one of {} (got \"{v}\")", allowed.join(", ")),
            }),
        }
    }
}

/// PostgreSQL / MySQL connection credentials.
#[derive(Debug, Clone)]
pub struct JdbcConfig {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub username: String,
    pub password: SecretString,
    /// `disable`, `prefer` (the default), `require`, `verify-ca` or `verify-full` (libpq's
    /// `sslmode` meanings).
    pub tls_mode: Option<String>,
    /// A PEM file of CA certificates for `verify-ca` / `verify-full` (else the system's roots).
    pub ca_cert: Option<String>,
    /// Extra connection parameters (`application_name`, `connect_timeout`, ...).
    pub params: BTreeMap<String, String>,
}

impl JdbcConfig {
    pub const KIND: &'static str = "JDBC";
    pub const TLS_MODES: &'static [&'static str] =
        &["disable", "prefer", "require", "verify-ca", "verify-full"];

    pub fn from_sources(src: FieldSources<'_>, default_port: u16) -> Result<Self, CredentialError> {
        let kind = Self::KIND;
        let params = match src.settings.get("params") {
            Some(Value::Object(map)) => map
                .iter()
                .map(|(k, v)| {
                    let v = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    (k.clone(), v)
                })
                .collect(),
            _ => BTreeMap::new(),
        };
        Ok(JdbcConfig {
            host: src.require_plain("host", kind)?,
            port: src
                .parse("port", kind, "a port number")?
                .unwrap_or(default_port),
            database: src.require_plain("database", kind)?,
            username: src.require_plain("username", kind)?,
            password: src.require_secret("password", kind)?,
            tls_mode: src.one_of("tls_mode", kind, Self::TLS_MODES)?,
            ca_cert: src.plain("ca_cert"),
            params,
        })
    }
}

/// Amazon S3 (or S3-compatible) credentials.
#[derive(Debug, Clone)]
pub struct IamConfig {
    pub access_key_id: SecretString,
    pub secret_access_key: SecretString,
    pub region: String,
    pub session_token: Option<SecretString>,
    /// An S3-compatible server's URL; path-style addressing is used with it.
    pub endpoint: Option<String>,
}

impl IamConfig {
    pub const KIND: &'static str = "IAM";

    pub fn from_sources(src: FieldSources<'_>) -> Result<Self, CredentialError> {
        let kind = Self::KIND;
        Ok(IamConfig {
            access_key_id: src.require_secret("access_key_id", kind)?,
            secret_access_key: src.require_secret("secret_access_key", kind)?,
            region: src.plain("region").unwrap_or_else(|| "us-east-1".into()),
            session_token: src.secret("session_token"),
            endpoint: src.plain("endpoint"),
        })
    }
}

/// Kafka connection settings and SASL credentials.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub bootstrap_servers: Vec<String>,
    /// `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    pub security_protocol: String,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` when SASL is used.
    pub sasl_mechanism: Option<String>,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// A CA certificate file for TLS.
    pub ca_cert: Option<String>,
    /// With TLS: `verify-full` (the default, as the Java client's https endpoint
    /// identification), `verify-ca` (the chain, not the host name) or `require` (unverified).
    pub tls_mode: Option<String>,
    /// The Confluent-compatible Schema Registry of `avro_confluent` values (its API base URL).
    pub schema_registry_url: Option<String>,
    pub schema_registry_username: Option<String>,
    pub schema_registry_password: Option<SecretString>,
}

impl KafkaConfig {
    pub const KIND: &'static str = "Kafka";
    pub const PROTOCOLS: &'static [&'static str] =
        &["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];
    pub const MECHANISMS: &'static [&'static str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];
    pub const TLS_MODES: &'static [&'static str] = &["require", "verify-ca", "verify-full"];

    pub fn from_sources(src: FieldSources<'_>) -> Result<Self, CredentialError> {
        let kind = Self::KIND;
        let servers = src.require_plain("bootstrap_servers", kind)?;
        let protocol = src
            .one_of("security_protocol", kind, Self::PROTOCOLS)?
            .unwrap_or_else(|| "PLAINTEXT".into())
            .to_ascii_uppercase();
        let sasl = protocol.starts_with("SASL");
        let mechanism = src
            .one_of("sasl_mechanism", kind, Self::MECHANISMS)?
            .map(|m| m.to_ascii_uppercase());
        let (username, password) = if sasl {
            (
                Some(src.require_plain("username", kind)?),
                Some(src.require_secret("password", kind)?),
            )
        } else {
            (src.plain("username"), src.secret("password"))
        };
        Ok(KafkaConfig {
            bootstrap_servers: servers
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            sasl_mechanism: if sasl {
                Some(mechanism.unwrap_or_else(|| "PLAIN".into()))
            } else {
                mechanism
            },
            security_protocol: protocol,
            username,
            password,
            ca_cert: src.plain("ca_cert"),
            tls_mode: src.one_of("tls_mode", kind, Self::TLS_MODES)?,
            schema_registry_url: src.plain("schema_registry_url"),
            schema_registry_username: src.plain("schema_registry_username"),
            schema_registry_password: src.secret("schema_registry_password"),
        })
    }

    pub fn tls(&self) -> bool {
        self.security_protocol.ends_with("SSL")
    }
}

/// Delta Lake storage options (`aws_access_key_id`, `aws_endpoint_url`, ...), handed to the
/// object store as a map. Every value from Vault is kept secret.
#[derive(Debug, Clone, Default)]
pub struct DeltaConfig {
    pub storage_options: BTreeMap<String, SecretString>,
}

impl DeltaConfig {
    /// Vault fields, then every string setting of the connection block except `system`/`path`.
    pub fn from_sources(src: FieldSources<'_>) -> Self {
        let mut storage_options = BTreeMap::new();
        if let Some(v) = src.vault {
            for (k, s) in v.iter() {
                storage_options.insert(k.to_string(), s.clone());
            }
        }
        if let Some(Value::Object(map)) = src.settings.get("storage_options") {
            for (k, v) in map {
                let v = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                storage_options.insert(k.clone(), SecretString::from(v));
            }
        }
        DeltaConfig { storage_options }
    }

    /// The options as plain strings, for the object store client. Do not log the result.
    pub fn expose(&self) -> std::collections::HashMap<String, String> {
        self.storage_options
            .iter()
            .map(|(k, v)| (k.clone(), v.expose_secret().to_string()))
            .collect()
    }
}

/// Credentials of systems other than databases and S3.
#[derive(Debug, Clone)]
pub enum OtherConfig {
    Kafka(KafkaConfig),
    Delta(DeltaConfig),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vault(fields: &[(&str, &str)]) -> SecretFields {
        let mut f = SecretFields::new("secret/pipectl/x");
        for (k, v) in fields {
            f.insert(*k, *v);
        }
        f
    }

    fn settings(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn jdbc_settings_override_vault_and_password_stays_secret() {
        let v = vault(&[
            ("host", "db.internal"),
            ("port", "5432"),
            ("database", "shop"),
            ("username", "app"),
            ("password", "s3cr3t-value"),
        ]);
        let s = settings(
            json!({"host": "127.0.0.1", "port": 55432, "params": {"application_name": "pipectl"}}),
        );
        let jdbc = JdbcConfig::from_sources(FieldSources::new("db", &s, Some(&v)), 5432).unwrap();
        assert_eq!(jdbc.host, "127.0.0.1");
        assert_eq!(jdbc.port, 55432);
        assert_eq!(jdbc.params["application_name"], "pipectl");
        assert_eq!(jdbc.password.expose_secret(), "s3cr3t-value");
        assert!(!format!("{jdbc:?}").contains("s3cr3t-value"));
    }

    #[test]
    fn a_password_in_the_connection_block_is_not_used() {
        let v = vault(&[("host", "h"), ("database", "d"), ("username", "u")]);
        let s = settings(json!({"password": "from-json"}));
        let err =
            JdbcConfig::from_sources(FieldSources::new("db", &s, Some(&v)), 5432).unwrap_err();
        assert_eq!(
            err.to_string(),
            "JDBC credentials at secret/pipectl/x lack the field \"password\""
        );
    }

    #[test]
    fn a_bad_port_or_tls_mode_is_named() {
        let v = vault(&[
            ("host", "h"),
            ("port", "54x"),
            ("database", "d"),
            ("username", "u"),
            ("password", "p"),
        ]);
        let s = Map::new();
        let err =
            JdbcConfig::from_sources(FieldSources::new("db", &s, Some(&v)), 5432).unwrap_err();
        assert_eq!(
            err.to_string(),
            "JDBC credentials at secret/pipectl/x: field \"port\" is not a port number (got \"54x\")"
        );
        let s = settings(json!({"port": 1, "tls_mode": "sometimes"}));
        let err =
            JdbcConfig::from_sources(FieldSources::new("db", &s, Some(&v)), 5432).unwrap_err();
        assert!(
            err.to_string().contains("must be one of disable, prefer"),
            "{err}"
        );
    }

    #[test]
    fn iam_and_kafka_and_delta() {
        let v = vault(&[
            ("access_key_id", "AKIAFAKE"),
            ("secret_access_key", "very-secret"),
            ("endpoint", "http://127.0.0.1:9000"),
        ]);
        let s = Map::new();
        let iam = IamConfig::from_sources(FieldSources::new("s3", &s, Some(&v))).unwrap();
        assert_eq!(iam.region, "us-east-1");
        assert_eq!(iam.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(!format!("{iam:?}").contains("very-secret"));

        let v = vault(&[
            ("bootstrap_servers", "a:1, b:2"),
            ("security_protocol", "sasl_ssl"),
            ("username", "u"),
        ]);
        let err = KafkaConfig::from_sources(FieldSources::new("k", &s, Some(&v))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Kafka credentials at secret/pipectl/x lack the field \"password\""
        );
        let v = vault(&[("bootstrap_servers", "a:1, b:2")]);
        let kafka = KafkaConfig::from_sources(FieldSources::new("k", &s, Some(&v))).unwrap();
        assert_eq!(kafka.bootstrap_servers, vec!["a:1", "b:2"]);
        assert!(!kafka.tls());

        let v = vault(&[("aws_secret_access_key", "very-secret")]);
        let s = settings(json!({"storage_options": {"aws_region": "eu-west-1"}}));
        let delta = DeltaConfig::from_sources(FieldSources::new("d", &s, Some(&v)));
        assert_eq!(delta.expose()["aws_region"], "eu-west-1");
        assert!(!format!("{delta:?}").contains("very-secret"));
    }

    #[test]
    fn without_vault_the_connection_is_named() {
        let s = Map::new();
        let err = IamConfig::from_sources(FieldSources::new("lake", &s, None)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "IAM credentials at connection \"lake\" (no Vault credentials) lack the field \"access_key_id\""
        );
    }
}
