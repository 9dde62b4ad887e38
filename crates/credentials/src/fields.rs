//! `SecretFields`: the fields stored at one secret path, each held as a secret until a typed
//! config decides it is a plain setting (a host, a port).

use crate::error::CredentialError;
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;
use std::fmt;

/// The fields stored at one secret path. `Debug` lists the field names only.
#[derive(Default, Clone)]
pub struct SecretFields {
    path: String,
    values: BTreeMap<String, SecretString>,
}

impl SecretFields {
    /// An empty set for the secret at `path` (the path is named in errors).
    pub fn new(path: impl Into<String>) -> Self {
        SecretFields {
            path: path.into(),
            values: BTreeMap::new(),
        }
    }

    /// Where the fields were read from.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.values
            .insert(key.into(), SecretString::from(value.into()));
    }

    pub fn get(&self, key: &str) -> Option<&SecretString> {
        self.values.get(key)
    }

    /// A required secret field, or an error naming it and the credential type that needs it.
    pub fn require(&self, key: &str, kind: &'static str) -> Result<SecretString, CredentialError> {
        self.values
            .get(key)
            .cloned()
            .ok_or_else(|| CredentialError::FieldMissing {
                kind,
                path: self.path.clone(),
                field: key.to_string(),
            })
    }

    /// A non-secret field as plain text.
    pub fn plain(&self, key: &str) -> Option<String> {
        self.values.get(key).map(|s| s.expose_secret().to_string())
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Every field with its secret value, for maps handed on whole (Delta storage options).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &SecretString)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl fmt::Debug for SecretFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self.keys().collect();
        write!(
            f,
            "SecretFields({}: {} = [REDACTED])",
            self.path,
            keys.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_names_fields_not_values() {
        let mut f = SecretFields::new("secret/db");
        f.insert("password", "hunter2-value");
        let shown = format!("{f:?}");
        assert!(shown.contains("password"));
        assert!(!shown.contains("hunter2-value"));
    }

    #[test]
    fn require_names_field_kind_and_path() {
        let f = SecretFields::new("secret/db");
        let err = f.require("password", "JDBC").unwrap_err();
        assert_eq!(
            err.to_string(),
            "JDBC credentials at secret/db lack the field \"password\""
        );
    }
}
