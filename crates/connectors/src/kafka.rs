//! Kafka: connections (KafkaConfig from Vault) and the connection check.

use pipeline_base::StepError;
use pipeline_credentials::{ExposeSecret, KafkaConfig};
use pipeline_data::ConnectionSetup;
use rskafka::client::{ClientBuilder, Credentials, SaslConfig};

/// `validate --connect`: reach the brokers and list the topics.
pub(crate) async fn check(setup: ConnectionSetup) -> Result<String, StepError> {
    let k = KafkaConfig::from_sources(setup.sources())
        .map_err(|e| StepError::from(e).context(format!("connection \"{}\"", setup.name)))?;
    if k.tls() {
        return Err(StepError::user(format!(
            "connection \"{}\": security_protocol {} needs TLS to Kafka, which this build does not support yet",
            setup.name, k.security_protocol
        )));
    }
    let mut builder = ClientBuilder::new(k.bootstrap_servers.clone());
    if let (Some(mechanism), Some(user), Some(password)) =
        (&k.sasl_mechanism, &k.username, &k.password)
    {
        let creds = Credentials::new(user.clone(), password.expose_secret().to_string());
        builder = builder.sasl_config(match mechanism.as_str() {
            "SCRAM-SHA-256" => SaslConfig::ScramSha256(creds),
            "SCRAM-SHA-512" => SaslConfig::ScramSha512(creds),
            _ => SaslConfig::Plain(creds),
        });
    }
    let servers = k.bootstrap_servers.join(",");
    let client = builder.build().await.map_err(|e| {
        StepError::transient(format!("connecting to Kafka at {servers}: {e}"))
            .with_hint("check that the brokers are running and bootstrap_servers is right")
    })?;
    let topics = client
        .list_topics()
        .await
        .map_err(|e| StepError::transient(format!("listing topics on {servers}: {e}")))?;
    Ok(format!("Kafka at {servers}: {} topics", topics.len()))
}
