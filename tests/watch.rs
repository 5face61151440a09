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
}

impl Watcher {
    fn start(lab: &TestLab, data_dir: Option<&std::path::Path>) -> Watcher {
        let mut cmd = lab.command(&["watch"]);
        if let Some(d) = data_dir {
            cmd.env("PGRUNBOOK_DATA_DIR", d);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let out = out.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { return };
                    out.lock().unwrap().push_str(&(line + "\n"));
                }
            });
        }
        Watcher { child, out }
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
    let ends = runs_of(&journal, "failover", "end");
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0]["outcome"], "ok", "{:?}", ends[0]);
    assert_eq!(ends[0].get("unattended").map(String::as_str), Some("true"));
    assert!(ends[0]["trigger"].contains("exited"), "{:?}", ends[0]);
    assert!(
        notes(&journal, "decision")
            .iter()
            .any(|n| n.contains("failover: primary pg-bases2 is out")),
        "{journal:?}"
    );
    // Afterwards the watcher warns that there is no standby, and does nothing else.
    w.wait_for("warning: standby pg-bases2 is not ready", 10);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        runs_of(&lab.stream("journal"), "failover", "start").len(),
        1
    );
    assert_eq!(w.stop(libc::SIGTERM), 0, "{}", w.output());

    // Started again by hand, the old primary is a read-only standby (the fence).
    assert!(lab
        .docker(&["start", &lab.container("pg-bases2")])
        .status
        .success());
    wait_until("pg-bases2 to answer", 60, || {
        lab.try_client("pg-bases2").is_some()
    });
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
    assert!(lab
        .docker(&["start", &lab.container("pg-bases2")])
        .status
        .success());
    wait_until("pg-bases2 to answer", 60, || {
        lab.try_client("pg-bases2").is_some()
    });
    assert!(!writable(&lab, "pg-bases2"));
    assert!(writable(&lab, "pg-replica"));
}
