//! One real round trip per local service, over the service's own protocol, with credentials read
//! from the Vault-API server (as pipelines read them). Needs `scripts/dev-env up`; skipped with a
//! message outside CI when the environment is not configured, a failure under CI.

use pipeline_testkit::{Cleanup, Service, service, unique, vault_client, vault_secret};
use std::collections::{BTreeMap, HashMap};

#[tokio::test]
async fn postgres_round_trip_with_vault_credentials() {
    let Some(env) = service(Service::Postgres) else {
        return;
    };
    let c = vault_secret(&env, "pipectl/postgres").await;
    let conn = format!(
        "host={} port={} dbname={} user={} password={}",
        c["host"], c["port"], c["database"], c["username"], c["password"]
    );
    let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(connection);
    let table = unique("rt_pg");
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, name text)"
        ))
        .await
        .unwrap();
    let drop_sql = format!("DROP TABLE IF EXISTS {table}");
    client
        .execute(
            &format!("INSERT INTO {table} VALUES ($1, $2), ($3, $4)"),
            &[&1i64, &"one", &2i64, &"two"],
        )
        .await
        .unwrap();
    let rows = client
        .query(&format!("SELECT id, name FROM {table} ORDER BY id"), &[])
        .await
        .unwrap();
    let back: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(back, vec![(1, "one".to_string()), (2, "two".to_string())]);
    // The seeded mocked data is there too.
    let n: i64 = client
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert!(n >= 1000, "orders has {n} rows");
    client.batch_execute(&drop_sql).await.unwrap();
}

#[tokio::test]
async fn mysql_round_trip_with_vault_credentials() {
    use mysql_async::prelude::*;
    let Some(env) = service(Service::Mysql) else {
        return;
    };
    let c = vault_secret(&env, "pipectl/mysql").await;
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(c["host"].clone())
        .tcp_port(c["port"].parse().unwrap())
        .db_name(Some(c["database"].clone()))
        .user(Some(c["username"].clone()))
        .pass(Some(c["password"].clone()));
    let mut conn = mysql_async::Conn::new(opts)
        .await
        .expect("connect to MySQL");
    let table = unique("rt_my");
    conn.query_drop(format!(
        "CREATE TABLE {table} (id BIGINT PRIMARY KEY, name VARCHAR(20))"
    ))
    .await
    .unwrap();
    conn.exec_drop(
        format!("INSERT INTO {table} VALUES (?, ?), (?, ?)"),
        (1i64, "one", 2i64, "two"),
    )
    .await
    .unwrap();
    let back: Vec<(i64, String)> = conn
        .query(format!("SELECT id, name FROM {table} ORDER BY id"))
        .await
        .unwrap();
    assert_eq!(back, vec![(1, "one".to_string()), (2, "two".to_string())]);
    let n: Option<i64> = conn
        .query_first("SELECT count(*) FROM orders")
        .await
        .unwrap();
    assert!(n.unwrap_or(0) >= 1000);
    conn.query_drop(format!("DROP TABLE {table}"))
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
}

#[tokio::test]
async fn kafka_round_trip_with_vault_settings() {
    use rskafka::client::ClientBuilder;
    use rskafka::client::partition::{Compression, UnknownTopicHandling};
    use rskafka::record::Record;
    let Some(env) = service(Service::Kafka) else {
        return;
    };
    let c = vault_secret(&env, "pipectl/kafka").await;
    let client = ClientBuilder::new(vec![c["bootstrap_servers"].clone()])
        .build()
        .await
        .expect("connect to Kafka");
    let topic = unique("rt_topic");
    let controller = client.controller_client().unwrap();
    controller
        .create_topic(topic.clone(), 1, 1, 5_000)
        .await
        .unwrap();
    let partition = client
        .partition_client(topic.clone(), 0, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    let records: Vec<Record> = (0..3)
        .map(|i| Record {
            key: Some(format!("k{i}").into_bytes()),
            value: Some(format!("{{\"n\": {i}}}").into_bytes()),
            headers: BTreeMap::new(),
            timestamp: chrono::Utc::now(),
        })
        .collect();
    partition
        .produce(records, Compression::NoCompression)
        .await
        .unwrap();
    let (fetched, high_watermark) = partition
        .fetch_records(0, 1..1_000_000, 1_000)
        .await
        .unwrap();
    assert_eq!(high_watermark, 3);
    let values: Vec<String> = fetched
        .iter()
        .map(|r| String::from_utf8(r.record.value.clone().unwrap()).unwrap())
        .collect();
    assert_eq!(values, vec!["{\"n\": 0}", "{\"n\": 1}", "{\"n\": 2}"]);
    controller.delete_topic(topic, 5_000).await.unwrap();
}

#[tokio::test]
async fn s3_round_trip_with_vault_credentials() {
    use futures::TryStreamExt;
    use object_store::path::Path;
    use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
    let Some(env) = service(Service::S3) else {
        return;
    };
    let store = pipeline_testkit::s3_store(&env).await;
    let prefix = unique("rt_s3");
    let key = Path::from(format!("{prefix}/hello.txt"));
    store
        .put(&key, PutPayload::from_static(b"hello lake"))
        .await
        .expect("put to S3");
    let back = store.get(&key).await.unwrap().bytes().await.unwrap();
    assert_eq!(&back[..], b"hello lake");
    let listed: Vec<_> = store
        .list(Some(&Path::from(prefix.clone())))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    // The seeded objects are there too.
    let raw: Vec<_> = store
        .list(Some(&Path::from("raw")))
        .try_collect()
        .await
        .unwrap();
    assert!(raw.len() >= 4, "{raw:?}");
    store.delete(&key).await.unwrap();
}

#[tokio::test]
async fn vault_round_trip_token_approle_and_denial() {
    let Some(env) = service(Service::Vault) else {
        return;
    };
    let vault = vault_client(&env);
    let mount = env.kv_mount();
    let path = unique("pipectl-test/rt");
    vault
        .write(&mount, &path, &HashMap::from([("field", "value-1")]))
        .await
        .expect("write a secret");
    let _cleanup = Cleanup::new({
        let (env, mount, path) = (env.clone(), mount.clone(), path.clone());
        move || {
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async { vault_client(&env).delete(&mount, &path).await })
            })
            .join();
        }
    });
    assert_eq!(vault.read(&mount, &path).await.unwrap()["field"], "value-1");

    // AppRole: log in with the ids the environment created, then read pipectl's secrets.
    let role_file =
        std::env::var("VAULT_APPROLE_ROLE_ID_FILE").expect("VAULT_APPROLE_ROLE_ID_FILE");
    let secret_file =
        std::env::var("VAULT_APPROLE_SECRET_ID_FILE").expect("VAULT_APPROLE_SECRET_ID_FILE");
    let role_id = std::fs::read_to_string(role_file).unwrap();
    let secret_id = std::fs::read_to_string(secret_file).unwrap();
    let token = vault
        .approle_login("approle", role_id.trim(), secret_id.trim())
        .await
        .expect("AppRole login");
    let creds = vault_secret(&env.clone().with("VAULT_TOKEN", &token), "pipectl/postgres").await;
    assert!(creds.contains_key("password"));

    // A bad token is refused with 403.
    let err = vault_client(&env.clone().with("VAULT_TOKEN", "not-a-token"))
        .read(&mount, "pipectl/postgres")
        .await
        .err()
        .unwrap();
    assert!(err.contains("HTTP 403"), "{err}");
}
