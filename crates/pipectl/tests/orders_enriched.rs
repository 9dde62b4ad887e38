//! User story 2 end to end: `configs/examples/orders_enriched.json` run by the binary against
//! the local Kafka (the seeded `orders_json` topic), MariaDB (customers), PostgreSQL and Vault.
//! The enriched Delta table, the quarantine table and PostgreSQL's revenue per country are read
//! back, and their counts add up to the events read; a second run reads nothing new (the
//! offsets were stored after the loads committed). No seeded secret appears in any output.

mod common;

use common::{all_output, pipectl};
use pipeline_testkit::{Service, service, unique, vault_secret};

#[tokio::test(flavor = "multi_thread")]
async fn kafka_and_mysql_merge_validate_and_load_to_delta_and_postgres() {
    let (Some(env), Some(_), Some(_), Some(_)) = (
        service(Service::Kafka),
        service(Service::Mysql),
        service(Service::Postgres),
        service(Service::Vault),
    ) else {
        return;
    };
    let table = unique("revenue_by_country");
    let _drop = pipeline_testkit::drop_table_on_exit(&env, &table);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("orders");
    let rejected = dir.path().join("rejected");
    let offsets = dir.path().join("offsets.json");
    let report = dir.path().join("report.json");
    let example = pipeline_testkit::repo_root()
        .join("configs/examples/orders_enriched.json")
        .display()
        .to_string();
    let sets = [
        format!("/steps/2/options/offsets/store={}", offsets.display()),
        format!("/steps/8/options/path={}", lake.display()),
        format!("/steps/10/options/table={table}"),
        format!("/steps/11/options/path={}", rejected.display()),
    ];
    let run = || {
        let mut args = vec![
            "run".to_string(),
            example.clone(),
            "--report".into(),
            report.display().to_string(),
        ];
        for s in &sets {
            args.push("--set".into());
            args.push(s.clone());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        pipectl(&args)
    };
    let first = run();
    let output = all_output(&first);
    assert_eq!(first.status.code(), Some(0), "{output}");
    for (name, secret) in [
        ("pipectl/mysql", "password"),
        ("pipectl/postgres", "password"),
    ] {
        let value = vault_secret(&env, name).await[secret].clone();
        assert!(!output.contains(&value), "{name} {secret} printed");
    }
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let events = r["steps"][2]["rows_out"].as_u64().unwrap();
    assert!(
        events >= 10_000,
        "the seeded topic holds 10,000 events: {events}"
    );
    // The report lists each partition read: start, end and the lag when the step opened.
    let read = r["steps"][2]["details"]["partitions"].as_array().unwrap();
    assert_eq!(read.len(), 3, "{}", r["steps"][2]);
    let lag: u64 = read.iter().map(|p| p["lag"].as_u64().unwrap()).sum();
    assert_eq!(lag, events);
    assert!(
        read.iter()
            .all(|p| p["end"].as_i64() >= p["start"].as_i64())
    );

    let kept = pipeline_connectors::read_delta_table(&lake)
        .await
        .unwrap()
        .height() as u64;
    let quarantined = pipeline_connectors::read_delta_table(&rejected)
        .await
        .unwrap()
        .height() as u64;
    assert!(quarantined > 0, "events without a customer are quarantined");
    assert_eq!(
        kept + quarantined,
        events,
        "every event is kept or quarantined"
    );
    let pg = pipeline_testkit::postgres_client(&env).await;
    let row = pg
        .query_one(
            &format!("SELECT count(*), sum(orders)::bigint FROM \"{table}\""),
            &[],
        )
        .await
        .unwrap();
    let (countries, orders): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(countries, 6);
    assert_eq!(orders as u64, kept, "revenue counts every kept order once");
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&offsets).unwrap()).unwrap();
    assert_eq!(
        stored["topics"]["orders_json"].as_object().map(|m| m.len()),
        Some(3)
    );

    // Again: the stored offsets are at the end, so nothing new is read or written.
    let second = run();
    assert_eq!(second.status.code(), Some(0), "{}", all_output(&second));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["steps"][2]["rows_out"], 0);
    assert!(
        r["steps"][2]["details"]["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["lag"] == 0 && p["start"] == p["end"]),
        "the second run starts at the stored offsets"
    );
    assert_eq!(
        pipeline_connectors::read_delta_table(&lake)
            .await
            .unwrap()
            .height() as u64,
        kept
    );
}
