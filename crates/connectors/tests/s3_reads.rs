//! The s3 extract reads files in bounded memory: Parquet row group by row group with only the
//! columns later steps read, CSV and JSON lines chunk by chunk (a schema inferred from the
//! first MBs, a last line without a newline), each batch at most `batch_size` rows.

mod common;

use pipeline_base::StepKind;
use pipeline_connectors::entries;
use pipeline_data::polars::prelude::*;
use pipeline_data::{Batch, Runtime, StepSetup};
use serde_json::json;
use std::io::Write;

async fn batches(setup: StepSetup) -> Vec<DataFrame> {
    let entry = entries()
        .into_iter()
        .find(|e| e.kind == StepKind::Extract && e.name == "s3")
        .unwrap();
    let Runtime::Source(mut source) = entry.open(setup).await.unwrap() else {
        panic!("not a source")
    };
    let mut out = Vec::new();
    while let Some(batch) = source.next_batch().await.unwrap() {
        let Batch::Frame(df) = batch else {
            panic!("not a frame")
        };
        out.push(df);
    }
    out
}

fn stacked(frames: &[DataFrame]) -> DataFrame {
    let mut all = frames[0].clone();
    for f in &frames[1..] {
        all.vstack_mut(f).unwrap();
    }
    all
}

fn frame(rows: i64) -> DataFrame {
    let ids: Vec<i64> = (0..rows).collect();
    let names: Vec<String> = ids.iter().map(|i| format!("name {i}")).collect();
    let amounts: Vec<f64> = ids.iter().map(|i| *i as f64 / 4.0).collect();
    df!("id" => ids, "name" => names, "amount" => amounts).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn parquet_reads_row_groups_and_only_the_columns_later_steps_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.parquet");
    let mut df = frame(50_000);
    ParquetWriter::new(std::fs::File::create(&path).unwrap())
        .with_row_group_size(Some(10_000))
        .finish(&mut df)
        .unwrap();
    let options = json!({"path": path.to_string_lossy(), "batch_size": 4_000});

    let all = batches(common::local_step(dir.path(), "files", options.clone())).await;
    assert!(all.iter().all(|b| b.height() <= 4_000));
    assert!(stacked(&all).equals(&df), "every row, in order");

    let mut setup = common::local_step(dir.path(), "files", options.clone());
    setup.columns = Some(vec!["id".into(), "amount".into()]);
    let projected = stacked(&batches(setup).await);
    assert_eq!(projected.get_column_names(), ["id", "amount"]);
    assert_eq!(projected.height(), 50_000);

    // A column no file has (a misspelt one later steps name): every column is read, so that
    // the step reading it lists them all.
    let mut setup = common::local_step(dir.path(), "files", options);
    setup.columns = Some(vec!["id".into(), "amout".into()]);
    let whole = stacked(&batches(setup).await);
    assert_eq!(whole.width(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_and_json_lines_stream_in_batches_past_the_inference_sample() {
    let dir = tempfile::tempdir().unwrap();
    // About 6 MB: more than the 4 MB the schema is inferred from.
    let rows = 150_000;
    let csv = dir.path().join("data.csv");
    let json = dir.path().join("data.jsonl");
    let mut c = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
    let mut j = std::io::BufWriter::new(std::fs::File::create(&json).unwrap());
    writeln!(c, "id,name,amount").unwrap();
    for i in 0..rows {
        let amount = i as f64 / 4.0;
        let end = if i == rows - 1 { "" } else { "\n" };
        write!(c, "{i},name {i} with some padding text,{amount}{end}").unwrap();
        write!(
            j,
            "{{\"id\": {i}, \"name\": \"name {i} padding\", \"amount\": {amount}}}{end}"
        )
        .unwrap();
    }
    drop((c, j));
    assert!(std::fs::metadata(&csv).unwrap().len() > 5 << 20);
    for path in [&csv, &json] {
        let options = json!({"path": path.to_string_lossy(), "batch_size": 10_000});
        let frames = batches(common::local_step(dir.path(), "files", options)).await;
        assert!(
            frames.len() >= 15,
            "{}: {} batches",
            path.display(),
            frames.len()
        );
        assert!(frames.iter().all(|b| b.height() <= 10_000));
        let all = stacked(&frames);
        assert_eq!(all.height(), rows as usize, "{}", path.display());
        let ids = all.column("id").unwrap().i64().unwrap();
        assert_eq!(ids.get(0), Some(0));
        assert_eq!(
            ids.get(rows as usize - 1),
            Some(rows - 1),
            "the last line without a newline"
        );
        assert_eq!(ids.sum(), Some((rows - 1) * rows / 2));
        assert_eq!(all.column("amount").unwrap().dtype(), &DataType::Float64);

        let mut setup =
            common::local_step(dir.path(), "files", json!({"path": path.to_string_lossy()}));
        setup.columns = Some(vec!["amount".into()]);
        let projected = stacked(&batches(setup).await);
        assert_eq!(
            projected.get_column_names(),
            ["amount"],
            "{}",
            path.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn avro_objects_are_decoded_a_few_blocks_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.avro");
    let df = frame(150_000);
    let avro = pipeline_data::avro::frame_to_avro(&df, "row").unwrap();
    std::fs::write(&path, avro.bytes()).unwrap();
    let options = json!({"path": path.to_string_lossy(), "batch_size": 10_000});
    let frames = batches(common::local_step(dir.path(), "files", options)).await;
    assert!(frames.len() >= 15, "{} batches", frames.len());
    assert!(frames.iter().all(|b| b.height() <= 10_000));
    assert!(
        stacked(&frames).equals(&df),
        "every row, in order, with its types"
    );

    let empty = dir.path().join("empty.avro");
    let none = pipeline_data::avro::frame_to_avro(&frame(0), "row").unwrap();
    std::fs::write(&empty, none.bytes()).unwrap();
    let options = json!({"path": empty.to_string_lossy()});
    assert!(
        batches(common::local_step(dir.path(), "files", options))
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_files_and_quoted_newlines_past_the_sample() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["empty.csv", "empty.jsonl"] {
        let path = dir.path().join(name);
        std::fs::write(&path, b"").unwrap();
        let options = json!({"path": path.to_string_lossy()});
        assert!(
            batches(common::local_step(dir.path(), "files", options))
                .await
                .is_empty(),
            "{name}"
        );
    }
    // Records with a quoted multi-line field, about 600 bytes each: the 4 MB sample ends
    // inside one of them.
    let path = dir.path().join("notes.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    writeln!(f, "id,note,n").unwrap();
    let rows = 9_000;
    for i in 0..rows {
        let note = format!("line one {i}\n{}", "x".repeat(580));
        writeln!(f, "{i},\"{note}\",{}", i * 2).unwrap();
    }
    drop(f);
    assert!(std::fs::metadata(&path).unwrap().len() > 5 << 20);
    let options = json!({"path": path.to_string_lossy(), "batch_size": 1_000});
    let all = stacked(&batches(common::local_step(dir.path(), "files", options)).await);
    assert_eq!(all.height(), rows as usize);
    assert_eq!(
        all.column("n")
            .unwrap()
            .i64()
            .unwrap()
            .get(rows as usize - 1),
        Some((rows - 1) * 2)
    );
}
