//! The production [`CredentialProvider`]: Vault's HTTP API over `reqwest` (async, rustls).
//!
//! KV v1 and v2 at any mount. The version comes from the credential (`kv_version`), else
//! `VAULT_KV_VERSION`, else the mount (`sys/internal/ui/mounts/PATH`, then `sys/mounts`), else
//! KV v2 with a fall-back to v1 when the v2 read finds nothing. A version the credential names
//! but the mount does not serve is an error that says which.
//!
//! Why not a Vault client crate: `vaultrs` fails to parse answers without `request_id` (the
//! Vault-API server of the local environment omits it) and `hashicorp_vault` is blocking, KV v2
//! only and hard-wires the AppRole path. The API surface needed here is five endpoints.

mod auth;
mod http;
pub mod settings;

use crate::error::CredentialError;
use crate::fields::SecretFields;
use crate::provider::{CredentialProvider, SecretRef};
use async_trait::async_trait;
use auth::Auth;
use http::{Http, Reply};
use reqwest::{Method, StatusCode};
use serde_json::Value;
pub use settings::{Backoff, VaultAuth, VaultSettings};
use std::sync::Mutex;

/// A KV mount and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    /// With a trailing slash: `secret/`.
    path: String,
    version: u8,
}

/// Whether `addr` is `http://` to a host other than this machine (loopback is fine: a local
/// development server).
fn plain_http_off_host(addr: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(addr) else {
        return false;
    };
    if url.scheme() != "http" {
        return false;
    }
    match url.host_str() {
        Some("localhost") | None => false,
        Some(host) => !host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
    }
}

/// Reads secrets from Vault.
pub struct VaultProvider {
    http: Http,
    auth: Auth,
    default_kv_version: Option<u8>,
    mounts: Mutex<Vec<Mount>>,
    addr: String,
}

enum Read {
    Found(SecretFields),
    Missing,
    /// A KV v2 mount answered a v1-style read (Vault says "Invalid path for a versioned K/V").
    VersionedPath,
}

impl VaultProvider {
    pub fn new(settings: VaultSettings) -> Result<Self, CredentialError> {
        if plain_http_off_host(&settings.addr) {
            tracing::warn!(vault_addr = %settings.addr, "VAULT_ADDR is plain http:// to another host: tokens and secrets cross the network unencrypted; use https://");
        }
        Ok(VaultProvider {
            http: Http::new(&settings)?,
            auth: Auth::new(settings.auth.clone()),
            default_kv_version: settings.default_kv_version,
            mounts: Mutex::new(Vec::new()),
            addr: settings.addr,
        })
    }

    /// From the environment; `None` when VAULT_ADDR is not set.
    pub fn from_env(skip_tls_verify: bool) -> Result<Option<Self>, CredentialError> {
        match VaultSettings::from_env()? {
            None => Ok(None),
            Some(mut s) => {
                s.skip_tls_verify = skip_tls_verify;
                Self::new(s).map(Some)
            }
        }
    }

    /// AppRole logins so far.
    pub fn logins(&self) -> u32 {
        self.auth.logins()
    }

    /// An authenticated call; a refused AppRole token triggers one new login.
    async fn authed(
        &self,
        method: Method,
        path: &str,
        what: &str,
    ) -> Result<Reply, CredentialError> {
        let token = self.auth.token(&self.http, what).await?;
        let reply = self
            .http
            .call(method.clone(), path, None, Some(&token), what)
            .await?;
        if reply.status == StatusCode::FORBIDDEN && self.auth.refused(&self.http, what).await? {
            let token = self.auth.token(&self.http, what).await?;
            return self.http.call(method, path, None, Some(&token), what).await;
        }
        Ok(reply)
    }

    fn known_mount(&self, path: &str) -> Option<Mount> {
        let mounts = self.mounts.lock().unwrap_or_else(|p| p.into_inner());
        mounts
            .iter()
            .filter(|m| format!("{path}/").starts_with(&m.path))
            .max_by_key(|m| m.path.len())
            .cloned()
    }

