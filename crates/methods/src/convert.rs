//! Declared format conversions between DataFrame and Avro.

use crate::UserMethods;
use async_trait::async_trait;
use pipeline_base::StepError;
use pipeline_data::method::MethodOptions;
use pipeline_data::{Batch, Operator, RunContext, StepSetup, avro};
use schemars::JsonSchema;
use serde::Deserialize;

/// Options of `to_avro`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToAvroOptions {
    /// Name of the Avro record schema.
    #[serde(default = "default_record_name")]
    pub record_name: String,
}

fn default_record_name() -> String {
    avro::DEFAULT_RECORD_NAME.to_string()
}

impl MethodOptions for ToAvroOptions {}

/// Options of `to_dataframe` (none).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToDataFrameOptions {}

impl MethodOptions for ToDataFrameOptions {}

struct ToAvro(String);

#[async_trait]
impl Operator for ToAvro {
    async fn push(&mut self, batch: Batch, _: &RunContext) -> Result<Vec<Batch>, StepError> {
        let df = batch.into_frame()?;
        Ok(vec![Batch::Avro(avro::frame_to_avro(&df, &self.0)?)])
    }
}

struct ToFrame;

#[async_trait]
impl Operator for ToFrame {
    async fn push(&mut self, batch: Batch, _: &RunContext) -> Result<Vec<Batch>, StepError> {
        Ok(vec![Batch::Frame(batch.into_frame()?)])
    }
}

impl UserMethods {
    /// DataFrame → Avro.
    pub fn to_avro(options: ToAvroOptions, _: StepSetup) -> Result<Box<dyn Operator>, StepError> {
        Ok(Box::new(ToAvro(options.record_name)))
    }

    /// Avro → DataFrame.
    pub fn to_dataframe(
        _: ToDataFrameOptions,
        _: StepSetup,
    ) -> Result<Box<dyn Operator>, StepError> {
        Ok(Box::new(ToFrame))
    }
}
