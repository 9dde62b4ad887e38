//! The run report: per step rows in/out/dropped, time, throughput, status; written as JSON with
//! `--report` and shown as a summary table at the end of a run. It never holds a secret.

use pipeline_base::{ErrorClass, StepKind};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Finished and, for loads, committed.
    Ok,
    /// This step's error ended the attempt.
    Failed,
    /// Started, but the attempt failed elsewhere; its writes were discarded.
    Aborted,
    /// The attempt ended before this step ran.
    NotRun,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub name: String,
    pub kind: StepKind,
    pub method: String,
    pub status: StepStatus,
    pub rows_in: u64,
    pub rows_out: u64,
    /// Rows a filter or validation removed.
    pub rows_dropped: u64,
    pub elapsed_ms: u64,
    pub rows_per_sec: u64,
    /// Method-specific counters (validation checked/passed/failed, files written, ...).
    pub metrics: BTreeMap<String, u64>,
    /// What a source read beyond counters (a Kafka extract: each partition's start, end, lag).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReportError {
    pub step: String,
    pub class: ErrorClass,
    pub retryable: bool,
    pub message: String,
    pub hint: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub pipeline: String,
    /// The run's id (`pipectl run --resume` takes it).
    pub run_id: String,
    pub status: String,
    pub attempts: u32,
    pub started_at_unix_ms: u64,
    pub elapsed_ms: u64,
    pub rows_read: u64,
    pub rows_written: u64,
    pub error: Option<ReportError>,
    /// Loads this run committed (over all its attempts), in commit order.
    pub committed_loads: Vec<String>,
    /// Loads an earlier run with the same id had committed: recognised by their sinks and not
    /// written again (a resumed run).
    pub already_committed_loads: Vec<String>,
    /// Loads that did not commit: on failure their writes were discarded.
    pub uncommitted_loads: Vec<String>,
    /// Steps of the last attempt, in pipeline order.
    pub steps: Vec<StepReport>,
}

impl RunReport {
    /// A fixed-width table of the steps, for the end of a run.
    pub fn summary_table(&self) -> String {
        let name_w = self
            .steps
            .iter()
            .map(|s| s.name.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let method_w = self
            .steps
            .iter()
            .map(|s| s.method.len())
            .max()
            .unwrap_or(6)
            .max(6);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<name_w$}  {:<9}  {:<method_w$}  {:<8}  {:>12}  {:>12}  {:>10}  {:>10}  {:>13}",
            "step", "kind", "method", "status", "rows in", "rows out", "dropped", "time", "rows/s"
        );
        for s in &self.steps {
            let status = match s.status {
                StepStatus::Ok => "ok",
                StepStatus::Failed => "FAILED",
                StepStatus::Aborted => "aborted",
                StepStatus::NotRun => "not run",
            };
            let _ = writeln!(
                out,
                "{:<name_w$}  {:<9}  {:<method_w$}  {:<8}  {:>12}  {:>12}  {:>10}  {:>10}  {:>13}",
                s.name,
                s.kind.to_string(),
                s.method,
                status,
                group(s.rows_in),
                group(s.rows_out),
                group(s.rows_dropped),
                format!("{:.3}s", s.elapsed_ms as f64 / 1000.0),
                group(s.rows_per_sec)
            );
        }
        let secs = self.elapsed_ms as f64 / 1000.0;
        let rate = if secs > 0.0 {
            (self.rows_read as f64 / secs) as u64
        } else {
            0
        };
        let _ = write!(
            out,
            "{}: {} rows read, {} rows written in {:.3}s ({} rows/s end to end), {} attempt{}",
            self.status,
            group(self.rows_read),
            group(self.rows_written),
            secs,
            group(rate),
            self.attempts,
            if self.attempts == 1 { "" } else { "s" }
        );
        if self.status != "succeeded" || !self.already_committed_loads.is_empty() {
            let _ = write!(out, "\n{}", self.commit_summary());
        }
        let _ = write!(out, "\nrun id: {}", self.run_id);
        out
    }

    /// What a failed run left published: "nothing was committed", or the loads that committed
    /// and those that did not.
    pub fn commit_summary(&self) -> String {
        let mut text = if self.committed_loads.is_empty() {
            "nothing was committed".to_string()
        } else {
            format!("committed: {}", self.committed_loads.join(", "))
        };
        if !self.already_committed_loads.is_empty() {
            text.push_str(&format!(
                "; already committed by an earlier run with this id (not written again): {}",
                self.already_committed_loads.join(", ")
            ));
        }
        if !self.committed_loads.is_empty() && !self.uncommitted_loads.is_empty() {
            text.push_str(&format!(
                "; not committed: {}",
                self.uncommitted_loads.join(", ")
            ));
        }
        text
    }
}

/// 1234567 → "1,234,567".
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::group;

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1234567), "1,234,567");
    }
}
