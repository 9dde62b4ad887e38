//! `pipectl`: run, validate and plan data pipelines written as JSON files.
//!
//! Exit codes: 0 success, 1 the run failed after its retries, 2 invalid configuration or usage,
//! 130 / 143 the run was interrupted by SIGINT / SIGTERM (after aborting what had not committed).

mod connect;
mod delta;
mod logging;
mod metrics_http;
mod progress;
mod spark;
mod test_cmd;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use pipeline_core::{
    CancelToken, ConfigErrors, CredentialProvider, ErrorClass, Override, Pipeline, Registry, RunId,
    RunOptions, StreamOptions, VaultProvider,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "pipectl",
    version,
    about = "Run data pipelines written as JSON files",
    propagate_version = true
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    /// Local development only: accept any TLS certificate from Vault (logs a warning).
    #[arg(long, global = true)]
    vault_skip_tls_verify: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PlanFormat {
    Mermaid,
    Dot,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline (retrying transient failures per its retry policy).
    #[command(visible_alias = "execute")]
    Run {
        /// The pipeline file.
        file: PathBuf,
        /// Override a value of the resolved pipeline: --set /steps/0/options/rows=1000 (repeatable).
        #[arg(long = "set", value_name = "POINTER=VALUE")]
        overrides: Vec<String>,
        /// Write a JSON run report to this file.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// Do not draw a progress bar even on a terminal.
        #[arg(long)]
        no_progress: bool,
        /// Finish an earlier run (its id is printed at the end of every run): loads that run
        /// committed are recognised by their sinks and not written again.
        #[arg(long, value_name = "RUN_ID")]
        resume: Option<String>,
        /// Streaming pipelines: process what the topics hold now, in micro-batches, then stop
        /// (tests, backfills, cron).
        #[arg(long)]
        once: bool,
        /// Streaming pipelines: serve Prometheus metrics at http://ADDR/metrics.
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<std::net::SocketAddr>,
        /// The engine: polars (this machine) or spark (a Spark cluster through Spark Connect);
        /// default: the pipeline's "engine", else polars.
        #[arg(long, value_enum)]
        engine: Option<spark::EngineArg>,
        /// The Spark Connect endpoint (sc://HOST:PORT[/;token=...]); default: $SPARK_REMOTE,
        /// else the pipeline's spark.remote.
        #[arg(long, value_name = "URL", env = "SPARK_REMOTE", hide_env_values = true)]
        spark_remote: Option<String>,
    },
    /// Check a pipeline without running it (no I/O): files, $refs, secrets, methods, options, formats.
    Validate {
        file: PathBuf,
        #[arg(long = "set", value_name = "POINTER=VALUE")]
        overrides: Vec<String>,
        /// Also fetch every connection's credentials from Vault and open each connection
        /// (read-only), reporting ok or the failure per connection.
        #[arg(long)]
        connect: bool,
        /// Also check that this engine can run it: `spark` names every step Spark would not
        /// run as pipectl does.
        #[arg(long, value_enum)]
        engine: Option<spark::EngineArg>,
    },
    /// Show the resolved chain: steps, methods, formats, connections (never a secret).
    Plan {
        file: PathBuf,
        #[arg(long = "set", value_name = "POINTER=VALUE")]
        overrides: Vec<String>,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
        /// Print the plan as a picture: Mermaid or Graphviz DOT text.
        #[arg(long, value_enum, conflicts_with_all = ["json", "resolved"])]
        format: Option<PlanFormat>,
        /// Print the resolved pipeline document (all $refs included) instead.
        #[arg(long, conflicts_with = "json")]
        resolved: bool,
    },
    /// Print the JSON Schema (draft 2020-12) of pipeline files, for editors.
    Schema,
    /// List the methods a step can call.
    Methods,
    /// Delta table hygiene: history, checkpoint, optimize (compaction), vacuum.
    #[command(subcommand)]
    Delta(delta::DeltaCommand),
    /// Print a shell completion script: `pipectl completions bash > /etc/bash_completion.d/pipectl`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `pipectl man > pipectl.1`.
    Man,
    /// Write a starter pipeline from a live table, topic or files (real column names and types,
    /// schema and key checks, connection files pointing at Vault); without --from, the quickstart.
    Init {
        /// postgres://CONNECTION/[schema.]table, mysql://CONNECTION/table, kafka://CONNECTION/topic,
        /// s3://BUCKET/PREFIX[?connection=NAME] or a local path.
        #[arg(long)]
        from: Option<String>,
        /// delta:PATH (default delta:out/NAME), s3://BUCKET/PREFIX, postgres://CONNECTION/table, mysql://CONNECTION/table.
        #[arg(long)]
        to: Option<String>,
        /// Pipeline name (the file is DIR/NAME.json).
        #[arg(long, default_value = "starter")]
        name: String,
        /// Where to write the pipeline and its connections/ files.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Vault KV mount of the connections' credentials (paths MOUNT/pipectl/CONNECTION).
        #[arg(long, default_value = "secret")]
        vault_mount: String,
        /// Replace an existing pipeline file.
        #[arg(long)]
        force: bool,
    },
    /// Run pipeline tests: fixture rows in, expectations on steps out (no connection, no Vault).
    Test {
        /// Test files, or directories of `*.test.json` files.
        paths: Vec<PathBuf>,
        /// Print the JSON Schema of test files instead.
        #[arg(long)]
        schema: bool,
    },
}

/// `pipectl init`: samples the source with the Vault credentials of the environment.
fn init_cmd(request: &pipeline_core::init::InitRequest, skip_tls_verify: bool) -> ExitCode {
    let provider: Option<Arc<dyn CredentialProvider>> = if request.from.is_some() {
        match VaultProvider::from_env(skip_tls_verify) {
            Ok(v) => v.map(|v| Arc::new(v) as Arc<dyn CredentialProvider>),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let runtime = match async_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(pipeline_core::init::init(request, provider)) {
        Ok(done) => {
            println!("wrote {}", done.pipeline_file.display());
            for c in &done.connection_files {
                println!("wrote {} (credentials stay in Vault)", c.display());
            }
            if !done.columns.is_empty() {
                let cols: Vec<String> = done
                    .columns
                    .iter()
                    .map(|(c, t)| format!("{c} {t}"))
                    .collect();
                println!("columns: {}", cols.join(", "));
                println!(
                    "keys: {}",
                    if done.keys.is_empty() {
                        "none found".to_string()
                    } else {
                        done.keys.join(", ")
                    }
                );
            }
            let f = done.pipeline_file.display();
            println!("next: pipectl validate --connect {f} && pipectl run {f}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", e.full_message());
            if let Some(h) = e.hint() {
                eprintln!("   = help: {h}");
            }
            ExitCode::from(if e.class() == ErrorClass::User { 2 } else { 1 })
        }
    }
}

/// The multi-threaded runtime the async commands run on; exit 1 (said why) if it cannot start.
fn async_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: starting the async runtime: {e}");
            ExitCode::from(1)
        })
}

