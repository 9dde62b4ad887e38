//! TLS to PostgreSQL with libpq's `sslmode` meanings: `disable` (plain), `prefer` (TLS when the
//! server offers it, unverified), `require` (TLS, unverified), `verify-ca` (the chain must lead
//! to the connection's `ca_cert`, which it requires) and `verify-full` (also the host name;
//! roots are `ca_cert`, else the system's). rustls with the ring provider; no OpenSSL.

use crate::tls::{Relaxed, provider, roots};
use pipeline_base::StepError;
use rustls::client::WebPkiServerVerifier;
use rustls::{ClientConfig, RootCertStore};
use std::sync::Arc;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How the connection uses TLS.
pub(crate) enum Tls {
    Off,
    On(SslMode, MakeRustlsConnect),
}

/// The TLS set-up for a `tls_mode` (libpq's `sslmode` values).
pub(crate) fn for_mode(
    mode: Option<&str>,
    ca_cert: Option<&str>,
    connection: &str,
) -> Result<Tls, StepError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StepError::internal(format!("TLS set-up: {e}")))?;
    let relaxed = |chain| Relaxed::new(chain, &provider);
    let verifier = |roots: RootCertStore| {
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| {
                StepError::user(format!(
                    "connection \"{connection}\": no usable CA certificate: {e}"
                ))
            })
    };
    let (ssl_mode, config) = match mode.unwrap_or("prefer") {
        "disable" => return Ok(Tls::Off),
        m @ ("prefer" | "require") => {
            let config = builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(relaxed(None)))
                .with_no_client_auth();
            let ssl = if m == "prefer" {
                SslMode::Prefer
            } else {
                SslMode::Require
            };
            (ssl, config)
        }
        // Any certificate a public CA signed would pass a name-less check against the system's
        // roots, so verify-ca needs the CA it trusts named (as libpq and the MySQL connector ask).
        "verify-ca" if ca_cert.is_none() => {
            return Err(StepError::user(format!(
                "connection \"{connection}\": tls_mode verify-ca needs ca_cert, the CA that signs the server's certificate"
            ))
            .with_hint("set \"ca_cert\": \"/path/to/ca.pem\", or use verify-full, which also checks the host name"));
        }
        "verify-ca" => {
            let chain = verifier(roots(ca_cert, connection)?)?;
            let config = builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(relaxed(Some(chain))))
                .with_no_client_auth();
            (SslMode::Require, config)
        }
        "verify-full" => {
            let config = builder
                .with_webpki_verifier(verifier(roots(ca_cert, connection)?)?)
                .with_no_client_auth();
            (SslMode::Require, config)
        }
        other => {
            return Err(StepError::user(format!(
                "connection \"{connection}\": unknown tls_mode \"{other}\""
            )));
        }
    };
    Ok(Tls::On(ssl_mode, MakeRustlsConnect::new(config)))
}
