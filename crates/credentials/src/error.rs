//! What can go wrong when fetching credentials. Every variant says who must act and whether a
//! retry can help; no variant ever carries a secret value or a token.

use pipeline_base::StepError;

/// A failure to fetch or interpret credentials.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// Vault could not be reached (connection refused, timeout, 5xx) even after retrying.
    #[error("Vault at {addr} is unreachable while reading {path} ({attempts} attempts): {reason}")]
    Unreachable {
        addr: String,
        path: String,
        attempts: u32,
        reason: String,
    },
    /// The token's policy does not allow the read.
    #[error("permission denied for {path}: check the token's policy")]
    PermissionDenied { path: String },
    /// Nothing is stored at the path.
    #[error("no secret at {path} (mount {mount}, KV v{version})")]
    NotFound {
        mount: String,
        path: String,
        version: u8,
    },
    /// The credentials ask for a KV version the mount does not serve.
    #[error(
        "{mount} is a KV version {actual} mount, but the credentials for {path} ask for version {asked}"
    )]
    WrongKvVersion {
        mount: String,
        path: String,
        asked: u8,
        actual: u8,
    },
    /// A field that the credential type needs is absent.
    #[error("{kind} credentials at {path} lack the field \"{field}\"")]
    FieldMissing {
        kind: &'static str,
        path: String,
        field: String,
    },
    /// A field is present but unusable (e.g. a port that is not a number). Never echoes a secret.
    #[error("{kind} credentials at {path}: field \"{field}\" {problem}")]
    FieldInvalid {
        kind: &'static str,
        path: String,
        field: String,
        problem: String,
    },
    /// Logging in failed (bad token, role id or secret id).
    #[error("Vault login at {addr} failed ({method}): {reason}")]
    Login {
        addr: String,
        method: &'static str,
        reason: String,
    },
    /// The Vault settings themselves are wrong (missing VAULT_ADDR, unreadable token file, ...).
    #[error("{0}")]
    Settings(String),
    /// Vault answered with something this client does not understand.
    #[error("unexpected answer from Vault for {path}: {reason}")]
    Protocol { path: String, reason: String },
}

impl CredentialError {
    /// Whether retrying later can help.
    pub fn retryable(&self) -> bool {
        matches!(self, CredentialError::Unreachable { .. })
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            CredentialError::Unreachable { .. } => {
                "check that Vault is running and that VAULT_ADDR points at it".into()
            }
            CredentialError::PermissionDenied { path } => {
                format!("grant the token (or AppRole role) \"read\" on {path} in its Vault policy")
            }
            CredentialError::NotFound { path, .. } => {
                format!("check the vault_path, or store the secret: vault kv put {path} ...")
            }
            CredentialError::WrongKvVersion { actual, .. } => {
                format!("set \"kv_version\": {actual} in the connection's credentials, or remove it to detect the version")
            }
            CredentialError::FieldMissing { path, field, .. } => {
                format!("add it: vault kv patch {path} {field}=...")
            }
            CredentialError::Login { method, .. } => match *method {
                "approle" => "check VAULT_ROLE_ID / VAULT_SECRET_ID (or their _FILE variants) and the AppRole mount".into(),
                _ => "check VAULT_TOKEN (or VAULT_TOKEN_FILE): the token may be expired or revoked".into(),
            },
            CredentialError::Settings(_) => {
                "set VAULT_ADDR and VAULT_TOKEN, or VAULT_ROLE_ID and VAULT_SECRET_ID for AppRole".into()
            }
            CredentialError::FieldInvalid { .. } | CredentialError::Protocol { .. } => return None,
        })
    }
}

impl From<CredentialError> for StepError {
    fn from(e: CredentialError) -> Self {
        let hint = e.hint();
        let message = e.to_string();
        let err = match &e {
            CredentialError::Unreachable { .. } => StepError::transient(message),
            CredentialError::PermissionDenied { .. }
            | CredentialError::Login { .. }
            | CredentialError::Protocol { .. } => StepError::external(message),
            _ => StepError::user(message),
        };
        match hint {
            Some(h) => err.with_hint(h),
            None => err,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline_base::ErrorClass;

    #[test]
    fn classes_follow_who_must_act() {
        let unreachable = StepError::from(CredentialError::Unreachable {
            addr: "http://127.0.0.1:1".into(),
            path: "secret/x".into(),
            attempts: 3,
            reason: "connection refused".into(),
        });
        assert!(unreachable.retryable());
        assert_eq!(unreachable.class(), ErrorClass::External);
        let denied = StepError::from(CredentialError::PermissionDenied {
            path: "secret/x".into(),
        });
        assert!(!denied.retryable());
        assert_eq!(
            denied.message(),
            "permission denied for secret/x: check the token's policy"
        );
        let missing = StepError::from(CredentialError::FieldMissing {
            kind: "JDBC",
            path: "secret/db".into(),
            field: "password".into(),
        });
        assert_eq!(missing.class(), ErrorClass::User);
    }
}
