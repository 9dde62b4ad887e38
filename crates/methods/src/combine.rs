//! Transforms that need their whole input (and side inputs): aggregate, join, union, sql, sort,
//! dedupe. The executor gathers their input before calling them.

use crate::UserMethods;
use crate::expr;
use crate::helpers::require_columns;
use indexmap::IndexMap;
use pipeline_base::StepError;
use pipeline_data::method::MethodOptions;
use pipeline_data::polars::prelude::*;
use pipeline_data::polars::sql::SQLContext;
use pipeline_data::{Datasets, OptionsError, PolarsResultExt, Scan, SortSpec};
use schemars::JsonSchema;
use serde::Deserialize;

/// Options of `aggregate`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AggregateOptions {
    /// Grouping columns (empty: one row for the whole input).
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Output column → SQL aggregate, e.g. `{"revenue": "sum(amount)", "orders": "count(*)"}`.
    pub aggregations: IndexMap<String, String>,
}
impl MethodOptions for AggregateOptions {
    fn check(&self) -> Result<(), OptionsError> {
        if self.aggregations.is_empty() {
            return Err(OptionsError::new("/aggregations", "no aggregation given"));
        }
        for (name, e) in &self.aggregations {
            let _ = expr::parse(e, &pipeline_config::join_pointer("/aggregations", name))?;
        }
        Ok(())
    }
}

/// How to join.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum JoinHow {
    Inner,
    Left,
    Right,
    Full,
    /// Keep main rows that have a match (main columns only).
    Semi,
    /// Keep main rows that have no match (main columns only).
    Anti,
}

/// Options of `join`: the main input joined with the second entry of `inputs`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinOptions {
    /// Key columns with the same name on both sides.
    #[serde(default)]
    pub on: Vec<String>,
    /// Key columns of the main input (with `right_on`, when names differ).
    #[serde(default)]
    pub left_on: Vec<String>,
    /// Key columns of the other input.
    #[serde(default)]
    pub right_on: Vec<String>,
    /// `inner` (default), `left`, `right`, `full`, `semi` or `anti`.
    #[serde(default = "inner")]
    pub how: JoinHow,
    /// Suffix for clashing non-key columns of the other input.
    #[serde(default = "right_suffix")]
    pub suffix: String,
}
fn inner() -> JoinHow {
    JoinHow::Inner
}
fn right_suffix() -> String {
    "_right".into()
}
impl JoinOptions {
    /// Polars' join arguments for these options (the Spark engine learns the output layout
    /// from the same join).
    pub fn polars_args(&self) -> JoinArgs {
        let how = match self.how {
            JoinHow::Inner => JoinType::Inner,
            JoinHow::Left => JoinType::Left,
            JoinHow::Right => JoinType::Right,
            JoinHow::Full => JoinType::Full,
            JoinHow::Semi => JoinType::Semi,
            JoinHow::Anti => JoinType::Anti,
        };
        let args = JoinArgs::new(how).with_suffix(Some(self.suffix.as_str().into()));
        if self.how == JoinHow::Full {
            args.with_coalesce(JoinCoalesce::CoalesceColumns)
        } else {
            args
        }
    }

    /// The main input's and the other input's key columns.
    pub fn keys(&self) -> (Vec<String>, Vec<String>) {
        if self.on.is_empty() {
            (self.left_on.clone(), self.right_on.clone())
        } else {
            (self.on.clone(), self.on.clone())
        }
    }
}
impl MethodOptions for JoinOptions {
    fn check(&self) -> Result<(), OptionsError> {
        let (l, r) = self.keys();
        if l.is_empty() {
            return Err(OptionsError::new(
                "/on",
                "no join key: give \"on\", or \"left_on\" and \"right_on\"",
            ));
        }
        if l.len() != r.len() {
            return Err(OptionsError::new(
                "/right_on",
                "left_on and right_on need the same number of columns",
            ));
        }
        Ok(())
    }
}

/// Options of `union` (none): the main input followed by every other input, matched by column name.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnionOptions {}
impl MethodOptions for UnionOptions {}

/// Options of `sql`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlOptions {
    /// A Polars SQL query; each input is a table named after its step, and the main input is
    /// also `self`. Example: `SELECT c.country, sum(o.amount) AS revenue FROM orders o JOIN customers c USING (customer_id) GROUP BY 1`.
    pub query: String,
}
impl MethodOptions for SqlOptions {
    fn check(&self) -> Result<(), OptionsError> {
        if self.query.trim().is_empty() {
            Err(OptionsError::new("/query", "the query is empty"))
        } else {
            Ok(())
        }
    }
}

/// Options of `sort`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SortOptions {
    /// Columns to sort by, in order.
    pub by: Vec<String>,
    /// Descending order (one flag for all columns, or one per column).
    #[serde(default)]
    pub descending: OneOrMany,
    /// Put nulls last instead of first.
    #[serde(default)]
    pub nulls_last: bool,
}
impl MethodOptions for SortOptions {}

