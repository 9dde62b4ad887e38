//! Where a Delta table lives: `s3://` (and `s3a://`) tables go through pipectl's own object_store
//! S3 client, registered with deltalake once per process, instead of deltalake's `s3` feature.
//!
//! Commits write `_delta_log/N.json` with a conditional put (`If-None-Match: *`, object_store's
//! default `ETagMatch` mode), so two writers racing for one version cannot both win and no lock
//! service (DynamoDB) is needed. Settings that would turn that off or fall back to unsafe
//! renames are refused with a message saying why. Credentials come from the step's connection:
//! a `delta` connection's storage options (Vault fields + `storage_options`), or an `s3`
//! connection's IAM keys, region and endpoint; without keys the AWS chain object_store knows
//! applies (environment, web identity, container credentials, instance metadata).

use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories, object_store_factories,
};
use deltalake::{DeltaResult, DeltaTableError, Path};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use pipeline_base::StepError;
use pipeline_credentials::{DeltaConfig, ExposeSecret, IamConfig};
use pipeline_data::{ConnectionSetup, StepSetup};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Once};
use url::Url;

/// Options that belong to deltalake's own S3 log stores (DynamoDB locking, unsafe renames):
/// pipectl commits with conditional writes, which need neither.
const LOCKING_KEYS: &[&str] = &[
    "aws_s3_locking_provider",
    "aws_s3_allow_unsafe_rename",
    "delta_dynamo_table_name",
    "dynamo_lock_table_name",
    "aws_copy_if_not_exists",
    "copy_if_not_exists",
];

/// Keys the seeded and older connection files carry that say nothing to the S3 client.
const IGNORED_KEYS: &[&str] = &["storage_backend"];

/// Registers the `s3://` and `s3a://` handlers with deltalake (idempotent).
pub(crate) fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for scheme in ["s3://", "s3a://"] {
            let Ok(url) = Url::parse(scheme) else {
                continue;
            };
            object_store_factories().insert(url.clone(), Arc::new(S3StoreFactory));
            logstore_factories().insert(url, Arc::new(ConditionalPutLogStores));
        }
    });
}

/// Refuses settings under which a commit would no longer be a conditional write.
pub(crate) fn check_safe(options: &HashMap<String, String>) -> Result<(), StepError> {
    for (key, value) in options {
        let k = key.to_ascii_lowercase();
        if LOCKING_KEYS.contains(&k.as_str()) {
            return Err(StepError::user(format!(
                "Delta storage option \"{key}\" selects a lock service or rename-based commits, which pipectl does not use"
            ))
            .with_hint("remove it: pipectl commits to S3 with conditional writes (If-None-Match), safe for concurrent writers without DynamoDB"));
        }
        if matches!(k.as_str(), "aws_conditional_put" | "conditional_put")
            && value.eq_ignore_ascii_case("disabled")
        {
            return Err(StepError::user(format!(
                "Delta storage option \"{key}\": \"disabled\" would let two writers overwrite each other's commit"
            ))
            .with_hint("remove it; the store must support conditional writes (AWS S3, MinIO, moto and most S3-compatible servers do)"));
        }
    }
    Ok(())
}

/// The storage options of a step: a `delta` connection's fields, or an `s3` connection's
/// IAM credentials mapped to object_store's keys. Checked by [`check_safe`].
pub(crate) fn storage_options(setup: &StepSetup) -> Result<HashMap<String, String>, StepError> {
    match setup.connection_setup() {
        Ok(conn) => connection_storage(&conn),
        Err(_) => Ok(HashMap::new()),
    }
}

/// The storage options a connection gives a Delta table (see [`storage_options`]).
pub(crate) fn connection_storage(
    conn: &ConnectionSetup,
) -> Result<HashMap<String, String>, StepError> {
    let options = if conn.config.system == "s3" {
        let iam = IamConfig::from_sources(conn.sources())
            .map_err(|e| StepError::from(e).context(format!("connection \"{}\"", conn.name)))?;
        let mut o = HashMap::from([
            (
                "aws_access_key_id".to_string(),
                iam.access_key_id.expose_secret().to_string(),
            ),
            (
                "aws_secret_access_key".to_string(),
                iam.secret_access_key.expose_secret().to_string(),
            ),
            ("aws_region".to_string(), iam.region.clone()),
        ]);
        if let Some(token) = &iam.session_token {
            o.insert(
                "aws_session_token".into(),
                token.expose_secret().to_string(),
            );
        }
        if let Some(endpoint) = &iam.endpoint {
            o.insert("aws_endpoint_url".into(), endpoint.clone());
            let path_style = conn
                .config
                .settings
                .get("path_style")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(true);
            o.insert(
                "aws_virtual_hosted_style_request".into(),
                (!path_style).to_string(),
            );
        }
        o
    } else {
        DeltaConfig::from_sources(conn.sources()).expose()
    };
    check_safe(&options)?;
    Ok(options)
}