fn parse_overrides(raw: &[String]) -> Result<Vec<Override>, String> {
    raw.iter().map(|s| s.parse::<Override>()).collect()
}

/// Loads and checks a pipeline, printing configuration errors.
fn load(file: &Path, overrides: &[String]) -> Result<Pipeline, ExitCode> {
    let overrides = parse_overrides(overrides).map_err(|e| {
        eprintln!("error: --set: {e}");
        ExitCode::from(2)
    })?;
    Pipeline::from_file(file, &overrides).map_err(|errors: ConfigErrors| {
        eprintln!("{errors}");
        ExitCode::from(2)
    })
}

/// glibc gives each thread its own malloc arena; with Polars' thread pool that fragments memory
/// and lets the peak creep up on long runs. Two arenas keep it flat. Must run before any thread.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        // Batch buffers are a few MB each: serving them from the heap instead of fresh mmaps
        // saves a page fault per page every batch (about 15% of a load's CPU).
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    match cli.command {
        Command::Schema => {
            let schema = pipeline_core::pipeline_schema(&Registry::standard());
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Command::Methods => {
            print_methods();
            ExitCode::SUCCESS
        }
        Command::Init {
            from,
            to,
            name,
            dir,
            vault_mount,
            force,
        } => {
            if let Err(e) = logging::init(cli.log_format, "warn", None) {
                eprintln!("error: {e:#}");
                return ExitCode::from(2);
            }
            let request = pipeline_core::init::InitRequest {
                name,
                dir,
                from,
                to,
                vault_mount,
                force,
            };
            init_cmd(&request, cli.vault_skip_tls_verify)
        }
        Command::Test { paths, schema } => {
            // The cases' own failures are the output; logs only when RUST_LOG asks.
            if let Err(e) = logging::init(cli.log_format, "off", None) {
                eprintln!("error: {e:#}");
                return ExitCode::from(2);
            }
            test_cmd::run(&paths, schema)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "pipectl", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man => {
            use clap::CommandFactory;
            match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: writing the man page: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Delta(cmd) => {
            if let Err(e) = logging::init(cli.log_format, &cli.log_level, None) {
                eprintln!("error: {e:#}");
                return ExitCode::from(2);
            }
            let skip = cli.vault_skip_tls_verify;
            delta::run(cmd, |p| credentials(p, skip))
        }
        Command::Validate {
            file,
            overrides,
            connect,
            engine,
        } => match load(&file, &overrides) {
            Ok(p) if spark::engine(engine, &p) == pipeline_core::Engine::Spark && !connect => {
                spark::validate(&p, &file)
            }
            Ok(p) => {
                println!(
                    "ok: pipeline \"{}\" with {} steps is valid ({})",
                    p.plan().pipeline,
                    p.plan().steps.len(),
                    file.display()
                );
                if !connect {
                    return ExitCode::SUCCESS;
                }
                if let Err(e) = logging::init(cli.log_format, &cli.log_level, None) {
                    eprintln!("error: {e:#}");
                    return ExitCode::from(2);
                }
                match credentials(&p, cli.vault_skip_tls_verify) {
                    Ok(provider) => connect::check(&p, provider),
                    Err(code) => code,
                }
            }
            Err(code) => code,
        },
        Command::Plan {
            file,
            overrides,
            json,
            resolved,
            format,
        } => match load(&file, &overrides) {
            Ok(p) if format.is_some() => {
                match format {
                    Some(PlanFormat::Dot) => print!("{}", p.plan().dot()),
                    _ => print!("{}", p.plan().mermaid()),
                }
                ExitCode::SUCCESS
            }
            Ok(p) if resolved => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(p.resolved_document()).unwrap_or_default()
                );
                ExitCode::SUCCESS
            }
            Ok(p) if json => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(p.plan()).unwrap_or_default()
                );
                ExitCode::SUCCESS
            }
            Ok(p) => {
                print!("{}", p.plan());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Run {
            file,
            overrides,
            report,
            no_progress,
            resume,
            once,
            metrics_addr,
            engine,
            spark_remote,
        } => {
            let run_id = match resume.as_deref().map(RunId::parse).transpose() {
                Ok(id) => id,
                Err(e) => {
                    eprintln!("error: --resume: {e}");
                    eprintln!(
                        "   = help: pass the run id an earlier run printed (\"run id: ...\")"
                    );
                    return ExitCode::from(2);
                }
            };
            let pipeline = match load(&file, &overrides) {
                Ok(p) => p,
                Err(code) => return code,
            };
            let streaming = pipeline.plan().streaming.is_some();
            if !streaming && (once || metrics_addr.is_some()) {
                eprintln!(
                    "error: --once and --metrics-addr apply to streaming pipelines, and {} runs in batch mode",
                    file.display()
                );
                return ExitCode::from(2);
            }
            let progress = progress::Progress::new(
                !no_progress && !streaming && cli.log_format == LogFormat::Human,
            );
            if let Err(e) = logging::init(cli.log_format, &cli.log_level, progress.bar()) {
                eprintln!("error: {e:#}");
                return ExitCode::from(2);
            }
            let provider = match credentials(&pipeline, cli.vault_skip_tls_verify) {
                Ok(p) => p,
                Err(code) => return code,
            };
            if spark::engine(engine, &pipeline) == pipeline_core::Engine::Spark {
                return match spark::remote(spark_remote.as_deref(), &pipeline) {
                    Ok(remote) => spark::run(
                        &pipeline,
                        provider,
                        remote,
                        once,
                        report.as_deref(),
                        cli.log_format,
                    ),
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::from(2)
                    }
                };
            }
            let invocation = Invocation {
                file: &file,
                report: report.as_deref(),
                run_id,
                stream: streaming.then_some(StreamInvocation { once, metrics_addr }),
            };
            match run(pipeline, provider, invocation, progress, cli.log_format) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// The Vault provider from the environment, when the pipeline has credentials to fetch.
fn credentials(
    pipeline: &Pipeline,
    skip_tls_verify: bool,
) -> Result<Option<Arc<dyn CredentialProvider>>, ExitCode> {
    let needed = pipeline
        .config()
        .connections
        .values()
        .any(|c| c.credentials.is_some());
    if !needed {
        return Ok(None);
    }
    match VaultProvider::from_env(skip_tls_verify) {
        Ok(Some(v)) => Ok(Some(Arc::new(v))),
        // Steps that need credentials say which connection lacks them.
        Ok(None) => Ok(None),
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(hint) = e.hint() {
                eprintln!("   = help: {hint}");
            }
            Err(ExitCode::from(2))
        }
    }
}

/// What `pipectl run` was asked to do besides the pipeline.
struct Invocation<'a> {
    file: &'a Path,
    report: Option<&'a Path>,
    run_id: Option<RunId>,
    /// A streaming pipeline: `--once` and `--metrics-addr`.
    stream: Option<StreamInvocation>,
}

