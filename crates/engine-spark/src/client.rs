//! A Spark Connect session over gRPC: runs plans (relations and commands), analyzes schemas,
//! sets session configuration, and turns the server's answers into `StepError`s that say whose
//! fault they are and whether a retry can help.

use crate::proto;
use crate::proto::spark_connect_service_client::SparkConnectServiceClient;
use crate::remote::Remote;
use arrow::array::RecordBatch;
use pipeline_base::StepError;
use secrecy::ExposeSecret;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// Largest message either way (a local relation going out, an Arrow batch coming back).
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;
/// Sent as `client_type` so the server's UI and logs name the client.
const CLIENT_TYPE: &str = concat!("pipectl/", env!("CARGO_PKG_VERSION"));

/// What one executed plan returned.
#[derive(Default)]
pub struct Execution {
    pub batches: Vec<RecordBatch>,
    /// Rows Spark reported in its Arrow batches.
    pub rows: i64,
    /// `(name, value)` of the observed metrics (`CollectMetrics`), in arrival order.
    pub observed: Vec<(String, Vec<proto::expression::Literal>)>,
    pub elapsed: Duration,
    /// The other answers (a streaming query's id, a query command's result, ...).
    pub other: Vec<proto::execute_plan_response::ResponseType>,
    /// Spark's metrics of the executed plan's nodes (name, metric, value).
    pub metrics: Vec<(String, String, i64)>,
}

/// One Spark Connect session.
pub struct SparkSession {
    client: SparkConnectServiceClient<Channel>,
    remote: Remote,
    session_id: String,
    /// The server's own session id, echoed back so a restarted server is noticed.
    server_session: Option<String>,
}

