//! The docker-compose file is valid compose-spec and mirrors the native environment's variables.
//! Runs the checker with the Python environment `scripts/dev-env up` installs.

use std::path::Path;
use std::process::Command;

#[test]
fn compose_file_is_valid_and_mirrors_the_native_environment() {
    let root = pipeline_testkit::repo_root();
    let cache = std::env::var("PIPECTL_CACHE").unwrap_or_else(|_| {
        format!(
            "{}/.cache/pipectl",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let python = Path::new(&cache).join("py-venv/bin/python");
    if !python.exists() {
        let message = format!("no {} (run scripts/dev-env up)", python.display());
        if pipeline_testkit::in_ci() {
            panic!("{message}");
        }
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIPPED: {message}");
        return;
    }
    let out = Command::new(python)
        .arg(root.join("scripts/dev-env.d/check_compose.py"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("is valid compose-spec"), "{text}");
}
