//! A key index over a side input, built once per run, so that each batch of the main input is
//! matched against it in time proportional to the batch (not to the side input). Used by the
//! streamed `join` and by `referential_integrity`.
//!
//! Keys follow Polars' join rules: a null in any key column never matches, and both inputs'
//! key columns must have the same types. One integer-like key (integers, dates, datetimes,
//! durations, times) is indexed by its 64-bit value — in a direct-address table when the
//! values are dense (surrogate keys), else a hash map; any other key by an exact byte encoding
//! of its values.

// Row positions are below the frame's height, which fits u32 (checked in `build`); the byte
// encodings only push to vectors.
#![allow(clippy::arithmetic_side_effects)]

use pipeline_base::StepError;
use pipeline_data::PolarsResultExt;
use pipeline_data::polars::prelude::*;
use std::sync::{Arc, Mutex, Weak};

/// Ends a chain of rows with the same key.
const END: u32 = u32::MAX;

enum Heads {
    /// Integer keys within a range at most a few times the row count (surrogate keys): the
    /// first row of key `min + i` at position `i` (`END` where no row has it).
    Dense {
        min: i64,
        first: Vec<u32>,
    },
    Int(PlHashMap<i64, u32>),
    Bytes(PlHashMap<Box<[u8]>, u32>),
}

/// Rows of a frame by key (see the module doc).
pub(crate) struct KeyIndex {
    heads: Heads,
    /// The next row with the same key, in row order (`END` at the last); empty when every
    /// key is unique.
    next: Vec<u32>,
    dtypes: Vec<DataType>,
}

/// Whether a single key column of this type is indexed by its 64-bit value.
fn int_like(dtype: &DataType) -> bool {
    matches!(
        dtype,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::Date
            | DataType::Datetime(_, _)
            | DataType::Duration(_)
            | DataType::Time
    )
}

fn int_values(column: &Column, what: &str) -> Result<Int64Chunked, StepError> {
    let physical = column.to_physical_repr();
    let cast = physical.cast(&DataType::Int64).step_err(what)?;
    Ok(cast.i64().step_err(what)?.clone())
}

/// One key column, ready to encode its values.
enum Encoder {
    Int(Int64Chunked),
    UInt(UInt64Chunked),
    Float(Float64Chunked),
    Bool(BooleanChunked),
    Str(StringChunked),
    Bin(BinaryChunked),
}

impl Encoder {
    fn new(column: &Column, what: &str) -> Result<Self, StepError> {
        let dtype = column.dtype();
        Ok(match dtype {
            d if int_like(d) => Encoder::Int(int_values(column, what)?),
            DataType::UInt64 => Encoder::UInt(column.u64().step_err(what)?.clone()),
            DataType::Float32 | DataType::Float64 => {
                let c = column.cast(&DataType::Float64).step_err(what)?;
                Encoder::Float(c.f64().step_err(what)?.clone())
            }
            DataType::Boolean => Encoder::Bool(column.bool().step_err(what)?.clone()),
            DataType::String => Encoder::Str(column.str().step_err(what)?.clone()),
            DataType::Binary => Encoder::Bin(column.binary().step_err(what)?.clone()),
            DataType::List(_) | DataType::Struct(_) | DataType::Null => {
                return Err(StepError::user(format!(
                    "{what}: key column \"{}\" is {dtype}, which cannot be a key",
                    column.name()
                ))
                .with_hint("key columns are numbers, strings, booleans, dates or times"));
            }
            // Decimals and the like: their exact text.
            _ => {
                let c = column.cast(&DataType::String).step_err(what)?;
                Encoder::Str(c.str().step_err(what)?.clone())
            }
        })
    }

