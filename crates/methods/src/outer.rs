//! Right and full `join`s without holding the main input: the other input is indexed once and
//! one bit per row of it records whether it matched. Each batch of the main input gives its
//! matched rows (a full join also its unmatched ones, beside nulls) as it comes; when the main
//! input ends, the other input's rows that never matched follow, beside nulls. Memory is the
//! other input, its index and its bits, whatever the size of the main input.
//!
//! The columns, their names and types are those of the in-memory Polars join (learnt from the
//! join of both inputs' empty frames), so the rows are the same; their order is the main
//! input's, then the other input's unmatched rows in their order (Polars does not define one).

use crate::UserMethods;
use crate::combine::{JoinHow, JoinOptions};
use crate::helpers::require_columns;
use crate::keys::KeyIndex;
use crate::payload::Payload;
use crate::streamed::pairs;
use pipeline_base::StepError;
use pipeline_data::polars::prelude::*;
use pipeline_data::{Datasets, Incremental, PolarsResultExt};
use std::sync::Arc;

/// Where an output column comes from.
enum Source {
    /// The main input's column of that name.
    Main(PlSmallStr),
    /// The other input's column of that name.
    Other(PlSmallStr),
    /// A merged key: the main input's value where the row has one, else the other input's.
    Key { main: PlSmallStr, other: PlSmallStr },
}

struct Layout {
    columns: Vec<(PlSmallStr, DataType, Source)>,
    /// The main input's columns the layout was learnt from.
    main: SchemaRef,
}

pub(crate) struct OuterJoin {
    options: JoinOptions,
    name: String,
    /// The other input's columns, without rows.
    right: DataFrame,
    /// The other input's rows (text with few values dictionary-encoded).
    rows: Payload,
    index: Arc<KeyIndex>,
    /// The other input's rows matched so far.
    matched: Vec<bool>,
    layout: Option<Layout>,
}

impl OuterJoin {
    pub(crate) fn new(
        options: JoinOptions,
        name: String,
        right: DataFrame,
        index: Arc<KeyIndex>,
    ) -> Self {
        OuterJoin {
            matched: vec![false; right.height()],
            options,
            name,
            rows: Payload::new(&right),
            right: right.clear(),
            index,
            layout: None,
        }
    }

    /// The output columns and their sources, from Polars' join of the empty frames.
    fn learn(&self, main: &DataFrame) -> Result<Layout, StepError> {
        let side = Datasets::from([(self.name.clone(), self.right.clear())]);
        let template = UserMethods::join(main.clear(), &self.options, &side)?;
        let (l, r) = self.options.keys();
        let names = template.schema();
        let (main_schema, right_schema) = (main.schema(), self.right.schema());
        let mut columns = Vec::with_capacity(template.width());
        for (name, dtype) in names.iter() {
            let key = l.iter().zip(&r).find(|(lk, rk)| {
                (lk.as_str() == name.as_str() || rk.as_str() == name.as_str())
                    && !(lk != rk && names.contains(lk) && names.contains(rk))
            });
            let source = if let Some((lk, rk)) = key {
                Source::Key {
                    main: lk.as_str().into(),
                    other: rk.as_str().into(),
                }
            } else if main_schema.contains(name) {
                Source::Main(name.clone())
            } else if right_schema.contains(name) {
                Source::Other(name.clone())
            } else if let Some(stripped) = name
                .strip_suffix(self.options.suffix.as_str())
                .filter(|s| right_schema.contains(s))
            {
                Source::Other(stripped.into())
            } else {
                return Err(StepError::internal(format!(
                    "join: cannot tell where the output column {name} comes from"
                )));
            };
            columns.push((name.clone(), dtype.clone(), source));
        }
        Ok(Layout {
            columns,
            main: main.schema().clone(),
        })
    }

    /// The output rows: `left` (the main input's rows, or `None` for nulls) beside `right`
    /// (the other input's rows).
    fn assemble(
        &self,
        main: Option<&DataFrame>,
        right: &DataFrame,
        height: usize,
    ) -> Result<DataFrame, StepError> {
        let layout = self
            .layout
            .as_ref()
            .ok_or_else(|| StepError::internal("join layout missing"))?;
        let main_column = |name: &PlSmallStr, dtype: &DataType| match main {
            Some(m) => m.column(name).cloned().step_err("join"),
            None => Ok(Column::full_null(name.clone(), height, dtype)),
        };
        let mut out = Vec::with_capacity(layout.columns.len());
        for (name, dtype, source) in &layout.columns {
            let c = match source {
                Source::Main(n) => main_column(n, dtype)?,
                Source::Other(n) => right.column(n).step_err("join")?.clone(),
                Source::Key { main: m, other } => match main {
                    Some(_) if self.options.how == JoinHow::Full => main_column(m, dtype)?,
                    _ => right.column(other).step_err("join")?.clone(),
                },
            };
            let c = c.with_name(name.clone());
            out.push(if c.dtype() == dtype {
                c
            } else {
                c.cast(dtype).step_err("join")?
            });
        }
        DataFrame::new(height, out).step_err("join")
    }
}

impl Incremental for OuterJoin {
    fn push(&mut self, df: DataFrame) -> Result<Option<DataFrame>, StepError> {
        let (l, r) = self.options.keys();
        require_columns(&df, &l, "join (main input)")?;
        match &self.layout {
            None => self.layout = Some(self.learn(&df)?),
            Some(layout) if layout.main.as_ref() != df.schema().as_ref() => {
                return Err(StepError::user(format!(
                    "join: a batch of the main input has the columns {:?}, the first one had {:?}",
                    df.schema().iter_names().collect::<Vec<_>>(),
                    layout.main.iter_names().collect::<Vec<_>>()
                ))
                .with_hint("the batches of one input need the same columns and types"));
            }
            Some(_) => {}
        }
        let matches = self.index.first_matches(&df, &l, &r, "join")?;
        let full = self.options.how == JoinHow::Full;
        let matched = &mut self.matched;
        let (left_idx, right_idx) = pairs(&self.index, &matches, full, |row| {
            if let Some(m) = matched.get_mut(row as usize) {
                *m = true;
            }
        })?;
        let left = df.take(&left_idx).step_err("join")?;
        let right = self.rows.take(&right_idx)?;
        self.assemble(Some(&left), &right, left_idx.len()).map(Some)
    }

    fn finish(&mut self) -> Result<Option<DataFrame>, StepError> {
        if self.layout.is_none() {
            return Ok(None);
        }
        let unmatched: Vec<IdxSize> = (0..self.matched.len())
            .filter(|i| self.matched.get(*i) == Some(&false))
            .filter_map(|i| IdxSize::try_from(i).ok())
            .collect();
        if unmatched.is_empty() {
            return Ok(None);
        }
        let height = unmatched.len();
        let right = self.rows.take(&IdxCa::from_vec("".into(), unmatched))?;
        self.assemble(None, &right, height).map(Some)
    }
}
