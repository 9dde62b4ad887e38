//! TLS to the brokers (`SSL`, `SASL_SSL`): rustls with the ring provider, the CA roots of
//! `ca_cert` or the system, and `tls_mode` `verify-full` (the default: chain and host name, as
//! the Java client's https endpoint identification), `verify-ca` (the chain only; needs
//! `ca_cert`) or `require` (encrypted, unverified).

use crate::tls::{Relaxed, provider, roots};
use pipeline_base::StepError;
use rustls::ClientConfig;
use rustls::client::WebPkiServerVerifier;
use std::sync::Arc;

/// The rustls configuration for a Kafka connection's `tls_mode` and `ca_cert`.
pub(super) fn client_config(
    mode: Option<&str>,
    ca_cert: Option<&str>,
    connection: &str,
) -> Result<Arc<ClientConfig>, StepError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StepError::internal(format!("TLS set-up: {e}")))?;
    let chain = || {
        WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots(ca_cert, connection)?),
            provider.clone(),
        )
        .build()
        .map_err(|e| {
            StepError::user(format!(
                "connection \"{connection}\": no usable CA certificate: {e}"
            ))
        })
    };
    let config = match mode.unwrap_or("verify-full") {
        "require" => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Relaxed::new(None, &provider)))
            .with_no_client_auth(),
        "verify-ca" if ca_cert.is_none() => {
            return Err(StepError::user(format!(
                "connection \"{connection}\": tls_mode verify-ca needs ca_cert, the CA that signs the brokers' certificates"
            ))
            .with_hint("set \"ca_cert\": \"/path/to/ca.pem\", or use verify-full, which also checks the host name"));
        }
        "verify-ca" => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Relaxed::new(Some(chain()?), &provider)))
            .with_no_client_auth(),
        "verify-full" => builder
            .with_root_certificates(roots(ca_cert, connection)?)
            .with_no_client_auth(),
        other => {
            return Err(StepError::user(format!(
                "connection \"{connection}\": unknown tls_mode \"{other}\" for Kafka"
            ))
            .with_hint("use require, verify-ca or verify-full"));
        }
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_checked_before_any_connection() {
        assert!(client_config(None, None, "k").is_ok());
        assert!(client_config(Some("require"), None, "k").is_ok());
        let e = client_config(Some("verify-ca"), None, "k").unwrap_err();
        assert!(e.message().contains("needs ca_cert"), "{}", e.message());
        let e = client_config(Some("verify-full"), Some("/no/such/ca.pem"), "k").unwrap_err();
        assert!(
            e.message()
                .contains("cannot read the CA certificate /no/such/ca.pem"),
            "{}",
            e.message()
        );
        let e = client_config(Some("sometimes"), None, "k").unwrap_err();
        assert!(e.message().contains("unknown tls_mode"), "{}", e.message());
    }
}
