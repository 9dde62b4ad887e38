//! TLS pieces the database connectors share (rustls with the ring provider, no OpenSSL): the
//! provider, CA roots from a PEM file or the system, and a certificate verifier that always
//! checks signatures but may waive the certificate's trust or name (libpq's `require` and
//! `verify-ca`), optionally keeping the certificate the server presented.

use pipeline_base::StepError;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::{Arc, Mutex};

/// The certificate a verifier saw, when it keeps it.
pub(crate) type Seen = Arc<Mutex<Option<CertificateDer<'static>>>>;

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// CA roots: the PEM file `ca_cert`, else the system's.
pub(crate) fn roots(ca_cert: Option<&str>, connection: &str) -> Result<RootCertStore, StepError> {
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
pub(crate) struct Relaxed {
    /// `None`: accept any certificate (`require`, `prefer`); `Some`: verify the chain but not the
    /// host name (`verify-ca`).
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
    /// Keeps the end-entity certificate the server presented.
    seen: Option<Seen>,
}

impl Relaxed {
    pub fn new(chain: Option<Arc<WebPkiServerVerifier>>, provider: &CryptoProvider) -> Self {
        Relaxed {
            chain,
            algorithms: provider.signature_verification_algorithms,
            seen: None,
        }
    }

    /// Accepts any certificate and keeps it in `seen`.
    pub fn capture(seen: Seen, provider: &CryptoProvider) -> Self {
        Relaxed {
            seen: Some(seen),
            ..Relaxed::new(None, provider)
        }
    }
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
        if let Some(seen) = &self.seen
            && let Ok(mut seen) = seen.lock()
        {
            *seen = Some(end_entity.clone().into_owned());
        }
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
