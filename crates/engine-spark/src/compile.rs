//! The plan as Spark programs, without I/O: each step becomes a source read, a query over its
//! inputs' temporary views, a validation or a load. Expressions are translated here
//! (`expr::to_spark`), so everything Spark would not run as pipectl does is refused before
//! anything runs.

use crate::check::Refusal;
use crate::expr::{self, Context, ident};
use crate::sinks::{Load, compile_load};
use crate::sources::{Source, compile_source};
use crate::validations::{Validation, compile_validation};
use pipeline_base::StepKind;
use pipeline_core::{Plan, PlannedStep};
use serde::de::DeserializeOwned;

/// What Spark does for one step; the step's output is the temporary view named after it.
pub enum Op {
    Source(Source),
    Query(Query),
    Validate(Validation),
    Load(Load),
}

/// A transform: a relation over its inputs' views.
pub enum Query {
    /// A query known without the inputs' schemas, with columns dropped after it; `main` is
    /// registered as `self` first (the `sql` method).
    Sql {
        query: String,
        drop: Vec<String>,
        main: Option<String>,
    },
    /// `withColumns` on the input: names replaced in place, new ones appended.
    WithColumns {
        input: String,
        columns: Vec<(String, String)>,
    },
    /// Columns renamed in place (`withColumnsRenamed`).
    Rename {
        input: String,
        pairs: Vec<(String, String)>,
    },
    /// A join, whose output columns follow Polars' layout (worked out from both schemas).
    Join(crate::join::JoinSpec),
    /// Stack inputs by column name, missing columns null.
    Union(Vec<String>),
    /// The input unchanged (format conversions mean nothing on Spark).
    Same(String),
}

pub struct Program {
    pub step: String,
    pub op: Op,
    /// The pipectl method and its options (column types are aligned with what it gives).
    pub method: String,
    pub options: serde_json::Value,
    pub inputs: Vec<String>,
}

/// The whole plan, or every refusal.
pub fn compile(plan: &Plan) -> Result<Vec<Program>, Vec<Refusal>> {
    let mut programs = Vec::new();
    let mut refusals = Vec::new();
    let streaming = plan.mode == pipeline_base::Mode::Streaming;
    for step in &plan.steps {
        let compiled = compile_step(step, plan).and_then(|op| {
            if streaming {
                crate::streaming::check_streaming(&At { step }, &op, plan)?;
            }
            Ok(op)
        });
        match compiled {
            Ok(op) => programs.push(Program {
                step: step.name.clone(),
                op,
                method: step.method.clone(),
                options: step.options.clone(),
                inputs: step.inputs.clone(),
            }),
            Err(r) => refusals.push(r),
        }
    }
    if refusals.is_empty() {
        Ok(programs)
    } else {
        Err(refusals)
    }
}

/// Step context for refusals.
pub struct At<'a> {
    pub step: &'a PlannedStep,
}

impl At<'_> {
    pub fn refuse(&self, at: &str, message: impl Into<String>) -> Refusal {
        Refusal {
            step: self.step.name.clone(),
            at: at.to_string(),
            message: message.into(),
        }
    }

    /// The step's options as their typed struct (the plan already checked them).
    pub fn options<T: DeserializeOwned>(&self) -> Result<T, Refusal> {
        serde_json::from_value(self.step.options.clone())
            .map_err(|e| self.refuse("/options", format!("options do not read: {e}")))
    }

    /// An expression in Spark SQL, or a refusal quoting it.
    pub fn expr(&self, at: &str, text: &str, context: Context) -> Result<String, Refusal> {
        expr::to_spark(text, context).map_err(|r| self.refuse(at, r.0))
    }

    pub fn input(&self, i: usize) -> Result<String, Refusal> {
        self.step
            .inputs
            .get(i)
            .cloned()
            .ok_or_else(|| self.refuse("/inputs", format!("has no input {}", i.saturating_add(1))))
    }
}

