//! Issue 12: `pgrunbook watch` on real containers: scheduled backups (on time and late), the
//! lease (two watchers, one acts), unattended failover when the primary is killed, none when the
//! standby is down. Checked independently of pgrunbook: SQL on the published ports, the Docker
//! CLI, the journal and backups streams read from Redis, pgBackRest's own info.

mod common;
use common::*;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `pgrunbook watch` child, its stdout and stderr collected as they come.
struct Watcher {
    child: Child,
    out: Arc<Mutex<String>>,
    /// With `start_killing_at`: the step header the watcher was SIGKILLed at, and a later
    /// step's header that was already in the pipe (the named step was then over).
    killed: Arc<Mutex<Option<KilledAt>>>,
}

/// The step header a watcher was killed at, and a later one already printed.
type KilledAt = (String, Option<String>);

/// The title in a runbook's step header, `==> [N] Title`.
fn header(line: &str) -> Option<&str> {
    line.strip_prefix("==> [")?.split_once("] ").map(|(_, t)| t)
}

impl Watcher {
    fn start(lab: &TestLab, data_dir: Option<&std::path::Path>) -> Watcher {
        Self::spawn(lab, data_dir, None)
    }

    /// A watcher that the test SIGKILLs as soon as it prints the header of a step whose title
    /// contains `title` (of the failover it runs): by the step, not by a guess of the time.
    fn start_killing_at(lab: &TestLab, title: &str) -> Watcher {
        Self::spawn(lab, None, Some(title.to_string()))
    }

    fn spawn(
        lab: &TestLab,
        data_dir: Option<&std::path::Path>,
        kill_at: Option<String>,
    ) -> Watcher {
        let mut cmd = lab.command(&["watch"]);
        if let Some(d) = data_dir {
            cmd.env("PGRUNBOOK_DATA_DIR", d);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let out = Arc::new(Mutex::new(String::new()));
        let killed = Arc::new(Mutex::new(None::<KilledAt>));
        for (is_stdout, pipe) in [
            (
                true,
                Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            ),
            (false, Box::new(child.stderr.take().unwrap())),
        ] {
            let (out, killed, kill_at) = (out.clone(), killed.clone(), kill_at.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { return };
                    if is_stdout {
                        if let (Some(title), Some(t)) = (&kill_at, header(&line)) {
                            let mut k = killed.lock().unwrap();
                            match k.as_mut() {
                                None if t.contains(title.as_str()) => {
                                    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
                                    *k = Some((t.to_string(), None));
                                }
                                Some((_, later @ None)) => *later = Some(t.to_string()),
                                _ => {}
                            }
                        }
                    }
                    out.lock().unwrap().push_str(&(line + "\n"));
                }
            });
        }
        Watcher { child, out, killed }
    }

    /// Waits for the watcher to exit (killed by `start_killing_at`); returns the step it was
    /// killed in and a later step's header if one had already been printed.
    fn wait_killed(&mut self, secs: u64) -> KilledAt {
        let end = Instant::now() + Duration::from_secs(secs);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < end,
                "the watcher was not killed:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200)); // the readers drain
        self.killed
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| panic!("the watcher exited by itself:\n{}", self.output()))
    }

    fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits until the output has `text`.
    fn wait_for(&self, text: &str, secs: u64) {
        let end = Instant::now() + Duration::from_secs(secs);
        while !self.output().contains(text) {
            assert!(
                Instant::now() < end,
                "watcher never said {text:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` and waits for the exit; returns the exit code.
    fn stop(&mut self, signal: i32) -> i32 {
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
        let end = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100)); // the readers drain
                return s.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < end,
                "watcher did not stop:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lab_with(tag: &str, extra: &str) -> TestLab {
    let lab = TestLab::with_extra(tag, extra);
    lab.ensure_image();
    lab.pgrunbook(&["lab", "up"]).succeeds();
    lab.pgrunbook(&["run", "setup"]).succeeds();
    lab
}

/// Whether `node` accepts a write now (an independent client on its published port).
fn writable(lab: &TestLab, node: &str) -> bool {
    lab.try_client(node)
        .and_then(|mut c| c.query_one("SELECT pg_current_xact_id()::text", &[]).ok())
        .is_some()
}

/// Someone starts the node's container by hand; waits until its server answers.
fn start_by_hand(lab: &TestLab, node: &str) {
    assert!(lab
        .docker(&["start", &lab.container(node)])
        .status
        .success());
    wait_until(&format!("{node} to answer"), 60, || {
        lab.try_client(node).is_some()
    });
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

type Fields = HashMap<String, String>;

fn runs_of(journal: &[Fields], runbook: &str, event: &str) -> Vec<Fields> {
    journal
        .iter()
        .filter(|e| {
            e.get("runbook").map(String::as_str) == Some(runbook)
                && e.get("event").map(String::as_str) == Some(event)
        })
        .cloned()
        .collect()
}

/// The watcher's own journal notes (steps of runbook `watch`) of outcome `kind`.
fn notes(journal: &[Fields], kind: &str) -> Vec<String> {
    runs_of(journal, "watch", "step")
        .into_iter()
        .filter(|e| e.get("outcome").map(String::as_str) == Some(kind))
        .map(|e| e["step"].clone())
        .collect()
}

/// The journal holds exactly one failover run, ended ok, unattended, triggered by pg-bases2's
/// container having exited, after the watcher's decision that the primary pg-bases2 is out.
fn assert_one_unattended_failover_of_pg_bases2(journal: &[Fields]) {
    let ends = runs_of(journal, "failover", "end");
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0]["outcome"], "ok", "{:?}", ends[0]);
    assert_eq!(ends[0].get("unattended").map(String::as_str), Some("true"));
    assert!(ends[0]["trigger"].contains("exited"), "{:?}", ends[0]);
    assert!(
        notes(journal, "decision")
            .iter()
            .any(|n| n.contains("failover: primary pg-bases2 is out")),
        "{journal:?}"
    );
}

