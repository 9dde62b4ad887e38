//! Property test: the example pipelines, mutated at random (keys dropped, duplicated, renamed,
//! values retyped or replaced by random strings and numbers), go through loading, `$ref`
//! resolution, the secret lint and plan checks without a panic: each is either valid or gives
//! located configuration errors (`validate`'s exit 0 or 2). No service is contacted.
//!
//! 2,000 cases by default; `PIPECTL_FUZZ_CASES=200000 cargo test -p pipeline-core --test
//! fuzz_pipelines` for a longer local run.

use pipeline_core::Pipeline;
use proptest::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

const EXAMPLES: &[&str] = &[
    "configs/quickstart.json",
    "configs/examples/revenue_by_country.json",
    "configs/examples/postgres_to_s3.json",
    "configs/examples/mysql_to_postgres.json",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A private copy of `configs/` (the examples' `$ref`s resolve inside it); mutated files are
/// written beside the originals under unique names.
fn workspace() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&repo().join("configs"), &dir.path().join("configs"));
        dir
    })
    .path()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn examples() -> &'static Vec<Value> {
    static DOCS: OnceLock<Vec<Value>> = OnceLock::new();
    DOCS.get_or_init(|| {
        EXAMPLES
            .iter()
            .map(|p| {
                serde_json::from_str(&std::fs::read_to_string(repo().join(p)).unwrap()).unwrap()
            })
            .collect()
    })
}

/// JSON pointers of every node of a document.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(child, p, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(child, p, out);
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete,
    Replace(Value),
    RenameKey(String),
    Duplicate,
    WrapInArray,
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::from),
        prop::sample::select(vec![
            "",
            "*",
            "$ref",
            "../../etc/passwd",
            "amount > ",
            "CASE WHEN",
            "([a-z",
            "int128",
            "datetime[us, \u{2003}]",
            "200000000d",
            "postgres",
            "filter",
            "load",
            "extract",
            "s3://",
            "secret/pipectl/x",
            "orders",
            "\u{0}",
            "é😀",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_$]{1,8}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        Just(Mutation::Delete),
        arb_value().prop_map(Mutation::Replace),
        prop::sample::select(vec![
            "name",
            "kind",
            "method",
            "options",
            "inputs",
            "connection",
            "steps",
            "$ref",
            "password",
            "token",
            "retry",
            "mode",
            "x",
        ])
        .prop_map(|s| Mutation::RenameKey(s.to_string())),
        Just(Mutation::Duplicate),
        Just(Mutation::WrapInArray),
    ]
}

/// Applies a mutation at a pointer of the document (a no-op where it does not apply).
fn apply(doc: &mut Value, pointer: &str, m: &Mutation) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let key = last.replace("~1", "/").replace("~0", "~");
    let Some(parent) = doc.pointer_mut(parent) else {
        return;
    };
    match (parent, m) {
        (Value::Object(map), Mutation::Delete) => {
            map.remove(&key);
        }
        (Value::Object(map), Mutation::RenameKey(to)) => {
            if let Some(v) = map.remove(&key) {
                map.insert(to.clone(), v);
            }
        }
        (Value::Object(map), Mutation::Duplicate) => {
            if let Some(v) = map.get(&key).cloned() {
                map.insert(format!("{key}_dup"), v);
            }
        }
        (Value::Array(items), Mutation::Delete) => {
            if let Ok(i) = key.parse::<usize>()
                && i < items.len()
            {
                items.remove(i);
            }
        }
        (Value::Array(items), Mutation::Duplicate) => {
            if let Some(v) = key
                .parse::<usize>()
                .ok()
                .and_then(|i| items.get(i))
                .cloned()
            {
                items.push(v);
            }
        }
        (parent, Mutation::Replace(v)) => {
            if let Some(slot) = child(parent, &key) {
                *slot = v.clone();
            }
        }
        (parent, Mutation::WrapInArray) => {
            if let Some(slot) = child(parent, &key) {
                *slot = Value::Array(vec![slot.take()]);
            }
        }
        _ => {}
    }
}

fn child<'a>(parent: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    match parent {
        Value::Object(map) => map.get_mut(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
        _ => None,
    }
}

fn cases() -> u32 {
    std::env::var("PIPECTL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_examples_are_valid_or_located_errors_never_panics(
        example in 0..EXAMPLES.len(),
        mutations in prop::collection::vec((any::<prop::sample::Index>(), arb_mutation()), 1..5),
    ) {
        let mut doc = examples()[example].clone();
        for (at, m) in &mutations {
            let mut all = Vec::new();
            pointers(&doc, String::new(), &mut all);
            if all.is_empty() {
                break;
            }
            let pointer = all[at.index(all.len())].clone();
            apply(&mut doc, &pointer, m);
        }
        static N: AtomicU64 = AtomicU64::new(0);
        // Beside the original, so that its `$ref`s resolve.
        let dir = workspace().join(Path::new(EXAMPLES[example]).parent().unwrap_or(Path::new("")));
        let file = dir.join(format!("fuzz_{}_{}.json", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        std::fs::write(&file, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        // Either a plan or configuration errors that say where: never a panic.
        match Pipeline::from_file(&file, &[]) {
            Ok(_) => {}
            Err(errors) => {
                let text = errors.to_string();
                prop_assert!(!text.is_empty());
                prop_assert!(text.contains("error"), "{text}");
            }
        }
        let _ = std::fs::remove_file(&file);
    }
}
