//! Column pruning and streamed whole-input steps, end to end through the executor: the plan
//! drops only columns nobody reads, the results equal those of a plan that keeps every column,
//! and a step missing a column still names every column of its input.

mod common;

use common::write;
use pipeline_core::{Pipeline, RunOptions};
use pipeline_data::polars::prelude::*;

/// Orders joined with customers and aggregated; `middle` goes between the join and the
/// aggregate (a `sql` step there reads every column, which turns pruning off upstream).
fn pipeline(dir: &std::path::Path, name: &str, middle: &str, aggregations: &str) -> Pipeline {
    let text = format!(
        r#"{{"name": "{name}", "steps": [
            {{"name": "customers", "kind": "extract", "method": "generate", "options": {{"dataset": "customers", "rows": 3000}}}},
            {{"name": "orders", "kind": "extract", "method": "generate", "options": {{"rows": 50000, "null_fraction": 0.05, "batch_size": 4096}}}},
            {{"name": "known", "kind": "validate", "method": "referential_integrity", "inputs": ["orders", "customers"],
              "options": {{"column": "customer_id"}}, "on_failure": "filter", "max_invalid_fraction": 1}},
            {{"name": "enriched", "kind": "transform", "method": "join", "inputs": ["known", "customers"],
              "options": {{"on": ["customer_id"], "how": "left", "suffix": "_c"}}}},
            {middle}
            {{"name": "by_country", "kind": "transform", "method": "aggregate",
              "options": {{"group_by": ["country", "status"], "aggregations": {aggregations}}}}},
            {{"name": "sorted", "kind": "transform", "method": "sort", "options": {{"by": ["country", "status"]}}}},
            {{"name": "to_lake", "kind": "load", "method": "delta", "options": {{"path": "{name}"}}}}
        ]}}"#
    );
    let path = write(dir, &format!("{name}.json"), &text);
    Pipeline::from_file(&path, &[]).unwrap()
}

const AGGREGATIONS: &str = r#"{"revenue": "sum(amount)", "orders": "count(*)", "first_order": "min(order_id)", "tiers": "count(tier)"}"#;

