//! `generate`: deterministic mocked order rows from a seed, for the quickstart, tests and
//! benchmarks. Row `i` depends only on the seed and `i`, never on the batch size.

use crate::ExtractMethods;
use async_trait::async_trait;
use pipeline_base::StepError;
use pipeline_data::method::MethodOptions;
use pipeline_data::polars::prelude::*;
use pipeline_data::{Batch, OptionsError, PolarsResultExt, Source, StepSetup};
use schemars::JsonSchema;
use serde::Deserialize;

/// Which mocked data set `generate` produces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GeneratedDataset {
    /// `order_id` (i64, 1..=rows), `customer_id` (i64 in 1..=50,000, null in about
    /// `null_fraction` of rows), `amount` (f64, 0.01 to 1000.00, negative for refunds),
    /// `status` (paid, pending, refunded, cancelled), `created_at` (UTC timestamp, µs).
    #[default]
    Orders,
    /// `customer_id` (i64, 1..=rows), `name`, `country` (FR, DE, US, GB, ES, IT),
    /// `tier` (gold, silver, bronze), `signup_date` (date).
    Customers,
}

/// Options of `generate`: deterministic mocked rows.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateOptions {
    /// `orders` (default) or `customers`.
    #[serde(default)]
    pub dataset: GeneratedDataset,
    /// Number of rows to produce.
    #[serde(default = "default_rows")]
    pub rows: u64,
    /// Seed of the pseudo-random values.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Rows per batch handed to the next step.
    #[serde(default = "default_batch_size")]
    pub batch_size: u64,
    /// Fraction of rows whose `customer_id` is null (0 to 1).
    #[serde(default = "default_null_fraction")]
    pub null_fraction: f64,
}

fn default_rows() -> u64 {
    1000
}
fn default_seed() -> u64 {
    42
}
fn default_batch_size() -> u64 {
    131_072
}
fn default_null_fraction() -> f64 {
    0.01
}

impl MethodOptions for GenerateOptions {
    fn check(&self) -> Result<(), OptionsError> {
        if self.batch_size == 0 {
            return Err(OptionsError::new(
                "/batch_size",
                "batch_size must be at least 1",
            ));
        }
        if !(0.0..=1.0).contains(&self.null_fraction) {
            return Err(OptionsError::new(
                "/null_fraction",
                "null_fraction must be between 0 and 1",
            ));
        }
        Ok(())
    }
}

/// SplitMix64: a fast, well-mixed hash of (seed, row).
fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const STATUSES: [&str; 4] = ["paid", "pending", "refunded", "cancelled"];
const START_US: i64 = 1_735_689_600_000_000; // 2025-01-01T00:00:00Z

/// Rows `start..start + len` of the generated data set.
pub fn generate_frame(
    options: &GenerateOptions,
    start: u64,
    len: u64,
) -> Result<DataFrame, StepError> {
    generate_columns(options, start, len, None)
}

/// As [`generate_frame`], with only `columns` (those of the data set's columns it names, in
/// the data set's order) when given: a column no later step reads is never made.
fn generate_columns(
    options: &GenerateOptions,
    start: u64,
    len: u64,
    columns: Option<&[String]>,
) -> Result<DataFrame, StepError> {
    let wanted = |name: &str| columns.is_none_or(|c| c.iter().any(|w| w == name));
    let df = match options.dataset {
        GeneratedDataset::Orders => orders(options, start, len)?,
        GeneratedDataset::Customers => customers(options, start, len, wanted("name"))?,
    };
    if columns.is_none() {
        return Ok(df);
    }
    let keep: Vec<PlSmallStr> = df
        .get_column_names()
        .into_iter()
        .filter(|n| wanted(n.as_str()))
        .cloned()
        .collect();
    df.select(keep).step_err("generate")
}

/// The columns of each data set, in order.
const ORDER_COLUMNS: [&str; 5] = ["order_id", "customer_id", "amount", "status", "created_at"];
const CUSTOMER_COLUMNS: [&str; 5] = ["customer_id", "name", "country", "tier", "signup_date"];

const COUNTRIES: [&str; 6] = ["FR", "DE", "US", "GB", "ES", "IT"];
const TIERS: [&str; 3] = ["gold", "silver", "bronze"];

