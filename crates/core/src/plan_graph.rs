//! The plan as a picture: Mermaid (`flowchart LR`) or Graphviz DOT text for `pipectl plan
//! --format mermaid|dot`. Steps are nodes shaped by kind (sources as stadiums, validations as
//! hexagons, loads as cylinders); the main input is a solid edge labelled with the format that
//! flows (and an automatic conversion), a side input a dotted edge, a quarantine dataset a
//! dashed edge to its own node. Connections are named inside the nodes.

use crate::plan::Plan;
use pipeline_base::StepKind;
use std::fmt::Write as _;

/// A node id Mermaid and DOT both accept: the step's index.
fn id(i: usize) -> String {
    format!("s{i}")
}

/// Text safe inside a quoted label of either format.
fn label(text: &str) -> String {
    text.replace('"', "'").replace(['<', '>'], "")
}

impl Plan {
    /// The index of the step or quarantine dataset named `name`.
    fn node_of(&self, name: &str) -> Option<String> {
        if let Some(i) = self.steps.iter().position(|s| s.name == name) {
            return Some(id(i));
        }
        self.steps
            .iter()
            .position(|s| s.quarantine.as_deref() == Some(name))
            .map(|i| format!("q{i}"))
    }

    /// The node's lines: name, kind and method, connection.
    fn step_lines(&self, i: usize) -> Vec<String> {
        let Some(s) = self.steps.get(i) else {
            return Vec::new();
        };
        let mut lines = vec![label(&s.name), label(&format!("{} {}", s.kind, s.method))];
        if let Some(c) = &s.connection {
            lines.push(label(&format!("@{c}")));
        }
        lines
    }

    fn edge_text(&self, i: usize) -> String {
        let Some(s) = self.steps.get(i) else {
            return String::new();
        };
        let input = s.input_format.map(|f| f.to_string()).unwrap_or_default();
        match s.auto_convert_to {
            Some(to) => format!("{input} → {to}"),
            None => input,
        }
    }

    /// Mermaid flowchart text.
    pub fn mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        for (i, s) in self.steps.iter().enumerate() {
            let text = self.step_lines(i).join("<br/>");
            let node = match s.kind {
                StepKind::Extract => format!("{}([\"{text}\"])", id(i)),
                StepKind::Load => format!("{}[(\"{text}\")]", id(i)),
                StepKind::Validate => format!("{}{{{{\"{text}\"}}}}", id(i)),
                _ => format!("{}[\"{text}\"]", id(i)),
            };
            let _ = writeln!(out, "    {node}");
            if let Some(q) = &s.quarantine {
                let _ = writeln!(out, "    q{i}[/\"{} (invalid rows)\"/]", label(q));
                let _ = writeln!(out, "    {} -. quarantine .-> q{i}", id(i));
            }
        }
        for (i, s) in self.steps.iter().enumerate() {
            for (n, input) in s.inputs.iter().enumerate() {
                let Some(from) = self.node_of(input) else {
                    continue;
                };
                if n == 0 {
                    let text = self.edge_text(i);
                    if text.is_empty() {
                        let _ = writeln!(out, "    {from} --> {}", id(i));
                    } else {
                        let _ = writeln!(out, "    {from} -->|\"{}\"| {}", label(&text), id(i));
                    }
                } else {
                    let _ = writeln!(out, "    {from} -.->|side| {}", id(i));
                }
            }
        }
        out
    }

    /// Graphviz DOT text.
    pub fn dot(&self) -> String {
        let mut out = format!(
            "digraph \"{}\" {{\n    rankdir=LR;\n    node [fontname=\"Helvetica\"];\n",
            label(&self.pipeline)
        );
        for (i, s) in self.steps.iter().enumerate() {
            let shape = match s.kind {
                StepKind::Extract => "invhouse",
                StepKind::Load => "cylinder",
                StepKind::Validate => "hexagon",
                _ => "box",
            };
            let text = self.step_lines(i).join("\\n");
            let _ = writeln!(out, "    {} [label=\"{text}\", shape={shape}];", id(i));
            if let Some(q) = &s.quarantine {
                let _ = writeln!(
                    out,
                    "    q{i} [label=\"{} (invalid rows)\", shape=note];\n    {} -> q{i} [style=dashed, label=\"quarantine\"];",
                    label(q),
                    id(i)
                );
            }
        }
        for (i, s) in self.steps.iter().enumerate() {
            for (n, input) in s.inputs.iter().enumerate() {
                let Some(from) = self.node_of(input) else {
                    continue;
                };
                if n == 0 {
                    let _ = writeln!(
                        out,
                        "    {from} -> {} [label=\"{}\"];",
                        id(i),
                        label(&self.edge_text(i))
                    );
                } else {
                    let _ = writeln!(
                        out,
                        "    {from} -> {} [style=dotted, label=\"side\"];",
                        id(i)
                    );
                }
            }
        }
        out.push_str("}\n");
        out
    }
}