impl SparkSession {
    /// Opens a channel to the endpoint (one attempt: the caller retries transient failures).
    pub async fn connect(remote: &Remote) -> Result<SparkSession, StepError> {
        let mut endpoint = Endpoint::from_shared(remote.uri())
            .map_err(|e| {
                StepError::user(format!(
                    "the Spark Connect endpoint {remote} is not a valid address: {e}"
                ))
            })?
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        if remote.tls {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().with_native_roots())
                .map_err(|e| StepError::external(format!("setting up TLS to {remote}: {e}")))?;
        }
        let channel = endpoint.connect().await.map_err(|e| {
            StepError::transient(format!("cannot reach Spark Connect at {remote}: {}", source_chain(&e)))
                .with_hint("start the server (scripts/dev-env up spark for a local one) or pass the right --spark-remote")
        })?;
        let client = SparkConnectServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let session_id = remote
            .session_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        Ok(SparkSession {
            client,
            remote: remote.clone(),
            session_id,
            server_session: None,
        })
    }

    fn user_context(&self) -> Option<proto::UserContext> {
        Some(proto::UserContext {
            user_id: self.remote.user_id.clone(),
            user_name: self.remote.user_id.clone(),
            extensions: Vec::new(),
        })
    }

    /// Wraps a message with the bearer token when there is one.
    fn request<T>(&self, message: T) -> Result<tonic::Request<T>, StepError> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.remote.token {
            let value = format!("Bearer {}", token.expose_secret())
                .parse()
                .map_err(|_| {
                    StepError::user(
                        "the Spark Connect token holds characters a header cannot carry",
                    )
                })?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }

    /// Runs a plan to its end; `what` names it in errors (e.g. `step "paid"`).
    pub async fn execute(&mut self, plan: proto::Plan, what: &str) -> Result<Execution, StepError> {
        let started = Instant::now();
        let message = proto::ExecutePlanRequest {
            session_id: self.session_id.clone(),
            client_observed_server_side_session_id: self.server_session.clone(),
            user_context: self.user_context(),
            operation_id: Some(uuid::Uuid::new_v4().to_string()),
            plan: Some(plan),
            client_type: Some(CLIENT_TYPE.to_string()),
            request_options: Vec::new(),
            tags: vec!["pipectl".to_string()],
        };
        let request = self.request(message)?;
        let mut stream = self
            .client
            .execute_plan(request)
            .await
            .map_err(|s| status_error(&s, &self.remote, what))?
            .into_inner();
        let mut out = Execution::default();
        let mut progress_logged = Instant::now();
        loop {
            let response = match stream.message().await {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(s) => return Err(status_error(&s, &self.remote, what)),
            };
            if !response.server_side_session_id.is_empty() {
                self.server_session = Some(response.server_side_session_id.clone());
            }
            if let Some(metrics) = &response.metrics {
                for object in &metrics.metrics {
                    for (key, value) in &object.execution_metrics {
                        out.metrics
                            .push((object.name.clone(), key.clone(), value.value));
                    }
                }
            }
            for observed in response.observed_metrics {
                out.observed.push((observed.name, observed.values));
            }
            use proto::execute_plan_response::ResponseType;
            match response.response_type {
                Some(ResponseType::ArrowBatch(batch)) => {
                    out.rows = out.rows.saturating_add(batch.row_count);
                    out.batches.extend(crate::arrow_ipc::decode(&batch.data)?);
                }
                Some(ResponseType::ExecutionProgress(progress))
                    if progress_logged.elapsed() >= Duration::from_secs(5) =>
                {
                    progress_logged = Instant::now();
                    let (done, total) = progress.stages.iter().fold((0i64, 0i64), |(d, t), s| {
                        (
                            d.saturating_add(s.num_completed_tasks),
                            t.saturating_add(s.num_tasks),
                        )
                    });
                    tracing::info!(
                        what,
                        tasks_done = done,
                        tasks = total,
                        inflight = progress.num_inflight_tasks,
                        "spark progress"
                    );
                }
                Some(ResponseType::ExecutionProgress(_) | ResponseType::ResultComplete(_))
                | None => {}
                Some(other) => out.other.push(other),
            }
        }
        out.elapsed = started.elapsed();
        Ok(out)
    }

    /// Runs a relation and returns its rows.
    pub async fn collect(
        &mut self,
        relation: proto::Relation,
        what: &str,
    ) -> Result<Execution, StepError> {
        self.execute(plan_of(relation), what).await
    }

    /// Runs a command (a write, a view, an SQL statement).
    pub async fn command(
        &mut self,
        command: proto::command::CommandType,
        what: &str,
    ) -> Result<Execution, StepError> {
        let plan = proto::Plan {
            op_type: Some(proto::plan::OpType::Command(proto::Command {
                command_type: Some(command),
            })),
        };
        self.execute(plan, what).await
    }

    /// The schema Spark resolves for a relation (columns and types), without running it.
    pub async fn schema(
        &mut self,
        relation: proto::Relation,
        what: &str,
    ) -> Result<proto::DataType, StepError> {
        use proto::analyze_plan_request::{Analyze, Schema};
        let message = proto::AnalyzePlanRequest {
            session_id: self.session_id.clone(),
            client_observed_server_side_session_id: self.server_session.clone(),
            user_context: self.user_context(),
            client_type: Some(CLIENT_TYPE.to_string()),
            analyze: Some(Analyze::Schema(Schema {
                plan: Some(plan_of(relation)),
            })),
        };
        let request = self.request(message)?;
        let response = self
            .client
            .analyze_plan(request)
            .await
            .map_err(|s| status_error(&s, &self.remote, what))?
            .into_inner();
        match response.result {
            Some(proto::analyze_plan_response::Result::Schema(s)) => s.schema.ok_or_else(|| {
                StepError::external(format!(
                    "Spark Connect at {} answered no schema for {what}",
                    self.remote
                ))
            }),
            _ => Err(StepError::external(format!(
                "Spark Connect at {} answered something other than a schema for {what}",
                self.remote
            ))),
        }
    }

    /// Sets session configuration (e.g. the session time zone).
    pub async fn set_config(&mut self, pairs: &[(&str, String)]) -> Result<(), StepError> {
        use proto::config_request::{Operation, Set, operation::OpType};
        let message = proto::ConfigRequest {
            session_id: self.session_id.clone(),
            client_observed_server_side_session_id: self.server_session.clone(),
            user_context: self.user_context(),
            operation: Some(Operation {
                op_type: Some(OpType::Set(Set {
                    pairs: pairs
                        .iter()
                        .map(|(k, v)| proto::KeyValue {
                            key: (*k).to_string(),
                            value: Some(v.clone()),
                        })
                        .collect(),
                    silent: None,
                })),
            }),
            client_type: Some(CLIENT_TYPE.to_string()),
        };
        let request = self.request(message)?;
        self.client
            .config(request)
            .await
            .map_err(|s| status_error(&s, &self.remote, "the session configuration"))?;
        Ok(())
    }

    /// Ends the session on the server (its temporary views and cached data go with it).
    pub async fn close(mut self) {
        let message = proto::ReleaseSessionRequest {
            session_id: self.session_id.clone(),
            user_context: self.user_context(),
            client_type: Some(CLIENT_TYPE.to_string()),
            // A session id the user fixed may be used again by the next attempt or run.
            allow_reconnect: self.remote.session_id.is_some(),
        };
        if let Ok(request) = self.request(message)
            && let Err(status) = self.client.release_session(request).await
        {
            tracing::debug!(error = %status.message(), "releasing the Spark Connect session");
        }
    }
}

