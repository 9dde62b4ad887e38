//! The operator behind validations, with its fail / filter / quarantine / warn handling and
//! `max_invalid_fraction`. Row rules check batch by batch; whole-input rules gather first, and
//! those that work key by key (`unique`) hold their input partitioned by key past
//! `memory_limit_mb`, judge each partition alone, and merge the rows back in arrival order
//! (see `partitioned`).

use crate::batch::Batch;
use crate::method::StepSetup;
use crate::operators::{gather, with_step};
use crate::ordered::SEQ;
use crate::partitioned::Partitioned;
use crate::runtime::{Datasets, Metrics, Operator, RunContext, blocking};
use crate::spilling::{Finished, Held, Merging, drain_merge};
use crate::validation::{Check, sample_rows};
use async_trait::async_trait;
use pipeline_base::{OnFailure, StepError};
use polars::prelude::*;
use std::sync::Arc;

/// A rule made ready for batches: its options and side inputs bound (a side input's key index
/// built once).
pub(crate) type RowCheck = Arc<dyn Fn(&DataFrame) -> Result<Check, StepError> + Send + Sync>;
/// Makes the rule ready from the side inputs (called once, when the first batch arrives).
pub(crate) type PrepareCheck = Arc<dyn Fn(&Datasets) -> Result<RowCheck, StepError> + Send + Sync>;

pub(crate) struct Validate {
    pub(crate) prepare: PrepareCheck,
    pub(crate) check: Option<RowCheck>,
    pub(crate) setup: StepSetup,
    /// The rule needs the whole input at once (uniqueness, counts).
    pub(crate) gather: bool,
    pub(crate) gathered: Option<DataFrame>,
    /// For a whole-input rule that works key by key: the input, partitioned past the limit.
    pub(crate) partitioned: Option<Partitioned>,
    pub(crate) merging: Merging,
    pub(crate) spilled_bytes: u64,
    /// checked, passed, failed
    pub(crate) counts: [u64; 3],
    /// Invalid rows with their reason, for `on_failure: quarantine`.
    pub(crate) quarantined: Vec<DataFrame>,
}

/// The column naming the rule a quarantined row broke.
pub const REASON_COLUMN: &str = "_pipectl_reason";

/// A frame judged by a rule: the rows going on, the quarantined ones, and the counts.
struct Judged {
    out: DataFrame,
    bad: Option<DataFrame>,
    counts: [u64; 3],
}

/// Applies `on_failure` to `df` given the rule's verdict.
fn judge(
    check: Check,
    df: DataFrame,
    on_failure: OnFailure,
    step: &str,
) -> Result<Judged, StepError> {
    let mask = check.mask();
    let passed = mask.num_trues() as u64;
    let height = df.height() as u64;
    let failed = height.saturating_sub(passed);
    let counts = [height, passed, failed];
    let ok = |out: DataFrame| {
        Ok(Judged {
            out,
            bad: None,
            counts,
        })
    };
    if check.table_violation {
        if on_failure == OnFailure::Warn {
            tracing::warn!(step = %step, rule = %check.rule, "validation failed (warn only)");
            return ok(df);
        }
        return Err(StepError::user(format!("step \"{step}\": validation {} failed", check.rule))
            .with_hint("table rules (schema, row_count, freshness) fail the step unless \"on_failure\" is \"warn\""));
    }
    if failed == 0 {
        return ok(df);
    }
    let invalid = df
        .filter(&!&mask)
        .map_err(|e| crate::errors::polars_error(e, "selecting invalid rows"))?;
    let valid = |df: DataFrame| {
        df.filter(&mask)
            .map_err(|e| crate::errors::polars_error(e, "dropping invalid rows"))
    };
    if on_failure == OnFailure::Quarantine {
        let mut bad = invalid;
        let reason = Column::new_scalar(
            REASON_COLUMN.into(),
            Scalar::from(PlSmallStr::from(check.rule.as_str())),
            bad.height(),
        );
        bad.with_column(reason)
            .map_err(|e| crate::errors::polars_error(e, "adding the quarantine reason"))?;
        if bad.schema().get(SEQ).is_some() {
            bad.drop_in_place(SEQ)
                .map_err(|e| crate::errors::polars_error(e, "quarantine"))?;
        }
        return Ok(Judged {
            out: valid(df)?,
            bad: Some(bad),
            counts,
        });
    }
    let samples = sample_rows(
        &invalid.drop(SEQ).unwrap_or(invalid),
        5,
        pipeline_config::is_sensitive_key,
    )?;
    match on_failure {
        OnFailure::Fail => Err(StepError::user(format!(
            "step \"{step}\": validation {} failed for {failed} of {} rows; first failing rows:\n  {}",
            check.rule,
            df.height(),
            samples.join("\n  ")
        ))
        .with_hint("fix the data, or set \"on_failure\": \"filter\" or \"warn\" on this step")),
        OnFailure::Filter => {
            tracing::debug!(step = %step, rule = %check.rule, dropped = failed, "validation dropped invalid rows");
            ok(valid(df)?)
        }
        OnFailure::Warn => {
            tracing::warn!(step = %step, rule = %check.rule, failed, sample = %samples.join("; "), "validation found invalid rows");
            ok(df)
        }
        OnFailure::Quarantine => Err(StepError::internal("quarantine handled above")),
    }
}

