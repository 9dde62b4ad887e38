//! Logs on stderr: human-readable by default, one JSON object per line with `--log-format json`.
//! Log lines are printed above the progress bar, never through it.

use crate::LogFormat;
use indicatif::ProgressBar;
use std::io::{IsTerminal, Write};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;

/// Writes to stderr, suspending the progress bar while a line is written.
#[derive(Clone)]
struct StderrAboveBar(Option<ProgressBar>);

impl Write for StderrAboveBar {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &self.0 {
            Some(bar) if !bar.is_hidden() => bar
                .suspend(|| std::io::stderr().write_all(buf))
                .map(|_| buf.len()),
            _ => std::io::stderr().write_all(buf).map(|_| buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for StderrAboveBar {
    type Writer = StderrAboveBar;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

pub fn init(format: LogFormat, level: &str, bar: Option<ProgressBar>) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v)?,
        _ => EnvFilter::try_new(format!("warn,deltalake_core=error,pipeline_core={level},pipeline_data={level},pipeline_connectors={level},pipeline_methods={level},pipeline_credentials={level},pipeline_engine_spark={level},pipectl={level}"))
            .map_err(|e| anyhow::anyhow!("invalid --log-level {level:?}: {e}"))?,
    };
    let writer = StderrAboveBar(bar);
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false)
        .with_ansi(ansi);
    let result = match format {
        LogFormat::Human => builder.with_span_events(FmtSpan::NONE).compact().try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .flatten_event(true)
            .try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("setting up logging: {e}"))
}
