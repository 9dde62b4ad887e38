//! Pipeline tests (`pipectl test`): a test file names a pipeline and gives cases; each case
//! replaces every extract with fixture rows and every load with a capture, runs the chain
//! in-process (no connection opened, no Vault), and checks expectations on any step's output,
//! any load's input or a quarantine dataset: rows, row count, column types, validation counts,
//! or an expected failure.

pub mod compare;
mod fixture;

pub use fixture::{CaptureOptions, FixtureOptions, rows_to_frame};
pub(crate) use fixture::{capture as capture_method, take_captured};

use crate::{Pipeline, Registry, RunOptions};
use indexmap::IndexMap;
use pipeline_base::StepKind;
use pipeline_data::MethodEntry;
use pipeline_data::polars::prelude::DataFrame;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A test file: the pipeline under test and its cases.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// Editors' schema reference (ignored).
    #[serde(default, rename = "$schema")]
    pub schema: Option<String>,
    /// The pipeline file, relative to this test file.
    pub pipeline: String,
    pub cases: Vec<TestCase>,
}

/// One case: fixtures in, expectations out.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: String,
    /// Rows for the extract steps, by step name; every extract needs one.
    #[serde(default)]
    pub fixtures: BTreeMap<String, FixtureOptions>,
    /// Expectations by step name (a load: what it received) or quarantine dataset name.
    #[serde(default)]
    pub expect: BTreeMap<String, Expectation>,
    /// The run must fail (at `step`, when given) with a message containing `message`.
    #[serde(default)]
    pub expect_failure: Option<ExpectedFailure>,
}

/// What a step's output must be. Every field given is checked.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// Exactly these rows (in any order unless `ordered`); columns the rows do not name are
    /// not compared. Dates and datetimes compare as text (`2026-11-28`, `2026-11-28T10:00:00Z`).
    #[serde(default)]
    pub rows: Option<Vec<Map<String, Value>>>,
    #[serde(default)]
    pub ordered: bool,
    #[serde(default)]
    pub row_count: Option<u64>,
    /// Column → type (`int64`, `string`, `date`, `datetime[us, UTC]`, `decimal(10,2)`, ...).
    #[serde(default)]
    pub columns: Option<IndexMap<String, String>>,
    /// A validation step's counts.
    #[serde(default)]
    pub validation: Option<ValidationCounts>,
}

/// Rows a validation checked, passed and failed.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidationCounts {
    #[serde(default)]
    pub checked: Option<u64>,
    #[serde(default)]
    pub passed: Option<u64>,
    #[serde(default)]
    pub failed: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectedFailure {
    #[serde(default)]
    pub step: Option<String>,
    pub message: String,
}

/// The outcome of one case: no failures = passed.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub name: String,
    pub failures: Vec<String>,
}

/// The outcome of a test file.
#[derive(Debug, Clone)]
pub struct FileResult {
    pub pipeline: String,
    pub cases: Vec<CaseResult>,
}

/// The JSON Schema of test files.
pub fn test_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(TestFile)).unwrap_or_default()
}

/// The standard methods plus `fixture` and `capture`.
fn registry() -> Arc<Registry> {
    let mut r = Registry::standard();
    r.register(MethodEntry::extract(
        "fixture",
        "A test case's rows",
        pipeline_data::ConnectionUse::None,
        fixture::fixture,
    ));
    r.register(MethodEntry::load(
        "capture",
        "Keeps what reaches it for a test's expectations",
        pipeline_data::ConnectionUse::None,
        fixture::capture,
    ));
    Arc::new(r)
}

/// Reads and runs every case of a test file. An unreadable test file or pipeline is an error
/// (its text says why); failing cases are in the result.
pub async fn run_test_file(path: &Path) -> Result<FileResult, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: TestFile =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let pipeline_path = dir.join(&file.pipeline);
    let pipeline = Pipeline::from_file(&pipeline_path, &[]).map_err(|e| e.to_string())?;
    let mut cases = Vec::with_capacity(file.cases.len());
    for case in &file.cases {
        let failures = match run_case(&pipeline, &pipeline_path, dir, case).await {
            Ok(f) => f,
            Err(e) => vec![e],
        };
        cases.push(CaseResult {
            name: case.name.clone(),
            failures,
        });
    }
    Ok(FileResult {
        pipeline: pipeline.plan().pipeline.clone(),
        cases,
    })
}

