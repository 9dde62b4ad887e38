//! The `CredentialProvider` trait and a per-run cache over any provider. Tests mock the trait
//! with mockall (`MockCredentialProvider` in this crate's tests; `mockall::mock!` elsewhere).

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
#[cfg_attr(test, mockall::automock)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use mockall::predicate::eq;

    fn fields(path: &str) -> SecretFields {
        let mut f = SecretFields::new(path);
        f.insert("k", "v");
        f
    }

    #[tokio::test]
    async fn the_cache_reads_each_path_once_and_never_caches_a_failure() {
        let mut inner = MockCredentialProvider::new();
        inner
            .expect_fetch()
            .with(eq(SecretRef::new("secret/a")))
            .times(1)
            .returning(|s| Ok(fields(&s.path)));
        inner
            .expect_fetch()
            .with(eq(SecretRef::new("secret/b")))
            .times(2)
            .returning(|s| {
                Err(CredentialError::PermissionDenied {
                    path: s.path.clone(),
                })
            });
        let cached = CachedProvider::new(Arc::new(inner));
        let a = SecretRef::new("secret/a");
        assert!(cached.get(&a).await.unwrap().get("k").is_some());
        cached.get(&a).await.unwrap();
        let b = SecretRef::new("secret/b");
        let err = cached.get(&b).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "permission denied for secret/b: check the token's policy"
        );
        assert!(
            cached.get(&b).await.is_err(),
            "read again: failures are not cached"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_readers_share_one_read() {
        let mut inner = MockCredentialProvider::new();
        inner
            .expect_fetch()
            .times(1)
            .returning(|s| Ok(fields(&s.path)));
        let cached = Arc::new(CachedProvider::new(Arc::new(inner)));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let c = cached.clone();
                tokio::spawn(async move { c.get(&SecretRef::new("secret/a")).await.map(|_| ()) })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    }
}
