//! SIGTERM and SIGINT stop a run cleanly: the binary exits 143 / 130 with one line saying
//! nothing was committed, and the Delta table it was writing holds no data file and no commit.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Data files and log entries under a table directory.
fn written_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

fn interrupt(signal: &str, code: i32) {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("orders");
    let quickstart = pipeline_testkit::repo_root().join("configs/quickstart.json");
    let child = Command::new(env!("CARGO_BIN_EXE_pipectl"))
        .args(["run", quickstart.to_str().unwrap(), "--no-progress"])
        .args(["--set", "/steps/0/options/rows=500000000"])
        .args([
            "--set",
            &format!("/steps/4/options/path={}", table.display()),
        ])
        .args(["--set", "/steps/4/options/target_file_size_mb=1"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pipectl starts");
    // Wait until the load has written data files (staged, not committed), then signal.
    let started = Instant::now();
    while written_files(&table).is_empty() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !written_files(&table).is_empty(),
        "the load staged files before the signal"
    );
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(
        err.contains(&format!(
            "interrupted by SIG{signal}: nothing was committed"
        )),
        "{err}"
    );
    assert!(
        written_files(&table).is_empty(),
        "staged files deleted, no commit: {:?}",
        written_files(&table)
    );
}

#[test]
fn sigterm_aborts_the_run_and_exits_143() {
    interrupt("TERM", 143);
}

#[test]
fn sigint_aborts_the_run_and_exits_130() {
    interrupt("INT", 130);
}
