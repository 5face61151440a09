//! `pgrunbook watch`: a long-running process, in the foreground, that runs runbooks on their
//! `[[schedule]]` and fails over unattended when the policy (`stdlib/watch.rhai`) says so.
//!
//! Threads: the main loop (probe, decide, act), the lease (`lease.rs`: local lock, lease in
//! Redis, heartbeat), the Docker event stream (wakes the main loop at once on a node's `die`,
//! `kill`, `oom`, `pause`...), one probe worker per node (`probe.rs`), and one thread per
//! scheduled run under way. Failover and failback run on the main loop: nothing else is decided
//! while they run.
//!
//! Every run goes through the same engine and journal as a typed `pgrunbook run`, its start and
//! end entries marked: `scheduled=true` (with `schedule`, `planned`, `late`, `missed`) or
//! `unattended=true` (with `trigger`, the policy's reason), and `watcher=<id>`. The watcher's
//! own session is a journal run of runbook `watch` whose steps are what it saw and did.
//!
//! Stopping (Ctrl-C, SIGTERM): a scheduled run under way is interrupted at its next safe point
//! (journaled `interrupted`; runbooks are safe to run again); a failover under way is finished
//! first. A second signal abandons the failover at its next safe point and says how to finish it
//! (`pgrunbook run failover` repairs, as after a crash); a third exits at once.

pub mod health;
pub mod lease;
pub mod pending;
pub mod policy;
pub mod probe;
pub mod schedule;
pub mod status;

use crate::cancel::Cancel;
use crate::clients::docker::{ContainerEvent, Docker};
use crate::clients::redis::{Journal, JOURNAL};
use crate::commands::status::lsn_bytes;
use crate::config::{Config, Schedule};
use crate::engine::{self, runbook::Runbook};
use crate::error::{Class, Failure};
use crate::runtime::host::{now_rfc3339, Host};
use crate::{errln, outln};
use chrono::{DateTime, Local};
use lease::{Claim, LocalLock, Standing};
use pending::Pending;
use policy::{Decision, Policy};
use probe::{Prober, Seen};
use rhai::{Dynamic, Map};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Who this watcher is: the lease's value and the heartbeat's identity.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Me {
    /// Also the run id of the watcher's own journal run.
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub since: String,
}

impl Me {
    fn new() -> Me {
        let ms = chrono::Utc::now().timestamp_millis();
        Me {
            id: format!("{ms}-{:05}", std::process::id() % 100000),
            host: hostname(),
            pid: std::process::id(),
            since: now_rfc3339(),
        }
    }

    fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// `host pid N (since T)`, for messages.
    pub fn shown(&self) -> String {
        format!("{} pid {} (since {})", self.host, self.pid, self.since)
    }
}

pub use crate::runtime::local_lock::hostname;

/// A watcher's description as the lease or heartbeat holds it, shown to people.
pub fn shown_holder(json: &str) -> String {
    serde_json::from_str::<Me>(json)
        .map(|m| m.shown())
        .unwrap_or_else(|_| json.to_string())
}

enum Msg {
    Event(ContainerEvent),
    Wake,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Scheduled,
    /// Unattended runs on the main loop, finished first when a stop is asked.
    Failover,
    Failback,
}

impl Kind {
    /// Whether a stop waits for it (an unattended failover or failback) rather than
    /// interrupting it at once.
    fn finished_first(self) -> bool {
        self != Kind::Scheduled
    }

    /// The command that finishes it when it was abandoned.
    fn finish_with(self) -> &'static str {
        match self {
            Kind::Failback => "`pgrunbook run failback`",
            _ => "`pgrunbook run failover`",
        }
    }
}

#[derive(Clone)]
struct Active {
    what: String,
    kind: Kind,
    host: Arc<Host>,
}

/// What the threads share.
struct Shared {
    /// How many stop signals arrived.
    stops: AtomicUsize,
    standing: Mutex<Standing>,
    running: Mutex<Vec<Active>>,
    /// The main loop has ended: the lease thread releases the lease and ends.
    done: AtomicBool,
}

fn say(msg: &str) {
    outln!("{} watch: {msg}", Local::now().format("%H:%M:%S%.3f"));
}

fn infra(e: anyhow::Error) -> Failure {
    Failure::new(
        crate::error::class_of(&e, Class::Infrastructure),
        format!("{e:#}"),
    )
}

/// One `[[schedule]]` as the watcher keeps it.
struct Sched {
    cfg: Schedule,
    key: String,
    cron: croner::Cron,
    runbook: Runbook,
    params: BTreeMap<String, Dynamic>,
    /// The planned time of the last run (or the watcher's start).
    cursor: DateTime<Local>,
    running: Arc<AtomicBool>,
}

