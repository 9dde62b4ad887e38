//! The streamed forms of the methods whose only whole input is a side input: `join` (inner,
//! left, semi, anti; right and full in `outer.rs`), `union` and `referential_integrity`. The side input is indexed once; each
//! batch of the main input is then matched in time and memory proportional to the batch. The
//! results are those of the in-memory methods in `combine.rs` and `checks.rs` (tests compare
//! both); only the row order may differ where the in-memory method does not define one.

use crate::UserMethods;
use crate::combine::{JoinHow, JoinOptions, UnionOptions, other, union_by_name};
use crate::helpers::require_columns;
use crate::keys::KeyIndex;
use crate::payload::Payload;
use pipeline_base::StepError;
use pipeline_data::polars::prelude::*;
use pipeline_data::{Check, Datasets, Gathers, Incremental, PolarsResultExt, StepSetup};
use std::sync::{Arc, Mutex};

/// What `join` holds in memory: the other input (and for right and full joins one bit per
/// row of it).
pub(crate) fn join_gathers(_: &JoinOptions) -> Gathers {
    Gathers::SideInputs
}

/// Opens the streamed `join`.
pub(crate) fn open_join(
    o: &JoinOptions,
    side: &Datasets,
    _: &StepSetup,
) -> Result<Box<dyn Incremental>, StepError> {
    let (name, right) = side
        .iter()
        .next()
        .filter(|_| side.len() == 1)
        .ok_or_else(|| {
            StepError::user("join needs exactly one other input")
                .with_hint("set \"inputs\": [main, other]")
        })?;
    let (_, r) = o.keys();
    require_columns(right, &r, "join (other input)")?;
    let index = KeyIndex::shared(right, &r, "join")?;
    if matches!(o.how, JoinHow::Right | JoinHow::Full) {
        return Ok(Box::new(crate::outer::OuterJoin::new(
            o.clone(),
            name.clone(),
            right.clone(),
            index,
        )));
    }
    Ok(Box::new(StreamedJoin {
        options: o.clone(),
        name: name.clone(),
        right: right.clone(),
        index,
        layout: None,
    }))
}

/// The output's columns, learnt from the in-memory join of the first batch's empty frame.
struct Layout {
    /// Output name and type of each column: the main input's, then the other input's.
    columns: Vec<(PlSmallStr, DataType)>,
    /// The other input's columns that the output carries (without the keys when they merge),
    /// text columns with few values dictionary-encoded.
    payload: Payload,
    /// The main input's columns the layout was learnt from.
    main: SchemaRef,
}

struct StreamedJoin {
    options: JoinOptions,
    name: String,
    right: DataFrame,
    index: Arc<KeyIndex>,
    layout: Option<Layout>,
}

impl StreamedJoin {
    fn layout(&mut self, df: &DataFrame) -> Result<&Layout, StepError> {
        if self.layout.is_none() {
            let side = Datasets::from([(self.name.clone(), self.right.clear())]);
            let template = UserMethods::join(df.clear(), &self.options, &side)?;
            let (_, r) = self.options.keys();
            let (main_width, right_width) = (df.width(), self.right.width());
            let payload = if template.width() == main_width {
                DataFrame::empty()
            } else if template.width().checked_add(r.len()) == main_width.checked_add(right_width) {
                self.right.drop_many(r.iter().map(String::as_str))
            } else if Some(template.width()) == main_width.checked_add(right_width) {
                self.right.clone()
            } else {
                return Err(StepError::internal(format!(
                    "join: unexpected output columns {:?}",
                    template.get_column_names()
                )));
            };
            let columns = template
                .schema()
                .iter()
                .map(|(n, t)| (n.clone(), t.clone()))
                .collect();
            self.layout = Some(Layout {
                columns,
                payload: Payload::new(&payload),
                main: df.schema().clone(),
            });
            // The payload holds what the output needs: the other input's own columns go.
            self.right = self.right.clear();
        }
        let layout = self
            .layout
            .as_ref()
            .ok_or_else(|| StepError::internal("join layout missing"))?;
        if layout.main.as_ref() != df.schema().as_ref() {
            return Err(StepError::user(format!(
                "join: a batch of the main input has the columns {:?}, the first one had {:?}",
                df.schema().iter_names().collect::<Vec<_>>(),
                layout.main.iter_names().collect::<Vec<_>>()
            ))
            .with_hint("the batches of one input need the same columns and types"));
        }
        Ok(layout)
    }
}

