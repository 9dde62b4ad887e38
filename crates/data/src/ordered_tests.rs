//! The external sort against Polars' in-memory sort: same rows, same order, ties in arrival
//! order, nulls and NaN where the in-memory sort puts them.

use super::*;
use crate::sorted::Sorter;
use crate::spilling::{Finished, Held};
use rstest::rstest;

/// 20 batches of 500 rows: few distinct values (many ties), nulls, NaN, -0.0, strings.
fn batches() -> Vec<DataFrame> {
    (0..20i64)
        .map(|b| {
            let rows: Vec<i64> = (b * 500..b * 500 + 500).collect();
            let k: Vec<Option<i64>> = rows
                .iter()
                .map(|i| {
                    if i % 11 == 0 {
                        None
                    } else {
                        Some((i * 7) % 13)
                    }
                })
                .collect();
            let x: Vec<Option<f64>> = rows
                .iter()
                .map(|i| match i % 17 {
                    0 => None,
                    1 => Some(f64::NAN),
                    2 => Some(-0.0),
                    3 => Some(0.0),
                    n => Some((n as f64) / 4.0 - 2.0),
                })
                .collect();
            let s: Vec<Option<String>> = rows
                .iter()
                .map(|i| (i % 19 != 0).then(|| format!("v{}", (i * 5) % 9)))
                .collect();
            df!("row" => rows, "k" => k, "x" => x, "s" => s).unwrap()
        })
        .collect()
}

fn in_memory(spec: &SortSpec) -> DataFrame {
    let mut all = DataFrame::empty();
    for b in batches() {
        if all.width() == 0 {
            all = b;
        } else {
            all.vstack_mut_owned(b).unwrap();
        }
    }
    let options = SortMultipleOptions::default()
        .with_order_descending_multi(spec.descending.clone())
        .with_nulls_last(spec.nulls_last)
        .with_maintain_order(true);
    all.sort(spec.by.clone(), options).unwrap()
}

fn external(spec: &SortSpec, limit: u64) -> (DataFrame, u64) {
    let mut sorter = Sorter::new("t", spec.clone(), limit);
    for b in batches() {
        sorter.push_frame(b).unwrap();
    }
    let (Finished::Merged(mut merge, _dir), spilled) = sorter.finish(&mut Ok).unwrap() else {
        panic!("a tiny limit spills");
    };
    let mut out = DataFrame::empty();
    let mut rounds = 0;
    while let Some(df) = merge.next_frame().unwrap() {
        rounds += 1;
        if out.width() == 0 {
            out = df;
        } else {
            out.vstack_mut_owned(df).unwrap();
        }
    }
    assert!(rounds > 1, "merged a piece at a time");
    (out, spilled)
}

#[rstest]
#[case::one_int(&["k"], &[false], false)]
#[case::one_int_desc_nulls_last(&["k"], &[true], true)]
#[case::float_nan_zeros(&["x"], &[false], false)]
#[case::float_desc(&["x"], &[true], true)]
#[case::string_then_int(&["s", "k"], &[false, true], false)]
#[case::three(&["k", "s", "x"], &[true, false, true], true)]
fn the_external_sort_gives_the_in_memory_order(
    #[case] by: &[&str],
    #[case] descending: &[bool],
    #[case] nulls_last: bool,
) {
    let spec = SortSpec {
        by: by.iter().map(|c| c.to_string()).collect(),
        descending: descending.to_vec(),
        nulls_last,
    };
    let expected = in_memory(&spec);
    let (got, spilled) = external(&spec, 40_000);
    assert!(spilled > 0);
    assert_eq!(
        got.get_column_names(),
        expected.get_column_names(),
        "no key column left"
    );
    assert!(
        got.equals_missing(&expected),
        "{}\n{}",
        got.head(Some(20)),
        expected.head(Some(20))
    );
}

#[test]
fn a_sorter_under_its_limit_keeps_the_input_whole() {
    let mut sorter = Sorter::new("t", SortSpec::default(), u64::MAX);
    for b in batches() {
        sorter.push_frame(b).unwrap();
    }
    let (Finished::Whole(all), 0) = sorter.finish(&mut Ok).unwrap() else {
        panic!("nothing spilled");
    };
    assert_eq!(all.height(), 10_000);
}

#[test]
fn a_batch_without_a_sort_column_after_a_run_is_an_error() {
    let spec = SortSpec {
        by: vec!["k".into()],
        descending: vec![false],
        nulls_last: false,
    };
    let mut sorter = Sorter::new("t", spec, 1);
    sorter.push_frame(batches().remove(0)).unwrap();
    let err = sorter
        .push_frame(df!("other" => [1i64]).unwrap())
        .unwrap_err();
    assert!(err.message().contains("no column \"k\""), "{err}");
}
