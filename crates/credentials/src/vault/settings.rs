//! How to reach and log in to Vault, read from the environment with the Vault CLI's variable
//! names where one exists.
//!
//! | variable | meaning |
//! |---|---|
//! | `VAULT_ADDR` | server URL (required) |
//! | `VAULT_TOKEN` / `VAULT_TOKEN_FILE` | token auth (`~/.vault-token` when neither is set) |
//! | `VAULT_ROLE_ID` / `VAULT_ROLE_ID_FILE`, `VAULT_SECRET_ID` / `VAULT_SECRET_ID_FILE` | AppRole auth (wins over a token) |
//! | `VAULT_APPROLE_MOUNT` | AppRole mount, default `approle` |
//! | `VAULT_NAMESPACE` | Vault Enterprise / HCP namespace |
//! | `VAULT_CACERT` | PEM CA certificate for a private CA |
//! | `VAULT_KV_VERSION` | KV version when a credential does not say (otherwise detected) |
//! | `VAULT_MAX_RETRIES` | retries of an unreachable Vault inside a step, default 3 |
//!
//! Skipping TLS verification is not read from the environment: only the explicit
//! `--vault-skip-tls-verify` flag (local development) sets it, and it logs a warning.

use crate::error::CredentialError;
use secrecy::SecretString;
use std::path::PathBuf;
use std::time::Duration;

/// How pipectl logs in to Vault.
#[derive(Debug, Clone)]
pub enum VaultAuth {
    Token(SecretString),
    AppRole {
        mount: String,
        role_id: SecretString,
        secret_id: SecretString,
    },
}

impl VaultAuth {
    pub fn method(&self) -> &'static str {
        match self {
            VaultAuth::Token(_) => "token",
            VaultAuth::AppRole { .. } => "approle",
        }
    }
}

/// Retries of an unreachable Vault: `attempts` tries, waiting `base`, 2×`base`, ... (at most `max`).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            attempts: 4,
            base: Duration::from_millis(250),
            max: Duration::from_secs(4),
        }
    }
}

impl Backoff {
    /// The wait before try number `n + 1` (n starts at 1).
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32 << n.saturating_sub(1).min(16);
        (self.base * factor).min(self.max)
    }
}

/// Everything needed to talk to Vault.
#[derive(Debug, Clone)]
pub struct VaultSettings {
    pub addr: String,
    pub auth: VaultAuth,
    pub namespace: Option<String>,
    pub ca_cert: Option<PathBuf>,
    /// Local development only: accept any TLS certificate (logs a warning).
    pub skip_tls_verify: bool,
    /// KV version to use when a credential does not name one and detection is impossible.
    pub default_kv_version: Option<u8>,
    pub backoff: Backoff,
    pub request_timeout: Duration,
}

impl VaultSettings {
    /// Token auth against `addr`, defaults for the rest.
    pub fn token(addr: &str, token: &str) -> Self {
        VaultSettings {
            addr: addr.trim_end_matches('/').to_string(),
            auth: VaultAuth::Token(SecretString::from(token.to_string())),
            namespace: None,
            ca_cert: None,
            skip_tls_verify: false,
            default_kv_version: None,
            backoff: Backoff::default(),
            request_timeout: Duration::from_secs(10),
        }
    }

