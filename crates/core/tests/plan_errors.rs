//! Chain building rejects what cannot run, before any data moves.

mod common;

use common::write;
use pipeline_core::Pipeline;

fn errors(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "p.json", text);
    match Pipeline::from_file(&path, &[]) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.to_string(),
    }
}

const GEN: &str =
    r#"{"name": "g", "kind": "extract", "method": "generate", "options": {"rows": 10}}"#;

#[test]
fn unknown_method_suggests_the_closest() {
    let t = errors(&format!(
        r#"{{"name": "p", "steps": [{GEN}, {{"name": "f", "kind": "transform", "method": "filtr", "options": {{}}}}]}}"#
    ));
    assert!(t.contains("unknown transform method \"filtr\""), "{t}");
    assert!(t.contains("did you mean \"filter\"?"), "{t}");
    assert!(
        t.contains("p.json:1:") && t.contains("at /steps/1/method"),
        "{t}"
    );
}

#[test]
fn a_method_of_another_kind_says_so() {
    let t = errors(&format!(
        r#"{{"name": "p", "steps": [{GEN}, {{"name": "f", "kind": "transform", "method": "not_null"}}]}}"#
    ));
    assert!(
        t.contains("\"not_null\" is a validate method: set \"kind\": \"validate\""),
        "{t}"
    );
}

#[test]
fn avro_into_a_dataframe_only_step_needs_a_conversion() {
    let steps = format!(
        r#"[{GEN}, {{"name": "a", "kind": "transform", "method": "to_avro"}}, {{"name": "f", "kind": "transform", "method": "filter", "options": {{"condition": "order_id > 1"}}}}]"#
    );
    let t = errors(&format!(r#"{{"name": "p", "steps": {steps}}}"#));
    assert!(
        t.contains("step \"f\" (filter) accepts DataFrame but its input \"a\" produces Avro"),
        "{t}"
    );
    assert!(t.contains("to_dataframe"), "{t}");

    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "p.json",
        &format!(r#"{{"name": "p", "auto_convert": true, "steps": {steps}}}"#),
    );
    let p = Pipeline::from_file(&path, &[]).unwrap();
    assert!(
        p.plan()
            .to_string()
            .contains("(auto: convert Avro to DataFrame)"),
        "{}",
        p.plan()
    );
}

#[test]
fn options_inputs_connections_and_mode_are_all_checked() {
    let t = errors(&format!(
        r#"{{"name": "p", "mode": "streaming", "steps": [{GEN},
            {{"name": "f", "kind": "transform", "method": "filter", "options": {{"conditon": "x"}}}},
            {{"name": "d", "kind": "transform", "method": "derive", "options": {{"columns": {{"y": "1 +"}}}}}},
            {{"name": "v", "kind": "validate", "method": "not_null", "inputs": ["gg"], "options": {{"columns": ["x"]}}}},
            {{"name": "l", "kind": "load", "method": "delta", "connection": "lake", "options": {{"path": "out"}}}}
        ]}}"#
    ));
    assert!(
        t.contains("a stream needs an extract that reads continuously, and this pipeline has none"),
        "{t}"
    );
    assert!(t.contains("unknown key \"conditon\" in options"), "{t}");
    assert!(t.contains("did you mean \"condition\"?"), "{t}");
    assert!(t.contains("at /steps/1/options/conditon"), "{t}");
    assert!(t.contains("invalid SQL expression \"1 +\""), "{t}");
    assert!(t.contains("at /steps/2/options/columns/y"), "{t}");
    assert!(t.contains("input \"gg\" is not an earlier step"), "{t}");
    assert!(t.contains("did you mean \"g\"?"), "{t}");
    assert!(t.contains("unknown connection \"lake\""), "{t}");
    assert!(t.contains("5 configuration errors"), "{t}");
}

