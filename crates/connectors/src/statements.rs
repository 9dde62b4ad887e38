//! SQL statements run over pipectl's own connection to PostgreSQL or MySQL, in one
//! transaction: how an engine that writes through someone else's client (Spark's JDBC writer)
//! finishes an upsert (merge a staging table, drop it).

use pipeline_base::StepError;
use pipeline_data::ConnectionSetup;

/// Runs `statements` in order in one transaction on the connection's database (MySQL commits
/// DDL implicitly, as it always does).
pub async fn execute_statements(
    setup: &ConnectionSetup,
    statements: &[String],
) -> Result<(), StepError> {
    match setup.config.system.as_str() {
        "postgres" => {
            let mut client = crate::postgres::connect(setup).await?;
            let tx = client
                .transaction()
                .await
                .map_err(|e| crate::postgres::pg_error(e, "starting a transaction"))?;
            for statement in statements {
                tx.batch_execute(statement)
                    .await
                    .map_err(|e| crate::postgres::pg_error(e, "running a merge statement"))?;
            }
            tx.commit()
                .await
                .map_err(|e| crate::postgres::pg_error(e, "committing"))
        }
        "mysql" => {
            use mysql_async::prelude::Queryable;
            let mut conn = crate::mysql::connect(setup, true).await?;
            let mut tx = conn
                .start_transaction(mysql_async::TxOpts::default())
                .await
                .map_err(|e| crate::mysql::my_error(e, "starting a transaction"))?;
            for statement in statements {
                tx.query_drop(statement)
                    .await
                    .map_err(|e| crate::mysql::my_error(e, "running a merge statement"))?;
            }
            tx.commit()
                .await
                .map_err(|e| crate::mysql::my_error(e, "committing"))
        }
        other => Err(StepError::internal(format!(
            "SQL statements on a \"{other}\" connection"
        ))),
    }
}
