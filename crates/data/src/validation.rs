//! Validation rules: their registry entries, the result of a rule over a batch, and sample
//! rows for failure messages.

use crate::method::{ConnectionUse, DATAFRAME, MethodEntry, MethodOptions, Produces, StepSetup};
use crate::ordered::SortSpec;
use crate::partitioned::Partitioned;
use crate::runtime::{Datasets, Runtime};
use crate::validate::{PrepareCheck, RowCheck, Validate};
use futures::future::BoxFuture;
use pipeline_base::{Format, StepError, StepKind};
use polars::prelude::*;
use std::sync::Arc;

impl MethodEntry {
    /// A validation rule. Row-level rules stream, and so do rules with side inputs (the side
    /// inputs are gathered once); `whole` rules (uniqueness, counts) gather their input first.
    /// Invalid rows are handled per `on_failure`.
    pub fn validation<O: MethodOptions>(
        name: &'static str,
        summary: &'static str,
        whole: bool,
        side_inputs: (usize, Option<usize>),
        f: fn(&DataFrame, &O, &Datasets) -> Result<Check, StepError>,
    ) -> Self {
        Self::validation_with(name, summary, whole, side_inputs, None, bind(f))
    }

    /// A row rule against side inputs that first turns them into `P` (e.g. a key index), once
    /// per run; then `f` checks each batch of the main input against it.
    pub fn validation_prepared<O: MethodOptions, P: Send + Sync + 'static>(
        name: &'static str,
        summary: &'static str,
        side_inputs: (usize, Option<usize>),
        prepare: fn(&O, &Datasets) -> Result<P, StepError>,
        f: fn(&DataFrame, &O, &P) -> Result<Check, StepError>,
    ) -> Self {
        Self::validation_with(
            name,
            summary,
            false,
            side_inputs,
            None,
            move |options: Arc<O>| {
                Arc::new(move |side: &Datasets| -> Result<RowCheck, StepError> {
                    let prepared = Arc::new(prepare(&options, side)?);
                    let options = options.clone();
                    Ok(Arc::new(move |df: &DataFrame| f(df, &options, &prepared)))
                })
            },
        )
    }

    /// A whole-input rule without side inputs that judges rows key by key (`keys` of its
    /// options, e.g. uniqueness): past the pipeline's `memory_limit_mb` its input goes to disk
    /// partitioned by key, each partition is judged alone, and the rows come back in arrival
    /// order (quarantined rows partition by partition).
    pub fn validation_partitioned<O: MethodOptions>(
        name: &'static str,
        summary: &'static str,
        f: fn(&DataFrame, &O, &Datasets) -> Result<Check, StepError>,
        keys: fn(&O) -> Vec<String>,
    ) -> Self {
        let mut entry =
            Self::validation_with(name, summary, true, (0, Some(0)), Some(keys), bind(f));
        entry.gathers = crate::incremental::Gathers::Partitioned;
        entry
    }

    fn validation_with<O: MethodOptions>(
        name: &'static str,
        summary: &'static str,
        whole: bool,
        side_inputs: (usize, Option<usize>),
        keys: Option<fn(&O) -> Vec<String>>,
        bind: impl Fn(Arc<O>) -> PrepareCheck + Send + Sync + 'static,
    ) -> Self {
        let bind = Arc::new(bind);
        let open = move |setup: StepSetup| -> BoxFuture<'static, Result<Runtime, StepError>> {
            let bind = bind.clone();
            Box::pin(async move {
                let options: O = setup.options()?;
                // Side inputs produced in the step's own chain are complete only at its end:
                // gather the main input until then.
                let gather = whole || (!setup.side_inputs.is_empty() && !setup.side_inputs_ready);
                let partitioned = keys.filter(|_| whole).map(|keys| {
                    let order = SortSpec::default();
                    Partitioned::new(&setup.step, keys(&options), order, setup.memory_limit)
                });
                Ok(Runtime::Operator(Box::new(Validate {
                    prepare: bind(Arc::new(options)),
                    check: None,
                    setup,
                    gather,
                    gathered: None,
                    partitioned,
                    merging: None,
                    spilled_bytes: 0,
                    counts: [0; 3],
                    quarantined: Vec::new(),
                })))
            })
        };
        Self::entry::<O>(
            name,
            StepKind::Validate,
            summary,
            DATAFRAME,
            Produces::Format(Format::DataFrame),
            whole,
            side_inputs,
            ConnectionUse::None,
            Box::new(open),
        )
    }
}

/// Binds a plain rule's options and side inputs.
fn bind<O: MethodOptions>(
    f: fn(&DataFrame, &O, &Datasets) -> Result<Check, StepError>,
) -> impl Fn(Arc<O>) -> PrepareCheck + Send + Sync + 'static {
    move |options: Arc<O>| {
        Arc::new(move |side: &Datasets| -> Result<RowCheck, StepError> {
            let (options, side) = (options.clone(), side.clone());
            Ok(Arc::new(move |df: &DataFrame| f(df, &options, &side)))
        })
    }
}

/// A rule's verdict: which rows hold (`true`); `false` and null mean invalid.
pub struct Check {
    /// A short description of the rule, e.g. `not_null(customer_id)`.
    pub rule: String,
    pub valid: BooleanChunked,
    /// A table rule (schema, row count, freshness) failed for the input as a whole: the step
    /// fails unless `on_failure` is `warn`, even when there is no row.
    pub table_violation: bool,
}

impl Check {
    /// A row rule's verdict.
    pub fn rows(rule: impl Into<String>, valid: BooleanChunked) -> Self {
        Check {
            rule: rule.into(),
            valid,
            table_violation: false,
        }
    }

    /// A failed table rule; `valid` marks every row invalid.
    pub fn table(rule: impl Into<String>, valid: BooleanChunked) -> Self {
        Check {
            rule: rule.into(),
            valid,
            table_violation: true,
        }
    }

    /// The mask with nulls counted as invalid.
    pub fn mask(&self) -> BooleanChunked {
        self.valid
            .fill_null_with_values(false)
            .unwrap_or_else(|_| self.valid.clone())
    }
}

/// Up to `n` rows rendered as `{col: value, ...}`, leaving out columns whose names look secret.
pub fn sample_rows(
    df: &DataFrame,
    n: usize,
    is_secret: impl Fn(&str) -> bool,
) -> Result<Vec<String>, StepError> {
    let head = df.head(Some(n));
    let mut rows = Vec::with_capacity(head.height());
    for i in 0..head.height() {
        let mut parts = Vec::new();
        for c in head.columns() {
            if is_secret(c.name().as_str()) {
                parts.push(format!("{}: <redacted>", c.name()));
                continue;
            }
            let v = c
                .get(i)
                .map_err(|e| crate::errors::polars_error(e, "sampling rows"))?;
            parts.push(format!("{}: {}", c.name(), v));
        }
        rows.push(format!("{{{}}}", parts.join(", ")));
    }
    Ok(rows)
}
