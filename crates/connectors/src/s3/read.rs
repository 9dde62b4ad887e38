//! Reading one file of the `s3` extract in bounded memory, whatever its size:
//! - Parquet row group by row group through range requests (only the column chunks of the
//!   columns later steps read are fetched);
//! - CSV and JSON lines as a stream of byte chunks decoded batch by batch (the schema is
//!   inferred from the first few MB);
//! - Avro: the object's bytes are fetched whole, then decoded a few blocks (`batch_size` rows)
//!   at a time when uncompressed (apache-avro's reader decodes compressed ones whole).

use super::format::FileFormat;
use super::store_error;
use super::target::Location;
use crate::arrow_bridge::arrow_to_frame;
use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStream};
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use pipeline_base::StepError;
use pipeline_data::polars::prelude::*;
use pipeline_data::{AvroBatch, blocking};
use std::collections::VecDeque;
use std::sync::Arc;

/// Bytes read from the start of a CSV or JSON file to infer its columns.
const SAMPLE_BYTES: u64 = 4 << 20;
/// The sample grows (doubling) until it holds a newline, up to this.
const MAX_SAMPLE_BYTES: u64 = 256 << 20;
/// Records the inference looks at, at most.
const SAMPLE_RECORDS: usize = 10_000;

/// An open file, yielding DataFrames of at most the batch size.
pub(super) enum FileReader {
    Parquet(Box<ParquetRecordBatchStream<RangeReader>>),
    Text(Box<TextReader>),
    Frames(VecDeque<DataFrame>),
    /// An uncompressed Avro object, decoded a few blocks at a time.
    AvroBlocks(
        Option<Box<pipeline_data::avro::BlockReader>>,
        usize,
        VecDeque<DataFrame>,
    ),
}

/// What to read and how.
pub(super) struct ReadSpec<'a> {
    pub(super) format: FileFormat,
    pub(super) batch_size: usize,
    /// The columns later steps read (`None`: all). Ignored when the file lacks one of them, so
    /// that the step that reads it names every column in its error.
    pub(super) columns: Option<&'a [String]>,
    /// The file as users know it, for messages.
    pub(super) what: &'a str,
}

fn bad(what: &str, e: &dyn std::fmt::Display) -> StepError {
    StepError::user(format!("reading {what}: {e}"))
}

/// Indices of `columns` in `schema`, when the schema has them all (and they are fewer).
fn projection(schema: &Schema, columns: Option<&[String]>) -> Option<Vec<usize>> {
    let columns = columns?;
    let indices: Option<Vec<usize>> = columns.iter().map(|c| schema.index_of(c).ok()).collect();
    // In the file's order: pruning never reorders columns.
    indices
        .map(|mut i| {
            i.sort_unstable();
            i.dedup();
            i
        })
        .filter(|i| !i.is_empty() && i.len() < schema.fields().len())
}

impl FileReader {
    pub(super) async fn open(
        loc: &Location,
        path: &Path,
        spec: ReadSpec<'_>,
    ) -> Result<Self, StepError> {
        let what = spec.what;
        match spec.format {
            FileFormat::Parquet => {
                let meta = loc
                    .store
                    .head(path)
                    .await
                    .map_err(|e| store_error(e, &format!("reading {what}")))?;
                let reader = RangeReader {
                    store: loc.store.clone(),
                    path: path.clone(),
                    size: meta.size,
                };
                let builder = ParquetRecordBatchStreamBuilder::new(reader)
                    .await
                    .map_err(|e| bad(what, &e))?;
                let builder = match projection(builder.schema(), spec.columns) {
                    Some(indices) => {
                        let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
                        builder.with_projection(mask)
                    }
                    None => builder,
                };
                let stream = builder
                    .with_batch_size(spec.batch_size)
                    .build()
                    .map_err(|e| bad(what, &e))?;
                Ok(FileReader::Parquet(Box::new(stream)))
            }
            FileFormat::Csv | FileFormat::Json => {
                Ok(match TextReader::open(loc, path, &spec).await? {
                    Some(t) => FileReader::Text(Box::new(t)),
                    None => FileReader::Frames(VecDeque::new()),
                })
            }
            FileFormat::Avro => {
                let bytes = loc
                    .store
                    .get(path)
                    .await
                    .map_err(|e| store_error(e, &format!("reading {what}")))?
                    .bytes()
                    .await
                    .map_err(|e| store_error(e, &format!("reading {what}")))?;
                let batch_size = spec.batch_size.max(1);
                let bytes = match pipeline_data::avro::BlockReader::new(bytes.to_vec()) {
                    Ok(reader) => {
                        return Ok(FileReader::AvroBlocks(
                            Some(Box::new(reader)),
                            batch_size,
                            VecDeque::new(),
                        ));
                    }
                    Err(bytes) => bytes,
                };
                let frames = blocking(move || {
                    let df =
                        pipeline_data::avro::avro_to_frame(&AvroBatch::new(bytes.to_vec(), 0))?;
                    let mut out = VecDeque::new();
                    let mut offset = 0;
                    while offset < df.height() {
                        out.push_back(df.slice(offset as i64, batch_size));
                        offset = offset.saturating_add(batch_size);
                    }
                    Ok(out)
                })
                .await?;
                Ok(FileReader::Frames(frames))
            }
        }
    }

