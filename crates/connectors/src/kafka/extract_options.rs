//! Options of the kafka extract (`KafkaExtractOptions`) and their checks: start positions,
//! value formats, decode-error handling, stored offsets.

use super::decode::FieldType;
use indexmap::IndexMap;
use pipeline_data::OptionsError;
use pipeline_data::method::MethodOptions;
use rskafka::chrono::DateTime;
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Where reading starts in each partition without a stored offset.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StartAt {
    /// The earliest record the partition still keeps.
    #[default]
    Earliest,
    /// Only records produced after the step opens (a batch run then reads nothing).
    Latest,
    /// The first record at or after this time (RFC 3339, e.g. `2026-11-28T00:00:00Z`).
    Timestamp(String),
    /// Explicit offsets by `"TOPIC/PARTITION"` (or `"PARTITION"` for every topic).
    Offsets(BTreeMap<String, i64>),
}

/// How a record's value becomes columns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ValueFormat {
    /// A JSON object per record: one column per field of `schema` (or of the first record).
    #[default]
    Json,
    /// The value as UTF-8 text, in a column `value`.
    String,
    /// The raw value bytes, in a column `value`.
    Bytes,
    /// An Avro datum per record (no container, no registry header), written with the schema in
    /// `avro_schema`: one column per field of the record.
    Avro,
    /// Confluent's wire format (magic byte 0, schema id, Avro datum), schemas from the
    /// connection's Schema Registry: the columns are the fields of `avro_schema`, else of the
    /// latest schema of subject `TOPIC-value`.
    AvroConfluent,
}

/// What happens to a record that cannot be decoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnDecodeError {
    /// The run fails, naming the topic, partition, offset and reason.
    #[default]
    Fail,
    /// The record is left out, counted (`skipped_records`) and logged.
    Skip,
    /// The record goes to `dead_letter_topic` as it was read, with headers saying where it
    /// came from and why (`pipectl.error`, ...), produced when the run's loads have committed.
    DeadLetter,
}

/// Where the extract keeps its offsets between runs.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OffsetsOptions {
    /// A local JSON file (relative to the pipeline file), or `s3://BUCKET/KEY` with
    /// `connection`, written atomically after the run's loads have committed.
    pub store: String,
    /// The s3 connection of an `s3://` store.
    #[serde(default)]
    pub connection: Option<String>,
}

/// Options of the `kafka` extract.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaExtractOptions {
    /// Topics to read.
    pub topics: Vec<String>,
    /// Partitions to read in every topic (default: all).
    #[serde(default)]
    pub partitions: Option<Vec<i32>>,
    /// `earliest` (default), `latest`, `{"timestamp": "..."}` or `{"offsets": {"orders/0": 42}}`;
    /// a partition with a stored offset starts there instead.
    #[serde(default)]
    pub start: StartAt,
    /// `json` (default), `string` or `bytes`.
    #[serde(default)]
    pub format: ValueFormat,
    /// For `json`: field → type (string, int64, float64, bool, date, datetime, json), in column
    /// order. Without it, the first record's fields and types are used and then enforced.
    #[serde(default)]
    pub schema: Option<IndexMap<String, String>>,
    /// For `avro`: the writer schema, an `.avsc` file (relative to the pipeline file).
    #[serde(default)]
    pub avro_schema: Option<String>,
    /// Add `_topic`, `_partition`, `_offset`, `_timestamp`, `_key` and `_headers` (JSON) columns.
    #[serde(default)]
    pub metadata: bool,
    /// `fail` (default), `skip` or `dead_letter` records that cannot be decoded.
    #[serde(default)]
    pub on_error: OnDecodeError,
    /// With `"on_error": "dead_letter"`: the existing topic that receives them.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Rows per batch handed to the next step (default 65,536).
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// Bytes asked of a partition per fetch (default 4 MiB).
    #[serde(default = "default_fetch_bytes")]
    pub fetch_bytes: i32,
    /// Keep the next offsets between runs: `{"store": "state/orders.offsets.json"}`.
    #[serde(default)]
    pub offsets: Option<OffsetsOptions>,
}

fn default_batch_rows() -> usize {
    65_536
}

fn default_fetch_bytes() -> i32 {
    4 << 20
}

impl KafkaExtractOptions {
    pub(super) fn schema(&self) -> Vec<(String, FieldType)> {
        self.schema
            .iter()
            .flatten()
            .filter_map(|(k, v)| FieldType::parse(v).map(|t| (k.clone(), t)))
            .collect()
    }
}