/// Builds the bucket's client from the storage options (on top of the AWS environment).
fn s3_client(url: &Url, options: &HashMap<String, String>) -> DeltaResult<ObjectStoreRef> {
    let bucket = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| DeltaTableError::InvalidTableLocation(format!("{url}: no bucket")))?;
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    let mut http_endpoint = false;
    for (key, value) in options {
        let k = key.to_ascii_lowercase();
        if IGNORED_KEYS.contains(&k.as_str()) {
            continue;
        }
        match AmazonS3ConfigKey::from_str(&k) {
            Ok(AmazonS3ConfigKey::Bucket) => {}
            Ok(config) => {
                if config == AmazonS3ConfigKey::Endpoint && value.starts_with("http://") {
                    http_endpoint = true;
                }
                builder = builder.with_config(config, value.as_str());
            }
            // deltalake's own settings (timeouts, request limits, IO runtime) are not the
            // client's; anything else is logged once so a typo is not silent.
            Err(_) if is_deltalake_setting(&k) => {}
            Err(_) => tracing::warn!(option = %key, "unknown Delta storage option ignored"),
        }
    }
    if http_endpoint {
        builder = builder.with_allow_http(true);
    }
    let store = builder
        .build()
        .map_err(|e| DeltaTableError::Generic(format!("setting up S3 for {url}: {e}")))?;
    Ok(Arc::new(store))
}

fn is_deltalake_setting(key: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "max_retries",
        "retry_",
        "timeout",
        "connect_timeout",
        "pool_",
    ];
    key.starts_with("object_store_")
        || key.starts_with("mount_")
        || key.starts_with("concurrency")
        || PREFIXES.iter().any(|p| key.starts_with(p))
}

/// deltalake's object-store factory for `s3://`: the bucket's client and the path inside it.
struct S3StoreFactory;

impl ObjectStoreFactory for S3StoreFactory {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, Path)> {
        let store = s3_client(url, &config.raw)?;
        let path = Path::parse(url.path()).map_err(|e| DeltaTableError::GenericError {
            source: Box::new(e),
        })?;
        Ok((store, path))
    }
}

/// deltalake's log-store factory for `s3://`: the default log store, whose commits are
/// `PutMode::Create` (a conditional put) on the client above.
struct ConditionalPutLogStores;

impl LogStoreFactory for ConditionalPutLogStores {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn lock_services_and_disabled_conditional_puts_are_refused() {
        for (k, v) in [
            ("AWS_S3_LOCKING_PROVIDER", "dynamodb"),
            ("aws_s3_allow_unsafe_rename", "true"),
            ("delta_dynamo_table_name", "locks"),
            ("aws_conditional_put", "disabled"),
        ] {
            let e = check_safe(&opts(&[(k, v)])).unwrap_err();
            assert!(e.message().contains(k), "{}", e.message());
            assert_eq!(e.class(), pipeline_base::ErrorClass::User);
        }
        assert!(check_safe(&opts(&[("aws_conditional_put", "etag")])).is_ok());
        assert!(check_safe(&opts(&[("aws_region", "eu-west-1")])).is_ok());
    }

    #[test]
    fn s3_urls_are_handled_after_registration() {
        register();
        register();
        let url = Url::parse("s3://bucket/some/table").unwrap();
        let config = StorageConfig::parse_options(opts(&[
            ("aws_access_key_id", "k"),
            ("aws_secret_access_key", "s"),
            ("aws_endpoint_url", "http://127.0.0.1:1"),
            ("storage_backend", "s3"),
        ]))
        .unwrap();
        let (_, path) = S3StoreFactory.parse_url_opts(&url, &config).unwrap();
        assert_eq!(path.as_ref(), "some/table");
        assert!(deltalake::logstore::logstore_for(&url, config).is_ok());
        let no_bucket = Url::parse("s3:///t").unwrap();
        assert!(s3_client(&no_bucket, &HashMap::new()).is_err());
    }
}