struct StreamInvocation {
    once: bool,
    metrics_addr: Option<std::net::SocketAddr>,
}

fn run(
    pipeline: Pipeline,
    credentials: Option<Arc<dyn CredentialProvider>>,
    invocation: Invocation<'_>,
    progress: progress::Progress,
    format: LogFormat,
) -> anyhow::Result<ExitCode> {
    let report_path = invocation.report;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let cancel = CancelToken::new();
    runtime.spawn(cancel_on_signals(cancel.clone()));
    let options = RunOptions {
        observer: Arc::new(progress.clone()),
        credentials,
        cancel,
        run_id: invocation.run_id,
    };
    let result = match &invocation.stream {
        Some(s) => runtime.block_on(async {
            let observer = match s.metrics_addr {
                Some(addr) => Some(metrics_http::serve(addr, &pipeline.plan().pipeline).await?),
                None => None,
            };
            let stream = StreamOptions {
                once: s.once,
                observer,
            };
            anyhow::Ok(pipeline.stream(&options, &stream).await)
        })?,
        None => runtime.block_on(pipeline.run(&options)),
    };
    progress.finish();
    let (report, code) = match &result {
        Ok(report) => (report.clone(), ExitCode::SUCCESS),
        Err(failure) => match failure.interrupted.as_deref() {
            Some("SIGINT") => ((*failure.report).clone(), ExitCode::from(130)),
            Some("SIGTERM") => ((*failure.report).clone(), ExitCode::from(143)),
            _ => ((*failure.report).clone(), ExitCode::from(1)),
        },
    };
    if format == LogFormat::Human {
        eprintln!("\n{}", report.summary_table());
    }
    if let Some(path) = report_path {
        let text = serde_json::to_string_pretty(&report).context("serializing the run report")?;
        std::fs::write(path, text)
            .with_context(|| format!("writing the run report to {}", path.display()))?;
    }
    if let Err(failure) = result {
        match &failure.interrupted {
            Some(signal) => eprintln!(
                "\ninterrupted by {signal}: {}",
                failure.report.commit_summary()
            ),
            None => {
                eprintln!("\nerror: {failure}");
                if let Some(hint) = failure.error.hint() {
                    eprintln!("   = help: {hint}");
                }
            }
        }
        if !failure.report.committed_loads.is_empty()
            || !failure.report.already_committed_loads.is_empty()
        {
            eprintln!(
                "   = to finish this run without writing its committed loads again: pipectl run {} --resume {}",
                invocation.file.display(),
                failure.report.run_id
            );
        }
    }
    Ok(code)
}