#[test]
fn scheduled_backups_are_taken_recorded_and_caught_up_when_missed() {
    let lab = lab_with(
        "wsched",
        r#"
[[schedule]]
runbook = "backup"
cron = "0,30 * * * * *"
set = { type = "full" }

[[schedule]]
runbook = "backup"
cron = "15,45 * * * * *"
set = { type = "incr" }
"#,
    );
    let mut w = Watcher::start(&lab, None);
    w.wait_for("acting: holds the lease in Redis", 30);
    // Status shows the watcher: where, which pid, since when.
    let st = lab.pgrunbook(&["status"]).succeeds();
    assert!(
        st.stdout.contains(&format!(
            "watcher: acting on {}",
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap()
                .trim()
        )) && st.stdout.contains(&format!("pid {}", w.pid())),
        "{}",
        st.stdout
    );
    // Long enough for two full and two incr times, whatever the second it started at.
    wait_until("two full and two incr backups", 120, || {
        let b = lab.stream("backups");
        let n = |t: &str| {
            b.iter()
                .filter(|e| e.get("type").map(String::as_str) == Some(t))
                .count()
        };
        n("full") >= 2 && n("incr") >= 2
    });
    assert_eq!(w.stop(libc::SIGTERM), 0, "{}", w.output());
    let out = w.output();
    assert!(out.contains("stopped (stopped); lease released"), "{out}");
    let st = lab.pgrunbook(&["status"]).succeeds();
    assert!(st.stdout.contains("watcher: none running"), "{}", st.stdout);

    // Recorded in Redis, marked scheduled, and in pgBackRest's own info.
    let journal = lab.stream("journal");
    let ends = runs_of(&journal, "backup", "end");
    assert!(ends.len() >= 4, "{ends:?}");
    for e in &ends {
        assert_eq!(
            e.get("scheduled").map(String::as_str),
            Some("true"),
            "{e:?}"
        );
        assert!(e["schedule"].starts_with("backup type="), "{e:?}");
    }
    assert!(
        ends.iter().filter(|e| e["outcome"] == "ok").count() >= 3,
        "{ends:?}"
    );
    // Every backup pgBackRest lists (retention_full = 2 expires older fulls) is recorded in Redis
    // and shown by `pgrunbook backups`.
    let shown = lab
        .pgrunbook(&["backups", "--last", "50"])
        .succeeds()
        .stdout;
    let recorded: Vec<String> = lab
        .stream("backups")
        .iter()
        .filter_map(|e| e.get("label").cloned())
        .collect();
    assert!(recorded.len() >= 4, "{recorded:?}");
    let info = lab.pgbackrest_info("pg-bases2");
    let listed: Vec<(String, String)> = info[0]["backup"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["label"].as_str().unwrap().to_string(),
                b["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for t in ["full", "incr"] {
        assert!(
            listed.iter().any(|(_, ty)| ty == t),
            "no {t} in pgbackrest info: {listed:?}"
        );
    }
    for (l, _) in &listed {
        assert!(
            recorded.contains(l),
            "{l} not recorded in Redis: {recorded:?}"
        );
        assert!(shown.contains(l.as_str()), "{l} not in `backups`:\n{shown}");
    }

    // Down past planned times: once back, each schedule runs once, journaled late.
    std::thread::sleep(Duration::from_secs(32));
    let before = runs_of(&lab.stream("journal"), "backup", "start").len();
    let mut w = Watcher::start(&lab, None);
    wait_until("a late run", 30, || {
        runs_of(&lab.stream("journal"), "backup", "start")
            .iter()
            .skip(before)
            .any(|e| e.get("late").map(String::as_str) == Some("true"))
    });
    assert_eq!(w.stop(libc::SIGINT), 0, "{}", w.output());
    let starts = runs_of(&lab.stream("journal"), "backup", "start");
    let late: Vec<&Fields> = starts
        .iter()
        .skip(before)
        .filter(|e| e.get("late").map(String::as_str) == Some("true"))
        .collect();
    let mut schedules: Vec<&str> = late.iter().map(|e| e["schedule"].as_str()).collect();
    schedules.sort();
    schedules.dedup();
    assert_eq!(
        schedules.len(),
        late.len(),
        "each schedule caught up once: {late:?}"
    );
    assert!(w.output().contains("late by"), "{}", w.output());
}

#[test]
fn a_killed_primary_is_failed_over_once_and_journaled() {
    let lab = lab_with("wkill", "");
    let mut w = Watcher::start(&lab, None);
    w.wait_for("acting: holds the lease in Redis", 30);
    std::thread::sleep(Duration::from_millis(500)); // a probe saw the standby stream
    let t = Instant::now();
    let out = lab.docker(&["kill", "-s", "KILL", &lab.container("pg-bases2")]);
    assert!(out.status.success());
    wait_until("pg-replica to accept writes", 60, || {
        writable(&lab, "pg-replica")
    });
    let took = t.elapsed();
    eprintln!("kill to first accepted write on pg-replica: {took:?}");
    w.wait_for("failover done", 30);

    // Exactly one writable node; the old primary is stopped (its fence is checked below, once
    // it runs again: the marker is read through its container).
    assert!(!writable(&lab, "pg-bases2"));
    assert_eq!(lab.container_state("pg-bases2"), "exited");
    let journal = lab.stream("journal");
    assert_one_unattended_failover_of_pg_bases2(&journal);
    // Afterwards the watcher warns that there is no standby, and does nothing else.
    w.wait_for("warning: standby pg-bases2 is not ready", 10);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        runs_of(&lab.stream("journal"), "failover", "start").len(),
        1
    );
    assert_eq!(w.stop(libc::SIGTERM), 0, "{}", w.output());

    // Started again by hand, the old primary is a read-only standby (the fence).
    start_by_hand(&lab, "pg-bases2");
    assert!(lab.query_bool("pg-bases2", "SELECT pg_is_in_recovery()"));
    assert!(!writable(&lab, "pg-bases2"));
    assert!(writable(&lab, "pg-replica"));
}

