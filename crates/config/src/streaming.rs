//! The `"streaming"` block of a pipeline in `"mode": "streaming"`: when micro-batches start,
//! how big they may grow, how often progress is logged, and what happens at shutdown or when
//! a partition lost the records a stream should resume at. Durations are seconds (`1.5`) or
//! text with a unit (`"500ms"`, `"1s"`, `"5m"`, `"1h"`).

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::time::Duration;

/// A duration: seconds as a number, or text with a unit (`ms`, `s`, `m`, `h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Value", into = "String")]
pub struct Interval(pub Duration);

impl From<Interval> for String {
    fn from(i: Interval) -> String {
        let ms = i.0.as_millis();
        if ms.is_multiple_of(1000) {
            format!("{}s", ms / 1000)
        } else {
            format!("{ms}ms")
        }
    }
}

/// The longest duration accepted (a week).
const MAX_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

impl TryFrom<serde_json::Value> for Interval {
    type Error = String;

    fn try_from(v: serde_json::Value) -> Result<Self, String> {
        let bad = || {
            format!(
                "{v} is not a duration: use seconds (1.5) or text with a unit (\"500ms\", \"1s\", \"5m\", \"1h\")"
            )
        };
        let seconds = match &v {
            serde_json::Value::Number(n) => n.as_f64().ok_or_else(bad)?,
            serde_json::Value::String(s) => {
                let s = s.trim();
                let split = s
                    .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                    .unwrap_or(s.len());
                let (number, unit) = s.split_at(split);
                let n: f64 = number.parse().map_err(|_| bad())?;
                let scale = match unit.trim() {
                    "ms" => 0.001,
                    "" | "s" => 1.0,
                    "m" | "min" => 60.0,
                    "h" => 3600.0,
                    _ => return Err(bad()),
                };
                n * scale
            }
            _ => return Err(bad()),
        };
        if !seconds.is_finite() || !(0.0..=MAX_SECONDS).contains(&seconds) {
            return Err(format!("{v} is outside 0 to 7 days"));
        }
        Ok(Interval(Duration::from_secs_f64(seconds)))
    }
}

impl JsonSchema for Interval {
    fn schema_name() -> Cow<'static, str> {
        "Interval".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Seconds (1.5) or text with a unit: \"500ms\", \"1s\", \"5m\", \"1h\"",
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": "^\\s*[0-9.]+\\s*(ms|s|m|min|h)?\\s*$"}
            ]
        })
    }
}

/// When micro-batches run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A micro-batch every `trigger_interval` (sooner when the last one was full), forever.
    #[default]
    ProcessingTime,
    /// Everything available when the run starts, in micro-batches, then stop (what
    /// `pipectl run --once` does): for tests, backfills and cron.
    AvailableNow,
}

/// What a stream does when a partition no longer keeps the offset it should resume at
/// (retention deleted the records).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnOffsetOutOfRange {
    /// Fail, naming the partition and the offsets (nothing is skipped silently).
    #[default]
    Fail,
    /// Resume at the earliest record the partition keeps.
    Earliest,
    /// Resume at the partition's end.
    Latest,
}

/// Where a stream keeps its checkpoint: the streaming extract's offsets, for the loads that
/// keep none of their own (at-least-once sinks) and for the start of the next run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// A directory (relative to the pipeline file) or `s3://BUCKET/PREFIX`; the extract's
    /// offsets go to `LOCATION/STEP.offsets.json`.
    pub location: String,
    /// The s3 connection to write an `s3://` location with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
}

impl Checkpoint {
    /// The offsets file of the streaming extract `step`.
    pub fn offsets_of(&self, step: &str) -> String {
        format!(
            "{}/{step}.offsets.json",
            self.location.trim_end_matches('/')
        )
    }
}

