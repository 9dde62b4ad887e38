//! The columns a streamed join carries from its side input, kept compact for the whole run: a
//! text column with few distinct values (a country, a tier, a status) is held as one 32-bit
//! code per row and its distinct strings once, instead of 16 bytes per row, and decoded only
//! for the rows each batch takes. The output is the same text column.

use pipeline_base::StepError;
use pipeline_data::PolarsResultExt;
use pipeline_data::polars::prelude::*;

/// Dictionary-encode a text column only when it has at most one distinct value per this many
/// rows (below that the codes save little).
const ROWS_PER_VALUE: usize = 4;

enum Held {
    Plain(Column),
    /// Per row, the index of its string in `values` (the first value is null).
    Dict {
        name: PlSmallStr,
        codes: IdxCa,
        values: Column,
    },
}

/// The side input's payload columns, some dictionary-encoded.
pub(crate) struct Payload {
    columns: Vec<Held>,
}

impl Payload {
    pub(crate) fn new(df: &DataFrame) -> Self {
        Payload {
            columns: df.columns().iter().map(encode).collect(),
        }
    }

    /// The payload's rows at `idx` (null for a null index), decoded.
    pub(crate) fn take(&self, idx: &IdxCa) -> Result<DataFrame, StepError> {
        let mut out = Vec::with_capacity(self.columns.len());
        for held in &self.columns {
            out.push(match held {
                Held::Plain(c) => c.take(idx).step_err("join")?,
                Held::Dict {
                    name,
                    codes,
                    values,
                } => {
                    let picked = codes.take(idx).step_err("join")?;
                    values
                        .take(&picked)
                        .step_err("join")?
                        .with_name(name.clone())
                }
            });
        }
        DataFrame::new(idx.len(), out).step_err("join")
    }
}

/// A text column with few distinct values as codes and values; any other column as it is.
/// A null is one more value (the first), so that the codes themselves have no nulls.
fn encode(column: &Column) -> Held {
    let plain = || Held::Plain(column.clone());
    let Ok(text) = column.str() else {
        return plain();
    };
    let limit = text.len() / ROWS_PER_VALUE;
    let mut seen: PlHashMap<&str, IdxSize> = PlHashMap::new();
    let mut values: Vec<Option<&str>> = vec![None];
    let mut codes: Vec<IdxSize> = Vec::with_capacity(text.len());
    for v in text.iter() {
        let code = match v {
            None => 0,
            Some(v) => match seen.get(v) {
                Some(code) => *code,
                None => {
                    if values.len() > limit {
                        return plain();
                    }
                    let Ok(code) = IdxSize::try_from(values.len()) else {
                        return plain();
                    };
                    seen.insert(v, code);
                    values.push(Some(v));
                    code
                }
            },
        };
        codes.push(code);
    }
    let values: StringChunked = values.into_iter().collect();
    Held::Dict {
        name: column.name().clone(),
        codes: IdxCa::from_vec(PlSmallStr::EMPTY, codes),
        values: values.with_name(column.name().clone()).into_column(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repetitive_text_column_is_encoded_and_decodes_to_the_same_rows() {
        let n = 1000;
        let country: Vec<Option<&str>> = (0..n)
            .map(|i| match i % 5 {
                0 => None,
                1 => Some("FR"),
                2 => Some("a country name longer than twelve bytes"),
                _ => Some("DE"),
            })
            .collect();
        let unique: Vec<String> = (0..n).map(|i| format!("name {i}")).collect();
        let df = df!("country" => country, "name" => unique, "n" => (0..n).collect::<Vec<i64>>())
            .unwrap();
        let p = Payload::new(&df);
        assert!(
            matches!(p.columns[0], Held::Dict { .. }),
            "country is encoded"
        );
        assert!(
            matches!(p.columns[1], Held::Plain(_)),
            "unique names are not"
        );
        let idx: IdxCa = [Some(3), None, Some(0), Some(2), Some(999), Some(3)]
            .into_iter()
            .collect();
        let got = p.take(&idx).unwrap();
        let want = df.take(&idx).unwrap();
        assert_eq!(got.schema(), want.schema());
        assert!(got.equals_missing(&want), "{got}\n{want}");
    }
}
