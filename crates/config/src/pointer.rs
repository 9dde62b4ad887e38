//! JSON Pointer (RFC 6901) helpers.

/// Escapes one reference token: `~` becomes `~0`, `/` becomes `~1`.
pub fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Appends a token to a pointer: `join_pointer("/steps", "0") == "/steps/0"`.
pub fn join_pointer(pointer: &str, token: &str) -> String {
    format!("{pointer}/{}", escape_token(token))
}

/// The pointers from the longest to the shortest prefix of `pointer`, ending with `""`.
pub(crate) fn prefixes(pointer: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(pointer);
    std::iter::from_fn(move || {
        let current = next?;
        next = if current.is_empty() {
            None
        } else {
            current.rfind('/').map(|i| &current[..i])
        };
        Some(current)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_joins() {
        assert_eq!(join_pointer("/a", "b/c~d"), "/a/b~1c~0d");
    }

    #[test]
    fn prefixes_longest_first() {
        let p: Vec<_> = prefixes("/a/b/c").collect();
        assert_eq!(p, vec!["/a/b/c", "/a/b", "/a", ""]);
    }
}