/// The `"streaming"` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StreamingConfig {
    /// `processing_time` (default: a micro-batch every `trigger_interval`, forever) or
    /// `available_now` (what is there at the start, then stop).
    pub trigger: Trigger,
    /// Time between the starts of two micro-batches (default 1 s). A micro-batch that was full
    /// (`max_records`/`max_bytes`) is followed at once.
    pub trigger_interval: Interval,
    /// Records per micro-batch over all partitions (default 500,000). When the stream is
    /// behind, micro-batches grow to this cap rather than piling up.
    pub max_records: u64,
    /// Record bytes per micro-batch over all partitions (default 256 MiB): bounds memory.
    pub max_bytes: u64,
    /// How often the metrics line is logged (default 10 s).
    pub log_interval: Interval,
    /// A warning when the total lag grew for this many log intervals in a row (default 6).
    pub lag_warning_intervals: u32,
    /// How long SIGTERM/Ctrl-C waits for the micro-batch in flight to commit before aborting
    /// it (default 30 s).
    pub shutdown_timeout: Interval,
    /// Side inputs (a join's or a referential check's other table) are read once and again
    /// after this long (default 5 min).
    pub side_input_refresh: Interval,
    /// `fail` (default), `earliest` or `latest` when a partition no longer keeps the offset
    /// the stream resumes at.
    pub on_offset_out_of_range: OnOffsetOutOfRange,
    /// The stream's id in the sinks' offsets (Delta `txn` application ids, the SQL offsets
    /// table). Default: the pipeline's name. Two pipelines must never share one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Where the streaming extract's offsets are kept between runs when it names no
    /// `"offsets"` store itself: `{"location": "state/orders_stream"}` or
    /// `{"location": "s3://lake/checkpoints/orders_stream", "connection": "lake"}`. The
    /// exactly-once loads keep their offsets with their data and need none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            trigger: Trigger::ProcessingTime,
            trigger_interval: Interval(Duration::from_secs(1)),
            max_records: 500_000,
            max_bytes: 256 << 20,
            log_interval: Interval(Duration::from_secs(10)),
            lag_warning_intervals: 6,
            shutdown_timeout: Interval(Duration::from_secs(30)),
            side_input_refresh: Interval(Duration::from_secs(300)),
            on_offset_out_of_range: OnOffsetOutOfRange::Fail,
            id: None,
            checkpoint: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_take_seconds_or_a_unit() {
        let d = |v| Interval::try_from(v).map(|i| i.0);
        assert_eq!(d(json!(1.5)), Ok(Duration::from_millis(1500)));
        assert_eq!(d(json!("500ms")), Ok(Duration::from_millis(500)));
        assert_eq!(d(json!("2m")), Ok(Duration::from_secs(120)));
        assert_eq!(d(json!("1h")), Ok(Duration::from_secs(3600)));
        assert!(d(json!("soon")).unwrap_err().contains("not a duration"));
        assert!(d(json!(-1)).unwrap_err().contains("outside"));
        assert!(d(json!("9999h")).is_err());
        assert_eq!(
            String::from(Interval(Duration::from_millis(1500))),
            "1500ms"
        );
    }

    #[test]
    fn the_block_has_defaults_and_refuses_unknown_keys() {
        let c: StreamingConfig = serde_json::from_value(json!({"max_records": 10})).unwrap();
        assert_eq!(c.max_records, 10);
        assert_eq!(c.trigger_interval.0, Duration::from_secs(1));
        assert!(serde_json::from_value::<StreamingConfig>(json!({"interval": 1})).is_err());
    }

    #[test]
    fn a_checkpoint_names_the_extracts_offsets_file() {
        let c: StreamingConfig = serde_json::from_value(
            json!({"checkpoint": {"location": "s3://lake/cp/", "connection": "lake"}}),
        )
        .unwrap();
        let cp = c.checkpoint.unwrap();
        assert_eq!(cp.offsets_of("orders"), "s3://lake/cp/orders.offsets.json");
        assert_eq!(cp.connection.as_deref(), Some("lake"));
        assert!(
            serde_json::from_value::<StreamingConfig>(json!({"checkpoint": {"path": "x"}}))
                .is_err()
        );
    }
}
