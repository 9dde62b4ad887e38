//! Whole-input steps that work key by key (`dedupe`) past their memory limit: once the input
//! they hold passes `memory_limit_mb`, it goes to local disk split into 16 partitions by a hash
//! of the keys, and at the end each partition is read back and processed on its own. Every row
//! of a key lands in the same partition, in its arrival order, so the result per key is the
//! in-memory one. Each row carries its arrival number to disk; each partition's result is
//! sorted into a run by the method's output order (its order columns, then arrival), and the
//! runs are merged back (see `ordered`), so the rows also come out in the in-memory order.
//! Memory stays near the limit plus one partition.

use crate::incremental::Gathers;
use crate::method::{MethodEntry, MethodOptions, StepSetup};
use crate::ordered::{Merge, SEQ, SortSpec, with_order, write_run};
use crate::spilling::{Finished, Frames, Held, WholeFn, stack};
use pipeline_base::StepError;
use polars::prelude::*;
use polars_core::hashing::columns_to_hashes;
use polars_utils::aliases::PlSeedableRandomStateQuality;
use std::path::PathBuf;

const PARTS: usize = 16;

pub(crate) struct Partitioned {
    step: String,
    keys: Vec<PlSmallStr>,
    /// The order of the method's output (see the module doc).
    order: SortSpec,
    limit: u64,
    /// Rows already spilled (the next arrival number).
    seq: u64,
    held: Frames,
    spill: Option<(tempfile::TempDir, Vec<Vec<PathBuf>>)>,
    hasher: PlSeedableRandomStateQuality,
    round: usize,
    pub(crate) spilled_bytes: u64,
}

impl Partitioned {
    pub(crate) fn new(step: &str, keys: Vec<String>, order: SortSpec, limit: u64) -> Self {
        Partitioned {
            step: step.to_string(),
            keys: keys.iter().map(|k| PlSmallStr::from(k.as_str())).collect(),
            order,
            limit,
            seq: 0,
            held: Frames::default(),
            spill: None,
            hasher: PlSeedableRandomStateQuality::default(),
            round: 0,
            spilled_bytes: 0,
        }
    }

    pub(crate) fn push_frame(&mut self, df: DataFrame) -> Result<(), StepError> {
        self.held.add(df);
        if self.held.bytes > self.limit {
            self.spill()?;
        }
        Ok(())
    }

    /// Writes what is held to one file per partition.
    fn spill(&mut self) -> Result<(), StepError> {
        let what = format!("step \"{}\": spilling to disk", self.step);
        let Some(mut all) = self.held.take(&what)? else {
            return Ok(());
        };
        if let Some(missing) = self.keys.iter().find(|k| all.schema().get(k).is_none()) {
            if self.spill.is_some() {
                return Err(StepError::user(format!(
                    "step \"{}\": a batch has no key column \"{missing}\"",
                    self.step
                ))
                .with_hint("every batch of the input needs the key columns"));
            }
            // The method will name the missing key; keep the rows for it.
            self.held.add(all);
            return Ok(());
        }
        if self.spill.is_none() {
            let dir = tempfile::Builder::new()
                .prefix("pipectl-spill-")
                .tempdir()
                .map_err(|e| {
                    StepError::external(format!("{what}: cannot create a directory: {e}"))
                        .with_hint("set TMPDIR to a writable directory with free space")
                })?;
            self.spill = Some((dir, vec![Vec::new(); PARTS]));
        }
        all.rechunk_mut();
        let height = all.height() as u64;
        let end = self.seq.saturating_add(height);
        let seq = UInt64Chunked::from_vec(PlSmallStr::from(SEQ), (self.seq..end).collect());
        self.seq = end;
        all.with_column(seq.into_column())
            .map_err(|e| crate::errors::polars_error(e, &what))?;
        let keys = all
            .select(self.keys.iter().cloned())
            .map_err(|e| crate::errors::polars_error(e, &what))?;
        let mut hashes = Vec::with_capacity(all.height());
        columns_to_hashes(&keys, Some(self.hasher.clone()), &mut hashes)
            .map_err(|e| crate::errors::polars_error(e, &what))?;
        let mut rows: Vec<Vec<IdxSize>> = vec![Vec::new(); PARTS];
        for (i, h) in hashes.iter().enumerate() {
            let part = (*h % PARTS as u64) as usize;
            if let (Some(r), Ok(i)) = (rows.get_mut(part), IdxSize::try_from(i)) {
                r.push(i);
            }
        }
        self.round = self.round.saturating_add(1);
        let Some((dir, files)) = self.spill.as_mut() else {
            return Ok(());
        };
        for (part, idx) in rows.into_iter().enumerate() {
            if idx.is_empty() {
                continue;
            }
            let mut piece = all
                .take(&IdxCa::from_vec("".into(), idx))
                .map_err(|e| crate::errors::polars_error(e, &what))?;
            let path = dir.path().join(format!("{part}-{}.parquet", self.round));
            let file = std::fs::File::create(&path)
                .map_err(|e| StepError::external(format!("{what}: {}: {e}", path.display())))?;
            ParquetWriter::new(file)
                .with_compression(ParquetCompression::Lz4Raw)
                .finish(&mut piece)
                .map_err(|e| crate::errors::polars_error(e, &what))?;
            self.spilled_bytes = self
                .spilled_bytes
                .saturating_add(piece.estimated_size() as u64);
            if let Some(f) = files.get_mut(part) {
                f.push(path);
            }
        }
        tracing::debug!(step = %self.step, round = self.round, spilled_bytes = self.spilled_bytes, "input spilled to disk");
        Ok(())
    }