fn compile_step(step: &PlannedStep, plan: &Plan) -> Result<Op, Refusal> {
    let at = At { step };
    match step.kind {
        StepKind::Extract => compile_source(&at, plan).map(Op::Source),
        StepKind::Transform => compile_transform(&at).map(Op::Query),
        StepKind::Validate => compile_validation(&at).map(Op::Validate),
        StepKind::Load => compile_load(&at, plan).map(Op::Load),
    }
}

fn pointer_key(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn compile_transform(at: &At<'_>) -> Result<Query, Refusal> {
    use pipeline_methods as m;
    let input = at.input(0)?;
    let from = ident(&input);
    Ok(match at.step.method.as_str() {
        "filter" => {
            let o: m::FilterOptions = at.options()?;
            let c = at.expr("/options/condition", &o.condition, Context::Row)?;
            sql(format!("SELECT * FROM {from} WHERE {c}"))
        }
        "derive" => {
            let o: m::DeriveOptions = at.options()?;
            let mut columns = Vec::new();
            for (name, text) in &o.columns {
                let at_key = format!("/options/columns/{}", pointer_key(name));
                columns.push((name.clone(), at.expr(&at_key, text, Context::Row)?));
            }
            Query::WithColumns { input, columns }
        }
        "select" => {
            let o: m::SelectOptions = at.options()?;
            let list: Vec<String> = o.columns.iter().map(|c| ident(c)).collect();
            sql(format!("SELECT {} FROM {from}", list.join(", ")))
        }
        "drop" => {
            let o: m::DropOptions = at.options()?;
            Query::Sql {
                query: format!("SELECT * FROM {from}"),
                drop: o.columns,
                main: None,
            }
        }
        "rename" => {
            let o: m::RenameOptions = at.options()?;
            Query::Rename {
                input,
                pairs: o.columns.into_iter().collect(),
            }
        }
        "cast" => {
            let o: m::CastOptions = at.options()?;
            let function = if o.strict { "CAST" } else { "TRY_CAST" };
            let mut columns = Vec::new();
            for (name, type_name) in &o.columns {
                let at_key = format!("/options/columns/{}", pointer_key(name));
                let spark = spark_type(type_name).ok_or_else(|| {
                    at.refuse(&at_key, format!("the type \"{type_name}\" has no Spark equivalent (Spark has no unsigned integers, no time zones per column)"))
                })?;
                columns.push((
                    name.clone(),
                    format!("{function}({} AS {spark})", ident(name)),
                ));
            }
            Query::WithColumns { input, columns }
        }
        "fill_null" => {
            let o: m::FillNullOptions = at.options()?;
            let mut columns = Vec::new();
            for (name, value) in &o.columns {
                let at_key = format!("/options/columns/{}", pointer_key(name));
                let literal = json_literal(value).ok_or_else(|| {
                    at.refuse(&at_key, "fill values must be strings, numbers or booleans")
                })?;
                columns.push((
                    name.clone(),
                    format!("coalesce({}, {literal})", ident(name)),
                ));
            }
            Query::WithColumns { input, columns }
        }
        "aggregate" => {
            let o: m::AggregateOptions = at.options()?;
            let mut items: Vec<String> = o.group_by.iter().map(|c| ident(c)).collect();
            for (name, text) in &o.aggregations {
                let at_key = format!("/options/aggregations/{}", pointer_key(name));
                let e = at.expr(&at_key, text, Context::Aggregate)?;
                items.push(format!("{e} AS {}", ident(name)));
            }
            let group = if o.group_by.is_empty() {
                String::new()
            } else {
                let keys: Vec<String> = o.group_by.iter().map(|c| ident(c)).collect();
                format!(" GROUP BY {}", keys.join(", "))
            };
            sql(format!("SELECT {} FROM {from}{group}", items.join(", ")))
        }
        "join" => Query::Join(crate::join::JoinSpec::compile(at)?),
        "union" => Query::Union(at.step.inputs.clone()),
        "sql" => {
            let o: m::SqlOptions = at.options()?;
            Query::Sql {
                query: crate::sql_query::to_spark_query(&o.query)
                    .map_err(|r| at.refuse("/options/query", r.0))?,
                drop: Vec::new(),
                main: Some(input),
            }
        }
        "sort" => {
            let o: m::SortOptions = at.options()?;
            let descending = |i: usize| match &o.descending {
                m::OneOrMany::One(d) => *d,
                m::OneOrMany::Many(v) => v.get(i).copied().unwrap_or(false),
            };
            let nulls = if o.nulls_last {
                "NULLS LAST"
            } else {
                "NULLS FIRST"
            };
            let keys: Vec<String> =
                o.by.iter()
                    .enumerate()
                    .map(|(i, c)| {
                        format!(
                            "{} {} {nulls}",
                            ident(c),
                            if descending(i) { "DESC" } else { "ASC" }
                        )
                    })
                    .collect();
            sql(format!("SELECT * FROM {from} ORDER BY {}", keys.join(", ")))
        }
        "dedupe" => {
            let o: m::DedupeOptions = at.options()?;
            let order = o.order_by.as_deref().ok_or_else(|| {
                at.refuse("/options", "dedupe without \"order_by\" keeps the first row to arrive, and Spark has no arrival order; add \"order_by\"")
            })?;
            let direction = match o.keep {
                // pipectl sorts by order_by, nulls first, and keeps the first or last row.
                m::Keep::First => "ASC NULLS FIRST",
                m::Keep::Last => "DESC NULLS LAST",
            };
            let keys: Vec<String> = o.keys.iter().map(|c| ident(c)).collect();
            Query::Sql {
                query: format!(
                    "SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY {} ORDER BY {} {direction}) AS `__pipectl_rank` FROM {from}) WHERE `__pipectl_rank` = 1",
                    keys.join(", "),
                    ident(order)
                ),
                drop: vec!["__pipectl_rank".to_string()],
                main: None,
            }
        }
        "to_avro" | "to_dataframe" => Query::Same(input),
        other => {
            return Err(at.refuse(
                "/method",
                format!("the transform \"{other}\" has no Spark translation"),
            ));
        }
    })
}

/// pipectl's type names (`parse_type`) as Spark SQL types.
pub fn spark_type(name: &str) -> Option<String> {
    let n = name.trim().to_lowercase();
    Some(match n.as_str() {
        "int8" | "i8" => "TINYINT".into(),
        "int16" | "i16" => "SMALLINT".into(),
        "int32" | "i32" | "int" | "integer" => "INT".into(),
        "int64" | "i64" | "bigint" | "long" => "BIGINT".into(),
        "float32" | "f32" | "float" => "FLOAT".into(),
        "float64" | "f64" | "double" => "DOUBLE".into(),
        "string" | "str" | "text" | "utf8" => "STRING".into(),
        "bool" | "boolean" => "BOOLEAN".into(),
        "date" => "DATE".into(),
        "binary" | "bytes" => "BINARY".into(),
        "datetime" | "timestamp" | "datetime[us]" => "TIMESTAMP_NTZ".into(),
        _ => {
            let inner = n.strip_prefix("decimal(")?.strip_suffix(')')?;
            let (p, s) = inner.split_once(',')?;
            let (p, s) = (p.trim().parse::<u8>().ok()?, s.trim().parse::<u8>().ok()?);
            format!("DECIMAL({p}, {s})")
        }
    })
}

/// A JSON scalar as a Spark SQL literal.
pub fn json_literal(value: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    Some(match value {
        Value::String(s) => expr::string_literal(s),
        Value::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_string(),
        Value::Number(n) if n.is_f64() => format!("{n}D"),
        Value::Number(n) => n.to_string(),
        _ => return None,
    })
}

/// A query with nothing dropped after it.
fn sql(query: String) -> Query {
    Query::Sql {
        query,
        drop: Vec::new(),
        main: None,
    }
}
