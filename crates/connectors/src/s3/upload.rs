//! A multipart upload that is completed later: parts stream to the store while the run writes,
//! and the object appears at its key only when `complete` is called at commit. Until then no
//! listing or read sees it (S3 keeps incomplete uploads invisible; the local store writes to a
//! temporary file renamed on completion). `abort` discards the parts.

use bytes::Bytes;
use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload, UploadPart};
use std::collections::VecDeque;
use std::sync::Arc;

/// Size of the parts (S3's minimum for all but the last is 5 MiB).
const PART_BYTES: usize = 8 << 20;
/// Parts uploading at once per file.
const PARTS_IN_FLIGHT: usize = 2;

pub(crate) struct DeferredUpload {
    upload: Box<dyn MultipartUpload>,
    buffer: Vec<u8>,
    in_flight: VecDeque<UploadPart>,
    parts: usize,
    bytes: u64,
}

impl DeferredUpload {
    pub async fn start(store: &Arc<dyn ObjectStore>, path: &Path) -> object_store::Result<Self> {
        Ok(DeferredUpload {
            upload: store.put_multipart(path).await?,
            buffer: Vec::new(),
            in_flight: VecDeque::new(),
            parts: 0,
            bytes: 0,
        })
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn send_part(&mut self, data: Vec<u8>) {
        self.parts = self.parts.saturating_add(1);
        self.in_flight
            .push_back(self.upload.put_part(PutPayload::from(Bytes::from(data))));
    }

    pub async fn write(&mut self, data: &[u8]) -> object_store::Result<()> {
        self.bytes = self.bytes.saturating_add(data.len() as u64);
        self.buffer.extend_from_slice(data);
        while self.buffer.len() >= PART_BYTES {
            let rest = self.buffer.split_off(PART_BYTES);
            let part = std::mem::replace(&mut self.buffer, rest);
            self.send_part(part);
            while self.in_flight.len() > PARTS_IN_FLIGHT {
                if let Some(p) = self.in_flight.pop_front() {
                    p.await?;
                }
            }
        }
        Ok(())
    }

    /// Uploads what is buffered as the last part and waits for every part; the object stays
    /// invisible until [`complete`](Self::complete).
    pub async fn flush(&mut self) -> object_store::Result<()> {
        if !self.buffer.is_empty() || self.parts == 0 {
            let last = std::mem::take(&mut self.buffer);
            self.send_part(last);
        }
        while let Some(p) = self.in_flight.pop_front() {
            p.await?;
        }
        Ok(())
    }

    /// Makes the object visible at its key, whole.
    pub async fn complete(mut self) -> object_store::Result<()> {
        self.upload.complete().await.map(|_| ())
    }

    pub async fn abort(mut self) {
        self.in_flight.clear();
        let _ = self.upload.abort().await;
    }
}

/// The Parquet writer's sink: writes go to the upload; `complete` only flushes.
pub(crate) struct ParquetPart(pub Option<DeferredUpload>);

impl parquet::arrow::async_writer::AsyncFileWriter for ParquetPart {
    fn write(&mut self, bs: Bytes) -> BoxFuture<'_, parquet::errors::Result<()>> {
        Box::pin(async move {
            match self.0.as_mut() {
                Some(u) => u
                    .write(&bs)
                    .await
                    .map_err(|e| parquet::errors::ParquetError::External(Box::new(e))),
                None => Err(parquet::errors::ParquetError::General(
                    "upload already taken".into(),
                )),
            }
        })
    }

    fn complete(&mut self) -> BoxFuture<'_, parquet::errors::Result<()>> {
        Box::pin(async move {
            match self.0.as_mut() {
                Some(u) => u
                    .flush()
                    .await
                    .map_err(|e| parquet::errors::ParquetError::External(Box::new(e))),
                None => Ok(()),
            }
        })
    }
}
