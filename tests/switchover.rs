//! Issue 13: `run switchover` on real containers. Under a write load (several writers, each
//! recording every commit acknowledged to it, through the published ports, independently of
//! pgrunbook), two switchovers swap the roles and bring them back with no acknowledged commit
//! missing; a pair that is not healthy is refused with nothing changed; and a SIGKILL of
//! pgrunbook at every step, followed by a re-run, ends in a healthy pair with nothing lost.

mod common;
use common::*;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const NODES: [&str; 2] = ["pg-bases2", "pg-replica"];

/// Writers that insert into `sw_load` on whichever node accepts writes, each in autocommit on
/// its own connection, recording every value whose commit was acknowledged (and when). A failed
/// statement or connection is not acknowledged: the writer finds the primary again.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(String, Instant)>>>,
    handles: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(lab: &TestLab, writers: usize) -> Load {
        let primary = primary(lab).expect("a primary");
        lab.client(primary)
            .batch_execute("CREATE TABLE IF NOT EXISTS sw_load (id bigserial PRIMARY KEY, val text UNIQUE NOT NULL)")
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let handles = (0..writers)
            .map(|w| {
                let cfgs: Vec<postgres::Config> = NODES.iter().map(|n| lab.pg_config(n)).collect();
                let (stop, acked) = (stop.clone(), acked.clone());
                std::thread::spawn(move || {
                    let mut client: Option<postgres::Client> = None;
                    let mut i = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        let Some(c) = client.as_mut() else {
                            client = cfgs.iter().find_map(|cfg| {
                                let mut c = cfg.connect(postgres::NoTls).ok()?;
                                let standby: bool =
                                    c.query_one("SELECT pg_is_in_recovery()", &[]).ok()?.get(0);
                                (!standby).then_some(c)
                            });
                            if client.is_none() {
                                std::thread::sleep(Duration::from_millis(5));
                            }
                            continue;
                        };
                        let val = format!("w{w}-{i}");
                        i += 1;
                        match c.execute("INSERT INTO sw_load(val) VALUES ($1)", &[&val]) {
                            Ok(_) => acked.lock().unwrap().push((val, Instant::now())),
                            Err(_) => client = None,
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            acked,
            handles,
        }
    }

    fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// The longest time between two acknowledged commits since `from`: what the clients saw of
    /// the switchover.
    fn longest_gap_since(&self, from: Instant) -> Duration {
        let mut times: Vec<Instant> = self
            .acked
            .lock()
            .unwrap()
            .iter()
            .map(|(_, t)| *t)
            .filter(|t| *t >= from)
            .collect();
        times.sort();
        times
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    }

    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles {
            h.join().unwrap();
        }
        Arc::try_unwrap(self.acked)
            .unwrap()
            .into_inner()
            .unwrap()
            .into_iter()
            .map(|(v, _)| v)
            .collect()
    }
}

/// The node that answers and is not in recovery, asked directly.
fn primary(lab: &TestLab) -> Option<&'static str> {
    NODES.into_iter().find(|n| {
        lab.try_client(n)
            .and_then(|mut c| c.query_one("SELECT pg_is_in_recovery()", &[]).ok())
            .is_some_and(|r| !r.get::<_, bool>(0))
    })
}

/// Asserts that `primary` accepts writes and the other node is its streaming standby.
fn assert_roles(lab: &TestLab, primary_node: &str, context: &str) {
    let standby = NODES.into_iter().find(|n| *n != primary_node).unwrap();
    assert_eq!(
        primary(lab),
        Some(NODES.into_iter().find(|n| *n == primary_node).unwrap()),
        "{context}"
    );
    assert!(
        lab.query_bool(standby, "SELECT pg_is_in_recovery()"),
        "{context}"
    );
    let streaming = lab.query_i64(
        primary_node,
        "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
    );
    assert_eq!(
        streaming, 1,
        "{context}: {standby} does not stream from {primary_node}"
    );
    assert!(
        !lab.is_fenced(standby),
        "{context}: {standby} is still fenced"
    );
}

/// Every acknowledged value is on `node`.
fn assert_nothing_missing(lab: &TestLab, node: &str, acked: &[String]) {
    let present: HashSet<String> = lab
        .query_strings(node, "SELECT val FROM sw_load")
        .into_iter()
        .collect();
    let missing: Vec<&String> = acked.iter().filter(|v| !present.contains(*v)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged commits are missing on {node}: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)]
    );
}

