//! Reading a Delta table: load the snapshot, then stream its Parquet files one batch each.

use super::{DeltaExtractOptions, delta_error, storage_options, table_url};
use crate::ExtractMethods;
use async_trait::async_trait;
use deltalake::DeltaTableBuilder;
use pipeline_base::StepError;
use pipeline_data::polars::prelude::*;
use pipeline_data::{Batch, PolarsResultExt, Source, StepSetup};
use std::collections::HashMap;
use std::path::PathBuf;
use url::Url;

struct DeltaSource {
    files: std::vec::IntoIter<PathBuf>,
    schema: Schema,
    empty_schema: Option<DataFrame>,
}

/// The table's columns (in the table's order) with their types, taken from the data files.
/// Files written before a schema evolution lack the newer columns.
fn table_schema(names: &[String], files: &[PathBuf]) -> Result<Schema, StepError> {
    let mut types: PlHashMap<PlSmallStr, DataType> = PlHashMap::new();
    for f in files {
        let file = std::fs::File::open(f)
            .map_err(|e| StepError::transient(format!("opening {}: {e}", f.display())))?;
        let arrow = ParquetReader::new(file)
            .schema()
            .step_err(&format!("reading the schema of {}", f.display()))?;
        for (name, field) in arrow.iter() {
            types
                .entry(name.clone())
                .or_insert_with(|| DataType::from_arrow_field(field));
        }
        if names.iter().all(|n| types.contains_key(n.as_str())) {
            break;
        }
    }
    Ok(names
        .iter()
        .map(|n| {
            (
                PlSmallStr::from(n.as_str()),
                types.get(n.as_str()).cloned().unwrap_or(DataType::Null),
            )
        })
        .collect())
}

/// A file's rows shaped to the table's schema (missing columns as typed nulls).
fn align(df: DataFrame, schema: &Schema) -> Result<DataFrame, StepError> {
    if df.schema().as_ref() == schema {
        return Ok(df);
    }
    let columns: Vec<Expr> = schema
        .iter()
        .map(|(name, dtype)| {
            if df.schema().contains(name) {
                col(name.clone())
            } else {
                lit(NULL).cast(dtype.clone()).alias(name.clone())
            }
        })
        .collect();
    df.lazy()
        .select(columns)
        .collect()
        .step_err("aligning a data file to the table schema")
}

/// The local Parquet files of a table version.
async fn table_files(
    url: Url,
    options: HashMap<String, String>,
    version: Option<u64>,
) -> Result<(Vec<PathBuf>, u64, Vec<String>), StepError> {
    let location = url.to_string();
    let mut builder = DeltaTableBuilder::from_url(url)
        .map_err(|e| delta_error(e, &format!("opening Delta table {location}")))?
        .with_storage_options(options);
    if let Some(v) = version {
        builder = builder.with_version(v);
    }
    let table = builder
        .load()
        .await
        .map_err(|e| delta_error(e, &format!("loading Delta table {location}")))?;
    let version = table.version().unwrap_or_default();
    let names: Vec<String> = table
        .snapshot()
        .map_err(|e| delta_error(e, "reading the table schema"))?
        .schema()
        .fields()
        .map(|f| f.name().to_string())
        .collect();
    let uris: Vec<String> = table
        .get_file_uris()
        .map_err(|e| delta_error(e, "listing table files"))?
        .collect();
    let mut files = Vec::with_capacity(uris.len());
    for uri in uris {
        let path = match Url::parse(&uri) {
            Ok(u) if u.scheme() == "file" => u
                .to_file_path()
                .map_err(|_| StepError::internal(format!("bad file URI {uri}")))?,
            Ok(u) => {
                return Err(StepError::user(format!(
                    "reading {} tables is not supported yet",
                    u.scheme()
                ))
                .with_hint("only local Delta tables can be read in this version"));
            }
            Err(_) => PathBuf::from(uri),
        };
        files.push(path);
    }
    Ok((files, version, names))
}

fn read_parquet(path: &PathBuf) -> Result<DataFrame, StepError> {
    let file = std::fs::File::open(path)
        .map_err(|e| StepError::transient(format!("opening {}: {e}", path.display())))?;
    ParquetReader::new(file)
        .finish()
        .step_err(&format!("reading {}", path.display()))
}

/// Reads a whole local Delta table (latest version) into one DataFrame.
pub async fn read_delta_table(path: &std::path::Path) -> Result<DataFrame, StepError> {
    let url = Url::from_directory_path(
        path.canonicalize()
            .map_err(|e| StepError::user(format!("{}: {e}", path.display())))?,
    )
    .map_err(|_| StepError::user(format!("invalid table path {}", path.display())))?;
    let (files, _, names) = table_files(url, HashMap::new(), None).await?;
    let schema = table_schema(&names, &files)?;
    let mut out: Option<DataFrame> = None;
    for f in &files {
        let df = align(read_parquet(f)?, &schema)?;
        match &mut out {
            None => out = Some(df),
            Some(acc) => {
                acc.vstack_mut_owned(df).step_err("stacking table files")?;
            }
        }
    }
    Ok(out.unwrap_or_default())
}

#[async_trait]
impl Source for DeltaSource {
    async fn next_batch(&mut self) -> Result<Option<Batch>, StepError> {
        match self.files.next() {
            Some(path) => {
                let schema = self.schema.clone();
                let df =
                    pipeline_data::blocking(move || align(read_parquet(&path)?, &schema)).await?;
                Ok(Some(Batch::Frame(df)))
            }
            None => Ok(self.empty_schema.take().map(Batch::Frame)),
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
        let (files, version, names) =
            table_files(url, storage_options(&setup)?, options.version).await?;
        tracing::info!(step = %setup.step, files = files.len(), version, "reading Delta table");
        let schema = table_schema(&names, &files)?;
        let empty_schema = if files.is_empty() {
            Some(DataFrame::empty())
        } else {
            None
        };
        Ok(Box::new(DeltaSource {
            files: files.into_iter(),
            schema,
            empty_schema,
        }))
    }
}