#[tokio::test(flavor = "multi_thread")]
async fn pruned_plan_gives_the_rows_of_a_plan_that_keeps_every_column() {
    let dir = tempfile::tempdir().unwrap();
    let pruned = pipeline(dir.path(), "pruned", "", AGGREGATIONS);
    let step = |p: &Pipeline, name: &str| {
        p.plan()
            .steps
            .iter()
            .find(|s| s.name == name)
            .cloned()
            .unwrap()
    };
    let cols = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(
        step(&pruned, "by_country").columns,
        cols(&["amount", "country", "order_id", "status", "tier"])
    );
    assert_eq!(
        step(&pruned, "enriched").columns,
        cols(&[
            "amount",
            "country",
            "customer_id",
            "order_id",
            "status",
            "tier"
        ]),
        "the join reads what the aggregate needs, and its key"
    );
    assert_eq!(
        step(&pruned, "customers").keep_columns,
        cols(&[
            "amount",
            "country",
            "customer_id",
            "order_id",
            "status",
            "tier"
        ]),
        "customers is kept with the columns its readers need (those it has)"
    );
    assert!(
        step(&pruned, "enriched")
            .memory
            .unwrap()
            .contains("streams its main input")
    );

    let full = pipeline(
        dir.path(),
        "full",
        r#"{"name": "everything", "kind": "transform", "method": "sql", "options": {"query": "SELECT * FROM self"}},"#,
        AGGREGATIONS,
    );
    assert_eq!(
        step(&full, "enriched").columns,
        None,
        "sql reads every column"
    );
    assert!(
        step(&full, "everything")
            .memory
            .unwrap()
            .contains("gathers its whole input")
    );

    let a = pruned.run(&RunOptions::default()).await.unwrap();
    let b = full.run(&RunOptions::default()).await.unwrap();
    assert_eq!(a.rows_written, b.rows_written);
    assert!(a.rows_written > 0);
    let x = pipeline_connectors::read_delta_table(&dir.path().join("pruned"))
        .await
        .unwrap();
    let y = pipeline_connectors::read_delta_table(&dir.path().join("full"))
        .await
        .unwrap();
    assert_eq!(x.schema(), y.schema());
    let sort = |df: DataFrame| {
        df.sort(
            ["country", "status"],
            SortMultipleOptions::default().with_nulls_last(true),
        )
        .unwrap()
    };
    let (x, y) = (sort(x), sort(y));
    for name in ["country", "status", "orders", "first_order", "tiers"] {
        assert!(
            x.column(name)
                .unwrap()
                .equals_missing(y.column(name).unwrap()),
            "{name}:\n{x}\n{y}"
        );
    }
    let revenue = |df: &DataFrame| {
        df.column("revenue")
            .unwrap()
            .f64()
            .unwrap()
            .iter()
            .map(|v| v.unwrap_or(0.0))
            .collect::<Vec<_>>()
    };
    for (p, q) in revenue(&x).iter().zip(revenue(&y)) {
        assert!((p - q).abs() < 1e-6 * p.abs().max(1.0), "{p} vs {q}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_column_is_reported_with_every_column_of_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let typo = pipeline(dir.path(), "typo", "", r#"{"revenue": "sum(amout)"}"#);
    let err = typo.run(&RunOptions::default()).await.unwrap_err();
    let text = format!(
        "{} hint: {}",
        err.error.full_message(),
        err.error.hint().unwrap_or_default()
    );
    assert!(text.contains("amout"), "{text}");
    assert!(
        text.contains("did you mean \"amount\"?"),
        "the dropped column is suggested: {text}"
    );
    assert!(
        text.contains("created_at (before \"known\")"),
        "the dropped columns are listed with the step that dropped them: {text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_side_input_from_the_steps_own_chain_is_read_whole() {
    // Customers whose referrer is a customer: the side input is the main input's own step,
    // still growing when the check's first batch arrives.
    let dir = tempfile::tempdir().unwrap();
    let text = r#"{"name": "self_reference", "steps": [
        {"name": "customers", "kind": "extract", "method": "generate", "options": {"dataset": "customers", "rows": 20000, "batch_size": 1000}},
        {"name": "with_referrer", "kind": "transform", "method": "derive", "options": {"columns": {"referrer": "20001 - customer_id"}}},
        {"name": "known_referrer", "kind": "validate", "method": "referential_integrity", "inputs": ["with_referrer", "with_referrer"],
         "options": {"column": "referrer", "reference_column": "customer_id"}},
        {"name": "joined", "kind": "transform", "method": "join", "inputs": ["known_referrer", "with_referrer"],
         "options": {"left_on": ["referrer"], "right_on": ["customer_id"], "how": "inner", "suffix": "_referrer"}},
        {"name": "to_lake", "kind": "load", "method": "delta", "options": {"path": "self_reference"}}
    ]}"#;
    let path = write(dir.path(), "self_reference.json", text);
    let p = Pipeline::from_file(&path, &[]).unwrap();
    for name in ["known_referrer", "joined"] {
        let step = p.plan().steps.iter().find(|s| s.name == name).unwrap();
        assert!(
            step.memory
                .as_deref()
                .unwrap_or_default()
                .starts_with("gathers its whole input: a side input is produced in its own chain"),
            "{name}: {:?}",
            step.memory
        );
    }
    let report = p.run(&RunOptions::default()).await.unwrap();
    assert_eq!(
        report.rows_written, 20_000,
        "every referrer is found, in any batch"
    );
}

/// Orders deduplicated by customer: the latest order of each.
fn dedupe(dir: &std::path::Path, name: &str, limit: &str) -> Pipeline {
    let text = format!(
        r#"{{"name": "{name}", {limit} "steps": [
            {{"name": "orders", "kind": "extract", "method": "generate", "options": {{"rows": 3000000, "null_fraction": 0.01}}}},
            {{"name": "latest", "kind": "transform", "method": "dedupe", "options": {{"keys": ["customer_id"], "keep": "last", "order_by": "created_at"}}}},
            {{"name": "to_lake", "kind": "load", "method": "delta", "options": {{"path": "{name}"}}}}
        ]}}"#
    );
    let path = write(dir, &format!("{name}.json"), &text);
    Pipeline::from_file(&path, &[]).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_64_mb_memory_limit_spills_a_dedupe_and_changes_no_row() {
    let dir = tempfile::tempdir().unwrap();
    let limited = dedupe(dir.path(), "limited", r#""memory_limit_mb": 64,"#);
    let free = dedupe(dir.path(), "free", "");
    assert_eq!(limited.plan().memory_limit, 64 << 20);
    let step = limited
        .plan()
        .steps
        .iter()
        .find(|s| s.name == "latest")
        .unwrap();
    assert!(
        step.memory
            .as_deref()
            .unwrap_or_default()
            .contains("spilling it to disk by key")
    );
    let a = limited.run(&RunOptions::default()).await.unwrap();
    let b = free.run(&RunOptions::default()).await.unwrap();
    let spilled = |r: &pipeline_core::report::RunReport| {
        r.steps
            .iter()
            .find(|s| s.name == "latest")
            .and_then(|s| s.metrics.get("spilled_bytes").copied())
            .unwrap_or(0)
    };
    assert!(
        spilled(&a) > 0,
        "the limited run spilled: {:?}",
        a.steps
            .iter()
            .map(|s| (&s.name, &s.metrics))
            .collect::<Vec<_>>()
    );
    assert_eq!(spilled(&b), 0);
    assert_eq!(a.rows_written, b.rows_written);
    assert_eq!(a.rows_written, 50_001, "50,000 customers and the null key");
    let read = |name: &str| {
        let path = dir.path().join(name);
        async move {
            pipeline_connectors::read_delta_table(&path)
                .await
                .unwrap()
                .sort(["customer_id"], SortMultipleOptions::default())
                .unwrap()
        }
    };
    let (x, y) = (read("limited").await, read("free").await);
    assert!(x.equals_missing(&y), "{x}\n{y}");
}

/// Orders sorted (two keys, one descending, nulls last) and deduplicated, each to one Parquet
/// file whose row order is the step's output order.
fn ordered(dir: &std::path::Path, name: &str, limit: &str) -> Pipeline {
    let text = format!(
        r#"{{"name": "{name}", {limit} "steps": [
            {{"name": "orders", "kind": "extract", "method": "generate", "options": {{"rows": 1000000, "null_fraction": 0.05}}}},
            {{"name": "sorted", "kind": "transform", "method": "sort", "options": {{"by": ["status", "amount"], "descending": [false, true], "nulls_last": true}}}},
            {{"name": "sorted_file", "kind": "load", "method": "s3", "options": {{"path": "{name}-sorted.parquet"}}}},
            {{"name": "latest", "kind": "transform", "method": "dedupe", "inputs": ["orders"], "options": {{"keys": ["customer_id"], "order_by": "created_at"}}}},
            {{"name": "latest_file", "kind": "load", "method": "s3", "options": {{"path": "{name}-latest.parquet"}}}},
            {{"name": "single", "kind": "validate", "method": "unique", "inputs": ["orders"], "options": {{"columns": ["customer_id", "amount"]}},
              "on_failure": "quarantine", "quarantine": "repeated", "max_invalid_fraction": 1}},
            {{"name": "single_file", "kind": "load", "method": "s3", "options": {{"path": "{name}-single.parquet"}}}},
            {{"name": "repeated_file", "kind": "load", "method": "s3", "inputs": ["repeated"], "options": {{"path": "{name}-repeated.parquet"}}}},
            {{"name": "summary", "kind": "transform", "method": "sql", "inputs": ["orders"],
              "options": {{"query": "SELECT status, count(*) AS n, count(customer_id) AS known, sum(order_id) AS ids, max(created_at) AS last FROM self WHERE amount > 10 GROUP BY status ORDER BY status"}}}},
            {{"name": "summary_file", "kind": "load", "method": "s3", "options": {{"path": "{name}-summary.parquet"}}}},
            {{"name": "spread", "kind": "transform", "method": "aggregate", "inputs": ["orders"],
              "options": {{"group_by": ["customer_id"], "aggregations": {{"median": "median(amount)", "statuses": "count(DISTINCT status)", "n": "count(*)", "first": "min(order_id)", "last": "max(created_at)"}}}}}},
            {{"name": "spread_file", "kind": "load", "method": "s3", "options": {{"path": "{name}-spread.parquet"}}}}
        ]}}"#
    );
    let path = write(dir, &format!("{name}.json"), &text);
    Pipeline::from_file(&path, &[]).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_32_mb_memory_limit_sorts_on_disk_and_keeps_the_in_memory_order() {
    let dir = tempfile::tempdir().unwrap();
    let limited = ordered(dir.path(), "limited", r#""memory_limit_mb": 32,"#);
    let free = ordered(dir.path(), "free", "");
    let memory = |name: &str| {
        let step = limited
            .plan()
            .steps
            .iter()
            .find(|s| s.name == name)
            .unwrap();
        step.memory.clone().unwrap_or_default()
    };
    assert!(
        memory("sorted").contains("sorting it in runs on disk"),
        "{}",
        memory("sorted")
    );
    let a = limited.run(&RunOptions::default()).await.unwrap();
    let b = free.run(&RunOptions::default()).await.unwrap();
    let spilled = |r: &pipeline_core::report::RunReport, step: &str| {
        r.steps
            .iter()
            .find(|s| s.name == step)
            .and_then(|s| s.metrics.get("spilled_bytes").copied())
            .unwrap_or(0)
    };
    assert!(
        memory("single").contains("spilling it to disk by key"),
        "{}",
        memory("single")
    );
    assert!(
        memory("summary").contains("streaming engine"),
        "{}",
        memory("summary")
    );
    assert!(
        memory("spread").contains("spilling it to disk by key"),
        "{}",
        memory("spread")
    );
    for step in ["sorted", "latest", "single", "summary", "spread"] {
        assert!(spilled(&a, step) > 0, "{step} spilled under 32 MB");
        assert_eq!(spilled(&b, step), 0, "{step} did not spill without a limit");
    }
    let read = |file: String| {
        let path = dir.path().join(file);
        ParquetReader::new(std::fs::File::open(path).unwrap())
            .finish()
            .unwrap()
    };
    for what in ["sorted", "latest", "single", "summary", "spread"] {
        let (x, y) = (
            read(format!("limited-{what}.parquet")),
            read(format!("free-{what}.parquet")),
        );
        assert!(x.height() > 0);
        assert_eq!(x.height(), y.height());
        assert!(x.equals_missing(&y), "{what}: {x}\n{y}");
    }
    let sorted = read("limited-sorted.parquet".to_string());
    assert_eq!(sorted.height(), 1_000_000);
    // Quarantined rows come partition by partition: the same rows, in another order.
    let by_order = |df: DataFrame| df.sort(["order_id"], Default::default()).unwrap();
    let (x, y) = (
        by_order(read("limited-repeated.parquet".to_string())),
        by_order(read("free-repeated.parquet".to_string())),
    );
    assert!(x.height() > 500, "{} repeated rows", x.height());
    assert!(x.equals_missing(&y), "{x}\n{y}");
    let single = read("limited-single.parquet".to_string());
    assert_eq!(single.height() + x.height(), 1_000_000);
}
