//! Kafka: the connection (KafkaConfig from Vault, SASL PLAIN/SCRAM, TLS in `tls.rs`), the
//! connection check, and the batch extract and load (`extract.rs`, `load.rs`). rskafka talks to
//! the partitions directly: no consumer groups, the offsets are ours to keep (`offsets.rs`).

mod avro;
mod avro_write;
mod dead_letter;
mod decode;
mod encode;
mod extract;
mod extract_options;
mod load;
mod murmur;
mod offsets;
mod ranges;
mod registry;
mod stream;
mod tls;

pub use extract::{KafkaExtractOptions, OnDecodeError, StartAt, ValueFormat};
pub use load::{KafkaCompression, KafkaLoadOptions};
pub use ranges::{KafkaRanges, PartitionRange, kafka_ranges};

use pipeline_base::StepError;
use pipeline_credentials::{ExposeSecret, KafkaConfig};
use pipeline_data::ConnectionSetup;
use rskafka::BackoffConfig;
use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};
use std::sync::Arc;
use std::time::Duration;

/// How long rskafka keeps retrying one request before the error reaches the run's own retry
/// policy (its default retries forever).
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// The connection's Schema Registry (for `avro_confluent`).
pub(super) fn registry(setup: &ConnectionSetup) -> Result<registry::Registry, StepError> {
    let k = KafkaConfig::from_sources(setup.sources())
        .map_err(|e| StepError::from(e).context(format!("connection \"{}\"", setup.name)))?;
    registry::Registry::new(&k, &setup.name)
}

/// The first connection attempt's deadline: what retries cannot fix (a refused login, an
/// untrusted certificate) is answered after it instead of after the client's retries.
const FIRST_TRY: Duration = Duration::from_secs(3);

/// A client for the connection's brokers.
pub(crate) async fn client(setup: &ConnectionSetup) -> Result<(Client, String), StepError> {
    let k = KafkaConfig::from_sources(setup.sources())
        .map_err(|e| StepError::from(e).context(format!("connection \"{}\"", setup.name)))?;
    let tls = match k.tls() {
        true => Some(tls::client_config(
            k.tls_mode.as_deref(),
            k.ca_cert.as_deref(),
            &setup.name,
        )?),
        false => None,
    };
    let servers = k.bootstrap_servers.join(",");
    let doing = format!("connecting to Kafka at {servers}");
    let client = match build(&k, tls.clone(), FIRST_TRY).await {
        Ok(client) => client,
        Err(e) => {
            let e = kafka_error(e, &doing);
            if !e.retryable() {
                return Err(e);
            }
            build(&k, tls, REQUEST_DEADLINE)
                .await
                .map_err(|e| kafka_error(e, &doing))?
        }
    };
    Ok((client, servers))
}

/// Connects with requests retried until `deadline`.
async fn build(
    k: &KafkaConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    deadline: Duration,
) -> Result<Client, KafkaError> {
    let mut builder = ClientBuilder::new(k.bootstrap_servers.clone())
        .client_id("pipectl")
        .backoff_config(BackoffConfig {
            deadline: Some(deadline),
            max_backoff: Duration::from_secs(5),
            ..BackoffConfig::default()
        });
    if let Some(tls) = tls {
        builder = builder.tls_config(tls);
    }
    if let (Some(mechanism), Some(user), Some(password)) =
        (&k.sasl_mechanism, &k.username, &k.password)
    {
        // rskafka takes the password as a String: this copy lives as long as the client.
        let creds = Credentials::new(user.clone(), password.expose_secret().to_string());
        builder = builder.sasl_config(match mechanism.as_str() {
            "SCRAM-SHA-256" => SaslConfig::ScramSha256(creds),
            "SCRAM-SHA-512" => SaslConfig::ScramSha512(creds),
            _ => SaslConfig::Plain(creds),
        });
    }
    builder.build().await
}

/// A client for each partition of an existing topic (pipectl does not create topics).
pub(super) async fn open_partitions(
    client: &Client,
    servers: &str,
    topic: &str,
    step: &str,
) -> Result<Vec<PartitionClient>, StepError> {
    let topics = client
        .list_topics()
        .await
        .map_err(|e| kafka_error(e, &format!("listing topics on {servers}")))?;
    let Some(found) = topics.iter().find(|t| t.name == topic) else {
        return Err(StepError::user(format!(
            "step \"{step}\": topic \"{topic}\" does not exist on {servers}"
        ))
        .with_hint("create it first (pipectl does not create topics)"));
    };
    let mut partitions = Vec::with_capacity(found.partitions.len());
    for p in 0..i32::try_from(found.partitions.len()).unwrap_or(i32::MAX) {
        let doing = format!("opening topic \"{topic}\" partition {p}");
        partitions.push(
            client
                .partition_client(topic.to_string(), p, UnknownTopicHandling::Error)
                .await
                .map_err(|e| kafka_error(e, &doing))?,
        );
    }
    Ok(partitions)
}

