//! Column pruning: which columns of its inputs a step needs, given which columns of its output
//! the steps after it need. The executor drops the other columns before the step (and before
//! keeping a dataset for later steps), so that a join or a kept side input carries only what
//! is used. Methods that do not say keep every column.

use std::collections::BTreeSet;

/// The columns needed of a dataset: `None` means all of them.
pub type Needs = Option<BTreeSet<String>>;

/// Both sets of columns (`None`, all columns, absorbs).
pub fn union(a: &Needs, b: &Needs) -> Needs {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.union(b).cloned().collect()),
        _ => None,
    }
}

/// `needs` plus the named columns.
pub fn with<'a>(needs: &Needs, columns: impl IntoIterator<Item = &'a String>) -> Needs {
    needs.as_ref().map(|n| {
        let mut n = n.clone();
        n.extend(columns.into_iter().cloned());
        n
    })
}

/// Exactly the named columns.
pub fn only<'a>(columns: impl IntoIterator<Item = &'a String>) -> Needs {
    Some(columns.into_iter().cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_columns_absorb() {
        let a = only(&["x".to_string()]);
        let b = only(&["y".to_string()]);
        assert_eq!(union(&a, &b).map(|s| s.len()), Some(2));
        assert_eq!(union(&a, &None), None);
        assert_eq!(with(&None, &["z".to_string()]), None);
        assert_eq!(with(&a, &["z".to_string()]).map(|s| s.len()), Some(2));
    }
}