    /// The next batch of the file, or `None` at its end.
    pub(super) async fn next(&mut self, what: &str) -> Result<Option<DataFrame>, StepError> {
        match self {
            FileReader::Parquet(stream) => match stream.try_next().await {
                Ok(Some(batch)) => to_frame(batch).await.map(Some),
                Ok(None) => Ok(None),
                Err(e) => Err(bad(what, &e)),
            },
            FileReader::Text(text) => text.next(what).await,
            FileReader::Frames(frames) => Ok(frames.pop_front()),
            FileReader::AvroBlocks(reader, rows, pending) => {
                if let Some(df) = pending.pop_front() {
                    return Ok(Some(df));
                }
                let rows = *rows;
                let Some(mut taken) = reader.take() else {
                    return Ok(None);
                };
                // Decoding is CPU work: off the async workers, the reader lent and returned.
                let (back, out) = blocking(move || {
                    let out = taken.next_frame(rows);
                    Ok((taken, out))
                })
                .await?;
                *reader = Some(back);
                match out? {
                    Some(df) if df.height() == 0 => Ok(None),
                    Some(df) => {
                        // Blocks hold up to 65,536 rows: batches of `batch_size`.
                        let mut offset = 0;
                        while offset < df.height() {
                            pending.push_back(df.slice(offset as i64, rows));
                            offset = offset.saturating_add(rows.max(1));
                        }
                        Ok(pending.pop_front())
                    }
                    None => Ok(None),
                }
            }
        }
    }
}

async fn to_frame(batch: RecordBatch) -> Result<DataFrame, StepError> {
    blocking(move || arrow_to_frame(&[batch])).await
}

enum Decoder {
    Csv(Box<arrow::csv::reader::Decoder>),
    Json(Box<arrow::json::reader::Decoder>),
}

impl Decoder {
    fn decode(&mut self, buf: &[u8]) -> Result<usize, arrow::error::ArrowError> {
        match self {
            Decoder::Csv(d) => d.decode(buf),
            Decoder::Json(d) => d.decode(buf),
        }
    }

    fn flush(&mut self) -> Result<Option<RecordBatch>, arrow::error::ArrowError> {
        match self {
            Decoder::Csv(d) => d.flush(),
            Decoder::Json(d) => d.flush(),
        }
    }
}

/// A CSV or JSON-lines file decoded as its bytes arrive.
pub(super) struct TextReader {
    stream: BoxStream<'static, object_store::Result<bytes::Bytes>>,
    pending: bytes::Bytes,
    decoder: Decoder,
    ended: bool,
}

/// The start of a file for schema inference (at least 4 MB, more until it holds a newline),
/// and whether the file goes on after it; `None` for an empty file.
async fn sample(
    loc: &Location,
    path: &Path,
    what: &str,
) -> Result<Option<(bytes::Bytes, bool)>, StepError> {
    let meta = loc
        .store
        .head(path)
        .await
        .map_err(|e| store_error(e, &format!("reading {what}")))?;
    if meta.size == 0 {
        return Ok(None);
    }
    let mut end = meta.size.min(SAMPLE_BYTES);
    loop {
        let bytes = loc
            .store
            .get_range(path, 0..end)
            .await
            .map_err(|e| store_error(e, &format!("reading {what}")))?;
        let truncated = end < meta.size;
        if !truncated || bytes.contains(&b'\n') || end >= MAX_SAMPLE_BYTES {
            return Ok(Some((bytes, truncated)));
        }
        end = end.saturating_mul(2).min(meta.size);
    }
}