/// Collects a query; on the streaming engine, a query it does not implement yet (it panics
/// with "not yet implemented") runs on the in-memory engine instead.
fn collect(lf: LazyFrame, engine: Engine) -> PolarsResult<DataFrame> {
    if engine != Engine::Streaming {
        return lf.collect();
    }
    let fallback = lf.clone();
    // (A query has one result: `unwrap_single` cannot panic here, and would fall back.)
    let streamed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        lf.collect_with_engine(Engine::Streaming)
            .map(|result| result.unwrap_single())
    }));
    match streamed {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(
                "the query is not supported by Polars' streaming engine: running it in memory"
            );
            fallback.collect()
        }
    }
}

/// The order `sort` gives (the same past the memory limit, see `transform_sorted`).
pub(crate) fn sort_spec(o: &SortOptions) -> Result<SortSpec, StepError> {
    let descending = match &o.descending {
        OneOrMany::One(d) => vec![*d; o.by.len()],
        OneOrMany::Many(v) if v.len() == o.by.len() => v.clone(),
        OneOrMany::Many(_) => {
            return Err(StepError::user(
                "sort: \"descending\" needs one flag per \"by\" column",
            ));
        }
    };
    Ok(SortSpec {
        by: o.by.clone(),
        descending,
        nulls_last: o.nulls_last,
    })
}

/// A flag for all columns or one per column.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(bool),
    Many(Vec<bool>),
}
impl Default for OneOrMany {
    fn default() -> Self {
        OneOrMany::One(false)
    }
}

/// Which duplicate `dedupe` keeps.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    First,
    Last,
}

/// Options of `dedupe`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DedupeOptions {
    /// Key columns; rows with equal keys are duplicates.
    pub keys: Vec<String>,
    /// Keep the `first` (default) or `last` row of each key, by `order_by` when given, else by
    /// input order.
    #[serde(default = "first")]
    pub keep: Keep,
    /// Column that orders duplicates (e.g. an update timestamp).
    #[serde(default)]
    pub order_by: Option<String>,
}
fn first() -> Keep {
    Keep::First
}
impl MethodOptions for DedupeOptions {}

/// The order of `dedupe`'s output: by `order_by` (ascending, nulls first), then arrival.
pub(crate) fn dedupe_order(o: &DedupeOptions) -> SortSpec {
    let by: Vec<String> = o.order_by.iter().cloned().collect();
    SortSpec {
        descending: vec![false; by.len()],
        by,
        nulls_last: false,
    }
}

/// The only side input, or an error.
pub(crate) fn other<'a>(side: &'a Datasets, method: &str) -> Result<&'a DataFrame, StepError> {
    match side.values().collect::<Vec<_>>().as_slice() {
        [one] => Ok(one),
        _ => Err(
            StepError::user(format!("{method} needs exactly one other input"))
                .with_hint("set \"inputs\": [main, other]"),
        ),
    }
}

/// Stacks frames by column name; a column missing from a frame is null there.
pub(crate) fn union_by_name(frames: Vec<DataFrame>) -> Result<DataFrame, StepError> {
    let mut schema = Schema::default();
    for f in &frames {
        for (name, dtype) in f.schema().iter() {
            match schema.get(name) {
                None => {
                    schema.with_column(name.clone(), dtype.clone());
                }
                Some(existing) if existing != dtype && existing != &DataType::Null => {
                    if dtype != &DataType::Null {
                        return Err(StepError::user(format!("union: column \"{name}\" is {existing} in one input and {dtype} in another"))
                            .with_hint("cast the column to one type first"));
                    }
                }
                Some(_) => {
                    schema.with_column(name.clone(), dtype.clone());
                }
            }
        }
    }
    let mut out: Option<DataFrame> = None;
    for f in frames {
        // An input without rows adds only its columns: selecting literal nulls from a frame
        // without columns would make a row of nulls.
        if f.height() == 0 {
            continue;
        }
        let columns: Vec<Expr> = schema
            .iter()
            .map(|(name, dtype)| {
                if f.schema().contains(name) {
                    col(name.clone()).cast(dtype.clone())
                } else {
                    lit(NULL).cast(dtype.clone()).alias(name.clone())
                }
            })
            .collect();
        let aligned = f.lazy().select(columns).collect().step_err("union")?;
        match &mut out {
            None => out = Some(aligned),
            Some(acc) => {
                acc.vstack_mut_owned(aligned).step_err("union")?;
            }
        }
    }
    Ok(out.unwrap_or_else(|| DataFrame::empty_with_schema(&schema)))
}

/// The options' aggregations, each under its output name.
pub(crate) fn aggregations(o: &AggregateOptions) -> Result<Vec<Expr>, StepError> {
    let mut aggs = Vec::with_capacity(o.aggregations.len().saturating_add(1));
    for (name, e) in &o.aggregations {
        aggs.push(
            expr::parse(e, "/aggregations")
                .map_err(|err| StepError::user(err.message))?
                .alias(name.as_str()),
        );
    }
    Ok(aggs)
}