#[test]
fn connections_named_inside_options_must_exist() {
    let t = errors(
        r#"{"name": "p", "connections": {"events": {"system": "kafka"}, "lake": {"system": "s3"}},
            "steps": [{"name": "e", "kind": "extract", "method": "kafka", "connection": "events",
              "options": {"topics": ["t"], "offsets": {"store": "s3://b/o.json", "connection": "lak"}}}]}"#,
    );
    assert!(t.contains("unknown connection \"lak\""), "{t}");
    assert!(t.contains("did you mean \"lake\"?"), "{t}");
    assert!(t.contains("at /steps/0/options/offsets/connection"), "{t}");
}

#[test]
fn duplicate_names_and_a_first_step_without_input() {
    let t = errors(
        r#"{"name": "p", "steps": [{"name": "f", "kind": "transform", "method": "select", "options": {"columns": ["a"]}}, {"name": "f", "kind": "extract", "method": "generate"}]}"#,
    );
    assert!(t.contains("it is the first step and not an extract"), "{t}");
    assert!(
        t.contains("step name \"f\" is already used by step 1"),
        "{t}"
    );
}

#[test]
fn retry_settings_that_would_overflow_are_refused() {
    // A delay of 1e20 s once panicked in Duration::from_secs_f64, and u32::MAX retries
    // overflowed the attempt count.
    let t = errors(&format!(
        r#"{{"name": "p", "retry": {{"max_retries": 4294967295, "delay_seconds": 1e20}}, "steps": [{GEN}]}}"#
    ));
    assert!(t.contains("at /retry/delay_seconds"), "{t}");
    assert!(t.contains("at /retry/max_retries"), "{t}");
    assert!(t.contains("max_retries must be at most 1000"), "{t}");
}

const KAFKA: &str = r#"{"name": "events", "kind": "extract", "method": "kafka", "connection": "k", "options": {"topics": ["orders"]}}"#;
const CONNECTIONS: &str =
    r#""connections": {"k": {"system": "kafka"}, "db": {"system": "postgres"}}"#;

#[test]
fn a_stream_refuses_what_cannot_stream_and_names_the_step() {
    let t = errors(&format!(
        r#"{{"name": "p", "mode": "streaming", {CONNECTIONS}, "steps": [{KAFKA},
            {{"name": "enough", "kind": "validate", "method": "row_count", "options": {{"min": 1}}}},
            {{"name": "to_db", "kind": "load", "method": "postgres", "connection": "db", "options": {{"table": "t"}}}},
            {GEN},
            {{"name": "gen_out", "kind": "load", "method": "s3", "options": {{"path": "out", "format": "parquet"}}}},
            {{"name": "more", "kind": "extract", "method": "kafka", "connection": "k", "options": {{"topics": ["b"]}}}}
        ]}}"#
    ));
    assert!(
        t.contains("step \"enough\": method \"row_count\" cannot run in a stream"),
        "{t}"
    );
    assert!(t.contains("at /steps/1/method"), "{t}");
    assert!(
        t.contains("step \"gen_out\": in a stream its rows come from extract \"g\" (generate), which is read to its end"),
        "{t}"
    );
    assert!(
        t.contains(
            "step \"more\": a stream reads one streaming extract (\"events\" already is one)"
        ),
        "{t}"
    );
}