/// SIGINT (Ctrl-C) or SIGTERM cancels the run: it stops reading, commits nothing more and
/// aborts every load not yet committed. A second SIGINT exits at once.
async fn cancel_on_signals(cancel: CancelToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let sigterm = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => cancel.cancel("SIGINT"),
        _ = sigterm => cancel.cancel("SIGTERM"),
    }
    tracing::warn!(signal = %cancel.reason().unwrap_or_default(), "stopping: aborting every load that has not committed (Ctrl-C again to quit at once)");
    if tokio::signal::ctrl_c().await.is_ok() {
        std::process::exit(130);
    }
}

fn print_methods() {
    let registry = Registry::standard();
    for kind in pipeline_core::StepKind::ALL {
        println!("{kind}:");
        for e in registry.entries().iter().filter(|e| e.kind == kind) {
            let accepts = if e.accepts.is_empty() {
                "source".to_string()
            } else {
                e.accepts
                    .iter()
                    .map(|f| f.to_string())
                    .collect::<Vec<_>>()
                    .join("|")
            };
            let produces = match e.produces {
                pipeline_core::Produces::Format(f) => f.to_string(),
                pipeline_core::Produces::Input => "its input".to_string(),
            };
            let whole = e.gathers.describe(&[]).map(|d| format!(", {d}"));
            let whole = whole.unwrap_or_default();
            println!(
                "  {:<16} {} ({accepts} -> {produces}{whole})",
                e.name, e.summary
            );
        }
    }
    println!("\nOptions of each method: `pipectl schema` (JSON Schema), or the README.");
}
