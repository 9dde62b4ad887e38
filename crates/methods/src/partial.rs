//! `aggregate` without its whole input: each batch is reduced to one partial row per group
//! (sums, counts, minimums, maximums, first and last values), the partial rows are merged as
//! they pile up, and the aggregation expressions are evaluated over the merged partials at the
//! end. Memory is bounded by the number of groups, not by the rows.
//!
//! An expression decomposes when every input column sits inside `sum`, `count`, `count(*)`,
//! `null_count`,
//! `min`, `max`, `avg`/`mean` (of a numeric column), `first` or `last`, and no aggregation is
//! nested in another; anything around them (`round(sum(amount), 2)`, `sum(a) / count(*)`)
//! is evaluated per group exactly as in memory, because the final step is the same expression
//! with each aggregation replaced by its merge. Other aggregations (`median`, `count(DISTINCT
//! ..)`, `stddev`, window functions) need every row of a group at once: with `group_by` the input
//! is held by key (`ByKey`), which past `memory_limit_mb` goes to disk partitioned by a hash of
//! the group keys; each partition is then aggregated alone, and the groups are put back in the
//! order they first appeared (their smallest arrival number), as in memory. Without `group_by`
//! such an aggregation holds the columns it reads. Integer sums, counts, minimums and maximums
//! are exact; floating-point sums may differ from the in-memory result in the last bits, as
//! the additions happen in another order.

use crate::UserMethods;
use crate::combine::AggregateOptions;
use crate::expr;
use crate::helpers::require_columns;
use pipeline_base::StepError;
use pipeline_data::polars::prelude::*;
use pipeline_data::{ARRIVAL, ByKey, Datasets, Gathers, Incremental, PolarsResultExt, StepSetup};

const PREFIX: &str = "__pipectl_partial_";

/// Partial rows merged once this many batches' partials have piled up.
const MERGE_EVERY: usize = 16;

/// How an aggregation decomposes.
#[derive(Clone)]
struct Decomposed {
    /// Per batch: partial columns, as aggregations of the input.
    partial: Vec<Expr>,
    /// Merging partial rows: each partial column aggregated again under its own name.
    merge: Vec<Expr>,
    /// The output columns over merged partials (same names as the options).
    finals: Vec<Expr>,
    /// Inputs of `mean`, which must be numeric.
    mean_inputs: Vec<Expr>,
}

fn not_decomposable() -> PolarsError {
    PolarsError::ComputeError("not decomposable".into())
}

fn uses_partial(e: &Expr) -> bool {
    e.into_iter()
        .any(|n| matches!(n, Expr::Column(c) if c.starts_with(PREFIX)))
}

fn reads_a_column(e: &Expr) -> bool {
    e.into_iter().any(|n| matches!(n, Expr::Column(_)))
}

/// Splits the options' aggregations, or `None` when one does not decompose.
fn decompose(o: &AggregateOptions) -> Option<Decomposed> {
    let mut d = Decomposed {
        partial: Vec::new(),
        merge: Vec::new(),
        finals: Vec::new(),
        mean_inputs: Vec::new(),
    };
    for (name, text) in &o.aggregations {
        let parsed = expr::parse(text, "/aggregations").ok()?;
        let rewritten = parsed.try_map_expr(|e| rewrite(e, &mut d)).ok()?;
        // Every input column must now be inside a merged aggregation.
        let raw = (&rewritten).into_iter().any(|n| match n {
            Expr::Column(c) => !c.starts_with(PREFIX),
            Expr::Over { .. } | Expr::Selector(_) | Expr::Element | Expr::Len => true,
            _ => false,
        });
        if raw {
            return None;
        }
        d.finals.push(rewritten.alias(name.as_str()));
    }
    Some(d)
}

/// How partial values of one aggregation merge.
#[derive(Clone, Copy)]
enum Merge {
    Sum,
    First,
    Last,
    Min { propagate_nans: bool },
    Max { propagate_nans: bool },
}

impl Merge {
    fn apply(self, c: Expr) -> Expr {
        let input = std::sync::Arc::new(c);
        Expr::Agg(match self {
            Merge::Sum => AggExpr::Sum(input),
            Merge::First => AggExpr::First(input),
            Merge::Last => AggExpr::Last(input),
            Merge::Min { propagate_nans } => AggExpr::Min {
                input,
                propagate_nans,
            },
            Merge::Max { propagate_nans } => AggExpr::Max {
                input,
                propagate_nans,
            },
        })
    }
}

/// Adds a partial column; the merge of it stands in the final expression.
fn add(d: &mut Decomposed, partial: Expr, merge: Merge) -> Expr {
    let name = format!("{PREFIX}{}", d.partial.len());
    d.partial.push(partial.alias(name.as_str()));
    d.merge
        .push(merge.apply(col(name.as_str())).alias(name.as_str()));
    merge.apply(col(name.as_str()))
}

