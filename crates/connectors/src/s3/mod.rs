//! Amazon S3 and S3-compatible stores: clients built from IAMConfig (Vault) and the
//! connection's settings, and the connection check. Reads and writes live in `source`/`sink`.

mod format;
mod read;
mod sink;
#[cfg(test)]
mod sink_faults;
#[cfg(test)]
mod sink_stream_tests;
mod source;
mod target;
mod upload;

pub use format::{FileFormat, ParquetCompression};
pub use sink::{ObjectWriteMode, S3LoadOptions};
pub use source::S3ExtractOptions;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{ObjectStore, path::Path};
use pipeline_base::StepError;
use pipeline_credentials::{ExposeSecret, IamConfig};
use pipeline_data::ConnectionSetup;

/// A client for one bucket.
pub(crate) fn store(setup: &ConnectionSetup, bucket: &str) -> Result<AmazonS3, StepError> {
    let iam = IamConfig::from_sources(setup.sources())
        .map_err(|e| StepError::from(e).context(format!("connection \"{}\"", setup.name)))?;
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(&iam.region)
        .with_access_key_id(iam.access_key_id.expose_secret())
        .with_secret_access_key(iam.secret_access_key.expose_secret());
    if let Some(token) = &iam.session_token {
        builder = builder.with_token(token.expose_secret());
    }
    if let Some(endpoint) = &iam.endpoint {
        // S3-compatible servers: path-style addressing unless the connection says otherwise.
        let path_style = setup
            .config
            .settings
            .get("path_style")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(true);
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(!path_style);
    }
    builder.build().map_err(|e| {
        StepError::user(format!(
            "connection \"{}\": cannot set up S3 for bucket \"{bucket}\": {e}",
            setup.name
        ))
    })
}

/// Classifies an object-store error for `what` (e.g. `writing s3://b/k`).
pub(crate) fn store_error(e: object_store::Error, what: &str) -> StepError {
    match e {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => {
            StepError::external(format!("{what}: {e}"))
                .with_hint("check the access keys stored in Vault and the bucket's policy")
        }
        object_store::Error::NotFound { .. }
        | object_store::Error::Precondition { .. }
        | object_store::Error::AlreadyExists { .. }
        | object_store::Error::InvalidPath { .. }
        | object_store::Error::NotSupported { .. }
            if !bucket_missing(&e.to_string()) =>
        {
            StepError::user(format!("{what}: {e}"))
        }
        other => classify(format!("{what}: {other}"), what),
    }
}

fn bucket_missing(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("nosuchbucket") || lower.contains("bucket does not exist")
}

/// Classifies an error by its text (errors that wrap object-store errors lose their type).
pub(crate) fn classify(text: String, what: &str) -> StepError {
    if bucket_missing(&text) {
        return StepError::user(format!("{what}: the bucket does not exist"))
            .with_hint("create the bucket, or fix the bucket name in the path");
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("accessdenied")
        || lower.contains("forbidden")
        || lower.contains("invalidaccesskeyid")
        || lower.contains("signaturedoesnotmatch")
    {
        return StepError::external(text)
            .with_hint("check the access keys stored in Vault and the bucket's policy");
    }
    // Only what a retry can get past is retried: the network, timeouts, throttling and the
    // server's own 5xx errors. Anything else is the server's answer, and asking again will not
    // change it.
    const TRANSIENT: &[&str] = &[
        "connection",
        "timed out",
        "timeout",
        "reset",
        "broken pipe",
        "error sending request",
        "dns",
        "slowdown",
        "slow down",
        "throttl",
        "internalerror",
        "serviceunavailable",
        "service unavailable",
        "500 internal",
        "502",
        "503",
        "504",
        "after retries",
        "retries exhausted",
        "max retries",
    ];
    if TRANSIENT.iter().any(|t| lower.contains(t)) {
        StepError::transient(text)
    } else {
        StepError::external(text)
    }
}

/// `validate --connect`: list one key of the connection's bucket.
pub(crate) async fn check(setup: ConnectionSetup) -> Result<String, StepError> {
    let Some(bucket) = setup
        .config
        .settings
        .get("bucket")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
    else {
        // Still prove the credentials are complete.
        store(&setup, "unnamed")?;
        return Ok("S3 credentials complete (no \"bucket\" in the connection to list)".into());
    };
    let s3 = store(&setup, &bucket)?;
    use futures::TryStreamExt;
    let listed = s3
        .list_with_delimiter(Some(&Path::from("")))
        .await
        .map_err(|e| store_error(e, &format!("listing s3://{bucket}")));
    let listed = match listed {
        Ok(l) => l,
        Err(e) => {
            // Some servers refuse delimiter listings on an empty prefix; try a plain list.
            let mut stream = s3.list(None);
            match stream.try_next().await {
                Ok(_) => return Ok(format!("S3 bucket s3://{bucket} is readable")),
                Err(_) => return Err(e),
            }
        }
    };
    let mut out = format!(
        "S3 bucket s3://{bucket}: {} prefixes, {} objects at the top",
        listed.common_prefixes.len(),
        listed.objects.len()
    );
    // Delta steps may use an s3 connection: open their tables too.
    if setup.uses.iter().any(|u| u.method == "delta") {
        let options = crate::delta::connection_storage(&setup)?;
        for line in crate::delta::check_tables(&setup, &options).await? {
            out.push_str("; ");
            out.push_str(&line);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod classify_tests {
    use super::classify;

    #[test]
    fn only_what_a_retry_can_fix_is_retried() {
        for transient in [
            "error sending request for url (http://127.0.0.1:1/): Connection refused",
            "HTTP error: 503 Service Unavailable",
            "SlowDown: reduce your request rate",
            "operation timed out",
        ] {
            assert!(classify(transient.into(), "x").retryable(), "{transient}");
        }
        for final_answer in [
            "InvalidArgument: the part is too small",
            "Client error with status 400 Bad Request: MalformedXML",
            "something nobody has seen before",
        ] {
            assert!(
                !classify(final_answer.into(), "x").retryable(),
                "{final_answer}"
            );
        }
        assert!(classify("AccessDenied".into(), "x").hint().is_some());
    }
}