/// Infers a schema from a sample; a truncated sample is cut after a complete line, and again
/// one line earlier when the cut fell inside a record (a quoted field with newlines).
fn infer<T>(
    head: &bytes::Bytes,
    truncated: bool,
    what: &str,
    infer: impl Fn(&[u8]) -> Result<T, arrow::error::ArrowError>,
) -> Result<T, StepError> {
    if !truncated {
        return infer(head).map_err(|e| bad(what, &e));
    }
    let mut cut = head.len();
    let mut last_error = None;
    for _ in 0..16 {
        let Some(nl) = head
            .get(..cut)
            .and_then(|h| h.iter().rposition(|b| *b == b'\n'))
        else {
            break;
        };
        cut = nl.saturating_add(1);
        match infer(head.get(..cut).unwrap_or_default()) {
            Ok(t) => return Ok(t),
            Err(e) => last_error = Some(e),
        }
        cut = nl;
    }
    Err(match last_error {
        Some(e) => bad(what, &e),
        None => bad(what, &"no complete line in the first part of the file"),
    })
}

impl TextReader {
    /// `None` for an empty file.
    async fn open(
        loc: &Location,
        path: &Path,
        spec: &ReadSpec<'_>,
    ) -> Result<Option<Self>, StepError> {
        let what = spec.what;
        let Some((head, truncated)) = sample(loc, path, what).await? else {
            return Ok(None);
        };
        let decoder = match spec.format {
            FileFormat::Csv => {
                let (schema, _) = infer(&head, truncated, what, |b| {
                    arrow::csv::reader::Format::default()
                        .with_header(true)
                        .infer_schema(std::io::Cursor::new(b), Some(SAMPLE_RECORDS))
                })?;
                let mut builder = arrow::csv::ReaderBuilder::new(Arc::new(schema.clone()))
                    .with_header(true)
                    .with_batch_size(spec.batch_size);
                if let Some(indices) = projection(&schema, spec.columns) {
                    builder = builder.with_projection(indices);
                }
                Decoder::Csv(Box::new(builder.build_decoder()))
            }
            _ => {
                let (schema, _) = infer(&head, truncated, what, |b| {
                    arrow::json::reader::infer_json_schema(
                        std::io::Cursor::new(b),
                        Some(SAMPLE_RECORDS),
                    )
                })?;
                // Fields left out of the schema are skipped by the decoder.
                let schema: SchemaRef = match projection(&schema, spec.columns) {
                    Some(indices) => Arc::new(schema.project(&indices).map_err(|e| bad(what, &e))?),
                    None => Arc::new(schema),
                };
                let decoder = arrow::json::ReaderBuilder::new(schema)
                    .with_batch_size(spec.batch_size)
                    .build_decoder()
                    .map_err(|e| bad(what, &e))?;
                Decoder::Json(Box::new(decoder))
            }
        };
        let stream = loc
            .store
            .get(path)
            .await
            .map_err(|e| store_error(e, &format!("reading {what}")))?
            .into_stream()
            .boxed();
        Ok(Some(TextReader {
            stream,
            pending: bytes::Bytes::new(),
            decoder,
            ended: false,
        }))
    }

    async fn next(&mut self, what: &str) -> Result<Option<DataFrame>, StepError> {
        loop {
            if self.pending.is_empty() && !self.ended {
                match self.stream.try_next().await {
                    Ok(Some(chunk)) if chunk.is_empty() => continue,
                    Ok(Some(chunk)) => self.pending = chunk,
                    Ok(None) => {
                        self.ended = true;
                        // An empty buffer ends a last line without a newline.
                        self.decoder.decode(&[]).map_err(|e| bad(what, &e))?;
                    }
                    Err(e) => return Err(store_error(e, &format!("reading {what}"))),
                }
            }
            let before = self.pending.len();
            if before > 0 {
                let used = self
                    .decoder
                    .decode(&self.pending)
                    .map_err(|e| bad(what, &e))?;
                self.pending = self.pending.slice(used.min(before)..);
                if self.pending.is_empty() && !self.ended {
                    // Room for more rows in this batch: fetch the next chunk.
                    continue;
                }
            }
            // The batch is full, or the file has ended.
            match self.decoder.flush().map_err(|e| bad(what, &e))? {
                Some(batch) if batch.num_rows() > 0 => return to_frame(batch).await.map(Some),
                _ if self.ended && self.pending.is_empty() => return Ok(None),
                _ if self.pending.len() == before => {
                    return Err(bad(what, &"the decoder made no progress"));
                }
                _ => {}
            }
        }
    }
}

/// A Parquet file read by range requests: the footer, then the column chunks of each row
/// group as the stream reaches it.
pub(super) struct RangeReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

fn parquet_error(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for RangeReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, parquet::errors::Result<bytes::Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(parquet_error)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<bytes::Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(parquet_error)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}
