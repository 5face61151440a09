//! SQL: `sql`, `sql_value`, `setting`, and the helpers the other PostgreSQL primitives query
//! through. In a dry run a statement that writes is printed, not run (see `readonly.rs`).

use super::readonly::is_read_only;
use super::values::{first_value, params_of, to_array};
use super::R;
use crate::clients::postgres::{Rows, SqlState};
use crate::error::Class;
use crate::primitives::def;
use crate::runtime::host::Host;
use crate::table::ColumnOrders;
use rhai::{Array, Dynamic, Module};
use std::sync::Arc;

/// Runs a query; in a dry run a statement that writes is printed instead of run (and gives no
/// rows).
pub fn run_sql(h: &Host, primitive: &str, node: &str, query: &str, params: &[Dynamic]) -> R<Rows> {
    h.check_node(primitive, node)?;
    let params = params_of(params);
    if h.dry_run() {
        if !is_read_only(query) {
            h.change(node, &format!("run SQL: {}", query.trim()));
            return Ok(Rows::default());
        }
        return match h.pg.query(node, query, &params, true, &h.cancel) {
            Ok(rows) => Ok(rows),
            // It writes after all (a function the classifier does not know): a change.
            Err(e)
                if e.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION)
                    || e.code() == Some(&SqlState::ACTIVE_SQL_TRANSACTION) =>
            {
                h.change(node, &format!("run SQL: {}", query.trim()));
                Ok(Rows::default())
            }
            Err(e) => Err(h.fail(primitive, node, e.into())),
        };
    }
    h.pg.query(node, query, &params, false, &h.cancel)
        .map_err(|e| h.fail(primitive, node, e.into()))
}

/// Runs a query (also in a dry run: for reads) and returns its rows.
pub(super) fn query_rows(
    h: &Host,
    primitive: &str,
    node: &str,
    q: &str,
    params: &[Dynamic],
) -> R<Rows> {
    h.check_node(primitive, node)?;
    pg_rows(h, primitive, node, q, params)
}

/// `query_rows` for a node already checked.
pub(super) fn pg_rows(
    h: &Host,
    primitive: &str,
    node: &str,
    q: &str,
    params: &[Dynamic],
) -> R<Rows> {
    h.pg.query(node, q, &params_of(params), false, &h.cancel)
        .map_err(|e| h.fail(primitive, node, e.into()))
}

pub(super) fn query_value(
    h: &Host,
    primitive: &str,
    node: &str,
    q: &str,
    params: &[Dynamic],
) -> R<Dynamic> {
    query_rows(h, primitive, node, q, params).map(first_value)
}

/// Rows for a script: an array of maps, the query's column order remembered for `print_table`
/// (a map sorts its keys; see `ColumnOrders`).
pub(super) fn rows_for_rhai(rows: Rows, orders: &ColumnOrders) -> Array {
    if !rows.rows.is_empty() {
        orders.remember(&rows.columns);
    }
    to_array(rows)
}

pub fn register(m: &mut Module, host: &Arc<Host>, orders: &Arc<ColumnOrders>) {
    let (h, o) = (host.clone(), orders.clone());
    def!(
        m,
        "sql",
        ["node: &str", "query: &str", "Array"],
        "Runs SQL on the node (application database) and returns its rows as an array of maps
        with typed values (NULL is `()`). In a dry run, a statement that writes is printed, not run.
        A map lists its keys sorted; `print_table(rows)` shows the columns in the query's order.",
        move |node: &str, q: &str| run_sql(&h, "sql", node, q, &[]).map(|r| rows_for_rhai(r, &o))
    );

    let (h, o) = (host.clone(), orders.clone());
    def!(
        m,
        "sql",
        ["node: &str", "query: &str", "params: Array", "Array"],
        "Runs SQL with parameters `$1`, `$2`... taken from `params`; values are sent as
        parameters, never pasted into the SQL text. A value that does not fit the type the server
        expects for its `$n` (a string for an int4, 70000 for an int2) is a runbook error naming
        it; nothing is sent.",
        move |node: &str, q: &str, params: Array| run_sql(&h, "sql", node, q, &params)
            .map(|r| rows_for_rhai(r, &o))
    );

    let h = host.clone();
    def!(
        m,
        "sql_value",
        ["node: &str", "query: &str", "Dynamic"],
        "Runs SQL and returns the first column of the first row, or `()` when there is no row.",
        move |node: &str, q: &str| run_sql(&h, "sql_value", node, q, &[]).map(first_value)
    );

    let h = host.clone();
    def!(
        m,
        "sql_value",
        ["node: &str", "query: &str", "params: Array", "Dynamic"],
        "Like `sql_value(node, query)`, with parameters.",
        move |node: &str, q: &str, params: Array| {
            run_sql(&h, "sql_value", node, q, &params).map(first_value)
        }
    );

    let h = host.clone();
    def!(
        m,
        "setting",
        ["node: &str", "name: &str", "String"],
        "The server parameter `name` on `node` as `pg_settings.setting` shows it, as text, in the
        parameter's base unit (\"2048\", not \"16MB\"): `setting(p, \"archive_mode\")`. Raises
        (exit code 3) for a name the server does not know.",
        move |node: &str, name: &str| -> R<String> {
            let v = query_value(
                &h,
                "setting",
                node,
                "SELECT setting FROM pg_settings WHERE name = $1",
                &[name.into()],
            )?;
            if v.is_unit() {
                return Err(h.error(
                    Class::Runbook,
                    format!("setting on {node}: the server has no parameter named '{name}'"),
                ));
            }
            Ok(v.to_string())
        }
    );
}
