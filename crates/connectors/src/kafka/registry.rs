//! A Confluent-compatible Schema Registry client for `avro_confluent` values (magic byte 0,
//! a 4-byte big-endian schema id, then the Avro datum): schemas fetched once per id, the
//! latest schema of a subject, and registration (TopicNameStrategy: `TOPIC-value`). The URL
//! is the connection's `schema_registry_url` (the API base, e.g. `.../apis/ccompat/v7` for
//! Apicurio), with optional basic auth from Vault.

use pipeline_base::StepError;
use pipeline_credentials::{ExposeSecret, KafkaConfig, SecretString};
use serde_json::{Value, json};
use std::time::Duration;

/// The wire format's header: magic byte 0 and the schema id.
pub(super) fn split_wire(bytes: &[u8]) -> Result<(u32, &[u8]), String> {
    match bytes {
        [0, a, b, c, d, rest @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        [m, ..] if *m != 0 => Err(format!(
            "the value is not in the Confluent wire format (magic byte {m}, expected 0)"
        )),
        _ => Err("the value is shorter than the Confluent wire format's 5-byte header".into()),
    }
}

/// The header for schema `id`.
pub(super) fn wire_header(id: u32) -> [u8; 5] {
    let [a, b, c, d] = id.to_be_bytes();
    [0, a, b, c, d]
}

pub(crate) struct Registry {
    http: reqwest::Client,
    base: String,
    auth: Option<(String, SecretString)>,
}

impl Registry {
    /// The connection's registry; an error naming the missing field when it has none.
    pub fn new(k: &KafkaConfig, connection: &str) -> Result<Self, StepError> {
        let Some(url) = &k.schema_registry_url else {
            return Err(StepError::user(format!(
                "connection \"{connection}\": avro_confluent needs a Schema Registry, and the connection has no schema_registry_url"
            ))
            .with_hint("store schema_registry_url (the API base URL) with the connection's credentials in Vault"));
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| StepError::internal(format!("the registry's HTTP client: {e}")))?;
        Ok(Registry {
            http,
            base: url.trim_end_matches('/').to_string(),
            auth: k
                .schema_registry_username
                .clone()
                .zip(k.schema_registry_password.clone()),
        })
    }

    async fn call(&self, req: reqwest::RequestBuilder, what: &str) -> Result<Value, StepError> {
        let req = match &self.auth {
            Some((user, password)) => req.basic_auth(user, Some(password.expose_secret())),
            None => req,
        };
        let resp = req.send().await.map_err(|e| {
            StepError::transient(format!(
                "{what}: the Schema Registry at {} did not answer: {e}",
                self.base
            ))
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            return serde_json::from_str(&text).map_err(|e| {
                StepError::external(format!(
                    "{what}: the Schema Registry answered with no JSON: {e}"
                ))
            });
        }
        let detail: String = text.chars().take(300).collect();
        let message = format!(
            "{what}: the Schema Registry at {} answered {status}: {detail}",
            self.base
        );
        Err(match status.as_u16() {
            401 | 403 => StepError::external(message)
                .with_hint("check schema_registry_username and schema_registry_password in Vault"),
            404 | 409 | 422 => StepError::user(message),
            s if s >= 500 || s == 429 => StepError::transient(message),
            _ => StepError::external(message),
        })
    }

    /// The schema (JSON text) with this id.
    pub async fn schema(&self, id: u32) -> Result<String, StepError> {
        let what = format!("fetching schema id {id}");
        let v = self
            .call(
                self.http.get(format!("{}/schemas/ids/{id}", self.base)),
                &what,
            )
            .await?;
        schema_text(&v, &what)
    }

    /// The latest schema registered under `subject`.
    pub async fn latest(&self, subject: &str) -> Result<String, StepError> {
        let what = format!("fetching the latest schema of subject \"{subject}\"");
        let url = format!("{}/subjects/{subject}/versions/latest", self.base);
        let v = self.call(self.http.get(url), &what).await.map_err(|e| {
            e.with_hint(
                "produce with avro_confluent first, or name the reader schema in \"avro_schema\"",
            )
        })?;
        schema_text(&v, &what)
    }

    /// Registers `schema` (JSON text) under `subject`, or finds it there: its id.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, StepError> {
        let what = format!("registering the value schema under subject \"{subject}\"");
        let url = format!("{}/subjects/{subject}/versions", self.base);
        let req = self
            .http
            .post(url)
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .body(json!({"schema": schema}).to_string());
        let v = self.call(req, &what).await.map_err(|e| {
            e.with_hint("an incompatible schema is refused by the subject's compatibility rule")
        })?;
        v.get("id")
            .and_then(Value::as_u64)
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| StepError::external(format!("{what}: the answer has no schema id: {v}")))
    }
}

