//! The server's state: whether it answers, what it says of itself, recovery, readiness and
//! promotion.

use super::sql::query_value;
use super::R;
use crate::error::Class;
use crate::primitives::{def, node};
use crate::runtime::host::Host;
use rhai::{Dynamic, Map, Module};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn is_in_recovery(h: &Host, primitive: &str, node: &str) -> R<bool> {
    query_value(h, primitive, node, "SELECT pg_is_in_recovery()", &[])?
        .as_bool()
        .map_err(|_| h.error(Class::Runbook, format!("{primitive} on {node}: no answer")))
}

pub fn register(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    def!(
        m,
        "pg_ping",
        ["node: &str", "bool"],
        "True when the node accepts connections and answers a query, false when it does not.
        Raises (exit code 5) only when the node refuses the login: a wrong password is not a
        node that is down.",
        move |node: &str| -> R<bool> {
            h.check_node("pg_ping", node)?;
            h.pg.probe(node)
                .map_err(|e| h.fail("pg_ping", node, e.into()))
        }
    );

    let h = host.clone();
    def!(
        m,
        "server_info",
        ["node: &str", "Map"],
        "What the node's server says of itself: #{port, socket_dir, data_dir} (the port inside its
        container, the first socket directory, the data directory). Primitives that write files
        for the server (pgBackRest's configuration) or connect between containers use these, not
        constants.",
        move |node: &str| -> R<Map> {
            let f = node::server_facts(&h, "server_info", node)?;
            let mut m = Map::new();
            m.insert("port".into(), Dynamic::from_int(f.port));
            m.insert("socket_dir".into(), f.socket_dir.into());
            m.insert("data_dir".into(), f.data_dir.into());
            Ok(m)
        }
    );

    let h = host.clone();
    def!(
        m,
        "is_in_recovery",
        ["node: &str", "bool"],
        "True when the node is a standby (in recovery), false when it is a primary.",
        move |node: &str| is_in_recovery(&h, "is_in_recovery", node)
    );

    let h = host.clone();
    def!(
        m,
        "wait_ready",
        ["node: &str", "timeout_s: i64"],
        "Waits until the node accepts connections; fails after `timeout_s` seconds.",
        move |node: &str, timeout_s: i64| -> R<()> {
            h.check_node("wait_ready", node)?;
            if h.dry_run()
                && !h
                    .pg
                    .probe(node)
                    .map_err(|e| h.fail("wait_ready", node, e.into()))?
            {
                h.say(&format!("    [dry run] {node} is not ready now; a real run would wait up to {timeout_s} s"));
                return Ok(());
            }
            node::wait_accepting(&h, "wait_ready", node, timeout_s, "")
        }
    );

    let h = host.clone();
    def!(
        m,
        "promote",
        ["node: &str", "timeout_s: i64"],
        "Promotes the standby `node` to primary and waits until it leaves recovery (polling every
        10 ms, where `pg_promote(wait => true)` polls every 100 ms). Fails if it is not a standby.",
        move |node: &str, timeout_s: i64| -> R<()> {
            if !is_in_recovery(&h, "promote", node)? {
                return Err(h.error(
                    Class::Refused,
                    format!("promote on {node}: it is not a standby (not in recovery)"),
                ));
            }
            if !h.change(node, "promote to primary (pg_promote)") {
                return Ok(());
            }
            let since_unix = chrono::Utc::now().timestamp() - 1;
            let _ = query_value(&h, "promote", node, "SELECT pg_promote(wait => false)", &[])?;
            let end = Instant::now() + Duration::from_secs(timeout_s.max(1) as u64);
            loop {
                if !is_in_recovery(&h, "promote", node)? {
                    return Ok(());
                }
                if Instant::now() >= end {
                    return Err(h.error(
                        Class::Refused,
                        format!(
                            "promote on {node}: still in recovery after {timeout_s} s{}",
                            h.container("promote", node)
                                .ok()
                                .and_then(|c| crate::primitives::logs::last_cause(
                                    &h,
                                    &c,
                                    Some(since_unix)
                                ))
                                .map(|c| format!("; its log says {c}"))
                                .unwrap_or_default()
                        ),
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    );
}
