//! No credential value of `.env.example` appears anywhere in the repository but `.env.example`:
//! pipeline files, scripts, docs and tests read credentials from Vault or the environment.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    pipeline_testkit::repo_root()
}

/// Values of `.env.example` keys that name a credential.
fn credential_values() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join(".env.example")).unwrap();
    text.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| {
            let k = k.trim().to_ascii_uppercase();
            ["PASSWORD", "TOKEN", "SECRET", "ACCESS_KEY"]
                .iter()
                .any(|w| k.contains(w))
        })
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if matches!(name.as_str(), ".git" | "target" | "out" | ".env") {
            continue;
        }
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn env_example_credentials_appear_nowhere_else() {
    let values = credential_values();
    assert!(
        values.len() >= 5,
        "found the credentials of .env.example: {values:?}"
    );
    let mut all = Vec::new();
    files(&repo(), &mut all);
    assert!(all.len() > 50, "walked the repository");
    for path in all {
        if path.ends_with(".env.example") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for (key, value) in &values {
            assert!(
                !text.contains(value.as_str()),
                "{} contains the value of {key} from .env.example",
                path.display()
            );
        }
    }
}