    /// Appends each row's encoded value to `rows`; a null clears the row's `valid` flag.
    fn encode(&self, rows: &mut [Vec<u8>], valid: &mut [bool]) {
        let mut put = |i: usize, bytes: Option<&[u8]>, tag: u8| {
            if let (Some(row), Some(ok)) = (rows.get_mut(i), valid.get_mut(i)) {
                match bytes {
                    Some(b) => {
                        row.push(tag);
                        row.extend_from_slice(&(b.len() as u64).to_le_bytes());
                        row.extend_from_slice(b);
                    }
                    None => *ok = false,
                }
            }
        };
        match self {
            Encoder::Int(ca) => {
                for (i, v) in ca.iter().enumerate() {
                    put(i, v.map(i64::to_le_bytes).as_ref().map(|b| &b[..]), 1);
                }
            }
            Encoder::UInt(ca) => {
                for (i, v) in ca.iter().enumerate() {
                    put(i, v.map(u64::to_le_bytes).as_ref().map(|b| &b[..]), 2);
                }
            }
            Encoder::Float(ca) => {
                for (i, v) in ca.iter().enumerate() {
                    // Polars' join equality: -0.0 equals 0.0, and NaN equals NaN.
                    let canonical = v.map(|f| {
                        if f == 0.0 {
                            0.0f64.to_bits()
                        } else if f.is_nan() {
                            f64::NAN.to_bits()
                        } else {
                            f.to_bits()
                        }
                    });
                    put(
                        i,
                        canonical.map(u64::to_le_bytes).as_ref().map(|b| &b[..]),
                        3,
                    );
                }
            }
            Encoder::Bool(ca) => {
                for (i, v) in ca.iter().enumerate() {
                    put(i, v.map(|b| [u8::from(b)]).as_ref().map(|b| &b[..]), 4);
                }
            }
            Encoder::Str(ca) => {
                for (i, v) in ca.iter().enumerate() {
                    put(i, v.map(str::as_bytes), 5);
                }
            }
            Encoder::Bin(ca) => {
                for (i, v) in ca.iter().enumerate() {
                    put(i, v, 6);
                }
            }
        }
    }
}

/// The key of every row of `df`, `None` where a key column is null.
fn byte_keys(
    df: &DataFrame,
    keys: &[String],
    what: &str,
) -> Result<(Vec<Vec<u8>>, Vec<bool>), StepError> {
    let mut rows = vec![Vec::new(); df.height()];
    let mut valid = vec![true; df.height()];
    for k in keys {
        let column = df.column(k).step_err(what)?;
        Encoder::new(column, what)?.encode(&mut rows, &mut valid);
    }
    Ok((rows, valid))
}

impl KeyIndex {
    /// Indexes the rows of `df` by the `keys` columns.
    pub(crate) fn build(df: &DataFrame, keys: &[String], what: &str) -> Result<Self, StepError> {
        let height = u32::try_from(df.height())
            .ok()
            .filter(|h| *h < END)
            .ok_or_else(|| {
                StepError::user(format!(
                    "{what}: the other input has {} rows, more than a key index holds",
                    df.height()
                ))
            })?;
        let dtypes = keys
            .iter()
            .map(|k| Ok(df.column(k).step_err(what)?.dtype().clone()))
            .collect::<Result<Vec<_>, StepError>>()?;
        // Allocated at the first repeated key only (see `chain`).
        let mut next = Vec::new();
        // Rows are inserted last to first, so that each chain lists its rows in row order.
        let heads = match dtypes.as_slice() {
            [one] if int_like(one) => {
                let column = df.column(keys.first().map(String::as_str).unwrap_or_default());
                let values = int_values(column.step_err(what)?, what)?;
                match dense_range(&values) {
                    Some((min, len)) => {
                        let mut first = vec![END; len];
                        backwards(&values, |row, v| {
                            let slot = v.and_then(|v| usize::try_from(v.wrapping_sub(min)).ok());
                            if let Some(head) = slot.and_then(|i| first.get_mut(i)) {
                                if *head != END {
                                    chain(&mut next, height, row, *head);
                                }
                                *head = row;
                            }
                        });
                        Heads::Dense { min, first }
                    }
                    None => {
                        let mut heads = PlHashMap::with_capacity(values.len());
                        backwards(&values, |row, v| {
                            if let Some(v) = v {
                                link(&mut heads, &mut next, height, v, row);
                            }
                        });
                        Heads::Int(heads)
                    }
                }
            }
            _ => {
                let (rows, valid) = byte_keys(df, keys, what)?;
                let mut heads = PlHashMap::with_capacity(rows.len());
                for (row, (key, ok)) in rows.into_iter().zip(valid).enumerate().rev() {
                    if ok {
                        link(
                            &mut heads,
                            &mut next,
                            height,
                            key.into_boxed_slice(),
                            row as u32,
                        );
                    }
                }
                Heads::Bytes(heads)
            }
        };
        Ok(KeyIndex {
            heads,
            next,
            dtypes,
        })
    }

