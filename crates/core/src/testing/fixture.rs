//! The two methods a pipeline test runs with instead of real systems: `fixture` (an extract
//! yielding the test's rows: inline JSON rows or a local CSV / JSON-lines / Parquet file, cast
//! to the given types) and `capture` (a load keeping what reaches it, under a key, for the
//! expectations). Also the conversions between JSON rows and DataFrames both use.

use async_trait::async_trait;
use indexmap::IndexMap;
use pipeline_base::StepError;
use pipeline_data::method::MethodOptions;
use pipeline_data::polars::prelude::*;
use pipeline_data::{Batch, CommitOutcome, PolarsResultExt, Sink, Source, StepSetup};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Options of the `fixture` extract (written by the test runner from a test case).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FixtureOptions {
    /// Rows as JSON objects.
    #[serde(default)]
    pub rows: Option<Vec<Map<String, Value>>>,
    /// A local CSV, JSON-lines or Parquet file (relative to the test file, made absolute by the runner).
    #[serde(default)]
    pub file: Option<String>,
    /// Column types (`int64`, `date`, `datetime[us, UTC]`, `decimal(10,2)`, ...), as `cast` takes them.
    #[serde(default)]
    pub schema: IndexMap<String, String>,
}

impl MethodOptions for FixtureOptions {}

/// Options of the `capture` load.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureOptions {
    pub key: String,
}

impl MethodOptions for CaptureOptions {}

fn captured() -> &'static Mutex<HashMap<String, Vec<DataFrame>>> {
    static C: OnceLock<Mutex<HashMap<String, Vec<DataFrame>>>> = OnceLock::new();
    C.get_or_init(Default::default)
}

/// What reached the capture load `key` (all its frames stacked), taken out of the store.
pub(crate) fn take_captured(key: &str) -> Option<DataFrame> {
    let frames = captured().lock().ok()?.remove(key)?;
    let mut iter = frames.into_iter();
    let mut out = iter.next()?;
    for f in iter {
        // Frames of one stream share a schema; a mismatch keeps what stacked.
        if out.vstack_mut_owned(f).is_err() {
            break;
        }
    }
    Some(out)
}

/// A DataFrame from JSON rows: columns in order of first appearance; a column of integers is
/// int64, of numbers float64, of booleans bool, anything else text (objects and arrays as JSON).
pub fn rows_to_frame(rows: &[Map<String, Value>]) -> Result<DataFrame, StepError> {
    let mut names: Vec<&str> = Vec::new();
    for r in rows {
        for k in r.keys() {
            if !names.contains(&k.as_str()) {
                names.push(k);
            }
        }
    }
    let mut columns = Vec::with_capacity(names.len());
    for name in names {
        let values: Vec<&Value> = rows
            .iter()
            .map(|r| r.get(name).unwrap_or(&Value::Null))
            .collect();
        let present = values.iter().filter(|v| !v.is_null());
        let all = |f: fn(&Value) -> bool| present.clone().all(|v| f(v));
        let column = if present.clone().count() == 0 {
            Column::full_null(name.into(), rows.len(), &DataType::String)
        } else if all(|v| v.is_i64()) {
            Column::new(
                name.into(),
                values.iter().map(|v| v.as_i64()).collect::<Vec<_>>(),
            )
        } else if all(Value::is_number) {
            Column::new(
                name.into(),
                values.iter().map(|v| v.as_f64()).collect::<Vec<_>>(),
            )
        } else if all(Value::is_boolean) {
            Column::new(
                name.into(),
                values.iter().map(|v| v.as_bool()).collect::<Vec<_>>(),
            )
        } else {
            let text: Vec<Option<String>> = values
                .iter()
                .map(|v| match v {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                })
                .collect();
            Column::new(name.into(), text)
        };
        columns.push(column);
    }
    DataFrame::new(rows.len(), columns).step_err("building the fixture rows")
}

/// A fixture file, read by the `s3` extract's own local reader (format from the extension).
async fn read_file(path: &str, setup: StepSetup) -> Result<DataFrame, StepError> {
    let options: pipeline_connectors::S3ExtractOptions =
        serde_json::from_value(serde_json::json!({ "path": path }))
            .map_err(|e| StepError::internal(format!("fixture file options: {e}")))?;
    let mut source = pipeline_connectors::ExtractMethods::s3(options, setup)
        .await
        .map_err(|e| e.context(format!("fixture file {path}")))?;
    let mut out: Option<DataFrame> = None;
    while let Some(batch) = source.next_batch().await? {
        let Batch::Frame(df) = batch else {
            return Err(StepError::internal("a fixture file gave Avro bytes"));
        };
        match &mut out {
            None => out = Some(df),
            Some(acc) => {
                acc.vstack_mut_owned(df)
                    .step_err("stacking the fixture file")?;
            }
        }
    }
    Ok(out.unwrap_or_default())
}