#[test]
fn with_the_standby_down_there_is_no_failover_but_a_warning() {
    let lab = lab_with("wsdown", "");
    let mut w = Watcher::start(&lab, None);
    w.wait_for("acting: holds the lease in Redis", 30);
    assert!(lab
        .docker(&["stop", &lab.container("pg-replica")])
        .status
        .success());
    w.wait_for(
        "warning: standby pg-replica is not ready for a failover",
        20,
    );
    let out = lab.docker(&["kill", "-s", "KILL", &lab.container("pg-bases2")]);
    assert!(out.status.success());
    w.wait_for("primary pg-bases2 is out", 20);
    std::thread::sleep(Duration::from_secs(3));
    let journal = lab.stream("journal");
    assert!(
        runs_of(&journal, "failover", "start").is_empty(),
        "{journal:?}"
    );
    let warnings = notes(&journal, "warning");
    assert!(
        warnings
            .iter()
            .any(|n| n.contains("standby pg-replica is not ready")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|n| n.contains("primary pg-bases2 is out") && n.contains("no failover")),
        "{warnings:?}"
    );
    assert_eq!(lab.container_state("pg-replica"), "exited");
    assert_eq!(w.stop(libc::SIGTERM), 0, "{}", w.output());
}

#[test]
fn of_two_watchers_only_one_acts_and_the_other_takes_over() {
    let lab = lab_with("wtwo", "");
    // Two data directories: as if on two machines, so the lease in Redis decides, not the lock.
    let other_dir = lab.dir.path().join("data-b");
    let mut a = Watcher::start(&lab, None);
    a.wait_for("acting: holds the lease in Redis", 30);
    let mut b = Watcher::start(&lab, Some(&other_dir));
    b.wait_for("waiting: the lease in Redis is held by", 30);
    let st = lab.pgrunbook(&["status"]).succeeds().stdout;
    assert!(
        st.contains("watcher: acting on") && st.contains(&format!("pid {}", a.pid())),
        "{st}"
    );
    assert!(
        st.contains("watcher: waiting on") && st.contains(&format!("pid {}", b.pid())),
        "{st}"
    );
    // A third on the first one's machine (same data directory) waits on the local lock.
    let mut c = Watcher::start(&lab, None);
    c.wait_for(
        "waiting: another watcher on this machine holds the local lock",
        30,
    );
    assert_eq!(c.stop(libc::SIGTERM), 0);

    let out = lab.docker(&["kill", "-s", "KILL", &lab.container("pg-bases2")]);
    assert!(out.status.success());
    wait_until("pg-replica to accept writes", 60, || {
        writable(&lab, "pg-replica")
    });
    a.wait_for("failover done", 30);
    std::thread::sleep(Duration::from_secs(2));
    let journal = lab.stream("journal");
    assert_eq!(
        runs_of(&journal, "failover", "start").len(),
        1,
        "{journal:?}"
    );
    assert!(!b.output().contains("decision"), "{}", b.output());

    // The acting watcher is killed outright: the other takes the lease once it expires.
    assert_eq!(unsafe { libc::kill(a.pid(), libc::SIGKILL) }, 0);
    let _ = a.child.wait();
    b.wait_for("acting: holds the lease in Redis", 15);
    assert_eq!(b.stop(libc::SIGTERM), 0, "{}", b.output());
}

