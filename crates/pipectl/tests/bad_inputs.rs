//! The bad-input corpus: every invalid pipeline file under `tests/bad/` (and a few generated
//! ones: a symlink loop, 1,000-deep nesting, a 100 MB file, non-UTF-8 bytes) makes
//! `pipectl validate` exit 2 with a message naming the file and, where there is one, the JSON
//! path — never a panic, never a connection to a service (the corpus names no reachable one).

mod common;

use common::{pipectl, text};
use rstest::rstest;
use std::path::{Path, PathBuf};

fn corpus(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/bad")
        .join(file)
}

/// Runs `validate` from the file's directory and checks exit 2, the message, the file and the
/// JSON path.
fn rejects(path: &Path, fragment: &str, pointer: &str) {
    let dir = path.parent().unwrap();
    let name = path.file_name().unwrap().to_str().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pipectl"))
        .current_dir(dir)
        .args(["validate", name])
        .env_remove("RUST_LOG")
        .env_remove("VAULT_ADDR")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{name}: {stdout}{stderr}");
    assert!(
        stderr.contains(fragment),
        "{name}: no \"{fragment}\" in {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    if !pointer.is_empty() {
        assert!(
            stderr.contains(&format!(" at {pointer}")),
            "{name}: no \"at {pointer}\" in {stderr}"
        );
    }
}