/// Replaces one aggregation by the merge of its partial column(s).
fn rewrite(e: Expr, d: &mut Decomposed) -> PolarsResult<Expr> {
    match e {
        Expr::Len => Ok(add(d, Expr::Len, Merge::Sum)),
        // SQL's `sum` is null for a group without values: `null_count() < len()` guards it.
        Expr::Function {
            input,
            function: FunctionExpr::NullCount,
        } => {
            if input.iter().any(uses_partial) || !input.iter().any(reads_a_column) {
                return Err(not_decomposable());
            }
            let e = Expr::Function {
                input,
                function: FunctionExpr::NullCount,
            };
            Ok(add(d, e, Merge::Sum))
        }
        Expr::Agg(agg) => {
            let input = match &agg {
                AggExpr::Sum(i) | AggExpr::First(i) | AggExpr::Last(i) | AggExpr::Mean(i) => i,
                AggExpr::Min { input, .. }
                | AggExpr::Max { input, .. }
                | AggExpr::Count { input, .. } => input,
                _ => return Err(not_decomposable()),
            };
            if uses_partial(input) || !reads_a_column(input) {
                // An aggregation inside another one, or of a constant (`sum(1)` is 1 per group
                // in memory, not one per batch).
                return Err(not_decomposable());
            }
            let input = input.as_ref().clone();
            Ok(match agg {
                AggExpr::Sum(_) => add(d, input.sum(), Merge::Sum),
                AggExpr::Count { .. } => add(d, Expr::Agg(agg), Merge::Sum),
                AggExpr::First(_) => add(d, input.first(), Merge::First),
                AggExpr::Last(_) => add(d, input.last(), Merge::Last),
                AggExpr::Min { propagate_nans, .. } => {
                    add(d, Expr::Agg(agg), Merge::Min { propagate_nans })
                }
                AggExpr::Max { propagate_nans, .. } => {
                    add(d, Expr::Agg(agg), Merge::Max { propagate_nans })
                }
                AggExpr::Mean(_) => {
                    d.mean_inputs.push(input.clone());
                    let total = add(d, input.clone().cast(DataType::Float64).sum(), Merge::Sum);
                    let count = add(d, input.count(), Merge::Sum);
                    when(count.clone().gt(lit(0)))
                        .then(total.true_div(count))
                        .otherwise(lit(NULL).cast(DataType::Float64))
                }
                _ => return Err(not_decomposable()),
            })
        }
        other => Ok(other),
    }
}

/// What `aggregate` holds in memory for these options.
pub(crate) fn aggregate_gathers(o: &AggregateOptions) -> Gathers {
    if decompose(o).is_some() {
        Gathers::Groups
    } else if o.group_by.is_empty() {
        Gathers::Everything
    } else {
        Gathers::Partitioned
    }
}

/// Opens the streamed `aggregate`.
pub(crate) fn open_aggregate(
    o: &AggregateOptions,
    _: &Datasets,
    setup: &StepSetup,
) -> Result<Box<dyn Incremental>, StepError> {
    Ok(Box::new(Aggregate {
        options: o.clone(),
        mode: Mode::Undecided,
        step: setup.step.clone(),
        limit: setup.memory_limit,
        spilled_bytes: 0,
    }))
}

enum Mode {
    /// Before the first batch (`mean` needs the input's types to decide).
    Undecided,
    Partial {
        plan: Decomposed,
        /// The in-memory result's columns and types.
        schema: SchemaRef,
        partials: Vec<DataFrame>,
        /// The input's columns without rows: the partials of an input without any row.
        empty: DataFrame,
    },
    /// Without `group_by`: every row.
    Gathered(Option<DataFrame>),
    /// Every row, by group key (on disk past the memory limit); the input's columns without
    /// rows.
    ByKey(ByKey, DataFrame),
}

struct Aggregate {
    options: AggregateOptions,
    mode: Mode,
    step: String,
    limit: u64,
    spilled_bytes: u64,
}

impl Aggregate {
    /// Aggregates `df` with `exprs` per group (or over all rows without `group_by`).
    fn group(&self, df: DataFrame, exprs: Vec<Expr>) -> Result<DataFrame, StepError> {
        crate::combine::group(df, &self.options, exprs)
    }

    fn decide(&mut self, df: &DataFrame) -> Result<(), StepError> {
        require_columns(df, &self.options.group_by, "aggregate")?;
        let numeric = |e: &Expr| match e {
            Expr::Column(c) => df.schema().get(c).is_some_and(|t| t.is_primitive_numeric()),
            _ => false,
        };
        self.mode = match decompose(&self.options) {
            Some(plan) if plan.mean_inputs.iter().all(numeric) => {
                let template = UserMethods::aggregate(df.clear(), &self.options, &Datasets::new())?;
                Mode::Partial {
                    plan,
                    schema: template.schema().clone(),
                    partials: Vec::new(),
                    empty: df.clear(),
                }
            }
            _ if self.options.group_by.is_empty() => Mode::Gathered(None),
            _ => Mode::ByKey(
                ByKey::new(&self.step, self.options.group_by.clone(), self.limit),
                df.clear(),
            ),
        };
        Ok(())
    }