impl Validate {
    /// Hands the invalid rows kept so far to the quarantine dataset.
    fn push_quarantine(&mut self, cx: &RunContext) -> Result<(), StepError> {
        if let Some(name) = &self.setup.quarantine {
            for bad in self.quarantined.drain(..) {
                cx.store(name, Batch::Frame(bad))?;
            }
            cx.declare(name);
        }
        Ok(())
    }

    /// The rule, made ready on first use.
    async fn rule(&mut self, cx: &RunContext) -> Result<RowCheck, StepError> {
        if let Some(check) = &self.check {
            return Ok(check.clone());
        }
        let side = self.setup.side_datasets(cx)?;
        let prepare = self.prepare.clone();
        let check = blocking(move || prepare(&side))
            .await
            .map_err(with_step(&self.setup.step))?;
        self.check = Some(check.clone());
        Ok(check)
    }

    fn add(&mut self, judged: Judged) -> DataFrame {
        for (total, n) in self.counts.iter_mut().zip(judged.counts) {
            *total = total.saturating_add(n);
        }
        if let Some(bad) = judged.bad {
            self.quarantined.push(bad);
        }
        judged.out
    }

    async fn apply(&mut self, df: DataFrame, cx: &RunContext) -> Result<DataFrame, StepError> {
        let step = self.setup.step.clone();
        let rule = self.rule(cx).await?;
        let on_failure = self.setup.on_failure;
        let judged = blocking(move || {
            let check = rule(&df)?;
            judge(check, df, on_failure, &step)
        })
        .await
        .map_err(with_step(&self.setup.step))?;
        Ok(self.add(judged))
    }

    /// Judges a partitioned input: whole, or partition by partition then merged from disk.
    async fn apply_partitioned(
        &mut self,
        held: Partitioned,
        cx: &RunContext,
    ) -> Result<Vec<Batch>, StepError> {
        let step = self.setup.step.clone();
        let rule = self.rule(cx).await?;
        let on_failure = self.setup.on_failure;
        let (finished, spilled, parts) = blocking(move || {
            let mut parts = Vec::new();
            let (finished, spilled) = held.finish(&mut |df| {
                let Judged { out, bad, counts } = judge(rule(&df)?, df, on_failure, &step)?;
                parts.push(Judged {
                    out: DataFrame::empty(),
                    bad,
                    counts,
                });
                Ok(out)
            })?;
            Ok((finished, spilled, parts))
        })
        .await
        .map_err(with_step(&self.setup.step))?;
        self.spilled_bytes = spilled;
        for judged in parts {
            self.add(judged);
        }
        match finished {
            Finished::Whole(df) => Ok(vec![Batch::Frame(df)]),
            Finished::Merged(merge, dir) => {
                self.merging = Some((merge, dir));
                Ok(Vec::new())
            }
        }
    }
}

#[async_trait]
impl Operator for Validate {
    async fn push(&mut self, batch: Batch, cx: &RunContext) -> Result<Vec<Batch>, StepError> {
        if let Some(mut held) = self.partitioned.take() {
            let df = batch.into_frame()?;
            let held = blocking(move || held.push_frame(df).map(|()| held)).await?;
            self.partitioned = Some(held);
            return Ok(Vec::new());
        }
        if self.gather {
            gather(&mut self.gathered, batch, &self.setup.step)?;
            return Ok(Vec::new());
        }
        let out = self.apply(batch.into_frame()?, cx).await?;
        // Invalid rows go to their dataset as they come (it may spill to disk).
        self.push_quarantine(cx)?;
        Ok(vec![Batch::Frame(out)])
    }

    async fn finish(&mut self, cx: &RunContext) -> Result<Vec<Batch>, StepError> {
        let out = if let Some(held) = self.partitioned.take() {
            self.apply_partitioned(held, cx).await?
        } else if self.gather {
            let mut input = self.gathered.take().unwrap_or_default();
            input.rechunk_mut();
            vec![Batch::Frame(self.apply(input, cx).await?)]
        } else {
            Vec::new()
        };
        let [checked, _, failed] = self.counts;
        if let Some(max) = self.setup.max_invalid_fraction
            && checked > 0
            && failed as f64 / checked as f64 > max
        {
            return Err(StepError::user(format!(
                "step \"{}\": {failed} of {checked} rows ({:.2}%) are invalid, above max_invalid_fraction {max}",
                self.setup.step,
                100.0 * failed as f64 / checked as f64
            ))
            .with_hint("fix the data, or raise max_invalid_fraction"));
        }
        self.push_quarantine(cx)?;
        Ok(out)
    }

    async fn drain(&mut self, _cx: &RunContext) -> Result<Option<Vec<Batch>>, StepError> {
        drain_merge(&mut self.merging, &self.setup.step).await
    }

    fn metrics(&self) -> Metrics {
        let mut metrics = vec![
            ("checked", self.counts[0]),
            ("passed", self.counts[1]),
            ("failed", self.counts[2]),
        ];
        if self.spilled_bytes > 0 {
            metrics.push(("spilled_bytes", self.spilled_bytes));
        }
        metrics
    }
}
