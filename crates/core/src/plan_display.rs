//! How `pipectl plan` prints a plan: one line per step (inputs, formats, conversions, what the
//! step holds in memory and the columns it reads), the stream's settings and the connections.

use crate::plan::Plan;
use std::fmt;

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "pipeline {} ({} mode; up to {} retries, {}s apart)",
            self.pipeline, self.mode, self.retry.max_retries, self.retry.delay_seconds
        )?;
        let width = self
            .steps
            .iter()
            .map(|s| s.name.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let mwidth = self
            .steps
            .iter()
            .map(|s| s.method.len())
            .max()
            .unwrap_or(6)
            .max(6);
        for (i, s) in self.steps.iter().enumerate() {
            let from = if s.inputs.is_empty() {
                "source".to_string()
            } else {
                s.inputs.join(", ")
            };
            let input = s
                .input_format
                .map(|f| f.to_string())
                .unwrap_or_else(|| "-".into());
            let convert = s
                .auto_convert_to
                .map(|t| format!(" (auto: convert {input} to {t})"))
                .unwrap_or_default();
            let mut extra = Vec::new();
            if let Some(c) = &s.connection {
                extra.push(format!("connection {c}"));
            }
            if let Some(o) = s.on_failure {
                extra.push(format!("on_failure {o}"));
            }
            if let Some(q) = &s.quarantine {
                extra.push(format!("invalid rows to dataset {q}"));
            }
            if let Some(memory) = &s.memory {
                extra.push(memory.clone());
            }
            if let Some(columns) = &s.columns {
                extra.push(format!("reads columns {}", columns.join(", ")));
            }
            let extra = if extra.is_empty() {
                String::new()
            } else {
                format!("  [{}]", extra.join("; "))
            };
            writeln!(
                f,
                "  {:>2}. {:<width$}  {:<9} {:<mwidth$}  from {from}: {input} -> {}{convert}{extra}",
                i + 1,
                s.name,
                s.kind,
                s.method,
                s.output_format,
            )?;
        }
        if let Some(stream) = &self.streaming {
            write!(f, "{stream}")?;
        }
        if !self.connections.is_empty() {
            writeln!(f, "connections:")?;
            for (name, system, vault) in &self.connections {
                match vault {
                    Some(path) => {
                        writeln!(f, "  {name}: {system}, credentials from Vault at {path}")?
                    }
                    None => writeln!(f, "  {name}: {system}, no credentials")?,
                }
            }
        }
        Ok(())
    }
}