/// The journal's metric `key` of the last run of `runbook`, read in Redis directly.
fn last_metric(lab: &TestLab, runbook: &str, key: &str) -> Option<String> {
    lab.stream("journal")
        .into_iter()
        .rev()
        .filter(|e| e.get("runbook").map(String::as_str) == Some(runbook))
        .find_map(|e| {
            e.get(key).cloned().or_else(|| {
                e.values().find_map(|v| {
                    let j: serde_json::Value = serde_json::from_str(v).ok()?;
                    j.get(key)
                        .map(|x| x.as_str().map(str::to_string).unwrap_or(x.to_string()))
                })
            })
        })
}

#[test]
fn switchover_twice_under_load_loses_no_acknowledged_commit() {
    let lab = TestLab::replicating("swload");
    let load = Load::start(&lab, 4);
    std::thread::sleep(Duration::from_millis(1000));

    let mut gaps = vec![];
    for (round, primary_after) in [(1, "pg-replica"), (2, "pg-bases2")] {
        let before = load.count();
        let t = Instant::now();
        let r = lab
            .pgrunbook(&["run", "switchover"])
            .succeeds()
            .stdout_has("verify: all checks passed")
            .stdout_has("Switchover done")
            .stdout_lacks("Rewind");
        assert_roles(
            &lab,
            primary_after,
            &format!("after switchover {round}\n{}", r.stdout),
        );
        // Writes go on on the new primary.
        std::thread::sleep(Duration::from_millis(700));
        assert!(
            load.count() > before,
            "no commit acknowledged after switchover {round}"
        );
        let gap = load.longest_gap_since(t);
        let unavailable = last_metric(&lab, "switchover", "writes_unavailable_ms");
        let total = last_metric(&lab, "switchover", "total_ms");
        assert!(
            unavailable.is_some() && total.is_some(),
            "journal lacks the switchover's times"
        );
        eprintln!(
            "switchover {round}: writers saw no commit for {} ms at most; journal: writes unavailable {} ms, total {} ms",
            gap.as_millis(),
            unavailable.unwrap(),
            total.unwrap()
        );
        gaps.push(gap);
    }
    let acked = load.finish();
    assert!(acked.len() > 100, "too few commits: {}", acked.len());
    assert_nothing_missing(&lab, "pg-bases2", &acked);
    eprintln!("{} acknowledged commits, none missing", acked.len());
}

#[test]
fn switchover_refuses_when_the_standby_is_down_and_changes_nothing() {
    let lab = TestLab::replicating("swdown");
    let out = lab.docker(&["stop", &lab.container("pg-replica")]);
    assert!(out.status.success());
    let auto_conf = |node: &str| {
        String::from_utf8_lossy(
            &lab.docker(&[
                "exec",
                &lab.container(node),
                "cat",
                "/var/lib/postgresql/data/postgresql.auto.conf",
            ])
            .stdout,
        )
        .into_owned()
    };
    let slots = || {
        lab.query_strings(
            "pg-bases2",
            "SELECT slot_name::text FROM pg_replication_slots ORDER BY 1",
        )
    };
    let (conf_before, slots_before) = (auto_conf("pg-bases2"), slots());

    lab.pgrunbook(&["run", "switchover"])
        .fails_with(4)
        .stderr_has("not a healthy pair")
        .stderr_has("Nothing was changed");
    lab.pgrunbook(&["run", "switchover", "--dry-run"])
        .fails_with(4);

    assert_eq!(lab.container_state("pg-replica"), "exited");
    assert_eq!(primary(&lab), Some("pg-bases2"));
    lab.client("pg-bases2")
        .batch_execute("CREATE TABLE still_writable(x int); DROP TABLE still_writable")
        .unwrap();
    assert!(!lab.is_fenced("pg-bases2"));
    assert_eq!(auto_conf("pg-bases2"), conf_before);
    assert_eq!(slots(), slots_before);
}