/// Aggregates `df` with `exprs` per group of `o.group_by` (in the order groups first appear),
/// or over all rows without `group_by`.
pub(crate) fn group(
    df: DataFrame,
    o: &AggregateOptions,
    exprs: Vec<Expr>,
) -> Result<DataFrame, StepError> {
    let keys: Vec<Expr> = o.group_by.iter().map(|c| col(c.as_str())).collect();
    let lf = if keys.is_empty() {
        df.clone().lazy().select(exprs)
    } else {
        df.clone().lazy().group_by_stable(keys).agg(exprs)
    };
    let text = o
        .aggregations
        .values()
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    lf.collect()
        .map_err(|e| expr::eval_error(e, "aggregations", &text, &df))
}

impl UserMethods {
    /// Group-by aggregation with SQL aggregate expressions.
    pub fn aggregate(
        df: DataFrame,
        o: &AggregateOptions,
        _: &Datasets,
    ) -> Result<DataFrame, StepError> {
        require_columns(&df, &o.group_by, "aggregate")?;
        group(df, o, aggregations(o)?)
    }

    /// Joins the main input with the other input.
    pub fn join(df: DataFrame, o: &JoinOptions, side: &Datasets) -> Result<DataFrame, StepError> {
        let right = other(side, "join")?.clone();
        let (l, r) = o.keys();
        require_columns(&df, &l, "join (main input)")?;
        require_columns(&right, &r, "join (other input)")?;
        let args = o.polars_args();
        let lk: Vec<Expr> = l.iter().map(|c| col(c.as_str())).collect();
        let rk: Vec<Expr> = r.iter().map(|c| col(c.as_str())).collect();
        df.lazy()
            .join(right.lazy(), lk, rk, args)
            .collect()
            .step_err("join")
    }

    /// The main input followed by every other input, by column name.
    pub fn union(df: DataFrame, _: &UnionOptions, side: &Datasets) -> Result<DataFrame, StepError> {
        let mut frames = vec![df];
        frames.extend(side.values().cloned());
        union_by_name(frames)
    }

    /// A Polars SQL query over the inputs.
    pub fn sql(df: DataFrame, o: &SqlOptions, side: &Datasets) -> Result<DataFrame, StepError> {
        let scan = Scan {
            frame: df.lazy(),
            engine: Engine::InMemory,
        };
        UserMethods::sql_scan(scan, o, side)
    }

    /// `sql` over its input as a lazy frame, collected with the engine given (Polars'
    /// streaming engine for an input scanned from disk).
    pub fn sql_scan(scan: Scan, o: &SqlOptions, side: &Datasets) -> Result<DataFrame, StepError> {
        let mut ctx = SQLContext::new();
        ctx.register("self", scan.frame);
        for (name, frame) in side {
            ctx.register(name, frame.clone().lazy());
        }
        let tables: Vec<String> = std::iter::once("self".to_string())
            .chain(side.keys().cloned())
            .collect();
        ctx.execute(&o.query)
            .and_then(|lf| collect(lf, scan.engine))
            .map_err(|e| {
                let base = pipeline_data::polars_error(e, &format!("sql \"{}\"", o.query));
                StepError::user(format!("{}; tables: {}", base.message(), tables.join(", ")))
            })
    }

    /// Sorts by columns.
    pub fn sort(df: DataFrame, o: &SortOptions, _: &Datasets) -> Result<DataFrame, StepError> {
        require_columns(&df, &o.by, "sort")?;
        let spec = sort_spec(o)?;
        let options = SortMultipleOptions::default()
            .with_order_descending_multi(spec.descending)
            .with_nulls_last(o.nulls_last)
            .with_maintain_order(true);
        df.sort(o.by.iter().map(String::as_str).collect::<Vec<_>>(), options)
            .step_err("sort")
    }

    /// Keeps one row per key.
    pub fn dedupe(df: DataFrame, o: &DedupeOptions, _: &Datasets) -> Result<DataFrame, StepError> {
        require_columns(&df, &o.keys, "dedupe")?;
        let df = match &o.order_by {
            Some(c) => {
                require_columns(&df, std::iter::once(c), "dedupe order_by")?;
                df.sort(
                    [c.as_str()],
                    SortMultipleOptions::default()
                        .with_maintain_order(true)
                        .with_nulls_last(false),
                )
                .step_err("dedupe")?
            }
            None => df,
        };
        let keep = match o.keep {
            Keep::First => UniqueKeepStrategy::First,
            Keep::Last => UniqueKeepStrategy::Last,
        };
        df.unique_stable(Some(&o.keys), keep, None)
            .step_err("dedupe")
    }
}

#[cfg(test)]
#[path = "combine_tests.rs"]
mod tests;
