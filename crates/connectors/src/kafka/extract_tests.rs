//! Unit tests of the kafka extract's options.
use super::*;
use pipeline_data::method::MethodOptions;
use rstest::rstest;

#[rstest]
#[case(r#"{"topics": []}"#, Some("/topics"))]
#[case(r#"{"topics": [" "]}"#, Some("/topics/0"))]
#[case(
    r#"{"topics": ["t"], "format": "string", "schema": {"a": "string"}}"#,
    Some("/schema")
)]
#[case(r#"{"topics": ["t"], "schema": {"a": "money"}}"#, Some("/schema/a"))]
#[case(r#"{"topics": ["t"], "batch_rows": 0}"#, Some("/batch_rows"))]
#[case(r#"{"topics": ["t"], "format": "avro"}"#, Some("/avro_schema"))]
#[case(r#"{"topics": ["t"], "avro_schema": "a.avsc"}"#, Some("/avro_schema"))]
#[case(r#"{"topics": ["t"], "fetch_bytes": 10}"#, Some("/fetch_bytes"))]
#[case(
    r#"{"topics": ["t"], "start": {"timestamp": "yesterday"}}"#,
    Some("/start/timestamp")
)]
#[case(
    r#"{"topics": ["t"], "start": {"offsets": {"t/x": 1}}}"#,
    Some("/start/offsets/t/x")
)]
#[case(
    r#"{"topics": ["t"], "start": {"offsets": {"0": -1}}}"#,
    Some("/start/offsets/0")
)]
#[case(
    r#"{"topics": ["t"], "offsets": {"store": "s3://b/o.json"}}"#,
    Some("/offsets/connection")
)]
#[case(
    r#"{"topics": ["t"], "offsets": {"store": "gs://b/o.json", "connection": "lake"}}"#,
    Some("/offsets/store")
)]
#[case(
    r#"{"topics": ["t"], "offsets": {"store": "o.json", "connection": "lake"}}"#,
    Some("/offsets/connection")
)]
#[case(
    r#"{"topics": ["t"], "offsets": {"store": "s3://b/o.json", "connection": "lake"}}"#,
    None
)]
#[case(
    r#"{"topics": ["t"], "on_error": "dead_letter"}"#,
    Some("/dead_letter_topic")
)]
#[case(
    r#"{"topics": ["t"], "on_error": "skip", "dead_letter_topic": "d"}"#,
    Some("/dead_letter_topic")
)]
#[case(
    r#"{"topics": ["t"], "on_error": "dead_letter", "dead_letter_topic": "d"}"#,
    None
)]
#[case(r#"{"topics": ["t"], "start": "latest", "schema": {"a": "int64", "b": "date"}, "offsets": {"store": "o.json"}}"#, None)]
fn options_are_checked(#[case] json: &str, #[case] pointer: Option<&str>) {
    let o: KafkaExtractOptions = serde_json::from_str(json).unwrap();
    assert_eq!(
        o.check().err().map(|e| e.pointer),
        pointer.map(String::from),
        "{json}"
    );
    if pointer.is_none() && o.schema.is_some() {
        assert_eq!(o.schema().len(), 2);
    }
}
