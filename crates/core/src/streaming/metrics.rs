//! What a stream reports: per micro-batch (events in and out, duration, end-to-end latency
//! from each record's Kafka timestamp to the commit, lag per partition) and, every
//! `log_interval`, one line with the rates and percentiles since the last line, plus a warning
//! when the lag grew for `lag_warning_intervals` lines in a row.

use pipeline_data::stream::{PartitionRange, StreamOffsets};
use serde::Serialize;
use std::time::Duration;

/// Latencies kept per interval before sampling every other one (bounds memory).
const MAX_SAMPLES: usize = 1 << 20;

/// One committed micro-batch.
#[derive(Debug, Clone, Serialize)]
pub struct MicroBatch {
    /// Sequence number since the process started (1 = the first).
    pub number: u64,
    pub events_in: u64,
    pub events_out: u64,
    pub bytes_in: u64,
    pub duration: Duration,
    /// Per partition: `topic/partition` → high watermark − next offset after the commit.
    pub lag: Vec<(String, i64)>,
    /// End-to-end latency percentiles of this micro-batch's records, in ms (p50, p95, p99).
    pub latency_ms: Option<(u64, u64, u64)>,
}

impl MicroBatch {
    pub fn total_lag(&self) -> i64 {
        self.lag.iter().fold(0i64, |a, (_, l)| a.saturating_add(*l))
    }
}

/// Per-partition lag after a micro-batch: the highest high watermark seen (when the range
/// was fixed, or by a fetch since) minus the next offset.
pub(crate) fn lag(ranges: &[PartitionRange], seen: &StreamOffsets) -> Vec<(String, i64)> {
    ranges
        .iter()
        .map(|r| {
            let high = seen
                .get(&(r.topic.clone(), r.partition))
                .copied()
                .unwrap_or(r.high_watermark)
                .max(r.high_watermark);
            (
                format!("{}/{}", r.topic, r.partition),
                high.saturating_sub(r.end).max(0),
            )
        })
        .collect()
}

/// The p-th percentile (0–100) of sorted values.
pub(crate) fn percentile(sorted: &[u64], p: u64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let last = sorted.len().saturating_sub(1);
    let rank = (last as u128)
        .saturating_mul(u128::from(p))
        .checked_div(100)
        .unwrap_or(0);
    let i = usize::try_from(rank).unwrap_or(last).min(last);
    sorted.get(i).copied().unwrap_or(0)
}

/// Latencies in ms from record timestamps to `now_ms`, sorted.
pub(crate) fn latencies(timestamps: &[i64], now_ms: i64) -> Vec<u64> {
    // A record without a timestamp (-1) has no latency.
    let mut v: Vec<u64> = timestamps
        .iter()
        .filter(|t| **t > 0)
        .map(|t| u64::try_from(now_ms.saturating_sub(*t)).unwrap_or(0))
        .collect();
    v.sort_unstable();
    v
}

/// The figures since the last metrics line.
#[derive(Default)]
pub(crate) struct Interval {
    events_in: u64,
    events_out: u64,
    batches: u64,
    max_batch: Duration,
    total_batch: Duration,
    samples: Vec<u64>,
    stride: usize,
    skip: usize,
    last_lag: Vec<(String, i64)>,
}

/// One metrics line's figures.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsLine {
    pub events_in: u64,
    pub events_out: u64,
    pub events_per_sec: f64,
    pub micro_batches: u64,
    pub batch_ms_mean: u64,
    pub batch_ms_max: u64,
    pub latency_p50_ms: u64,
    pub latency_p95_ms: u64,
    pub latency_p99_ms: u64,
    pub lag_total: i64,
    pub lag: Vec<(String, i64)>,
}

