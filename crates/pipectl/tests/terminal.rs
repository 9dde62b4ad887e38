//! The progress bar on a real terminal: the run happens under `script`, which gives pipectl a
//! pseudo-terminal as stderr, and what the terminal received is checked: the bar is drawn,
//! rates are whole rows per second (no four-decimal `{per_sec}`), and it is cleared before the
//! summary. Without a terminal (every other test) no bar is drawn.

use std::process::Command;

#[test]
fn the_bar_is_drawn_on_a_terminal_with_whole_rates() {
    if Command::new("script").arg("--version").output().is_err() {
        let message = "no `script` (util-linux) to give pipectl a terminal";
        assert!(!pipeline_testkit::in_ci(), "{message}");
        pipeline_testkit::skip(message);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let quickstart = pipeline_testkit::repo_root().join("configs/quickstart.json");
    let command = format!(
        "{} run {} --set /steps/0/options/rows=3000000 --set /steps/4/options/path={}",
        env!("CARGO_BIN_EXE_pipectl"),
        quickstart.display(),
        dir.path().join("t").display()
    );
    let out = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env_remove("RUST_LOG")
        .env("COLUMNS", "120")
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(screen.contains("rows read ("), "no bar drawn: {screen}");
    let rates: Vec<&str> = screen
        .split("rows read (")
        .skip(1)
        .filter_map(|s| s.split(')').next())
        .collect();
    assert!(!rates.is_empty(), "{screen}");
    for rate in &rates {
        let number = rate.trim_end_matches(" rows/s");
        assert!(
            rate.ends_with(" rows/s") && number.chars().all(|c| c.is_ascii_digit() || c == ','),
            "rate {rate:?} is not whole rows per second"
        );
    }
    assert!(
        screen.contains("succeeded: 3,000,000 rows read"),
        "{screen}"
    );
}
