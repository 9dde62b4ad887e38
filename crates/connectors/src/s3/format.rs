//! File formats of the S3 connector (Parquet, Avro, CSV, JSON lines): names, extensions, and a
//! streaming writer per file. Parquet and the text formats stream to the store (multipart above
//! the buffer size); an Avro file too, block by block after its header. Every
//! file is a deferred multipart upload: invisible until the sink completes it at commit.

use super::upload::{DeferredUpload, ParquetPart};
use crate::arrow_bridge::frame_to_arrow;
use object_store::ObjectStore;
use object_store::path::Path;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use pipeline_base::StepError;
use pipeline_data::polars::prelude::*;
use schemars::JsonSchema;
use serde::Deserialize;
use std::sync::Arc;

/// Rows per Parquet row group (bounds the writer's buffer).
const ROW_GROUP_ROWS: usize = 131_072;

/// A file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    Parquet,
    Avro,
    Csv,
    /// JSON lines: one object per line.
    Json,
}

impl FileFormat {
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Parquet => "parquet",
            FileFormat::Avro => "avro",
            FileFormat::Csv => "csv",
            FileFormat::Json => "jsonl",
        }
    }

    /// The format a file name's extension says, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        Some(match ext.as_str() {
            "parquet" | "pq" => FileFormat::Parquet,
            "avro" => FileFormat::Avro,
            "csv" => FileFormat::Csv,
            "json" | "jsonl" | "ndjson" => FileFormat::Json,
            _ => return None,
        })
    }
}

/// Parquet compression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParquetCompression {
    /// zstd level 1 (default): about half the bytes of snappy for little more CPU.
    #[default]
    Zstd,
    Snappy,
    Uncompressed,
}

fn io_error(e: impl std::fmt::Display, what: &str) -> StepError {
    super::classify(format!("{what}: {e}"), what)
}

/// One file being written; its object becomes visible only when the returned upload completes.
pub(crate) enum FileWriter {
    Parquet(Box<AsyncArrowWriter<ParquetPart>>),
    Text {
        out: DeferredUpload,
        csv: bool,
        first: bool,
    },
    Avro {
        out: DeferredUpload,
        encoder: Box<pipeline_data::avro::AvroEncoder>,
    },
}

impl FileWriter {
    pub async fn open(
        store: &Arc<dyn ObjectStore>,
        path: &Path,
        format: FileFormat,
        compression: ParquetCompression,
        schema_of: &DataFrame,
        what: &str,
    ) -> Result<Self, StepError> {
        let out = DeferredUpload::start(store, path)
            .await
            .map_err(|e| super::store_error(e, what))?;
        Ok(match format {
            FileFormat::Parquet => {
                let schema = frame_to_arrow(&schema_of.slice(0, 0))?
                    .first()
                    .map(|b| b.schema())
                    .ok_or_else(|| StepError::internal("no Arrow schema for an empty frame"))?;
                // Dictionary encoding pays off for strings (statuses, countries); for numbers
                // and timestamps it mostly costs CPU building dictionaries it then abandons.
                let mut props = WriterProperties::builder()
                    .set_compression(match compression {
                        ParquetCompression::Snappy => Compression::SNAPPY,
                        ParquetCompression::Zstd => Compression::ZSTD(Default::default()),
                        ParquetCompression::Uncompressed => Compression::UNCOMPRESSED,
                    })
                    .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                    .set_statistics_enabled(EnabledStatistics::Chunk)
                    .set_dictionary_enabled(false);
                for field in schema.fields() {
                    if matches!(
                        field.data_type(),
                        arrow::datatypes::DataType::Utf8
                            | arrow::datatypes::DataType::Utf8View
                            | arrow::datatypes::DataType::LargeUtf8
                    ) {
                        props = props.set_column_dictionary_enabled(
                            ColumnPath::from(field.name().as_str()),
                            true,
                        );
                    }
                }
                let props = props.build();
                let writer = AsyncArrowWriter::try_new(ParquetPart(Some(out)), schema, Some(props))
                    .map_err(|e| StepError::internal(format!("opening a Parquet writer: {e}")))?;
                FileWriter::Parquet(Box::new(writer))
            }
            FileFormat::Csv | FileFormat::Json => FileWriter::Text {
                out,
                csv: format == FileFormat::Csv,
                first: true,
            },
            FileFormat::Avro => {
                let encoder = pipeline_data::avro::AvroEncoder::new(schema_of, "row")?;
                let mut out = out;
                out.write(&encoder.header())
                    .await
                    .map_err(|e| super::store_error(e, what))?;
                FileWriter::Avro {
                    out,
                    encoder: Box::new(encoder),
                }
            }
        })
    }

