//! TLS to MySQL with the `tls_mode` meanings of the PostgreSQL connector (libpq's `sslmode`):
//! `disable` (plain), `prefer` (the default: TLS when the server offers it, unverified),
//! `require` (TLS, unverified), `verify-ca` (the chain must lead to `ca_cert` or a system
//! root) and `verify-full` (also the host name). mysql_async's rustls back end, ring provider.
//!
//! `verify-ca`: mysql_async's "skip domain validation" does not recognise the name errors of
//! current rustls, so the name check cannot simply be switched off. Instead a first handshake
//! (the server's greeting, MySQL's SSLRequest, TLS, no login) reads the DNS names of the
//! certificate the server presents, and the real connection is then fully verified against the
//! CA for one of those names: any certificate the CA signed is accepted, whatever host name it
//! carries, which is what verify-ca means.

use crate::tls::{Relaxed, Seen};
use mysql_async::SslOpts;
use pipeline_base::StepError;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How a connection uses TLS.
pub(crate) enum Tls {
    Off,
    On {
        opts: SslOpts,
        /// `prefer`: fall back to a plain connection when the server offers no TLS.
        prefer: bool,
        /// `verify-ca`: verify against a name read from the server's certificate first.
        any_name: bool,
    },
}

/// The TLS set-up for a `tls_mode`.
pub(crate) fn for_mode(
    mode: Option<&str>,
    ca_cert: Option<&str>,
    connection: &str,
) -> Result<Tls, StepError> {
    // mysql_async builds its rustls config with the process's default provider; make it ring's
    // (the only one this build uses) unless one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The CA roots: the `ca_cert` file, else the system's (not mysql_async's bundled list, so
    // that a private CA installed on the machine works as it does for PostgreSQL).
    let roots = || -> Result<SslOpts, StepError> {
        let opts = SslOpts::default().with_disable_built_in_roots(true);
        Ok(match ca_cert {
            Some(path) => {
                let pem = std::fs::read_to_string(path).map_err(|e| {
                    StepError::user(format!(
                        "connection \"{connection}\": cannot read the CA certificate {path}: {e}"
                    ))
                })?;
                if !pem.contains("-----BEGIN CERTIFICATE-----") {
                    return Err(StepError::user(format!(
                        "connection \"{connection}\": {path} holds no PEM certificate"
                    )));
                }
                opts.with_root_certs(vec![PathBuf::from(path).into()])
            }
            None => opts.with_root_certs(
                rustls_native_certs::load_native_certs()
                    .certs
                    .into_iter()
                    .map(|c| c.to_vec().into())
                    .collect(),
            ),
        })
    };
    Ok(match mode.unwrap_or("prefer") {
        "disable" => Tls::Off,
        m @ ("prefer" | "require") => Tls::On {
            opts: SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
            prefer: m == "prefer",
            any_name: false,
        },
        // Any certificate a public CA signed would pass a name-less check against the system's
        // roots, so verify-ca needs the CA it trusts named (libpq asks the same).
        "verify-ca" if ca_cert.is_none() => {
            return Err(StepError::user(format!(
                "connection \"{connection}\": tls_mode verify-ca needs ca_cert, the CA that signs the server's certificate"
            ))
            .with_hint("set \"ca_cert\": \"/path/to/ca.pem\", or use verify-full, which also checks the host name"));
        }
        "verify-ca" => Tls::On {
            opts: roots()?,
            prefer: false,
            any_name: true,
        },
        "verify-full" => Tls::On {
            opts: roots()?,
            prefer: false,
            any_name: false,
        },
        other => {
            return Err(StepError::user(format!(
                "connection \"{connection}\": unknown tls_mode \"{other}\""
            ))
            .with_hint("use disable, prefer, require, verify-ca or verify-full"));
        }
    })
}

const CLIENT_LONG_PASSWORD: u32 = 0x1;
const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_SSL: u32 = 0x800;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const UTF8MB4: u8 = 45;