impl Incremental for StreamedJoin {
    fn push(&mut self, df: DataFrame) -> Result<Option<DataFrame>, StepError> {
        let (l, r) = self.options.keys();
        require_columns(&df, &l, "join (main input)")?;
        let matches = self.index.first_matches(&df, &l, &r, "join")?;
        let how = self.options.how;
        if matches!(how, JoinHow::Semi | JoinHow::Anti) {
            let keep: BooleanChunked = matches
                .iter()
                .map(|m| m.is_some() == (how == JoinHow::Semi))
                .collect();
            return df.filter(&keep).step_err("join").map(Some);
        }
        let (left_idx, right_idx) = pairs(&self.index, &matches, how == JoinHow::Left, |_| ())?;
        let left = df.take(&left_idx).step_err("join")?;
        let layout = self.layout(&df)?;
        let right = layout.payload.take(&right_idx)?;
        let mut columns = left.into_columns();
        columns.extend(right.into_columns());
        let height = left_idx.len();
        let named = columns
            .into_iter()
            .zip(&layout.columns)
            .map(|(c, (name, dtype))| {
                let c = c.with_name(name.clone());
                if c.dtype() == dtype {
                    Ok(c)
                } else {
                    c.cast(dtype).step_err("join")
                }
            })
            .collect::<Result<Vec<_>, StepError>>()?;
        DataFrame::new(height, named).step_err("join").map(Some)
    }
}

/// The rows of a batch and of the other input that a join puts side by side: each row of the
/// batch with every match in turn, and without a match only when `keep_unmatched` (then
/// beside a null). `matched` sees each row of the other input that matched.
pub(crate) fn pairs(
    index: &KeyIndex,
    matches: &[Option<IdxSize>],
    keep_unmatched: bool,
    mut matched: impl FnMut(IdxSize),
) -> Result<(IdxCa, IdxCa), StepError> {
    let mut left_rows: Vec<IdxSize> = Vec::with_capacity(matches.len());
    let mut right_rows: Vec<Option<IdxSize>> = Vec::with_capacity(matches.len());
    for (i, m) in matches.iter().enumerate() {
        let i =
            IdxSize::try_from(i).map_err(|_| StepError::user("join: a batch has too many rows"))?;
        match m {
            Some(first) => {
                for row in std::iter::once(*first).chain(index.rest(*first)) {
                    left_rows.push(i);
                    right_rows.push(Some(row));
                    matched(row);
                }
            }
            None if keep_unmatched => {
                left_rows.push(i);
                right_rows.push(None);
            }
            None => {}
        }
    }
    Ok((
        IdxCa::from_vec("".into(), left_rows),
        right_rows.into_iter().collect(),
    ))
}

/// Opens the streamed `union`: each batch of the main input is aligned to the union's columns
/// and passed on; the other inputs follow when the main input ends.
pub(crate) fn open_union(
    _: &UnionOptions,
    side: &Datasets,
    _: &StepSetup,
) -> Result<Box<dyn Incremental>, StepError> {
    Ok(Box::new(StreamedUnion {
        side: side.values().cloned().collect(),
        target: None,
    }))
}

struct StreamedUnion {
    side: Vec<DataFrame>,
    /// The union's columns and types, without rows.
    target: Option<DataFrame>,
}

