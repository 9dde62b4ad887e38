//! The JSON Schema (draft 2020-12) of pipeline files, generated from the Rust types, with each
//! method's options attached to its `kind`/`method` pair so that editors complete them.

use crate::registry::Registry;
use pipeline_config::PipelineConfig;
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

/// The schema of pipeline files for the methods in `registry`.
pub fn pipeline_schema(registry: &Registry) -> Value {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let root = generator.root_schema_for::<PipelineConfig>();
    let mut root = root.to_value();
    let mut conditions = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for entry in registry.entries() {
        let options = entry.options_schema(&mut generator).to_value();
        if !names.contains(&entry.name) {
            names.push(entry.name);
        }
        conditions.push(json!({
            "if": {
                "properties": {"kind": {"const": entry.kind.as_str()}, "method": {"const": entry.name}},
                "required": ["kind", "method"]
            },
            "then": {"properties": {"options": options}, "description": entry.summary}
        }));
    }
    let definitions = generator.take_definitions(true);
    if let Some(defs) = root.get_mut("$defs").and_then(Value::as_object_mut) {
        for (k, v) in definitions {
            defs.entry(k).or_insert(v);
        }
        if let Some(step) = defs.get_mut("StepConfig").and_then(Value::as_object_mut) {
            step.insert("allOf".into(), Value::Array(conditions));
            if let Some(method) = step.get_mut("properties").and_then(|p| p.get_mut("method")) {
                method["examples"] = json!(names);
            }
        }
    }
    root["title"] = json!("pipectl pipeline");
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_2020_12_with_method_options() {
        let s = pipeline_schema(&Registry::standard());
        assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
        let step = &s["$defs"]["StepConfig"];
        assert_eq!(step["additionalProperties"], false);
        let all = step["allOf"].as_array().unwrap();
        let filter = all
            .iter()
            .find(|c| c["if"]["properties"]["method"]["const"] == "filter")
            .unwrap();
        let options = &filter["then"]["properties"]["options"];
        let text = options.to_string();
        assert!(
            text.contains("FilterOptions") || text.contains("condition"),
            "{text}"
        );
    }
}