#[test]
fn a_paused_primary_is_stopped_through_the_engine_then_failed_over() {
    let lab = lab_with("wpause", "[watch]\nsettings = { grace_ms = 2000 }\n");
    let mut w = Watcher::start(&lab, None);
    w.wait_for("acting: holds the lease in Redis", 30);
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    assert!(lab
        .docker(&["pause", &lab.container("pg-bases2")])
        .status
        .success());
    wait_until("pg-replica to accept writes", 60, || {
        writable(&lab, "pg-replica")
    });
    let took = t.elapsed();
    eprintln!("pause to first accepted write on pg-replica: {took:?} (grace 2 s)");
    assert!(
        took >= Duration::from_secs(2),
        "not before the grace: {took:?}"
    );
    w.wait_for("failover done", 30);
    let out = w.output();
    assert!(
        out.contains("fencing pg-bases2: stopping its container"),
        "{out}"
    );
    assert_eq!(lab.container_state("pg-bases2"), "exited");
    // docker unpause cannot bring it back (it is not paused any more); started, it is read-only.
    assert!(!lab
        .docker(&["unpause", &lab.container("pg-bases2")])
        .status
        .success());
    assert!(!writable(&lab, "pg-bases2"));
    let journal = lab.stream("journal");
    let ends = runs_of(&journal, "failover", "end");
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0]["outcome"], "ok");
    assert!(
        ends[0]["trigger"].contains("has not answered"),
        "{:?}",
        ends[0]
    );
    assert!(!notes(&journal, "fenced").is_empty(), "{journal:?}");
    assert_eq!(w.stop(libc::SIGTERM), 0, "{}", w.output());
    start_by_hand(&lab, "pg-bases2");
    assert!(!writable(&lab, "pg-bases2"));
    assert!(writable(&lab, "pg-replica"));
}

// ---- chaos: faults other than a clean kill of the primary's container ----------------------

const INSERT: &str = "INSERT INTO public.replica_test(val) VALUES ($1)";
const WRITERS: usize = 4;

/// The values of `acked` (tagged `tag-...`) missing on `node`.
fn missing_on(lab: &TestLab, node: &str, acked: &[String], tag: &str) -> usize {
    let present: std::collections::HashSet<String> = lab
        .query_strings(
            node,
            &format!("SELECT val FROM public.replica_test WHERE val LIKE '{tag}-%'"),
        )
        .into_iter()
        .collect();
    acked.iter().filter(|v| !present.contains(*v)).count()
}

/// The asynchronous bound of docs/safety.md: the acknowledged commits missing on the new
/// primary are at most the failover's own estimate of the transactions lost (read from the dead
/// primary's WAL), which exceeds them by at most one unacknowledged commit per writer.
fn loss_within_bound(lab: &TestLab, acked: &[String], tag: &str, new_primary: &str) {
    let missing = missing_on(lab, new_primary, acked, tag);
    let journal = lab.stream("journal");
    let end = runs_of(&journal, "failover", "end")
        .into_iter()
        .rfind(|e| e["outcome"] == "ok")
        .expect("a failover that ended ok");
    let m: serde_json::Value = serde_json::from_str(&end["metrics"]).unwrap();
    let estimated: usize = m["lost_transactions"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no estimate of the loss: {m}"));
    eprintln!(
        "{tag}: {} commits acknowledged, {missing} missing on {new_primary}; failover estimated {estimated}",
        acked.len()
    );
    assert!(
        missing <= estimated && estimated <= missing + WRITERS,
        "{tag}: {missing} acknowledged commits missing, failover estimated {estimated}"
    );
}

/// The nodes that accept a write now, by independent clients on the published ports.
fn writable_nodes(lab: &TestLab) -> Vec<&'static str> {
    ["pg-bases2", "pg-replica"]
        .into_iter()
        .filter(|n| writable(lab, n))
        .collect()
}

