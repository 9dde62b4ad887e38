//! Ordered output past the memory limit: an external merge sort.
//!
//! Each row gets an *order key*: Polars' own row encoding of the sort columns (the bytes
//! compare as `DataFrame::sort` orders, descending and nulls placement included) followed by
//! the row's arrival number, big-endian. Keys are then unique, and their byte order is exactly
//! the stable order of an in-memory sort with `maintain_order`. Held input past half the
//! limit is sorted by key into a *run* on local disk, in small Parquet chunks; at the end the
//! runs are merged a chunk at a time: every row whose key is at most the smallest last key
//! among the runs' loaded chunks is next in order, so each round emits at least one chunk and
//! memory holds one chunk per run.

use pipeline_base::StepError;
use polars::prelude::*;
use polars_core::chunked_array::ops::row_encode::_get_rows_encoded_ca;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

/// The order key column (dropped before rows leave the step).
pub(crate) const KEY: &str = "__pipectl_order";
/// The arrival number column of spilled partitions (see `partitioned`).
pub(crate) const SEQ: &str = "__pipectl_seq";
/// Bytes of rows per chunk file of a run.
const CHUNK_BYTES: usize = 1 << 20;

/// How rows are ordered: by these columns, then by arrival.
#[derive(Debug, Clone, Default)]
pub struct SortSpec {
    pub by: Vec<String>,
    pub descending: Vec<bool>,
    pub nulls_last: bool,
}

fn polars_err(what: &str) -> impl Fn(PolarsError) -> StepError + '_ {
    move |e| crate::errors::polars_error(e, what)
}

/// The order keys of `df`'s rows, whose arrival numbers are `seq` (one per row).
fn order_keys(
    df: &DataFrame,
    spec: &SortSpec,
    seq: impl Iterator<Item = u64>,
    what: &str,
) -> Result<BinaryChunked, StepError> {
    let height = df.height();
    let mut buf: Vec<u8> = Vec::new();
    let mut ends: Vec<usize> = Vec::with_capacity(height);
    if spec.by.is_empty() {
        for s in seq.take(height) {
            buf.extend_from_slice(&s.to_be_bytes());
            ends.push(buf.len());
        }
    } else {
        let by = spec
            .by
            .iter()
            .map(|c| df.column(c).cloned())
            .collect::<PolarsResult<Vec<_>>>()
            .map_err(polars_err(what))?;
        let nulls_last = vec![spec.nulls_last; by.len()];
        let encoded =
            _get_rows_encoded_ca(PlSmallStr::EMPTY, &by, &spec.descending, &nulls_last, false)
                .map_err(polars_err(what))?;
        let rows = encoded.downcast_iter().flat_map(|a| a.values_iter());
        for (row, s) in rows.zip(seq) {
            buf.extend_from_slice(row);
            buf.extend_from_slice(&s.to_be_bytes());
            ends.push(buf.len());
        }
    }
    if ends.len() != height {
        return Err(StepError::internal(format!(
            "{what}: {} order keys for {height} rows",
            ends.len()
        )));
    }
    let mut start = 0;
    let keys = ends.iter().map(|&end| {
        let key = buf.get(start..end).unwrap_or_default();
        start = end;
        key
    });
    Ok(BinaryChunked::from_iter_values(PlSmallStr::from(KEY), keys))
}

/// `df` with its order key column, sorted by it. Arrival numbers come from the `SEQ` column
/// when `df` has one, else they are `first_seq` onwards.
pub(crate) fn with_order(
    mut df: DataFrame,
    spec: &SortSpec,
    first_seq: u64,
    what: &str,
) -> Result<DataFrame, StepError> {
    let keys = match df.column(SEQ) {
        Ok(seq) => {
            let seq = seq.u64().map_err(polars_err(what))?.clone();
            order_keys(&df, spec, seq.iter().map(|s| s.unwrap_or(0)), what)?
        }
        Err(_) => order_keys(&df, spec, first_seq.., what)?,
    };
    df.with_column(keys.into_column())
        .map_err(polars_err(what))?;
    df.sort([KEY], SortMultipleOptions::default())
        .map_err(polars_err(what))
}

