//! The `CredentialProvider` trait, a per-run cache over any provider, and an in-memory provider
//! for unit tests.

use crate::error::CredentialError;
use crate::fields::SecretFields;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;

/// Where a secret lives: its full path (mount first) and, optionally, the KV version of the mount.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SecretRef {
    pub path: String,
    /// 1 or 2; detected from the mount when `None`.
    pub kv_version: Option<u8>,
}

impl SecretRef {
    pub fn new(path: impl Into<String>) -> Self {
        SecretRef {
            path: path.into(),
            kv_version: None,
        }
    }

    pub fn with_kv_version(mut self, version: Option<u8>) -> Self {
        self.kv_version = version;
        self
    }
}

/// Fetches the fields stored at a secret path.
#[async_trait]
pub trait CredentialProvider: Send + Sync {
    async fn fetch(&self, secret: &SecretRef) -> Result<SecretFields, CredentialError>;

    /// A short description for logs (e.g. `Vault at http://127.0.0.1:8200, AppRole`). No secrets.
    fn describe(&self) -> String;
}

/// Reads each secret once and serves it from memory afterwards: wrap the provider once per run.
/// Failed reads are not cached, so a retried attempt reads again.
pub struct CachedProvider {
    inner: Arc<dyn CredentialProvider>,
    cache: Mutex<HashMap<SecretRef, Arc<SecretFields>>>,
}

impl CachedProvider {
    pub fn new(inner: Arc<dyn CredentialProvider>) -> Self {
        CachedProvider {
            inner,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The secret's fields, read from the provider on first use.
    pub async fn get(&self, secret: &SecretRef) -> Result<Arc<SecretFields>, CredentialError> {
        // Holding the lock across the read makes concurrent callers wait for one read.
        let mut cache = self.cache.lock().await;
        if let Some(hit) = cache.get(secret) {
            return Ok(hit.clone());
        }
        let fields = Arc::new(self.inner.fetch(secret).await?);
        cache.insert(secret.clone(), fields.clone());
        Ok(fields)
    }

    pub fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// An in-memory provider for unit tests. Counts its reads.
#[derive(Default)]
pub struct StaticProvider {
    secrets: HashMap<String, Vec<(String, String)>>,
    reads: std::sync::atomic::AtomicU32,
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

    /// How many times `fetch` was called.
    pub fn reads(&self) -> u32 {
        self.reads.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[async_trait]
impl CredentialProvider for StaticProvider {
    async fn fetch(&self, secret: &SecretRef) -> Result<SecretFields, CredentialError> {
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let entries = self
            .secrets
            .get(&secret.path)
            .ok_or_else(|| CredentialError::NotFound {
                mount: secret
                    .path
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_string()
                    + "/",
                path: secret.path.clone(),
                version: secret.kv_version.unwrap_or(2),
            })?;
        let mut fields = SecretFields::new(&secret.path);
        for (k, v) in entries {
            fields.insert(k.clone(), v.clone());
        }
        Ok(fields)
    }

    fn describe(&self) -> String {
        "in-memory credentials".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_cache_reads_each_path_once() {
        let inner = Arc::new(StaticProvider::default().with("secret/a", &[("k", "v")]));
        let cached = CachedProvider::new(inner.clone());
        let a = SecretRef::new("secret/a");
        cached.get(&a).await.unwrap();
        cached.get(&a).await.unwrap();
        assert_eq!(inner.reads(), 1);
        assert!(cached.get(&SecretRef::new("secret/b")).await.is_err());
        assert!(cached.get(&SecretRef::new("secret/b")).await.is_err());
        assert_eq!(inner.reads(), 3, "failures are not cached");
    }
}
