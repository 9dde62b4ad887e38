//! The error taxonomy: who is at fault (the user, an external system, pipectl itself) and whether
//! retrying can help. The executor retries only errors that say so.

use std::fmt;

/// A boxed error that can cross threads.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Who has to act to fix an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The pipeline's author: a configuration, an option, an expression, a data rule. Never retried.
    User,
    /// An external system (database, broker, object store, Vault) failed or refused.
    External,
    /// A defect in pipectl itself. Never retried.
    Internal,
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            ErrorClass::User => "user error",
            ErrorClass::External => "external system error",
            ErrorClass::Internal => "internal error",
        })
    }
}

/// An error raised while preparing or running a step.
///
/// It carries a class, a retry hint, a message meant for a data engineer (what went wrong and
/// where), an optional hint (what to do), and the underlying cause.
#[derive(Debug, thiserror::Error)]
pub struct StepError {
    class: ErrorClass,
    retryable: bool,
    message: String,
    hint: Option<String>,
    #[source]
    source: Option<BoxError>,
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StepError {
    fn new(class: ErrorClass, retryable: bool, message: impl Into<String>) -> Self {
        StepError {
            class,
            retryable,
            message: message.into(),
            hint: None,
            source: None,
        }
    }

    /// The user must fix something (never retried).
    pub fn user(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::User, false, message)
    }

    /// An external system failed in a way that retrying may fix (timeouts, refused connections).
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::External, true, message)
    }

    /// An external system refused in a way that retrying will not fix (permission denied).
    pub fn external(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::External, false, message)
    }

    /// A defect in pipectl.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Internal, false, message)
    }

    /// Adds advice on what to do.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Prefixes the message with where it happened, e.g. the step or connection.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    pub fn class(&self) -> ErrorClass {
        self.class
    }

    pub fn retryable(&self) -> bool {
        self.retryable
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// The message followed by each cause in the source chain, `: `-separated.
    pub fn full_message(&self) -> String {
        let mut out = self.message.clone();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            let text = c.to_string();
            if !out.contains(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            cause = c.source();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_retry_hints() {
        assert!(StepError::transient("x").retryable());
        assert_eq!(StepError::transient("x").class(), ErrorClass::External);
        assert!(!StepError::external("x").retryable());
        assert!(!StepError::user("x").retryable());
        assert_eq!(StepError::internal("x").class(), ErrorClass::Internal);
    }

    #[test]
    fn full_message_walks_the_chain_once() {
        let io = std::io::Error::other("disk full");
        let e = StepError::transient("writing part-0")
            .with_source(io)
            .context("step 'load'");
        assert_eq!(e.full_message(), "step 'load': writing part-0: disk full");
        assert_eq!(e.to_string(), "step 'load': writing part-0");
    }
}
