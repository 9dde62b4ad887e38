//! Reading a Delta table, local or on S3: load the snapshot (latest, a `version` or the version
//! current at a `timestamp`), keep the files whose partition values pass the step's
//! `partitions` filter, and stream them a batch each — fetched a few ahead through the table's
//! object store, decoded on the blocking pool, only the projected `columns`, with partition
//! values added as columns and older files widened to the table's (evolved) schema.

use super::table::{TableAt, open_table};
use super::{DeltaExtractOptions, PartitionValue, delta_error, storage_options, table_url};
use crate::{ExtractMethods, arrow_bridge::arrow_to_frame};
use async_trait::async_trait;
use deltalake::DeltaTable;
use deltalake::arrow::record_batch::RecordBatch;
use futures::stream::{BoxStream, StreamExt};
use object_store::{ObjectStore, ObjectStoreExt};
use pipeline_base::StepError;
use pipeline_data::polars::prelude::*;
use pipeline_data::{Batch, PolarsResultExt, Source, StepSetup};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use url::Url;

/// How many data files are fetched ahead of the one being decoded.
const PREFETCH: usize = 3;

/// One data file to read, with its partition values (raw strings, `None` for null).
#[derive(Debug, Clone)]
pub(crate) struct DataFile {
    pub path: String,
    pub size: u64,
    pub partitions: HashMap<String, Option<String>>,
}

/// What the reader produces: the table's columns (projected) with their Polars types.
#[derive(Clone)]
struct ReadPlan {
    schema: Schema,
    partition_columns: Vec<String>,
}

struct DeltaSource {
    frames: BoxStream<'static, Result<DataFrame, StepError>>,
    empty: Option<DataFrame>,
}

/// The table's schema as Polars types (through an empty Arrow batch).
fn polars_schema(table: &DeltaTable) -> Result<Schema, StepError> {
    let arrow = table
        .snapshot()
        .map_err(|e| delta_error(e, "reading the table schema"))?
        .snapshot()
        .arrow_schema();
    let empty = RecordBatch::new_empty(arrow);
    Ok(arrow_to_frame(&[empty])?.schema().as_ref().clone())
}

