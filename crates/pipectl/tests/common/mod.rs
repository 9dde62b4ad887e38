//! Running the `pipectl` binary from the end-to-end tests.
#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs `pipectl ARGS` with `RUST_LOG` cleared (the CLI's own `--log-level` applies).
pub fn pipectl(args: &[&str]) -> Output {
    pipectl_with_env(args, &[])
}

/// Same, with extra environment variables.
pub fn pipectl_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pipectl"));
    command.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("pipectl runs")
}

/// (stdout, stderr) as text.
pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// stdout followed by stderr.
pub fn all_output(o: &Output) -> String {
    let (out, err) = text(o);
    format!("{out}{err}")
}
