//! Side inputs of a stream: extracts read to their end (a join's or a referential check's other
//! table) are read by the first micro-batch, kept, and read again once `side_input_refresh` has
//! passed; the micro-batches in between replay the kept batches instead of querying the
//! source system again.

use async_trait::async_trait;
use pipeline_base::StepError;
use pipeline_data::{Batch, Source};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A side input's batches and when they were read.
type Kept = (Instant, Arc<Vec<Batch>>);

/// The kept side inputs of one stream.
pub(crate) struct SideInputs {
    refresh: Duration,
    steps: HashSet<String>,
    kept: Mutex<HashMap<String, Kept>>,
}

impl SideInputs {
    pub(crate) fn new(refresh: Duration, steps: impl IntoIterator<Item = String>) -> Arc<Self> {
        Arc::new(SideInputs {
            refresh,
            steps: steps.into_iter().collect(),
            kept: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn is_side_input(&self, step: &str) -> bool {
        self.steps.contains(step)
    }

    /// The kept batches of `step` while they are fresh.
    pub(crate) fn fresh(&self, step: &str) -> Option<Arc<Vec<Batch>>> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.get(step)
            .filter(|(at, _)| at.elapsed() < self.refresh)
            .map(|(_, b)| b.clone())
    }

    fn keep(&self, step: &str, batches: Vec<Batch>) {
        let rows: usize = batches.iter().map(Batch::rows).sum();
        tracing::info!(
            step,
            rows,
            refresh_s = self.refresh.as_secs_f64(),
            "side input read; kept until the refresh"
        );
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.insert(step.to_string(), (Instant::now(), Arc::new(batches)));
    }
}

/// Reads the source and keeps its batches when it ends.
pub(crate) struct Recording {
    pub(crate) inner: Box<dyn Source>,
    pub(crate) step: String,
    pub(crate) cache: Arc<SideInputs>,
    pub(crate) batches: Vec<Batch>,
}

#[async_trait]
impl Source for Recording {
    async fn next_batch(&mut self) -> Result<Option<Batch>, StepError> {
        match self.inner.next_batch().await? {
            Some(b) => {
                self.batches.push(b.clone());
                Ok(Some(b))
            }
            None => {
                self.cache
                    .keep(&self.step, std::mem::take(&mut self.batches));
                Ok(None)
            }
        }
    }

    fn total_rows(&self) -> Option<u64> {
        self.inner.total_rows()
    }

    async fn commit(&mut self) -> Result<(), StepError> {
        self.inner.commit().await
    }

    fn metrics(&self) -> pipeline_data::Metrics {
        self.inner.metrics()
    }
}

/// Replays kept batches.
pub(crate) struct Replay {
    pub(crate) batches: Arc<Vec<Batch>>,
    pub(crate) next: usize,
}

#[async_trait]
impl Source for Replay {
    async fn next_batch(&mut self) -> Result<Option<Batch>, StepError> {
        let b = self.batches.get(self.next).cloned();
        self.next = self.next.saturating_add(1);
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline_data::polars::prelude::df;

    struct Two(u8);

    #[async_trait]
    impl Source for Two {
        async fn next_batch(&mut self) -> Result<Option<Batch>, StepError> {
            if self.0 == 0 {
                return Ok(None);
            }
            self.0 -= 1;
            Ok(Some(Batch::Frame(df!("id" => [1i64, 2]).unwrap())))
        }
    }

    #[tokio::test]
    async fn a_side_input_is_kept_until_its_refresh() {
        let cache = SideInputs::new(Duration::from_secs(60), ["customers".to_string()]);
        assert!(cache.is_side_input("customers") && !cache.is_side_input("orders"));
        assert!(cache.fresh("customers").is_none());
        let mut rec = Recording {
            inner: Box::new(Two(2)),
            step: "customers".into(),
            cache: cache.clone(),
            batches: Vec::new(),
        };
        while rec.next_batch().await.unwrap().is_some() {}
        let kept = cache.fresh("customers").expect("kept");
        let mut replay = Replay {
            batches: kept,
            next: 0,
        };
        let mut rows = 0;
        while let Some(b) = replay.next_batch().await.unwrap() {
            rows += b.rows();
        }
        assert_eq!(rows, 4);
        let stale = SideInputs::new(Duration::ZERO, ["c".to_string()]);
        stale.keep("c", Vec::new());
        assert!(
            stale.fresh("c").is_none(),
            "a zero refresh reads every time"
        );
    }
}
