//! `--engine spark`: which engine a run uses, where its Spark Connect server is, and the run
//! and validation on Spark (`pipeline-engine-spark`).

use crate::LogFormat;
use pipeline_core::{CancelToken, CredentialProvider, Engine, Pipeline};
use pipeline_engine_spark::{Remote, SparkOptions};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// The engine flag of `run` and `validate`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineArg {
    Polars,
    Spark,
}

/// `--engine` when given, else the pipeline's `engine`.
pub fn engine(flag: Option<EngineArg>, pipeline: &Pipeline) -> Engine {
    match flag {
        Some(EngineArg::Polars) => Engine::Polars,
        Some(EngineArg::Spark) => Engine::Spark,
        None => pipeline.config().engine,
    }
}

/// The endpoint: `--spark-remote`, else `SPARK_REMOTE`, else the pipeline's `spark.remote`.
pub fn remote(flag: Option<&str>, pipeline: &Pipeline) -> Result<Remote, String> {
    if let Some(text) = flag.filter(|t| !t.trim().is_empty()) {
        return Remote::parse(text).map_err(|e| e.message().to_string());
    }
    if let Ok(text) = std::env::var("SPARK_REMOTE")
        && !text.trim().is_empty()
    {
        return Remote::parse(&text).map_err(|e| format!("SPARK_REMOTE: {}", e.message()));
    }
    match pipeline.config().spark.as_ref().and_then(|s| s.remote.as_deref()) {
        Some(text) if Remote::parse(text).is_ok_and(|r| r.token.is_some()) => Err(
            "/spark/remote holds a token: a secret never goes in a pipeline file; pass it in SPARK_REMOTE or --spark-remote"
                .to_string(),
        ),
        Some(text) => Remote::parse(text).map_err(|e| format!("/spark/remote: {}", e.message())),
        None => Err(
            "the Spark engine needs a Spark Connect endpoint: pass --spark-remote sc://HOST:PORT, set SPARK_REMOTE, or write \"spark\": {\"remote\": ...} in the pipeline"
                .to_string(),
        ),
    }
}

/// `validate --engine spark`: every step Spark would not run as pipectl does.
pub fn validate(pipeline: &Pipeline, file: &Path) -> ExitCode {
    let refusals = pipeline_engine_spark::check(pipeline.plan());
    if refusals.is_empty() {
        println!(
            "ok: pipeline \"{}\" can run on Spark ({})",
            pipeline.plan().pipeline,
            file.display()
        );
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "error: pipeline \"{}\" cannot run on Spark ({}):",
        pipeline.plan().pipeline,
        file.display()
    );
    for r in &refusals {
        eprintln!("  {r}");
    }
    eprintln!("   = help: run it with the Polars engine (the default), or change these steps");
    ExitCode::from(2)
}

/// `run --engine spark`.
pub fn run(
    pipeline: &Pipeline,
    credentials: Option<Arc<dyn CredentialProvider>>,
    remote: Remote,
    once: bool,
    report: Option<&Path>,
    format: LogFormat,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let cancel = CancelToken::new();
    runtime.spawn(stop_on_signals(cancel.clone()));
    let options = SparkOptions {
        remote,
        credentials,
        once,
        cancel: cancel.clone(),
    };
    let streaming = pipeline.plan().streaming.is_some();
    let outcome = runtime.block_on(async {
        if streaming {
            // A stream stops its queries cleanly on the signal itself.
            return Some(pipeline_engine_spark::run(pipeline.plan(), options).await);
        }
        tokio::select! {
            r = pipeline_engine_spark::run(pipeline.plan(), options) => Some(r),
            () = cancel.cancelled() => None,
        }
    });
    let Some(outcome) = outcome else {
        let signal = cancel.reason().unwrap_or_default();
        eprintln!(
            "\ninterrupted by {signal}: the operation running on Spark is abandoned; loads Spark committed before stay (each is one atomic commit)"
        );
        return ExitCode::from(if signal == "SIGTERM" { 143 } else { 130 });
    };
    match outcome {
        Ok(outcome) => {
            if format == LogFormat::Human {
                eprintln!(
                    "\npipeline \"{}\" ran on Spark at {} in {:.1}s ({} attempt(s)); loads: {}",
                    outcome.pipeline,
                    outcome.remote,
                    outcome.elapsed_seconds,
                    outcome.attempts,
                    outcome.loads.join(", ")
                );
                for c in &outcome.steps {
                    match (c.rows, c.invalid) {
                        (Some(rows), Some(invalid)) => {
                            eprintln!("  {}: {rows} valid, {invalid} invalid", c.step);
                        }
                        (Some(rows), None) => eprintln!("  {}: {rows} rows written", c.step),
                        _ => eprintln!("  {}: written", c.step),
                    }
                }
            }
            if let Some(path) = report {
                let text = serde_json::to_string_pretty(&outcome).unwrap_or_default();
                if let Err(e) = std::fs::write(path, text) {
                    eprintln!("error: writing the run report to {}: {e}", path.display());
                    return ExitCode::from(1);
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\nerror: {}", e.message());
            if let Some(hint) = e.hint() {
                eprintln!("   = help: {hint}");
            }
            ExitCode::from(1)
        }
    }
}

/// SIGINT or SIGTERM stops a streaming run's queries cleanly.
async fn stop_on_signals(cancel: CancelToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    let reason = tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    };
    cancel.cancel(reason);
}
