//! Shared setup of the connector integration tests: steps whose connection credentials are read
//! from the local Vault, and direct clients to check what a step wrote.
#![allow(dead_code)]

use pipeline_base::OnFailure;
use pipeline_config::{ConnectionConfig, CredentialsRef};
use pipeline_credentials::{CredentialProvider, SecretRef, VaultProvider, VaultSettings};
use pipeline_data::polars::prelude::*;
use pipeline_data::{Batch, Runtime, StepSetup};
use pipeline_testkit::Env;
use serde_json::{Value, json};
use std::sync::Arc;

/// A step with a connection to `system` whose credentials are at `pipectl/<secret>` in Vault.
pub async fn step(
    env: &Env,
    system: &str,
    secret: &str,
    settings: Value,
    options: Value,
) -> StepSetup {
    let path = format!("{}/pipectl/{secret}", env.kv_mount());
    let vault = VaultProvider::new(VaultSettings::token(
        env.get("VAULT_ADDR"),
        env.get("VAULT_TOKEN"),
    ))
    .expect("vault client");
    let fields = vault
        .fetch(&SecretRef::new(&path))
        .await
        .expect("credentials from Vault");
    let mut config: ConnectionConfig = serde_json::from_value(json!({"system": system})).unwrap();
    config.credentials = Some(CredentialsRef {
        vault_path: path,
        kv_version: None,
    });
    if let Value::Object(map) = settings {
        config.settings.extend(map);
    }
    StepSetup {
        pipeline: "test".into(),
        step: format!("{system}_step"),
        run_id: pipeline_testkit::unique("run"),
        resumed: false,
        options,
        connection: Some((format!("{system}_conn"), config)),
        credentials: Some(Arc::new(fields)),
        on_failure: OnFailure::Fail,
        quarantine: None,
        max_invalid_fraction: None,
        main_input: None,
        side_inputs: vec![],
        base_dir: std::env::temp_dir(),
        other_connections: Default::default(),
        stream: None,
        columns: None,
        side_inputs_ready: true,
        memory_limit: 1 << 30,
    }
}

/// Every frame a source yields, stacked.
pub async fn read_all(runtime: Runtime) -> DataFrame {
    let Runtime::Source(mut source) = runtime else {
        panic!("not a source");
    };
    let mut out: Option<DataFrame> = None;
    while let Some(batch) = source.next_batch().await.expect("next batch") {
        let Batch::Frame(df) = batch else {
            panic!("not a frame")
        };
        match &mut out {
            None => out = Some(df),
            Some(acc) => {
                acc.vstack_mut_owned(df).unwrap();
            }
        }
    }
    out.unwrap_or_default()
}

/// A PostgreSQL client with the seeded credentials.
pub async fn pg(env: &Env) -> tokio_postgres::Client {
    pipeline_testkit::postgres_client(env).await
}

/// Drops a table when the test ends, pass or fail.
pub fn drop_table(env: &Env, table: &str) -> pipeline_testkit::Cleanup<impl FnOnce() + use<>> {
    pipeline_testkit::drop_table_on_exit(env, table)
}

/// A step without a connection whose relative paths start at `dir`.
pub fn local_step(dir: &std::path::Path, step: &str, options: Value) -> StepSetup {
    StepSetup {
        run_id: pipeline_testkit::unique("run"),
        options,
        ..StepSetup::bare("test", step, dir.to_path_buf())
    }
}

/// Writes `frames` into `sink`, then prepares and commits; aborts on any failure. Returns the
/// sink's metrics.
pub async fn load_frames(
    mut sink: Box<dyn pipeline_data::Sink>,
    frames: Vec<DataFrame>,
) -> Result<pipeline_data::Metrics, pipeline_base::StepError> {
    let result = async {
        for f in frames {
            sink.write(f).await?;
        }
        sink.prepare().await?;
        sink.commit().await
    }
    .await;
    match result {
        Ok(_) => Ok(sink.metrics()),
        Err(e) => {
            sink.abort().await;
            Err(e)
        }
    }
}

/// A new topic with `partitions` partitions on the local Kafka's plain listener.
pub async fn kafka_topic(env: &Env, partitions: i32) -> (String, rskafka::client::Client) {
    let client =
        rskafka::client::ClientBuilder::new(vec![env.get("KAFKA_BOOTSTRAP_SERVERS").to_string()])
            .build()
            .await
            .expect("a Kafka client");
    let name = pipeline_testkit::unique("kt");
    client
        .controller_client()
        .unwrap()
        .create_topic(name.clone(), partitions, 1, 10_000)
        .await
        .unwrap();
    (name, client)
}