/// Tables whose files cannot be read as plain Parquet (deletion vectors, column mapping) are
/// refused rather than read wrongly.
fn check_readable(table: &DeltaTable) -> Result<(), StepError> {
    let state = table
        .snapshot()
        .map_err(|e| delta_error(e, "reading the table protocol"))?;
    let protocol = serde_json::to_value(state.protocol()).unwrap_or_default();
    let features: Vec<String> = protocol
        .get("readerFeatures")
        .and_then(|f| f.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for unsupported in ["deletionVectors", "columnMapping"] {
        if features.iter().any(|f| f == unsupported) {
            return Err(StepError::user(format!(
                "the table uses the Delta reader feature \"{unsupported}\", which pipectl cannot read yet"
            ))
            .with_hint("rewrite the table without it (e.g. REORG / purge deletion vectors), or read it with another engine"));
        }
    }
    let mapping = state
        .metadata()
        .configuration()
        .get("delta.columnMapping.mode")
        .cloned();
    if mapping.as_deref().is_some_and(|m| m != "none") {
        return Err(StepError::user(
            "the table uses column mapping, which pipectl cannot read yet",
        ));
    }
    Ok(())
}

/// The files of the snapshot whose partition values pass `filter`.
pub(crate) fn table_files(
    table: &DeltaTable,
    filter: &BTreeMap<String, PartitionValue>,
) -> Result<Vec<DataFile>, StepError> {
    let state = table
        .snapshot()
        .map_err(|e| delta_error(e, "listing table files"))?;
    let partition_columns = state.metadata().partition_columns().to_vec();
    for key in filter.keys() {
        if !partition_columns.contains(key) {
            return Err(StepError::user(format!(
                "\"partitions\" names \"{key}\", which is not a partition column of the table"
            ))
            .with_hint(if partition_columns.is_empty() {
                "the table is not partitioned".to_string()
            } else {
                format!("partition columns: {}", partition_columns.join(", "))
            }));
        }
    }
    Ok(state
        .log_data()
        .iter()
        .map(|f| DataFile {
            path: f.path().to_string(),
            size: u64::try_from(f.size()).unwrap_or_default(),
            partitions: f.partition_values_map(),
        })
        .filter(|f| {
            filter
                .iter()
                .all(|(k, want)| want.matches(f.partitions.get(k).and_then(|v| v.as_deref())))
        })
        .collect())
}

/// A file's rows shaped to the plan: projected columns in table order, partition values as
/// typed columns, columns the file predates as typed nulls.
fn shape(df: DataFrame, file: &DataFile, plan: &ReadPlan) -> Result<DataFrame, StepError> {
    // Added with `with_columns` so literals take the file's row count.
    let mut added = Vec::new();
    for (name, dtype) in plan.schema.iter() {
        if plan.partition_columns.iter().any(|p| p == name.as_str()) {
            let value = file.partitions.get(name.as_str()).cloned().flatten();
            let e = match value {
                Some(v) => lit(v).cast(dtype.clone()),
                None => lit(NULL).cast(dtype.clone()),
            };
            added.push(e.alias(name.clone()));
        } else if !df.schema().contains(name) {
            added.push(lit(NULL).cast(dtype.clone()).alias(name.clone()));
        }
    }
    let select: Vec<Expr> = plan
        .schema
        .iter()
        .map(|(name, dtype)| col(name.clone()).cast(dtype.clone()))
        .collect();
    df.lazy()
        .with_columns(added)
        .select(select)
        .collect()
        .step_err(&format!("shaping {} to the table schema", file.path))
}

fn decode(bytes: bytes::Bytes, file: &DataFile, plan: &ReadPlan) -> Result<DataFrame, StepError> {
    let mut reader = ParquetReader::new(std::io::Cursor::new(bytes));
    let present = reader
        .schema()
        .step_err(&format!("reading the schema of {}", file.path))?;
    let wanted: Vec<PlSmallStr> = plan
        .schema
        .iter_names()
        .filter(|n| present.contains(n.as_str()))
        .cloned()
        .collect();
    let df = if wanted.is_empty() {
        // Only partition columns (or none the file has): the row count is all we need.
        let rows = reader
            .num_rows()
            .step_err(&format!("reading {}", file.path))?;
        DataFrame::empty_with_height(rows)
    } else {
        reader
            .with_columns(Some(wanted.iter().map(|s| s.to_string()).collect()))
            .finish()
            .step_err(&format!("reading {}", file.path))?
    };
    shape(df, file, plan)
}

/// The read of `table`: its columns (or the projected `columns`, each of which it must have)
/// with their Polars types, and its partition columns.
fn read_plan(table: &DeltaTable, columns: Option<&[String]>) -> Result<ReadPlan, StepError> {
    let full = polars_schema(table)?;
    let schema = match columns {
        None => full,
        Some(cols) => {
            let mut s = Schema::with_capacity(cols.len());
            for c in cols {
                let dtype = full.get(c.as_str()).cloned().ok_or_else(|| {
                    let names: Vec<&str> = full.iter_names().map(|n| n.as_str()).collect();
                    StepError::user(format!(
                        "\"columns\" names \"{c}\", which the table does not have"
                    ))
                    .with_hint(format!("the table's columns: {}", names.join(", ")))
                })?;
                s.with_column(PlSmallStr::from(c.as_str()), dtype);
            }
            s
        }
    };
    let partition_columns = table
        .snapshot()
        .map_err(|e| delta_error(e, "reading the table metadata"))?
        .metadata()
        .partition_columns()
        .to_vec();
    Ok(ReadPlan {
        schema,
        partition_columns,
    })
}

/// Every row of `files` (one frame per file, in order), shaped to the table's schema or to the
/// projected `columns`, partition values included.
pub(crate) fn read_files(
    table: &DeltaTable,
    files: Vec<DataFile>,
    columns: Option<&[String]>,
) -> Result<BoxStream<'static, Result<DataFrame, StepError>>, StepError> {
    Ok(stream(table, files, read_plan(table, columns)?))
}