/// What the watcher remembers between probes.
#[derive(Default)]
struct Track {
    primary: Option<String>,
    unanswered_since: HashMap<String, Instant>,
    last_streamed: HashMap<String, Instant>,
    lag: HashMap<String, i64>,
    /// The last warning given, digits removed (a warning is journaled when it changes).
    last_warning: String,
    retry_after: Option<Instant>,
    /// A failover an earlier watcher decided and did not finish, with its run's id and the
    /// last step it finished (`pending.rs`).
    interrupted: Option<(Pending, Option<(String, String)>)>,
    /// Redis did not answer when the record of a finished failover was removed: tried again when
    /// the lease's standing changes (Redis answers again).
    clear_redis_pending: bool,
}

impl Track {
    fn update(&mut self, seen: &BTreeMap<String, Seen>) {
        let now = Instant::now();
        for (n, s) in seen {
            if s.answers {
                self.unanswered_since.remove(n);
            } else {
                self.unanswered_since.entry(n.clone()).or_insert(now);
            }
            if s.answers
                && s.in_recovery == Some(true)
                && s.receiver.as_deref() == Some("streaming")
            {
                self.last_streamed.insert(n.clone(), now);
            }
        }
        let primaries: Vec<&String> = seen
            .iter()
            .filter(|(_, s)| s.answers && s.in_recovery == Some(false))
            .map(|(n, _)| n)
            .collect();
        if primaries.len() == 1 {
            self.primary = Some(primaries[0].clone());
        }
        let Some(p) = &self.primary else { return };
        let Some(plsn) = seen
            .get(p)
            .and_then(|s| s.lsn.as_deref())
            .and_then(lsn_bytes)
        else {
            return;
        };
        for (n, s) in seen {
            if n != p && s.answers {
                if let Some(r) = s.replay_lsn.as_deref().and_then(lsn_bytes) {
                    self.lag.insert(n.clone(), plsn.saturating_sub(r) as i64);
                }
            }
        }
    }

    /// The observations the policy decides on (see stdlib/watch.rhai).
    fn obs(
        &self,
        config: &Config,
        seen: &BTreeMap<String, Seen>,
        events: &[ContainerEvent],
    ) -> Map {
        let now = Instant::now();
        let ms = |d: Duration| Dynamic::from_int(d.as_millis() as i64);
        let opt = |v: Option<Dynamic>| v.unwrap_or(Dynamic::UNIT);
        let mut nodes = Map::new();
        for (n, s) in seen {
            let mut m = Map::new();
            m.insert("container".into(), s.container.clone().into());
            m.insert("answers".into(), s.answers.into());
            m.insert(
                "in_recovery".into(),
                opt(s.in_recovery.map(Dynamic::from_bool)),
            );
            m.insert("fenced".into(), s.fenced.into());
            m.insert(
                "unanswered_ms".into(),
                self.unanswered_since
                    .get(n)
                    .map(|t| ms(now - *t))
                    .unwrap_or(Dynamic::from_int(0)),
            );
            m.insert(
                "streamed_ms_ago".into(),
                opt(self.last_streamed.get(n).map(|t| ms(now - *t))),
            );
            m.insert(
                "lag_bytes".into(),
                opt(self.lag.get(n).map(|l| Dynamic::from_int(*l))),
            );
            m.insert("error".into(), opt(s.error.clone().map(Dynamic::from)));
            nodes.insert(n.as_str().into(), m.into());
        }
        let mut o = Map::new();
        let primary = self.primary.clone();
        let standby = primary
            .as_ref()
            .and_then(|p| config.nodes.keys().find(|n| *n != p).cloned());
        o.insert("primary".into(), opt(primary.map(Dynamic::from)));
        o.insert("standby".into(), opt(standby.map(Dynamic::from)));
        o.insert("nodes".into(), nodes.into());
        let evs: rhai::Array = events
            .iter()
            .map(|e| {
                let mut m = Map::new();
                let node = config
                    .node_by_container(&e.container)
                    .map(|(n, _)| n.clone())
                    .unwrap_or_else(|| e.container.clone());
                m.insert("node".into(), node.into());
                m.insert("action".into(), e.action.clone().into());
                m.insert("detail".into(), e.detail.clone().into());
                m.into()
            })
            .collect();
        o.insert("events".into(), evs.into());
        o.insert(
            "interrupted".into(),
            self.interrupted
                .as_ref()
                .map(|(p, step)| Dynamic::from(p.obs(step.as_ref())))
                .unwrap_or(Dynamic::UNIT),
        );
        o
    }
}

/// The watcher's journal run: one entry per thing it saw or did, as steps of runbook `watch`.
struct Log {
    host: Arc<Host>,
    me: Me,
}

