//! MySQL / MariaDB: connections (JdbcConfig from Vault) and the connection check.

use mysql_async::prelude::Queryable;
use pipeline_base::StepError;
use pipeline_credentials::{ExposeSecret, JdbcConfig};
use pipeline_data::ConnectionSetup;

const DEFAULT_PORT: u16 = 3306;

/// `validate --connect`: log in and ask the server's version.
pub(crate) async fn check(setup: ConnectionSetup) -> Result<String, StepError> {
    let c = JdbcConfig::from_sources(setup.sources(), DEFAULT_PORT)
        .map_err(|e| StepError::from(e).context(format!("connection \"{}\"", setup.name)))?;
    if let Some(mode) = c
        .tls_mode
        .as_deref()
        .filter(|m| !matches!(*m, "disable" | "prefer"))
    {
        return Err(StepError::user(format!(
            "connection \"{}\": tls_mode \"{mode}\" is not supported for MySQL yet",
            setup.name
        ))
        .with_hint("use \"disable\" or \"prefer\" (plain connection) on a trusted network"));
    }
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(c.host.clone())
        .tcp_port(c.port)
        .db_name(Some(c.database.clone()))
        .user(Some(c.username.clone()))
        .pass(Some(c.password.expose_secret().to_string()));
    let where_ = format!("MySQL at {}:{}/{}", c.host, c.port, c.database);
    let mut conn = mysql_async::Conn::new(opts).await.map_err(|e| {
        let text = format!("connecting to {where_} as {}: {e}", c.username);
        match e {
            mysql_async::Error::Server(s) if s.code == 1045 || s.code == 1044 => {
                StepError::external(text).with_hint(
                    "check the username and password stored in Vault for this connection",
                )
            }
            mysql_async::Error::Server(_) => StepError::user(text),
            _ => StepError::transient(text),
        }
    })?;
    let version: Option<String> = conn
        .query_first("SELECT VERSION()")
        .await
        .map_err(|e| StepError::transient(format!("asking the server version: {e}")))?;
    let _ = conn.disconnect().await;
    Ok(format!(
        "MySQL {} at {}:{}/{} as {}",
        version.unwrap_or_default(),
        c.host,
        c.port,
        c.database,
        c.username
    ))
}