#[test]
fn switchover_recovers_from_a_kill_at_every_step() {
    let lab = TestLab::replicating("swcrash");
    let load = Load::start(&lab, 2);
    let steps = [
        "Check the pair is healthy",
        "Prepare",
        "Stop writes",
        "has received and replayed everything",
        "Promote",
        "without a rewind",
        "as a standby of",
        "Synchronous replication",
        "Drop slots",
        "Lift the switchover fence",
        "Verify",
    ];
    kill_at_each(
        &lab,
        "switchover",
        // Starting the old primary as a standby is the long step: killed also 150 ms into it
        // (on an idle machine the whole step can take less than the 500 ms other runbooks' long
        // steps are killed at, and a kill after the step is retried, then fails the test).
        &points(&steps, &[])
            .into_iter()
            .chain([("as a standby of", 150)])
            .collect::<Vec<_>>(),
        || {},
        |step| {
            let r = lab.pgrunbook(&["run", "switchover"]);
            assert_eq!(
                r.code, 0,
                "re-run after a kill in \"{step}\":\n{}\n{}",
                r.stdout, r.stderr
            );
            let p = primary(&lab).unwrap_or_else(|| panic!("no primary after a kill in {step}"));
            assert_roles(&lab, p, &format!("after a kill in \"{step}\" and a re-run"));
        },
    );
    let acked = load.finish();
    let p = primary(&lab).unwrap();
    assert_nothing_missing(&lab, p, &acked);
    eprintln!("{} acknowledged commits, none missing", acked.len());
}

/// `SHOW name` on a node, read directly.
fn show(lab: &TestLab, node: &str, name: &str) -> String {
    lab.query_strings(node, &format!("SHOW {name}"))[0].clone()
}

#[test]
fn rolling_restart_example_applies_settings_to_both_nodes_under_load_with_one_switchover() {
    let lab = TestLab::replicating("swroll");
    let runbook = "examples/rolling-restart";

    // Its dry run shows the whole plan, the parts that depend on the switchover marked, and
    // changes nothing.
    let r = lab
        .pgrunbook(&["run", runbook, "--dry-run", "--set", "back=true"])
        .succeeds()
        .stdout_has("] switchover: Promote pg-replica")
        .stdout_has("not simulated past here: depends on the switchover to pg-replica above")
        .stdout_has("] Switch back to pg-bases2")
        .stdout_lacks("refused");
    for node in ["pg-replica", "pg-bases2"] {
        for (name, value) in [("shared_buffers", "256MB"), ("max_connections", "200")] {
            let line = format!("would ALTER SYSTEM SET \"{name}\" = '{value}'");
            assert!(
                r.stdout
                    .lines()
                    .any(|l| l.contains(&line) && l.ends_with(&format!("on {node}"))),
                "the plan lacks {line} on {node}:\n{}",
                r.stdout
            );
        }
        assert_eq!(show(&lab, node, "shared_buffers"), "128MB");
    }

    // The real run, under a write load.
    let load = Load::start(&lab, 4);
    std::thread::sleep(Duration::from_millis(1000));
    let t = Instant::now();
    let r = lab
        .pgrunbook(&["run", runbook])
        .succeeds()
        .stdout_has("verify: all checks passed");
    assert_eq!(
        r.stdout.matches("] switchover: Promote ").count(),
        1,
        "one switchover:\n{}",
        r.stdout
    );
    for node in NODES {
        assert_eq!(show(&lab, node, "shared_buffers"), "256MB", "{node}");
        assert_eq!(show(&lab, node, "max_connections"), "200", "{node}");
    }
    assert_roles(&lab, "pg-replica", &r.stdout);
    let before = load.count();
    std::thread::sleep(Duration::from_millis(700));
    assert!(load.count() > before, "no commit after the rolling restart");
    let gap = load.longest_gap_since(t);
    let acked = load.finish();
    assert_nothing_missing(&lab, "pg-replica", &acked);
    eprintln!(
        "rolling restart: {} acknowledged commits, none missing; writers saw no commit for {} ms at most; journal: writes unavailable {:?} ms",
        acked.len(),
        gap.as_millis(),
        last_metric(&lab, runbook, "writes_unavailable_ms")
    );

    // Run again, it finds the settings in force and changes nothing.
    lab.pgrunbook(&["run", runbook])
        .succeeds()
        .stdout_has("in force on pg-bases2 already")
        .stdout_lacks("switchover: Promote");
}

