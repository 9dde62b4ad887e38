//! pipectl's expressions (Polars SQL) in Spark SQL: each expression is parsed with the parser
//! Polars uses, checked against the subset both engines mean the same way, rewritten where they
//! differ, and printed back fully parenthesised. Anything else is refused with the expression
//! quoted, so `pipectl validate --engine spark` says what would not run.

use sqlparser::ast::{
    BinaryOperator, CastKind, CeilFloorKind, DataType, DuplicateTreatment, Expr, FunctionArg,
    FunctionArgExpr, FunctionArguments, Ident, ObjectNamePart, UnaryOperator, Value,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

/// Where an expression is used: a row expression (filter, derive, checks) or an aggregation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Context {
    Row,
    Aggregate,
}

/// Why an expression cannot run on Spark (the caller adds the step and option).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

/// Row functions both engines define alike: `(pipectl name, Spark name)`.
const ROW_FUNCTIONS: &[(&str, &str)] = &[
    ("abs", "abs"),
    ("ceil", "ceil"),
    ("ceiling", "ceil"),
    ("floor", "floor"),
    ("sqrt", "sqrt"),
    ("exp", "exp"),
    ("ln", "ln"),
    ("log10", "log10"),
    ("log2", "log2"),
    ("pow", "power"),
    ("power", "power"),
    ("sign", "sign"),
    ("upper", "upper"),
    ("lower", "lower"),
    ("length", "char_length"),
    ("char_length", "char_length"),
    ("ltrim", "ltrim"),
    ("rtrim", "rtrim"),
    ("coalesce", "coalesce"),
    ("nullif", "nullif"),
    ("ifnull", "ifnull"),
    ("if", "if"),
    ("greatest", "greatest"),
    ("least", "least"),
    ("replace", "replace"),
    ("reverse", "reverse"),
    ("left", "left"),
    ("right", "right"),
    ("starts_with", "startswith"),
    ("ends_with", "endswith"),
    ("strpos", "instr"),
    ("substr", "substring"),
    ("concat_ws", "concat_ws"),
];

/// Aggregations both engines define alike.
const AGGREGATE_FUNCTIONS: &[(&str, &str)] = &[
    ("sum", "sum"),
    ("count", "count"),
    ("min", "min"),
    ("max", "max"),
    ("avg", "avg"),
    ("mean", "avg"),
    ("median", "median"),
    ("stddev", "stddev_samp"),
    ("stddev_samp", "stddev_samp"),
    ("variance", "var_samp"),
    ("var_samp", "var_samp"),
];

/// An expression as Spark SQL, or why it cannot be one.
pub fn to_spark(text: &str, context: Context) -> Result<String, Refusal> {
    let expr = Parser::new(&GenericDialect)
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| Refusal(format!("\"{text}\" does not parse: {e}")))?;
    Printer { text, context }.expr(&expr)
}

/// A string as a Spark SQL literal: Spark reads backslash escapes inside quotes.
pub fn string_literal(value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
    format!("'{escaped}'")
}

/// A column name as a Spark SQL identifier.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

struct Printer<'a> {
    text: &'a str,
    context: Context,
}

