//! Line:column positions of every value in a JSON text, keyed by JSON Pointer.
//!
//! serde_json does not report where values are, so this small scanner walks a text that serde_json
//! has already accepted and records, for each member, where its key starts (for array elements,
//! where the element starts). Errors then point at the line a data engineer has to edit.

use crate::pointer::join_pointer;
use std::collections::HashMap;

/// Positions (1-based line and column) by JSON Pointer.
#[derive(Debug, Default, Clone)]
pub struct SpanIndex {
    positions: HashMap<String, (u32, u32)>,
}

impl SpanIndex {
    /// Indexes a text that is valid JSON. On invalid input it indexes what it can.
    pub fn build(text: &str) -> Self {
        let mut scanner = Scanner {
            bytes: text.as_bytes(),
            pos: 0,
            line: 1,
            line_start: 0,
            text,
        };
        let mut index = SpanIndex::default();
        scanner.skip_ws();
        let at = scanner.here();
        index.positions.insert(String::new(), at);
        scanner.value("", &mut index);
        index
    }

    /// The position recorded for exactly this pointer.
    pub fn get(&self, pointer: &str) -> Option<(u32, u32)> {
        self.positions.get(pointer).copied()
    }
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    line: u32,
    line_start: usize,
}

impl Scanner<'_> {
    fn here(&self) -> (u32, u32) {
        let col = self
            .text
            .get(self.line_start..self.pos)
            .map_or(0, |s| s.chars().count())
            .saturating_add(1);
        let col = u32::try_from(col).unwrap_or(u32::MAX);
        (self.line, col)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn bump(&mut self) {
        if self.peek() == Some(b'\n') {
            self.line = self.line.saturating_add(1);
            self.line_start = self.pos.saturating_add(1);
        }
        self.pos = self.pos.saturating_add(1);
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.bump();
        }
    }

    /// Reads a string literal starting at `"`, returning its unescaped text.
    fn string(&mut self) -> String {
        let start = self.pos;
        self.bump();
        while let Some(b) = self.peek() {
            match b {
                b'\\' => {
                    self.bump();
                    self.bump();
                }
                b'"' => {
                    self.bump();
                    break;
                }
                _ => self.bump(),
            }
        }
        serde_json::from_str(&self.text[start..self.pos]).unwrap_or_default()
    }

    fn value(&mut self, pointer: &str, index: &mut SpanIndex) {
        self.skip_ws();
        match self.peek() {
            Some(b'{') => {
                self.bump();
                loop {
                    self.skip_ws();
                    match self.peek() {
                        Some(b'"') => {}
                        Some(b'}') | None => {
                            self.bump();
                            return;
                        }
                        Some(_) => {
                            self.bump();
                            continue;
                        }
                    }
                    let at = self.here();
                    let key = self.string();
                    let child = join_pointer(pointer, &key);
                    index.positions.insert(child.clone(), at);
                    self.skip_ws();
                    if self.peek() == Some(b':') {
                        self.bump();
                    }
                    self.value(&child, index);
                    self.skip_ws();
                    if self.peek() == Some(b',') {
                        self.bump();
                    }
                }
            }
            Some(b'[') => {
                self.bump();
                let mut i = 0usize;
                loop {
                    self.skip_ws();
                    match self.peek() {
                        Some(b']') | None => {
                            self.bump();
                            return;
                        }
                        _ => {}
                    }
                    let child = join_pointer(pointer, &i.to_string());
                    index.positions.insert(child.clone(), self.here());
                    self.value(&child, index);
                    i = i.saturating_add(1);
                    self.skip_ws();
                    if self.peek() == Some(b',') {
                        self.bump();
                    }
                }
            }
            Some(b'"') => {
                self.string();
            }
            Some(_) => {
                while let Some(b) = self.peek() {
                    if matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.bump();
                }
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_keys_and_elements() {
        let text = "{\n  \"a\": 1,\n  \"steps\": [\n    {\"name\": \"x\"},\n    {\"na/me\": \"é\", \"k\": [1, 2]}\n  ]\n}";
        let index = SpanIndex::build(text);
        assert_eq!(index.get(""), Some((1, 1)));
        assert_eq!(index.get("/a"), Some((2, 3)));
        assert_eq!(index.get("/steps"), Some((3, 3)));
        assert_eq!(index.get("/steps/0"), Some((4, 5)));
        assert_eq!(index.get("/steps/0/name"), Some((4, 6)));
        assert_eq!(index.get("/steps/1/na~1me"), Some((5, 6)));
        assert_eq!(index.get("/steps/1/k"), Some((5, 20)));
        assert_eq!(index.get("/steps/1/k/1"), Some((5, 29)));
    }

    #[test]
    fn escaped_quotes_in_strings() {
        let index = SpanIndex::build(r#"{"a": "x\"y", "b": 2}"#);
        assert_eq!(index.get("/b"), Some((1, 15)));
    }
}
