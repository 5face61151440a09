//! The health endpoint of each node, served by `pgrunbook watch` on `[nodes.NAME] health`
//! (`127.0.0.1:8008`), with Patroni's conventions so that HAProxy's checks route on it:
//!
//! - `GET /primary`: 200 only while the watcher sees this node as the one writable, unfenced
//!   primary; else 503.
//! - `GET /replica[?lag=16MB]`: 200 for a streaming standby (within the lag); else 503.
//! - `GET /health`, `GET /cluster`: JSON, the shape of `status --json`.
//! - `GET /metrics`: Prometheus' text format (version 0.0.4), written by `prometheus-client`.
//!
//! The watcher's hot loop only publishes what it probed (`publish`, a clone of a few small
//! structs under a lock): requests answer from that, never query a node. What needs a query
//! (`/cluster`, the journal's counts for `/metrics`) is refreshed by one thread of its own every
//! `REFRESH`, whatever the number of requests.

use super::probe::Seen;
use crate::clients::redis::{BACKUPS, JOURNAL};
use crate::config::Config;
use crate::error::Failure;
use crate::runtime::host::Host;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often `/cluster` and the journal's figures are read again.
const REFRESH: Duration = Duration::from_secs(2);

/// What the journal says, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JournalFacts {
    /// Milliseconds since the epoch of the newest backup, and of the newest successful restore
    /// drill.
    pub last_backup_ms: Option<i64>,
    pub last_drill_ms: Option<i64>,
    pub failovers: u64,
    pub switchovers: u64,
    pub failbacks: u64,
    /// The newest failover that promoted a node: its run's duration, its time until writes, and
    /// the bytes it lost (`None`: unknown).
    pub last_failover_ms: Option<f64>,
    pub last_failover_to_writes_ms: Option<f64>,
    pub last_failover_lost_bytes: Option<f64>,
    /// The newest journal id counted (`ms-seq`), so each entry is counted once.
    seen_up_to: Option<(u64, u64)>,
}

