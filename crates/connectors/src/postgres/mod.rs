//! PostgreSQL: connections (JdbcConfig from Vault), the connection check, and (in `extract` and
//! `load`) binary-COPY reads and writes.

mod decode;
mod encode;
mod extract;
mod load;
mod partition;
mod stream;
mod tls;

pub use extract::{NumericMode, PostgresExtractOptions};
pub use load::{PgWriteMode, PostgresLoadOptions};

use pipeline_base::StepError;
use pipeline_credentials::{ExposeSecret, JdbcConfig};
use pipeline_data::ConnectionSetup;
use std::time::Duration;
use tokio_postgres::error::SqlState;

pub(crate) const DEFAULT_PORT: u16 = 5432;

/// The connection's typed credentials.
pub(crate) fn jdbc(setup: &ConnectionSetup) -> Result<JdbcConfig, StepError> {
    JdbcConfig::from_sources(setup.sources(), DEFAULT_PORT)
        .map_err(|e| StepError::from(e).context(format!("connection \"{}\"", setup.name)))
}

/// Opens a client; the connection task runs in the background until the client is dropped.
pub(crate) async fn connect(setup: &ConnectionSetup) -> Result<tokio_postgres::Client, StepError> {
    let c = jdbc(setup)?;
    let mut config = tokio_postgres::Config::new();
    config
        .host(&c.host)
        .port(c.port)
        .dbname(&c.database)
        .user(&c.username)
        .password(c.password.expose_secret())
        .application_name("pipectl")
        .connect_timeout(Duration::from_secs(10));
    for (k, v) in &c.params {
        if k == "options" {
            config.options(v);
        }
    }
    let where_ = format!("PostgreSQL at {}:{}/{}", c.host, c.port, c.database);
    let fail = |e| {
        pg_error(
            e,
            &format!(
                "connection \"{}\": connecting to {where_} as {}",
                setup.name, c.username
            ),
        )
    };
    let client = match tls::for_mode(c.tls_mode.as_deref(), c.ca_cert.as_deref(), &setup.name)? {
        tls::Tls::Off => {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(fail)?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "PostgreSQL connection closed");
                }
            });
            client
        }
        tls::Tls::On(mode, connector) => {
            config.ssl_mode(mode);
            let (client, connection) = config.connect(connector).await.map_err(fail)?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "PostgreSQL connection closed");
                }
            });
            client
        }
    };
    Ok(client)
}

/// Classifies a PostgreSQL error: refused connections and serialization failures can be
/// retried; authentication, missing objects and bad SQL are the user's to fix.
pub(crate) fn pg_error(e: tokio_postgres::Error, context: &str) -> StepError {
    let Some(db) = e.as_db_error() else {
        // No SQLSTATE: the connection itself failed (refused, reset, timed out, TLS); the cause
        // (e.g. "Connection refused") follows in the error's source chain.
        let err = StepError::transient(format!("{context}: {e}")).with_source(e);
        let full = err.full_message();
        if full.contains("certificate") {
            // A TLS verification failure: retrying will not change the certificate.
            return StepError::external(full).with_hint(
                "check tls_mode and ca_cert: verify-full needs the CA that signed the server's certificate and a host name the certificate names",
            );
        }
        return err.with_hint("check that PostgreSQL is running and reachable from here");
    };
    let text = format!("{context}: {} ({})", db.message(), db.code().code());
    match *db.code() {
        SqlState::INVALID_PASSWORD | SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
            StepError::external(text)
                .with_hint("check the username and password stored in Vault for this connection")
        }
        SqlState::T_R_SERIALIZATION_FAILURE
        | SqlState::T_R_DEADLOCK_DETECTED
        | SqlState::LOCK_NOT_AVAILABLE
        | SqlState::ADMIN_SHUTDOWN
        | SqlState::CANNOT_CONNECT_NOW
        | SqlState::TOO_MANY_CONNECTIONS
        | SqlState::QUERY_CANCELED => StepError::transient(text),
        _ => StepError::user(text),
    }
}

/// `validate --connect`: log in and ask the server's version.
pub(crate) async fn check(setup: ConnectionSetup) -> Result<String, StepError> {
    let c = jdbc(&setup)?;
    let client = connect(&setup).await?;
    let row = client
        .query_one("SELECT current_setting('server_version')", &[])
        .await
        .map_err(|e| pg_error(e, "asking the server version"))?;
    let version: String = row.get(0);
    Ok(format!(
        "PostgreSQL {version} at {}:{}/{} as {}",
        c.host, c.port, c.database, c.username
    ))
}

/// A double-quoted SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
