//! TLS to PostgreSQL with libpq's `sslmode` meanings: `disable` (plain), `prefer` (TLS when the
//! server offers it, unverified), `require` (TLS, unverified), `verify-ca` (the chain must lead
//! to a trusted root) and `verify-full` (also the host name). Roots are the connection's
//! `ca_cert` file, else the system's. rustls with the ring provider; no OpenSSL.

use pipeline_base::StepError;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How the connection uses TLS.
pub(crate) enum Tls {
    Off,
    On(SslMode, MakeRustlsConnect),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_cert: Option<&str>, connection: &str) -> Result<RootCertStore, StepError> {
    let mut roots = RootCertStore::empty();
    match ca_cert {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|e| {
                    StepError::user(format!(
                        "connection \"{connection}\": cannot read the CA certificate {path}: {e}"
                    ))
                })?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(StepError::user(format!(
                    "connection \"{connection}\": {path} holds no usable CA certificate"
                )));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    Ok(roots)
}

/// Signatures are always checked; only the certificate's trust (and name) may be waived.
#[derive(Debug)]
struct Relaxed {
    /// `None`: accept any certificate (`require`, `prefer`); `Some`: verify the chain but not the
    /// host name (`verify-ca`).
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Relaxed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
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
    let relaxed = |chain| Relaxed {
        chain,
        algorithms: provider.signature_verification_algorithms,
    };
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
