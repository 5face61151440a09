//! SQL: `sql`, `sql_value`, `setting`, and the helpers the other PostgreSQL primitives query
//! through. In a dry run a statement that writes is printed, not run (see `readonly.rs`).

use super::readonly::{classify, is_read_only, Kind};
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
/// rows: `sql` and `sql_value` give the script a `NotSimulated` instead, see `skipped`).
pub fn run_sql(h: &Host, primitive: &str, node: &str, query: &str, params: &[Dynamic]) -> R<Rows> {
    run_sql_or_skip(h, primitive, node, query, params).map(|r| r.unwrap_or_default())
}

/// `run_sql`, with `None` for a statement a dry run did not run.
fn run_sql_or_skip(
    h: &Host,
    primitive: &str,
    node: &str,
    query: &str,
    params: &[Dynamic],
) -> R<Option<Rows>> {
    h.check_node(primitive, node)?;
    let params = params_of(params);
    if h.dry_run() {
        if !is_read_only(query) {
            h.change(node, &format!("run SQL: {}", query.trim()));
            return Ok(None);
        }
        return match h.pg.query(node, query, &params, true, &h.cancel) {
            Ok(rows) => Ok(Some(rows)),
            // It writes after all: a change.
            Err(e)
                if e.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION)
                    || e.code() == Some(&SqlState::ACTIVE_SQL_TRANSACTION) =>
            {
                h.change(node, &format!("run SQL: {}", query.trim()));
                Ok(None)
            }
            Err(e) => Err(h.fail(primitive, node, e.into())),
        };
    }
    h.pg.query(node, query, &params, false, &h.cancel)
        .map(Some)
        .map_err(|e| h.fail(primitive, node, e.into()))
}

/// What a script gets from `sql` or `sql_value` for a statement a dry run did not run: not
/// rows, not a value, but a `NotSimulated` that stops the dry run where the script uses it
/// (see `engine::not_simulated`), so that no decision is taken on an empty result that is not
/// one.
fn skipped(h: &Host, primitive: &str, node: &str, query: &str) -> Dynamic {
    let q: String = query.split_whitespace().collect::<Vec<_>>().join(" ");
    let q = if q.chars().count() > 60 {
        format!("{}...", q.chars().take(60).collect::<String>())
    } else {
        q
    };
    let what = format!("{primitive} on {node} (\"{q}\"), which the dry run did not run");
    h.run.lock().unwrap().last_skipped = Some(what.clone());
    Dynamic::from(crate::error::NotSimulated { what })
}

/// `query`: a read the caller vouches for, in a read-only transaction, in real and dry runs
/// alike; a statement known to write is refused before it is sent.
fn run_query(h: &Host, node: &str, query: &str, params: &[Dynamic]) -> R<Rows> {
    h.check_node("query", node)?;
    if let Kind::Write(why) = classify(query) {
        return Err(h.error(
            Class::Runbook,
            format!("query on {node}: not a read ({why}); nothing was run. Use sql for a statement that changes something"),
        ));
    }
    h.pg.query(node, query, &params_of(params), true, &h.cancel)
        .map_err(|e| h.fail("query", node, e.into()))
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
        with typed values (NULL is `()`). In a dry run, a statement runs only when it is sure to be a
        read (see `query`); any other is printed as a change, not run, and what it returns is not
        a result: a script that uses it stops there, the plan so far printed and marked \"not
        simulated past here\".
        A map lists its keys sorted; `print_table(rows)` shows the columns in the query's order.",
        move |node: &str, q: &str| -> R<Dynamic> {
            Ok(match run_sql_or_skip(&h, "sql", node, q, &[])? {
                Some(r) => rows_for_rhai(r, &o).into(),
                None => skipped(&h, "sql", node, q),
            })
        }
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
        move |node: &str, q: &str, params: Array| -> R<Dynamic> {
            Ok(match run_sql_or_skip(&h, "sql", node, q, &params)? {
                Some(r) => rows_for_rhai(r, &o).into(),
                None => skipped(&h, "sql", node, q),
            })
        }
    );

    let (h, o) = (host.clone(), orders.clone());
    def!(
        m,
        "query",
        ["node: &str", "query: &str", "Array"],
        "Runs a read on the node and returns its rows, as `sql` does, in a dry run too: the
        explicit read. It runs in a read-only transaction, and a statement known to change
        something (INSERT, ALTER, `pg_terminate_backend(...)`, the slot functions...) is a
        runbook error, never sent. Use it where `sql` in a dry run would not be sure the
        statement is a read (a function of your own).",
        move |node: &str, q: &str| run_query(&h, node, q, &[]).map(|r| rows_for_rhai(r, &o))
    );

    let (h, o) = (host.clone(), orders.clone());
    def!(
        m,
        "query",
        ["node: &str", "query: &str", "params: Array", "Array"],
        "`query(node, query)` with parameters `$1`, `$2`... taken from `params`.",
        move |node: &str, q: &str, params: Array| run_query(&h, node, q, &params)
            .map(|r| rows_for_rhai(r, &o))
    );

    let h = host.clone();
    def!(
        m,
        "sql_value",
        ["node: &str", "query: &str", "Dynamic"],
        "Runs SQL and returns the first column of the first row, or `()` when there is no row.",
        move |node: &str, q: &str| -> R<Dynamic> {
            Ok(match run_sql_or_skip(&h, "sql_value", node, q, &[])? {
                Some(r) => first_value(r),
                None => skipped(&h, "sql_value", node, q),
            })
        }
    );

    let h = host.clone();
    def!(
        m,
        "sql_value",
        ["node: &str", "query: &str", "params: Array", "Dynamic"],
        "Like `sql_value(node, query)`, with parameters.",
        move |node: &str, q: &str, params: Array| -> R<Dynamic> {
            Ok(match run_sql_or_skip(&h, "sql_value", node, q, &params)? {
                Some(r) => first_value(r),
                None => skipped(&h, "sql_value", node, q),
            })
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
