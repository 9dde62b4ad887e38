//! End-to-end tests of the binary's tool commands: `plan --format mermaid|dot` (checked by
//! Mermaid's own parser), shell completions and the man page, `pipectl delta` on local tables.

mod common;

use common::{pipectl, text};
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const GEN: &str =
    r#"{"name": "g", "kind": "extract", "method": "generate", "options": {"rows": 10}}"#;

/// `plan --format mermaid|dot` on user story 2: every step a node, every input an edge between
/// declared nodes (side inputs dotted), the quarantine dataset its own node feeding its load.
#[test]
fn the_plan_as_mermaid_and_dot() {
    let file = pipeline_testkit::repo_root().join("configs/examples/orders_enriched.json");
    let out = pipectl(&["plan", s(&file), "--format", "mermaid"]);
    let (mermaid, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(mermaid.starts_with("flowchart LR\n"), "{mermaid}");
    let declared: Vec<&str> = mermaid
        .lines()
        .skip(1)
        .filter(|l| !l.contains("-->") && !l.contains("-.->") && !l.contains(".->"))
        .filter_map(|l| l.trim().split(['(', '[', '{', '/']).next())
        .collect();
    assert_eq!(
        declared.len(),
        13,
        "12 steps and 1 quarantine dataset: {mermaid}"
    );
    for l in mermaid.lines().filter(|l| l.contains("->")) {
        let words: Vec<&str> = l.split_whitespace().collect();
        let (from, to) = (words[0], words[words.len() - 1]);
        assert!(declared.contains(&from) && declared.contains(&to), "{l}");
    }
    assert!(mermaid.contains("s1 -.->|side| s6"), "{mermaid}");
    assert!(mermaid.contains("s3 -. quarantine .-> q3"), "{mermaid}");
    assert!(mermaid.contains("q3 -->|\"DataFrame\"| s11"), "{mermaid}");
    assert!(
        mermaid.contains("s8[(\"orders_table<br/>load delta\")]"),
        "{mermaid}"
    );
    let out = pipectl(&["plan", s(&file), "--format", "dot"]);
    let (dot, _) = text(&out);
    assert!(dot.starts_with("digraph \"orders_enriched\" {"), "{dot}");
    assert_eq!(dot.matches('{').count(), dot.matches('}').count());
    assert!(
        dot.contains("s1 -> s6 [style=dotted, label=\"side\"];"),
        "{dot}"
    );
    let bad = pipectl(&["plan", s(&file), "--format", "svg"]);
    assert_eq!(bad.status.code(), Some(2));
}

/// Completion scripts for three shells and a man page come from the clap definitions; bash
/// parses the bash script.
#[test]
fn completions_and_man_page() {
    for shell in ["bash", "zsh", "fish"] {
        let out = pipectl(&["completions", shell]);
        let (script, err) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert!(
            script.contains("validate") && script.contains("delta"),
            "{shell}"
        );
    }
    let (bash, _) = text(&pipectl(&["completions", "bash"]));
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("pipectl.bash");
    std::fs::write(&f, bash).unwrap();
    let checked = std::process::Command::new("bash")
        .args(["-n", s(&f)])
        .status()
        .unwrap();
    assert!(checked.success(), "bash -n rejected the completion script");
    let (man, _) = text(&pipectl(&["man"]));
    assert!(
        man.starts_with(".ie") || man.contains(".TH pipectl"),
        "{}",
        &man[..man.len().min(200)]
    );
    assert!(man.contains("validate"));
}

/// Mermaid's own parser accepts the user-story-2 chart and refuses a broken one.
#[test]
fn mermaid_parses_the_plan_chart() {
    let tools = pipeline_testkit::cache_dir().join("node-tools");
    if !tools.join("node_modules/mermaid").is_dir() {
        assert!(
            !pipeline_testkit::in_ci(),
            "the Mermaid parser is missing under {} (scripts/dev-env up installs it)",
            tools.display()
        );
        pipeline_testkit::skip(
            "the Mermaid parser is not installed (scripts/dev-env up installs it)",
        );
        return;
    }
    let script = tools.join("mermaid_check.mjs");
    std::fs::copy(
        pipeline_testkit::repo_root().join("crates/pipectl/tests/mermaid_check.mjs"),
        &script,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline_testkit::repo_root().join("configs/examples/orders_enriched.json");
    let (chart, _) = text(&pipectl(&["plan", s(&file), "--format", "mermaid"]));
    let good = dir.path().join("us2.mmd");
    std::fs::write(&good, &chart).unwrap();
    let bad = dir.path().join("bad.mmd");
    std::fs::write(&bad, chart.replace("-->|", "-->|x ")).unwrap();
    let parse = |f: &Path| {
        std::process::Command::new("node")
            .args([s(&script), s(f)])
            .output()
            .unwrap()
    };
    let ok = parse(&good);
    let (out, err) = text(&ok);
    assert!(
        ok.status.success() && out.starts_with("ok flowchart"),
        "{out}{err}"
    );
    assert!(!parse(&bad).status.success(), "a broken chart was accepted");
}

/// `pipectl delta` on a local table directory and on a pipeline: history as text, nothing to
/// compact, a checkpoint, and the usage errors (--step without a pipeline, a pipeline without
/// a delta step, several delta steps, an unknown step, a path that is no table).
#[test]
fn delta_commands_on_a_local_table() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let make = write(
        d,
        "make.json",
        &format!(
            r#"{{"name": "make", "steps": [{GEN}, {{"name": "l", "kind": "load", "method": "delta", "options": {{"path": "t"}}}}]}}"#
        ),
    );
    assert_eq!(pipectl(&["run", s(&make)]).status.code(), Some(0));
    assert_eq!(pipectl(&["run", s(&make)]).status.code(), Some(0));
    let table = d.join("t");
    let h = pipectl(&["delta", "history", s(&table)]);
    let (out, err) = text(&h);
    assert_eq!(h.status.code(), Some(0), "{err}");
    assert!(
        out.lines().next().unwrap().contains("version") && out.contains("WRITE"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 3, "{out}");
    let o = pipectl(&["delta", "optimize", s(&table), "--target-size-mb", "1"]);
    let (out, _) = text(&o);
    assert!(
        out.contains("nothing to compact") || out.contains("compacted"),
        "{out}"
    );
    let c = pipectl(&["delta", "checkpoint", s(&make), "--step", "l"]);
    assert_eq!(c.status.code(), Some(0), "{}", text(&c).1);
    let usage = pipectl(&["delta", "history", s(&table), "--step", "l"]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(text(&usage).1.contains("--step needs a pipeline file"));
    let none = write(
        d,
        "none.json",
        &format!(r#"{{"name": "none", "steps": [{GEN}]}}"#),
    );
    let e = pipectl(&["delta", "history", s(&none)]);
    assert_eq!(e.status.code(), Some(2));
    assert!(text(&e).1.contains("no delta step"), "{}", text(&e).1);
    let two = write(
        d,
        "two.json",
        &format!(
            r#"{{"name": "two", "steps": [{GEN}, {{"name": "a", "kind": "load", "method": "delta", "options": {{"path": "t"}}}}, {{"name": "b", "kind": "load", "method": "delta", "options": {{"path": "u"}}}}]}}"#
        ),
    );
    let e = pipectl(&["delta", "history", s(&two)]);
    assert!(
        text(&e).1.contains("choose one with --step: a, b"),
        "{}",
        text(&e).1
    );
    let e = pipectl(&["delta", "history", s(&two), "--step", "c"]);
    assert!(text(&e).1.contains("no step \"c\""), "{}", text(&e).1);
    let e = pipectl(&["delta", "history", s(d)]);
    assert_eq!(e.status.code(), Some(2));
    assert!(
        text(&e).1.contains("is not a Delta table"),
        "{}",
        text(&e).1
    );
    let bad = write(d, "bad.json", "{");
    assert_eq!(
        pipectl(&["delta", "history", s(&bad)]).status.code(),
        Some(2)
    );
}
