//! `pipectl delta history|checkpoint|optimize|vacuum TABLE`: table hygiene on a Delta table
//! given as a local directory, an `s3://` URL (credentials from the AWS environment), or a
//! pipeline file and one of its `delta` steps (`--step`, credentials from Vault as in a run).

use clap::Subcommand;
use pipeline_core::delta_maintenance as m;
use pipeline_core::{CredentialProvider, Pipeline, StepError};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Subcommand)]
pub enum DeltaCommand {
    /// The table's commits, newest first.
    History {
        #[command(flatten)]
        table: TableArg,
        /// How many commits to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a checkpoint of the latest version (readers then skip replaying the log).
    Checkpoint {
        #[command(flatten)]
        table: TableArg,
    },
    /// Compact small files into target-size files (a dataChange=false commit; appends meanwhile land).
    Optimize {
        #[command(flatten)]
        table: TableArg,
        /// Target file size in MiB; files under half of it are compacted.
        #[arg(long, default_value_t = 128)]
        target_size_mb: u64,
    },
    /// List (default) or delete data files no version within the retention references.
    Vacuum {
        #[command(flatten)]
        table: TableArg,
        /// Keep files needed by versions of the last N hours (at least 168 unless --force).
        #[arg(long, default_value_t = m::MIN_RETENTION_HOURS)]
        retention_hours: u64,
        /// Delete the files (without it, only list them).
        #[arg(long)]
        execute: bool,
        /// Allow a retention under 7 days.
        #[arg(long)]
        force: bool,
    },
}

#[derive(clap::Args)]
pub struct TableArg {
    /// A table directory, an s3:// URL, or a pipeline file (with --step).
    table: String,
    /// The pipeline's delta step whose table (and connection) to use.
    #[arg(long)]
    step: Option<String>,
}

impl DeltaCommand {
    fn table(&self) -> &TableArg {
        match self {
            DeltaCommand::History { table, .. }
            | DeltaCommand::Checkpoint { table }
            | DeltaCommand::Optimize { table, .. }
            | DeltaCommand::Vacuum { table, .. } => table,
        }
    }
}

/// Runs one `pipectl delta` command; `credentials` makes the Vault client for a pipeline's step.
pub fn run(
    cmd: DeltaCommand,
    credentials: impl FnOnce(&Pipeline) -> Result<Option<Arc<dyn CredentialProvider>>, ExitCode>,
) -> ExitCode {
    let runtime = match crate::async_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let arg = cmd.table();
    let is_pipeline = arg.table.ends_with(".json") && Path::new(&arg.table).is_file();
    let opened = if is_pipeline {
        let pipeline = match Pipeline::from_file(&PathBuf::from(&arg.table), &[]) {
            Ok(p) => p,
            Err(errors) => {
                eprintln!("{errors}");
                return ExitCode::from(2);
            }
        };
        let step = match pick_step(&pipeline, arg.step.as_deref()) {
            Ok(s) => s,
            Err(e) => return fail(&e),
        };
        let provider = match credentials(&pipeline) {
            Ok(p) => p,
            Err(code) => return code,
        };
        runtime.block_on(async {
            let setup = pipeline.step_setup(&step, provider).await?;
            m::step_table(&setup).await
        })
    } else if arg.step.is_some() {
        eprintln!(
            "error: --step needs a pipeline file, and {} is not one",
            arg.table
        );
        return ExitCode::from(2);
    } else {
        runtime.block_on(m::location_table(&arg.table))
    };
    let table = match opened {
        Ok(t) => t,
        Err(e) => return fail(&e),
    };
    let done = runtime.block_on(execute(cmd, table));
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// The `--step` given, or the pipeline's only delta step.
fn pick_step(pipeline: &Pipeline, step: Option<&str>) -> Result<String, StepError> {
    if let Some(s) = step {
        return Ok(s.to_string());
    }
    let delta: Vec<&str> = pipeline
        .plan()
        .steps
        .iter()
        .filter(|s| s.method == "delta")
        .map(|s| s.name.as_str())
        .collect();
    match delta.as_slice() {
        [one] => Ok(one.to_string()),
        [] => Err(StepError::user("the pipeline has no delta step")),
        many => Err(StepError::user("the pipeline has several delta steps")
            .with_hint(format!("choose one with --step: {}", many.join(", ")))),
    }
}

fn fail(e: &StepError) -> ExitCode {
    eprintln!("error: {}", e.full_message());
    if let Some(h) = e.hint() {
        eprintln!("   = help: {h}");
    }
    ExitCode::from(if e.class() == pipeline_core::ErrorClass::User {
        2
    } else {
        1
    })
}

async fn execute(cmd: DeltaCommand, mut table: m::DeltaTable) -> Result<(), StepError> {
    match cmd {
        DeltaCommand::History { limit, json, .. } => {
            let entries = m::history(&table, limit).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&entries).unwrap_or_default()
                );
                return Ok(());
            }
            println!(
                "{:>7}  {:<24}  {:<12}  {:>6}  {:>7}  parameters",
                "version", "time (UTC)", "operation", "added", "removed"
            );
            for e in entries {
                let time = e
                    .timestamp_ms
                    .and_then(chrono_time)
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:>7}  {:<24}  {:<12}  {:>6}  {:>7}  {}",
                    e.version, time, e.operation, e.files_added, e.files_removed, e.parameters
                );
            }
        }
        DeltaCommand::Checkpoint { .. } => {
            let v = m::checkpoint(&mut table).await?;
            println!("checkpoint written at version {v}");
        }
        DeltaCommand::Optimize { target_size_mb, .. } => {
            let r = m::optimize(&mut table, target_size_mb.clamp(1, 1 << 20) << 20).await?;
            match r.version {
                Some(v) => println!(
                    "compacted {} files ({} bytes) into {} at version {v}",
                    r.files_removed, r.bytes_removed, r.files_added
                ),
                None => println!(
                    "nothing to compact (no partition has two files under half the target size)"
                ),
            }
        }
        DeltaCommand::Vacuum {
            retention_hours,
            execute,
            force,
            ..
        } => {
            let r = m::vacuum(table, retention_hours, !execute, force).await?;
            let verb = if r.dry_run { "would delete" } else { "deleted" };
            for f in &r.files {
                println!("{verb} {f}");
            }
            println!(
                "{} {} files unreferenced for over {} h{}",
                verb,
                r.files.len(),
                r.retention_hours,
                if r.dry_run {
                    " (dry run: pass --execute to delete)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
fn chrono_time(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn epoch_milliseconds_as_utc_time() {
        assert_eq!(
            super::chrono_time(1_764_324_000_000).as_deref(),
            Some("2025-11-28 10:00:00")
        );
        assert_eq!(
            super::chrono_time(0).as_deref(),
            Some("1970-01-01 00:00:00")
        );
    }
}