/// A plan whose root is `relation`.
pub fn plan_of(relation: proto::Relation) -> proto::Plan {
    proto::Plan {
        op_type: Some(proto::plan::OpType::Root(relation)),
    }
}

/// The causes of a transport error, joined (tonic's own message is only "transport error").
fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A Spark Connect answer as a `StepError`: unreachable or overloaded servers are transient;
/// errors whose SQLSTATE class is 42 (analysis), 22 (data) or 23 (constraint) are the
/// pipeline's; the rest are the cluster's. Only the first line of Spark's message is kept: the
/// rest is a plan dump.
pub fn status_error(status: &tonic::Status, remote: &Remote, what: &str) -> StepError {
    use tonic::Code;
    let message = first_line(status.message());
    match status.code() {
        // Spark answers RESOURCE_EXHAUSTED to a message over its inbound limit: not transient.
        Code::ResourceExhausted => StepError::external(format!(
            "Spark Connect at {remote} refused a message for {what} as too large: {message}"
        ))
        .with_hint("raise spark.connect.grpc.maxInboundMessageSize on the server"),
        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted => {
            StepError::transient(format!("Spark Connect at {remote} is unavailable ({what}): {message}"))
                .with_hint("start the server (scripts/dev-env up spark for a local one) or pass the right --spark-remote")
        }
        Code::Unauthenticated | Code::PermissionDenied => {
            StepError::external(format!("Spark Connect at {remote} refused pipectl ({what}): {message}"))
                .with_hint("check the token= parameter of the endpoint")
        }
        _ => match sqlstate(status.message()).as_deref().map(|s| s.get(..2).unwrap_or_default()) {
            Some("42" | "22" | "23") => StepError::user(format!("Spark refused {what}: {message}")),
            Some("08") => StepError::transient(format!("Spark lost a connection running {what}: {message}")),
            _ => StepError::external(format!("Spark failed running {what}: {message}")),
        },
    }
}

/// The message up to the plan Spark appends after `;\n`.
fn first_line(message: &str) -> String {
    let line = message.split(";\n").next().unwrap_or_default();
    line.lines().next().unwrap_or_default().trim().to_string()
}

/// The `SQLSTATE: XXXXX` Spark puts in its messages.
fn sqlstate(message: &str) -> Option<String> {
    let at = message.find("SQLSTATE: ")?;
    let code: String = message
        .get(at.saturating_add(10)..)?
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    (code.len() == 5).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline_base::ErrorClass;
    use rstest::rstest;

    fn remote() -> Remote {
        Remote::parse("sc://localhost:15002").expect("valid")
    }

    #[rstest]
    #[case(
        tonic::Code::Unavailable,
        "connection refused",
        ErrorClass::External,
        true
    )]
    #[case(
        tonic::Code::Internal,
        "[UNRESOLVED_COLUMN.WITH_SUGGESTION] A column `x` cannot be resolved. SQLSTATE: 42703;\n'Project ['x]",
        ErrorClass::User,
        false
    )]
    #[case(
        tonic::Code::Internal,
        "[CAST_INVALID_INPUT] The value 'a' cannot be cast. SQLSTATE: 22018",
        ErrorClass::User,
        false
    )]
    #[case(
        tonic::Code::Internal,
        "[INTERNAL_ERROR] boom SQLSTATE: XX000",
        ErrorClass::External,
        false
    )]
    #[case(
        tonic::Code::Unknown,
        "java.io.IOException: disk full",
        ErrorClass::External,
        false
    )]
    fn classifies_answers(
        #[case] code: tonic::Code,
        #[case] message: &str,
        #[case] class: ErrorClass,
        #[case] retry: bool,
    ) {
        let error = status_error(&tonic::Status::new(code, message), &remote(), "step \"s\"");
        assert_eq!(
            (error.class(), error.retryable()),
            (class, retry),
            "{}",
            error.message()
        );
        assert!(
            !error.message().contains("'Project"),
            "the plan dump is cut: {}",
            error.message()
        );
        assert!(error.message().contains("step \"s\""));
    }
}