impl Interval {
    pub(crate) fn add(&mut self, batch: &MicroBatch, latencies: &[u64]) {
        self.events_in = self.events_in.saturating_add(batch.events_in);
        self.events_out = self.events_out.saturating_add(batch.events_out);
        self.batches = self.batches.saturating_add(1);
        self.max_batch = self.max_batch.max(batch.duration);
        self.total_batch = self.total_batch.saturating_add(batch.duration);
        self.last_lag = batch.lag.clone();
        for &l in latencies {
            if self.stride > 1 {
                self.skip = self.skip.saturating_add(1);
                if self.skip < self.stride {
                    continue;
                }
                self.skip = 0;
            }
            self.samples.push(l);
            if self.samples.len() >= MAX_SAMPLES {
                // Keep every other sample, and take half as many from now on.
                let kept: Vec<u64> = self.samples.iter().step_by(2).copied().collect();
                self.samples = kept;
                self.stride = self.stride.max(1).saturating_mul(2);
            }
        }
    }

    /// The line for `elapsed`, and a fresh interval.
    pub(crate) fn take(&mut self, elapsed: Duration) -> MetricsLine {
        let mut samples = std::mem::take(&mut self.samples);
        samples.sort_unstable();
        let secs = elapsed.as_secs_f64();
        let line = MetricsLine {
            events_in: self.events_in,
            events_out: self.events_out,
            events_per_sec: if secs > 0.0 {
                self.events_in as f64 / secs
            } else {
                0.0
            },
            micro_batches: self.batches,
            batch_ms_mean: self
                .total_batch
                .checked_div(u32::try_from(self.batches).unwrap_or(u32::MAX).max(1))
                .unwrap_or_default()
                .as_millis() as u64,
            batch_ms_max: self.max_batch.as_millis() as u64,
            latency_p50_ms: percentile(&samples, 50),
            latency_p95_ms: percentile(&samples, 95),
            latency_p99_ms: percentile(&samples, 99),
            lag_total: self
                .last_lag
                .iter()
                .fold(0i64, |a, (_, l)| a.saturating_add(*l)),
            lag: self.last_lag.clone(),
        };
        let lag = std::mem::take(&mut self.last_lag);
        *self = Interval {
            last_lag: lag,
            ..Interval::default()
        };
        line
    }
}

/// Counts metrics lines in a row whose total lag grew.
#[derive(Default)]
pub(crate) struct LagTrend {
    last: Option<i64>,
    growing: u32,
}

impl LagTrend {
    /// The number of lines in a row the lag has grown, after this one.
    pub(crate) fn observe(&mut self, total: i64) -> u32 {
        self.growing = match self.last {
            Some(prev) if total > prev => self.growing.saturating_add(1),
            _ => 0,
        };
        self.last = Some(total);
        self.growing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_latencies() {
        let l = latencies(&[900, 500, 990, -1], 1000);
        assert_eq!(l, vec![10, 100, 500]);
        assert_eq!(percentile(&l, 50), 100);
        assert_eq!(percentile(&l, 99), 100);
        assert_eq!(percentile(&l, 100), 500);
        assert_eq!(percentile(&[], 95), 0);
        let many: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&many, 95), 950);
    }

    #[test]
    fn an_interval_sums_its_micro_batches_and_starts_afresh() {
        let mut i = Interval::default();
        let b = MicroBatch {
            number: 1,
            events_in: 100,
            events_out: 90,
            bytes_in: 1000,
            duration: Duration::from_millis(200),
            lag: vec![("t/0".into(), 5), ("t/1".into(), 7)],
            latency_ms: None,
        };
        i.add(&b, &[10, 20, 30]);
        i.add(&b, &[40]);
        let line = i.take(Duration::from_secs(2));
        assert_eq!(
            (line.events_in, line.events_out, line.micro_batches),
            (200, 180, 2)
        );
        assert_eq!(line.events_per_sec, 100.0);
        assert_eq!((line.batch_ms_mean, line.batch_ms_max), (200, 200));
        assert_eq!(line.latency_p50_ms, 20);
        assert_eq!(line.lag_total, 12);
        let next = i.take(Duration::from_secs(1));
        assert_eq!((next.events_in, next.lag_total), (0, 12));
    }

    #[test]
    fn the_trend_counts_growth_in_a_row() {
        let mut t = LagTrend::default();
        assert_eq!(t.observe(10), 0);
        assert_eq!(t.observe(20), 1);
        assert_eq!(t.observe(30), 2);
        assert_eq!(t.observe(5), 0);
    }
}