    fn remember(&self, mount: Mount) {
        let mut mounts = self.mounts.lock().unwrap_or_else(|p| p.into_inner());
        mounts.retain(|m| m.path != mount.path);
        mounts.push(mount);
    }

    /// The mount holding `path`, from Vault when it says; `None` when the token may not ask.
    async fn detect_mount(&self, path: &str) -> Result<Option<Mount>, CredentialError> {
        if let Some(m) = self.known_mount(path) {
            return Ok(Some(m));
        }
        // Vault's own CLI asks this endpoint; any token that can read the path may call it.
        let reply = self
            .authed(Method::GET, &format!("sys/internal/ui/mounts/{path}"), path)
            .await?;
        if reply.status.is_success()
            && let Some(m) = mount_of(&reply.body["data"], None)
        {
            self.remember(m.clone());
            return Ok(Some(m));
        }
        let reply = self.authed(Method::GET, "sys/mounts", path).await?;
        if reply.status.is_success() {
            let table = reply
                .body
                .get("data")
                .filter(|d| d.is_object())
                .unwrap_or(&reply.body);
            if let Some(map) = table.as_object() {
                let wanted = format!("{path}/");
                let best = map
                    .iter()
                    .filter(|(k, _)| wanted.starts_with(k.as_str()))
                    .max_by_key(|(k, _)| k.len());
                if let Some((k, info)) = best
                    && let Some(m) = mount_of(info, Some(k))
                {
                    self.remember(m.clone());
                    return Ok(Some(m));
                }
            }
        }
        Ok(None)
    }

    async fn read(
        &self,
        mount: &str,
        rest: &str,
        version: u8,
        what: &str,
    ) -> Result<Read, CredentialError> {
        let api_path = match version {
            2 => format!("{mount}data/{rest}"),
            _ => format!("{mount}{rest}"),
        };
        let reply = self.authed(Method::GET, &api_path, what).await?;
        match reply.status {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND if version == 1 && reply.warnings().contains("versioned") => {
                return Ok(Read::VersionedPath);
            }
            StatusCode::NOT_FOUND => return Ok(Read::Missing),
            StatusCode::FORBIDDEN => {
                return Err(CredentialError::PermissionDenied {
                    path: what.to_string(),
                });
            }
            _ => {
                return Err(CredentialError::Protocol {
                    path: what.to_string(),
                    reason: reply.reason(),
                });
            }
        }
        let data = match version {
            2 => &reply.body["data"]["data"],
            _ => &reply.body["data"],
        };
        let Some(map) = data.as_object() else {
            // KV v2 answers a deleted version with `data: null`.
            if version == 2 && data.is_null() && reply.body["data"].get("metadata").is_some() {
                return Ok(Read::Missing);
            }
            return Err(CredentialError::Protocol {
                path: what.to_string(),
                reason: format!("no KV v{version} data object in the answer"),
            });
        };
        let mut fields = SecretFields::new(what);
        for (k, v) in map {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            fields.insert(k.clone(), text);
        }
        Ok(Read::Found(fields))
    }
}

/// A KV mount from a mount description (`{"type": "kv", "options": {"version": "2"}}`).
fn mount_of(info: &Value, key: Option<&str>) -> Option<Mount> {
    let kind = info.get("type").and_then(Value::as_str)?;
    if kind != "kv" && kind != "generic" {
        return None;
    }
    let path = key
        .map(str::to_string)
        .or_else(|| info.get("path").and_then(Value::as_str).map(str::to_string))?;
    let version = match info["options"].get("version") {
        Some(Value::String(v)) if v == "2" => 2,
        Some(Value::Number(n)) if n.as_u64() == Some(2) => 2,
        _ => 1,
    };
    let path = if path.ends_with('/') {
        path
    } else {
        format!("{path}/")
    };
    Some(Mount { path, version })
}

