//! `$ref` resolution. Any JSON object may be `{"$ref": "relative/path.json"}`; the path is relative
//! to the file that contains it. Keys beside `$ref` override the referenced content (objects are
//! deep-merged). References nest up to [`MAX_REF_DEPTH`]; a cycle is an error that prints the
//! chain of files.
//!
//! Resolution also records where every resolved value came from, so that later errors (typed
//! model, lint, methods) can name the right file, pointer and line:column.

use crate::diag::{ConfigError, ConfigErrors, Location};
use crate::pointer::{join_pointer, prefixes};
use crate::span::SpanIndex;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// How deep `$ref`s may nest before resolution gives up.
pub const MAX_REF_DEPTH: usize = 32;

pub(crate) struct SourceFile {
    pub path: PathBuf,
    pub spans: SpanIndex,
}

/// Where a resolved value came from.
#[derive(Debug, Clone)]
struct Origin {
    /// Index into `Locator::files`, or `None` for a command-line override.
    file: Option<usize>,
    pointer: String,
}

/// Maps pointers of the resolved document back to files, pointers and line:columns.
#[derive(Default)]
pub struct Locator {
    files: Vec<SourceFile>,
    origins: BTreeMap<String, Origin>,
}

impl Locator {
    /// The location of a pointer of the resolved document.
    pub fn locate(&self, pointer: &str) -> Location {
        for prefix in prefixes(pointer) {
            if let Some(origin) = self.origins.get(prefix) {
                let file_pointer = format!("{}{}", origin.pointer, &pointer[prefix.len()..]);
                let Some(file) = origin.file.and_then(|i| self.files.get(i)) else {
                    return Location {
                        file: None,
                        pointer: pointer.to_string(),
                        line_col: None,
                    };
                };
                let line_col = prefixes(&file_pointer).find_map(|p| file.spans.get(p));
                return Location {
                    file: Some(file.path.clone()),
                    pointer: file_pointer,
                    line_col,
                };
            }
        }
        Location {
            file: None,
            pointer: pointer.to_string(),
            line_col: None,
        }
    }

    /// The files read, the root first.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.path.as_path())
    }

    pub(crate) fn record_override(&mut self, pointer: &str) {
        let stale: Vec<String> = self
            .origins
            .range(pointer.to_string()..)
            .take_while(|(k, _)| k.starts_with(pointer))
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            self.origins.remove(&k);
        }
        self.origins.insert(
            pointer.to_string(),
            Origin {
                file: None,
                pointer: pointer.to_string(),
            },
        );
    }
}

pub(crate) struct Resolver {
    pub locator: Locator,
    pub errors: ConfigErrors,
    /// Resolved pointers whose `$ref` failed (their value is a null placeholder).
    pub poisoned: std::collections::HashSet<String>,
    /// Parsed files by canonical path: (index into locator.files, root value).
    cache: HashMap<PathBuf, (usize, Value)>,
}

impl Resolver {
    pub fn new() -> Self {
        Resolver {
            locator: Locator::default(),
            errors: ConfigErrors::default(),
            poisoned: Default::default(),
            cache: HashMap::new(),
        }
    }

    /// Reads and parses a file, or records why it cannot be. `from` is where the file was named.
    /// Files over [`MAX_FILE_BYTES`] are refused before they are read.
    fn read(
        &mut self,
        path: &Path,
        text: Option<String>,
        from: Option<Location>,
    ) -> Option<(usize, Value)> {
        let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if let Some(hit) = self.cache.get(&canonical) {
            return Some(hit.clone());
        }
        let text = match text {
            Some(t) => t,
            None => match read_limited(path) {
                Ok(t) => t,
                Err(e) => {
                    let message = match &from {
                        Some(_) => format!("cannot read referenced file {}: {e}", path.display()),
                        None => format!("cannot read pipeline file {}: {e}", path.display()),
                    };
                    let hint = from.as_ref().map(|_| {
                        "a $ref path is relative to the directory of the file that contains it"
                            .to_string()
                    });
                    self.errors
                        .push(ConfigError::new(from, message).with_hint_opt(hint));
                    return None;
                }
            },
        };
        match serde_json::from_str::<Value>(&text) {
            Ok(value) => {
                let index = self.locator.files.len();
                self.locator.files.push(SourceFile {
                    path: path.to_path_buf(),
                    spans: SpanIndex::build(&text),
                });
                self.cache.insert(canonical, (index, value.clone()));
                Some((index, value))
            }
            Err(e) => {
                let location = Location {
                    file: Some(path.to_path_buf()),
                    pointer: String::new(),
                    line_col: Some((e.line() as u32, e.column() as u32)),
                };
                let mut message = e.to_string();
                if let Some(i) = message.find(" at line ") {
                    message.truncate(i);
                }
                self.errors.push(
                    ConfigError::new(Some(location), format!("malformed JSON: {message}"))
                        .with_hint(
                            "check for a missing comma, quote or bracket near this position",
                        ),
                );
                None
            }
        }
    }

    /// Resolves the root file (whose text may be given) into one document.
    pub fn resolve_root(&mut self, path: &Path, text: Option<String>) -> Option<Value> {
        let (index, value) = self.read(path, text, None)?;
        let mut stack = vec![path.to_path_buf()];
        Some(self.resolve(value, index, String::new(), String::new(), &mut stack))
    }

    fn location(&self, file: usize, pointer: &str) -> Location {
        let f = self.locator.files.get(file);
        Location {
            file: f.map(|f| f.path.clone()),
            pointer: pointer.to_string(),
            line_col: f.and_then(|f| prefixes(pointer).find_map(|p| f.spans.get(p))),
        }
    }

