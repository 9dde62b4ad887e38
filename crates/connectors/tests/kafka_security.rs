//! Kafka over the local broker's SASL_SSL listener (TLS from the local CA, advertised as
//! `localhost`): PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 each produce and read back the same
//! rows; a wrong password is a clear, non-retried error that prints no password; the TLS
//! modes check the chain and the host name as documented.

mod common;

use common::{read_all, step};
use pipeline_base::ErrorClass;
use pipeline_connectors::{ExtractMethods, GenerateOptions, LoadMethods, generate_frame};
use pipeline_data::Runtime;
use pipeline_testkit::{Env, Service, service, unique, vault_client, vault_secret};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Instant;

/// A topic made through the plain listener.
async fn topic(env: &Env) -> String {
    common::kafka_topic(env, 2).await.0
}

/// Produces 500 generated rows over the secure connection with `settings`, then reads them back.
async fn round_trip(
    env: &Env,
    secret: &str,
    settings: Value,
) -> Result<usize, pipeline_base::StepError> {
    let name = topic(env).await;
    let o = GenerateOptions {
        dataset: Default::default(),
        rows: 500,
        seed: 9,
        batch_size: 500,
        null_fraction: 0.0,
    };
    let df = generate_frame(&o, 0, 500).unwrap();
    let s = step(
        env,
        "kafka",
        secret,
        settings.clone(),
        json!({"topic": name}),
    )
    .await;
    let sink = LoadMethods::kafka(s.options().unwrap(), s).await?;
    common::load_frames(sink, vec![df]).await?;
    let s = step(env, "kafka", secret, settings, json!({"topics": [name]})).await;
    let source = ExtractMethods::kafka(s.options().unwrap(), s).await?;
    Ok(read_all(Runtime::Source(source)).await.height())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_sasl_mechanism_produces_and_reads_over_tls() {
    let Some(env) = service(Service::KafkaSecure) else {
        return;
    };
    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let n = round_trip(&env, "kafka_secure", json!({"sasl_mechanism": mechanism}))
            .await
            .unwrap_or_else(|e| panic!("{mechanism}: {}", e.message()));
        assert_eq!(n, 500, "{mechanism}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_a_clear_error_that_is_not_retried_and_prints_no_password() {
    let Some(env) = service(Service::KafkaSecure) else {
        return;
    };
    let good = vault_secret(&env, "pipectl/kafka_secure").await;
    let wrong_password = "wrong-Kafka-pw-4711";
    let path = format!("pipectl/{}", unique("kafka_wrong"));
    let mut fields: HashMap<&str, &str> =
        good.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    fields.insert("password", wrong_password);
    let vault = vault_client(&env);
    vault.write(&env.kv_mount(), &path, &fields).await.unwrap();
    let secret = path.trim_start_matches("pipectl/").to_string();
    for mechanism in ["PLAIN", "SCRAM-SHA-512"] {
        let started = Instant::now();
        let e = round_trip(&env, &secret, json!({"sasl_mechanism": mechanism}))
            .await
            .expect_err("a wrong password is refused");
        let shown = format!("{} {:?} {e:?}", e.message(), e.hint());
        assert!(!e.retryable(), "{mechanism}: {shown}");
        assert_eq!(e.class(), ErrorClass::External, "{mechanism}: {shown}");
        assert!(
            shown.contains("authentication failed"),
            "{mechanism}: {shown}"
        );
        assert!(!shown.contains(wrong_password), "{mechanism}: {shown}");
        assert!(
            !shown.contains(good["password"].as_str()),
            "{mechanism}: {shown}"
        );
        assert!(
            started.elapsed().as_secs() < 20,
            "{mechanism}: refused at once, not after the client's retries ({:?})",
            started.elapsed()
        );
    }
    vault.delete(&env.kv_mount(), &path).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_modes_check_the_chain_and_the_host_name() {
    let Some(env) = service(Service::KafkaSecure) else {
        return;
    };
    // The broker's certificate names localhost; by IP, verify-full refuses the name...
    let port = env
        .get("KAFKA_SASL_BOOTSTRAP_SERVERS")
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let by_ip = format!("127.0.0.1:{port}");
    let e = round_trip(
        &env,
        "kafka_secure",
        json!({"bootstrap_servers": by_ip, "tls_mode": "verify-full"}),
    )
    .await
    .expect_err("the name does not match");
    assert!(!e.retryable(), "{}", e.message());
    assert!(e.message().contains("certificate"), "{}", e.message());
    // ...verify-ca accepts the CA's certificate whatever its name...
    let n = round_trip(
        &env,
        "kafka_secure",
        json!({"bootstrap_servers": by_ip, "tls_mode": "verify-ca"}),
    )
    .await
    .unwrap_or_else(|e| panic!("verify-ca: {}", e.message()));
    assert_eq!(n, 500);
    // ...and a CA that did not sign it is refused.
    let other_ca = std::env::temp_dir().join(format!("{}.pem", unique("other_ca")));
    std::fs::write(&other_ca, OTHER_CA).unwrap();
    let e = round_trip(
        &env,
        "kafka_secure",
        json!({"ca_cert": other_ca.to_str().unwrap()}),
    )
    .await
    .expect_err("a CA that did not sign the broker's certificate");
    assert!(!e.retryable(), "{}", e.message());
    assert!(e.message().contains("certificate"), "{}", e.message());
    std::fs::remove_file(other_ca).ok();
}

/// A self-signed CA (public certificate only) that signed nothing the local services present.
const OTHER_CA: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIBhzCCAS2gAwIBAgIUU1rr4nx8XltMIZ/ROGhTrsY/wvkwCgYIKoZIzj0EAwIw\n\
GDEWMBQGA1UEAwwNc29tZSBvdGhlciBDQTAgFw0yNjExMjgwNDUwNTlaGA8yMTI2\n\
MTEwNDA0NTA1OVowGDEWMBQGA1UEAwwNc29tZSBvdGhlciBDQTBZMBMGByqGSM49\n\
AgEGCCqGSM49AwEHA0IABAjp1EiUpa4xldyr30ISXIoAo6RSItmiUo6WscgsXgRD\n\
Xz+031djTHP2D28hv8ChR1Ylo/0XTYEWEe6vMWDcCEKjUzBRMB0GA1UdDgQWBBTe\n\
igHH2XJ7CFvY8Bs2zetAxoAnNzAfBgNVHSMEGDAWgBTeigHH2XJ7CFvY8Bs2zetA\n\
xoAnNzAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIFrtlhPpWKWf\n\
o8AQaPwoi9MSRSzg/h9IvWeyDBata/eRAiEAwXq7pWa+8/B/v74uOXv1gBS7Gwah\n\
lhT2YBp8Cc5w/MU=\n\
-----END CERTIFICATE-----\n\
";