fn stream_id(id: &str) -> Option<(u64, u64)> {
    let (a, b) = id.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

impl JournalFacts {
    /// Counts the journal entries newer than those already counted (`entries`: newest first).
    pub fn count(&mut self, entries: &[crate::clients::redis::Entry]) {
        let mut newest = self.seen_up_to;
        for e in entries.iter().rev() {
            let Some(id) = stream_id(&e.id) else { continue };
            if self.seen_up_to.is_some_and(|s| id <= s) {
                continue;
            }
            newest = newest.max(Some(id));
            let f = &e.fields;
            let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
            if get("event") != "end" || get("outcome") != "ok" || get("dry_run") == "true" {
                continue;
            }
            let metrics: BTreeMap<String, String> =
                serde_json::from_str(get("metrics")).unwrap_or_default();
            match get("runbook") {
                // A failover run again after a failover changes nothing and promotes no one.
                "failover" if metrics.contains_key("promoted") => {
                    self.failovers += 1;
                    self.last_failover_ms = get("duration_ms").parse().ok();
                    self.last_failover_to_writes_ms = metrics
                        .get("time_to_writes_ms")
                        .and_then(|v| v.parse().ok());
                    self.last_failover_lost_bytes =
                        metrics.get("data_lost_bytes").and_then(|v| v.parse().ok());
                }
                "switchover" if metrics.contains_key("to") => self.switchovers += 1,
                "failback" if metrics.contains_key("method") => self.failbacks += 1,
                _ => {}
            }
        }
        self.seen_up_to = newest;
    }

    /// The newest backup and successful restore drill in the backups stream (newest first).
    pub fn backups(&mut self, entries: &[crate::clients::redis::Entry]) {
        let ms = |e: &crate::clients::redis::Entry| stream_id(&e.id).map(|(m, _)| m as i64);
        let event = |e: &crate::clients::redis::Entry| {
            e.fields
                .get("event")
                .cloned()
                .unwrap_or_else(|| "backup".into())
        };
        self.last_backup_ms = entries
            .iter()
            .find(|e| event(e) == "backup")
            .and_then(ms)
            .or(self.last_backup_ms);
        self.last_drill_ms = entries
            .iter()
            .find(|e| {
                event(e) == "restore_check" && e.fields.get("outcome").is_some_and(|o| o == "ok")
            })
            .and_then(ms)
            .or(self.last_drill_ms);
    }
}

/// The watcher's latest observations, and what the refresher read.
#[derive(Default)]
pub struct Snapshot {
    pub seen: BTreeMap<String, Seen>,
    pub lag: HashMap<String, i64>,
    pub holds_lease: bool,
    /// `status --json` of the cluster, as of the last refresh.
    pub cluster_json: String,
    pub facts: JournalFacts,
}

impl Snapshot {
    /// The one node that answers, accepts writes and is not fenced; `None` when there is none or
    /// more than one (a split brain routes writes nowhere).
    pub fn primary(&self) -> Option<&str> {
        let p: Vec<&String> = self
            .seen
            .iter()
            .filter(|(_, s)| s.answers && s.in_recovery == Some(false) && !s.fenced)
            .map(|(n, _)| n)
            .collect();
        match p.as_slice() {
            [one] => Some(one.as_str()),
            _ => None,
        }
    }

    /// Whether `node` is a streaming standby within `max_lag` bytes (when given and known).
    pub fn is_replica(&self, node: &str, max_lag: Option<i64>) -> bool {
        let Some(s) = self.seen.get(node) else {
            return false;
        };
        let streaming = s.answers
            && s.in_recovery == Some(true)
            && !s.fenced
            && s.receiver.as_deref() == Some("streaming");
        let within = match (max_lag, self.lag.get(node)) {
            (Some(max), Some(lag)) => *lag <= max,
            _ => true,
        };
        streaming && within
    }

    /// A node's role as the watcher sees it: primary, standby, fenced, down.
    pub fn role(&self, node: &str) -> &'static str {
        match self.seen.get(node) {
            Some(s) if s.answers && s.fenced => "fenced",
            Some(s) if s.answers && s.in_recovery == Some(false) => "primary",
            Some(s) if s.answers && s.in_recovery == Some(true) => "standby",
            _ => "down",
        }
    }

    /// The metrics in Prometheus' text format.
    pub fn metrics(&self, nodes: &[String]) -> String {
        let mut reg = Registry::with_prefix("pgrunbook");
        let role = Family::<Vec<(String, String)>, Gauge>::default();
        reg.register(
            "node_role",
            "The role of each node as the watcher sees it (1 for its current role)",
            role.clone(),
        );
        let lag = Family::<Vec<(String, String)>, Gauge>::default();
        reg.register(
            "node_lag_bytes",
            "Bytes of WAL each standby has not replayed, against the primary's current LSN",
            lag.clone(),
        );
        for n in nodes {
            let r = self.role(n);
            for candidate in ["primary", "standby", "fenced", "down"] {
                role.get_or_create(&vec![
                    ("node".into(), n.clone()),
                    ("role".into(), candidate.into()),
                ])
                .set(i64::from(candidate == r));
            }
            if let Some(l) = self.lag.get(n).filter(|_| r == "standby") {
                lag.get_or_create(&vec![("node".into(), n.clone())]).set(*l);
            }
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let gauge_f = |reg: &mut Registry, name: &str, help: &str, v: Option<f64>| {
            if let Some(v) = v {
                let g = Gauge::<f64, AtomicU64>::default();
                g.set(v);
                reg.register(name, help, g);
            }
        };
        let age = |ms: Option<i64>| ms.map(|t| (now - t).max(0) as f64 / 1000.0);
        gauge_f(
            &mut reg,
            "last_backup_age_seconds",
            "Seconds since the last successful backup",
            age(self.facts.last_backup_ms),
        );
        gauge_f(
            &mut reg,
            "last_restore_drill_age_seconds",
            "Seconds since the last successful restore drill (restore-check)",
            age(self.facts.last_drill_ms),
        );
        for (name, help, n) in [
            (
                "failovers",
                "Failovers that promoted a node",
                self.facts.failovers,
            ),
            ("switchovers", "Switchovers done", self.facts.switchovers),
            ("failbacks", "Failbacks done", self.facts.failbacks),
        ] {
            let c = Counter::<u64>::default();
            c.inc_by(n);
            reg.register(name, help, c);
        }
        let g = Gauge::<i64>::default();
        g.set(i64::from(self.holds_lease));
        reg.register(
            "watcher_holds_lease",
            "1 when this watcher holds the lease (acts for the cluster), else 0",
            g,
        );
        let secs = |ms: Option<f64>| ms.map(|m| m / 1000.0);
        gauge_f(
            &mut reg,
            "last_failover_duration_seconds",
            "The duration of the last failover run",
            secs(self.facts.last_failover_ms),
        );
        gauge_f(
            &mut reg,
            "last_failover_time_to_writes_seconds",
            "The last failover's time until the new primary accepted writes",
            secs(self.facts.last_failover_to_writes_ms),
        );
        gauge_f(
            &mut reg,
            "last_failover_data_lost_bytes",
            "Bytes of WAL the last failover lost",
            self.facts.last_failover_lost_bytes,
        );
        let mut out = String::new();
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &reg);
        out
    }
}

