//! Whole-input steps that work key by key (`dedupe`) past their memory limit: once the input
//! they hold passes `memory_limit_mb`, it goes to local disk split into 16 partitions by a hash
//! of the keys, and at the end each partition is read back and processed on its own. Every row
//! of a key lands in the same partition, in its arrival order, so the result per key is the
//! in-memory one; only the order between keys of different partitions changes. Memory stays
//! near the limit plus one partition.

use crate::batch::Batch;
use crate::incremental::Gathers;
use crate::method::{ConnectionUse, DATAFRAME, MethodEntry, MethodOptions, Produces, StepSetup};
use crate::runtime::{Datasets, Metrics, Operator, RunContext, Runtime, blocking};
use async_trait::async_trait;
use futures::future::BoxFuture;
use pipeline_base::{Format, StepError, StepKind};
use polars::prelude::*;
use polars_core::hashing::columns_to_hashes;
use polars_utils::aliases::PlSeedableRandomStateQuality;
use std::path::PathBuf;
use std::sync::Arc;

const PARTS: usize = 16;

pub(crate) struct Partitioned {
    step: String,
    keys: Vec<PlSmallStr>,
    limit: u64,
    memory: Vec<DataFrame>,
    bytes: u64,
    /// The input's columns without rows (for an empty input).
    empty: Option<DataFrame>,
    spill: Option<(tempfile::TempDir, Vec<Vec<PathBuf>>)>,
    hasher: PlSeedableRandomStateQuality,
    round: usize,
    pub(crate) spilled_bytes: u64,
}

fn stack(frames: Vec<DataFrame>, what: &str) -> Result<Option<DataFrame>, StepError> {
    let mut all: Option<DataFrame> = None;
    for f in frames {
        match &mut all {
            None => all = Some(f),
            Some(a) => {
                a.vstack_mut_owned(f)
                    .map_err(|e| crate::errors::polars_error(e, what))?;
            }
        }
    }
    Ok(all)
}

impl Partitioned {
    pub(crate) fn new(step: &str, keys: Vec<String>, limit: u64) -> Self {
        Partitioned {
            step: step.to_string(),
            keys: keys.iter().map(|k| PlSmallStr::from(k.as_str())).collect(),
            limit,
            memory: Vec::new(),
            bytes: 0,
            empty: None,
            spill: None,
            hasher: PlSeedableRandomStateQuality::default(),
            round: 0,
            spilled_bytes: 0,
        }
    }

    pub(crate) fn push(&mut self, df: DataFrame) -> Result<(), StepError> {
        if self.empty.is_none() {
            self.empty = Some(df.clear());
        }
        self.bytes = self.bytes.saturating_add(df.estimated_size() as u64);
        self.memory.push(df);
        if self.bytes > self.limit {
            self.spill()?;
        }
        Ok(())
    }

    /// Writes what is held to one file per partition.
    fn spill(&mut self) -> Result<(), StepError> {
        let what = format!("step \"{}\": spilling to disk", self.step);
        let Some(mut all) = stack(std::mem::take(&mut self.memory), &what)? else {
            return Ok(());
        };
        self.bytes = 0;
        if let Some(missing) = self.keys.iter().find(|k| all.schema().get(k).is_none()) {
            if self.spill.is_some() {
                return Err(StepError::user(format!(
                    "step \"{}\": a batch has no key column \"{missing}\"",
                    self.step
                ))
                .with_hint("every batch of the input needs the key columns"));
            }
            // The method will name the missing key; keep the rows for it.
            self.memory.push(all);
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

    /// Runs `f` over the whole input, or over each partition when it went to disk.
    pub(crate) fn finish(
        mut self,
        f: impl Fn(DataFrame) -> Result<DataFrame, StepError>,
    ) -> Result<(Vec<DataFrame>, u64), StepError> {
        let outs = self.finish_inner(f)?;
        Ok((outs, self.spilled_bytes))
    }

    fn finish_inner(
        &mut self,
        f: impl Fn(DataFrame) -> Result<DataFrame, StepError>,
    ) -> Result<Vec<DataFrame>, StepError> {
        let what = format!("step \"{}\": reading spilled input", self.step);
        if self.spill.is_none() {
            let mut all = stack(std::mem::take(&mut self.memory), &what)?
                .or_else(|| self.empty.take())
                .unwrap_or_default();
            all.rechunk_mut();
            return f(all).map(|out| vec![out]);
        }
        self.spill()?;
        if !self.memory.is_empty() {
            return Err(StepError::internal(format!(
                "step \"{}\": rows left in memory after the last spill",
                self.step
            )));
        }
        let Some((_dir, files)) = self.spill.take() else {
            return Ok(Vec::new());
        };
        let mut outs = Vec::new();
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
            }
            if let Some(mut part) = stack(frames, &what)? {
                part.rechunk_mut();
                outs.push(f(part)?);
            }
        }
        if outs.is_empty() {
            outs.push(f(self.empty.take().unwrap_or_default())?);
        }
        Ok(outs)
    }
}