impl Printer<'_> {
    fn refuse(&self, what: impl std::fmt::Display) -> Refusal {
        Refusal(format!(
            "\"{}\" uses {what}, which Spark does not compute the way pipectl does",
            self.text
        ))
    }

    fn expr(&self, e: &Expr) -> Result<String, Refusal> {
        Ok(match e {
            Expr::Identifier(i) => ident(&i.value),
            Expr::CompoundIdentifier(parts) => parts
                .iter()
                .map(|p| ident(&p.value))
                .collect::<Vec<_>>()
                .join("."),
            Expr::Value(v) => self.value(&v.value)?,
            Expr::Nested(inner) => format!("({})", self.expr(inner)?),
            Expr::BinaryOp { left, op, right } => {
                let op = match op {
                    BinaryOperator::Plus => "+",
                    BinaryOperator::Minus => "-",
                    BinaryOperator::Multiply => "*",
                    BinaryOperator::Divide => "/",
                    BinaryOperator::Eq => "=",
                    BinaryOperator::NotEq => "<>",
                    BinaryOperator::Lt => "<",
                    BinaryOperator::LtEq => "<=",
                    BinaryOperator::Gt => ">",
                    BinaryOperator::GtEq => ">=",
                    BinaryOperator::And => "AND",
                    BinaryOperator::Or => "OR",
                    BinaryOperator::StringConcat => "||",
                    other => return Err(self.refuse(format_args!("the operator {other}"))),
                };
                format!("({} {op} {})", self.expr(left)?, self.expr(right)?)
            }
            Expr::UnaryOp { op, expr } => match op {
                UnaryOperator::Not => format!("(NOT {})", self.expr(expr)?),
                UnaryOperator::Minus => format!("(- {})", self.expr(expr)?),
                UnaryOperator::Plus => self.expr(expr)?,
                other => return Err(self.refuse(format_args!("the operator {other}"))),
            },
            Expr::IsNull(x) => format!("({} IS NULL)", self.expr(x)?),
            Expr::IsNotNull(x) => format!("({} IS NOT NULL)", self.expr(x)?),
            Expr::IsTrue(x) => format!("({} IS TRUE)", self.expr(x)?),
            Expr::IsFalse(x) => format!("({} IS FALSE)", self.expr(x)?),
            Expr::IsNotTrue(x) => format!("({} IS NOT TRUE)", self.expr(x)?),
            Expr::IsNotFalse(x) => format!("({} IS NOT FALSE)", self.expr(x)?),
            Expr::IsDistinctFrom(a, b) => {
                format!("({} IS DISTINCT FROM {})", self.expr(a)?, self.expr(b)?)
            }
            Expr::IsNotDistinctFrom(a, b) => {
                format!("({} IS NOT DISTINCT FROM {})", self.expr(a)?, self.expr(b)?)
            }
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                let items = list
                    .iter()
                    .map(|x| self.expr(x))
                    .collect::<Result<Vec<_>, _>>()?;
                let not = if *negated { "NOT " } else { "" };
                format!("({} {not}IN ({}))", self.expr(expr)?, items.join(", "))
            }
            Expr::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let not = if *negated { "NOT " } else { "" };
                format!(
                    "({} {not}BETWEEN {} AND {})",
                    self.expr(expr)?,
                    self.expr(low)?,
                    self.expr(high)?
                )
            }
            Expr::Like {
                negated,
                any: false,
                expr,
                pattern,
                escape_char: None,
            } => self.like("LIKE", *negated, expr, pattern)?,
            Expr::ILike {
                negated,
                any: false,
                expr,
                pattern,
                escape_char: None,
            } => self.like("ILIKE", *negated, expr, pattern)?,
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let mut out = String::from("CASE");
                if let Some(o) = operand {
                    out.push(' ');
                    out.push_str(&self.expr(o)?);
                }
                for when in conditions {
                    out.push_str(&format!(
                        " WHEN {} THEN {}",
                        self.expr(&when.condition)?,
                        self.expr(&when.result)?
                    ));
                }
                if let Some(e) = else_result {
                    out.push_str(&format!(" ELSE {}", self.expr(e)?));
                }
                out.push_str(" END");
                out
            }
            Expr::Cast {
                kind,
                expr,
                data_type,
                array: false,
                format: None,
            } => {
                let function = match kind {
                    CastKind::Cast | CastKind::DoubleColon => "CAST",
                    CastKind::TryCast | CastKind::SafeCast => "TRY_CAST",
                };
                format!(
                    "{function}({} AS {})",
                    self.expr(expr)?,
                    self.data_type(data_type)?
                )
            }
            Expr::Ceil {
                expr,
                field: CeilFloorKind::DateTimeField(sqlparser::ast::DateTimeField::NoDateTime),
            } => format!("ceil({})", self.expr(expr)?),
            Expr::Floor {
                expr,
                field: CeilFloorKind::DateTimeField(sqlparser::ast::DateTimeField::NoDateTime),
            } => format!("floor({})", self.expr(expr)?),
            Expr::Extract { field, expr, .. } => {
                // Fields both engines number alike (DOW, SECOND, EPOCH... differ).
                let name = field.to_string().to_uppercase();
                if !matches!(
                    name.as_str(),
                    "YEAR" | "QUARTER" | "MONTH" | "DAY" | "HOUR" | "MINUTE"
                ) {
                    return Err(self.refuse(format_args!("EXTRACT({name} ...)")));
                }
                format!("EXTRACT({name} FROM {})", self.expr(expr)?)
            }
            Expr::Substring {
                expr,
                substring_from: Some(from),
                substring_for,
                ..
            } => match substring_for {
                Some(len) => format!(
                    "substring({}, {}, {})",
                    self.expr(expr)?,
                    self.expr(from)?,
                    self.expr(len)?
                ),
                None => format!("substring({}, {})", self.expr(expr)?, self.expr(from)?),
            },
            Expr::Trim {
                trim_where: None,
                trim_what: None,
                expr,
                trim_characters: None,
            } => format!("trim({})", self.expr(expr)?),
            Expr::Function(f) => self.function(f)?,
            other => {
                let kind = format!("{other}");
                return Err(self.refuse(format_args!("\"{kind}\"")));
            }
        })
    }

    fn like(
        &self,
        op: &str,
        negated: bool,
        expr: &Expr,
        pattern: &Expr,
    ) -> Result<String, Refusal> {
        let not = if negated { "NOT " } else { "" };
        Ok(format!(
            "({} {not}{op} {})",
            self.expr(expr)?,
            self.expr(pattern)?
        ))
    }

    fn value(&self, v: &Value) -> Result<String, Refusal> {
        Ok(match v {
            // A literal with a point or an exponent is a float in Polars and a DECIMAL in Spark
            // unless suffixed with D.
            Value::Number(n, _) if n.contains(['.', 'e', 'E']) => format!("{n}D"),
            Value::Number(n, _) => n.clone(),
            Value::SingleQuotedString(s) => string_literal(s),
            Value::Boolean(true) => "TRUE".to_string(),
            Value::Boolean(false) => "FALSE".to_string(),
            Value::Null => "NULL".to_string(),
            other => return Err(self.refuse(format_args!("the literal {other}"))),
        })
    }

    fn data_type(&self, t: &DataType) -> Result<&'static str, Refusal> {
        Ok(match t {
            DataType::TinyInt(_) | DataType::Int8(_) => "TINYINT",
            DataType::SmallInt(_) | DataType::Int16 => "SMALLINT",
            DataType::Int(_) | DataType::Integer(_) | DataType::Int32 => "INT",
            DataType::BigInt(_) | DataType::Int64 => "BIGINT",
            DataType::Double(_) | DataType::DoublePrecision | DataType::Float64 => "DOUBLE",
            DataType::Real | DataType::Float4 | DataType::Float32 => "FLOAT",
            DataType::Varchar(_) | DataType::Text | DataType::String(_) => "STRING",
            DataType::Boolean | DataType::Bool => "BOOLEAN",
            DataType::Date => "DATE",
            other => return Err(self.refuse(format_args!("the type {other}"))),
        })
    }

    fn function(&self, f: &sqlparser::ast::Function) -> Result<String, Refusal> {
        let name = match f.name.0.as_slice() {
            [ObjectNamePart::Identifier(Ident { value, .. })] => value.to_lowercase(),
            _ => return Err(self.refuse(format_args!("the function {}", f.name))),
        };
        if f.over.is_some() || f.filter.is_some() || f.null_treatment.is_some() {
            return Err(self.refuse(format_args!("{name}(...) with OVER/FILTER")));
        }
        if !matches!(f.parameters, FunctionArguments::None) {
            return Err(self.refuse(format_args!("the function {name} with parameters")));
        }
        let (args, distinct, star) = match &f.args {
            FunctionArguments::None => (Vec::new(), false, false),
            FunctionArguments::List(list) => {
                if !list.clauses.is_empty() {
                    return Err(self.refuse(format_args!("{name}(...) with clauses")));
                }
                let distinct =
                    matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct));
                let mut args = Vec::new();
                let mut star = false;
                for a in &list.args {
                    match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => args.push(self.expr(e)?),
                        FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => star = true,
                        _ => {
                            return Err(
                                self.refuse(format_args!("{name}(...) with named arguments"))
                            );
                        }
                    }
                }
                (args, distinct, star)
            }
            FunctionArguments::Subquery(_) => {
                return Err(self.refuse(format_args!("{name}(...) with a subquery")));
            }
        };
        if let Some((_, spark)) = AGGREGATE_FUNCTIONS.iter().find(|(p, _)| *p == name) {
            if self.context != Context::Aggregate {
                return Err(Refusal(format!(
                    "\"{}\" uses the aggregation {name}() outside an aggregate step",
                    self.text
                )));
            }
            if star {
                return if name == "count" && args.is_empty() {
                    Ok("count(*)".to_string())
                } else {
                    Err(self.refuse(format_args!("{name}(*)")))
                };
            }
            let distinct = if distinct { "DISTINCT " } else { "" };
            return Ok(format!("{spark}({distinct}{})", args.join(", ")));
        }
        if distinct || star {
            return Err(self.refuse(format_args!("{name}(DISTINCT ...) or {name}(*)")));
        }
        match name.as_str() {
            // Polars rounds the float x * 10^n half to even, then divides: the same steps in
            // Spark give the same bits (Spark's own round is half-up on the decimal digits).
            "round" => match args.as_slice() {
                [x] => Ok(format!("bround({x}, 0)")),
                [x, n] if n.parse::<u8>().is_ok() => {
                    Ok(format!("(bround({x} * 1.0E{n}D, 0) / 1.0E{n}D)"))
                }
                _ => Err(self.refuse("round() other than round(x) or round(x, DIGITS)")),
            },
            // Polars' CONCAT skips nulls; Spark's returns null: concat_ws('', ...) skips them.
            "concat" => Ok(format!("concat_ws('', {})", args.join(", "))),
            _ => match ROW_FUNCTIONS.iter().find(|(p, _)| *p == name) {
                Some((_, spark)) => Ok(format!("{spark}({})", args.join(", "))),
                None => Err(self.refuse(format_args!("the function {name}()"))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(
        "status = 'paid' AND amount > 0",
        "((`status` = 'paid') AND (`amount` > 0))"
    )]
    #[case(
        "round(amount * 1.2, 2)",
        "(bround((`amount` * 1.2D) * 1.0E2D, 0) / 1.0E2D)"
    )]
    #[case(
        "CASE WHEN status = 'refunded' THEN -amount ELSE amount END",
        "CASE WHEN (`status` = 'refunded') THEN (- `amount`) ELSE `amount` END"
    )]
    #[case("CAST(created_at AS DATE)", "CAST(`created_at` AS DATE)")]
    #[case("\"odd name\" IS NOT NULL", "(`odd name` IS NOT NULL)")]
    #[case("name = 'it''s \\ here'", "(`name` = 'it\\'s \\\\ here')")]
    #[case("concat(a, '-', b)", "concat_ws('', `a`, '-', `b`)")]
    #[case("status IN ('a', 'b')", "(`status` IN ('a', 'b'))")]
    fn rewrites_row_expressions(#[case] polars: &str, #[case] spark: &str) {
        assert_eq!(to_spark(polars, Context::Row), Ok(spark.to_string()));
    }

    #[rstest]
    #[case(
        "round(sum(amount), 2)",
        "(bround(sum(`amount`) * 1.0E2D, 0) / 1.0E2D)"
    )]
    #[case("count(*)", "count(*)")]
    #[case("count(DISTINCT customer_id)", "count(DISTINCT `customer_id`)")]
    #[case("mean(amount)", "avg(`amount`)")]
    fn rewrites_aggregations(#[case] polars: &str, #[case] spark: &str) {
        assert_eq!(to_spark(polars, Context::Aggregate), Ok(spark.to_string()));
    }

    #[rstest]
    #[case("amount % 3", "the operator %")]
    #[case("strftime(created_at, '%Y')", "the function strftime()")]
    #[case("sum(amount)", "outside an aggregate step")]
    #[case("row_number() OVER (ORDER BY a)", "OVER")]
    #[case("amount >", "does not parse")]
    fn refuses_what_differs(#[case] polars: &str, #[case] why: &str) {
        let refusal = to_spark(polars, Context::Row).expect_err("refused");
        assert!(refusal.0.contains(why), "{}", refusal.0);
        assert!(
            refusal.0.contains(polars),
            "quotes the expression: {}",
            refusal.0
        );
    }
}
