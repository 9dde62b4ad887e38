//! Which side inputs are complete when a step's first batch arrives. The executor runs the plan
//! as segments (a head, then every step whose main input is the step just before it) one after
//! the other, so a dataset produced in an earlier segment is whole by then; one produced in the
//! step's own segment is still growing, and the step must gather its main input until its own
//! input ends (as `plan` then says).

use crate::plan::PlannedStep;
use pipeline_base::StepKind;
use std::collections::HashMap;

/// Sets `side_ready` on every step (see the module doc).
pub(crate) fn mark_side_inputs(steps: &mut [PlannedStep]) {
    let mut segment_of: HashMap<String, usize> = HashMap::new();
    let mut segment = 0usize;
    let mut previous: Option<String> = None;
    for step in steps.iter_mut() {
        let chained = step.kind != StepKind::Extract
            && previous.is_some()
            && previous.as_ref() == step.inputs.first();
        if !chained {
            segment = segment.saturating_add(1);
        }
        step.side_ready = step
            .inputs
            .iter()
            .skip(1)
            .all(|d| segment_of.get(d) != Some(&segment));
        if !step.side_ready
            && let Some(memory) = &step.memory
            && !memory.starts_with("gathers")
        {
            step.memory = Some(format!(
                "gathers its whole input: a side input is produced in its own chain ({memory} otherwise)"
            ));
        }
        segment_of.insert(step.name.clone(), segment);
        if let Some(q) = &step.quarantine {
            segment_of.insert(q.clone(), segment);
        }
        previous = Some(step.name.clone());
    }
}