/// The postmaster is PID 1 of the lab's containers (the entrypoint `exec`s postgres), and the
/// kernel drops a SIGKILL sent to a namespace's PID 1 from inside it: `docker exec ... kill -9 1`
/// does nothing. So it is killed as the kernel's OOM killer would, by its PID on the host. The
/// container then exits on its own (not `docker kill`/`stop`), and the lab's restart policy
/// (`unless-stopped`) starts it again: PostgreSQL recovers from its WAL and is the primary again
/// within a second or two, inside `grace_ms`. The watcher does not fail over (promoting would
/// lose the commits the standby had not received, for an outage shorter than the failover
/// itself); it warns while the primary is silent and says when it is back.
#[test]
fn a_postmaster_killed_inside_its_container_is_restarted_not_failed_over() {
    let lab = lab_with("wpm", "");
    let mut w = Watcher::start(&lab, None);
    w.wait_for("acting: holds the lease in Redis", 30);
    std::thread::sleep(Duration::from_millis(500));
    let c = lab.container("pg-bases2");
    let pid_of = || {
        let out = lab.docker(&["inspect", "-f", "{{.State.Pid}}", &c]);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<i32>()
            .unwrap()
    };
    let pid = pid_of();
    assert!(pid > 1, "{pid}");
    // From inside, PID 1 ignores it: the container and its postmaster are as they were.
    lab.docker(&["exec", "-u", "root", &c, "kill", "-9", "1"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(pid_of(), pid, "the postmaster survived kill -9 from inside");
    let acked = lab.writes_until("pg-bases2", INSERT, "pm", WRITERS, 1500, || {
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    });
    assert!(acked.len() > 50, "the load ran: {}", acked.len());
    wait_until("pg-bases2 to accept writes again", 60, || {
        writable(&lab, "pg-bases2")
    });
    let restarts = lab.docker(&["inspect", "-f", "{{.RestartCount}}", &c]);
    assert_eq!(String::from_utf8_lossy(&restarts.stdout).trim(), "1");
    assert_ne!(pid_of(), pid);
    w.wait_for("no warning any more", 30);
    std::thread::sleep(Duration::from_secs(2));

    // One writable node, the same one, with every acknowledged commit (crash recovery).
    assert_eq!(writable_nodes(&lab), vec!["pg-bases2"]);
    assert!(lab.query_bool("pg-replica", "SELECT pg_is_in_recovery()"));
    assert_eq!(missing_on(&lab, "pg-bases2", &acked, "pm"), 0);
    let journal = lab.stream("journal");
    assert!(
        runs_of(&journal, "failover", "start").is_empty(),
        "{journal:?}"
    );
    // The journal says what happened: the container died, the primary was silent (within the
    // grace), then all was well.
    let events = notes(&journal, "event");
    assert!(
        events.iter().any(|n| n.contains(&format!("{c} die"))),
        "{events:?}"
    );
    let warnings = notes(&journal, "warning");
    assert!(
        warnings
            .iter()
            .any(|n| n.contains("primary pg-bases2 does not answer")),
        "{warnings:?}"
    );
    assert!(!notes(&journal, "resolved").is_empty(), "{journal:?}");
    // The standby streams from it again.
    wait_until("pg-replica to stream again", 30, || {
        lab.query_strings(
            "pg-bases2",
            "SELECT state FROM pg_stat_replication WHERE state = 'streaming'",
        )
        .len()
            == 1
    });
    assert_eq!(w.stop(libc::SIGTERM), 0, "{}", w.output());
}

/// A second network of the test's own, removed at the end.
struct SideNetwork<'a> {
    lab: &'a TestLab,
    name: String,
}

impl Drop for SideNetwork<'_> {
    fn drop(&mut self) {
        let c = self.lab.container("pg-bases2");
        let _ = self
            .lab
            .docker(&["network", "disconnect", "-f", &self.name, &c]);
        let _ = self.lab.docker(&["network", "rm", &self.name]);
    }
}

