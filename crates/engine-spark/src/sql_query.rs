//! The `sql` method's query in Spark SQL: one SELECT statement, parsed as Polars parses it.
//! Every expression in it goes through the same subset check as other steps' expressions;
//! table names are the inputs' views (the runner registers the main input as `self` just
//! before), identifiers are quoted the Spark way.

use crate::expr::{Context, Refusal, to_spark};
use sqlparser::ast::{
    Expr, Ident, ObjectName, ObjectNamePart, OrderByKind, Query, SelectItem, SetExpr, Statement,
    VisitMut, VisitorMut,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use std::ops::ControlFlow;

/// The query for Spark.
pub fn to_spark_query(query: &str) -> Result<String, Refusal> {
    let mut statements = Parser::parse_sql(&GenericDialect, query)
        .map_err(|e| Refusal(format!("the query does not parse: {e}")))?;
    let mut statement = match statements.as_mut_slice() {
        [one] => one.clone(),
        _ => return Err(Refusal("give exactly one SELECT statement".to_string())),
    };
    if !matches!(statement, Statement::Query(_)) {
        return Err(Refusal("only a SELECT query runs on Spark".to_string()));
    }
    let mut fixer = Fixer { refusal: None };
    let _ = statement.visit(&mut fixer);
    match fixer.refusal {
        Some(r) => Err(r),
        None => Ok(statement.to_string()),
    }
}

struct Fixer {
    refusal: Option<Refusal>,
}

fn backticked(ident: &mut Ident) {
    if ident.quote_style.is_some() {
        ident.quote_style = Some('`');
    }
}

impl VisitorMut for Fixer {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            for item in &mut select.projection {
                if let SelectItem::ExprWithAlias { alias, .. } = item {
                    backticked(alias);
                }
            }
        }
        // Polars sorts nulls last ascending and first descending; Spark the other way round.
        if let Some(order_by) = &mut query.order_by
            && let OrderByKind::Expressions(exprs) = &mut order_by.kind
        {
            for e in exprs {
                if e.options.nulls_first.is_none() {
                    e.options.nulls_first = Some(e.options.asc == Some(false));
                }
            }
        }
        if let Some(with) = &mut query.with {
            for cte in &mut with.cte_tables {
                backticked(&mut cte.alias.name);
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &mut ObjectName) -> ControlFlow<()> {
        for part in &mut relation.0 {
            if let ObjectNamePart::Identifier(ident) = part {
                ident.quote_style = Some('`');
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        match to_spark(&expr.to_string(), Context::Aggregate) {
            Ok(text) => {
                // Printed as is: the identifier holds the expression's Spark text.
                *expr = Expr::Identifier(Ident::new(text));
                ControlFlow::Continue(())
            }
            Err(r) => {
                self.refusal = Some(r);
                ControlFlow::Break(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_a_grouping_query() {
        let q = to_spark_query(
            "SELECT country, round(sum(amount), 2) AS \"revenue\" FROM self JOIN customers c ON self.customer_id = c.customer_id WHERE status = 'paid' GROUP BY country ORDER BY country",
        )
        .expect("translated");
        assert_eq!(
            q,
            "SELECT `country`, (bround(sum(`amount`) * 1.0E2D, 0) / 1.0E2D) AS `revenue` FROM `self` JOIN `customers` c ON (`self`.`customer_id` = `c`.`customer_id`) WHERE (`status` = 'paid') GROUP BY `country` ORDER BY `country` NULLS LAST"
        );
    }

    #[test]
    fn refuses_other_statements_and_expressions() {
        assert!(to_spark_query("DELETE FROM self").is_err());
        let r = to_spark_query("SELECT amount % 2 FROM self").expect_err("refused");
        assert!(r.0.contains("%"), "{}", r.0);
    }
}