/// `synchronous = true`: after setup the primary waits for its standby; a switchover moves
/// that to the new primary (commits there wait for the old primary, now its standby). Twice:
/// the roles come back, synchronous.
#[test]
fn switchover_in_synchronous_mode_keeps_commits_waiting_for_the_standby() {
    let lab = TestLab::up("swsync");
    let env = [("PGRUNBOOK_CLUSTER__SYNCHRONOUS", "true")];
    lab.pgrunbook_env(&["run", "setup"], &env).succeeds();
    let sync_state = |node: &str| {
        lab.query_strings(node, "SELECT sync_state FROM pg_stat_replication")
            .join(",")
    };
    let names = |node: &str| {
        lab.query_strings(node, "SELECT current_setting('synchronous_standby_names')")[0].clone()
    };
    assert_eq!(sync_state("pg-bases2"), "sync");
    for (from, to) in [("pg-bases2", "pg-replica"), ("pg-replica", "pg-bases2")] {
        lab.pgrunbook_env(&["run", "switchover"], &env).succeeds();
        assert_roles(&lab, to, &format!("after the switchover from {from}"));
        let end = Instant::now() + Duration::from_secs(30);
        while sync_state(to) != "sync" {
            assert!(
                Instant::now() < end,
                "{to}'s standby never became synchronous: {:?}",
                sync_state(to)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(names(to), "*", "{to} waits for its standby");
        // (The old primary keeps its own setting: a standby in recovery waits for nobody, and
        // a failover clears it on the node it promotes.)
        assert!(lab.query_bool(from, "SELECT pg_is_in_recovery()"));
        // A commit on the new primary returns: its synchronous standby acknowledges it.
        let mut c = lab.client(to);
        c.batch_execute("SET statement_timeout = '20s'").unwrap();
        c.batch_execute("INSERT INTO public.replica_test(val) VALUES ('sync-switchover')")
            .unwrap();
    }
}

/// The rewind fallback (issue 18: a path no test ran). A switchover interrupted after it fenced
/// the old primary, whose target was then promoted by hand before it had received the old
/// primary's last WAL: the old primary's shutdown checkpoint lies past the point where the new
/// timeline begins, so it cannot follow as it is. Run again, switchover finishes by rewinding
/// it, says so, and the pair is healthy; what only the old primary had is discarded.
#[test]
fn an_unclean_handover_is_finished_by_a_rewind_that_says_so() {
    let lab = TestLab::replicating("swrew");
    lab.client("pg-bases2")
        .batch_execute("CREATE TABLE sw_rewind(v int); INSERT INTO sw_rewind VALUES (1)")
        .unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while lab
        .client("pg-replica")
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = 'sw_rewind'",
            &[],
        )
        .unwrap()
        .get::<_, i64>(0)
        == 0
        || lab.query_i64("pg-replica", "SELECT count(*) FROM sw_rewind") == 0
    {
        assert!(
            std::time::Instant::now() < end,
            "the standby never replayed row 1"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The standby stops receiving; the primary writes row 2, which only it has.
    let mut replica = lab.client("pg-replica");
    replica
        .batch_execute("ALTER SYSTEM SET primary_conninfo = ''")
        .unwrap();
    replica.batch_execute("SELECT pg_reload_conf()").unwrap();
    while lab.query_i64("pg-replica", "SELECT count(*) FROM pg_stat_wal_receiver") > 0 {
        assert!(
            std::time::Instant::now() < end,
            "the WAL receiver did not stop"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    lab.client("pg-bases2")
        .batch_execute("INSERT INTO sw_rewind VALUES (2)")
        .unwrap();
    // The state an interrupted switchover leaves, with the promotion done by hand too early:
    // the old primary fenced for the switchover and stopped, the standby promoted.
    lab.client("pg-replica")
        .batch_execute("SELECT pg_promote()")
        .unwrap();
    let state = lab.script(
        "interrupted.rhai",
        "//! t\nfence(\"pg-bases2\", \"switchover to pg-replica\");\nstop_container(\"pg-bases2\");\n",
    );
    lab.pgrunbook(&["run", &state]).succeeds();

    let r = lab
        .pgrunbook(&["run", "switchover"])
        .succeeds()
        .stdout_has("finishing an interrupted switchover from pg-bases2 to pg-replica")
        .stdout_has("Rewind pg-bases2 from pg-replica (the handover was not clean)");
    assert!(
        r.stderr
            .contains("WAL goes past the point where pg-replica's timeline begins"),
        "{}",
        r.stderr
    );
    assert_eq!(
        last_metric(&lab, "switchover", "rejoin").as_deref(),
        Some("rewind")
    );
    assert_roles(&lab, "pg-replica", "after the rewind");
    assert_eq!(
        lab.query_strings("pg-replica", "SELECT v::text FROM sw_rewind ORDER BY v"),
        ["1"],
        "row 1 is kept; row 2, which only the old primary had, is not on the new primary"
    );
    // The rewound node replays the new primary's timeline: it has row 1, not row 2.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while lab.query_strings("pg-bases2", "SELECT v::text FROM sw_rewind ORDER BY v") != ["1"] {
        assert!(std::time::Instant::now() < end, "pg-bases2 was not rewound");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    lab.pgrunbook(&["run", "verify"]).succeeds();
}
