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
    empty_schema: Option<DataFrame>,
}

/// The local Parquet files of a table version.
async fn table_files(
    url: Url,
    options: HashMap<String, String>,
    version: Option<u64>,
) -> Result<(Vec<PathBuf>, u64), StepError> {
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
    Ok((files, version))
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
    let (files, _) = table_files(url, HashMap::new(), None).await?;
    let mut out: Option<DataFrame> = None;
    for f in &files {
        let df = read_parquet(f)?;
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
            Some(path) => Ok(Some(Batch::Frame(
                pipeline_data::blocking(move || read_parquet(&path)).await?,
            ))),
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
        let (files, version) = table_files(url, storage_options(&setup), options.version).await?;
        tracing::info!(step = %setup.step, files = files.len(), version, "reading Delta table");
        let empty_schema = if files.is_empty() {
            Some(DataFrame::empty())
        } else {
            None
        };
        Ok(Box::new(DeltaSource {
            files: files.into_iter(),
            empty_schema,
        }))
    }
}