/// Text columns meant as dates or datetimes (RFC 3339, `YYYY-MM-DD HH:MM:SS[.f]`, or a date)
/// parsed here, so fixtures read like the JSON users write.
fn parse_temporal_text(
    mut df: DataFrame,
    schema: &IndexMap<String, String>,
) -> Result<DataFrame, StepError> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    for (name, type_name) in schema {
        let Some(target) = pipeline_methods::parse_type(type_name) else {
            continue;
        };
        let Ok(column) = df.column(name.as_str()) else {
            continue;
        };
        let Ok(text) = column.str() else {
            continue;
        };
        let bad = |v: &str| {
            StepError::user(format!(
                "fixture column \"{name}\": \"{v}\" is not a {type_name}"
            ))
        };
        let parsed: Column = match &target {
            DataType::Date => {
                let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
                let days: Vec<Option<i32>> = text
                    .iter()
                    .map(|v| {
                        v.map(|s| {
                            NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d")
                                .map(|d| i32::try_from((d - epoch).num_days()).unwrap_or(i32::MAX))
                                .map_err(|_| bad(s))
                        })
                        .transpose()
                    })
                    .collect::<Result<_, _>>()?;
                Column::new(name.as_str().into(), days)
                    .cast(&DataType::Date)
                    .step_err("dates")?
            }
            DataType::Datetime(unit, _) => {
                let micros: Vec<Option<i64>> = text
                    .iter()
                    .map(|v| {
                        v.map(|s| {
                            let t = s.trim();
                            DateTime::parse_from_rfc3339(t)
                                .map(|d| d.naive_utc())
                                .or_else(|_| {
                                    NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
                                })
                                .or_else(|_| {
                                    NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f")
                                })
                                .or_else(|_| {
                                    NaiveDate::parse_from_str(t, "%Y-%m-%d")
                                        .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default())
                                })
                                .map(|d| d.and_utc().timestamp_micros())
                                .map_err(|_| bad(s))
                        })
                        .transpose()
                    })
                    .collect::<Result<_, _>>()?;
                let us = Column::new(name.as_str().into(), micros)
                    .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
                    .step_err("datetimes")?;
                // The time zone (if any) and unit come from the cast below.
                if *unit == TimeUnit::Microseconds {
                    us
                } else {
                    us.cast(&DataType::Datetime(*unit, None))
                        .step_err("datetimes")?
                }
            }
            _ => continue,
        };
        df.with_column(parsed).step_err("fixture datetimes")?;
    }
    Ok(df)
}

struct FixtureSource(Option<DataFrame>);

#[async_trait]
impl Source for FixtureSource {
    async fn next_batch(&mut self) -> Result<Option<Batch>, StepError> {
        Ok(self.0.take().map(Batch::Frame))
    }
}

/// The `fixture` extract.
pub(crate) async fn fixture(
    o: FixtureOptions,
    setup: StepSetup,
) -> Result<Box<dyn Source>, StepError> {
    let df = match (&o.rows, &o.file) {
        (Some(rows), None) => rows_to_frame(rows)?,
        (None, Some(file)) => read_file(file, setup).await?,
        _ => {
            return Err(StepError::user(
                "a fixture gives either \"rows\" or \"file\"",
            ));
        }
    };
    let df = if o.schema.is_empty() {
        df
    } else {
        let df = parse_temporal_text(df, &o.schema)?;
        let cast = pipeline_methods::CastOptions {
            columns: o.schema.clone(),
            strict: true,
        };
        pipeline_methods::UserMethods::cast(df, &cast)
            .map_err(|e| e.context("casting the fixture to its schema"))?
    };
    Ok(Box::new(FixtureSource(Some(df))))
}

struct Capture {
    key: String,
    frames: Vec<DataFrame>,
}

#[async_trait]
impl Sink for Capture {
    async fn write(&mut self, df: DataFrame) -> Result<(), StepError> {
        self.frames.push(df);
        Ok(())
    }

    async fn prepare(&mut self) -> Result<(), StepError> {
        Ok(())
    }

    async fn commit(&mut self) -> Result<CommitOutcome, StepError> {
        let frames = std::mem::take(&mut self.frames);
        if let Ok(mut c) = captured().lock() {
            c.entry(self.key.clone()).or_default().extend(frames);
        }
        Ok(CommitOutcome::Published)
    }

    async fn abort(&mut self) {
        // A failed run still shows what reached the step.
        let frames = std::mem::take(&mut self.frames);
        if let Ok(mut c) = captured().lock() {
            c.entry(self.key.clone()).or_default().extend(frames);
        }
    }
}

/// The `capture` load.
pub(crate) async fn capture(o: CaptureOptions, _: StepSetup) -> Result<Box<dyn Sink>, StepError> {
    Ok(Box::new(Capture {
        key: o.key,
        frames: Vec::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_rows_become_typed_columns() {
        let rows: Vec<Map<String, Value>> = serde_json::from_value(json!([
            {"id": 1, "amount": 2.5, "ok": true, "name": "a"},
            {"id": 2, "amount": 3, "name": null, "extra": {"x": 1}}
        ]))
        .unwrap();
        let df = rows_to_frame(&rows).unwrap();
        let types: Vec<String> = df.dtypes().iter().map(|t| t.to_string()).collect();
        assert_eq!(types, ["i64", "f64", "bool", "str", "str"]);
        assert_eq!(df.column("ok").unwrap().null_count(), 1);
        assert_eq!(
            df.column("extra").unwrap().str().unwrap().get(1),
            Some("{\"x\":1}")
        );
    }
}
