//! The secret lint: pipeline files must never hold a secret. A key whose name looks sensitive and
//! that holds a literal value, or a connection URL with an embedded password, is refused. The
//! lint never repeats the value it refused.

use crate::diag::{ConfigError, ConfigErrors};
use crate::pointer::join_pointer;
use crate::resolve::Locator;
use serde_json::Value;

/// Words that make a key sensitive when they appear as a whole word of it.
const SENSITIVE_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "credential",
];

/// Word pairs that make a key sensitive (`access_key`, `private_key`, ...).
const SENSITIVE_PAIRS: &[(&str, &str)] = &[
    ("access", "key"),
    ("private", "key"),
    ("api", "key"),
    ("secret", "key"),
    ("account", "key"),
];

/// Suffixes that name where a secret is, not the secret itself.
const REFERENCE_SUFFIXES: &[&str] = &["path", "file", "env", "field", "mount", "ref", "version"];

/// Splits `secretAccessKey`, `SASL-Password` or `session_token` into lower-case words.
fn words(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut prev_lower = false;
    for c in key.chars() {
        if !c.is_alphanumeric() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Whether a key's name says it holds a secret.
pub fn is_sensitive_key(key: &str) -> bool {
    let w = words(key);
    if w.last()
        .is_some_and(|last| REFERENCE_SUFFIXES.contains(&last.as_str()))
    {
        return false;
    }
    w.iter().any(|word| {
        SENSITIVE_WORDS
            .iter()
            .any(|s| word == s || word == &format!("{s}s"))
    }) || w.windows(2).any(|p| match p {
        [a, b] => SENSITIVE_PAIRS.contains(&(a.as_str(), b.as_str())),
        _ => false,
    })
}

/// Whether a string looks like a URL carrying a password (`scheme://user:pass@host`).
fn has_embedded_password(s: &str) -> bool {
    let Some(rest) = s.split_once("://").map(|(_, r)| r) else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.split_once(':').is_some_and(|(_, p)| !p.is_empty()))
}

/// Finds every literal secret in a resolved document.
pub fn lint_secrets(doc: &Value, locator: &Locator) -> ConfigErrors {
    let mut errors = ConfigErrors::default();
    walk(doc, "", None, locator, &mut errors);
    errors
}

fn walk(
    value: &Value,
    pointer: &str,
    key: Option<&str>,
    locator: &Locator,
    errors: &mut ConfigErrors,
) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                walk(v, &join_pointer(pointer, k), Some(k), locator, errors);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                walk(
                    v,
                    &join_pointer(pointer, &i.to_string()),
                    key,
                    locator,
                    errors,
                );
            }
        }
        Value::String(s) if !s.is_empty() && key.is_some_and(is_sensitive_key) => {
            errors.push(secret_error(pointer, key.unwrap_or_default(), locator));
        }
        Value::Number(_) if key.is_some_and(is_sensitive_key) => {
            errors.push(secret_error(pointer, key.unwrap_or_default(), locator));
        }
        Value::String(s) if has_embedded_password(s) => {
            errors.push(
                ConfigError::new(
                    Some(locator.locate(pointer)),
                    "a URL with an embedded password: secrets must not be written in pipeline files",
                )
                .with_hint("remove the user:password part and put the credentials in Vault, then reference them with \"credentials\": {\"vault_path\": \"...\"}"),
            );
        }
        _ => {}
    }
}

fn secret_error(pointer: &str, key: &str, locator: &Locator) -> ConfigError {
    ConfigError::new(
        Some(locator.locate(pointer)),
        format!("\"{key}\" holds a literal value: secrets must not be written in pipeline files"),
    )
    .with_hint("store the secret in Vault and reference it from the connection with \"credentials\": {\"vault_path\": \"secret/...\"}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_names_any_case_and_style() {
        for k in [
            "password",
            "PASSWORD",
            "db_password",
            "passwd",
            "secret",
            "token",
            "access_key",
            "secret_access_key",
            "session_token",
            "private_key",
            "api_key",
            "apiKey",
            "sasl_password",
            "saslPassword",
            "SecretAccessKey",
            "client-secret",
            "auth_token",
            "credentials",
        ] {
            assert!(is_sensitive_key(k), "{k} should be sensitive");
        }
    }

    #[test]
    fn references_and_ordinary_names_pass() {
        for k in [
            "vault_path",
            "password_field",
            "token_file",
            "name",
            "host",
            "tokenizer",
            "keys",
            "key_columns",
            "secretary",
        ] {
            assert!(!is_sensitive_key(k), "{k} should not be sensitive");
        }
    }

    #[test]
    fn urls_with_passwords() {
        assert!(has_embedded_password("postgres://u:p@host:5432/db"));
        assert!(!has_embedded_password("postgres://u@host/db"));
        assert!(!has_embedded_password("s3://bucket/a:b@c"));
        assert!(!has_embedded_password("user:pass@host"));
    }
}
