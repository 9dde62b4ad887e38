//! The Spark Connect endpoint, from a `sc://host:port/;param=value` connection string (the
//! format every Spark Connect client accepts: `token`, `use_ssl`, `user_id`, `session_id`).

use pipeline_base::StepError;
use secrecy::SecretString;
use std::fmt;

/// Spark Connect's default port.
pub const DEFAULT_PORT: u16 = 15002;

/// Where the Spark Connect server listens and how to talk to it.
#[derive(Clone)]
pub struct Remote {
    pub host: String,
    pub port: u16,
    /// TLS to the endpoint (`use_ssl=true`, implied by a token).
    pub tls: bool,
    /// Sent as `Authorization: Bearer ...`; never shown.
    pub token: Option<SecretString>,
    pub user_id: String,
    /// A fixed session id (`session_id=`); a fresh UUID per run otherwise.
    pub session_id: Option<String>,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("endpoint", &self.to_string())
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .field("user_id", &self.user_id)
            .finish()
    }
}

/// `sc://host:port` (parameters left out: a token never appears in a message).
impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sc://{}:{}", self.host, self.port)
    }
}

impl Remote {
    /// Parses `sc://host[:port][/;key=value;...]`.
    pub fn parse(text: &str) -> Result<Remote, StepError> {
        let bad = |why: &str| {
            StepError::user(format!("the Spark Connect endpoint \"{}\" {why}", shown(text)))
                .with_hint("write it as sc://HOST:PORT, e.g. sc://localhost:15002 (parameters after /; such as ;use_ssl=true;token=...)")
        };
        let rest = text
            .trim()
            .strip_prefix("sc://")
            .ok_or_else(|| bad("does not start with sc://"))?;
        // Parameters start at the first `/` or `;` (never part of the host or port).
        let (authority, params) = match rest.find(['/', ';']) {
            Some(at) => (
                rest.get(..at).unwrap_or_default(),
                rest.get(at..).unwrap_or_default().trim_start_matches('/'),
            ),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| bad(&format!("has a port that is not a number (\"{p}\")")))?;
                (h.to_string(), port)
            }
            _ => (authority.to_string(), DEFAULT_PORT),
        };
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        let mut remote = Remote {
            host,
            port,
            tls: false,
            token: None,
            user_id: std::env::var("USER").unwrap_or_else(|_| "pipectl".to_string()),
            session_id: None,
        };
        for param in params.split(';').filter(|p| !p.trim().is_empty()) {
            let (key, value) = param
                .split_once('=')
                .ok_or_else(|| bad("has a parameter without \"=\""))?;
            match key.trim() {
                "token" => {
                    remote.token = Some(SecretString::from(value.to_string()));
                    remote.tls = true;
                }
                "use_ssl" => remote.tls = value.eq_ignore_ascii_case("true"),
                "user_id" => remote.user_id = value.to_string(),
                "session_id" => remote.session_id = Some(value.to_string()),
                // Other clients' parameters (user_agent, grpc_max_message_size...) are harmless.
                _ => {}
            }
        }
        if remote.token.is_some() && !remote.tls {
            return Err(bad("sends a token without TLS (use_ssl=false)"));
        }
        Ok(remote)
    }

    /// The HTTP/2 URI tonic connects to.
    pub fn uri(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }
}

/// The endpoint as it may be shown: everything from the first `/` or `;` after the scheme
/// (where a token would be) left out.
fn shown(text: &str) -> &str {
    let start = text.find("://").map(|i| i.saturating_add(3)).unwrap_or(0);
    match text.get(start..).and_then(|rest| rest.find(['/', ';'])) {
        Some(at) => text.get(..start.saturating_add(at)).unwrap_or_default(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use secrecy::ExposeSecret;

    #[rstest]
    #[case("sc://localhost", "localhost", 15002, false)]
    #[case(
        "sc://spark.example.com:443/;use_ssl=true",
        "spark.example.com",
        443,
        true
    )]
    #[case("sc://127.0.0.1:55002/;user_id=etl", "127.0.0.1", 55002, false)]
    #[case("sc://h:1/;token=abc", "h", 1, true)]
    fn parses_endpoints(
        #[case] text: &str,
        #[case] host: &str,
        #[case] port: u16,
        #[case] tls: bool,
    ) {
        let remote = Remote::parse(text).expect("valid");
        assert_eq!(
            (remote.host.as_str(), remote.port, remote.tls),
            (host, port, tls)
        );
    }

    #[rstest]
    #[case("http://localhost:15002", "does not start with sc://")]
    #[case("sc://:15002", "has no host")]
    #[case("sc://host:port", "not a number")]
    #[case("sc://h:1/;token=x;use_ssl=false", "without TLS")]
    fn refuses_bad_endpoints(#[case] text: &str, #[case] problem: &str) {
        let error = Remote::parse(text).expect_err("invalid");
        assert!(error.message().contains(problem), "{}", error.message());
    }

    #[test]
    fn a_token_is_never_shown() {
        let remote = Remote::parse("sc://h:1/;token=s3cr3t-value").expect("valid");
        assert_eq!(
            remote
                .token
                .as_ref()
                .map(|t| t.expose_secret().to_string())
                .as_deref(),
            Some("s3cr3t-value")
        );
        for text in [remote.to_string(), format!("{remote:?}"), remote.uri()] {
            assert!(!text.contains("s3cr3t"), "{text}");
        }
        for text in [
            "sc://h:x/;token=s3cr3t-value",
            "sc://h:1;token=s3cr3t-value;use_ssl=false",
        ] {
            let error = Remote::parse(text).expect_err("refused");
            assert!(
                !error.full_message().contains("s3cr3t"),
                "{}",
                error.full_message()
            );
        }
        let remote = Remote::parse("sc://h;token=s3cr3t-value").expect("valid");
        assert_eq!((remote.host.as_str(), remote.port), ("h", DEFAULT_PORT));
    }
}