    /// The index of `df` by `keys`, shared with any other step of the process that indexed
    /// the very same values (a referential-integrity check and a join on one side input):
    /// they are recognised by the identity of their Arrow buffers, which never change.
    pub(crate) fn shared(
        df: &DataFrame,
        keys: &[String],
        what: &str,
    ) -> Result<Arc<KeyIndex>, StepError> {
        let identity = identity(df, keys);
        let mut cache = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|(_, weak)| weak.strong_count() > 0);
        if let Some(id) = &identity
            && let Some(index) = cache
                .iter()
                .find(|(other, _)| other == id)
                .and_then(|(_, weak)| weak.upgrade())
        {
            return Ok(index);
        }
        let index = Arc::new(KeyIndex::build(df, keys, what)?);
        if let Some(id) = identity {
            cache.push((id, Arc::downgrade(&index)));
        }
        Ok(index)
    }

    /// Checks that `df`'s key columns have the indexed types.
    fn check_types(
        &self,
        df: &DataFrame,
        keys: &[String],
        indexed: &[String],
        what: &str,
    ) -> Result<(), StepError> {
        for ((k, other), dtype) in keys.iter().zip(indexed).zip(&self.dtypes) {
            let mine = df.column(k).step_err(what)?.dtype();
            // As Polars joins: integers of any width with each other (both are compared as
            // 64-bit values), floats with floats; anything else must match exactly.
            let integer = |t: &DataType| t.is_integer() && t != &DataType::UInt64;
            let compatible = mine == dtype
                || (integer(mine) && integer(dtype))
                || (mine.is_float() && dtype.is_float());
            if !compatible {
                return Err(StepError::user(format!(
                    "{what}: key \"{k}\" is {mine} in the main input but \"{other}\" is {dtype} in the other input"
                ))
                .with_hint("cast one of them first (a \"cast\" step)"));
            }
        }
        Ok(())
    }

    /// For each row of `df`, the first indexed row with the same key (`None`: no match, or a
    /// null key). `indexed` names the index's key columns, for messages.
    pub(crate) fn first_matches(
        &self,
        df: &DataFrame,
        keys: &[String],
        indexed: &[String],
        what: &str,
    ) -> Result<Vec<Option<u32>>, StepError> {
        self.check_types(df, keys, indexed, what)?;
        match &self.heads {
            Heads::Dense { min, first } => {
                let column = df.column(keys.first().map(String::as_str).unwrap_or_default());
                let values = int_values(column.step_err(what)?, what)?;
                Ok(values
                    .iter()
                    .map(|v| {
                        let i = usize::try_from(v?.checked_sub(*min)?).ok()?;
                        first.get(i).copied().filter(|r| *r != END)
                    })
                    .collect())
            }
            Heads::Int(heads) => {
                let column = df.column(keys.first().map(String::as_str).unwrap_or_default());
                let values = int_values(column.step_err(what)?, what)?;
                Ok(values
                    .iter()
                    .map(|v| v.and_then(|v| heads.get(&v).copied()))
                    .collect())
            }
            Heads::Bytes(heads) => {
                let (rows, valid) = byte_keys(df, keys, what)?;
                Ok(rows
                    .iter()
                    .zip(valid)
                    .map(|(key, ok)| {
                        if ok {
                            heads.get(key.as_slice()).copied()
                        } else {
                            None
                        }
                    })
                    .collect())
            }
        }
    }

    /// The rows after `row` with the same key, in row order.
    pub(crate) fn rest(&self, row: u32) -> impl Iterator<Item = u32> + '_ {
        let mut current = row;
        std::iter::from_fn(move || {
            let n = self.next.get(current as usize).copied().unwrap_or(END);
            if n == END {
                None
            } else {
                current = n;
                Some(n)
            }
        })
    }
}