fn schema_text(v: &Value, what: &str) -> Result<String, StepError> {
    v.get("schema")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| StepError::external(format!("{what}: the answer has no schema: {v}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_header_round_trips_and_bad_headers_are_named() {
        let mut v = wire_header(258).to_vec();
        v.extend_from_slice(b"datum");
        assert_eq!(split_wire(&v), Ok((258, &b"datum"[..])));
        assert!(
            split_wire(b"{\"a\":1}")
                .unwrap_err()
                .contains("magic byte 123")
        );
        assert!(split_wire(&[0, 0, 1]).unwrap_err().contains("shorter"));
        assert!(split_wire(&[]).unwrap_err().contains("shorter"));
    }

    /// A one-shot HTTP server answering every request with `status` and `body`.
    async fn answering(status: u16, body: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
            }
        });
        format!("http://{addr}/")
    }

    fn config(url: Option<String>) -> KafkaConfig {
        KafkaConfig {
            bootstrap_servers: vec!["127.0.0.1:1".into()],
            security_protocol: "PLAINTEXT".into(),
            sasl_mechanism: None,
            username: None,
            password: None,
            ca_cert: None,
            tls_mode: None,
            schema_registry_url: url,
            schema_registry_username: Some("u".into()),
            schema_registry_password: Some(SecretString::from("registry-pass")),
        }
    }

    /// Each answer is classed by what a retry can do, and no password shows.
    #[tokio::test]
    async fn registry_answers_are_classed() {
        use pipeline_base::ErrorClass::*;
        let Err(e) = Registry::new(&config(None), "events") else {
            panic!("a registry without a URL was accepted")
        };
        assert!(
            e.message().contains("no schema_registry_url"),
            "{}",
            e.message()
        );
        let cases: [(u16, &'static str, pipeline_base::ErrorClass, bool); 6] = [
            (401, "denied", External, false),
            (404, "{\"error_code\":40401}", User, false),
            (409, "incompatible", User, false),
            (503, "busy", External, true),
            (418, "teapot", External, false),
            (200, "not json", External, false),
        ];
        for (status, body, class, retryable) in cases {
            let r = Registry::new(&config(Some(answering(status, body).await)), "events").unwrap();
            let e = r.schema(7).await.unwrap_err();
            assert_eq!(
                (e.class(), e.retryable()),
                (class, retryable),
                "{status}: {}",
                e.message()
            );
            assert!(!format!("{e:?}").contains("registry-pass"));
        }
        let r = Registry::new(&config(Some(answering(200, "{}").await)), "events").unwrap();
        assert!(
            r.schema(1)
                .await
                .unwrap_err()
                .message()
                .contains("no schema")
        );
        assert!(
            r.latest("t-value")
                .await
                .unwrap_err()
                .message()
                .contains("no schema")
        );
        assert!(
            r.register("t-value", "{}")
                .await
                .unwrap_err()
                .message()
                .contains("no schema id")
        );
        let r = Registry::new(&config(Some(answering(404, "missing").await)), "events").unwrap();
        let e = r.latest("t-value").await.unwrap_err();
        assert!(
            e.hint()
                .unwrap_or_default()
                .contains("produce with avro_confluent first")
        );
        let closed = Registry::new(&config(Some("http://127.0.0.1:1/".into())), "events").unwrap();
        let e = closed.schema(1).await.unwrap_err();
        assert!(
            e.retryable() && e.message().contains("did not answer"),
            "{}",
            e.message()
        );
    }
}