#[rstest]
#[case::json_empty("json_empty.json", "malformed JSON: EOF while parsing", "/")]
#[case::json_trailing_comma("json_trailing_comma.json", "trailing comma", "/")]
#[case::json_unclosed("json_unclosed.json", "EOF while parsing a list", "/")]
#[case::json_unquoted_key("json_unquoted_key.json", "key must be a string", "/")]
#[case::json_single_quotes("json_single_quotes.json", "key must be a string", "/")]
#[case::json_comment("json_comment.json", "json_comment.json:2:3", "/")]
#[case::json_two_values("json_two_values.json", "trailing characters", "/")]
#[case::json_truncated_string("json_truncated_string.json", "malformed JSON", "/")]
#[case::json_bad_escape("json_bad_escape.json", "invalid escape", "/")]
#[case::json_nan("json_nan.json", "expected value", "/")]
#[case::type_name_number("type_name_number.json", "expected a string", "/name")]
#[case::type_steps_object("type_steps_object.json", "\"steps\" must be an array", "/steps")]
#[case::type_step_string(
    "type_step_string.json",
    "invalid type: string \"generate\"",
    "/steps/0"
)]
#[case::type_max_retries_negative(
    "type_max_retries_negative.json",
    "expected u32",
    "/retry/max_retries"
)]
#[case::type_max_retries_string(
    "type_max_retries_string.json",
    "invalid type: string \"three\"",
    "/retry/max_retries"
)]
#[case::num_delay_negative(
    "num_delay_negative.json",
    "delay_seconds must be between 0 and 86400",
    "/retry/delay_seconds"
)]
#[case::num_delay_huge(
    "num_delay_huge.json",
    "delay_seconds must be between 0 and 86400",
    "/retry/delay_seconds"
)]
#[case::num_max_retries_u32_max(
    "num_max_retries_u32_max.json",
    "max_retries must be at most 1000",
    "/retry/max_retries"
)]
#[case::type_options_array("type_options_array.json", "expected a map", "/steps/0/options")]
#[case::type_inputs_string("type_inputs_string.json", "expected a sequence", "/steps/1/inputs")]
#[case::enum_mode_unknown("enum_mode_unknown.json", "unknown variant `realtime`", "/mode")]
#[case::enum_on_failure_unknown(
    "enum_on_failure_unknown.json",
    "unknown variant `explode`",
    "/steps/1/on_failure"
)]
#[case::enum_kind_unknown(
    "enum_kind_unknown.json",
    "unknown variant `extracts`",
    "/steps/0/kind"
)]
#[case::unknown_top_key("unknown_top_key.json", "did you mean \"steps\"?", "/stepz")]
#[case::unknown_step_key(
    "unknown_step_key.json",
    "did you mean \"options\"?",
    "/steps/0/optons"
)]
#[case::unknown_option_key(
    "unknown_option_key.json",
    "did you mean \"rows\"?",
    "/steps/0/options/rowz"
)]
#[case::unknown_method("unknown_method.json", "did you mean \"filter\"?", "/steps/1/method")]
#[case::method_of_other_kind("method_of_other_kind.json", "is a extract method", "/steps/1/method")]
#[case::missing_name("missing_name.json", "missing field `name`", "/")]
#[case::missing_steps("missing_steps.json", "missing \"steps\"", "/")]
#[case::empty_steps("empty_steps.json", "the pipeline has no steps", "/steps")]
#[case::missing_kind("missing_kind.json", "missing field `kind`", "/steps/0")]
#[case::missing_method("missing_method.json", "missing field `method`", "/steps/0")]
#[case::connection_undefined(
    "connection_undefined.json",
    "unknown connection \"lake\"",
    "/steps/1/connection"
)]
#[case::connection_required_missing(
    "connection_required_missing.json",
    "needs a connection",
    "/steps/1"
)]
#[case::connection_system_unknown(
    "connection_system_unknown.json",
    "is a oracle connection",
    "/steps/1/connection"
)]
#[case::connection_wrong_system(
    "connection_wrong_system.json",
    "needs postgres",
    "/steps/1/connection"
)]
#[case::ref_missing_file(
    "ref_missing_file.json",
    "cannot read referenced file no_such_file.json",
    "/connections/db/$ref"
)]
#[case::ref_directory("ref_directory.json", "Is a directory", "/connections/db/$ref")]
#[case::ref_not_json("ref_not_json.json", "not_json.txt:1:", "/")]
#[case::ref_cycle(
    "ref_cycle_a.json",
    "circular $ref: ref_cycle_a.json → ref_cycle_b.part → ref_cycle_a.json",
    "/$ref"
)]
#[case::ref_self("ref_self.json", "circular $ref", "/$ref")]
#[case::ref_not_string(
    "ref_not_string.json",
    "\"$ref\" must be a string",
    "/connections/db/$ref"
)]
#[case::expr_bad_filter(
    "expr_bad_filter.json",
    "invalid SQL expression \"amount >\"",
    "/steps/1/options/condition"
)]
#[case::expr_bad_derive(
    "expr_bad_derive.json",
    "invalid SQL expression",
    "/steps/1/options/columns/x"
)]
#[case::regex_bad_pattern("regex_bad_pattern.json", "invalid regex", "/steps/1/options/regex")]
#[case::type_name_bad_cast(
    "type_name_bad_cast.json",
    "unknown type \"int128x\"",
    "/steps/1/options/columns/amount"
)]
#[case::type_name_bad_schema(
    "type_name_bad_schema.json",
    "unknown type \"floaty\"",
    "/steps/1/options/columns/amount"
)]
#[case::num_rows_negative("num_rows_negative.json", "expected u64", "/steps/0/options/rows")]
#[case::num_rows_huge("num_rows_huge.json", "expected u64", "/steps/0/options/rows")]
#[case::num_batch_size_zero(
    "num_batch_size_zero.json",
    "batch_size must be at least 1",
    "/steps/0/options/batch_size"
)]
#[case::num_partitions_zero(
    "num_partitions_zero.json",
    "partitions must be between 1 and 64",
    "/steps/0/options/partition/partitions"
)]
#[case::num_partition_bound_object(
    "num_partition_bound_object.json",
    "a bound is a number",
    "/steps/0/options/partition/lower_bound"
)]
#[case::num_freshness_overflow(
    "num_freshness_overflow.json",
    "invalid duration \"200000000d\"",
    "/steps/1/options/max_age"
)]
#[case::empty_step_name(
    "empty_step_name.json",
    "a step name must not be empty",
    "/steps/0/name"
)]
#[case::empty_filter_condition(
    "empty_filter_condition.json",
    "the expression is empty",
    "/steps/1/options/condition"
)]
#[case::empty_columns_list(
    "empty_columns_list.json",
    "no column to check",
    "/steps/1/options/columns"
)]
#[case::duplicate_step_names(
    "duplicate_step_names.json",
    "step name \"g\" is already used",
    "/steps/1/name"
)]
#[case::inputs_later_step(
    "inputs_later_step.json",
    "input \"later\" is not an earlier step",
    "/steps/1/inputs/0"
)]
#[case::inputs_unknown_step(
    "inputs_unknown_step.json",
    "input \"nowhere\" is not an earlier step",
    "/steps/1/inputs/0"
)]
#[case::mysql_consistent_and_partition(
    "mysql_consistent_and_partition.json",
    "\"consistent\" reads on one connection",
    "/steps/0/options/consistent"
)]
#[case::mysql_upsert_without_key(
    "mysql_upsert_without_key.json",
    "upsert needs the key columns",
    "/steps/1/options/key"
)]
#[case::secret_password(
    "secret_password.json",
    "\"password\" holds a literal value",
    "/connections/db/password"
)]
#[case::secret_token_nested(
    "secret_token_nested.json",
    "\"token\" holds a literal value",
    "/steps/0/options/auth/token"
)]
#[case::secret_url_userinfo(
    "secret_url_userinfo.json",
    "a URL with an embedded password",
    "/connections/db/url"
)]
#[case::secret_sasl_password(
    "secret_sasl_password.json",
    "\"sasl_password\" holds a literal value",
    "/connections/k/sasl_password"
)]
#[case::secret_mixed_case_key(
    "secret_mixed_case_key.json",
    "\"Secret_Access_Key\" holds a literal value",
    "/connections/s/Secret_Access_Key"
)]
#[case::secret_api_key(
    "secret_api_key.json",
    "\"api_key\" holds a literal value",
    "/connections/s/settings/api_key"
)]
#[case::secret_private_key(
    "secret_private_key.json",
    "\"private_key\" holds a literal value",
    "/connections/s/private_key"
)]
#[case::secret_session_token(
    "secret_session_token.json",
    "\"session_token\" holds a literal value",
    "/connections/s/session_token"
)]
#[case::secret_access_key(
    "secret_access_key.json",
    "\"access_key\" holds a literal value",
    "/connections/s/access_key"
)]
fn the_corpus_is_rejected_with_exit_2_naming_file_and_path(
    #[case] file: &str,
    #[case] fragment: &str,
    #[case] pointer: &str,
) {
    let path = corpus(file);
    rejects(&path, fragment, pointer);
    let (_, stderr) = text(&pipectl(&["validate", path.to_str().unwrap()]));
    // The file the error is in is named (a referenced file for $ref errors).
    assert!(
        stderr.contains(".json:") || stderr.contains(".txt:") || stderr.contains(".part:"),
        "{stderr}"
    );
}