/// The text of a step's `.avsc` file (relative to the pipeline file) and its path as shown.
pub(super) fn read_avsc(
    setup: &pipeline_data::StepSetup,
    path: &str,
) -> Result<(String, String), StepError> {
    let path = setup.resolve_path(path);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        StepError::user(format!(
            "step \"{}\": cannot read the Avro schema {}: {e}",
            setup.step,
            path.display()
        ))
    })?;
    Ok((text, path.display().to_string()))
}

/// A Kafka error, classed: what the broker refuses for good is the user's or the system's,
/// a dropped connection or a moving leader is transient.
pub(crate) fn kafka_error(e: KafkaError, doing: &str) -> StepError {
    let text = format!("{doing}: {e}");
    match &e {
        KafkaError::ServerError {
            protocol_error,
            error_message,
            ..
        } => {
            let detail = error_message.clone().unwrap_or_default();
            match protocol_error {
                ProtocolError::OffsetOutOfRange => StepError::user(format!(
                    "{doing}: the offset is outside what the partition still keeps {detail}"
                ))
                .with_hint("start from \"earliest\" or \"latest\", or fix the stored offsets"),
                ProtocolError::UnknownTopicOrPartition => {
                    StepError::user(format!("{doing}: no such topic or partition {detail}"))
                        .with_hint("check the topic name, or create the topic first")
                }
                ProtocolError::SaslAuthenticationFailed => StepError::external(format!(
                    "{doing}: authentication failed (check the username and password stored in Vault) {detail}"
                )),
                ProtocolError::TopicAuthorizationFailed
                | ProtocolError::ClusterAuthorizationFailed => {
                    StepError::external(text).with_hint("grant the user access to the topic (ACLs)")
                }
                ProtocolError::MessageTooLarge | ProtocolError::RecordListTooLarge => {
                    StepError::user(text)
                        .with_hint("lower batch_bytes, or raise the topic's max.message.bytes")
                }
                _ => StepError::transient(text),
            }
        }
        KafkaError::Connection(c) if c.to_string().contains("Sasl") => {
            StepError::external(format!("{doing}: authentication failed: {c}"))
                .with_hint("check the username, password and sasl_mechanism stored in Vault")
        }
        KafkaError::Connection(c) if c.to_string().contains("certificate") => StepError::external(
            format!("{doing}: the TLS handshake failed: {c}"),
        )
        .with_hint(
            "check ca_cert and tls_mode in Vault (verify-full also checks the broker's host name)",
        ),
        KafkaError::InvalidResponse(_) => StepError::external(text),
        _ => StepError::transient(text)
            .with_hint("check that the brokers are running and bootstrap_servers is right"),
    }
}

/// `validate --connect`: reach the brokers and list the topics.
pub(crate) async fn check(setup: ConnectionSetup) -> Result<String, StepError> {
    let (client, servers) = client(&setup).await?;
    let topics = client
        .list_topics()
        .await
        .map_err(|e| kafka_error(e, &format!("listing topics on {servers}")))?;
    Ok(format!("Kafka at {servers}: {} topics", topics.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline_base::ErrorClass;
    use rskafka::client::error::RequestContext;

    fn server(e: ProtocolError) -> KafkaError {
        KafkaError::ServerError {
            protocol_error: e,
            error_message: Some("detail".into()),
            request: RequestContext::Topic("t".into()),
            response: None,
            is_virtual: false,
        }
    }

    #[test]
    fn broker_answers_are_classed_by_what_a_retry_can_fix() {
        let cases = [
            (
                ProtocolError::OffsetOutOfRange,
                ErrorClass::User,
                "outside what the partition still keeps",
            ),
            (
                ProtocolError::UnknownTopicOrPartition,
                ErrorClass::User,
                "no such topic",
            ),
            (
                ProtocolError::SaslAuthenticationFailed,
                ErrorClass::External,
                "authentication failed",
            ),
            (
                ProtocolError::TopicAuthorizationFailed,
                ErrorClass::External,
                "reading t",
            ),
            (
                ProtocolError::MessageTooLarge,
                ErrorClass::User,
                "reading t",
            ),
        ];
        for (p, class, text) in cases {
            let e = kafka_error(server(p), "reading t");
            assert_eq!(e.class(), class, "{}", e.message());
            assert!(!e.retryable(), "{}", e.message());
            assert!(e.message().contains(text), "{}", e.message());
        }
        let e = kafka_error(server(ProtocolError::NotLeaderOrFollower), "reading t");
        assert!(
            e.retryable(),
            "a moving leader is transient: {}",
            e.message()
        );
        let e = kafka_error(KafkaError::InvalidResponse("garbage".into()), "reading t");
        assert_eq!(e.class(), ErrorClass::External);
    }
}