/// A capture key unique to this process, case and step.
fn key(run: u64, step: &str) -> String {
    format!("{run}/{step}")
}

/// The pipeline document with fixtures for extracts and captures for loads and expectations.
fn rewrite(
    document: &Value,
    case: &TestCase,
    run: u64,
    dir: &Path,
) -> Result<(Value, Vec<String>), String> {
    let mut doc = document.clone();
    doc["retry"] = json!({"max_retries": 0, "delay_seconds": 0});
    let steps = doc
        .get("steps")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::with_capacity(steps.len());
    let mut step_names = Vec::new();
    let mut quarantines = Vec::new();
    for mut step in steps {
        let name = step["name"].as_str().unwrap_or_default().to_string();
        let kind = step["kind"].as_str().unwrap_or_default().to_string();
        if let Some(q) = step.get("quarantine").and_then(Value::as_str) {
            quarantines.push(q.to_string());
        }
        if let Some(obj) = step.as_object_mut() {
            match kind.as_str() {
                "extract" => {
                    let Some(fixture) = case.fixtures.get(&name) else {
                        return Err(format!(
                            "extract step \"{name}\" has no fixture: give its rows under \"fixtures\""
                        ));
                    };
                    let mut fixture = fixture.clone();
                    if let Some(f) = &fixture.file {
                        let path = dir.join(f);
                        let path = path.canonicalize().map_err(|e| {
                            format!("fixture file {} of step \"{name}\": {e}", path.display())
                        })?;
                        fixture.file = Some(path.to_string_lossy().into_owned());
                    }
                    obj.remove("connection");
                    obj.insert("method".into(), "fixture".into());
                    obj.insert(
                        "options".into(),
                        serde_json::to_value(FixtureJson::from(&fixture)).unwrap_or_default(),
                    );
                }
                "load" => {
                    obj.remove("connection");
                    obj.insert("method".into(), "capture".into());
                    obj.insert("options".into(), json!({"key": key(run, &name)}));
                }
                _ => {}
            }
        }
        out.push(step);
        if kind != "load" && case.expect.contains_key(&name) {
            out.push(
                json!({"name": format!("__expect_{name}"), "kind": "load", "method": "capture",
                "inputs": [name], "options": {"key": key(run, &name)}}),
            );
        }
        step_names.push(name);
    }
    for name in case.expect.keys() {
        if quarantines.contains(name) {
            out.push(
                json!({"name": format!("__expect_{name}"), "kind": "load", "method": "capture",
                "inputs": [name], "options": {"key": key(run, name)}}),
            );
        } else if !step_names.contains(name) {
            return Err(format!(
                "\"expect\" names \"{name}\", which is neither a step nor a quarantine dataset of the pipeline"
            ));
        }
    }
    for name in case.fixtures.keys() {
        if !step_names.contains(name) {
            return Err(format!(
                "\"fixtures\" names \"{name}\", which is not a step of the pipeline"
            ));
        }
    }
    doc["steps"] = Value::Array(out);
    // A streaming pipeline's case is one micro-batch: the fixtures, run once.
    if doc.get("mode").and_then(Value::as_str) == Some("streaming") {
        doc["mode"] = json!("batch");
    }
    Ok((doc, step_names))
}

/// `FixtureOptions` as the `fixture` method reads them.
#[derive(serde::Serialize)]
struct FixtureJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    rows: Option<Vec<Map<String, Value>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    schema: IndexMap<String, String>,
}

impl From<&FixtureOptions> for FixtureJson {
    fn from(f: &FixtureOptions) -> Self {
        FixtureJson {
            rows: f.rows.clone(),
            file: f.file.clone(),
            schema: f.schema.clone(),
        }
    }
}