// Row numbers are below the `rows` option, which validation bounds (far below 2^53), and the
// hash is reduced modulo small constants before any sum: nothing here can overflow, and the
// array indexes are `% len` of the array.
#[allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]
fn customers(
    options: &GenerateOptions,
    start: u64,
    len: u64,
    with_names: bool,
) -> Result<DataFrame, StepError> {
    let n = len as usize;
    let mut id = Vec::with_capacity(n);
    // The names are the one costly column (a string each): not made when no later step reads
    // them.
    let mut name: Vec<String> = Vec::with_capacity(if with_names { n } else { 0 });
    let mut country = Vec::with_capacity(n);
    let mut tier = Vec::with_capacity(n);
    let mut signup = Vec::with_capacity(n);
    for i in start..start + len {
        let h = mix(options.seed ^ 0xC057, i);
        id.push(i as i64 + 1);
        if with_names {
            name.push(format!("customer {}", i + 1));
        }
        country.push(COUNTRIES[(h % 6) as usize]);
        tier.push(TIERS[((h >> 8) % 3) as usize]);
        signup.push(19_000 + ((h >> 16) % 1_500) as i32);
    }
    let signup = Int32Chunked::from_vec("signup_date".into(), signup)
        .into_date()
        .into_series();
    let mut columns = vec![Column::new("customer_id".into(), id)];
    if with_names {
        columns.push(Column::new("name".into(), name));
    }
    columns.extend([
        Column::new("country".into(), country),
        Column::new("tier".into(), tier),
        signup.into_column(),
    ]);
    DataFrame::new(n, columns).step_err("generate")
}

// As in `customers`: bounded row numbers, reduced hashes, indexes within the array.
#[allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]
fn orders(options: &GenerateOptions, start: u64, len: u64) -> Result<DataFrame, StepError> {
    let n = len as usize;
    let mut order_id = Vec::with_capacity(n);
    let mut customer = Vec::with_capacity(n);
    let mut amount = Vec::with_capacity(n);
    let mut status: Vec<&str> = Vec::with_capacity(n);
    let mut created = Vec::with_capacity(n);
    let null_below = (options.null_fraction * 10_000.0) as u64;
    for i in start..start + len {
        let h = mix(options.seed, i);
        order_id.push(i as i64 + 1);
        customer.push(if (h % 10_000) < null_below {
            None
        } else {
            Some(((h >> 16) % 50_000) as i64 + 1)
        });
        let cents = ((h >> 24) % 100_000) as f64 + 1.0;
        let s = STATUSES[match (h >> 40) % 10 {
            0..=5 => 0,
            6 | 7 => 1,
            8 => 2,
            _ => 3,
        }];
        amount.push(if s == "refunded" {
            -cents / 100.0
        } else {
            cents / 100.0
        });
        status.push(s);
        created.push(START_US + i as i64 * 1_000_000 + ((h >> 48) % 1_000_000) as i64);
    }
    let created = Int64Chunked::from_vec("created_at".into(), created)
        .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
        .into_series();
    DataFrame::new(
        n,
        vec![
            Column::new("order_id".into(), order_id),
            Column::new("customer_id".into(), customer),
            Column::new("amount".into(), amount),
            Column::new("status".into(), status),
            created.into_column(),
        ],
    )
    .step_err("generate")
}

struct Generate {
    options: GenerateOptions,
    /// The columns later steps read (`None`: all).
    columns: Option<Vec<String>>,
    next: u64,
    emitted: bool,
}

#[async_trait]
impl Source for Generate {
    async fn next_batch(&mut self) -> Result<Option<Batch>, StepError> {
        // An empty source still yields one empty batch, so later steps see the schema.
        if self.next >= self.options.rows && self.emitted {
            return Ok(None);
        }
        let len = self.options.batch_size.min(self.options.rows - self.next);
        let df = generate_columns(&self.options, self.next, len, self.columns.as_deref())?;
        self.next += len;
        self.emitted = true;
        Ok(Some(Batch::Frame(df)))
    }

    fn total_rows(&self) -> Option<u64> {
        Some(self.options.rows)
    }

