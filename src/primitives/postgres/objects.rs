//! What pgrunbook creates on a primary for its own use: the replication role standbys connect
//! with, and the table `verify` writes its round-trip row into.

use super::sql::query_value;
use super::R;
use crate::clients::postgres::{quote_ident, quote_literal};
use crate::primitives::def;
use crate::runtime::host::Host;
use rhai::Module;
use std::sync::Arc;

pub fn register(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    def!(
        m,
        "verify_table",
        ["node: &str", "String"],
        "pgrunbook's own table for verify's row round trip (`cluster.verify_table`, by default
        pgrunbook.verify_rows: id, val, created_at), created with its schema on the primary `node`
        when missing. Returns its name quoted for SQL: `sql(p, `INSERT INTO ${t}(val) ...`)`.",
        move |node: &str| -> R<String> {
            let (schema, table) = h
                .config
                .cluster
                .verify_table
                .split_once('.')
                .unwrap_or(("pgrunbook", "verify_rows"));
            let quoted = format!("{}.{}", quote_ident(schema), quote_ident(table));
            let exists = query_value(
                &h,
                "verify_table",
                node,
                "SELECT to_regclass($1) IS NOT NULL",
                &[quoted.clone().into()],
            )?;
            if exists.as_bool().unwrap_or(false) {
                return Ok(quoted);
            }
            if !h.change(
                node,
                &format!("create table {quoted} (pgrunbook's verify rows)"),
            ) {
                return Ok(quoted);
            }
            let ddl = format!(
                "CREATE SCHEMA IF NOT EXISTS {s}; \
                 CREATE TABLE IF NOT EXISTS {quoted} (\
                   id bigserial PRIMARY KEY, val text NOT NULL, \
                   created_at timestamptz NOT NULL DEFAULT now()); \
                 COMMENT ON TABLE {quoted} IS 'pgrunbook verify: a row written on the primary and read on the standby'",
                s = quote_ident(schema)
            );
            h.pg.execute_batch(node, &ddl, None)
                .map_err(|e| h.fail("verify_table", node, e.into()))?;
            Ok(quoted)
        }
    );

    let h = host.clone();
    def!(
        m,
        "ensure_replication_role",
        ["node: &str", "bool"],
        "Makes sure the replication role of the configuration exists on the node with REPLICATION
        LOGIN. A missing role is created, and a role without REPLICATION or LOGIN gets them, both
        with the configured password (which never appears in a runbook, a log or the journal):
        then it returns true. A role that already has REPLICATION LOGIN is left as it is, its
        password too, and it returns false: `reset_replication_password` sets the password.",
        move |node: &str| -> R<bool> {
            let role = h.config.cluster.replication_user.clone();
            let exists = query_value(&h, "ensure_replication_role", node,
                "SELECT count(*) FROM pg_roles WHERE rolname = $1 AND rolreplication AND rolcanlogin", &[role.clone().into()])?;
            if exists.as_int().unwrap_or(0) > 0 {
                return Ok(false);
            }
            if !h.change(
                node,
                &format!("create role {role} with REPLICATION LOGIN and the configured password"),
            ) {
                return Ok(true);
            }
            let any = query_value(
                &h,
                "ensure_replication_role",
                node,
                "SELECT count(*) FROM pg_roles WHERE rolname = $1",
                &[role.clone().into()],
            )?;
            let verb = if any.as_int().unwrap_or(0) > 0 {
                "ALTER"
            } else {
                "CREATE"
            };
            // A SCRAM verifier, not the password: the statement may be logged (log_statement).
            let verifier = postgres_protocol::password::scram_sha_256(
                h.config.cluster.replication_password.as_bytes(),
            );
            let stmt = format!(
                "{verb} ROLE {} WITH REPLICATION LOGIN PASSWORD {}",
                quote_ident(&role),
                quote_literal(&verifier)
            );
            h.pg.execute_batch(node, &stmt, None)
                .map_err(|e| h.fail("ensure_replication_role", node, e.into()))?;
            Ok(true)
        }
    );

    let h = host.clone();
    def!(
        m,
        "reset_replication_password",
        ["node: &str"],
        "Sets the password of the configured replication role on the node (a primary) to the
        configured one, as a SCRAM verifier: the password itself is not sent, so it reaches no
        server log even with log_statement = 'all', and it appears in no output, plan or journal.
        Fails (exit code 4) when the role does not exist: `ensure_replication_role` creates it.
        Standbys that failed to log in connect again by themselves at their next retry.",
        move |node: &str| {
            let role = h.config.cluster.replication_user.clone();
            let exists = query_value(
                &h,
                "reset_replication_password",
                node,
                "SELECT count(*) FROM pg_roles WHERE rolname = $1",
                &[role.clone().into()],
            )?;
            if exists.as_int().unwrap_or(0) == 0 {
                return Err(h.error(
                    crate::error::Class::Refused,
                    format!("reset_replication_password on {node}: role {role} does not exist (ensure_replication_role creates it)"),
                ));
            }
            if !h.change(
                node,
                &format!("set the password of role {role} to the configured one"),
            ) {
                return Ok(());
            }
            let verifier = postgres_protocol::password::scram_sha_256(
                h.config.cluster.replication_password.as_bytes(),
            );
            let stmt = format!(
                "ALTER ROLE {} PASSWORD {}",
                quote_ident(&role),
                quote_literal(&verifier)
            );
            h.pg.execute_batch(node, &stmt, None)
                .map_err(|e| h.fail("reset_replication_password", node, e.into()))
        }
    );
}
