//! MySQL / MariaDB: connections (JdbcConfig from Vault, TLS by `tls_mode`), error
//! classification and the connection check; `extract` reads with the binary protocol straight
//! into Polars columns, `load` writes with `LOAD DATA LOCAL INFILE` inside one transaction.
//!
//! Every session runs with `time_zone = '+00:00'` (TIMESTAMP values are read and written as
//! UTC) and `utf8mb4`.

mod decode;
mod encode;
mod extract;
mod load;
mod load_options;
mod partition;
mod stream;
mod tls;

pub use extract::MysqlExtractOptions;
pub use load_options::{MysqlLoadOptions, MysqlWriteMode};

use mysql_async::prelude::Queryable;
use pipeline_base::StepError;
use pipeline_credentials::{ExposeSecret, JdbcConfig};
use pipeline_data::ConnectionSetup;
use std::time::Duration;

const DEFAULT_PORT: u16 = 3306;

/// The connection's typed credentials.
pub(crate) fn jdbc(setup: &ConnectionSetup) -> Result<JdbcConfig, StepError> {
    JdbcConfig::from_sources(setup.sources(), DEFAULT_PORT)
        .map_err(|e| StepError::from(e).context(format!("connection \"{}\"", setup.name)))
}

/// Statements every session starts with.
fn session_init(strict: bool) -> Vec<String> {
    let mut init = vec![
        "SET NAMES utf8mb4".to_string(),
        "SET time_zone = '+00:00'".to_string(),
        // A reader that stalls (a slow load downstream) must not have the server drop it.
        "SET SESSION net_write_timeout = 3600, net_read_timeout = 3600".to_string(),
    ];
    if strict {
        // INSERT ... SELECT and the fallback INSERTs fail instead of truncating.
        init.push(
            "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), 'STRICT_ALL_TABLES')"
                .to_string(),
        );
    }
    init
}

/// Opens a connection. `strict` adds STRICT_ALL_TABLES to the session's sql_mode (loads).
pub(crate) async fn connect(
    setup: &ConnectionSetup,
    strict: bool,
) -> Result<mysql_async::Conn, StepError> {
    let c = jdbc(setup)?;
    let tls = tls::for_mode(c.tls_mode.as_deref(), c.ca_cert.as_deref(), &setup.name)?;
    let base = mysql_async::OptsBuilder::default()
        .ip_or_hostname(c.host.clone())
        .tcp_port(c.port)
        .db_name(Some(c.database.clone()))
        .user(Some(c.username.clone()))
        // mysql_async keeps the password as a String; this copy is the one its API forces.
        .pass(Some(c.password.expose_secret()))
        .prefer_socket(false)
        .wait_timeout(Some(28_800))
        .init(session_init(strict));
    let where_ = format!(
        "connection \"{}\": connecting to MySQL at {}:{}/{} as {}",
        setup.name, c.host, c.port, c.database, c.username
    );
    let open = |opts: mysql_async::OptsBuilder| async move {
        match tokio::time::timeout(Duration::from_secs(15), mysql_async::Conn::new(opts)).await {
            Ok(r) => r,
            Err(_) => Err(mysql_async::Error::Io(mysql_async::IoError::Io(
                std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out after 15 s"),
            ))),
        }
    };
    match tls {
        tls::Tls::Off => open(base).await.map_err(|e| my_error(e, &where_)),
        tls::Tls::On {
            mut opts,
            prefer,
            any_name,
        } => {
            if any_name {
                let name = tls::certificate_name(&c.host, c.port, &setup.name).await?;
                opts = opts.with_danger_tls_hostname_override(Some(name));
            }
            match open(base.clone().ssl_opts(opts)).await {
                Err(mysql_async::Error::Driver(
                    mysql_async::DriverError::NoClientSslFlagFromServer,
                )) if prefer => {
                    tracing::debug!(connection = %setup.name, "the server offers no TLS; connecting without (tls_mode prefer)");
                    open(base).await.map_err(|e| my_error(e, &where_))
                }
                other => other.map_err(|e| my_error(e, &where_)),
            }
        }
    }
}

/// Server error codes a retry can get past: lock wait timeout, deadlock, too many connections
/// (server-wide or the user's), shutdown, interrupted, idle disconnect, network errors, a
/// read-only server during a fail-over, group replication and Galera conflicts.
const TRANSIENT_CODES: &[u16] = &[
    1205, 1213, 1040, 1203, 1053, 1317, 4031, 1158, 1159, 1160, 1161, 1290, 1836, 1792, 3101, 1047,
    1927,
];
/// Server error codes that are the server's to fix: host blocked or not allowed, an
/// authentication protocol the client cannot speak.
const SERVER_SIDE_CODES: &[u16] = &[1129, 1130, 1251];

