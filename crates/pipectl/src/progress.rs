//! A progress bar on stderr when it is a terminal: rows read against the expected total.

use indicatif::{HumanCount, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use pipeline_core::RunObserver;
use std::io::IsTerminal;

/// A rate as whole rows per second with thousands separators (`17,364,922 rows/s`):
/// indicatif's own `{per_sec}` prints four decimals.
fn rate_text(per_sec: f64) -> String {
    if per_sec.is_finite() && per_sec >= 0.0 {
        format!("{} rows/s", HumanCount(per_sec.round() as u64))
    } else {
        "- rows/s".into()
    }
}

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
            ProgressStyle::with_template("{spinner} {prefix} {human_pos}/{human_len} rows read ({rate}) {wide_bar} {elapsed}")
                .map(|style| {
                    style.with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = w.write_str(&rate_text(state.per_sec()));
                    })
                })
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
    fn rates_are_whole_rows_per_second() {
        assert_eq!(rate_text(17_364_921.966_7), "17,364,922 rows/s");
        assert_eq!(rate_text(0.4), "0 rows/s");
        assert_eq!(rate_text(f64::NAN), "- rows/s");
        assert_eq!(rate_text(f64::INFINITY), "- rows/s");
    }

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