/// The primary cut from the lab network while its published port still answers. Docker moves
/// a container's published ports to another network it is on, so the primary is first attached
/// to a second network (as a host with a second interface), then disconnected from the lab's.
/// The watcher reaches it, so it is not out, and promoting the standby would make a second
/// primary that the clients still reaching the old one would never hear of: no failover. The
/// standby stops streaming and the watcher warns that it is not ready.
///
/// A standby notices a silent primary after `wal_receiver_timeout` (60 s by default): the test
/// sets 2 s on the standby and `standby_fresh_ms = 3000` so that the warning comes within
/// seconds; at the defaults it comes after about 70 s.
#[test]
fn a_primary_cut_from_the_lab_network_is_not_failed_over_and_the_standby_is_reported() {
    let lab = lab_with("wnet", "[watch]\nsettings = { standby_fresh_ms = 3000 }\n");
    let mut sb = lab.client("pg-replica");
    sb.batch_execute("ALTER SYSTEM SET wal_receiver_timeout = '2s'")
        .unwrap();
    sb.batch_execute("SELECT pg_reload_conf()").unwrap();
    let mut w = Watcher::start(&lab, None);
    w.wait_for("acting: holds the lease in Redis", 30);
    std::thread::sleep(Duration::from_millis(500));
    let c = lab.container("pg-bases2");
    let side = SideNetwork {
        lab: &lab,
        name: format!("{}-side", lab.id),
    };
    let must = |args: &[&str]| {
        let out = lab.docker(args);
        assert!(
            out.status.success(),
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    must(&["network", "create", &side.name]);
    must(&["network", "connect", &side.name, &c]);
    let net = format!("{}-net", lab.id);
    must(&["network", "disconnect", &net, &c]);
    assert!(writable(&lab, "pg-bases2"), "the published port answers");

    // Clients go on writing on the primary all along.
    let mut primary = lab.client("pg-bases2");
    let mut written = 0;
    let mut write = |n: usize| {
        for _ in 0..n {
            primary
                .execute(INSERT, &[&format!("net-{written}")])
                .unwrap();
            written += 1;
        }
    };
    write(100);
    w.wait_for(
        "warning: standby pg-replica is not ready for a failover",
        30,
    );
    write(100);
    std::thread::sleep(Duration::from_secs(3));
    write(100);
    let journal = lab.stream("journal");
    assert!(
        runs_of(&journal, "failover", "start").is_empty(),
        "{journal:?}"
    );
    let warnings = notes(&journal, "warning");
    assert!(
        warnings
            .iter()
            .any(|n| n.contains("standby pg-replica is not ready") && n.contains("streamed")),
        "{warnings:?}"
    );
    assert!(!w.output().contains("decision"), "{}", w.output());
    assert_eq!(writable_nodes(&lab), vec!["pg-bases2"]);
    assert!(lab.query_bool("pg-replica", "SELECT pg_is_in_recovery()"));

    // Back on the lab network: the standby catches up with every row, the warning is resolved.
    must(&["network", "connect", "--alias", &c, &net, &c]);
    w.wait_for("no warning any more", 60);
    wait_until("pg-replica to have every row", 30, || {
        lab.query_i64(
            "pg-replica",
            "SELECT count(*) FROM public.replica_test WHERE val LIKE 'net-%'",
        ) == written as i64
    });
    assert_eq!(writable_nodes(&lab), vec!["pg-bases2"]);
    assert_eq!(w.stop(libc::SIGTERM), 0, "{}", w.output());
    drop(side);
}

/// Redis stopped, then the primary killed under a write load: the watcher, which held the lease,
/// goes on acting on its local lock and fails over; the journal entries of the failover and of
/// the watcher are spooled, and delivered once Redis is back.
#[test]
fn with_redis_down_the_failover_happens_and_its_journal_is_delivered_later() {
    let lab = lab_with("wredis", "");
    let mut w = Watcher::start(&lab, None);
    w.wait_for("acting: holds the lease in Redis", 30);
    std::thread::sleep(Duration::from_millis(500));
    lab.stop_redis();
    w.wait_for("held the lease when Redis stopped answering", 15);
    let acked = lab.writes_until_killed("pg-bases2", INSERT, "redis", WRITERS, 1500);
    assert!(acked.len() > 50, "the load ran: {}", acked.len());
    wait_until("pg-replica to accept writes", 60, || {
        writable(&lab, "pg-replica")
    });
    w.wait_for("failover done", 30);
    let spool = std::fs::read_to_string(lab.dir.path().join("spool.jsonl")).unwrap_or_default();
    assert!(
        spool.contains("\"failover\"") && spool.contains("unattended"),
        "the failover's journal is in the spool:\n{spool}"
    );
    assert_eq!(writable_nodes(&lab), vec!["pg-replica"]);

    lab.start_redis();
    wait_until("the failover's journal in Redis", 30, || {
        !runs_of(&lab.stream("journal"), "failover", "end").is_empty()
    });
    let journal = lab.stream("journal");
    assert_one_unattended_failover_of_pg_bases2(&journal);
    loss_within_bound(&lab, &acked, "redis", "pg-replica");
    wait_until("the spool to be empty", 10, || {
        std::fs::read_to_string(lab.dir.path().join("spool.jsonl"))
            .map(|s| s.trim().is_empty())
            .unwrap_or(true)
    });
    assert_eq!(w.stop(libc::SIGTERM), 0, "{}", w.output());
    assert!(!writable(&lab, "pg-bases2"));
}

/// The watcher SIGKILLed in the middle of its failover, in the fence of the old primary (at the
/// header of the step "Fence the old primary ..."; the killed primary's container has exited, so
/// the fence goes through a one-off container on its data volume and takes a while), then
/// started again: it finds the record of the failover it had decided, sees that no node accepts
/// writes, and finishes it.
///
/// (Killed at the header of "Promote ...", the kill lands after the promotion was requested more
/// often than not, a few milliseconds in: the run started again then finds the failover done,
/// "Nothing to do", and measures no loss. The fence is where it stays half done.)
#[test]
fn a_watcher_killed_mid_failover_is_started_again_and_finishes_it() {
    let lab = lab_with("wsigk", "");
    let mut w = Watcher::start_killing_at(&lab, "Fence the old primary");
    w.wait_for("acting: holds the lease in Redis", 30);
    std::thread::sleep(Duration::from_millis(500));
    let acked = lab.writes_until_killed("pg-bases2", INSERT, "sigk", WRITERS, 1500);
    let (step, later) = w.wait_killed(60);
    assert!(
        step.starts_with("Fence the old primary pg-bases2"),
        "{step}"
    );
    assert_eq!(later, None, "killed while {step:?} was under way");
    let before = w.output();
    assert!(!before.contains("failover done"), "{before}");
    // Not promoted: no node accepts writes.
    assert_eq!(writable_nodes(&lab), Vec::<&str>::new());
    assert_eq!(lab.container_state("pg-bases2"), "exited");

    let mut w2 = Watcher::start(&lab, None);
    w2.wait_for("acting: holds the lease in Redis", 30);
    w2.wait_for("did not finish", 10);
    w2.wait_for("failover done", 60);
    wait_until("pg-replica to accept writes", 30, || {
        writable(&lab, "pg-replica")
    });
    let out = w2.output();
    assert!(
        out.contains("last finished step \"Check the standby is close enough"),
        "{out}"
    );
    assert_eq!(writable_nodes(&lab), vec!["pg-replica"]);
    let journal = lab.stream("journal");
    let starts = runs_of(&journal, "failover", "start");
    assert_eq!(starts.len(), 2, "{starts:?}");
    let ends = runs_of(&journal, "failover", "end");
    assert_eq!(ends.len(), 1, "the killed run has no end: {ends:?}");
    assert_eq!(ends[0]["outcome"], "ok", "{:?}", ends[0]);
    assert!(
        ends[0]["trigger"].contains("did not finish"),
        "{:?}",
        ends[0]
    );
    assert!(
        notes(&journal, "interrupted")
            .iter()
            .any(|n| n.contains(&starts[0]["run_id"])),
        "{journal:?}"
    );
    loss_within_bound(&lab, &acked, "sigk", "pg-replica");
    // Nothing left to finish: a third watcher does nothing.
    assert_eq!(w2.stop(libc::SIGTERM), 0, "{}", w2.output());
    let mut w3 = Watcher::start(&lab, None);
    w3.wait_for("acting: holds the lease in Redis", 30);
    std::thread::sleep(Duration::from_secs(2));
    assert!(!w3.output().contains("did not finish"), "{}", w3.output());
    assert_eq!(
        runs_of(&lab.stream("journal"), "failover", "start").len(),
        2
    );
    assert_eq!(w3.stop(libc::SIGTERM), 0, "{}", w3.output());
}

/// A switchover typed by hand while a watcher runs: the switchover shuts the primary down on
/// purpose, and the watcher must hold off (`hold_watchers()`) rather than start a failover of its
/// own beside it. Once the run is over the hold is gone: a kill of the new primary is failed
/// over as usual.
#[test]
fn a_switchover_by_hand_holds_the_watcher_off_and_the_hold_ends_with_it() {
    let lab = lab_with("wsw", "");
    let mut w = Watcher::start(&lab, None);
    w.wait_for("acting: holds the lease in Redis", 30);
    std::thread::sleep(Duration::from_millis(500)); // a probe saw the standby stream
    for _ in 0..2 {
        let r = lab.pgrunbook(&["run", "switchover"]).succeeds();
        assert!(
            r.stdout.contains("watchers hold off until this run ends"),
            "{}",
            r.stdout
        );
        std::thread::sleep(Duration::from_secs(1)); // the watcher's probes after the run
    }
    let journal = lab.stream("journal");
    assert_eq!(runs_of(&journal, "switchover", "end").len(), 2);
    assert!(
        runs_of(&journal, "failover", "start").is_empty(),
        "the watcher failed over during a switchover:\n{}",
        w.output()
    );
    // It saw the primary go down and said why it did nothing.
    let held = notes(&journal, "held");
    eprintln!("watcher held off: {held:?}");
    assert!(
        held.iter()
            .any(|n| n.contains("a planned operation is under way: switchover run")),
        "{}",
        w.output()
    );
    // Two switchovers: pg-bases2 is the primary again. The hold ended with the run.
    assert!(writable(&lab, "pg-bases2"));
    let out = lab.docker(&["kill", "-s", "KILL", &lab.container("pg-bases2")]);
    assert!(out.status.success());
    wait_until("pg-replica to accept writes", 60, || {
        writable(&lab, "pg-replica")
    });
    w.wait_for("failover done", 30);
    assert_eq!(runs_of(&lab.stream("journal"), "failover", "end").len(), 1);
    assert_eq!(w.stop(libc::SIGTERM), 0, "{}", w.output());
}

/// setup restarts the primary when it configures archiving: a watcher holds off meanwhile, as
/// for a switchover, instead of taking the restart for a failure.
#[test]
fn setup_restarting_the_primary_holds_the_watcher_off() {
    let lab = lab_with("wsetup", "");
    // Archiving off, as on a pair pgrunbook did not set up (restarted before any watcher runs).
    lab.client("pg-bases2")
        .batch_execute("ALTER SYSTEM SET archive_mode = off")
        .unwrap();
    assert!(lab
        .docker(&["restart", &lab.container("pg-bases2")])
        .status
        .success());
    wait_until("pg-bases2 to answer", 60, || writable(&lab, "pg-bases2"));
    let mut w = Watcher::start(&lab, None);
    w.wait_for("acting: holds the lease in Redis", 30);
    std::thread::sleep(Duration::from_millis(500)); // a probe saw the standby stream
    let r = lab
        .pgrunbook(&["run", "setup", "--set", "configure_archiving=true"])
        .succeeds();
    assert!(
        r.stdout.contains("watchers hold off until this run ends")
            && r.stdout.contains("then restarting it cleanly"),
        "{}",
        r.stdout
    );
    std::thread::sleep(Duration::from_secs(1)); // the watcher's probes after the run
    let journal = lab.stream("journal");
    assert!(
        runs_of(&journal, "failover", "start").is_empty(),
        "the watcher failed over during setup:\n{}",
        w.output()
    );
    let held = notes(&journal, "held");
    assert!(
        held.iter()
            .any(|n| n.contains("a planned operation is under way: setup run")),
        "{held:?}\n{}",
        w.output()
    );
    assert!(lab.query_bool("pg-bases2", "SELECT current_setting('archive_mode') = 'on'"));
    assert_eq!(w.stop(libc::SIGTERM), 0, "{}", w.output());
}

/// rotate-replication-password and repair-replication-login restart the standby's replication
/// connection on purpose: a watcher holds off while they run (`hold_watchers()`), as for a
/// switchover, rather than read the standby's reconnection as a fault.
#[test]
fn password_rotation_and_login_repair_hold_the_watcher_off() {
    let lab = lab_with("wrot", "");
    let mut w = Watcher::start(&lab, None);
    w.wait_for("acting: holds the lease in Redis", 30);

    // Someone changes the role's password on the primary; the standby's next login fails.
    lab.client("pg-bases2")
        .simple_query("ALTER ROLE replicator PASSWORD 'changed-by-someone-else'")
        .unwrap();
    lab.client("pg-bases2")
        .simple_query("SELECT pg_terminate_backend(pid) FROM pg_stat_replication")
        .unwrap();
    let r = lab
        .pgrunbook(&["run", "repair-replication-login"])
        .succeeds();
    assert!(
        r.stdout.contains("watchers hold off until this run ends"),
        "{}",
        r.stdout
    );

    let r = lab
        .pgrunbook_env(
            &["run", "rotate-replication-password"],
            &[(
                "PGRUNBOOK_NEW_REPLICATION_PASSWORD",
                "rotated-in-watch-test",
            )],
        )
        .succeeds();
    assert!(
        r.stdout.contains("watchers hold off until this run ends"),
        "{}",
        r.stdout
    );
    std::thread::sleep(Duration::from_secs(1)); // the watcher's probes after the runs
    let journal = lab.stream("journal");
    assert!(runs_of(&journal, "failover", "start").is_empty());
    assert_eq!(
        runs_of(&journal, "rotate-replication-password", "end")[0]["outcome"],
        "ok"
    );
    assert_eq!(w.stop(libc::SIGTERM), 0, "{}", w.output());
}

/// With `auto_rejoin`, the watcher fails over a killed primary, then runs failback by itself
/// once the old primary's container is started again: it comes back as a standby of the new
/// primary, fenced no more, and the failback is journaled as unattended.
#[test]
fn auto_rejoin_runs_failback_when_the_fenced_node_is_back() {
    let lab = lab_with("wrejoin", "[watch]\nsettings = { auto_rejoin = true }\n");
    let mut w = Watcher::start(&lab, None);
    w.wait_for("auto_rejoin true", 30);
    w.wait_for("acting: holds the lease in Redis", 30);
    std::thread::sleep(Duration::from_millis(500)); // a probe saw the standby stream
    let out = lab.docker(&["kill", "-s", "KILL", &lab.container("pg-bases2")]);
    assert!(out.status.success());
    w.wait_for("failover done", 90);
    start_by_hand(&lab, "pg-bases2");
    w.wait_for("rejoin: pg-bases2 is fenced", 30);
    w.wait_for("failback done", 180);

    assert!(writable(&lab, "pg-replica"));
    assert!(lab.query_bool("pg-bases2", "SELECT pg_is_in_recovery()"));
    assert!(!lab.is_fenced("pg-bases2"));
    wait_until("pg-bases2 to stream from pg-replica", 60, || {
        lab.query_i64(
            "pg-replica",
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
        ) == 1
    });
    let journal = lab.stream("journal");
    let ends = runs_of(&journal, "failback", "end");
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0]["outcome"], "ok", "{:?}", ends[0]);
    assert_eq!(ends[0].get("unattended").map(String::as_str), Some("true"));
    assert_eq!(w.stop(libc::SIGTERM), 0, "{}", w.output());
}