impl Incremental for StreamedUnion {
    fn push(&mut self, df: DataFrame) -> Result<Option<DataFrame>, StepError> {
        let target = match &self.target {
            Some(t) => t.clone(),
            None => {
                let mut frames = vec![df.clear()];
                frames.extend(self.side.iter().map(DataFrame::clear));
                let t = union_by_name(frames)?;
                self.target = Some(t.clone());
                t
            }
        };
        union_by_name(vec![target, df]).map(Some)
    }

    fn finish(&mut self) -> Result<Option<DataFrame>, StepError> {
        let Some(target) = self.target.clone() else {
            return Ok(None);
        };
        let mut frames = vec![target];
        frames.append(&mut self.side);
        union_by_name(frames).map(Some)
    }
}

/// The referenced dataset of `referential_integrity`, indexed on first use (the index's key
/// type is the main input's column type); the referenced column goes once indexed.
pub struct Reference {
    name: String,
    state: Mutex<Referenced>,
}

enum Referenced {
    Column(DataFrame),
    Indexed(DataType, Arc<KeyIndex>),
}

impl UserMethods {
    /// Makes the referenced dataset ready for `referential_integrity` (once per run).
    pub fn reference(
        o: &crate::ReferentialIntegrityOptions,
        side: &Datasets,
    ) -> Result<Reference, StepError> {
        let (name, frame) = side.iter().next().ok_or_else(|| {
            StepError::user(
                "referential_integrity needs the referenced dataset as its second input",
            )
        })?;
        let _ = other(side, "referential_integrity")?;
        let ref_col = o.reference_column();
        let rule = format!("referential_integrity({} -> {name}.{ref_col})", o.column);
        require_columns(frame, std::iter::once(&ref_col), &rule)?;
        Ok(Reference {
            name: name.clone(),
            state: Mutex::new(Referenced::Column(
                frame.select([ref_col.as_str()]).step_err(&rule)?,
            )),
        })
    }

    /// Keys present in the referenced dataset, checked batch by batch against its index.
    pub fn referential_integrity_streamed(
        df: &DataFrame,
        o: &crate::ReferentialIntegrityOptions,
        reference: &Reference,
    ) -> Result<Check, StepError> {
        let ref_col = o.reference_column();
        let rule = format!(
            "referential_integrity({} -> {}.{ref_col})",
            o.column, reference.name
        );
        require_columns(df, std::iter::once(&o.column), &rule)?;
        let dtype = df.column(&o.column).step_err(&rule)?.dtype().clone();
        let index = {
            let mut guard = reference.state.lock().unwrap_or_else(|p| p.into_inner());
            match &*guard {
                Referenced::Indexed(t, index) if *t == dtype => index.clone(),
                Referenced::Indexed(t, _) => {
                    return Err(StepError::user(format!(
                        "{rule}: {} was {t} in an earlier batch and is {dtype} now",
                        o.column
                    ))
                    .with_hint("the batches of one input need the same column types"));
                }
                Referenced::Column(frame) => {
                    let keys = frame.column(&ref_col).step_err(&rule)?;
                    let keys = keys.strict_cast(&dtype).map_err(|_| {
                        StepError::user(format!(
                            "{rule}: {ref_col} is {} but {} is {dtype}",
                            keys.dtype(),
                            o.column
                        ))
                    })?;
                    let keys =
                        DataFrame::new(keys.len(), vec![keys.with_name(o.column.as_str().into())])
                            .step_err(&rule)?;
                    let index = KeyIndex::shared(&keys, std::slice::from_ref(&o.column), &rule)?;
                    *guard = Referenced::Indexed(dtype, index.clone());
                    index
                }
            }
        };
        let column = std::slice::from_ref(&o.column);
        let matches = index.first_matches(df, column, column, &rule)?;
        let valid: BooleanChunked = matches.iter().map(|m| Some(m.is_some())).collect();
        Ok(Check::rows(rule, valid))
    }
}
