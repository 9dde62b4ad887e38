//! Credentials for connections. Pipeline files only say where a secret lives (a Vault path);
//! a [`CredentialProvider`] fetches its fields ([`VaultProvider`] in production), a
//! [`CachedProvider`] reads each path once per run, and the typed configs ([`JdbcConfig`],
//! [`IamConfig`], [`OtherConfig`]) combine those fields with the connection block's non-secret
//! settings. Secret values live in [`secrecy::SecretString`]: redacted in `Debug`, zeroed on
//! drop, never in an error message.

mod error;
mod fields;
mod provider;
mod typed;
pub mod vault;

pub use error::CredentialError;
pub use fields::SecretFields;
pub use provider::{CachedProvider, CredentialProvider, SecretRef};
pub use secrecy::{ExposeSecret, SecretString};
pub use typed::{DeltaConfig, FieldSources, IamConfig, JdbcConfig, KafkaConfig, OtherConfig};
pub use vault::{VaultProvider, VaultSettings};