    /// Merges the partial rows into one frame.
    fn merge(&self, partials: Vec<DataFrame>, plan: &Decomposed) -> Result<DataFrame, StepError> {
        self.group(stack(partials)?, plan.merge.clone())
    }
}

/// The partial frames one under another.
fn stack(partials: Vec<DataFrame>) -> Result<DataFrame, StepError> {
    let mut all: Option<DataFrame> = None;
    for p in partials {
        match &mut all {
            None => all = Some(p),
            Some(a) => {
                a.vstack_mut_owned(p)
                    .step_err("aggregate: merging partials")?;
            }
        }
    }
    Ok(all.unwrap_or_default())
}

impl Incremental for Aggregate {
    fn push(&mut self, df: DataFrame) -> Result<Option<DataFrame>, StepError> {
        if matches!(self.mode, Mode::Undecided) {
            self.decide(&df)?;
        }
        let options = &self.options;
        match &mut self.mode {
            Mode::Partial { plan, partials, .. } => {
                // An empty batch adds nothing (and without `group_by` its `first` would be a
                // null row).
                if df.height() > 0 {
                    partials.push(crate::combine::group(df, options, plan.partial.clone())?);
                }
                if partials.len() >= MERGE_EVERY {
                    let all = std::mem::take(partials);
                    let merged = stack(all)?;
                    partials.push(crate::combine::group(merged, options, plan.merge.clone())?);
                }
            }
            Mode::Gathered(gathered) => match gathered {
                None => *gathered = Some(df),
                Some(all) => {
                    all.vstack_mut_owned(df)
                        .step_err("aggregate: gathering input")?;
                }
            },
            Mode::ByKey(held, _) => held.push(df)?,
            Mode::Undecided => return Err(StepError::internal("aggregate: no mode")),
        }
        Ok(None)
    }

    fn finish(&mut self) -> Result<Option<DataFrame>, StepError> {
        match std::mem::replace(&mut self.mode, Mode::Undecided) {
            Mode::Partial {
                plan,
                schema,
                mut partials,
                empty,
            } => {
                if partials.is_empty() {
                    partials.push(self.group(empty, plan.partial.clone())?);
                }
                let merged = self.merge(partials, &plan)?;
                let out = self.group(merged, plan.finals.clone())?;
                let columns = out
                    .into_columns()
                    .into_iter()
                    .zip(schema.iter())
                    .map(|(c, (name, dtype))| {
                        if c.name() != name {
                            return Err(StepError::internal(format!(
                                "aggregate: column {} where {name} was expected",
                                c.name()
                            )));
                        }
                        if c.dtype() == dtype {
                            Ok(c)
                        } else {
                            c.cast(dtype).step_err("aggregate")
                        }
                    })
                    .collect::<Result<Vec<_>, StepError>>()?;
                let height = columns.first().map(Column::len).unwrap_or_default();
                DataFrame::new(height, columns)
                    .step_err("aggregate")
                    .map(Some)
            }
            Mode::Gathered(all) => {
                let mut all = all.unwrap_or_default();
                all.rechunk_mut();
                UserMethods::aggregate(all, &self.options, &Datasets::new()).map(Some)
            }
            Mode::ByKey(held, empty) => self.finish_by_key(held, empty).map(Some),
            Mode::Undecided => Ok(None),
        }
    }

    fn spilled_bytes(&self) -> u64 {
        self.spilled_bytes
    }
}

impl Aggregate {
    /// The aggregation of an input held by key: in memory at once, or partition by partition
    /// with each group's first arrival, then the groups in that order.
    fn finish_by_key(&mut self, held: ByKey, empty: DataFrame) -> Result<DataFrame, StepError> {
        let options = &self.options;
        let (mut whole, mut parts) = (None, Vec::new());
        let spilled = held.finish(
            &mut |mut all| {
                all.rechunk_mut();
                whole = Some(UserMethods::aggregate(all, options, &Datasets::new())?);
                Ok(())
            },
            &mut |part| {
                parts.push(aggregate_part(part, options)?);
                Ok(())
            },
        )?;
        self.spilled_bytes = spilled;
        if let Some(out) = whole {
            return Ok(out);
        }
        let Some(all) = stack(parts).ok().filter(|d| d.width() > 0) else {
            return UserMethods::aggregate(empty, options, &Datasets::new());
        };
        all.sort([ARRIVAL], SortMultipleOptions::default())
            .and_then(|d| d.drop(ARRIVAL))
            .step_err("aggregate: merging spilled groups")
    }
}

/// One partition's groups, each with its first arrival number.
fn aggregate_part(df: DataFrame, o: &AggregateOptions) -> Result<DataFrame, StepError> {
    require_columns(&df, &o.group_by, "aggregate")?;
    let mut aggs = crate::combine::aggregations(o)?;
    aggs.push(col(ARRIVAL).min().alias(ARRIVAL));
    crate::combine::group(df, o, aggs)
}
