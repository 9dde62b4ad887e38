//! The HTTP layer: one request to the Vault API, retried with backoff while Vault is
//! unreachable (connection errors, timeouts, 5xx, 429). Tokens travel in the `X-Vault-Token`
//! header only; nothing here logs a header or a body.

use super::settings::VaultSettings;
use crate::error::CredentialError;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// A Vault answer that arrived (any status).
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    /// Vault's own error text (`{"errors": [...]}`), or a word about the status.
    pub fn reason(&self) -> String {
        let listed: Vec<String> = match self.body.get("errors").or_else(|| self.body.get("error")) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .filter(|s| !s.is_empty())
                .collect(),
            Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
            _ => Vec::new(),
        };
        if listed.is_empty() {
            format!("HTTP {}", self.status.as_u16())
        } else {
            format!("HTTP {}: {}", self.status.as_u16(), listed.join("; "))
        }
    }

    /// Vault's warnings (KV v2 answers a v1-style read with one).
    pub fn warnings(&self) -> String {
        match self.body.get("warnings") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            _ => String::new(),
        }
    }
}

pub(crate) struct Http {
    client: reqwest::Client,
    addr: String,
    namespace: Option<String>,
    backoff: super::settings::Backoff,
}

impl Http {
    pub fn new(settings: &VaultSettings) -> Result<Self, CredentialError> {
        let mut builder = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(
                settings
                    .request_timeout
                    .min(std::time::Duration::from_secs(5)),
            );
        if let Some(path) = &settings.ca_cert {
            let pem = std::fs::read(path).map_err(|e| {
                CredentialError::Settings(format!(
                    "cannot read VAULT_CACERT ({}): {e}",
                    path.display()
                ))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    CredentialError::Settings(format!(
                        "VAULT_CACERT ({}) holds no PEM certificate",
                        path.display()
                    ))
                })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if settings.skip_tls_verify {
            tracing::warn!(
                vault_addr = %settings.addr,
                "TLS certificate verification for Vault is OFF (--vault-skip-tls-verify): for local development only"
            );
            builder = builder.danger_accept_invalid_certs(true);
        }
        let client = builder.build().map_err(|e| {
            CredentialError::Settings(format!("cannot set up the HTTP client for Vault: {e}"))
        })?;
        Ok(Http {
            client,
            addr: settings.addr.clone(),
            namespace: settings.namespace.clone(),
            backoff: settings.backoff,
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `method /v1/{path}`, retrying while Vault is unreachable. `what` names the secret
    /// path in errors (the API path may differ, e.g. `secret/data/...`).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&SecretString>,
        what: &str,
    ) -> Result<Reply, CredentialError> {
        let url = format!("{}/v1/{}", self.addr, path.trim_start_matches('/'));
        let attempts = self.backoff.attempts.max(1);
        let mut last = String::new();
        for n in 1..=attempts {
            if n > 1 {
                let delay = self.backoff.delay(n - 1);
                tracing::warn!(vault_addr = %self.addr, path = what, attempt = n, of = attempts, delay_ms = delay.as_millis() as u64, reason = %last, "Vault unreachable; retrying");
                tokio::time::sleep(delay).await;
            }
            let mut request = self
                .client
                .request(method.clone(), &url)
                .header("X-Vault-Request", "true");
            if let Some(token) = token {
                // Marked sensitive: reqwest and its middlewares leave it out of Debug output.
                let mut value = reqwest::header::HeaderValue::from_str(token.expose_secret())
                    .map_err(|_| {
                        CredentialError::Settings(
                            "the Vault token holds characters an HTTP header cannot carry".into(),
                        )
                    })?;
                value.set_sensitive(true);
                request = request.header("X-Vault-Token", value);
            }
            if let Some(ns) = &self.namespace {
                request = request.header("X-Vault-Namespace", ns);
            }
            if let Some(body) = body {
                request = request
                    .header("Content-Type", "application/json")
                    .body(body.to_string());
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = transport_reason(&e);
                    continue;
                }
            };
            let status = response.status();
            let text = match response.text().await {
                Ok(t) => t,
                Err(e) => {
                    last = transport_reason(&e);
                    continue;
                }
            };
            let body = if text.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::Null)
            };
            let reply = Reply { status, body };
            if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                last = reply.reason();
                continue;
            }
            return Ok(reply);
        }
        Err(CredentialError::Unreachable {
            addr: self.addr.clone(),
            path: what.to_string(),
            attempts,
            reason: last,
        })
    }
}

/// A transport error in a few words, without the URL (already named) or any header.
fn transport_reason(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut deepest = None;
    while let Some(c) = cause {
        deepest = Some(c.to_string());
        cause = c.source();
    }
    match deepest {
        Some(d) => format!("{kind}: {d}"),
        None => kind.to_string(),
    }
}