/// Writes a frame sorted by its order key as one run: chunk files of about `CHUNK_BYTES`.
pub(crate) fn write_run(
    dir: &Path,
    name: &str,
    sorted: &DataFrame,
    what: &str,
) -> Result<(VecDeque<PathBuf>, u64), StepError> {
    let size = sorted.estimated_size().max(1);
    let height = sorted.height();
    let rows = (height.saturating_mul(CHUNK_BYTES) / size).clamp(1024, 1 << 20);
    let mut files = VecDeque::new();
    let mut offset = 0usize;
    while offset < height {
        let mut chunk = sorted.slice(i64::try_from(offset).unwrap_or(i64::MAX), rows);
        let path = dir.join(format!("{name}-{}.parquet", files.len()));
        let file = std::fs::File::create(&path).map_err(|e| {
            StepError::external(format!("{what}: {}: {e}", path.display()))
                .with_hint("set TMPDIR to a writable directory with free space")
        })?;
        ParquetWriter::new(file)
            .with_compression(ParquetCompression::Lz4Raw)
            .finish(&mut chunk)
            .map_err(polars_err(what))?;
        files.push_back(path);
        offset = offset.saturating_add(rows);
    }
    Ok((files, size as u64))
}

fn read_chunk(path: &Path, what: &str) -> Result<DataFrame, StepError> {
    let file = std::fs::File::open(path)
        .map_err(|e| StepError::internal(format!("{what}: {}: {e}", path.display())))?;
    let mut df = ParquetReader::new(file)
        .finish()
        .map_err(polars_err(what))?;
    df.rechunk_mut();
    // The chunk file is no longer needed once read.
    let _ = std::fs::remove_file(path);
    Ok(df)
}

/// One run being merged: its loaded rows, then its chunk files.
struct Cursor {
    current: DataFrame,
    files: VecDeque<PathBuf>,
}

/// Merges runs sorted by their order keys into one sorted sequence of frames.
pub(crate) struct Merge {
    cursors: Vec<Cursor>,
    what: String,
}

fn key_at(df: &DataFrame, row: usize) -> Option<Vec<u8>> {
    let keys = df.column(KEY).ok()?.binary().ok()?;
    keys.get(row).map(<[u8]>::to_vec)
}

/// How many leading rows of `df` have a key at most `bound`.
fn rows_up_to(df: &DataFrame, bound: &[u8]) -> usize {
    let Some(keys) = df.column(KEY).ok().and_then(|c| c.binary().ok()) else {
        return 0;
    };
    let (mut lo, mut hi) = (0usize, df.height());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if keys.get(mid).is_some_and(|k| k <= bound) {
            lo = mid.saturating_add(1);
        } else {
            hi = mid;
        }
    }
    lo
}

impl Merge {
    pub(crate) fn new(runs: Vec<VecDeque<PathBuf>>, what: &str) -> Self {
        Merge {
            cursors: runs
                .into_iter()
                .map(|files| Cursor {
                    current: DataFrame::empty(),
                    files,
                })
                .collect(),
            what: what.to_string(),
        }
    }

    /// The next rows in order, with the order key column removed; `None` at the end.
    pub(crate) fn next_frame(&mut self) -> Result<Option<DataFrame>, StepError> {
        for cursor in &mut self.cursors {
            while cursor.current.height() == 0 {
                let Some(path) = cursor.files.pop_front() else {
                    break;
                };
                cursor.current = read_chunk(&path, &self.what)?;
            }
        }
        self.cursors.retain(|c| c.current.height() > 0);
        let bound = self
            .cursors
            .iter()
            .filter_map(|c| key_at(&c.current, c.current.height().saturating_sub(1)))
            .min();
        let Some(bound) = bound else {
            return Ok(None);
        };
        let mut next: Option<DataFrame> = None;
        for cursor in &mut self.cursors {
            let n = rows_up_to(&cursor.current, &bound);
            if n == 0 {
                continue;
            }
            let head = cursor.current.slice(0, n);
            cursor.current = cursor
                .current
                .slice(i64::try_from(n).unwrap_or(i64::MAX), usize::MAX);
            match &mut next {
                None => next = Some(head),
                Some(all) => {
                    all.vstack_mut_owned(head).map_err(polars_err(&self.what))?;
                }
            }
        }
        let Some(next) = next else {
            return Err(StepError::internal(format!(
                "{}: a merge round emitted no row",
                self.what
            )));
        };
        let mut sorted = next
            .sort([KEY], SortMultipleOptions::default())
            .map_err(polars_err(&self.what))?;
        sorted.drop_in_place(KEY).map_err(polars_err(&self.what))?;
        if sorted.schema().get(SEQ).is_some() {
            sorted.drop_in_place(SEQ).map_err(polars_err(&self.what))?;
        }
        Ok(Some(sorted))
    }
}

#[cfg(test)]
#[path = "ordered_tests.rs"]
mod tests;