#[async_trait]
impl CredentialProvider for VaultProvider {
    async fn fetch(&self, secret: &SecretRef) -> Result<SecretFields, CredentialError> {
        let path = secret.path.trim_matches('/').to_string();
        if !path.contains('/') {
            return Err(CredentialError::Settings(format!(
                "vault_path \"{path}\" names no secret under a mount: write it as MOUNT/PATH, e.g. secret/pipelines/shop_db"
            )));
        }
        let asked = secret.kv_version.or(self.default_kv_version);
        let detected = self.detect_mount(&path).await?;
        if let (Some(asked), Some(m)) = (secret.kv_version, &detected)
            && asked != m.version
        {
            return Err(CredentialError::WrongKvVersion {
                mount: m.path.clone(),
                path,
                asked,
                actual: m.version,
            });
        }
        let mount = detected
            .as_ref()
            .map(|m| m.path.clone())
            .unwrap_or_else(|| format!("{}/", path.split('/').next().unwrap_or_default()));
        let rest = path[mount.len()..].to_string();
        let version = detected.as_ref().map(|m| m.version).or(asked).unwrap_or(2);
        let not_found = |version| CredentialError::NotFound {
            mount: mount.clone(),
            path: path.clone(),
            version,
        };
        match self.read(&mount, &rest, version, &path).await? {
            Read::Found(f) => return Ok(f),
            Read::Missing if detected.is_some() => return Err(not_found(version)),
            Read::Missing | Read::VersionedPath => {}
        }
        // The version was given (or defaulted) without the mount's word: ask the other one.
        let other = if version == 2 { 1 } else { 2 };
        match self.read(&mount, &rest, other, &path).await? {
            Read::Found(f) if asked.is_none() => {
                self.remember(Mount {
                    path: mount.clone(),
                    version: other,
                });
                Ok(f)
            }
            Read::Found(_) => Err(CredentialError::WrongKvVersion {
                mount,
                path,
                asked: version,
                actual: other,
            }),
            Read::VersionedPath => Err(CredentialError::WrongKvVersion {
                mount,
                path,
                asked: version,
                actual: 2,
            }),
            Read::Missing => Err(not_found(version)),
        }
    }

    fn describe(&self) -> String {
        format!("Vault at {} ({} auth)", self.addr, self.auth.method())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_http_is_flagged_off_this_machine_only() {
        assert!(plain_http_off_host("http://vault.internal:8200"));
        assert!(plain_http_off_host("http://10.0.0.5:8200"));
        assert!(!plain_http_off_host("http://127.0.0.1:8200"));
        assert!(!plain_http_off_host("http://localhost:8200"));
        assert!(!plain_http_off_host("http://[::1]:8200"));
        assert!(!plain_http_off_host("https://vault.internal:8200"));
    }

    #[test]
    fn mounts_are_read_from_both_answer_shapes() {
        let ui = json!({"path": "secret/", "type": "kv", "options": {"version": "2"}});
        assert_eq!(
            mount_of(&ui, None),
            Some(Mount {
                path: "secret/".into(),
                version: 2
            })
        );
        let listed = json!({"type": "kv", "options": null});
        assert_eq!(
            mount_of(&listed, Some("kv1")),
            Some(Mount {
                path: "kv1/".into(),
                version: 1
            })
        );
        assert_eq!(mount_of(&json!({"type": "pki"}), Some("pki/")), None);
    }

    #[test]
    fn a_bad_ca_certificate_or_vault_path_is_explained() {
        let mut s = VaultSettings::token("https://vault.example:8200", "t");
        s.ca_cert = Some("/nonexistent/ca.pem".into());
        let err = VaultProvider::new(s).err().unwrap();
        assert!(
            err.to_string()
                .starts_with("cannot read VAULT_CACERT (/nonexistent/ca.pem)"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("ca.pem");
        std::fs::write(&pem, "not a certificate").unwrap();
        let mut s = VaultSettings::token("https://vault.example:8200", "t");
        s.ca_cert = Some(pem);
        assert!(VaultProvider::new(s).is_err());
    }

    #[tokio::test]
    async fn a_path_without_a_mount_is_refused_before_any_request() {
        let vault = VaultProvider::new(VaultSettings::token("http://127.0.0.1:1", "t")).unwrap();
        let err = vault.fetch(&SecretRef::new("postgres")).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("vault_path \"postgres\" names no secret under a mount"),
            "{err}"
        );
    }
}
