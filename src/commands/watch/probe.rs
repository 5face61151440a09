//! What the watcher sees of each node: the container's state from the Docker engine, and, when
//! it runs, one SQL probe (role, LSNs, WAL receiver, fence marker) with a time limit.
//!
//! Each node has a worker thread with its own PostgreSQL client, so that a node whose server
//! hangs (a frozen process, a network that drops packets) holds up nothing but its own worker: the
//! watcher waits `probe_timeout_ms`, counts the node as not answering, and does not send that
//! worker another probe until the hung one returns.

use crate::cancel::Cancel;
use crate::clients::docker::Docker;
use crate::clients::postgres::Postgres;
use crate::config::Config;
use std::collections::BTreeMap;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// One node, as one probe saw it.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The container's state (`running`, `exited`, `paused`, `missing`...), `unknown` when the
    /// engine did not answer.
    pub container: String,
    pub answers: bool,
    pub in_recovery: Option<bool>,
    /// The primary's current LSN.
    pub lsn: Option<String>,
    pub replay_lsn: Option<String>,
    /// The WAL receiver's status on a standby (`streaming`, `waiting`...).
    pub receiver: Option<String>,
    /// failover's fence marker is in the data directory.
    pub fenced: bool,
    pub error: Option<String>,
}

const PROBE_SQL: &str = "SELECT pg_is_in_recovery() AS rec, \
    CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS lsn, \
    pg_last_wal_replay_lsn()::text AS replay, \
    (SELECT status FROM pg_stat_wal_receiver LIMIT 1) AS receiver, \
    (pg_stat_file('pgrunbook.fenced', true)).size IS NOT NULL AS fenced";

struct Worker {
    tx: Sender<()>,
    rx: Receiver<Seen>,
    busy: bool,
}

pub struct Prober {
    config: Config,
    docker: Docker,
    workers: BTreeMap<String, Worker>,
}

fn sql_probe(pg: &Postgres, node: &str, cancel: &Cancel) -> Seen {
    let mut seen = Seen::default();
    // A cached connection to a server that restarted fails once: try again on a new one.
    let mut r = pg.query(node, PROBE_SQL, &[], false, cancel);
    if r.is_err() {
        pg.forget(node);
        r = pg.query(node, PROBE_SQL, &[], false, cancel);
    }
    match r {
        Ok(rows) => {
            if rows.rows.is_empty() {
                seen.error = Some("the probe returned no row".into());
                return seen;
            }
            let text = |k: &str| rows.get(0, k).and_then(|v| v.as_str()).map(str::to_string);
            let flag = |k: &str| rows.get(0, k).and_then(|v| v.as_bool());
            seen.answers = true;
            seen.in_recovery = flag("rec");
            seen.lsn = text("lsn");
            seen.replay_lsn = text("replay");
            seen.receiver = text("receiver");
            seen.fenced = flag("fenced").unwrap_or(false);
        }
        Err(e) => seen.error = Some(format!("{e:#}")),
    }
    seen
}

impl Prober {
    /// Starts one worker per node. `timeout_ms` also bounds each connection attempt.
    pub fn new(config: &Config, timeout_ms: u64) -> Prober {
        let mut config = config.clone();
        config.cluster.connect_timeout_ms = config.cluster.connect_timeout_ms.min(timeout_ms);
        let mut workers = BTreeMap::new();
        for node in config.nodes.keys() {
            let (tx, job) = channel::<()>();
            let (done, rx) = channel::<Seen>();
            workers.insert(
                node.clone(),
                Worker {
                    tx,
                    rx,
                    busy: false,
                },
            );
            let (node, cfg) = (node.clone(), config.clone());
            std::thread::spawn(move || {
                let pg = Postgres::new(cfg);
                let cancel = Cancel::new();
                while job.recv().is_ok() {
                    if done.send(sql_probe(&pg, &node, &cancel)).is_err() {
                        return;
                    }
                }
            });
        }
        Prober {
            docker: Docker::new(),
            config,
            workers,
        }
    }

    /// Probes every node; SQL only where the container runs, each within `timeout`.
    pub fn probe(&mut self, timeout: Duration) -> BTreeMap<String, Seen> {
        let mut out = BTreeMap::new();
        for (node, n) in &self.config.nodes {
            let container = match self.docker.state(&n.container) {
                Ok(s) => s.as_str().to_string(),
                Err(e) => {
                    out.insert(
                        node.clone(),
                        Seen {
                            container: "unknown".into(),
                            error: Some(format!("{e:#}")),
                            ..Default::default()
                        },
                    );
                    continue;
                }
            };
            out.insert(
                node.clone(),
                Seen {
                    container,
                    ..Default::default()
                },
            );
        }
        let mut asked = vec![];
        for (node, w) in self.workers.iter_mut() {
            if w.busy && w.rx.try_recv().is_ok() {
                w.busy = false; // a late answer to an earlier probe: stale, dropped
            }
            let seen = out.get_mut(node).expect("every node probed");
            if seen.container != "running" {
                continue;
            }
            if w.busy {
                seen.error = Some("an earlier probe has not returned yet".into());
                continue;
            }
            if w.tx.send(()).is_ok() {
                w.busy = true;
                asked.push(node.clone());
            }
        }
        let deadline = Instant::now() + timeout;
        for node in asked {
            let w = self.workers.get_mut(&node).expect("worker");
            let left = deadline.saturating_duration_since(Instant::now());
            let seen = out.get_mut(&node).expect("every node probed");
            match w.rx.recv_timeout(left) {
                Ok(s) => {
                    w.busy = false;
                    let container = std::mem::take(&mut seen.container);
                    *seen = Seen { container, ..s };
                }
                Err(RecvTimeoutError::Timeout) => {
                    seen.error = Some(format!("no answer within {} ms", timeout.as_millis()))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    seen.error = Some("the probe's worker stopped".into())
                }
            }
        }
        out
    }
}
