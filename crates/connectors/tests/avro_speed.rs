//! Not a test: `scripts/bench-avro` runs it (release build) to compare our Avro container
//! encoder and block decoder (`pipeline_data::avro`) with arrow-rs's own `arrow-avro` crate of
//! our arrow version, on 1,000,000 generated rows (int, float, string, timestamp with time
//! zone, bool, date, nullable int), printing rows/s. Ignored in `cargo test`.

use arrow_avro::reader::ReaderBuilder;
use arrow_avro::writer::AvroWriter;
use pipeline_connectors::{arrow_to_frame, frame_to_arrow};
use pipeline_data::avro::{AvroEncoder, BlockReader};
use pipeline_data::polars::prelude::*;
use std::time::Instant;

const N: usize = 1_000_000;
const BLOCK: usize = 65_536;

fn frame() -> DataFrame {
    let ids: Vec<i64> = (0..N as i64).collect();
    let paris = TimeZone::opt_try_new(Some("Europe/Paris")).unwrap();
    let cols = vec![
        Column::new("id".into(), ids.clone()),
        Column::new(
            "x".into(),
            ids.iter().map(|i| *i as f64 * 0.25).collect::<Vec<_>>(),
        ),
        Column::new(
            "s".into(),
            ids.iter().map(|i| format!("name-{i}")).collect::<Vec<_>>(),
        ),
        Int64Chunked::from_vec(
            "ts".into(),
            ids.iter()
                .map(|i| 1_700_000_000_000_000 + i * 1_000)
                .collect(),
        )
        .into_datetime(TimeUnit::Microseconds, paris)
        .into_series()
        .into_column(),
        Column::new(
            "flag".into(),
            ids.iter().map(|i| i % 3 == 0).collect::<Vec<_>>(),
        ),
        Int32Chunked::from_vec(
            "day".into(),
            ids.iter().map(|i| (i % 20_000) as i32).collect(),
        )
        .into_date()
        .into_series()
        .into_column(),
        Column::new(
            "opt".into(),
            ids.iter()
                .map(|i| (i % 7 != 0).then_some(*i))
                .collect::<Vec<_>>(),
        ),
    ];
    DataFrame::new(N, cols).unwrap()
}

fn rate(label: &str, t: Instant) {
    let s = t.elapsed().as_secs_f64();
    println!("  {label:<44} {s:>7.3} s {:>12.0} rows/s", N as f64 / s);
}

#[test]
#[ignore = "a benchmark: scripts/bench-avro"]
fn avro_encoders_side_by_side() {
    let df = frame();

    let t = Instant::now();
    let enc = AvroEncoder::new(&df, "bench").unwrap();
    let mut ours = enc.header();
    enc.write_blocks(&df, &mut ours).unwrap();
    rate("write: pipectl AvroEncoder", t);

    let t = Instant::now();
    let batches = frame_to_arrow(&df).unwrap();
    let mut w = AvroWriter::new(
        Vec::with_capacity(ours.len()),
        batches[0].schema().as_ref().clone(),
    )
    .unwrap();
    for b in &batches {
        let mut off = 0;
        while off < b.num_rows() {
            let len = BLOCK.min(b.num_rows() - off);
            w.write(&b.slice(off, len)).unwrap();
            off += len;
        }
    }
    w.finish().unwrap();
    let theirs = w.into_inner();
    rate("write: arrow-avro (incl. DataFrame -> Arrow)", t);
    println!(
        "  bytes: pipectl {} / arrow-avro {}",
        ours.len(),
        theirs.len()
    );

    for (name, bytes) in [("pipectl's", &ours), ("arrow-avro's", &theirs)] {
        let t = Instant::now();
        let Ok(mut r) = BlockReader::new(bytes.clone()) else {
            panic!("{name} file is not an uncompressed container");
        };
        let mut rows = 0;
        while let Some(part) = r.next_frame(BLOCK).unwrap() {
            rows += part.height();
        }
        assert_eq!(rows, N);
        rate(&format!("read {name} file: pipectl BlockReader"), t);

        let t = Instant::now();
        let reader = ReaderBuilder::new()
            .with_batch_size(BLOCK)
            .with_utf8_view(true)
            .build(std::io::Cursor::new(bytes.as_slice()))
            .unwrap();
        let batches: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
        assert_eq!(arrow_to_frame(&batches).unwrap().height(), N);
        rate(
            &format!("read {name} file: arrow-avro (incl. -> DataFrame)"),
            t,
        );
    }
}