/// Indexes alive in this process, by the identity of their key values (see
/// [`KeyIndex::shared`]).
static SHARED: Mutex<Vec<(String, Weak<KeyIndex>)>> = Mutex::new(Vec::new());

/// The identity of a single key column's values: its type, and the address, length,
/// validity and a hash of the contents of every chunk (`None` for other keys, which are not
/// shared). The index does not keep the column alive (a side input's key column would
/// otherwise stay in memory for the whole run), so another column may later take the same
/// addresses: the hash of its values then tells them apart.
fn identity(df: &DataFrame, keys: &[String]) -> Option<String> {
    use std::hash::{Hash, Hasher};
    let [key] = keys else { return None };
    let column = df.column(key).ok()?;
    // Only 64-bit keys: their values are the column's own buffers, never a temporary cast.
    if !int_like(column.dtype()) || column.dtype().to_physical() != DataType::Int64 {
        return None;
    }
    let values = int_values(column, "").ok()?;
    let mut id = format!("{:?}", column.dtype());
    for chunk in values.downcast_iter() {
        let mut contents = std::hash::DefaultHasher::new();
        chunk.values().as_slice().hash(&mut contents);
        let validity = chunk.validity().map(|b| {
            let (bytes, offset, len) = b.as_slice();
            (bytes, offset, len).hash(&mut contents);
            (bytes.as_ptr() as usize, offset)
        });
        let data = chunk.values().as_ptr() as usize;
        let hash = contents.finish();
        id.push_str(&format!(";{data:x}+{}/{validity:?}#{hash:x}", chunk.len()));
    }
    Some(id)
}

/// `(min, max - min + 1)` when the values span at most four slots per row (and at least one
/// value is there): a direct-address table is then smaller and faster than a hash map.
fn dense_range(values: &Int64Chunked) -> Option<(i64, usize)> {
    let (min, max) = (values.min()?, values.max()?);
    let span = usize::try_from(max.checked_sub(min)?.checked_add(1)?).ok()?;
    let limit = values.len().checked_mul(4)?.max(1024);
    (span <= limit).then_some((min, span))
}

/// Makes `row` the head of its key's chain.
fn link<K: std::hash::Hash + Eq>(
    heads: &mut PlHashMap<K, u32>,
    next: &mut Vec<u32>,
    height: u32,
    key: K,
    row: u32,
) {
    if let Some(previous) = heads.insert(key, row) {
        chain(next, height, row, previous);
    }
}

/// Records that `previous` follows `row` in their key's chain. The chains (`height` slots)
/// are only allocated once a key repeats: unique keys, the usual dimension table, need none.
fn chain(next: &mut Vec<u32>, height: u32, row: u32, previous: u32) {
    if next.is_empty() {
        *next = vec![END; height as usize];
    }
    if let Some(slot) = next.get_mut(row as usize) {
        *slot = previous;
    }
}

