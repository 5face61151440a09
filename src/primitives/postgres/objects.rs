//! What pgrunbook creates on a primary for its own use: the replication role standbys connect
//! with, and the table `verify` writes its round-trip row into.

use super::sql::query_value;
use super::R;
use crate::clients::postgres::{quote_ident, quote_literal};
use crate::primitives::def;
use crate::runtime::host::Host;
use rhai::{Map, Module};
use std::sync::Arc;

/// Where `load_replication_password` reads a new password when no file is given.
pub const NEW_PASSWORD_VAR: &str = "PGRUNBOOK_NEW_REPLICATION_PASSWORD";

/// A new password as read from a file or the environment: without the line end a file has,
/// and refused (with the reason, never the value) when it cannot be a good password.
fn check_new_password(text: &str) -> Result<String, String> {
    let pw = text.strip_suffix('\n').unwrap_or(text);
    let pw = pw.strip_suffix('\r').unwrap_or(pw);
    if pw.contains(['\n', '\r', '\0']) {
        return Err("it holds a line break or a NUL byte".into());
    }
    if pw.chars().count() < 8 {
        return Err(format!(
            "it has {} character(s); give at least 8",
            pw.chars().count()
        ));
    }
    Ok(pw.to_string())
}

pub fn register(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    def!(
        m,
        "load_replication_password",
        ["file: &str", "Map"],
        "Reads a new password for the replication role, from `file` (its first line) or, when
        `file` is \"\", from the environment variable PGRUNBOOK_NEW_REPLICATION_PASSWORD (never
        from a command line), and makes the rest of the run use it instead of the configured one:
        `reset_replication_password` sets it, `set_primary_conninfo` and `replication_login` use
        it. The password is masked by value from then on, like the configured ones, and never
        returned: #{source, differs} says where it came from and whether it differs from the
        configured one. Refuses (exit code 4) when there is none or it is shorter than 8
        characters. Changes nothing on the cluster, so it runs in a dry run too.",
        move |file: &str| -> R<Map> {
            let refuse = |why: String| {
                h.error(
                    crate::error::Class::Refused,
                    format!("load_replication_password: {why}; nothing was changed"),
                )
            };
            let (text, source) = if file.is_empty() {
                let v = std::env::var(NEW_PASSWORD_VAR).map_err(|_| {
                    refuse(format!(
                        "no new password: set {NEW_PASSWORD_VAR} in the environment, or give a file (--set password_file=PATH)"
                    ))
                })?;
                (v, NEW_PASSWORD_VAR.to_string())
            } else {
                let v = std::fs::read_to_string(file)
                    .map_err(|e| refuse(format!("cannot read the password file {file}: {e}")))?;
                let first = v.lines().next().unwrap_or("").to_string();
                (first, format!("file {file}"))
            };
            let pw = check_new_password(&text).map_err(|why| {
                refuse(format!("the new password from {source} is refused: {why}"))
            })?;
            let differs = pw != h.config.cluster.replication_password;
            h.use_replication_password(&pw);
            let mut out = Map::new();
            out.insert("source".into(), source.into());
            out.insert("differs".into(), differs.into());
            Ok(out)
        }
    );

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
            let verifier =
                postgres_protocol::password::scram_sha_256(h.replication_password().as_bytes());
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
        configured one (or the new one `load_replication_password` read), as a SCRAM verifier: the password itself is not sent, so it reaches no
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
            let which = if h.replication_password_replaced() {
                "the new one (a SCRAM verifier; the password is not shown)"
            } else {
                "the configured one"
            };
            if !h.change(node, &format!("set the password of role {role} to {which}")) {
                return Ok(());
            }
            let verifier =
                postgres_protocol::password::scram_sha_256(h.replication_password().as_bytes());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_passwords_lose_their_line_end_and_short_ones_are_refused() {
        assert_eq!(check_new_password("s3cret-new\n").unwrap(), "s3cret-new");
        assert_eq!(check_new_password("s3cret-new\r\n").unwrap(), "s3cret-new");
        assert_eq!(
            check_new_password("with space ok").unwrap(),
            "with space ok"
        );
        let e = check_new_password("short").unwrap_err();
        assert!(e.contains("5 character"), "{e}");
        assert!(
            !e.contains("short"),
            "the reason never shows the value: {e}"
        );
        assert!(check_new_password("two\nlines here").is_err());
    }
}