    /// Settings from the process environment; `None` when `VAULT_ADDR` is not set.
    pub fn from_env() -> Result<Option<Self>, CredentialError> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Settings from any variable lookup (tests pass a map).
    pub fn from_lookup(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, CredentialError> {
        let Some(addr) = var("VAULT_ADDR") else {
            return Ok(None);
        };
        if !(addr.starts_with("http://") || addr.starts_with("https://")) {
            return Err(CredentialError::Settings(format!(
                "VAULT_ADDR must start with http:// or https:// (got \"{addr}\")"
            )));
        }
        let auth = match secret_var(&var, "VAULT_ROLE_ID")? {
            Some(role_id) => {
                let secret_id = secret_var(&var, "VAULT_SECRET_ID")?.ok_or_else(|| {
                    CredentialError::Settings(
                        "VAULT_ROLE_ID is set but VAULT_SECRET_ID (or VAULT_SECRET_ID_FILE) is not"
                            .into(),
                    )
                })?;
                VaultAuth::AppRole {
                    mount: var("VAULT_APPROLE_MOUNT").unwrap_or_else(|| "approle".into()),
                    role_id,
                    secret_id,
                }
            }
            None => match secret_var(&var, "VAULT_TOKEN")? {
                Some(t) => VaultAuth::Token(t),
                None => {
                    let home = var("HOME").map(PathBuf::from);
                    match home.map(|h| h.join(".vault-token")).filter(|p| p.is_file()) {
                        Some(p) => VaultAuth::Token(read_secret_file(&p, "~/.vault-token")?),
                        None => {
                            return Err(CredentialError::Settings(
                                "VAULT_ADDR is set but no Vault login is: set VAULT_TOKEN or VAULT_TOKEN_FILE, or VAULT_ROLE_ID and VAULT_SECRET_ID for AppRole".into(),
                            ));
                        }
                    }
                }
            },
        };
        let default_kv_version = match var("VAULT_KV_VERSION").as_deref() {
            None => None,
            Some("1") => Some(1),
            Some("2") => Some(2),
            Some(other) => {
                return Err(CredentialError::Settings(format!(
                    "VAULT_KV_VERSION must be 1 or 2 (got \"{other}\")"
                )));
            }
        };
        let mut backoff = Backoff::default();
        if let Some(n) = var("VAULT_MAX_RETRIES") {
            let retries: u32 = n.parse().map_err(|_| {
                CredentialError::Settings(format!(
                    "VAULT_MAX_RETRIES must be a whole number (got \"{n}\")"
                ))
            })?;
            backoff.attempts = retries + 1;
        }
        let mut settings = VaultSettings::token(&addr, "");
        settings.auth = auth;
        settings.namespace = var("VAULT_NAMESPACE");
        settings.ca_cert = var("VAULT_CACERT").map(PathBuf::from);
        settings.default_kv_version = default_kv_version;
        settings.backoff = backoff;
        Ok(Some(settings))
    }
}

/// `NAME` or the contents of the file named by `NAME_FILE`.
fn secret_var(
    var: &impl Fn(&str) -> Option<String>,
    name: &str,
) -> Result<Option<SecretString>, CredentialError> {
    if let Some(v) = var(name) {
        return Ok(Some(SecretString::from(v)));
    }
    let file_var = format!("{name}_FILE");
    match var(&file_var) {
        Some(path) => read_secret_file(&PathBuf::from(path), &file_var).map(Some),
        None => Ok(None),
    }
}

fn read_secret_file(path: &PathBuf, what: &str) -> Result<SecretString, CredentialError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CredentialError::Settings(format!("cannot read {what} ({}): {e}", path.display()))
    })?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(CredentialError::Settings(format!(
            "{what} ({}) is empty",
            path.display()
        )));
    }
    Ok(SecretString::from(trimmed.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn no_addr_means_no_vault() {
        assert!(VaultSettings::from_lookup(lookup(&[])).unwrap().is_none());
    }

    #[test]
    fn approle_wins_over_token_and_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret_id");
        std::fs::write(&secret, "sid-123\n").unwrap();
        let s = VaultSettings::from_lookup(lookup(&[
            ("VAULT_ADDR", "http://127.0.0.1:8200/"),
            ("VAULT_TOKEN", "t"),
            ("VAULT_ROLE_ID", "rid"),
            ("VAULT_SECRET_ID_FILE", secret.to_str().unwrap()),
            ("VAULT_NAMESPACE", "team-a"),
            ("VAULT_KV_VERSION", "1"),
            ("VAULT_MAX_RETRIES", "0"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(s.addr, "http://127.0.0.1:8200");
        assert_eq!(s.auth.method(), "approle");
        assert_eq!(s.namespace.as_deref(), Some("team-a"));
        assert_eq!(s.default_kv_version, Some(1));
        assert_eq!(s.backoff.attempts, 1);
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("sid-123") && !shown.contains("rid\""),
            "{shown}"
        );
    }

    #[test]
    fn bad_settings_are_explained() {
        let e =
            VaultSettings::from_lookup(lookup(&[("VAULT_ADDR", "127.0.0.1:8200")])).unwrap_err();
        assert!(e.to_string().contains("must start with http://"));
        let e = VaultSettings::from_lookup(lookup(&[
            ("VAULT_ADDR", "http://x"),
            ("VAULT_ROLE_ID", "r"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("VAULT_SECRET_ID"));
        let e = VaultSettings::from_lookup(lookup(&[
            ("VAULT_ADDR", "http://x"),
            ("VAULT_TOKEN_FILE", "/nonexistent/token"),
        ]))
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot read VAULT_TOKEN_FILE (/nonexistent/token)")
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = Backoff::default();
        assert_eq!(b.delay(1), Duration::from_millis(250));
        assert_eq!(b.delay(2), Duration::from_millis(500));
        assert_eq!(b.delay(10), Duration::from_secs(4));
    }
}
