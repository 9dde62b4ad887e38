//! Loading pipelines from real files: `$ref` resolution, cycles, overrides, located errors, lint.

use pipeline_config::{ConfigErrors, Override, load_pipeline};
use std::fs;
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, text).unwrap();
    path
}

fn errors(path: &Path) -> ConfigErrors {
    match load_pipeline(path, &[]) {
        Ok(_) => panic!("expected configuration errors in {}", path.display()),
        Err(e) => e,
    }
}

const STEP: &str = r#"{"name": "read", "kind": "extract", "method": "generate"}"#;

#[test]
fn refs_resolve_relative_to_their_file_and_siblings_override() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "conn/base.json",
        r#"{"system": "postgres", "host": "db", "port": 5432, "options": {"a": 1, "b": 2}}"#,
    );
    write(
        dir.path(),
        "conn/shop.json",
        r#"{"$ref": "base.json", "database": "shop", "credentials": {"vault_path": "secret/shop"}}"#,
    );
    let main = write(
        dir.path(),
        "p.json",
        &format!(
            r#"{{"name": "p", "connections": {{"shop": {{"$ref": "conn/shop.json", "port": 6432, "options": {{"b": 3}}}}}}, "steps": [{STEP}]}}"#
        ),
    );
    let loaded = load_pipeline(&main, &[]).unwrap();
    let shop = &loaded.config.connections["shop"];
    assert_eq!(shop.system, "postgres");
    assert_eq!(shop.settings["host"], "db");
    assert_eq!(shop.settings["port"], 6432);
    assert_eq!(shop.settings["database"], "shop");
    assert_eq!(
        shop.settings["options"],
        serde_json::json!({"a": 1, "b": 3})
    );
    assert_eq!(shop.credentials.as_ref().unwrap().vault_path, "secret/shop");
    // Locations point into the file each value came from.
    let host = loaded.locator.locate("/connections/shop/host");
    assert!(host.file.unwrap().ends_with("conn/base.json"));
    let port = loaded.locator.locate("/connections/shop/port");
    assert!(port.file.unwrap().ends_with("p.json"));
}

#[test]
fn a_cycle_prints_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.json", r#"{"$ref": "b.json"}"#);
    write(dir.path(), "b.json", r#"{"x": {"$ref": "a.json"}}"#);
    let main = write(
        dir.path(),
        "main.json",
        &format!(
            r#"{{"name": "p", "connections": {{"c": {{"$ref": "a.json"}}}}, "steps": [{STEP}]}}"#
        ),
    );
    let e = errors(&main);
    let text = e.to_string();
    assert!(
        text.contains("circular $ref: a.json → b.json → a.json"),
        "{text}"
    );
    assert!(text.contains("b.json:1:8 at /x/$ref"), "{text}");
}

#[test]
fn a_self_reference_is_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(
        dir.path(),
        "self.json",
        r#"{"name": "p", "steps": [{"$ref": "self.json"}]}"#,
    );
    assert!(
        errors(&main)
            .to_string()
            .contains("circular $ref: self.json → self.json")
    );
}

#[test]
fn deep_nesting_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..40 {
        write(
            dir.path(),
            &format!("n{i}.json"),
            &format!(r#"{{"$ref": "n{}.json"}}"#, i + 1),
        );
    }
    write(dir.path(), "n40.json", "{}");
    let main = write(
        dir.path(),
        "main.json",
        &format!(
            r#"{{"name": "p", "connections": {{"c": {{"$ref": "n0.json"}}}}, "steps": [{STEP}]}}"#
        ),
    );
    assert!(
        errors(&main)
            .to_string()
            .contains("$ref nesting deeper than 32 files")
    );
}

