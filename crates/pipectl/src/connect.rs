//! `pipectl validate --connect`: fetch every connection's credentials and open each connection,
//! printing one line per connection (never a secret) and exiting 1 if any failed.

use pipeline_core::{CredentialProvider, Pipeline};
use std::process::ExitCode;
use std::sync::Arc;

pub fn check(pipeline: &Pipeline, provider: Option<Arc<dyn CredentialProvider>>) -> ExitCode {
    let runtime = match crate::async_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let source = provider
        .as_ref()
        .map(|p| p.describe())
        .unwrap_or_else(|| "no Vault configured".into());
    let checks = runtime.block_on(pipeline.check_connections(provider));
    if checks.is_empty() {
        println!("no connections to check");
        return ExitCode::SUCCESS;
    }
    println!("connections (credentials: {source}):");
    let name_w = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let sys_w = checks.iter().map(|c| c.system.len()).max().unwrap_or(0);
    let mut failed = 0;
    for c in &checks {
        let ms = c.elapsed.as_millis();
        match &c.outcome {
            Ok(what) => println!(
                "  ok      {:<name_w$}  {:<sys_w$}  {what} ({ms} ms)",
                c.name, c.system
            ),
            Err(e) => {
                failed += 1;
                println!(
                    "  FAILED  {:<name_w$}  {:<sys_w$}  {} ({ms} ms)",
                    c.name,
                    c.system,
                    e.full_message()
                );
                if let Some(hint) = e.hint() {
                    println!("          = help: {hint}");
                }
            }
        }
    }
    if failed > 0 {
        println!("{failed} of {} connections failed", checks.len());
        ExitCode::from(1)
    } else {
        println!("all {} connections ok", checks.len());
        ExitCode::SUCCESS
    }
}