#[test]
fn a_stream_plan_says_what_each_load_guarantees() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "p.json",
        &format!(
            r#"{{"name": "p", "mode": "streaming", "streaming": {{"trigger_interval": "500ms", "max_records": 1000}},
            {CONNECTIONS}, "steps": [{KAFKA},
            {{"name": "customers", "kind": "extract", "method": "postgres", "connection": "db", "options": {{"table": "c"}}}},
            {{"name": "known", "kind": "validate", "method": "referential_integrity", "inputs": ["events", "customers"],
              "options": {{"column": "customer_id", "reference_column": "customer_id"}}, "on_failure": "filter"}},
            {{"name": "to_db", "kind": "load", "method": "postgres", "connection": "db", "options": {{"table": "t"}}}},
            {{"name": "to_files", "kind": "load", "method": "s3", "options": {{"path": "out/", "format": "parquet"}}}},
            {{"name": "to_topic", "kind": "load", "method": "kafka", "connection": "k", "inputs": ["known"], "options": {{"topic": "out"}}}}
        ]}}"#
        ),
    );
    let p = Pipeline::from_file(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
    let text = p.plan().to_string();
    assert!(
        text.contains("streaming: id p, source events, trigger processing_time every 500ms, at most 1000 records"),
        "{text}"
    );
    assert!(text.contains("to_db: exactly-once"), "{text}");
    assert!(text.contains("to_files: exactly-once"), "{text}");
    assert!(text.contains("to_topic: at-least-once"), "{text}");
    assert!(
        text.contains("note: the at-least-once loads restart from the extract's \"start\""),
        "{text}"
    );
    assert!(
        text.contains("customers: side input, read once and again every 300s"),
        "{text}"
    );
}

#[test]
fn a_streams_checkpoint_keeps_the_extracts_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let doc = |checkpoint: &str, kafka: &str| {
        format!(
            r#"{{"name": "p", "mode": "streaming", "streaming": {{"checkpoint": {checkpoint}}},
            "connections": {{"k": {{"system": "kafka"}}, "lake": {{"system": "s3"}}}}, "steps": [{kafka},
            {{"name": "to_topic", "kind": "load", "method": "kafka", "connection": "k", "options": {{"topic": "out"}}}}
        ]}}"#
        )
    };
    let path = write(
        dir.path(),
        "p.json",
        &doc(r#"{"location": "s3://b/cp/", "connection": "lake"}"#, KAFKA),
    );
    let p = Pipeline::from_file(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
    let text = p.plan().to_string();
    assert!(
        text.contains("checkpoint: s3://b/cp/events.offsets.json (the offsets of events)"),
        "{text}"
    );
    assert!(
        !text.contains("note: the at-least-once loads restart"),
        "{text}"
    );
    let events = &p.plan().steps[0];
    assert_eq!(
        events.options["offsets"]["store"],
        "s3://b/cp/events.offsets.json"
    );
    assert_eq!(events.other_connections[0].0, "lake");

    let own = KAFKA.replace(
        r#""topics": ["orders"]"#,
        r#""topics": ["orders"], "offsets": {"store": "o.json"}"#,
    );
    for (checkpoint, kafka, expected) in [
        (
            r#"{"location": "state"}"#,
            own.as_str(),
            "step \"events\" keeps its offsets in its own \"offsets\" store",
        ),
        (
            r#"{"location": "s3://b/cp"}"#,
            KAFKA,
            "the checkpoint s3://b/cp needs an s3 connection",
        ),
        (
            r#"{"location": "s3://b/cp", "connection": "lak"}"#,
            KAFKA,
            "unknown connection \"lak\"",
        ),
        (
            r#"{"location": "state", "connection": "lake"}"#,
            KAFKA,
            "a local checkpoint directory takes no connection",
        ),
        (
            r#"{"location": "s3://b/cp", "connection": "k"}"#,
            KAFKA,
            "an s3:// checkpoint is written through an s3 connection, not a kafka one",
        ),
        (
            r#"{"location": " "}"#,
            KAFKA,
            "the checkpoint's location is empty",
        ),
        (
            r#"{"location": "s3:///cp"}"#,
            KAFKA,
            "the checkpoint's location names no bucket",
        ),
        (
            r#"{"location": "gs://b/cp"}"#,
            KAFKA,
            "a local directory or s3://BUCKET/PREFIX",
        ),
    ] {
        let t = errors(&doc(checkpoint, kafka));
        assert!(t.contains(expected), "{checkpoint}: {t}");
        assert!(t.contains("at /streaming/checkpoint"), "{t}");
    }
}
