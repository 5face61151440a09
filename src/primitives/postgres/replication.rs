//! A standby's replication connection: testing the login the way the standby makes it (from its
//! container, to the primary's container name and port, as the replication role, over a
//! replication connection), which `diagnose` and `repair-replication-login` use to tell a wrong
//! password from a missing pg_hba.conf rule from a host that does not resolve; and pointing a
//! node at a primary (`set_primary_conninfo`), which `switchover` and
//! `rotate-replication-password` use.

use super::sql::query_value;
use super::R;
use crate::error::Class;
use crate::primitives::{def, node};
use crate::runtime::host::Host;
use rhai::{Dynamic, Map, Module};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The result of a replication login test, as the Rhai map the primitive returns.
fn login_map(ok: bool, error: &str, from: &str, system: &str) -> Map {
    let mut m = Map::new();
    m.insert("ok".into(), Dynamic::from_bool(ok));
    m.insert("error".into(), error.to_string().into());
    m.insert("from".into(), from.to_string().into());
    m.insert("system_identifier".into(), system.to_string().into());
    m
}

/// The text of psql's error without its "psql: error: " prefix, on one line.
fn psql_error(stderr: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("psql: error: ")
        .to_string()
}

/// `set_primary_conninfo`: see its doc. `reload_now` false leaves a running node's settings
/// for its next start (a primary about to be shut down has no use for a reload).
fn set_primary_conninfo(h: &Host, node: &str, primary: &str, reload_now: bool) -> R<()> {
    h.container("set_primary_conninfo", primary)?;
    h.check_node("set_primary_conninfo", node)?;
    if node == primary {
        return Err(h.error(
            Class::Runbook,
            format!("set_primary_conninfo: {node} cannot stream from itself"),
        ));
    }
    let slot = h
        .config
        .nodes
        .get(node)
        .map(|n| n.slot.clone())
        .unwrap_or_default();
    // Where the standby reaches the primary: its container name and the port inside it on one
    // engine, its address across engines (`clone::reach`).
    let (container, port) = super::clone::reach(h, "set_primary_conninfo", primary)?;
    if !h.change(
            node,
            &format!(
                "point primary_conninfo at {primary} ({container}:{port}, role {}, password not shown) through slot {slot}, {}",
                h.config.cluster.replication_user,
                if reload_now { "and reload" } else { "read at its next start" }
            ),
        ) {
            return Ok(());
        }
    let settings = super::clone::standby_settings(h, &container, port, node, &slot);
    let running = h.pg.ping(node);
    let write = |quiet: &str| -> R<()> {
        let script = format!(
            "set -e\ntest -s \"$PGDATA/PG_VERSION\"\n{}",
            super::clone::WRITE_STANDBY_SETTINGS
        );
        let out = node::run_script(
            h,
            "set_primary_conninfo",
            node,
            &script,
            vec![
                format!("PGRUNBOOK_STANDBY_SETTINGS={settings}"),
                format!("PGRUNBOOK_QUIET={quiet}"),
            ],
        )?;
        if out.exit_code != 0 {
            return Err(h.error(
                Class::Refused,
                format!(
                    "set_primary_conninfo on {node}: cannot rewrite postgresql.auto.conf: {}",
                    out.stderr.trim()
                ),
            ));
        }
        Ok(())
    };
    if !running || !reload_now {
        // Read at the next start, which logs no parameter values.
        return write("");
    }
    // The postmaster logs a changed parameter's value when it reloads: the new
    // primary_conninfo is applied by a reload whose messages are kept out of the log,
    // then the log level is put back by a second reload.
    write(super::clone::QUIET_RELOAD)?;
    let reload = || {
        h.pg.execute_batch(node, "SELECT pg_reload_conf()", None)
            .map_err(|e| h.fail("set_primary_conninfo", node, e.into()))
    };
    reload()?;
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let level = query_value(
            h,
            "set_primary_conninfo",
            node,
            "SELECT setting FROM pg_settings WHERE name = 'log_min_messages'",
            &[],
        )?;
        if level.to_string() == "fatal" {
            break;
        }
        if Instant::now() >= end {
            // Reloading again now would apply the new primary_conninfo with the log level back,
            // and the postmaster would log its value, password and all: stop and say so.
            return Err(h.error(
                Class::Infrastructure,
                format!(
                    "set_primary_conninfo on {node}: the server did not apply the quiet reload within 10 s (log_min_messages is still {level}); \
                     not reloading again, so that the new primary_conninfo is not logged. Its postgresql.auto.conf holds the new primary_conninfo \
                     and a temporary log_min_messages = fatal: run set_primary_conninfo again once the server answers normally"
                ),
            ));
        }
        h.check_cancel()?;
        std::thread::sleep(Duration::from_millis(5));
    }
    write("")?;
    reload()?;
    Ok(())
}

/// `host` and `port` of a libpq conninfo string (`host=pg-bases2 port=5432 user=...`), with
/// single-quoted values unquoted. Only the keyword/value form, which pgrunbook and pg_basebackup
/// -R write; a URI gives none.
fn conninfo_host_port(conninfo: &str) -> (Option<String>, Option<u16>) {
    let (mut host, mut port) = (None, None);
    let mut rest = conninfo.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().to_string();
        rest = rest[eq + 1..].trim_start();
        let mut value = String::new();
        if let Some(quoted) = rest.strip_prefix('\'') {
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '\'' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            rest = quoted[end.min(quoted.len())..].trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            value = rest[..end].to_string();
            rest = rest[end..].trim_start();
        }
        match key.as_str() {
            "host" | "hostaddr" if host.is_none() => host = Some(value),
            "port" => port = value.parse().ok(),
            _ => {}
        }
    }
    (host, port)
}

