//! Located configuration errors and their rendering, plus the "did you mean" helpers.

use std::fmt;
use std::path::PathBuf;

/// Where a problem is: the file, the JSON path inside it, and the line:column when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file the value came from (after `$ref` resolution), or `None` for the command line.
    pub file: Option<PathBuf>,
    /// The JSON Pointer inside that file.
    pub pointer: String,
    /// 1-based line and column of the key (or element) in the file.
    pub line_col: Option<(u32, u32)>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pointer = if self.pointer.is_empty() {
            "/"
        } else {
            &self.pointer
        };
        match (&self.file, self.line_col) {
            (Some(file), Some((line, col))) => {
                write!(f, "{}:{line}:{col} at {pointer}", file.display())
            }
            (Some(file), None) => write!(f, "{} at {pointer}", file.display()),
            (None, _) => write!(f, "command line override at {pointer}"),
        }
    }
}

/// One problem in a pipeline's configuration. It never contains a secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub location: Option<Location>,
    pub message: String,
    pub hint: Option<String>,
}

impl ConfigError {
    pub fn new(location: Option<Location>, message: impl Into<String>) -> Self {
        ConfigError {
            location,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_hint_opt(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(location) = &self.location {
            write!(f, "\n  --> {location}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n   = help: {hint}")?;
        }
        Ok(())
    }
}

/// All the problems found in one load, in the order they were found.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn push(&mut self, error: ConfigError) {
        self.0.push(error);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }

    pub fn extend(&mut self, other: ConfigErrors) {
        self.0.extend(other.0);
    }

    /// `Ok(value)` when no problem was recorded.
    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "{e}")?;
        }
        let n = self.0.len();
        write!(
            f,
            "{n} configuration error{}",
            if n == 1 { "" } else { "s" }
        )
    }
}

/// The candidate closest to `word`, if it is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let lower = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (c, strsim::damerau_levenshtein(&lower, &c.to_lowercase())))
        .filter(|(c, d)| {
            *d <= (c.len().max(word.len()) / 3).max(1) || strsim::jaro_winkler(&lower, c) > 0.9
        })
        .min_by_key(|(_, d)| *d)
        .map(|(c, _)| c.to_string())
}

/// Checks the keys of a JSON object against the known ones. Returns, for each unknown key, its
/// name and a message with a suggestion when one is close.
pub fn check_known_keys(
    object: &serde_json::Map<String, serde_json::Value>,
    known: &[&str],
    what: &str,
) -> Vec<(String, String, Option<String>)> {
    object
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .map(|k| {
            let message = format!("unknown key \"{k}\" in {what}");
            let hint = match suggest(k, known.iter().copied()) {
                Some(s) => format!("did you mean \"{s}\"? known keys: {}", known.join(", ")),
                None => format!("known keys: {}", known.join(", ")),
            };
            (k.clone(), message, Some(hint))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        let known = ["options", "method", "name", "kind"];
        assert_eq!(suggest("optons", known), Some("options".into()));
        assert_eq!(suggest("Metod", known), Some("method".into()));
        assert_eq!(suggest("zzzzzz", known), None);
    }

    #[test]
    fn renders_location_and_hint() {
        let e = ConfigError::new(
            Some(Location {
                file: Some("p.json".into()),
                pointer: "/steps/1/optons".into(),
                line_col: Some((12, 7)),
            }),
            "unknown key \"optons\" in step",
        )
        .with_hint("did you mean \"options\"?");
        assert_eq!(
            e.to_string(),
            "error: unknown key \"optons\" in step\n  --> p.json:12:7 at /steps/1/optons\n   = help: did you mean \"options\"?"
        );
    }

    #[test]
    fn lists_unknown_keys_with_suggestions() {
        let obj = serde_json::json!({"name": 1, "optons": 2, "zzz": 3});
        let found = check_known_keys(obj.as_object().unwrap(), &["name", "options"], "step");
        assert_eq!(found.len(), 2);
        assert!(
            found[0]
                .2
                .as_deref()
                .unwrap()
                .starts_with("did you mean \"options\"")
        );
        assert!(found[1].2.as_deref().unwrap().starts_with("known keys"));
    }
}
