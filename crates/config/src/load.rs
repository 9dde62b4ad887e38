//! Loading a pipeline: read and resolve the files, apply command-line overrides, lint for
//! secrets, then deserialize the typed model part by part so that every problem is reported.

use crate::diag::{ConfigError, ConfigErrors, check_known_keys};
use crate::lint::lint_secrets;
use crate::model::{ConnectionConfig, CredentialsRef, PipelineConfig, RetryConfig, StepConfig};
use crate::pointer::join_pointer;
use crate::resolve::{Locator, Resolver};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A pipeline read from its files.
pub struct LoadedPipeline {
    /// The typed model.
    pub config: PipelineConfig,
    /// The resolved document (all `$ref`s replaced), as the model was read from.
    pub document: Value,
    /// Maps pointers of `document` back to files and line:columns.
    pub locator: Locator,
    /// The root file.
    pub path: PathBuf,
}

impl LoadedPipeline {
    /// A configuration error located at a pointer of the resolved document.
    pub fn error_at(&self, pointer: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::new(Some(self.locator.locate(pointer)), message)
    }
}

/// A command-line override: `--set /steps/0/options/rows=1000`. The value is JSON when it parses
/// as JSON, a string otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub pointer: String,
    pub value: Value,
}

impl std::str::FromStr for Override {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (pointer, raw) = s.split_once('=').ok_or_else(|| {
            format!("expected POINTER=VALUE (e.g. /steps/0/options/rows=1000), got {s:?}")
        })?;
        if !pointer.starts_with('/') {
            return Err(format!(
                "the pointer must start with '/', e.g. /steps/0/options/rows, got {pointer:?}"
            ));
        }
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
        Ok(Override {
            pointer: pointer.to_string(),
            value,
        })
    }
}

/// Loads a pipeline file.
pub fn load_pipeline(path: &Path, overrides: &[Override]) -> Result<LoadedPipeline, ConfigErrors> {
    load(path, None, overrides)
}

/// Loads a pipeline from text, as if it were the file at `path` (`$ref`s are relative to it).
pub fn load_pipeline_str(
    path: &Path,
    text: &str,
    overrides: &[Override],
) -> Result<LoadedPipeline, ConfigErrors> {
    load(path, Some(text.to_string()), overrides)
}

fn load(
    path: &Path,
    text: Option<String>,
    overrides: &[Override],
) -> Result<LoadedPipeline, ConfigErrors> {
    let mut resolver = Resolver::new();
    let document = resolver.resolve_root(path, text);
    let Resolver {
        mut locator,
        mut errors,
        poisoned,
        ..
    } = resolver;
    let Some(mut document) = document else {
        return Err(errors);
    };

    for o in overrides {
        match set_pointer(&mut document, &o.pointer, o.value.clone()) {
            Ok(()) => locator.record_override(&o.pointer),
            Err(message) => errors.push(ConfigError::new(
                None,
                format!("--set {}: {message}", o.pointer),
            )),
        }
    }

    errors.extend(lint_secrets(&document, &locator));
    let config = typed_model(&document, &locator, &poisoned, &mut errors);
    match config {
        Some(config) if errors.is_empty() => Ok(LoadedPipeline {
            config,
            document,
            locator,
            path: path.to_path_buf(),
        }),
        _ => Err(errors),
    }
}

/// Sets a value at a pointer, creating missing object members along the way.
fn set_pointer(doc: &mut Value, pointer: &str, value: Value) -> Result<(), String> {
    let tokens: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, parents)) = tokens.split_last() else {
        return Err("empty pointer".into());
    };
    let mut current = doc;
    for token in parents {
        current = match current {
            Value::Object(map) => map
                .entry(token.clone())
                .or_insert_with(|| Value::Object(Map::new())),
            Value::Array(items) => {
                let i: usize = token
                    .parse()
                    .map_err(|_| format!("{token:?} is not an array index"))?;
                items
                    .get_mut(i)
                    .ok_or_else(|| format!("index {i} is past the end of the array"))?
            }
            _ => {
                return Err(format!(
                    "{token:?} is inside a value that is not an object or array"
                ));
            }
        };
    }
    match current {
        Value::Object(map) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("{last:?} is not an array index"))?;
            let slot = items
                .get_mut(i)
                .ok_or_else(|| format!("index {i} is past the end of the array"))?;
            *slot = value;
            Ok(())
        }
        _ => Err(format!(
            "{last:?} is inside a value that is not an object or array"
        )),
    }
}