/// A DNS name the server's certificate is valid for, read by a handshake without login.
pub(crate) async fn certificate_name(
    host: &str,
    port: u16,
    connection: &str,
) -> Result<String, StepError> {
    let fail = |what: String| {
        StepError::transient(format!(
            "connection \"{connection}\": reading the certificate of MySQL at {host}:{port}: {what}"
        ))
    };
    let io = |e: std::io::Error| fail(e.to_string());
    let handshake = async {
        let mut tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(io)?;
        let mut head = [0u8; 4];
        tcp.read_exact(&mut head).await.map_err(io)?;
        let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
        let mut greeting = vec![0u8; len];
        tcp.read_exact(&mut greeting).await.map_err(io)?;
        match greeting.first() {
            Some(10) => {}
            // An ERR packet: code (2 bytes), then the message (e.g. too many connections).
            Some(0xff) => {
                let message = String::from_utf8_lossy(greeting.get(3..).unwrap_or_default());
                return Err(fail(format!(
                    "the server refused the connection: {message}"
                )));
            }
            _ => return Err(fail("the server's greeting is not MySQL's".into())),
        }
        // protocol version, server version (NUL-terminated), connection id (4), scramble (8),
        // filler (1), then the low two bytes of the capability flags.
        let caps = greeting
            .get(1..)
            .and_then(|rest| rest.iter().position(|&b| b == 0))
            .and_then(|nul| nul.checked_add(2 + 4 + 8 + 1))
            .and_then(|at| greeting.get(at..at.checked_add(2)?))
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .map(|b| u32::from(u16::from_le_bytes(b)))
            .ok_or_else(|| fail("the server's greeting is not MySQL's".into()))?;
        if caps & CLIENT_SSL == 0 {
            return Err(StepError::external(format!(
                "connection \"{connection}\": MySQL at {host}:{port} does not offer TLS, which tls_mode verify-ca asks for"
            )));
        }
        let mut request = vec![32, 0, 0, 1];
        request.extend(
            (CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SSL | CLIENT_SECURE_CONNECTION)
                .to_le_bytes(),
        );
        request.extend((16u32 << 20).to_le_bytes());
        request.push(UTF8MB4);
        request.extend([0u8; 23]);
        tcp.write_all(&request).await.map_err(io)?;
        let provider = crate::tls::provider();
        let seen: Seen = Arc::new(Mutex::new(None));
        let config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| StepError::internal(format!("TLS set-up: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Relaxed::capture(seen.clone(), &provider)))
            .with_no_client_auth();
        let name = ServerName::try_from(host.to_string()).map_err(|e| {
            StepError::user(format!(
                "connection \"{connection}\": {host} is not a host name: {e}"
            ))
        })?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let handshake = connector.connect(name, tcp).await;
        let cert = seen.lock().ok().and_then(|mut s| s.take());
        match (cert, handshake) {
            (Some(cert), _) => Ok(cert),
            (None, Err(e)) => Err(fail(format!("the TLS handshake failed: {e}"))),
            (None, Ok(_)) => Err(fail("the server presented no certificate".into())),
        }
    };
    let cert = tokio::time::timeout(Duration::from_secs(10), handshake)
        .await
        .map_err(|_| fail("timed out after 10 s".into()))??;
    let parsed = webpki::EndEntityCert::try_from(&cert).map_err(|e| {
        StepError::external(format!(
            "connection \"{connection}\": the certificate of MySQL at {host}:{port} cannot be parsed: {e}"
        ))
    })?;
    let name = parsed.valid_dns_names().next().ok_or_else(|| {
        StepError::external(format!(
            "connection \"{connection}\": the certificate of MySQL at {host}:{port} names no DNS host (no subjectAltName), so verify-ca cannot check it"
        ))
        .with_hint("give the server a certificate with a DNS subjectAltName (MySQL's auto-generated ones have none), or use tls_mode require")
    })?;
    // A wildcard name is matched by any name under it.
    Ok(match name.strip_prefix("*.") {
        Some(domain) => format!("pipectl-verify-ca.{domain}"),
        None => name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_map_to_ssl_options() {
        assert!(matches!(
            for_mode(Some("disable"), None, "c").unwrap(),
            Tls::Off
        ));
        let Tls::On { opts, prefer, .. } = for_mode(None, None, "c").unwrap() else {
            panic!("prefer is TLS")
        };
        assert!(prefer && opts.accept_invalid_certs());
        let Tls::On {
            opts,
            prefer,
            any_name,
        } = for_mode(Some("verify-full"), None, "c").unwrap()
        else {
            panic!("verify-full is TLS")
        };
        assert!(!prefer && !any_name && !opts.accept_invalid_certs());
        let err = for_mode(Some("verify-ca"), None, "c").err().unwrap();
        assert!(err.message().contains("needs ca_cert"), "{}", err.message());
        let ca = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(ca.path(), "-----BEGIN CERTIFICATE-----\n").unwrap();
        assert!(matches!(
            for_mode(Some("verify-ca"), ca.path().to_str(), "c").unwrap(),
            Tls::On { any_name: true, .. }
        ));
        let err = for_mode(Some("verify-full"), Some("/nonexistent/ca.pem"), "c")
            .err()
            .unwrap();
        assert!(err.message().contains("/nonexistent/ca.pem"));
        let err = for_mode(Some("sometimes"), None, "c").err().unwrap();
        assert!(err.message().contains("unknown tls_mode"));
    }
}