impl MethodOptions for KafkaExtractOptions {
    fn check(&self) -> Result<(), OptionsError> {
        if self.topics.is_empty() {
            return Err(OptionsError::new("/topics", "name at least one topic"));
        }
        for (i, t) in self.topics.iter().enumerate() {
            if t.trim().is_empty() {
                return Err(OptionsError::new(
                    format!("/topics/{i}"),
                    "empty topic name",
                ));
            }
        }
        if let Some(schema) = &self.schema {
            if self.format != ValueFormat::Json {
                return Err(OptionsError::new(
                    "/schema",
                    "a schema applies to the json format only",
                ));
            }
            for (field, ty) in schema {
                if FieldType::parse(ty).is_none() {
                    return Err(OptionsError::new(
                        format!("/schema/{field}"),
                        format!("unknown type \"{ty}\""),
                    )
                    .with_hint(format!("one of: {}", FieldType::NAMES)));
                }
            }
        }
        match (self.format, &self.avro_schema) {
            (ValueFormat::Avro, None) => {
                return Err(OptionsError::new(
                    "/avro_schema",
                    "the avro format needs the writer schema",
                )
                .with_hint("\"avro_schema\": \"schemas/order_event.avsc\""));
            }
            (ValueFormat::Avro | ValueFormat::AvroConfluent, Some(_)) | (_, None) => {}
            (_, Some(_)) => {
                return Err(OptionsError::new(
                    "/avro_schema",
                    "avro_schema applies to the avro format only",
                ));
            }
        }
        if self.batch_rows == 0 {
            return Err(OptionsError::new("/batch_rows", "must be at least 1"));
        }
        if !(1024..=(256 << 20)).contains(&self.fetch_bytes) {
            return Err(OptionsError::new(
                "/fetch_bytes",
                "must be between 1024 and 268435456",
            ));
        }
        match &self.start {
            StartAt::Timestamp(ts) if DateTime::parse_from_rfc3339(ts).is_err() => {
                return Err(OptionsError::new(
                    "/start/timestamp",
                    format!("\"{ts}\" is not an RFC 3339 time"),
                )
                .with_hint("e.g. 2026-11-28T00:00:00Z"));
            }
            StartAt::Offsets(map) => {
                for (key, offset) in map {
                    let partition = key.rsplit('/').next().unwrap_or_default();
                    if partition.parse::<i32>().is_err() || *offset < 0 {
                        return Err(OptionsError::new(
                            format!("/start/offsets/{key}"),
                            "keys are \"TOPIC/PARTITION\" or \"PARTITION\", values offsets ≥ 0",
                        ));
                    }
                }
            }
            _ => {}
        }
        match (self.on_error, &self.dead_letter_topic) {
            (OnDecodeError::DeadLetter, None) => {
                return Err(OptionsError::new(
                    "/dead_letter_topic",
                    "on_error dead_letter needs the topic that receives them",
                )
                .with_hint("\"dead_letter_topic\": \"orders_dlq\""));
            }
            (OnDecodeError::DeadLetter, Some(t)) if t.trim().is_empty() => {
                return Err(OptionsError::new(
                    "/dead_letter_topic",
                    "the topic name is empty",
                ));
            }
            (OnDecodeError::Fail | OnDecodeError::Skip, Some(_)) => {
                return Err(OptionsError::new(
                    "/dead_letter_topic",
                    "dead_letter_topic applies with \"on_error\": \"dead_letter\" only",
                ));
            }
            _ => {}
        }
        if let Some(o) = &self.offsets
            && (o.store.trim().is_empty()
                || (o.store.contains("://") && !o.store.starts_with("s3://")))
        {
            return Err(OptionsError::new(
                "/offsets/store",
                "the offsets store is a local file path or s3://BUCKET/KEY",
            ));
        }
        if let Some(o) = &self.offsets {
            match (o.store.starts_with("s3://"), &o.connection) {
                (true, None) => {
                    return Err(OptionsError::new(
                        "/offsets/connection",
                        "an s3:// offsets store needs the s3 connection to write it with",
                    )
                    .with_hint("\"offsets\": {\"store\": \"s3://bucket/state/orders.json\", \"connection\": \"lake\"}"));
                }
                (false, Some(_)) => {
                    return Err(OptionsError::new(
                        "/offsets/connection",
                        "a local offsets store takes no connection",
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}
