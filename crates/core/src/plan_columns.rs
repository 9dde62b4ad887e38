//! Column pruning over a plan. Walking from the loads back to the extracts, each step learns
//! which columns of its output the later steps read (loads read all), and asks its method which
//! input columns that takes (`MethodEntry::input_needs`). The executor then drops the other
//! columns before the step, and before keeping a dataset that later steps read whole: a side
//! input joined for one column no longer holds every column in memory, and a join no longer
//! copies columns nobody reads.

use crate::plan::PlannedStep;
use crate::registry::Registry;
use pipeline_base::StepKind;
use pipeline_data::Needs;
use pipeline_data::needs::union;
use std::collections::HashMap;

fn listed(needs: &Needs) -> Option<Vec<String>> {
    needs.as_ref().map(|n| n.iter().cloned().collect())
}

/// Sets each step's `columns`, `required` and `keep_columns` (see [`PlannedStep`]).
pub(crate) fn prune(steps: &mut [PlannedStep], registry: &Registry) {
    // Columns the readers of each dataset need; a dataset nobody reads is not in the map.
    let mut readers: HashMap<String, Needs> = HashMap::new();
    for step in steps.iter_mut().rev() {
        let mut output: Needs = readers.get(&step.name).cloned().unwrap_or(None);
        if let Some(q) = &step.quarantine
            && let Some(quarantined) = readers.get(q)
        {
            output = union(&output, quarantined);
        }
        step.keep_columns = readers.get(&step.name).and_then(listed);
        let inputs = step.inputs.len();
        let needs = match registry.get(step.kind, &step.method) {
            Some(entry) if step.kind != StepKind::Load => {
                entry.input_needs(&step.options, &output, inputs)
            }
            _ => vec![None; inputs],
        };
        if let Some(main) = needs.first() {
            step.columns = listed(main);
            step.required = match (main, &output) {
                (Some(main), Some(out)) => main.difference(out).cloned().collect(),
                (Some(main), None) => main.iter().cloned().collect(),
                _ => Vec::new(),
            };
        }
        for (input, need) in step.inputs.iter().zip(needs) {
            let merged = match readers.get(input) {
                Some(existing) => union(existing, &need),
                None => need,
            };
            readers.insert(input.clone(), merged);
        }
    }
}