    fn left_out(&self) -> Vec<String> {
        let Some(wanted) = &self.columns else {
            return Vec::new();
        };
        let all: &[&str] = match self.options.dataset {
            GeneratedDataset::Orders => &ORDER_COLUMNS,
            GeneratedDataset::Customers => &CUSTOMER_COLUMNS,
        };
        all.iter()
            .filter(|c| !wanted.iter().any(|w| w == *c))
            .map(|c| c.to_string())
            .collect()
    }
}

impl ExtractMethods {
    /// Deterministic mocked orders.
    pub async fn generate(
        options: GenerateOptions,
        setup: StepSetup,
    ) -> Result<Box<dyn Source>, StepError> {
        Ok(Box::new(Generate {
            options,
            columns: setup.columns,
            next: 0,
            emitted: false,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(rows: u64, batch_size: u64) -> GenerateOptions {
        GenerateOptions {
            dataset: GeneratedDataset::Orders,
            rows,
            seed: 7,
            batch_size,
            null_fraction: 0.1,
        }
    }

    #[test]
    fn only_the_columns_read_later_are_made() {
        let mut o = opts(50, 50);
        o.dataset = GeneratedDataset::Customers;
        let all = generate_frame(&o, 0, 50).unwrap();
        let wanted = ["tier".to_string(), "customer_id".to_string()];
        let some = generate_columns(&o, 0, 50, Some(&wanted)).unwrap();
        assert_eq!(some.get_column_names(), ["customer_id", "tier"]);
        assert!(some.equals(&all.select(["customer_id", "tier"]).unwrap()));
        let named = generate_columns(&o, 0, 50, Some(&["name".to_string()])).unwrap();
        assert!(named.equals(&all.select(["name"]).unwrap()));
        assert_eq!(all.get_column_names(), CUSTOMER_COLUMNS);
        let orders = generate_frame(&opts(5, 5), 0, 5).unwrap();
        assert_eq!(orders.get_column_names(), ORDER_COLUMNS);
        let src = Generate {
            options: o,
            columns: Some(wanted.to_vec()),
            next: 0,
            emitted: false,
        };
        assert_eq!(src.left_out(), ["name", "country", "signup_date"]);
    }

    #[test]
    fn rows_do_not_depend_on_batch_size() {
        let whole = generate_frame(&opts(1000, 1000), 0, 1000).unwrap();
        let mut parts = generate_frame(&opts(1000, 300), 0, 300).unwrap();
        parts
            .vstack_mut_owned(generate_frame(&opts(1000, 300), 300, 700).unwrap())
            .unwrap();
        assert!(whole.equals_missing(&parts));
        assert_eq!(
            whole.column("order_id").unwrap().i64().unwrap().get(999),
            Some(1000)
        );
    }

    #[test]
    fn customers_have_unique_ids() {
        let o = GenerateOptions {
            dataset: GeneratedDataset::Customers,
            ..opts(100, 100)
        };
        let df = generate_frame(&o, 0, 100).unwrap();
        assert_eq!(
            df.get_column_names(),
            ["customer_id", "name", "country", "tier", "signup_date"]
        );
        assert_eq!(df.column("customer_id").unwrap().n_unique().unwrap(), 100);
    }

    #[test]
    fn about_the_requested_fraction_is_null() {
        let df = generate_frame(&opts(100_000, 100_000), 0, 100_000).unwrap();
        let nulls = df.column("customer_id").unwrap().null_count();
        assert!((9_000..11_000).contains(&nulls), "{nulls}");
    }

    #[tokio::test]
    async fn batches_and_the_empty_case() {
        let mut src = Generate {
            options: opts(250, 100),
            columns: None,
            next: 0,
            emitted: false,
        };
        let mut sizes = vec![];
        while let Some(b) = src.next_batch().await.unwrap() {
            sizes.push(b.rows());
        }
        assert_eq!(sizes, vec![100, 100, 50]);
        let mut empty = Generate {
            options: opts(0, 100),
            columns: None,
            next: 0,
            emitted: false,
        };
        let first = empty.next_batch().await.unwrap().unwrap();
        assert_eq!(first.rows(), 0);
        assert!(empty.next_batch().await.unwrap().is_none());
    }
}
