//! Joins on Spark with Polars' output layout: which columns come out, in which order, under
//! which names (keys coalesced, clashing names suffixed) is learnt from Polars' own join of
//! empty frames with the same column names, then written as one Spark SQL SELECT.

use crate::check::Refusal;
use crate::compile::At;
use crate::expr::ident;
use pipeline_base::StepError;
use pipeline_data::polars::prelude::*;
use pipeline_methods::{JoinHow, JoinOptions};

pub struct JoinSpec {
    pub left: String,
    pub right: String,
    pub left_on: Vec<String>,
    pub right_on: Vec<String>,
    pub how: JoinHow,
    pub suffix: String,
    options: JoinOptions,
}

impl JoinSpec {
    pub fn compile(at: &At<'_>) -> Result<JoinSpec, Refusal> {
        let o: JoinOptions = at.options()?;
        let (left_on, right_on) = o.keys();
        Ok(JoinSpec {
            left: at.input(0)?,
            right: at.input(1)?,
            left_on,
            right_on,
            how: o.how,
            suffix: o.suffix.clone(),
            options: o,
        })
    }

    /// The Spark SQL query, given both inputs' column names.
    pub fn query(&self, left: &[String], right: &[String]) -> Result<String, StepError> {
        let layout = polars_layout(self, left, right)?;
        let (l, r) = ("`__pipectl_l`", "`__pipectl_r`");
        let mut items = Vec::new();
        for name in &layout {
            let source = if let Some(i) = self.left_on.iter().position(|k| k == name) {
                let (lk, rk) = (
                    ident(name),
                    self.right_on.get(i).map(|k| ident(k)).unwrap_or_default(),
                );
                match self.how {
                    JoinHow::Right => format!("{r}.{rk}"),
                    JoinHow::Full => format!("coalesce({l}.{lk}, {r}.{rk})"),
                    _ => format!("{l}.{lk}"),
                }
            } else if left.contains(name) {
                format!("{l}.{}", ident(name))
            } else if right.contains(name) {
                format!("{r}.{}", ident(name))
            } else if let Some(base) = name.strip_suffix(self.suffix.as_str())
                && right.iter().any(|c| c == base)
            {
                format!("{r}.{}", ident(base))
            } else {
                return Err(StepError::internal(format!(
                    "the join's output column \"{name}\" comes from neither input"
                )));
            };
            items.push(format!("{source} AS {}", ident(name)));
        }
        let kind = match self.how {
            JoinHow::Inner => "INNER JOIN",
            JoinHow::Left => "LEFT OUTER JOIN",
            JoinHow::Right => "RIGHT OUTER JOIN",
            JoinHow::Full => "FULL OUTER JOIN",
            JoinHow::Semi => "LEFT SEMI JOIN",
            JoinHow::Anti => "LEFT ANTI JOIN",
        };
        let on: Vec<String> = self
            .left_on
            .iter()
            .zip(&self.right_on)
            .map(|(a, b)| format!("{l}.{} = {r}.{}", ident(a), ident(b)))
            .collect();
        Ok(format!(
            "SELECT {} FROM {} AS {l} {kind} {} AS {r} ON {}",
            items.join(", "),
            ident(&self.left),
            ident(&self.right),
            on.join(" AND ")
        ))
    }
}

/// Polars' output column names for this join of frames with these columns (what pipectl's
/// join method produces).
fn polars_layout(
    spec: &JoinSpec,
    left: &[String],
    right: &[String],
) -> Result<Vec<String>, StepError> {
    let empty = |names: &[String]| {
        DataFrame::new(
            0,
            names
                .iter()
                .map(|n| Column::new_empty(n.as_str().into(), &DataType::Int64))
                .collect(),
        )
        .map_err(|e| StepError::internal(format!("an empty frame for the join layout: {e}")))
    };
    let args = spec.options.polars_args();
    let lk: Vec<Expr> = spec.left_on.iter().map(|c| col(c.as_str())).collect();
    let rk: Vec<Expr> = spec.right_on.iter().map(|c| col(c.as_str())).collect();
    let out = empty(left)?
        .lazy()
        .join(empty(right)?.lazy(), lk, rk, args)
        .collect()
        .map_err(|e| StepError::user(format!("joining {} with {}: {e}", spec.left, spec.right)))?;
    Ok(out
        .get_column_names()
        .into_iter()
        .map(|n| n.to_string())
        .collect())
}
