//! Builders for the few Spark Connect relations and commands pipectl sends: SQL over named
//! temporary views, data source reads and writes, local Arrow data, `withColumns`.

use crate::proto;
use crate::proto::command::CommandType;
use crate::proto::relation::RelType;
use std::collections::HashMap;

fn relation(rel_type: RelType) -> proto::Relation {
    proto::Relation {
        common: None,
        rel_type: Some(rel_type),
    }
}

/// `SELECT ...` (or any query) over the session's temporary views.
pub fn sql(query: impl Into<String>) -> proto::Relation {
    relation(RelType::Sql(proto::Sql {
        query: query.into(),
        ..Default::default()
    }))
}

/// A temporary view (or table) by name.
pub fn table(name: &str) -> proto::Relation {
    relation(RelType::Read(proto::Read {
        read_type: Some(proto::read::ReadType::NamedTable(proto::read::NamedTable {
            unparsed_identifier: crate::expr::ident(name),
            options: HashMap::new(),
        })),
        is_streaming: false,
    }))
}

/// A data source read: `format` with its options and paths (none for JDBC).
pub fn read(
    format: &str,
    options: HashMap<String, String>,
    paths: Vec<String>,
    streaming: bool,
) -> proto::Relation {
    relation(RelType::Read(proto::Read {
        read_type: Some(proto::read::ReadType::DataSource(proto::read::DataSource {
            format: Some(format.to_string()),
            schema: None,
            options,
            paths,
            predicates: Vec::new(),
        })),
        is_streaming: streaming,
    }))
}

/// Rows sent from pipectl as one Arrow IPC stream.
pub fn local(arrow_stream: Vec<u8>) -> proto::Relation {
    relation(RelType::LocalRelation(proto::LocalRelation {
        data: Some(arrow_stream),
        schema: None,
    }))
}

/// An expression in Spark SQL text.
pub fn expression(text: impl Into<String>) -> proto::Expression {
    proto::Expression {
        common: None,
        expr_type: Some(proto::expression::ExprType::ExpressionString(
            proto::expression::ExpressionString {
                expression: text.into(),
            },
        )),
    }
}

/// `input.withColumns({name: expression})`: existing names are replaced in place, new ones
/// appended in order (what Polars' `with_columns` does).
pub fn with_columns(input: proto::Relation, columns: Vec<(String, String)>) -> proto::Relation {
    let aliases = columns
        .into_iter()
        .map(|(name, text)| proto::expression::Alias {
            expr: Some(Box::new(expression(text))),
            name: vec![name],
            metadata: None,
        })
        .collect();
    relation(RelType::WithColumns(Box::new(proto::WithColumns {
        input: Some(Box::new(input)),
        aliases,
    })))
}

/// `CREATE OR REPLACE TEMPORARY VIEW name AS input`.
pub fn create_view(input: proto::Relation, name: &str) -> CommandType {
    CommandType::CreateDataframeView(proto::CreateDataFrameViewCommand {
        input: Some(input),
        name: name.to_string(),
        is_global: false,
        replace: true,
    })
}

/// An SQL statement run for its effect (MERGE, CACHE TABLE, DROP VIEW, ...).
pub fn sql_command(statement: impl Into<String>) -> CommandType {
    #[allow(deprecated)]
    CommandType::SqlCommand(proto::SqlCommand {
        input: Some(sql(statement)),
        ..Default::default()
    })
}

/// How a write treats existing data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveMode {
    Append,
    Overwrite,
}

/// `input.write.format(source).mode(mode).options(options).save(path)`.
pub fn write(
    input: proto::Relation,
    source: &str,
    path: Option<String>,
    mode: SaveMode,
    options: HashMap<String, String>,
) -> CommandType {
    use proto::write_operation::{SaveMode as M, SaveType};
    let mode = match mode {
        SaveMode::Append => M::Append,
        SaveMode::Overwrite => M::Overwrite,
    };
    CommandType::WriteOperation(proto::WriteOperation {
        input: Some(input),
        source: Some(source.to_string()),
        save_type: path.map(SaveType::Path),
        mode: mode.into(),
        options,
        ..Default::default()
    })
}

/// `input.observe(name, count(1))`: Spark counts the rows as they pass and reports the count
/// with the plan's results.
pub fn observed(input: proto::Relation, name: &str) -> proto::Relation {
    relation(RelType::CollectMetrics(Box::new(proto::CollectMetrics {
        input: Some(Box::new(input)),
        name: name.to_string(),
        metrics: vec![proto::Expression {
            common: None,
            expr_type: Some(proto::expression::ExprType::Alias(Box::new(
                proto::expression::Alias {
                    expr: Some(Box::new(expression("count(1)"))),
                    name: vec!["rows".to_string()],
                    metadata: None,
                },
            ))),
        }],
    })))
}

/// The input without these columns (`drop`).
pub fn drop_columns(input: proto::Relation, names: &[String]) -> proto::Relation {
    if names.is_empty() {
        return input;
    }
    proto::Relation {
        common: None,
        rel_type: Some(proto::relation::RelType::Drop(Box::new(proto::Drop {
            input: Some(Box::new(input)),
            columns: Vec::new(),
            column_names: names.to_vec(),
        }))),
    }
}

pub fn drop_reason(input: proto::Relation) -> proto::Relation {
    drop_columns(input, &[crate::validations::REASON_COLUMN.to_string()])
}

/// Columns renamed in place (`withColumnsRenamed`).
pub fn rename(input: proto::Relation, pairs: &[(String, String)]) -> proto::Relation {
    proto::Relation {
        common: None,
        rel_type: Some(proto::relation::RelType::WithColumnsRenamed(Box::new(
            proto::WithColumnsRenamed {
                input: Some(Box::new(input)),
                renames: pairs
                    .iter()
                    .map(|(from, to)| proto::with_columns_renamed::Rename {
                        col_name: from.clone(),
                        new_col_name: to.clone(),
                    })
                    .collect(),
                ..Default::default()
            },
        ))),
    }
}

/// The inputs stacked by column name, missing columns null (`unionByName(allowMissingColumns)`).
pub fn union_by_name(inputs: &[String]) -> proto::Relation {
    let mut iter = inputs.iter();
    let first = iter
        .next()
        .map(|n| table(n))
        .unwrap_or_else(|| sql("SELECT 1 WHERE FALSE"));
    iter.fold(first, |acc, name| proto::Relation {
        common: None,
        rel_type: Some(proto::relation::RelType::SetOp(Box::new(
            proto::SetOperation {
                left_input: Some(Box::new(acc)),
                right_input: Some(Box::new(table(name))),
                set_op_type: proto::set_operation::SetOpType::Union.into(),
                is_all: Some(true),
                by_name: Some(true),
                allow_missing_columns: Some(true),
            },
        ))),
    })
}