/// Classifies a MySQL error: refused and lost connections, deadlocks and lock timeouts can be
/// retried; authentication and certificate failures are the external system's; bad SQL, missing
/// tables and data the server refuses are the user's to fix; anything else is ours.
pub(crate) fn my_error(e: mysql_async::Error, context: &str) -> StepError {
    use mysql_async::{DriverError, Error};
    match e {
        Error::Server(ref s) => {
            let text = format!("{context}: {} (MySQL error {})", s.message, s.code);
            match s.code {
                1044 | 1045 | 1698 => StepError::external(text).with_hint(
                    "check the username and password stored in Vault for this connection",
                ),
                c if TRANSIENT_CODES.contains(&c) => StepError::transient(text),
                c if SERVER_SIDE_CODES.contains(&c) => StepError::external(text),
                _ => StepError::user(text),
            }
        }
        Error::Driver(DriverError::NoClientSslFlagFromServer) => StepError::external(format!(
            "{context}: the server does not offer TLS, which tls_mode asks for"
        ))
        .with_hint("enable TLS on the server, or set tls_mode \"prefer\" or \"disable\""),
        Error::Driver(
            DriverError::ConnectionClosed
            | DriverError::PoolDisconnected
            | DriverError::PacketOutOfOrder,
        ) => StepError::transient(format!("{context}: {e}")),
        Error::Driver(
            DriverError::UnknownAuthPlugin { .. }
            | DriverError::MysqlOldPasswordDisabled
            | DriverError::CleartextPluginDisabled
            | DriverError::PacketTooLarge,
        ) => StepError::external(format!("{context}: {e}"))
            .with_hint("check the server's authentication plugin and max_allowed_packet"),
        Error::Io(_) => {
            let text = format!("{context}: {e}");
            if text.contains("certificate") || text.contains("Certificate") {
                return StepError::external(text).with_hint(
                    "check tls_mode and ca_cert: verify-full needs the CA that signed the server's certificate and a host name the certificate names",
                );
            }
            StepError::transient(text)
                .with_hint("check that MySQL is running and reachable from here")
        }
        other => StepError::internal(format!("{context}: {other}")),
    }
}

/// `validate --connect`: log in and ask the server's version.
pub(crate) async fn check(setup: ConnectionSetup) -> Result<String, StepError> {
    let c = jdbc(&setup)?;
    let mut conn = connect(&setup, false).await?;
    let version: Option<String> = conn
        .query_first("SELECT VERSION()")
        .await
        .map_err(|e| my_error(e, "asking the server version"))?;
    let cipher: Option<(String, String)> = conn
        .query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .await
        .unwrap_or(None);
    let _ = conn.disconnect().await;
    let tls = match cipher {
        Some((_, c)) if !c.is_empty() => format!(", TLS ({c})"),
        _ => String::new(),
    };
    Ok(format!(
        "MySQL {} at {}:{}/{} as {}{tls}",
        version.unwrap_or_default(),
        c.host,
        c.port,
        c.database,
        c.username
    ))
}

/// A backquoted identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `shop.orders` → `` `shop`.`orders` `` (the first dot separates the database).
pub(crate) fn quote_table(name: &str) -> String {
    match name.split_once('.') {
        Some((schema, table)) => format!("{}.{}", quote_ident(schema), quote_ident(table)),
        None => quote_ident(name),
    }
}

/// A single-quoted string literal.
pub(crate) fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// `(schema or current database, table)` of a possibly qualified name, as SQL expressions.
pub(crate) fn table_parts(name: &str) -> (String, String) {
    match name.split_once('.') {
        Some((schema, table)) => (quote_literal(schema), quote_literal(table)),
        None => ("DATABASE()".to_string(), quote_literal(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_table("shop.or`ders"), "`shop`.`or``ders`");
        assert_eq!(quote_literal("it's a \\"), "'it''s a \\\\'");
        assert_eq!(
            table_parts("orders"),
            ("DATABASE()".into(), "'orders'".into())
        );
        assert_eq!(table_parts("s.t"), ("'s'".into(), "'t'".into()));
    }

    #[test]
    fn errors_are_classified() {
        let server = |code| {
            mysql_async::Error::Server(mysql_async::ServerError {
                code,
                message: "m".into(),
                state: "HY000".into(),
            })
        };
        assert!(my_error(server(1213), "x").retryable());
        assert!(!my_error(server(1146), "x").retryable());
        let auth = my_error(server(1045), "x");
        assert!(!auth.retryable());
        assert!(auth.hint().unwrap_or_default().contains("Vault"));
        let io = mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        )));
        assert!(my_error(io, "x").retryable());
    }
}
