//! A progress bar on stderr when it is a terminal: rows read against the expected total.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pipeline_core::RunObserver;
use std::io::IsTerminal;

#[derive(Clone)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(enabled: bool) -> Self {
        if !enabled || !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        Self::drawn_to(ProgressDrawTarget::stderr_with_hz(10))
    }

    /// A bar drawn to `target` (stderr on a terminal; hidden in tests).
    fn drawn_to(target: ProgressDrawTarget) -> Self {
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {human_pos}/{human_len} rows read ({per_sec}) {wide_bar} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        Progress { bar: Some(bar) }
    }

    pub fn bar(&self) -> Option<ProgressBar> {
        self.bar.clone()
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl RunObserver for Progress {
    fn attempt_started(&self, attempt: u32, of: u32) {
        if let Some(bar) = &self.bar {
            bar.reset();
            bar.set_prefix(if attempt > 1 {
                format!("attempt {attempt}/{of}")
            } else {
                String::new()
            });
        }
    }

    fn source_rows(&self, step: &str, rows: u64, total: Option<u64>) {
        if let Some(bar) = &self.bar {
            if let Some(t) = total {
                bar.set_length(t);
            }
            bar.set_message(step.to_string());
            bar.set_position(rows);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_follows_the_source_and_the_attempts() {
        assert!(Progress::new(false).bar().is_none(), "off when asked");
        let p = Progress::drawn_to(ProgressDrawTarget::hidden());
        let bar = p.bar().unwrap();
        p.attempt_started(1, 3);
        assert_eq!(bar.prefix(), "");
        p.source_rows("orders", 10, Some(100));
        assert_eq!((bar.position(), bar.length()), (10, Some(100)));
        assert_eq!(bar.message(), "orders");
        p.attempt_started(2, 3);
        assert_eq!(bar.prefix(), "attempt 2/3");
        assert_eq!(bar.position(), 0, "a retry starts over");
        p.source_rows("orders", 5, None);
        assert_eq!(bar.length(), Some(100));
        p.finish();
        assert!(bar.is_finished());
    }
}