/// The servers, one per node with a `health` address, and the snapshot they answer from.
pub struct Health {
    pub snapshot: Arc<RwLock<Snapshot>>,
    servers: Vec<Arc<tiny_http::Server>>,
    stop: Arc<AtomicBool>,
}

impl Health {
    /// Binds every node's health address (none: nothing runs). An address in use is an error
    /// naming the node and the address: the watcher does not start.
    pub fn start(config: &Config) -> Result<Health, Failure> {
        let snapshot = Arc::new(RwLock::new(Snapshot::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut bound = vec![];
        for (name, n) in config.nodes.iter().filter(|(_, n)| !n.health.is_empty()) {
            let server = tiny_http::Server::http(n.health.as_str()).map_err(|e| {
                Failure::usage(format!(
                    "node {name}: cannot serve its health endpoint on {} ([nodes.{name}] health): {e}",
                    n.health
                ))
            })?;
            bound.push((name.clone(), Arc::new(server)));
        }
        let nodes: Vec<String> = config.nodes.keys().cloned().collect();
        let servers = bound.iter().map(|(_, s)| s.clone()).collect();
        for (name, server) in bound {
            let (snap, nodes) = (snapshot.clone(), nodes.clone());
            std::thread::spawn(move || {
                for req in server.incoming_requests() {
                    let (status, ctype, body) = answer(&snap, &name, &nodes, req.url());
                    let resp = tiny_http::Response::from_string(body)
                        .with_status_code(status)
                        .with_header(
                            tiny_http::Header::from_bytes("Content-Type", ctype)
                                .expect("a valid header"),
                        );
                    let _ = req.respond(resp);
                }
            });
        }
        let health = Health {
            snapshot,
            servers,
            stop,
        };
        if !health.servers.is_empty() {
            health.refresh_in_background(config);
        }
        Ok(health)
    }

    /// The refresher: `/cluster`'s JSON and the journal's figures, every `REFRESH`.
    fn refresh_in_background(&self, config: &Config) {
        let (snap, stop) = (self.snapshot.clone(), self.stop.clone());
        let host = Host::new(config.clone());
        let first = Mutex::new(true);
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let st = crate::commands::status::collect(&host);
                let json = serde_json::to_string_pretty(&st).unwrap_or_default();
                // The whole journal once, then its newest entries: each is counted once.
                let n = if std::mem::take(&mut *first.lock().unwrap()) {
                    1_000_000
                } else {
                    1000
                };
                let journal = host.journal.last(JOURNAL, n);
                let backups = host.journal.last(BACKUPS, 200);
                {
                    let mut s = snap.write().unwrap();
                    s.cluster_json = json;
                    if let Ok(j) = journal {
                        s.facts.count(&j);
                    }
                    if let Ok(b) = backups {
                        s.facts.backups(&b);
                    }
                }
                std::thread::sleep(REFRESH);
            }
        });
    }

    /// Called by the watcher after each probe: what it saw, the lags, whether it acts.
    pub fn publish(&self, seen: &BTreeMap<String, Seen>, lag: &HashMap<String, i64>, acting: bool) {
        if self.servers.is_empty() {
            return;
        }
        let mut s = self.snapshot.write().unwrap();
        s.seen = seen.clone();
        s.lag = lag.clone();
        s.holds_lease = acting;
    }
}