/// The operator behind [`MethodEntry::transform_partitioned`].
struct PartitionedWhole<O> {
    f: fn(DataFrame, &O, &Datasets) -> Result<DataFrame, StepError>,
    options: Arc<O>,
    setup: StepSetup,
    held: Option<Partitioned>,
    spilled_bytes: u64,
}

#[async_trait]
impl<O: MethodOptions> Operator for PartitionedWhole<O> {
    async fn push(&mut self, batch: Batch, _cx: &RunContext) -> Result<Vec<Batch>, StepError> {
        let df = batch.into_frame()?;
        let Some(mut held) = self.held.take() else {
            return Err(StepError::internal("input after the end"));
        };
        // Spilling writes files: off the async workers.
        let held = blocking(move || held.push(df).map(|()| held)).await?;
        self.held = Some(held);
        Ok(Vec::new())
    }

    async fn finish(&mut self, cx: &RunContext) -> Result<Vec<Batch>, StepError> {
        let Some(held) = self.held.take() else {
            return Ok(Vec::new());
        };
        let side = self.setup.side_datasets(cx)?;
        let (f, options, step) = (self.f, self.options.clone(), self.setup.step.clone());
        let (outs, spilled) = blocking(move || held.finish(|df| f(df, &options, &side)))
            .await
            .map_err(|e| e.context(format!("step \"{step}\"")))?;
        self.spilled_bytes = spilled;
        Ok(outs.into_iter().map(Batch::Frame).collect())
    }

    fn metrics(&self) -> Metrics {
        if self.spilled_bytes > 0 {
            vec![("spilled_bytes", self.spilled_bytes)]
        } else {
            Vec::new()
        }
    }
}

impl MethodEntry {
    /// A transform that needs its whole input but works key by key (`keys` of its options):
    /// past the pipeline's `memory_limit_mb` its input goes to disk partitioned by key, and
    /// `f` runs on each partition (see the module doc).
    pub fn transform_partitioned<O: MethodOptions>(
        name: &'static str,
        summary: &'static str,
        side_inputs: (usize, Option<usize>),
        f: fn(DataFrame, &O, &Datasets) -> Result<DataFrame, StepError>,
        keys: fn(&O) -> Vec<String>,
    ) -> Self {
        let open = move |setup: StepSetup| -> BoxFuture<'static, Result<Runtime, StepError>> {
            Box::pin(async move {
                let options: O = setup.options()?;
                let held = Partitioned::new(&setup.step, keys(&options), setup.memory_limit);
                Ok(Runtime::Operator(Box::new(PartitionedWhole {
                    f,
                    options: Arc::new(options),
                    setup,
                    held: Some(held),
                    spilled_bytes: 0,
                })))
            })
        };
        let mut entry = Self::entry::<O>(
            name,
            StepKind::Transform,
            summary,
            DATAFRAME,
            Produces::Format(Format::DataFrame),
            true,
            side_inputs,
            ConnectionUse::None,
            Box::new(open),
        );
        entry.gathers = Gathers::Partitioned;
        entry
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
        df!("id" => ids, "k" => keys).unwrap()
    }

    fn first_per_key(df: DataFrame) -> Result<DataFrame, StepError> {
        let keys = ["k".to_string()];
        df.unique_stable(Some(&keys), UniqueKeepStrategy::First, None)
            .map_err(|e| crate::errors::polars_error(e, "t"))
    }

    fn sorted(frames: Vec<DataFrame>) -> DataFrame {
        let mut all = stack(frames, "t").unwrap().unwrap();
        all.rechunk_mut();
        all.sort(["id"], Default::default()).unwrap()
    }

    #[test]
    fn a_spilled_input_gives_the_in_memory_result_per_key() {
        let mut memory = Partitioned::new("t", vec!["k".into()], u64::MAX);
        let mut spilled = Partitioned::new("t", vec!["k".into()], 1);
        for i in 0..20 {
            memory.push(batch(i * 1000)).unwrap();
            spilled.push(batch(i * 1000)).unwrap();
        }
        let (a, none) = memory.finish(first_per_key).unwrap();
        let (b, some) = spilled.finish(first_per_key).unwrap();
        assert!(none == 0 && some > 0);
        assert_eq!(a.len(), 1);
        assert!(b.len() > 1, "one result per partition");
        let (a, b) = (sorted(a), sorted(b));
        assert_eq!(a.height(), 98, "97 keys and the null key");
        assert!(a.equals_missing(&b), "{a}\n{b}");
    }

    #[test]
    fn an_empty_input_still_has_its_columns() {
        let mut p = Partitioned::new("t", vec!["k".into()], 1);
        p.push(batch(0).clear()).unwrap();
        let (out, _) = p.finish(first_per_key).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].width(), 2);
    }
}