    /// Hands `f` each partition read back from disk, with its arrival numbers, and the spill
    /// directory (after a last spill of what is still held); the directory goes to the caller.
    fn each_part(
        &mut self,
        f: &mut dyn FnMut(DataFrame, &std::path::Path) -> Result<(), StepError>,
    ) -> Result<tempfile::TempDir, StepError> {
        let what = format!("step \"{}\": reading spilled input", self.step);
        self.spill()?;
        if !self.held.is_empty() {
            return Err(StepError::internal(format!(
                "step \"{}\": rows left in memory after the last spill",
                self.step
            )));
        }
        let Some((dir, files)) = self.spill.take() else {
            return Err(StepError::internal(format!("{what}: no spill directory")));
        };
        for paths in files {
            let mut frames = Vec::with_capacity(paths.len());
            for path in paths {
                let file = std::fs::File::open(&path)
                    .map_err(|e| StepError::internal(format!("{what}: {}: {e}", path.display())))?;
                frames.push(
                    ParquetReader::new(file)
                        .finish()
                        .map_err(|e| crate::errors::polars_error(e, &what))?,
                );
                let _ = std::fs::remove_file(&path);
            }
            if let Some(mut input) = stack(frames, &what)? {
                input.rechunk_mut();
                f(input, dir.path())?;
            }
        }
        Ok(dir)
    }

    /// Runs `f` over the whole input, or over each partition when it went to disk (then the
    /// results come back merged in order).
    fn finish_inner(
        &mut self,
        f: &mut dyn FnMut(DataFrame) -> Result<DataFrame, StepError>,
    ) -> Result<Finished, StepError> {
        let what = format!("step \"{}\": reading spilled input", self.step);
        if self.spill.is_none() {
            let all = self.held.take_whole(&what)?;
            return f(all).map(Finished::Whole);
        }
        let (order, mut runs, mut written) = (self.order.clone(), Vec::new(), 0u64);
        let dir = self.each_part(&mut |input, dir| {
            let out = f(input)?;
            if out.schema().get(SEQ).is_none() {
                return Err(StepError::internal(format!(
                    "{what}: the method dropped the rows' arrival numbers"
                )));
            }
            let sorted = with_order(out, &order, 0, &what)?;
            let name = format!("out{}", runs.len());
            let (run, bytes) = write_run(dir, &name, &sorted, &what)?;
            written = written.saturating_add(bytes);
            runs.push(run);
            Ok(())
        })?;
        self.spilled_bytes = self.spilled_bytes.saturating_add(written);
        Ok(Finished::Merged(Merge::new(runs, &what), dir))
    }
}

/// A whole input held by key for a method's own state (an `aggregate` whose aggregations do
/// not decompose): in memory under `memory_limit_mb`, past it on local disk in partitions by a
/// hash of the keys. Every row of a key is in one partition, in arrival order.
pub struct ByKey(Partitioned);

impl ByKey {
    /// Holds the input of `step`, partitioned by `keys` past `limit` bytes.
    pub fn new(step: &str, keys: Vec<String>, limit: u64) -> Self {
        ByKey(Partitioned::new(step, keys, SortSpec::default(), limit))
    }

    /// One more batch of the input.
    pub fn push(&mut self, df: DataFrame) -> Result<(), StepError> {
        self.0.push_frame(df)
    }

    /// The input: `whole` gets it in one frame when it stayed in memory; otherwise `part` gets
    /// each partition in turn, with the rows' arrival numbers (from 0) in the column
    /// [`ARRIVAL`]. Returns the bytes written to disk.
    pub fn finish(
        mut self,
        whole: &mut dyn FnMut(DataFrame) -> Result<(), StepError>,
        part: &mut dyn FnMut(DataFrame) -> Result<(), StepError>,
    ) -> Result<u64, StepError> {
        if self.0.spill.is_none() {
            let what = format!("step \"{}\"", self.0.step);
            whole(self.0.held.take_whole(&what)?)?;
            return Ok(0);
        }
        self.0.each_part(&mut |df, _| part(df)).map(drop)?;
        Ok(self.0.spilled_bytes)
    }
}

/// The column of the rows' arrival numbers in a spilled partition (see [`ByKey::finish`]).
pub const ARRIVAL: &str = SEQ;

impl Held for Partitioned {
    type Input = DataFrame;