impl Health {
    /// Runs `work` (a failover) while a thread probes every node every 100 ms with `prober` and
    /// publishes what it sees. The watcher's loop publishes once per cycle, and a failover runs
    /// inside one cycle: without this, `/primary` would name the new primary only once the whole
    /// run had ended (the applications' alias moved, the loss measured, the hook run), a second
    /// or more after it accepts writes, and HAProxy would route to it that much later.
    pub fn publishing_while<T>(
        &self,
        prober: &mut super::probe::Prober,
        timeout: std::time::Duration,
        lag: &HashMap<String, i64>,
        acting: bool,
        work: impl FnOnce() -> T,
    ) -> T {
        if self.servers.is_empty() {
            return work();
        }
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    let seen = prober.probe(timeout);
                    if done.load(std::sync::atomic::Ordering::SeqCst) {
                        return;
                    }
                    self.publish(&seen, lag, acting);
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            });
            let r = work();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            r
        })
    }
}

impl Drop for Health {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for s in &self.servers {
            s.unblock();
        }
    }
}

/// The answer to one request for `node`: status, content type, body.
pub fn answer(
    snap: &RwLock<Snapshot>,
    node: &str,
    nodes: &[String],
    url: &str,
) -> (u16, &'static str, String) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let s = snap.read().unwrap();
    let text = "text/plain; charset=utf-8";
    let json = "application/json";
    let verdict = |ok: bool, what: &str| {
        let role = s.role(node);
        if ok {
            (200, text, format!("{node} is {what}\n"))
        } else {
            (503, text, format!("{node} is not {what} (it is {role})\n"))
        }
    };
    match path.trim_end_matches('/') {
        "/primary" | "/master" | "/read-write" => {
            verdict(s.primary() == Some(node), "the writable primary")
        }
        "/replica" | "/read-only" => {
            let lag = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("lag="))
                .map(|v| crate::engine::runbook::parse_size(v).ok_or(v));
            match lag {
                Some(Err(v)) => (
                    400,
                    text,
                    format!("lag={v}: not a size (16MB, 1048576, 512kB)\n"),
                ),
                Some(Ok(max)) => verdict(
                    s.is_replica(node, Some(max)),
                    "a streaming standby within the lag",
                ),
                None => verdict(s.is_replica(node, None), "a streaming standby"),
            }
        }
        "/health" | "/cluster" | "" => {
            if s.cluster_json.is_empty() {
                (503, json, "{\"error\": \"not read yet\"}\n".into())
            } else {
                (200, json, s.cluster_json.clone())
            }
        }
        "/metrics" => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            s.metrics(nodes),
        ),
        _ => (
            404,
            text,
            "not found: GET /primary, /replica[?lag=16MB], /health, /cluster, /metrics\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::redis::Entry;

    fn seen(rec: Option<bool>, fenced: bool, receiver: Option<&str>) -> Seen {
        Seen {
            container: "running".into(),
            answers: rec.is_some(),
            in_recovery: rec,
            fenced,
            receiver: receiver.map(String::from),
            ..Default::default()
        }
    }

    fn snap(a: Seen, b: Seen, lag_b: i64) -> RwLock<Snapshot> {
        let mut s = Snapshot::default();
        s.seen.insert("a".into(), a);
        s.seen.insert("b".into(), b);
        s.lag.insert("b".into(), lag_b);
        RwLock::new(s)
    }

    fn nodes() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    #[test]
    fn primary_and_replica_follow_the_probes() {
        let s = snap(
            seen(Some(false), false, None),
            seen(Some(true), false, Some("streaming")),
            100,
        );
        let code = |n: &str, url: &str| answer(&s, n, &nodes(), url).0;
        assert_eq!(code("a", "/primary"), 200);
        assert_eq!(code("b", "/primary"), 503);
        assert_eq!(code("a", "/replica"), 503);
        assert_eq!(code("b", "/replica"), 200);
        assert_eq!(code("b", "/replica?lag=1MB"), 200);
        assert_eq!(code("b", "/replica?lag=50"), 503);
        assert_eq!(code("b", "/replica?lag=lots"), 400);
        assert_eq!(code("a", "/nope"), 404);

        // Fenced, down, or two writable nodes: no primary at all.
        let s = snap(
            seen(Some(false), true, None),
            seen(Some(false), false, None),
            0,
        );
        assert_eq!(answer(&s, "a", &nodes(), "/primary").0, 503);
        assert_eq!(answer(&s, "b", &nodes(), "/primary").0, 200);
        let s = snap(
            seen(Some(false), false, None),
            seen(Some(false), false, None),
            0,
        );
        assert_eq!(answer(&s, "a", &nodes(), "/primary").0, 503);
        assert_eq!(answer(&s, "b", &nodes(), "/primary").0, 503);
        let s = snap(
            seen(None, false, None),
            seen(Some(true), false, Some("waiting")),
            0,
        );
        assert_eq!(answer(&s, "a", &nodes(), "/primary").0, 503);
        assert_eq!(answer(&s, "b", &nodes(), "/replica").0, 503);
    }

    fn end(id: &str, runbook: &str, metrics: &str) -> Entry {
        let mut fields = BTreeMap::new();
        for (k, v) in [
            ("event", "end"),
            ("outcome", "ok"),
            ("runbook", runbook),
            ("dry_run", "false"),
            ("duration_ms", "1500"),
            ("metrics", metrics),
        ] {
            fields.insert(k.to_string(), v.to_string());
        }
        Entry {
            id: id.into(),
            fields,
        }
    }

    #[test]
    fn the_journal_is_counted_once_per_entry() {
        let mut f = JournalFacts::default();
        let promoted = r#"{"promoted":"b","time_to_writes_ms":"400","data_lost_bytes":"0"}"#;
        // Newest first, as `Journal::last` gives them.
        let batch = vec![
            end(
                "3-0",
                "failover",
                r#"{"promoted":"a","time_to_writes_ms":"350","data_lost_bytes":"128"}"#,
            ),
            end("2-0", "failover", "{}"),
            end("1-0", "failover", promoted),
        ];
        f.count(&batch);
        assert_eq!(
            f.failovers, 2,
            "the one that promoted no one is not counted"
        );
        assert_eq!(f.last_failover_to_writes_ms, Some(350.0));
        assert_eq!(f.last_failover_lost_bytes, Some(128.0));
        // Read again with a newer entry: only the new one counts.
        let mut again = vec![end("4-0", "switchover", r#"{"from":"a","to":"b"}"#)];
        again.extend(batch);
        f.count(&again);
        assert_eq!((f.failovers, f.switchovers, f.failbacks), (2, 1, 0));
    }

    #[test]
    fn metrics_name_every_figure() {
        let s = snap(
            seen(Some(false), false, None),
            seen(Some(true), false, Some("streaming")),
            4096,
        );
        {
            let mut w = s.write().unwrap();
            w.holds_lease = true;
            w.facts.failovers = 3;
            w.facts.last_failover_lost_bytes = Some(0.0);
            w.facts.last_failover_ms = Some(1500.0);
            w.facts.last_backup_ms = Some(0);
            w.facts.last_drill_ms = Some(0);
        }
        let (code, _, text) = answer(&s, "a", &nodes(), "/metrics");
        assert_eq!(code, 200);
        for line in [
            "pgrunbook_node_role{node=\"a\",role=\"primary\"} 1",
            "pgrunbook_node_role{node=\"b\",role=\"standby\"} 1",
            "pgrunbook_node_role{node=\"b\",role=\"primary\"} 0",
            "pgrunbook_node_lag_bytes{node=\"b\"} 4096",
            "pgrunbook_failovers_total 3",
            "pgrunbook_switchovers_total 0",
            "pgrunbook_failbacks_total 0",
            "pgrunbook_watcher_holds_lease 1",
            "pgrunbook_last_failover_duration_seconds 1.5",
            "pgrunbook_last_failover_data_lost_bytes 0.0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
        assert!(
            text.contains("pgrunbook_last_backup_age_seconds "),
            "{text}"
        );
        assert!(
            text.contains("pgrunbook_last_restore_drill_age_seconds "),
            "{text}"
        );
    }
}