/// Ctrl-C twice during an unattended failback abandons it and says how to finish it: with
/// `pgrunbook run failback`, not `failover` (the watcher used to give it the failover's kind).
#[test]
fn an_unattended_failback_abandoned_by_ctrl_c_is_named_a_failback() {
    let lab = lab_with("wrejoinc", "[watch]\nsettings = { auto_rejoin = true }\n");
    let mut w = Watcher::start(&lab, None);
    w.wait_for("acting: holds the lease in Redis", 30);
    std::thread::sleep(Duration::from_millis(500)); // a probe saw the standby stream
    let out = lab.docker(&["kill", "-s", "KILL", &lab.container("pg-bases2")]);
    assert!(out.status.success());
    w.wait_for("failover done", 90);
    start_by_hand(&lab, "pg-bases2");
    w.wait_for("rejoin: pg-bases2 is fenced", 30);
    assert_eq!(unsafe { libc::kill(w.pid(), libc::SIGINT) }, 0);
    w.wait_for("finishing the failback under way first", 10);
    let code = w.stop(libc::SIGINT);
    let out = w.output();
    assert!(
        out.contains(
            "abandoning the failback at its next safe point; `pgrunbook run failback` finishes it"
        ),
        "{out}"
    );
    assert!(!out.contains("`pgrunbook run failover`"), "{out}");
    assert!(
        out.contains("the watcher stopped in the middle of a failback: run `pgrunbook run failback` to finish it"),
        "{out}"
    );
    assert_ne!(code, 0, "{out}");
}
