//! Lossless DataFrame ↔ Avro conversion.
//!
//! Every column becomes a nullable field (`["null", T]`). Polars types map to Avro types and
//! logical types (int, long, float, double, boolean, string, bytes, date, decimal,
//! timestamp-*/local-timestamp-*); two custom field attributes carry what Avro cannot say, so that
//! a round trip gives back the same DataFrame:
//! - `pipectl.dtype`: the exact Polars type (`i8`, `u32`, `datetime[us, Europe/Paris]`, ...);
//! - `pipectl.column`: the original column name when it is not a valid Avro name.
//!
//! Time-zone-aware datetimes are written as Avro `timestamp-*` (UTC instants) and naive ones as
//! `local-timestamp-*`. Avro files written by other tools are read with the natural mapping.
//! Writing encodes blocks of at most 65,536 rows straight from each column (no value per cell;
//! `AvroEncoder` lets a file grow block by block), and the record name is never empty.

mod blocks;
mod decode;
mod encode;

pub use blocks::BlockReader;
pub use decode::avro_to_frame;
pub use encode::{AvroEncoder, frame_to_avro, frame_to_avro_records};

/// Record name used when a step does not give one.
pub const DEFAULT_RECORD_NAME: &str = "pipectl_record";

pub(crate) const ATTR_DTYPE: &str = "pipectl.dtype";
pub(crate) const ATTR_COLUMN: &str = "pipectl.column";

/// Makes a column name a valid Avro name (`[A-Za-z_][A-Za-z0-9_]*`).
pub(crate) fn avro_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.as_bytes()[0].is_ascii_digit() {
        out.insert(0, '_');
    }
    out
}

#[cfg(test)]
mod tests;
