//! `pipectl test PATH...`: runs pipeline test files (a file, or every `*.test.json` in a
//! directory) and prints like `cargo test`: a line per case, the failures with their diffs, and
//! `test result: ... N passed; N failed`. Exit 1 if any case fails, 2 if a file cannot be read.

use pipeline_core::testing::{run_test_file, test_files, test_schema};
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(paths: &[PathBuf], schema: bool) -> ExitCode {
    if schema {
        println!(
            "{}",
            serde_json::to_string_pretty(&test_schema()).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    if paths.is_empty() {
        eprintln!("error: name a test file or a directory of *.test.json files");
        return ExitCode::from(2);
    }
    let runtime = match crate::async_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let mut files = Vec::new();
    for p in paths {
        match test_files(p) {
            Ok(f) => files.extend(f),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let (mut passed, mut failed, mut broken) = (0usize, 0usize, 0usize);
    let mut failures = Vec::new();
    for file in &files {
        match runtime.block_on(run_test_file(file)) {
            Err(e) => {
                broken += 1;
                println!("\n{}: cannot run: {e}", file.display());
            }
            Ok(result) => {
                println!(
                    "\nrunning {} case{} from {} (pipeline {})",
                    result.cases.len(),
                    if result.cases.len() == 1 { "" } else { "s" },
                    file.display(),
                    result.pipeline
                );
                for case in result.cases {
                    if case.failures.is_empty() {
                        passed += 1;
                        println!("test {} ... ok", case.name);
                    } else {
                        failed += 1;
                        println!("test {} ... FAILED", case.name);
                        failures.push((file.display().to_string(), case));
                    }
                }
            }
        }
    }
    if !failures.is_empty() {
        println!("\nfailures:");
        for (file, case) in &failures {
            println!("\n---- {} ({file}) ----", case.name);
            for f in &case.failures {
                println!("{f}");
            }
        }
    }
    let verdict = if failed == 0 && broken == 0 {
        "ok"
    } else {
        "FAILED"
    };
    let broken_text = if broken > 0 {
        format!("; {broken} file(s) could not run")
    } else {
        String::new()
    };
    println!("\ntest result: {verdict}. {passed} passed; {failed} failed{broken_text}");
    if broken > 0 {
        ExitCode::from(2)
    } else if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
