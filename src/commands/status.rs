//! `pgrunbook status`: the cluster at a glance (like `patronictl list`): per node the container
//! state, role, timeline, LSNs, lag and slots; then the last backup and the last run from Redis.
//! Read-only: it never changes anything, and a node that does not answer is shown as such.

use super::{infra, load_config};
use crate::clients::docker::State;
use crate::clients::postgres::{PgError, PgLsn, Rows, Value};
use crate::clients::redis::{BACKUPS, JOURNAL};
use crate::commands::journal;
use crate::error::Failure;
use crate::runtime::host::Host;
use crate::{out, outln};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The role of a node whose PostgreSQL answered but refused pgrunbook's login.
pub const LOGIN_REFUSED: &str = "login refused";

/// The role of a node whose Docker engine does not answer.
pub const UNREACHABLE: &str = "unreachable";

/// `status`: a table, or with `json` the same as a JSON object (docs/json.md). Fails when
/// Docker does not answer, and, after showing what it could read, when a node refused
/// pgrunbook's login (exit code 5, as a runbook would): a wrong password in the configuration
/// is not a cluster whose nodes are down.
pub fn run(config: Option<&Path>, json: bool) -> Result<(), Failure> {
    let host = std::sync::Arc::new(Host::new(load_config(config)?));
    // On one engine, an engine that does not answer fails the command, as it always did;
    // across engines, each engine that does not answer makes its nodes `unreachable`.
    if !host.config.multi_engine() {
        host.docker.ping().map_err(infra)?;
    }
    let mut st = collect(&host);
    explain(&host, &mut st);
    if json {
        outln!("{}", serde_json::to_string_pretty(&st).unwrap_or_default());
    } else {
        out!("{}", render(&st));
    }
    // A node that could not be read (its login refused, its engine unreachable) comes first:
    // "no node accepts writes" is then only what the others say, and the cause is infrastructure.
    match st.nodes.iter().find(|n| n.role == LOGIN_REFUSED) {
        Some(n) => Err(Failure::new(
            crate::error::Class::Infrastructure,
            format!(
                "PostgreSQL refused pgrunbook's login on node {} (container {}): {}; check \
                 [cluster] superuser and password in the configuration (or PGRUNBOOK_PASSWORD)",
                n.name,
                n.container,
                n.error.as_deref().unwrap_or("")
            ),
        )),
        None => match st.nodes.iter().find(|n| n.role == UNREACHABLE) {
            // Every node that could be read is shown; then the exit code says one could not.
            Some(n) => Err(Failure::new(
                crate::error::Class::Infrastructure,
                format!(
                    "node {} is unreachable (engine {}): {}",
                    n.name,
                    n.engine,
                    n.error
                        .as_deref()
                        .unwrap_or("its Docker engine does not answer")
                ),
            )),
            None => match &st.alert {
                Some(alert) => Err(Failure::new(
                    crate::error::Class::Refused,
                    format!("{alert} (pgrunbook run diagnose says why)"),
                )),
                None => Ok(()),
            },
        },
    }
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct NodeStatus {
    pub name: String,
    pub container: String,
    pub state: String,
    /// primary, standby, fenced (a standby marked by failover), down, stopped, missing,
    /// login refused, unreachable (its Docker engine does not answer)
    pub role: String,
    /// Where pgrunbook reaches its PostgreSQL (`host:port`).
    pub host: String,
    /// Its Docker engine (`unix:///var/run/docker.sock`, `tcp://10.0.0.11:2376 (TLS)`).
    pub engine: String,
    pub timeline: Option<i64>,
    pub lsn: Option<String>,
    pub receive_lsn: Option<String>,
    pub replay_lsn: Option<String>,
    /// Bytes of WAL the standby has not replayed yet, against the primary's current LSN.
    pub lag_bytes: Option<i64>,
    /// Seconds since the standby last replayed a transaction, when it has received WAL it has
    /// not replayed yet (None when it has replayed all it received).
    pub replay_delay_s: Option<i64>,
    pub streaming_from: Option<String>,
    pub slots: Vec<String>,
    pub error: Option<String>,
    /// Why a node that should stream from the primary does not (`diagnose::reason`).
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct ClusterStatus {
    /// What is wrong with the cluster as a whole, shown first: "no node accepts writes ...".
    /// `status` exits 4 when it is set.
    pub alert: Option<String>,
    pub nodes: Vec<NodeStatus>,
    /// The newest backup entry's fields, typed in JSON (see docs/json.md).
    #[serde(serialize_with = "crate::commands::journal::serialize_typed")]
    pub last_backup: Option<BTreeMap<String, String>>,
    /// The newest run end entry's fields, typed in JSON.
    #[serde(serialize_with = "crate::commands::journal::serialize_typed")]
    pub last_run: Option<BTreeMap<String, String>>,
    pub redis: String,
    pub warnings: Vec<String>,
    /// `pgrunbook watch` processes of this cluster, from their heartbeats.
    pub watch: crate::commands::watch::status::WatcherStatus,
    /// The multi-host URI applications connect with (`commands/client_uri.rs`).
    pub client_uri: String,
    /// With `[clients] network`: the URIs through the primary's and the standbys' aliases.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_uri_primary_alias: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_uri_replica_alias: Option<String>,
}

/// An unused slot holding this much WAL is named in a warning (as `diagnose::slot_warn_bytes`).
pub const SLOT_WARN_BYTES: i64 = 256 * 1024 * 1024;
/// A standby this many bytes of WAL behind the primary is named in a warning, with the cause
/// `diagnose::lag_reason` finds.
pub const LAG_WARN_BYTES: i64 = 16 * 1024 * 1024;
/// ... or that has not replayed a transaction for this many seconds while WAL waits.
pub const LAG_WARN_S: i64 = 60;

/// Seconds for people: "45 s", "12 min 5 s", "3 h 2 min".
pub fn human_s(s: i64) -> String {
    match s {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

fn q(host: &Host, node: &str, sql: &str) -> Result<Rows, PgError> {
    host.pg.query(node, sql, &[], false, &host.cancel)
}

/// Column `k` of the first row as text (an LSN as PostgreSQL writes it), `None` when NULL.
fn s(r: &Rows, k: &str) -> Option<String> {
    match r.get(0, k)? {
        Value::Text(t) => Some(t.clone()),
        Value::Lsn(l) => Some(l.to_string()),
        _ => None,
    }
}

fn i(r: &Rows, k: &str) -> Option<i64> {
    r.get(0, k).and_then(Value::as_int)
}

/// An LSN as a byte position (`0/3000060` is 0x3000060).
pub fn lsn_bytes(lsn: &str) -> Option<u64> {
    lsn.parse::<PgLsn>().ok().map(u64::from)
}

/// Reads the state of every node and the journal.
pub fn collect(host: &Host) -> ClusterStatus {
    let mut st = ClusterStatus::default();
    let mut slot_warnings = Vec::new();
    for (name, n) in &host.config.nodes {
        let mut ns = NodeStatus {
            name: name.clone(),
            container: n.container.clone(),
            host: format!("{}:{}", n.host, n.port),
            engine: host.config.engine(n).shown(),
            ..Default::default()
        };
        match host.docker_of(name).state(&n.container) {
            Ok(State::Missing) => {
                ns.state = "missing".into();
                ns.role = "missing".into();
            }
            Ok(s) => {
                ns.state = s.as_str().to_string();
                if !s.is_running() {
                    ns.role = "stopped".into();
                }
            }
            // Its engine does not answer: a role of its own, and the other nodes are still read.
            Err(e)
                if crate::error::class_of(&e, crate::error::Class::Runbook)
                    == crate::error::Class::Infrastructure =>
            {
                ns.state = "unknown".into();
                ns.role = UNREACHABLE.into();
                ns.error = Some(format!("{e:#}"));
            }
            Err(e) => {
                ns.state = "unknown".into();
                ns.error = Some(format!("{e:#}"));
            }
        }
        if ns.role.is_empty() {
            match q(
                host,
                name,
                "SELECT pg_is_in_recovery() AS rec, \
                 CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() END AS lsn, \
                 pg_last_wal_receive_lsn() AS receive, pg_last_wal_replay_lsn() AS replay, \
                 (SELECT timeline_id FROM pg_control_checkpoint()) AS ckpt_tli, \
                 (SELECT received_tli FROM pg_stat_wal_receiver) AS recv_tli, \
                 (SELECT sender_host FROM pg_stat_wal_receiver WHERE status = 'streaming') AS sender, \
                 CASE WHEN pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn() \
                      THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp())::bigint END AS replay_delay, \
                 CASE WHEN pg_is_in_recovery() THEN NULL ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END AS cur_tli",
            ) {
                Ok(r) if !r.rows.is_empty() => {
                    let rec = r.get(0, "rec").and_then(Value::as_bool).unwrap_or(false);
                    ns.role = if rec { "standby".into() } else { "primary".into() };
                    ns.lsn = s(&r, "lsn");
                    ns.receive_lsn = s(&r, "receive");
                    ns.replay_lsn = s(&r, "replay");
                    ns.replay_delay_s = i(&r, "replay_delay");
                    ns.timeline = i(&r, "cur_tli").or(i(&r, "recv_tli")).or(i(&r, "ckpt_tli"));
                    // Across engines the sender is an address, not a container name.
                    ns.streaming_from = s(&r, "sender")
                        .map(|h| host.config.node_by_address(&h, None).unwrap_or(h));
                }
                Ok(_) => ns.role = "down".into(),
                // A refused login is not a node that is down: the fix is in the config.
                Err(e) if e.login_refused() => {
                    ns.role = LOGIN_REFUSED.into();
                    ns.error = Some(e.message().to_string());
                }
                Err(e) => {
                    ns.role = "down".into();
                    ns.error = Some(format!("{e:#}"));
                }
            }
            if let Ok(rows) = q(
                host,
                name,
                "SELECT slot_name::text AS name, active, coalesce(pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() \
                 THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, restart_lsn), 0)::bigint AS retained \
                 FROM pg_replication_slots ORDER BY 1",
            ) {
                for r in &rows.rows {
                    let slot = r.first().and_then(Value::as_str).unwrap_or_default();
                    let active = r.get(1).and_then(Value::as_bool).unwrap_or(false);
                    let retained = r.get(2).and_then(Value::as_int).unwrap_or(0);
                    if active {
                        ns.slots.push(slot.to_string());
                        continue;
                    }
                    ns.slots
                        .push(format!("{slot} (unused, {})", journal::human_size(retained)));
                    if retained >= SLOT_WARN_BYTES {
                        let whose = match host.config.nodes.iter().find(|(_, n)| n.slot == slot) {
                            Some((owner, _)) => format!("{owner}'s slot"),
                            None => "not a configured node's slot".to_string(),
                        };
                        slot_warnings.push(format!(
                            "slot {slot} on {name} is unused and holds {} of WAL ({whose}): pgrunbook run diagnose",
                            journal::human_size(retained)
                        ));
                    }
                }
            }
        }
        st.nodes.push(ns);
    }
    // Lag: each standby against the primary's current LSN.
    let primaries: Vec<NodeStatus> = st
        .nodes
        .iter()
        .filter(|n| n.role == "primary")
        .cloned()
        .collect();
    if primaries.len() > 1 {
        // Loud: an alert (exit code 4), with the failover that could not fence one of them.
        let names: Vec<&str> = primaries.iter().map(|p| p.name.as_str()).collect();
        let why = names
            .iter()
            .find_map(|n| crate::runtime::unconfirmed::newest(&host.journal, n))
            .map(|w| format!("; {}", w.text()))
            .unwrap_or_default();
        st.alert = Some(format!(
            "SPLIT BRAIN: {} nodes accept writes: {}{why}. Decide which one keeps its data, then \
             `pgrunbook run failback --set node=NODE` fences and rejoins the other (what it wrote \
             since the split is discarded)",
            primaries.len(),
            names.join(", ")
        ));
    }
    if primaries.is_empty() && !st.nodes.iter().any(|n| n.role == LOGIN_REFUSED) {
        let unread = st.nodes.iter().any(|n| n.role == UNREACHABLE);
        st.alert = Some(format!(
            "no {}node accepts writes: {}",
            if unread { "reachable " } else { "" },
            st.nodes
                .iter()
                .map(|n| format!("{} is {} (container {})", n.name, n.role, n.state))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(p) = primaries.first() {
        let plsn = p.lsn.as_deref().and_then(lsn_bytes);
        for n in st.nodes.iter_mut().filter(|n| n.role == "standby") {
            if let (Some(pl), Some(rl)) = (plsn, n.replay_lsn.as_deref().and_then(lsn_bytes)) {
                n.lag_bytes = Some(pl.saturating_sub(rl) as i64);
            }
            if n.streaming_from.is_none() {
                st.warnings.push(format!(
                    "{} is a standby but does not stream from any primary",
                    n.name
                ));
            }
        }
    }
    st.warnings.extend(slot_warnings);
    match host.journal.last(BACKUPS, 100) {
        Ok(b) => {
            st.redis = "reachable".into();
            // The stream also holds restore drills (`restore_check`) beside the backups.
            st.last_backup = b
                .into_iter()
                .find(|e| e.fields.get("event").is_none_or(|v| v == "backup"))
                .map(|e| e.fields);
            st.last_run = host
                .journal
                .last(JOURNAL, 50)
                .ok()
                .and_then(|es| {
                    es.into_iter()
                        .find(|e| e.fields.get("event").is_some_and(|v| v == "end"))
                })
                .map(|e| e.fields);
        }
        Err(e) => st.redis = format!("unreachable: {e:#}"),
    }
    st.watch = crate::commands::watch::status::collect(host);
    st.client_uri = crate::commands::client_uri::published(&host.config);
    if !host.config.clients.network.is_empty() {
        // PostgreSQL's own port, as containers on the network reach it.
        let port = host
            .config
            .nodes
            .keys()
            .find_map(|n| q(host, n, "SELECT current_setting('port')::int AS p").ok())
            .and_then(|r| i(&r, "p"))
            .unwrap_or(5432) as u16;
        if let Some((p, r)) = crate::commands::client_uri::aliases(&host.config, port) {
            st.client_uri_primary_alias = Some(p);
            st.client_uri_replica_alias = Some(r);
        }
    }
    st
}

/// Beside each node that should stream from the primary and does not, the first cause the
/// stdlib's `diagnose::reason` finds (the checks `pgrunbook run diagnose` runs): one line, in
/// the warning and in the JSON's `reason`.
pub fn explain(host: &std::sync::Arc<Host>, st: &mut ClusterStatus) {
    let primaries: Vec<String> = st
        .nodes
        .iter()
        .filter(|n| n.role == "primary")
        .map(|n| n.name.clone())
        .collect();
    let [primary] = primaries.as_slice() else {
        return;
    };
    for n in st.nodes.iter() {
        if n.role != "standby" {
            continue;
        }
        let bytes = n.lag_bytes.unwrap_or(0);
        let delay = n.replay_delay_s.unwrap_or(0);
        if bytes < LAG_WARN_BYTES && delay < LAG_WARN_S {
            continue;
        }
        let why = match crate::engine::call_stdlib(
            host,
            "diagnose",
            "lag_reason",
            vec![n.name.clone().into()],
        ) {
            Ok(r) if r.to_string().is_empty() => "no cause found: pgrunbook run diagnose".into(),
            Ok(r) => r.to_string(),
            Err(f) => format!("diagnose could not run: {}", f.message),
        };
        st.warnings.push(format!(
            "{} replays {} behind {primary}{}: {why}",
            n.name,
            journal::human_size(bytes),
            if n.replay_delay_s.is_some() {
                format!(" (last replayed transaction {} ago)", human_s(delay))
            } else {
                String::new()
            }
        ));
    }
    for n in st.nodes.iter_mut() {
        if &n.name == primary
            || n.streaming_from.is_some()
            || n.role == "missing"
            || n.role == UNREACHABLE
        {
            continue;
        }
        let reason = crate::engine::call_stdlib(
            host,
            "diagnose",
            "reason",
            vec![primary.clone().into(), n.name.clone().into()],
        );
        let text = match reason {
            Ok(r) if r.to_string().is_empty() => "no cause found: pgrunbook run diagnose".into(),
            Ok(r) => r.to_string(),
            Err(f) => format!("diagnose could not run: {}", f.message),
        };
        let plain = format!("{} is a standby but does not stream", n.name);
        st.warnings.retain(|w| !w.starts_with(&plain));
        st.warnings
            .push(format!("{} does not stream from {primary}: {text}", n.name));
        n.reason = Some(text);
    }
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map(|x| x.to_string())
        .unwrap_or_else(|| "-".into())
}

/// The status as text: a table of nodes, then the last backup and run.
pub fn render(st: &ClusterStatus) -> String {
    let mut cols: Vec<String> = [
        "node",
        "container",
        "state",
        "role",
        "tl",
        "lsn (current/replay)",
        "lag",
        "streams from",
        "slots",
    ]
    .map(String::from)
    .to_vec();
    // Across engines, where each node lives: after the container.
    let engines: std::collections::BTreeSet<&str> =
        st.nodes.iter().map(|n| n.engine.as_str()).collect();
    let multi = engines.len() > 1;
    if multi {
        cols.insert(2, "host".into());
        cols.insert(3, "engine".into());
    }
    let rows: Vec<Vec<String>> = st
        .nodes
        .iter()
        .map(|n| {
            let mut row = vec![
                n.name.clone(),
                n.container.clone(),
                n.state.clone(),
                n.role.clone(),
                opt(&n.timeline),
                n.lsn
                    .clone()
                    .or(n.replay_lsn.clone())
                    .unwrap_or_else(|| "-".into()),
                n.lag_bytes
                    .map(journal::human_size)
                    .unwrap_or_else(|| "-".into()),
                opt(&n.streaming_from),
                if n.slots.is_empty() {
                    "-".into()
                } else {
                    n.slots.join(", ")
                },
            ];
            if multi {
                row.insert(2, n.host.clone());
                row.insert(3, n.engine.clone());
            }
            row
        })
        .collect();
    let mut out = String::new();
    if let Some(alert) = &st.alert {
        out.push_str(&format!("ALERT: {alert}\n"));
    }
    out.push_str(&crate::table::render_cells(&cols, &rows));
    for n in st.nodes.iter().filter(|n| n.role == UNREACHABLE) {
        out.push_str(&format!(
            "warning: node {} is unreachable: {}\n",
            n.name,
            n.error
                .as_deref()
                .unwrap_or("its Docker engine does not answer")
        ));
    }
    for w in &st.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    match &st.last_backup {
        Some(b) => out.push_str(&format!(
            "last backup: {} {} of {} at {} ({})\n",
            b.get("type").map(String::as_str).unwrap_or("?"),
            b.get("label").map(String::as_str).unwrap_or("?"),
            b.get("node").map(String::as_str).unwrap_or("?"),
            b.get("ts").map(String::as_str).unwrap_or("?"),
            b.get("size")
                .map(|v| crate::commands::journal::human_size_str(v))
                .unwrap_or_else(|| "size unknown".into()),
        )),
        None => out.push_str(&format!(
            "last backup: none recorded (Redis {})\n",
            st.redis
        )),
    }
    match &st.last_run {
        Some(r) => out.push_str(&format!(
            "last run: {} {} at {} ({} ms){}\n",
            r.get("runbook").map(String::as_str).unwrap_or("?"),
            r.get("outcome").map(String::as_str).unwrap_or("?"),
            r.get("ts").map(String::as_str).unwrap_or("?"),
            r.get("duration_ms").map(String::as_str).unwrap_or("?"),
            if r.get("dry_run").is_some_and(|v| v == "true") {
                " [dry run]"
            } else {
                ""
            },
        )),
        None => out.push_str("last run: none recorded\n"),
    }
    out.push_str(&st.watch.render());
    out.push_str(&format!("clients: {}\n", st.client_uri));
    if let Some(p) = &st.client_uri_primary_alias {
        out.push_str(&format!("clients on the applications' network: {p}\n"));
    }
    if let Some(r) = &st.client_uri_replica_alias {
        out.push_str(&format!("read-only clients there: {r}\n"));
    }
    out
}