/// Cases made at run time: too large or too odd to keep in the repository.
#[rstest]
#[case::symlink_loop("symlink_loop")]
#[case::deep_nesting("deep_nesting")]
#[case::hundred_megabytes("hundred_megabytes")]
#[case::non_utf8("non_utf8")]
fn generated_inputs_are_rejected_too(#[case] which: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{which}.json"));
    let (fragment, pointer) = match which {
        "symlink_loop" => {
            std::os::unix::fs::symlink("loop_b.json", dir.path().join("loop_a.json")).unwrap();
            std::os::unix::fs::symlink("loop_a.json", dir.path().join("loop_b.json")).unwrap();
            std::fs::write(
                &file,
                r#"{"name": "x", "steps": [], "connections": {"d": {"$ref": "loop_a.json"}}}"#,
            )
            .unwrap();
            ("Too many levels of symbolic links", "/connections/d/$ref")
        }
        "deep_nesting" => {
            let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
            std::fs::write(
                &file,
                format!(r#"{{"name": "deep", "x": {deep}, "steps": []}}"#),
            )
            .unwrap();
            ("recursion limit exceeded", "/")
        }
        "hundred_megabytes" => {
            let mut text = String::from(r#"{"name": "big", "description": ""#);
            text.push_str(&"a".repeat(100 * 1024 * 1024));
            text.push_str(r#"", "steps": []}"#);
            std::fs::write(&file, text).unwrap();
            ("larger than 8 MiB", "")
        }
        _ => {
            std::fs::write(&file, b"{\"name\": \"b\xff\xfe\", \"steps\": []}").unwrap();
            ("not UTF-8 text (invalid bytes at offset 11)", "")
        }
    };
    rejects(&file, fragment, pointer);
}