/// Calls `f` with each row number and value, last row first, chunk by chunk (no copy of the
/// values: Polars' chunked iterators do not count rows correctly backwards).
fn backwards(values: &Int64Chunked, mut f: impl FnMut(u32, Option<i64>)) {
    let mut end = values.len();
    for array in values.downcast_iter().rev() {
        let start = end.saturating_sub(array.len());
        for i in (0..array.len()).rev() {
            if let Ok(row) = u32::try_from(start.saturating_add(i)) {
                f(row, array.get(i));
            }
        }
        end = start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn integer_keys_chain_duplicates_in_row_order_and_nulls_never_match() {
        let side = df!("k" => [Some(1i64), Some(2), Some(1), None]).unwrap();
        let index = KeyIndex::build(&side, &names(&["k"]), "t").unwrap();
        assert!(matches!(index.heads, Heads::Dense { .. }));
        let main =
            df!("k" => [Some(1i64), Some(3), None, Some(2), Some(i64::MIN), Some(-1)]).unwrap();
        let m = index
            .first_matches(&main, &names(&["k"]), &names(&["k"]), "t")
            .unwrap();
        assert_eq!(m, vec![Some(0), None, None, Some(1), None, None]);
        assert_eq!(index.rest(0).collect::<Vec<_>>(), vec![2]);
        assert_eq!(index.rest(1).count(), 0);
    }

    #[test]
    fn sparse_integer_keys_use_the_hash_index_and_match_alike() {
        let side = df!("k" => [Some(1i64), Some(1 << 40), Some(1), None, Some(-7)]).unwrap();
        let index = KeyIndex::build(&side, &names(&["k"]), "t").unwrap();
        assert!(matches!(index.heads, Heads::Int(_)));
        let main = df!("k" => [Some(1i64 << 40), Some(3), None, Some(1), Some(-7)]).unwrap();
        let m = index
            .first_matches(&main, &names(&["k"]), &names(&["k"]), "t")
            .unwrap();
        assert_eq!(m, vec![Some(1), None, None, Some(0), Some(4)]);
        assert_eq!(index.rest(0).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn composite_and_string_keys_use_the_byte_index() {
        let side = df!("a" => ["x", "x", "y"], "b" => [1i32, 2, 1]).unwrap();
        let index = KeyIndex::build(&side, &names(&["a", "b"]), "t").unwrap();
        let main = df!("a" => [Some("x"), Some("y"), None], "b" => [2i32, 2, 1]).unwrap();
        let m = index
            .first_matches(&main, &names(&["a", "b"]), &names(&["a", "b"]), "t")
            .unwrap();
        assert_eq!(m, vec![Some(1), None, None]);
        // "ab" + "" must not equal "a" + "b".
        let side = df!("a" => ["ab"], "b" => [""]).unwrap();
        let index = KeyIndex::build(&side, &names(&["a", "b"]), "t").unwrap();
        let main = df!("a" => ["a"], "b" => ["b"]).unwrap();
        let m = index
            .first_matches(&main, &names(&["a", "b"]), &names(&["a", "b"]), "t")
            .unwrap();
        assert_eq!(m, vec![None]);
    }

    #[test]
    fn an_index_is_shared_by_steps_reading_the_same_values_only() {
        let side = df!("k" => [1i64, 2, 3], "v" => ["a", "b", "c"]).unwrap();
        let a = KeyIndex::shared(&side, &names(&["k"]), "t").unwrap();
        let projected = side.select(["k"]).unwrap();
        let b = KeyIndex::shared(&projected, &names(&["k"]), "t").unwrap();
        assert!(
            Arc::ptr_eq(&a, &b),
            "a projection of the same column shares the index"
        );
        assert!(a.next.is_empty(), "unique keys keep no chains");
        let equal_values = df!("k" => [1i64, 2, 3]).unwrap();
        let c = KeyIndex::shared(&equal_values, &names(&["k"]), "t").unwrap();
        assert!(!Arc::ptr_eq(&a, &c), "other buffers, another index");
        let as_i32 = df!("k" => [1i32, 2, 3]).unwrap();
        let d = KeyIndex::shared(&as_i32, &names(&["k"]), "t").unwrap();
        assert_eq!(d.dtypes, vec![DataType::Int32]);
    }

    #[test]
    fn key_types_must_agree() {
        let side = df!("k" => [1i64]).unwrap();
        let index = KeyIndex::build(&side, &names(&["k"]), "join").unwrap();
        let narrower = df!("id" => [1i32, 2]).unwrap();
        let m = index
            .first_matches(&narrower, &names(&["id"]), &names(&["k"]), "join")
            .unwrap();
        assert_eq!(
            m,
            vec![Some(0), None],
            "integers of any width compare as Polars joins them"
        );
        let main = df!("id" => ["1"]).unwrap();
        let err = index
            .first_matches(&main, &names(&["id"]), &names(&["k"]), "join")
            .unwrap_err();
        assert!(err.message().contains("key \"id\" is str"), "{err}");
        assert!(err.message().contains("\"k\" is i64"), "{err}");
    }
}