    /// Bytes written so far (an estimate before the file closes).
    pub fn size(&self) -> usize {
        match self {
            FileWriter::Parquet(w) => w.bytes_written().saturating_add(w.in_progress_size()),
            FileWriter::Text { out, .. } => out.bytes() as usize,
            FileWriter::Avro { out, .. } => out.bytes() as usize,
        }
    }

    pub async fn write(&mut self, df: &DataFrame, what: &str) -> Result<(), StepError> {
        match self {
            FileWriter::Parquet(w) => {
                for batch in frame_to_arrow(df)? {
                    w.write(&batch).await.map_err(|e| io_error(e, what))?;
                }
            }
            FileWriter::Text { out, csv, first } => {
                let mut buf = Vec::with_capacity(df.estimated_size());
                for batch in frame_to_arrow(df)? {
                    if *csv {
                        let mut w = arrow::csv::WriterBuilder::new()
                            .with_header(*first)
                            .build(&mut buf);
                        w.write(&batch)
                            .map_err(|e| StepError::user(format!("{what}: {e}")))?;
                        *first = false;
                    } else {
                        let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
                        w.write(&batch)
                            .map_err(|e| StepError::user(format!("{what}: {e}")))?;
                        w.finish()
                            .map_err(|e| StepError::user(format!("{what}: {e}")))?;
                    }
                }
                out.write(&buf)
                    .await
                    .map_err(|e| super::store_error(e, what))?;
            }
            FileWriter::Avro { out, encoder } => {
                // Block by block: the file never waits whole in memory.
                let mut buf = Vec::with_capacity(df.estimated_size());
                encoder.write_blocks(df, &mut buf)?;
                out.write(&buf)
                    .await
                    .map_err(|e| super::store_error(e, what))?;
            }
        }
        Ok(())
    }

    /// Finishes the file's content and uploads it; returns the upload (to complete at commit)
    /// and the file's size in bytes.
    pub async fn close(self, what: &str) -> Result<(DeferredUpload, u64), StepError> {
        let fail = |e: object_store::Error| super::store_error(e, what);
        match self {
            FileWriter::Parquet(mut w) => {
                w.finish().await.map_err(|e| io_error(e, what))?;
                let bytes = w.bytes_written() as u64;
                let upload = (*w)
                    .into_inner()
                    .0
                    .ok_or_else(|| StepError::internal("the Parquet upload vanished"))?;
                Ok((upload, bytes))
            }
            FileWriter::Text { mut out, .. } => {
                out.flush().await.map_err(fail)?;
                let n = out.bytes();
                Ok((out, n))
            }
            FileWriter::Avro { mut out, .. } => {
                out.flush().await.map_err(fail)?;
                let n = out.bytes();
                Ok((out, n))
            }
        }
    }

    /// Abandons the file: its upload is aborted, nothing appears.
    pub async fn abort(self) {
        let upload = match self {
            FileWriter::Parquet(w) => (*w).into_inner().0,
            FileWriter::Text { out, .. } | FileWriter::Avro { out, .. } => Some(out),
        };
        if let Some(u) = upload {
            u.abort().await;
        }
    }
}