/// Opens the table at the step's version or timestamp and plans the read.
async fn open(
    options: &DeltaExtractOptions,
    url: Url,
    storage: HashMap<String, String>,
) -> Result<(DeltaTable, Vec<DataFile>, ReadPlan), StepError> {
    let at = TableAt::from_options(options.version, options.timestamp.as_deref())?;
    let table = open_table(url, storage, at).await?;
    check_readable(&table)?;
    let files = table_files(&table, &options.partitions)?;
    let plan = read_plan(&table, options.columns.as_deref())?;
    Ok((table, files, plan))
}

/// Reads a whole local Delta table (latest version) into one DataFrame.
pub async fn read_delta_table(path: &std::path::Path) -> Result<DataFrame, StepError> {
    read_delta_location(&path.to_string_lossy(), HashMap::new()).await
}

/// Reads a whole Delta table (latest version) into one DataFrame. `location` is a local
/// directory or a table URL; `storage` its storage options.
pub async fn read_delta_location(
    location: &str,
    storage: HashMap<String, String>,
) -> Result<DataFrame, StepError> {
    let url = if location.contains("://") {
        Url::parse(location).map_err(|e| StepError::user(format!("{location}: {e}")))?
    } else {
        let path = std::path::Path::new(location)
            .canonicalize()
            .map_err(|e| StepError::user(format!("{location}: {e}")))?;
        Url::from_directory_path(&path)
            .map_err(|_| StepError::user(format!("invalid table path {location}")))?
    };
    let options = DeltaExtractOptions {
        path: location.to_string(),
        version: None,
        timestamp: None,
        columns: None,
        partitions: BTreeMap::new(),
    };
    let (table, files, plan) = open(&options, url, storage).await?;
    let mut frames = stream(&table, files, plan.clone());
    let mut out = DataFrame::empty_with_schema(&plan.schema);
    while let Some(df) = frames.next().await {
        out.vstack_mut_owned(df?).step_err("stacking table files")?;
    }
    Ok(out)
}

fn stream(
    table: &DeltaTable,
    files: Vec<DataFile>,
    plan: ReadPlan,
) -> BoxStream<'static, Result<DataFrame, StepError>> {
    let store: Arc<dyn ObjectStore> = table.log_store().object_store(None);
    let plan = Arc::new(plan);
    futures::stream::iter(files)
        .map(move |file| {
            let store = store.clone();
            let plan = plan.clone();
            async move {
                let path = deltalake::Path::parse(&file.path)
                    .unwrap_or_else(|_| deltalake::Path::from(file.path.as_str()));
                let read_error = |e: object_store::Error| match e {
                    // A file the log references and the store lacks: a listing that lags
                    // behind (some S3-compatible stores) or a file removed under the table.
                    object_store::Error::NotFound { .. } => StepError::transient(format!(
                        "reading {}: the data file the table's log references is missing",
                        file.path
                    ))
                    .with_hint("if it does not reappear, the table was damaged (a file deleted outside Delta); restore it or run pipectl delta vacuum/optimize on a healthy copy"),
                    e => crate::s3::store_error(e, &format!("reading {}", file.path)),
                };
                let bytes = store
                    .get(&path)
                    .await
                    .map_err(read_error)?
                    .bytes()
                    .await
                    .map_err(read_error)?;
                pipeline_data::blocking(move || decode(bytes, &file, &plan)).await
            }
        })
        .buffered(PREFETCH)
        .boxed()
}

#[async_trait]
impl Source for DeltaSource {
    async fn next_batch(&mut self) -> Result<Option<Batch>, StepError> {
        match self.frames.next().await {
            Some(df) => Ok(Some(Batch::Frame(df?))),
            None => Ok(self.empty.take().map(Batch::Frame)),
        }
    }
}

impl ExtractMethods {
    /// Reads a Delta table, one batch per data file.
    pub async fn delta(
        options: DeltaExtractOptions,
        setup: StepSetup,
    ) -> Result<Box<dyn Source>, StepError> {
        let url = table_url(&setup, &options.path, false)?;
        let (table, files, plan) = open(&options, url, storage_options(&setup)?).await?;
        tracing::info!(step = %setup.step, files = files.len(), version = table.version().unwrap_or_default(), "reading Delta table");
        let empty = files
            .is_empty()
            .then(|| DataFrame::empty_with_schema(&plan.schema));
        Ok(Box::new(DeltaSource {
            frames: stream(&table, files, plan),
            empty,
        }))
    }
}