impl Log {
    fn entry(&self, event: &str, extra: &[(&str, String)]) {
        let mut f = BTreeMap::new();
        f.insert("event".into(), event.to_string());
        f.insert("run_id".into(), self.me.id.clone());
        f.insert("runbook".into(), "watch".into());
        f.insert("ts".into(), now_rfc3339());
        f.insert("dry_run".into(), "false".into());
        for (k, v) in extra {
            f.insert(k.to_string(), v.clone());
        }
        self.host.journal.append(JOURNAL, f);
    }

    /// Journals Docker events already printed (outcome `event`).
    fn journal_events(&self, events: &mut Vec<String>) {
        for e in events.drain(..) {
            self.entry("step", &[("step", e), ("outcome", "event".into())]);
        }
    }

    /// A line printed and journaled: `kind` is its outcome column (`warning`, `decision`...).
    fn note(&self, kind: &str, message: &str) {
        say(message);
        self.entry(
            "step",
            &[("step", message.to_string()), ("outcome", kind.to_string())],
        );
    }
}

/// Strips digits, so that "last streamed 1203 ms ago" and "1405 ms ago" are one warning.
fn warning_key(s: &str) -> String {
    s.chars().filter(|c| !c.is_ascii_digit()).collect()
}

/// Runs the watcher until Ctrl-C or SIGTERM.
pub fn run(config: Config) -> Result<(), Failure> {
    let host = Arc::new(Host::new(config.clone()));
    host.docker.ping().map_err(infra)?;
    let policy = Policy::load(&host)?;
    let failover = Runbook::find("failover")?;
    let failback = Runbook::find("failback")?;
    // Each node's health endpoint (`[nodes.NAME] health`): a port in use stops the watcher here.
    let health = health::Health::start(&config)?;
    let start = Local::now();
    let mut scheds = vec![];
    for s in &config.schedule {
        let runbook = Runbook::find(&s.runbook)?;
        let params = engine::bind_params(&runbook, &s.sets())?;
        scheds.push(Sched {
            key: s.key(),
            cron: schedule::parse_cron(&s.cron).map_err(|e| Failure::usage(format!("{e:#}")))?,
            cfg: s.clone(),
            runbook,
            params,
            cursor: start,
            running: Arc::new(AtomicBool::new(false)),
        });
    }
    host.learn_cluster();
    host.journal.flush_spool();
    let me = Me::new();
    let log = Log {
        host: host.clone(),
        me: me.clone(),
    };
    let shared = Arc::new(Shared {
        stops: AtomicUsize::new(0),
        standing: Mutex::new(Standing::Waiting("starting".into())),
        running: Mutex::new(vec![]),
        done: AtomicBool::new(false),
    });
    let (tx, rx) = channel::<Msg>();
    install_signals(&shared, &tx)?;

    log.entry(
        "start",
        &[
            ("host", me.host.clone()),
            ("pid", me.pid.to_string()),
            ("policy", policy.name.clone()),
            (
                "params",
                serde_json::to_string(&BTreeMap::from([(
                    "schedules".to_string(),
                    scheds.len().to_string(),
                )]))
                .unwrap_or_default(),
            ),
        ],
    );
    say(&format!(
        "watcher {} on {}: nodes {}; policy {} (probe every {} ms, grace {} ms, max_lag {} bytes, failover {}, auto_rejoin {}); {} schedule(s)",
        me.id,
        me.shown(),
        config.nodes.keys().cloned().collect::<Vec<_>>().join(", "),
        policy.name,
        policy.int("probe_interval_ms"),
        policy.int("grace_ms"),
        policy.int("max_lag"),
        policy.flag("failover"),
        policy.flag("auto_rejoin"),
        scheds.len()
    ));
    for s in &scheds {
        say(&format!(
            "schedule {:?}: {} (cron {:?}); next at {}",
            s.key,
            s.cfg.runbook,
            s.cfg.cron,
            schedule::next_after(&s.cron, &start)
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "never".into())
        ));
    }

    let lease_thread = {
        let (config, shared, tx, me) = (config.clone(), shared.clone(), tx.clone(), me.clone());
        let cluster = host.journal.cluster();
        std::thread::spawn(move || lease_loop(config, me, shared, tx, cluster))
    };
    let events_cancel = Cancel::new();
    {
        let containers: Vec<String> = config.nodes.values().map(|n| n.container.clone()).collect();
        let (cancel, tx) = (events_cancel.clone(), tx.clone());
        std::thread::spawn(move || {
            let docker = Docker::new();
            let mut warned = false;
            while !cancel.is_cancelled() {
                // (The engine's container filter also matches names that contain a node's, such as
                // the one-off `<container>-pgrunbook` helpers: only the nodes' own are kept.)
                let r = docker.follow_events(&containers, &cancel, &mut |e| {
                    if containers.contains(&e.container) {
                        let _ = tx.send(Msg::Event(e));
                    }
                });
                if let Err(e) = r {
                    if !warned {
                        errln!("warning: {e:#}; probing only until it is back");
                        warned = true;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        });
    }

    let timeout = Duration::from_millis(policy.int("probe_timeout_ms").clamp(50, 60_000) as u64);
    let interval = Duration::from_millis(policy.int("probe_interval_ms").clamp(20, 600_000) as u64);
    let mut prober = Prober::new(&config, timeout.as_millis() as u64);
    let mut track = Track::default();
    let mut standing_shown: Option<Standing> = None;
    // An unattended run abandoned by a second stop signal: what it was.
    let mut abandoned: Option<Kind> = None;
    let mut policy_failed = String::new();
    loop {
        let mut events = vec![];
        match rx.recv_timeout(interval) {
            Ok(Msg::Event(e)) => events.push(e),
            Ok(Msg::Wake) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        while let Ok(m) = rx.try_recv() {
            if let Msg::Event(e) = m {
                events.push(e);
            }
        }
        if shared.stops.load(Ordering::SeqCst) > 0 {
            break;
        }
        // Printed now, journaled after the decision: a Redis round trip must not delay a
        // failover that the event calls for.
        let mut seen_events = vec![];
        for e in &events {
            let text = format!(
                "docker event: {} {}{}",
                e.container,
                e.action,
                if e.detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", e.detail)
                }
            );
            say(&text);
            seen_events.push(text);
        }
        let standing = shared.standing.lock().unwrap().clone();
        if standing_shown.as_ref() != Some(&standing) {
            let became_acting =
                standing.acting() && !standing_shown.as_ref().is_some_and(|s| s.acting());
            let kind = if standing.acting() {
                "acting"
            } else {
                "waiting"
            };
            log.note(kind, &format!("{kind}: {}", standing.text()));
            // Redis answers again (or another watcher acts): the record of a finished failover
            // that Redis kept is removed now.
            if track.clear_redis_pending && Pending::clear_redis(&host) {
                track.clear_redis_pending = false;
            }
            if became_acting {
                load_cursors(&host, &mut scheds, &log);
                if let Some(p) = Pending::load(&host).filter(|p| p.watcher != me.id) {
                    let step = p.last_step(&host);
                    log.note(
                        "interrupted",
                        &format!(
                            "a failover decided by watcher {} on {} pid {} at {} ({}) did not finish; its run {}: the policy decides whether to finish it",
                            p.watcher,
                            p.host,
                            p.pid,
                            p.since,
                            p.trigger,
                            match &step {
                                Some((run, s)) => format!("{run} last finished step {s:?}"),
                                None => "was not found in the journal".into(),
                            }
                        ),
                    );
                    track.interrupted = Some((p, step));
                }
            }
            standing_shown = Some(standing.clone());
        }
        let seen = prober.probe(timeout);
        track.update(&seen);
        health.publish(&seen, &track.lag, standing.acting());
        if !standing.acting() {
            continue;
        }

        for s in scheds.iter_mut() {
            tick_schedule(s, &config, &me, &shared, &host, &log);
        }
        let obs = track.obs(&config, &seen, &events);
        let decision = match policy.decide(obs) {
            Ok(d) => {
                policy_failed.clear();
                d
            }
            Err(f) => {
                let text = f.one_line();
                if text != policy_failed {
                    log.note("warning", &format!("the policy failed: {text}"));
                    policy_failed = text;
                }
                log.journal_events(&mut seen_events);
                continue;
            }
        };
        let busy = track.retry_after.is_some_and(|t| Instant::now() < t);
        // A planned operation (switchover, failback, a failover typed by hand) holds watchers
        // off: what it does on purpose is not a failure (runtime/hold.rs).
        // Its warnings too: the primary it shut down on purpose is not news.
        if matches!(
            decision.action.as_str(),
            "failover" | "stop_then_failover" | "rejoin" | "warn"
        ) {
            if let Some(who) = crate::runtime::hold::current(&config, host.coord.as_ref()) {
                let key = format!("hold {who}");
                if key != track.last_warning {
                    log.note(
                        "held",
                        &format!(
                            "holding off ({}: {}): a planned operation is under way: {who}",
                            decision.action, decision.reason
                        ),
                    );
                    track.last_warning = key;
                }
                log.journal_events(&mut seen_events);
                continue;
            }
        }
        match decision.action.as_str() {
            "none" if !track.last_warning.is_empty() => {
                log.note("resolved", "no warning any more: all is well");
                track.last_warning.clear();
            }
            "warn" => {
                let key = warning_key(&decision.reason);
                if key != track.last_warning {
                    log.note("warning", &format!("warning: {}", decision.reason));
                    track.last_warning = key;
                }
            }
            "failover" | "stop_then_failover" if !busy => {
                let stop_first = decision.action == "stop_then_failover";
                let ok = fail_over(
                    &decision, stop_first, &mut track, &config, &host, &me, &shared, &log,
                    &failover, &policy,
                );
                track.last_warning.clear();
                if ok.is_err() && shared.stops.load(Ordering::SeqCst) > 1 {
                    abandoned = Some(Kind::Failover);
                }
                track.retry_after = Some(
                    Instant::now()
                        + if ok.is_ok() {
                            Duration::from_millis(500)
                        } else {
                            Duration::from_millis(policy.int("retry_after_ms").max(0) as u64)
                        },
                );
            }
            "forget" if track.interrupted.is_some() => {
                log.note(
                    "resolved",
                    &format!("not finishing it: {}", decision.reason),
                );
                track.interrupted = None;
                track.clear_redis_pending = !Pending::clear(&config, &host);
            }
            "rejoin" if !busy => {
                log.note("decision", &format!("rejoin: {}", decision.reason));
                // With the runbook's defaults, as `pgrunbook run failback` gives them.
                let r = engine::bind_params(&failback, &[]).and_then(|params| {
                    run_unattended(
                        &failback,
                        Kind::Failback,
                        params,
                        &decision,
                        &config,
                        &me,
                        &shared,
                    )
                });
                match &r {
                    Ok(()) => log.note("failback", "failback done"),
                    Err(f) if f.class == Class::Interrupted => log.note(
                        "interrupted",
                        &format!(
                            "failback abandoned ({}): run `pgrunbook run failback` to finish it",
                            f.one_line()
                        ),
                    ),
                    Err(f) => log.note("failback", &format!("failback failed: {}", f.one_line())),
                }
                if r.is_err() && shared.stops.load(Ordering::SeqCst) > 1 {
                    abandoned = Some(Kind::Failback);
                }
                track.retry_after = Some(
                    Instant::now()
                        + Duration::from_millis(policy.int("retry_after_ms").max(0) as u64),
                );
            }
            _ => {}
        }
        log.journal_events(&mut seen_events);
    }

    // Stopping: scheduled runs were interrupted by the signal handler; wait for them to end.
    let waited = Instant::now();
    loop {
        let left: Vec<String> = shared
            .running
            .lock()
            .unwrap()
            .iter()
            .map(|a| a.what.clone())
            .collect();
        if left.is_empty() {
            break;
        }
        if waited.elapsed() > Duration::from_secs(60) {
            log.note(
                "warning",
                &format!("stopping without waiting longer for: {}", left.join(", ")),
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    events_cancel.cancel();
    shared.done.store(true, Ordering::SeqCst);
    let _ = lease_thread.join();
    let outcome = if abandoned.is_some() {
        "interrupted"
    } else {
        "stopped"
    };
    log.entry(
        "end",
        &[
            ("outcome", outcome.to_string()),
            (
                "duration_ms",
                (Local::now() - start).num_milliseconds().to_string(),
            ),
        ],
    );
    say(&format!("stopped ({outcome}); lease released"));
    if let Some(kind) = abandoned {
        return Err(Failure::new(
            Class::Interrupted,
            format!(
                "the watcher stopped in the middle of a {}: run {} to finish it",
                if kind == Kind::Failback {
                    "failback"
                } else {
                    "failover"
                },
                kind.finish_with()
            ),
        ));
    }
    Ok(())
}

/// Ctrl-C and SIGTERM: see the module's doc. A watcher that cannot catch them does not start:
/// it could not finish a failover before stopping.
fn install_signals(shared: &Arc<Shared>, tx: &Sender<Msg>) -> Result<(), Failure> {
    let (shared, tx) = (shared.clone(), Mutex::new(tx.clone()));
    let installed = ctrlc::set_handler(move || {
        let n = shared.stops.fetch_add(1, Ordering::SeqCst) + 1;
        // The main loop may have ended already (its receiver gone): nothing to wake then.
        let _ = tx.lock().unwrap().send(Msg::Wake);
        let running = shared.running.lock().unwrap().clone();
        let failover = running.iter().find(|a| a.kind.finished_first());
        match n {
            1 => {
                errln!("\nstop requested: the watcher stops");
                for a in running.iter().filter(|a| a.kind == Kind::Scheduled) {
                    errln!(
                        "interrupting the scheduled run of {} at its next safe point (journaled as interrupted; it is safe to run again)",
                        a.what
                    );
                    a.host.cancel.cancel();
                    a.host.pg.cancel_inflight();
                }
                if let Some(a) = failover {
                    errln!(
                        "finishing the {} under way first (Ctrl-C again to abandon it at its next safe point)",
                        a.what
                    );
                }
            }
            2 if failover.is_some() => {
                let a = failover.unwrap();
                errln!(
                    "abandoning the {} at its next safe point; {} finishes it (Ctrl-C again to exit now)",
                    a.what,
                    a.kind.finish_with()
                );
                a.host.cancel.cancel();
                a.host.pg.cancel_inflight();
            }
            _ => {
                if let Some(a) = failover {
                    errln!(
                        "interrupted again: exiting now; the {} is left half-done at step {:?}: run {} to finish it",
                        a.what,
                        a.host.current_step().unwrap_or_default(),
                        a.kind.finish_with()
                    );
                } else {
                    errln!("interrupted again: exiting now");
                }
                std::process::exit(130);
            }
        }
    });
    installed.map_err(|e| {
        Failure::new(
            Class::Infrastructure,
            format!("cannot catch Ctrl-C and SIGTERM ({e}): the watcher does not start, as it could not finish a failover before stopping"),
        )
    })
}

/// Loads each schedule's last planned time from Redis (when the watcher starts acting).
fn load_cursors(host: &Host, scheds: &mut [Sched], log: &Log) {
    if scheds.is_empty() {
        return;
    }
    match host.coord.map_all(lease::SCHEDULES) {
        Ok(last) => {
            for s in scheds.iter_mut() {
                if let Some(t) = last
                    .get(&s.key)
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                {
                    s.cursor = t.with_timezone(&Local);
                }
            }
        }
        Err(e) => log.note(
            "warning",
            &format!(
                "cannot read the schedules' last runs from Redis ({e:#}): times missed while no watcher ran are not caught up"
            ),
        ),
    }
}

fn tick_schedule(
    s: &mut Sched,
    config: &Config,
    me: &Me,
    shared: &Arc<Shared>,
    host: &Host,
    log: &Log,
) {
    let now = Local::now();
    let Some(due) = schedule::due(&s.cron, &s.cursor, &now) else {
        return;
    };
    s.cursor = due.planned;
    if let Err(e) = host
        .coord
        .map_set(lease::SCHEDULES, &s.key, &due.planned.to_rfc3339())
    {
        log.note(
            "warning",
            &format!(
                "schedule {:?}: its last run time is not saved in Redis ({e:#}): a watcher started later may run it again for {}",
                s.key,
                due.planned.format("%H:%M:%S")
            ),
        );
    }
    if s.running.load(Ordering::SeqCst) {
        log.note(
            "skipped",
            &format!(
                "schedule {:?}: not started for {}: its previous run is still going",
                s.key,
                due.planned.format("%H:%M:%S")
            ),
        );
        return;
    }
    let missed = due.passed.saturating_sub(1);
    log.note(
        "scheduled",
        &format!(
            "schedule {:?}: running {} for {}{}",
            s.key,
            s.cfg.runbook,
            due.planned.format("%Y-%m-%d %H:%M:%S"),
            if due.late {
                format!(
                    " (late by {} s{})",
                    (now - due.planned).num_seconds(),
                    if missed > 0 {
                        format!("; {missed} earlier time(s) missed, run once")
                    } else {
                        String::new()
                    }
                )
            } else {
                String::new()
            }
        ),
    );
    let marks: BTreeMap<String, String> = [
        ("scheduled", "true".to_string()),
        ("schedule", s.key.clone()),
        ("planned", due.planned.to_rfc3339()),
        ("late", due.late.to_string()),
        ("missed", missed.to_string()),
        ("watcher", me.id.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let rh = Arc::new(Host::new(config.clone()));
    *rh.run_marks.lock().unwrap() = marks;
    let active = Active {
        what: format!("{} ({})", s.cfg.runbook, s.key),
        kind: Kind::Scheduled,
        host: rh.clone(),
    };
    s.running.store(true, Ordering::SeqCst);
    shared.running.lock().unwrap().push(active);
    let (running, shared, rb, params, key) = (
        s.running.clone(),
        shared.clone(),
        s.runbook.clone(),
        s.params.clone(),
        s.key.clone(),
    );
    std::thread::spawn(move || {
        let r = engine::run(&rh, &rb, params);
        shared
            .running
            .lock()
            .unwrap()
            .retain(|a| !Arc::ptr_eq(&a.host, &rh));
        running.store(false, Ordering::SeqCst);
        match r {
            Ok(()) => say(&format!("schedule {key:?}: {} ended ok", rb.name)),
            Err(f) => say(&format!(
                "schedule {key:?}: {} ended: {}",
                rb.name,
                f.one_line()
            )),
        }
    });
}

/// Runs a runbook for the policy on the main loop (failover, failback), marked unattended.
fn run_unattended(
    rb: &Runbook,
    kind: Kind,
    params: BTreeMap<String, Dynamic>,
    decision: &Decision,
    config: &Config,
    me: &Me,
    shared: &Arc<Shared>,
) -> Result<(), Failure> {
    let rh = Arc::new(Host::new(config.clone()));
    *rh.run_marks.lock().unwrap() = [
        ("unattended", "true".to_string()),
        ("trigger", decision.reason.clone()),
        ("watcher", me.id.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    shared.running.lock().unwrap().push(Active {
        what: rb.name.clone(),
        kind,
        host: rh.clone(),
    });
    let r = engine::run(&rh, rb, params);
    shared
        .running
        .lock()
        .unwrap()
        .retain(|a| !Arc::ptr_eq(&a.host, &rh));
    r
}

#[allow(clippy::too_many_arguments)]
fn fail_over(
    decision: &Decision,
    stop_first: bool,
    track: &mut Track,
    config: &Config,
    host: &Host,
    me: &Me,
    shared: &Arc<Shared>,
    log: &Log,
    failover: &Runbook,
    policy: &Policy,
) -> Result<(), Failure> {
    log.note("decision", &format!("failover: {}", decision.reason));
    // Written down first: a watcher killed from here on leaves it for the next one.
    let pending = Pending {
        watcher: me.id.clone(),
        host: me.host.clone(),
        pid: me.pid,
        since: now_rfc3339(),
        trigger: decision.reason.clone(),
        primary: track.primary.clone(),
        standby: track
            .primary
            .as_ref()
            .and_then(|p| config.nodes.keys().find(|n| *n != p).cloned()),
    };
    match pending.save(host) {
        Ok(None) => {}
        Ok(Some(why)) => log.note(
            "warning",
            &format!("the failover record is written in one place only ({why})"),
        ),
        Err(why) => {
            errln!("WARNING: the failover record was written nowhere ({why})");
            log.note(
                "warning",
                &format!(
                    "the failover record was written nowhere ({why}): if this watcher dies during the failover, no watcher finishes it; run `pgrunbook run failover` then"
                ),
            );
        }
    }
    track.interrupted = None;
    let r = fail_over_steps(
        decision, stop_first, track, config, host, me, shared, log, failover, policy,
    );
    // Abandoned (a second Ctrl-C): left for the next watcher, or `pgrunbook run failover`.
    if !matches!(&r, Err(f) if f.class == Class::Interrupted) {
        track.clear_redis_pending = !Pending::clear(config, host);
    }
    r
}

#[allow(clippy::too_many_arguments)]
fn fail_over_steps(
    decision: &Decision,
    stop_first: bool,
    track: &Track,
    config: &Config,
    host: &Host,
    me: &Me,
    shared: &Arc<Shared>,
    log: &Log,
    failover: &Runbook,
    policy: &Policy,
) -> Result<(), Failure> {
    if stop_first {
        let Some(p) = &track.primary else {
            return Err(Failure::new(Class::Refused, "no primary known"));
        };
        let container = config.node(p).map_err(infra)?.container.clone();
        say(&format!(
            "fencing {p}: stopping its container {container} through the Docker engine (SIGKILL)"
        ));
        if let Err(e) = host.docker.kill(&container, "SIGKILL") {
            log.note(
                "failed",
                &format!("could not stop {p}'s container: {e:#}; no failover"),
            );
            return Err(infra(e));
        }
        let t = Instant::now();
        loop {
            let st = host
                .docker
                .state(&container)
                .map(|s| s.as_str().to_string());
            match st {
                Ok(s) if !["running", "paused", "restarting"].contains(&s.as_str()) => {
                    log.note(
                        "fenced",
                        &format!("{p}'s container {container} is {s}: it accepts nothing now"),
                    );
                    break;
                }
                _ if t.elapsed() > Duration::from_secs(10) => {
                    log.note(
                        "failed",
                        &format!(
                            "{p}'s container {container} did not stop within 10 s; no failover"
                        ),
                    );
                    return Err(Failure::new(Class::Refused, "the primary did not stop"));
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
    let params = engine::bind_params(
        failover,
        &[("max_lag".into(), policy.int("max_lag").to_string())],
    )?;
    let r = run_unattended(
        failover,
        Kind::Failover,
        params,
        decision,
        config,
        me,
        shared,
    );
    match &r {
        Ok(()) => log.note(
            "failover",
            "failover done: see the failover run in the journal",
        ),
        Err(f) if f.class == Class::Interrupted => log.note(
            "interrupted",
            &format!(
                "failover abandoned ({}): run `pgrunbook run failover` to finish it",
                f.one_line()
            ),
        ),
        Err(f) => log.note(
            "failed",
            &format!("failover did not complete: {}", f.one_line()),
        ),
    }
    r
}

/// The lease thread: see `lease.rs`. Also writes the heartbeat and delivers the journal's spool
/// when Redis is back.
fn lease_loop(config: Config, me: Me, shared: Arc<Shared>, tx: Sender<Msg>, cluster: String) {
    let journal = Journal::new(config.clone());
    journal.set_cluster(Some(cluster));
    let store = crate::coordination::open(&config);
    let lock_path = lease::local_path(&config, "lock");
    let beat_path = lease::local_path(&config, "heartbeat.json");
    let mut lock: Option<LocalLock> = None;
    let (mut held, mut seen_redis) = (false, false);
    let ttl = config.watch.lease_ttl_ms;
    let tick = Duration::from_millis((ttl / 3).min(config.watch.heartbeat_ms).max(50));
    let me_json = me.json();
    let mut beat_warned = false;
    while !shared.done.load(Ordering::SeqCst) {
        if lock.is_none() {
            lock = LocalLock::try_take(lock_path.clone(), &me_json)
                .ok()
                .flatten();
        }
        let (local, claim) = if lock.is_some() {
            let claim = match store.lease_claim(lease::LEASE, &me_json, ttl) {
                Ok(None) => Claim::Mine,
                Ok(Some(other)) => Claim::Other(shown_holder(&other)),
                Err(e) => Claim::Unreachable(format!("{e:#}")),
            };
            (Ok(()), claim)
        } else {
            let holder = shown_holder(&LocalLock::holder(&lock_path));
            (Err(holder), Claim::Unreachable("not asked".into()))
        };
        let standing = lease::standing(local, &claim, held, seen_redis);
        match &claim {
            Claim::Mine => (held, seen_redis) = (true, true),
            Claim::Other(_) => (held, seen_redis) = (false, true),
            Claim::Unreachable(_) => {}
        }
        let changed = {
            let mut s = shared.standing.lock().unwrap();
            let changed = *s != standing;
            *s = standing.clone();
            changed
        };
        if changed {
            let _ = tx.send(Msg::Wake);
        }
        let now = chrono::Utc::now().timestamp_millis();
        let beat = serde_json::json!({
            "id": me.id, "host": me.host, "pid": me.pid, "since": me.since,
            "ts_ms": now,
            "expires_ms": now + 3 * config.watch.heartbeat_ms.max(tick.as_millis() as u64) as i64,
            "acting": standing.acting(), "standing": standing.text(),
        })
        .to_string();
        // The heartbeat is rewritten every tick and only shown by `watch status`; a Redis that
        // does not answer is reported by the lease's standing above, so a failed beat is not
        // said again here.
        let _ = store.map_set(lease::WATCHERS, &me.id, &beat);
        if lock.is_some() {
            if let Err(e) = std::fs::write(&beat_path, &beat) {
                if !beat_warned {
                    errln!(
                        "warning: cannot write the heartbeat {} ({e}): `watch status` on this machine does not see this watcher",
                        beat_path.display()
                    );
                    beat_warned = true;
                }
            }
        }
        if claim == Claim::Mine {
            if let Ok(all) = store.map_all(lease::WATCHERS) {
                for (id, v) in all {
                    let expired = serde_json::from_str::<serde_json::Value>(&v)
                        .ok()
                        .and_then(|v| v["expires_ms"].as_i64())
                        .is_none_or(|e| e < now);
                    if expired {
                        let _ = store.map_del(lease::WATCHERS, &id);
                    }
                }
            }
            if journal.has_spooled() {
                journal.flush_spool();
            }
        }
        let t = Instant::now();
        while t.elapsed() < tick && !shared.done.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    if held {
        if let Err(e) = store.lease_release(lease::LEASE, &me_json) {
            errln!(
                "warning: cannot release the lease in Redis ({e:#}): another watcher acts once it expires, within {ttl} ms"
            );
        }
    }
    let _ = store.map_del(lease::WATCHERS, &me.id);
    if lock.is_some() {
        let _ = std::fs::remove_file(&beat_path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_that_differ_only_in_figures_are_one() {
        assert_eq!(
            warning_key("standby b last streamed 1203 ms ago"),
            warning_key("standby b last streamed 98 ms ago")
        );
        assert_ne!(warning_key("standby a"), warning_key("standby b"));
    }

    #[test]
    fn the_lease_value_names_the_watcher() {
        let me = Me::new();
        let shown = shown_holder(&me.json());
        assert!(
            shown.contains(&format!("pid {}", std::process::id())),
            "{shown}"
        );
        assert_eq!(shown_holder("not json"), "not json");
    }
}