#[test]
fn a_missing_ref_target_names_the_referencing_file() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(
        dir.path(),
        "p.json",
        &format!(
            "{{\n  \"name\": \"p\",\n  \"connections\": {{\"c\": {{\"$ref\": \"nope.json\"}}}},\n  \"steps\": [{STEP}]\n}}"
        ),
    );
    let text = errors(&main).to_string();
    assert!(text.contains("cannot read referenced file"), "{text}");
    assert!(text.contains("nope.json"), "{text}");
    assert!(
        text.contains("p.json:3:25 at /connections/c/$ref"),
        "{text}"
    );
}

#[test]
fn malformed_json_gives_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(
        dir.path(),
        "bad.json",
        "{\n  \"name\": \"p\"\n  \"steps\": []\n}",
    );
    let text = errors(&main).to_string();
    assert!(text.contains("malformed JSON"), "{text}");
    assert!(text.contains("bad.json:3:3"), "{text}");
}

#[test]
fn all_errors_of_a_file_are_reported_together() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(
        dir.path(),
        "p.json",
        r#"{
  "name": "p",
  "retyr": {},
  "steps": [
    {"name": "a", "kind": "extract", "method": "generate", "optons": {}},
    {"name": "b", "kind": "transfrom", "method": "filter"},
    {"name": "c", "kind": "load", "method": "delta", "options": {"password": "hunter2"}}
  ]
}"#,
    );
    let e = errors(&main);
    let text = e.to_string();
    assert_eq!(e.len(), 4, "{text}");
    assert!(
        text.contains("unknown key \"retyr\" in the pipeline\n  --> "),
        "{text}"
    );
    assert!(text.contains("did you mean \"retry\"?"), "{text}");
    assert!(text.contains("unknown key \"optons\" in a step"), "{text}");
    assert!(text.contains("p.json:5:60 at /steps/0/optons"), "{text}");
    assert!(text.contains("did you mean \"options\"?"), "{text}");
    assert!(text.contains("at /steps/1/kind"), "{text}");
    assert!(text.contains("unknown variant `transfrom`"), "{text}");
    assert!(
        text.contains("\"password\" holds a literal value"),
        "{text}"
    );
    assert!(
        !text.contains("hunter2"),
        "the lint must not echo the secret: {text}"
    );
}

#[test]
fn secrets_are_found_at_any_depth_and_in_referenced_files() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "c.json",
        r#"{"system": "kafka", "sasl": {"SASL_PASSWORD": "pw-123456"}, "url": "postgres://u:pw-654321@h/db"}"#,
    );
    let main = write(
        dir.path(),
        "p.json",
        &format!(
            r#"{{"name": "p", "connections": {{"k": {{"$ref": "c.json"}}}}, "steps": [{STEP}]}}"#
        ),
    );
    let e = errors(&main);
    let text = e.to_string();
    assert_eq!(e.len(), 2, "{text}");
    assert!(
        text.contains("c.json:1:30 at /sasl/SASL_PASSWORD"),
        "{text}"
    );
    assert!(text.contains("URL with an embedded password"), "{text}");
    assert!(
        !text.contains("pw-123456") && !text.contains("pw-654321"),
        "{text}"
    );
}

#[test]
fn overrides_apply_after_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(
        dir.path(),
        "p.json",
        &format!(r#"{{"name": "p", "steps": [{STEP}]}}"#),
    );
    let o: Override = "/steps/0/options/rows=7".parse().unwrap();
    let loaded = load_pipeline(&main, &[o]).unwrap();
    assert_eq!(loaded.config.steps[0].options["rows"], 7);
    assert_eq!(loaded.config.retry.max_retries, 3);
    assert_eq!(loaded.config.retry.delay_seconds, 5.0);
    let bad: Override = "/steps/9/options=1".parse().unwrap();
    assert!(
        load_pipeline(&main, &[bad])
            .err()
            .unwrap()
            .to_string()
            .contains("--set /steps/9/options")
    );
}

#[test]
fn a_missing_root_file_is_an_error_not_a_panic() {
    let e = errors(Path::new("/nonexistent/pipeline.json"));
    assert!(
        e.to_string()
            .contains("cannot read pipeline file /nonexistent/pipeline.json")
    );
}