async fn run_case(
    pipeline: &Pipeline,
    pipeline_path: &Path,
    dir: &Path,
    case: &TestCase,
) -> Result<Vec<String>, String> {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let (doc, _) = rewrite(pipeline.resolved_document(), case, run, dir)?;
    let text = serde_json::to_string(&doc).map_err(|e| e.to_string())?;
    let under_test = Pipeline::from_str_with(pipeline_path, &text, registry())
        .map_err(|e| format!("the pipeline with the case's fixtures does not check:\n{e}"))?;
    let outcome = under_test.run(&RunOptions::default()).await;
    let mut failures = Vec::new();
    let report = match (&outcome, &case.expect_failure) {
        (Ok(report), None) => report.clone(),
        (Ok(_), Some(want)) => {
            failures.push(format!(
                "expected the run to fail{} with \"{}\", but it succeeded",
                want.step
                    .as_deref()
                    .map(|s| format!(" at step \"{s}\""))
                    .unwrap_or_default(),
                want.message
            ));
            return Ok(failures);
        }
        (Err(f), None) => {
            failures.push(format!("the run failed: {f}"));
            return Ok(failures);
        }
        (Err(f), Some(want)) => {
            let message = f.error.full_message();
            if let Some(step) = &want.step
                && *step != f.step
            {
                failures.push(format!(
                    "expected a failure at step \"{step}\", but it failed at \"{}\": {message}",
                    f.step
                ));
            }
            if !message.contains(&want.message) {
                failures.push(format!(
                    "expected a failure message containing \"{}\", got: {message}",
                    want.message
                ));
            }
            (*f.report).clone()
        }
    };
    for (name, want) in &case.expect {
        let df = fixture::take_captured(&key(run, name)).unwrap_or_default();
        check(name, want, &df, &report, &mut failures);
    }
    Ok(failures)
}

fn check(
    name: &str,
    want: &Expectation,
    df: &DataFrame,
    report: &crate::RunReport,
    failures: &mut Vec<String>,
) {
    let at = |what: String| format!("step \"{name}\": {what}");
    if let Some(n) = want.row_count
        && df.height() as u64 != n
    {
        failures.push(at(format!("expected {n} rows, got {}", df.height())));
    }
    if let Some(columns) = &want.columns {
        for (c, t) in columns {
            let Some(expected) = pipeline_methods::parse_type(t) else {
                failures.push(at(format!("unknown type \"{t}\" for column \"{c}\"")));
                continue;
            };
            match df.schema().get(c.as_str()) {
                None => failures.push(at(format!("no column \"{c}\""))),
                Some(actual) if *actual != expected => failures.push(at(format!(
                    "column \"{c}\" is {actual}, expected {expected}"
                ))),
                Some(_) => {}
            }
        }
    }
    if let Some(rows) = &want.rows
        && let Some(diff) = compare::compare_rows(rows, &compare::frame_rows(df), want.ordered)
    {
        failures.push(at(diff));
    }
    if let Some(v) = &want.validation {
        let metrics = report
            .steps
            .iter()
            .find(|s| s.name == name && s.kind == StepKind::Validate)
            .map(|s| s.metrics.clone());
        let Some(metrics) = metrics else {
            failures.push(at("is not a validation step that ran".into()));
            return;
        };
        for (label, expected) in [
            ("checked", v.checked),
            ("passed", v.passed),
            ("failed", v.failed),
        ] {
            if let Some(e) = expected {
                let got = metrics.get(label).copied().unwrap_or_default();
                if got != e {
                    failures.push(at(format!("{label}: expected {e}, got {got}")));
                }
            }
        }
    }
}

/// Test files under `path`: the file itself, or every `*.test.json` in a directory (sorted).
pub fn test_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(".test.json"))
            .collect();
        files.sort();
        Ok(files)
    } else {
        Ok(vec![path.to_path_buf()])
    }
}
