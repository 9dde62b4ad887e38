//! The unit of data passed between steps.

use crate::avro;
use pipeline_base::{Format, StepError};
use polars::prelude::DataFrame;

/// Avro records in an object container file (the schema travels with the data).
#[derive(Clone)]
pub struct AvroBatch {
    bytes: Vec<u8>,
    rows: usize,
}

impl AvroBatch {
    pub fn new(bytes: Vec<u8>, rows: usize) -> Self {
        AvroBatch { bytes, rows }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

impl std::fmt::Debug for AvroBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AvroBatch({} rows, {} bytes)",
            self.rows,
            self.bytes.len()
        )
    }
}

/// One batch of rows in one of the two inter-step formats.
#[derive(Clone, Debug)]
pub enum Batch {
    Frame(DataFrame),
    Avro(AvroBatch),
}

impl Batch {
    pub fn rows(&self) -> usize {
        match self {
            Batch::Frame(df) => df.height(),
            Batch::Avro(a) => a.rows(),
        }
    }

    pub fn format(&self) -> Format {
        match self {
            Batch::Frame(_) => Format::DataFrame,
            Batch::Avro(_) => Format::Avro,
        }
    }

    /// Approximate size in memory, for byte counters.
    pub fn size_bytes(&self) -> usize {
        match self {
            Batch::Frame(df) => df.estimated_size(),
            Batch::Avro(a) => a.bytes().len(),
        }
    }

    /// The batch as a DataFrame, decoding Avro when needed.
    pub fn into_frame(self) -> Result<DataFrame, StepError> {
        match self {
            Batch::Frame(df) => Ok(df),
            Batch::Avro(a) => avro::avro_to_frame(&a),
        }
    }

    /// The batch as Avro, encoding a DataFrame when needed.
    pub fn into_avro(self) -> Result<AvroBatch, StepError> {
        match self {
            Batch::Frame(df) => avro::frame_to_avro(&df, avro::DEFAULT_RECORD_NAME),
            Batch::Avro(a) => Ok(a),
        }
    }

    /// Converts to the given format.
    pub fn convert(self, to: Format) -> Result<Batch, StepError> {
        Ok(match to {
            Format::DataFrame => Batch::Frame(self.into_frame()?),
            Format::Avro => Batch::Avro(self.into_avro()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::*;

    #[test]
    fn batches_convert_between_the_two_formats() {
        let df = df!("id" => [1i64, 2, 3], "name" => [Some("a"), None, Some("c")]).unwrap();
        let frame = Batch::Frame(df.clone());
        assert_eq!((frame.rows(), frame.format()), (3, Format::DataFrame));
        assert!(frame.size_bytes() > 0);
        let avro = frame.convert(Format::Avro).unwrap();
        assert_eq!((avro.rows(), avro.format()), (3, Format::Avro));
        let Batch::Avro(a) = avro.clone() else {
            panic!("not Avro")
        };
        assert_eq!(avro.size_bytes(), a.bytes().len());
        assert_eq!(
            format!("{a:?}"),
            format!("AvroBatch(3 rows, {} bytes)", a.bytes().len())
        );
        let back = avro
            .convert(Format::DataFrame)
            .unwrap()
            .into_frame()
            .unwrap();
        assert!(back.equals_missing(&df));
        let same = Batch::Avro(a.clone()).into_avro().unwrap();
        assert_eq!(same.rows(), 3);
        assert_eq!(AvroBatch::new(a.into_bytes(), 3).rows(), 3);
    }
}