/// Property names of a type's JSON Schema.
fn known_keys<T: JsonSchema>() -> Vec<String> {
    let schema = schemars::schema_for!(T);
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// Reports unknown keys of an object at `pointer`, returns whether there were none.
fn check_keys<T: JsonSchema>(
    value: &Value,
    pointer: &str,
    what: &str,
    locator: &Locator,
    errors: &mut ConfigErrors,
) -> bool {
    let Some(object) = value.as_object() else {
        return true;
    };
    let known = known_keys::<T>();
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    let unknown = check_known_keys(object, &known, what);
    let clean = unknown.is_empty();
    for (key, message, hint) in unknown {
        errors.push(
            ConfigError::new(Some(locator.locate(&join_pointer(pointer, &key))), message)
                .with_hint_opt(hint),
        );
    }
    clean
}

/// Deserializes a value, reporting the failing field's pointer.
fn deserialize<T: DeserializeOwned>(
    value: &Value,
    pointer: &str,
    what: &str,
    locator: &Locator,
    errors: &mut ConfigErrors,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let mut at = pointer.to_string();
            for segment in e.path().iter() {
                use serde_path_to_error::Segment;
                match segment {
                    Segment::Seq { index } => at = join_pointer(&at, &index.to_string()),
                    Segment::Map { key } | Segment::Enum { variant: key } => {
                        at = join_pointer(&at, key)
                    }
                    Segment::Unknown => {}
                }
            }
            let message = e.into_inner().to_string();
            let message = message
                .split(" at line ")
                .next()
                .unwrap_or_default()
                .to_string();
            errors.push(ConfigError::new(
                Some(locator.locate(&at)),
                format!("invalid {what}: {message}"),
            ));
            None
        }
    }
}

fn typed_model(
    document: &Value,
    locator: &Locator,
    poisoned: &HashSet<String>,
    errors: &mut ConfigErrors,
) -> Option<PipelineConfig> {
    let Some(root) = document.as_object() else {
        errors.push(ConfigError::new(
            Some(locator.locate("")),
            "a pipeline file must hold a JSON object",
        ));
        return None;
    };
    let before = errors.len();
    check_keys::<PipelineConfig>(document, "", "the pipeline", locator, errors);
    if let Some(retry) = root.get("retry") {
        check_keys::<RetryConfig>(retry, "/retry", "\"retry\"", locator, errors);
    }

    let mut steps = Vec::new();
    match root.get("steps") {
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let pointer = format!("/steps/{i}");
                if poisoned.contains(&pointer) {
                    continue;
                }
                if check_keys::<StepConfig>(item, &pointer, "a step", locator, errors)
                    && let Some(step) = deserialize::<StepConfig>(item, &pointer, "step", locator, errors)
                {
                    steps.push(step);
                }
            }
        }
        Some(_) => errors.push(ConfigError::new(Some(locator.locate("/steps")), "\"steps\" must be an array of steps")),
        None => errors.push(
            ConfigError::new(Some(locator.locate("")), "missing \"steps\"")
                .with_hint("a pipeline needs at least one step, e.g. {\"name\": \"read\", \"kind\": \"extract\", \"method\": \"generate\"}"),
        ),
    }

    let mut connections = std::collections::BTreeMap::new();
    if let Some(Value::Object(map)) = root.get("connections") {
        for (name, item) in map {
            let pointer = join_pointer("/connections", name);
            if poisoned.contains(&pointer) {
                continue;
            }
            if let Some(credentials) = item.get("credentials") {
                check_keys::<CredentialsRef>(
                    credentials,
                    &join_pointer(&pointer, "credentials"),
                    "\"credentials\"",
                    locator,
                    errors,
                );
            }
            if let Some(c) =
                deserialize::<ConnectionConfig>(item, &pointer, "connection", locator, errors)
            {
                connections.insert(name.clone(), c);
            }
        }
    }

    // The rest of the top level, without the parts already read.
    let known = known_keys::<PipelineConfig>();
    let mut head: Map<String, Value> = root
        .iter()
        .filter(|(k, _)| known.contains(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    head.insert("steps".into(), Value::Array(Vec::new()));
    head.insert("connections".into(), Value::Object(Map::new()));
    let head = deserialize::<PipelineConfig>(&Value::Object(head), "", "pipeline", locator, errors);
    if errors.len() > before {
        return None;
    }
    let mut config = head?;
    config.steps = steps;
    config.connections = connections;
    Some(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_parse_json_or_string() {
        let o: Override = "/steps/0/options/rows=1000".parse().unwrap();
        assert_eq!(o.value, serde_json::json!(1000));
        let o: Override = "/steps/3/options/path=/tmp/out".parse().unwrap();
        assert_eq!(o.value, serde_json::json!("/tmp/out"));
        assert!("steps=1".parse::<Override>().is_err());
        assert!("/steps".parse::<Override>().is_err());
    }

    #[test]
    fn set_pointer_objects_and_arrays() {
        let mut doc = serde_json::json!({"steps": [{"options": {}}]});
        set_pointer(&mut doc, "/steps/0/options/rows", serde_json::json!(5)).unwrap();
        assert_eq!(doc["steps"][0]["options"]["rows"], 5);
        assert!(set_pointer(&mut doc, "/steps/3/options", serde_json::json!(5)).is_err());
        set_pointer(&mut doc, "/steps/0/a/b/c", serde_json::json!(1)).unwrap();
        assert_eq!(doc["steps"][0]["a"]["b"]["c"], 1);
        assert!(set_pointer(&mut doc, "/steps/0/a/b/c/d", serde_json::json!(5)).is_err());
    }
}