    fn resolve(
        &mut self,
        value: Value,
        file: usize,
        fp: String,
        out: String,
        stack: &mut Vec<PathBuf>,
    ) -> Value {
        self.locator.origins.insert(
            out.clone(),
            Origin {
                file: Some(file),
                pointer: fp.clone(),
            },
        );
        match value {
            Value::Object(map) if map.contains_key("$ref") => {
                self.resolve_ref(map, file, fp, out, stack)
            }
            Value::Object(map) => {
                let mut result = Map::with_capacity(map.len());
                for (k, v) in map {
                    let child = self.resolve(
                        v,
                        file,
                        join_pointer(&fp, &k),
                        join_pointer(&out, &k),
                        stack,
                    );
                    result.insert(k, child);
                }
                Value::Object(result)
            }
            Value::Array(items) => Value::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let t = i.to_string();
                        self.resolve(
                            v,
                            file,
                            join_pointer(&fp, &t),
                            join_pointer(&out, &t),
                            stack,
                        )
                    })
                    .collect(),
            ),
            scalar => scalar,
        }
    }

    fn resolve_ref(
        &mut self,
        map: Map<String, Value>,
        file: usize,
        fp: String,
        out: String,
        stack: &mut Vec<PathBuf>,
    ) -> Value {
        let before = self.errors.len();
        let value = self.resolve_ref_inner(map, file, fp, out.clone(), stack);
        if value.is_null() && self.errors.len() > before {
            self.poisoned.insert(out);
        }
        value
    }

    fn resolve_ref_inner(
        &mut self,
        mut map: Map<String, Value>,
        file: usize,
        fp: String,
        out: String,
        stack: &mut Vec<PathBuf>,
    ) -> Value {
        let ref_pointer = join_pointer(&fp, "$ref");
        let Some(Value::String(target)) = map.remove("$ref") else {
            self.errors.push(
                ConfigError::new(
                    Some(self.location(file, &ref_pointer)),
                    "\"$ref\" must be a string",
                )
                .with_hint("write {\"$ref\": \"relative/path.json\"}"),
            );
            return Value::Null;
        };
        let base = self
            .locator
            .files
            .get(file)
            .and_then(|f| f.path.parent())
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let path = base.join(&target);
        let canonical = path.canonicalize().unwrap_or_else(|_| path.clone());
        let seen = stack
            .iter()
            .position(|p| p.canonicalize().unwrap_or_else(|_| p.clone()) == canonical);
        if let Some(start) = seen {
            let chain: Vec<String> = stack
                .get(start..)
                .unwrap_or_default()
                .iter()
                .chain(std::iter::once(&path))
                .map(|p| {
                    p.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                })
                .collect();
            self.errors.push(
                ConfigError::new(
                    Some(self.location(file, &ref_pointer)),
                    format!("circular $ref: {}", chain.join(" → ")),
                )
                .with_hint("a file must not include itself, directly or through other files"),
            );
            return Value::Null;
        }
        if stack.len() >= MAX_REF_DEPTH {
            self.errors.push(
                ConfigError::new(
                    Some(self.location(file, &ref_pointer)),
                    format!("$ref nesting deeper than {MAX_REF_DEPTH} files"),
                )
                .with_hint("flatten the chain of included files"),
            );
            return Value::Null;
        }
        let from = self.location(file, &ref_pointer);
        let Some((target_index, target_value)) = self.read(&path, None, Some(from)) else {
            return Value::Null;
        };
        stack.push(path);
        let mut resolved = self.resolve(
            target_value,
            target_index,
            String::new(),
            out.clone(),
            stack,
        );
        stack.pop();
        if map.is_empty() {
            return resolved;
        }
        if !resolved.is_object() {
            self.errors.push(ConfigError::new(
                Some(self.location(file, &fp)),
                format!("keys beside \"$ref\" need {target} to hold a JSON object"),
            ));
            return resolved;
        }
        for (k, v) in map {
            let child = self.resolve(
                v,
                file,
                join_pointer(&fp, &k),
                join_pointer(&out, &k),
                stack,
            );
            if let Value::Object(target) = &mut resolved {
                match target.get_mut(&k) {
                    Some(existing) => deep_merge(existing, child),
                    None => {
                        target.insert(k, child);
                    }
                }
            }
        }
        // The object itself now comes from the referencing file.
        self.locator.origins.insert(
            out,
            Origin {
                file: Some(file),
                pointer: fp,
            },
        );
        resolved
    }
}

/// Merges `overlay` into `base`: objects key by key, anything else replaced.
pub(crate) fn deep_merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => deep_merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// The largest pipeline (or referenced) file read: far above any real pipeline, far below what
/// would make `validate` slow or memory-hungry.
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// Reads a file as UTF-8 text, refusing one larger than [`MAX_FILE_BYTES`] and naming the byte
/// offset of invalid UTF-8.
fn read_limited(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "the file is larger than {} MiB, too large for a pipeline file",
            MAX_FILE_BYTES / (1024 * 1024)
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "the file is not UTF-8 text (invalid bytes at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deep_merge_objects_replace_scalars_and_arrays() {
        let mut base = json!({"a": {"x": 1, "y": [1]}, "b": 1});
        deep_merge(&mut base, json!({"a": {"y": [2], "z": 3}, "c": 4}));
        assert_eq!(
            base,
            json!({"a": {"x": 1, "y": [2], "z": 3}, "b": 1, "c": 4})
        );
    }
}
