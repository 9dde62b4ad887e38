//! Logging in and staying logged in: a token from the environment (looked up once to learn its
//! TTL, renewed when it nears expiry if renewable) or an AppRole login (repeated when the token
//! nears expiry or is refused).

use super::http::Http;
use super::settings::VaultAuth;
use crate::error::CredentialError;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The token in use and when it expires (`None`: does not expire, or unknown).
#[derive(Clone)]
struct TokenState {
    token: SecretString,
    expires: Option<Instant>,
    ttl: Duration,
    renewable: bool,
}

impl TokenState {
    fn near_expiry(&self) -> bool {
        match self.expires {
            None => false,
            Some(at) => {
                // Renew with a third of the TTL left (at most 60 s before expiry).
                let margin = (self.ttl / 3).min(Duration::from_secs(60));
                Instant::now() + margin >= at
            }
        }
    }
}

pub(crate) struct Auth {
    method: VaultAuth,
    state: Mutex<Option<TokenState>>,
    logins: std::sync::atomic::AtomicU32,
}

fn lease(auth: &Value) -> (Option<Instant>, Duration, bool) {
    let secs = auth
        .get("lease_duration")
        .or_else(|| auth.get("ttl"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let renewable = auth
        .get("renewable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let ttl = Duration::from_secs(secs);
    let expires = (secs > 0).then(|| Instant::now() + ttl);
    (expires, ttl, renewable)
}

impl Auth {
    pub fn new(method: VaultAuth) -> Self {
        Auth {
            method,
            state: Mutex::new(None),
            logins: Default::default(),
        }
    }

    pub fn method(&self) -> &'static str {
        self.method.method()
    }

    /// How many AppRole logins happened (for tests and logs).
    pub fn logins(&self) -> u32 {
        self.logins.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A token good for the next request.
    pub async fn token(&self, http: &Http, what: &str) -> Result<SecretString, CredentialError> {
        let mut state = self.state.lock().await;
        match state.as_ref() {
            None => *state = Some(self.start(http, what).await?),
            Some(s) if s.near_expiry() => *state = Some(self.refresh(http, s.clone(), what).await?),
            Some(_) => {}
        }
        state
            .as_ref()
            .map(|s| s.token.clone())
            .ok_or_else(|| CredentialError::Settings("no Vault token".into()))
    }

    /// The token was refused: with AppRole, log in again (returns true); a fixed token cannot be.
    pub async fn refused(&self, http: &Http, what: &str) -> Result<bool, CredentialError> {
        if let VaultAuth::AppRole { .. } = self.method {
            let mut state = self.state.lock().await;
            *state = Some(self.login(http, what).await?);
            return Ok(true);
        }
        Ok(false)
    }

    async fn start(&self, http: &Http, what: &str) -> Result<TokenState, CredentialError> {
        match &self.method {
            VaultAuth::AppRole { .. } => self.login(http, what).await,
            VaultAuth::Token(token) => {
                let mut state = TokenState {
                    token: token.clone(),
                    expires: None,
                    ttl: Duration::ZERO,
                    renewable: false,
                };
                // Best effort: a token whose policy lacks lookup-self still reads secrets.
                let reply = http
                    .call(
                        Method::GET,
                        "auth/token/lookup-self",
                        None,
                        Some(token),
                        what,
                    )
                    .await?;
                if reply.status.is_success() {
                    let (expires, ttl, renewable) = lease(&reply.body["data"]);
                    state.expires = expires;
                    state.ttl = ttl;
                    state.renewable = renewable;
                }
                Ok(state)
            }
        }
    }

    async fn refresh(
        &self,
        http: &Http,
        current: TokenState,
        what: &str,
    ) -> Result<TokenState, CredentialError> {
        match &self.method {
            VaultAuth::AppRole { .. } => self.login(http, what).await,
            VaultAuth::Token(_) if current.renewable => {
                let reply = http
                    .call(
                        Method::POST,
                        "auth/token/renew-self",
                        Some(&json!({})),
                        Some(&current.token),
                        what,
                    )
                    .await?;
                if !reply.status.is_success() {
                    tracing::warn!(reason = %reply.reason(), "Vault token renewal failed; the token may expire during the run");
                    return Ok(TokenState {
                        expires: None,
                        ..current
                    });
                }
                let (expires, ttl, renewable) = lease(&reply.body["auth"]);
                tracing::debug!(ttl_s = ttl.as_secs(), "Vault token renewed");
                Ok(TokenState {
                    token: current.token,
                    expires,
                    ttl,
                    renewable,
                })
            }
            VaultAuth::Token(_) => Ok(TokenState {
                expires: None,
                ..current
            }),
        }
    }

    async fn login(&self, http: &Http, what: &str) -> Result<TokenState, CredentialError> {
        let VaultAuth::AppRole {
            mount,
            role_id,
            secret_id,
        } = &self.method
        else {
            return Err(CredentialError::Settings(
                "AppRole login without AppRole settings".into(),
            ));
        };
        let path = format!("auth/{}/login", mount.trim_matches('/'));
        let body =
            json!({"role_id": role_id.expose_secret(), "secret_id": secret_id.expose_secret()});
        let reply = http
            .call(Method::POST, &path, Some(&body), None, what)
            .await?;
        if !reply.status.is_success() {
            let mut reason = reply.reason();
            for s in [role_id, secret_id] {
                reason = reason.replace(s.expose_secret(), "[REDACTED]");
            }
            if reply.status == StatusCode::NOT_FOUND {
                reason = format!("no AppRole auth mounted at auth/{mount} ({reason})");
            }
            return Err(CredentialError::Login {
                addr: http.addr().to_string(),
                method: "approle",
                reason,
            });
        }
        let auth = &reply.body["auth"];
        let Some(token) = auth.get("client_token").and_then(Value::as_str) else {
            return Err(CredentialError::Protocol {
                path,
                reason: "the login answer has no auth.client_token".into(),
            });
        };
        self.logins
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (expires, ttl, renewable) = lease(auth);
        tracing::debug!(mount = %mount, ttl_s = ttl.as_secs(), "logged in to Vault with AppRole");
        Ok(TokenState {
            token: SecretString::from(token.to_string()),
            expires,
            ttl,
            renewable,
        })
    }
}