pub fn register(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    def!(
        m,
        "upstream",
        ["node: &str", "Dynamic"],
        "The node `node` is configured to stream from: the configured node its primary_conninfo
        names (by container name on one engine, by address across engines), read from the
        running server. `()` when the node does not answer, has no primary_conninfo, or names a
        server that is no configured node. With several standbys, it tells which node was their
        primary once that primary is gone.",
        move |node: &str| -> R<Dynamic> {
            h.check_node("upstream", node)?;
            if !h.pg.probe(node).unwrap_or(false) {
                return Ok(Dynamic::UNIT);
            }
            let v = query_value(
                &h,
                "upstream",
                node,
                "SELECT setting FROM pg_settings WHERE name = 'primary_conninfo'",
                &[],
            )?;
            let text = v.into_string().unwrap_or_default();
            let (Some(host), port) = conninfo_host_port(&text) else {
                return Ok(Dynamic::UNIT);
            };
            Ok(h.config
                .node_by_address(&host, port)
                .filter(|n| n != node)
                .map_or(Dynamic::UNIT, Dynamic::from))
        }
    );

    let h = host.clone();
    def!(
        m,
        "set_primary_conninfo",
        ["node: &str", "primary: &str"],
        "Points `node` at `primary` as its standby: rewrites `primary_conninfo` (the primary's
        container name and port, the replication role, the password this run uses, application
        name `node`) and `primary_slot_name` (node_info(node).slot) in the node's
        postgresql.auto.conf, then reloads it when it runs. A standby (PostgreSQL 13 or later)
        restarts its WAL receiver on the reload and connects again with the new settings, without
        a restart; a primary ignores them until it starts as a standby. The password travels in
        the environment of a `docker exec` (a one-off container when the node is stopped), never
        in SQL (a server may log statements) nor on a command line, and it appears in no output,
        plan or journal.",
        move |node: &str, primary: &str| -> R<()> { set_primary_conninfo(&h, node, primary, true) }
    );

    let h = host.clone();
    def!(
        m,
        "set_primary_conninfo",
        ["node: &str", "primary: &str", "reload: bool"],
        "Like `set_primary_conninfo(node, primary)`; with `reload` false the file is rewritten
        but a running node is not reloaded: the settings take effect at its next start. For a
        primary about to be shut down and started as a standby (switchover): one `docker exec`,
        and no reload whose parameter changes the server would log.",
        move |node: &str, primary: &str, reload: bool| -> R<()> {
            set_primary_conninfo(&h, node, primary, reload)
        }
    );

    let h = host.clone();
    def!(
        m,
        "replication_login",
        ["standby: &str", "primary: &str", "Map"],
        "Tests the replication login `standby` makes to `primary`: from the standby's container
        (a one-off container of its image and network when it is stopped), to the primary's
        container name and port, as the configured replication role with the configured password
        (passed in the environment, never on a command line), over a replication connection
        (IDENTIFY_SYSTEM). Returns #{ok, error, from, system_identifier}: `error` is the server's
        answer (\"password authentication failed for user ...\", \"no pg_hba.conf entry for
        replication connection ...\", \"could not translate host name ...\"). A read: it runs in a
        dry run too. Fails (exit code 5) only when the standby's container does not exist.",
        move |standby: &str, primary: &str| -> R<Map> {
            let c = &h.config.cluster;
            let from = h.container("replication_login", standby)?;
            let to = h.container("replication_login", primary)?;
            // Where the standby reaches the primary (`clone::reach`); the container and 5432
            // when its server does not answer (then the login fails anyway, and says why).
            let (to, port) =
                super::clone::reach(&h, "replication_login", primary).unwrap_or((to, 5432));
            let conninfo = format!(
                "host={} port={port} user={} dbname=replication replication=true \
                 application_name=pgrunbook-login-test connect_timeout=5",
                super::clone::conninfo_quote(&to),
                super::clone::conninfo_quote(&c.replication_user),
            );
            let script = format!("psql {} -Atc IDENTIFY_SYSTEM", node::sh_quote(&conninfo));
            let out = node::run_script(
                &h,
                "replication_login",
                standby,
                &script,
                vec![format!("PGPASSWORD={}", h.replication_password())],
            )?;
            if out.exit_code == 0 {
                let system = out
                    .stdout
                    .split('|')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string();
                return Ok(login_map(true, "", &from, &system));
            }
            let error = psql_error(&out.stderr);
            if error.contains("psql: not found") || error.contains("executable file not found") {
                return Err(h.error(
                    Class::Refused,
                    format!(
                        "replication_login from {standby}: psql is not installed in {from}'s image"
                    ),
                ));
            }
            Ok(login_map(false, &error, &from, ""))
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psql_errors_read_as_the_servers_answer() {
        let e = psql_error(
            "psql: error: connection to server at \"pg-bases2\" (172.18.0.2), port 5432 failed: FATAL:  password authentication failed for user \"replicator\"\n",
        );
        assert!(e.starts_with("connection to server at"));
        assert!(e.ends_with("password authentication failed for user \"replicator\""));
    }

    #[test]
    fn conninfo_host_and_port_are_read_quoted_or_not() {
        assert_eq!(
            conninfo_host_port("host=pg-bases2 port=5432 user=replicator"),
            (Some("pg-bases2".into()), Some(5432))
        );
        assert_eq!(
            conninfo_host_port("user='rep' password='a b\\'c' host='10.0.0.1' port='5544'"),
            (Some("10.0.0.1".into()), Some(5544))
        );
        assert_eq!(conninfo_host_port(""), (None, None));
        assert_eq!(conninfo_host_port("port=5432"), (None, Some(5432)));
    }
}