    fn push(&mut self, df: DataFrame) -> Result<(), StepError> {
        self.push_frame(df)
    }

    fn finish(
        mut self,
        f: &mut dyn FnMut(DataFrame) -> Result<DataFrame, StepError>,
    ) -> Result<(Finished, u64), StepError> {
        let out = self.finish_inner(f)?;
        Ok((out, self.spilled_bytes))
    }
}

impl MethodEntry {
    /// A transform that needs its whole input but works key by key (`keys` of its options):
    /// past the pipeline's `memory_limit_mb` its input goes to disk partitioned by key, and
    /// `f` runs on each partition (see the module doc). `order` is the order of `f`'s output:
    /// by those columns, then by arrival; `f` must keep every column it does not add.
    pub fn transform_partitioned<O: MethodOptions>(
        name: &'static str,
        summary: &'static str,
        side_inputs: (usize, Option<usize>),
        f: WholeFn<O>,
        keys: fn(&O) -> Vec<String>,
        order: fn(&O) -> SortSpec,
    ) -> Self {
        let hold = move |options: &O, setup: &StepSetup| {
            Ok(Partitioned::new(
                &setup.step,
                keys(options),
                order(options),
                setup.memory_limit,
            ))
        };
        Self::spilling(name, summary, side_inputs, f, hold, Gathers::Partitioned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(start: i64) -> DataFrame {
        let ids: Vec<i64> = (start..start + 1000).collect();
        let keys: Vec<Option<i64>> = ids
            .iter()
            .map(|i| if i % 13 == 0 { None } else { Some(i % 97) })
            .collect();
        let at: Vec<Option<i64>> = ids
            .iter()
            .map(|i| {
                if i % 7 == 0 {
                    None
                } else {
                    Some((i * 31) % 50)
                }
            })
            .collect();
        df!("id" => ids, "k" => keys, "at" => at).unwrap()
    }

    fn first_per_key(df: DataFrame) -> Result<DataFrame, StepError> {
        let keys = ["k".to_string()];
        df.unique_stable(Some(&keys), UniqueKeepStrategy::First, None)
            .map_err(|e| crate::errors::polars_error(e, "t"))
    }

    /// As `dedupe` with `order_by`: sorted by `at`, the last row per key.
    fn last_by_at(df: DataFrame) -> Result<DataFrame, StepError> {
        let keys = ["k".to_string()];
        df.sort(
            ["at"],
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .and_then(|d| d.unique_stable(Some(&keys), UniqueKeepStrategy::Last, None))
        .map_err(|e| crate::errors::polars_error(e, "t"))
    }

    fn collect(out: Finished) -> (DataFrame, usize) {
        match out {
            Finished::Whole(df) => (df, 1),
            Finished::Merged(mut merge, _dir) => {
                let (mut all, mut pieces) = (DataFrame::empty(), 0);
                while let Some(df) = merge.next_frame().unwrap() {
                    pieces += 1;
                    if all.width() == 0 {
                        all = df;
                    } else {
                        all.vstack_mut_owned(df).unwrap();
                    }
                }
                (all, pieces)
            }
        }
    }

    fn run(
        limit: u64,
        order: SortSpec,
        f: fn(DataFrame) -> Result<DataFrame, StepError>,
    ) -> (DataFrame, usize, u64) {
        let mut p = Partitioned::new("t", vec!["k".into()], order, limit);
        for i in 0..20 {
            p.push_frame(batch(i * 1000)).unwrap();
        }
        let (out, spilled) = p.finish(&mut { f }).unwrap();
        let (df, pieces) = collect(out);
        (df, pieces, spilled)
    }

    #[test]
    fn a_spilled_input_gives_the_in_memory_result_in_its_order() {
        let (a, one, none) = run(u64::MAX, SortSpec::default(), first_per_key);
        let (b, pieces, some) = run(1, SortSpec::default(), first_per_key);
        assert!(none == 0 && some > 0 && one == 1);
        assert!(pieces > 1, "merged back a piece at a time");
        assert_eq!(a.height(), 98, "97 keys and the null key");
        assert!(a.equals_missing(&b), "{a}\n{b}");
    }

    #[test]
    fn a_spilled_input_ordered_by_a_column_comes_back_in_that_order() {
        let order = SortSpec {
            by: vec!["at".into()],
            descending: vec![false],
            nulls_last: false,
        };
        let (a, _, _) = run(u64::MAX, order.clone(), last_by_at);
        let (b, _, some) = run(1, order, last_by_at);
        assert!(some > 0);
        assert_eq!(a.height(), 98);
        assert!(a.equals_missing(&b), "{a}\n{b}");
    }

    #[test]
    fn an_empty_input_still_has_its_columns() {
        let mut p = Partitioned::new("t", vec!["k".into()], SortSpec::default(), 1);
        p.push_frame(batch(0).clear()).unwrap();
        let (out, _) = p.finish(&mut first_per_key).unwrap();
        let (df, _) = collect(out);
        assert_eq!(df.width(), 3);
    }
}
