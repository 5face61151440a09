//! Issue 5: crash-safe re-runs. For each shipped runbook that changes the cluster, the host is
//! killed with SIGKILL at each step in turn (and in the middle of the long steps: setup's clone,
//! failback's pg_rewind and the pgBackRest backup); the same runbook run again must finish the
//! job and leave the lab healthy, with verify passing. Steps are named by their titles, not their
//! numbers, and the step named must be the one under way when the kill lands: a runbook whose
//! steps change cannot move a kill point to another step unnoticed.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The title in a step header, `==> [N] Title`.
fn header(line: &str) -> Option<&str> {
    line.strip_prefix("==> [")?.split_once("] ").map(|(_, t)| t)
}

/// Where a kill landed.
struct Kill {
    /// The full title of the step named.
    step: String,
    /// A step that started after it before the kill landed: the named step was over.
    later: Option<String>,
}

/// Runs `pgrunbook run <runbook>` and SIGKILLs it `delay_ms` after the first step whose title
/// contains `title` starts. Fails the test when the run ends without such a step (the runbook's
/// steps have changed: the kill point no longer exists).
fn kill_in_step(lab: &TestLab, runbook: &str, title: &str, delay_ms: u64) -> Kill {
    let mut child = Command::new(BIN)
        .args(["run", runbook])
        .current_dir(lab.dir.path())
        .env("PGRUNBOOK_CONFIG", &lab.config_path)
        .env("PGRUNBOOK_DATA_DIR", &lab.data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = vec![];
    let mut named = None;
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        if let Some(step) = header(&line).filter(|t| t.contains(title)) {
            std::thread::sleep(Duration::from_millis(delay_ms));
            unsafe {
                libc::kill(child.id() as i32, libc::SIGKILL);
            }
            named = Some(step.to_string());
            break;
        }
        printed.push(line);
    }
    let Some(step) = named else {
        let _ = child.wait();
        panic!(
            "{runbook} ended without a step titled \"...{title}...\"; it printed:\n{}",
            printed.join("\n")
        );
    };
    // Whatever it printed before the kill landed is still in the pipe: a later step's header
    // means the named step was no longer under way.
    let later = lines
        .map_while(Result::ok)
        .find_map(|l| header(&l).map(str::to_string));
    let _ = child.wait();
    Kill { step, later }
}

struct Tally {
    runbook: &'static str,
    points: Vec<String>,
}

impl Drop for Tally {
    fn drop(&mut self) {
        eprintln!(
            "{}: killed at {} point(s), every re-run recovered:\n  {}",
            self.runbook,
            self.points.len(),
            self.points.join("\n  ")
        );
    }
}

/// Kill points: every step at its start, and the given long steps also half a second in. Steps
/// are named by a piece of their title, as the runbook prints it.
fn points(steps: &[&'static str], long_steps: &[&'static str]) -> Vec<(&'static str, u64)> {
    let mut p: Vec<(&str, u64)> = steps.iter().map(|t| (*t, 0)).collect();
    p.extend(long_steps.iter().map(|t| (*t, 500)));
    p
}

/// Kills `runbook` at each point in turn, each time after `before`, then calls `recover` (which
/// runs it again and checks the outcome) with the step killed. Every point must be reached, and
/// the step it names must be under way when the kill lands; a kill that lands after the step
/// ended (a step of a few milliseconds, a slow reader on a busy machine) is recovered from and
/// tried again, at most three times.
fn kill_at_each(
    lab: &TestLab,
    runbook: &'static str,
    points: &[(&'static str, u64)],
    mut before: impl FnMut(),
    mut recover: impl FnMut(&str),
) -> Tally {
    let mut tally = Tally {
        runbook,
        points: vec![],
    };
    for &(title, delay) in points {
        for attempt in 1..=3 {
            before();
            let kill = kill_in_step(lab, runbook, title, delay);
            recover(&kill.step);
            match kill.later {
                None => {
                    tally.points.push(format!("+{delay} ms in {}", kill.step));
                    break;
                }
                Some(later) if attempt < 3 => eprintln!(
                    "{runbook}: \"{}\" was over {delay} ms in ({later} had started); again",
                    kill.step
                ),
                Some(later) => panic!(
                    "{runbook}: \"{}\" was over {delay} ms in, three times ({later} had started)",
                    kill.step
                ),
            }
        }
    }
    assert_eq!(tally.points.len(), points.len(), "{:?}", tally.points);
    tally
}

#[test]
fn setup_recovers_from_a_kill_at_every_step() {
    let lab = TestLab::up("crsetup");
    let steps = [
        "Check that the primary answers",
        "Make WAL archiving work",
        "Check whether the standby already streams",
        "Create the replication role",
        "Create the slot",
        "Clone",
        "Wait for",
        "Synchronous replication",
    ];
    kill_at_each(
        &lab,
        "setup",
        // The clone (pg_basebackup) is the long step.
        &points(&steps, &["Clone"]),
        || {
            // A fresh lab for each kill point: the standby has never been cloned.
            lab.pgrunbook(&["lab", "down", "--volumes"]).succeeds();
            lab.pgrunbook(&["lab", "up"]).succeeds();
        },
        |_| {
            lab.pgrunbook(&["run", "setup"]).succeeds();
            lab.pgrunbook(&["run", "verify"]).succeeds();
        },
    );
}

#[test]
fn failover_recovers_from_a_kill_at_every_step() {
    let lab = TestLab::replicating("crfail");
    let steps = [
        "Find the primary and the standby",
        "Record LSNs",
        "Check the standby is close enough",
        "Fence the old primary",
        // The moment between fencing and promotion.
        "Promote",
        "Confirm",
        "Measure the data lost",
        "Stop waiting for a synchronous standby",
        "Wait for",
    ];
    kill_at_each(
        &lab,
        "failover",
        &points(&steps, &[]),
        || {},
        |step| {
            let r = lab.pgrunbook(&["run", "failover"]).succeeds();
            // Finished: one primary, the other fenced and down.
            let primaries: Vec<&str> = ["pg-bases2", "pg-replica"]
                .into_iter()
                .filter(|n| {
                    lab.container_state(n) == "running"
                        && lab.try_client(n).is_some()
                        && !lab.query_bool(n, "SELECT pg_is_in_recovery()")
                })
                .collect();
            assert_eq!(primaries.len(), 1, "after killing at {step}: {}", r.stdout);
            // Healthy again for the next point, and verify passes.
            lab.pgrunbook(&["run", "failback"]).succeeds();
            lab.pgrunbook(&["run", "verify"]).succeeds();
        },
    );
}

#[test]
fn failback_recovers_from_a_kill_at_every_step() {
    let lab = TestLab::replicating("crback");
    let steps = [
        "Find the active primary",
        "Stop ",
        "Create the slot",
        "Rewind",
        "Start ",
        "Synchronous replication",
        "Drop slots",
        "Verify",
    ];
    kill_at_each(
        &lab,
        "failback",
        // pg_rewind is the long step (the lab has wal_log_hints on, so failback rewinds).
        &points(&steps, &["Rewind"]),
        || {
            lab.pgrunbook(&["run", "failover"]).succeeds();
        },
        |step| {
            lab.pgrunbook(&["run", "failback"])
                .succeeds()
                .stdout_has("verify: all checks passed");
            lab.pgrunbook(&["run", "verify"]).succeeds();
            let idle = ["pg-bases2", "pg-replica"]
                .iter()
                .flat_map(|n| {
                    lab.query_strings(
                        n,
                        "SELECT slot_name::text FROM pg_replication_slots WHERE NOT active",
                    )
                })
                .collect::<Vec<_>>();
            assert!(
                idle.is_empty(),
                "unused slots after killing at {step}: {idle:?}"
            );
        },
    );
}

#[test]
fn backup_recovers_from_a_kill_at_every_step() {
    let lab = TestLab::replicating("crbackup");
    let steps = [
        "Find the primary",
        "Write the pgBackRest configuration",
        "Check that WAL archiving works",
        "Checkpoint",
        "Wait for a backup already running",
        "Take a",
        "Record the backup in Redis",
    ];
    kill_at_each(
        &lab,
        "backup",
        // The backup itself is the long step.
        &points(&steps, &["Take a"]),
        || {},
        |_| {
            lab.pgrunbook(&["run", "backup"])
                .succeeds()
                .stdout_has("Backup ");
            lab.pgrunbook(&["run", "verify"]).succeeds();
        },
    );
    // Every backup in the repository is recorded in Redis, interrupted runs' too.
    let info = lab.pgbackrest_info("pg-bases2");
    let labels: Vec<String> = info[0]["backup"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["label"].as_str().unwrap().to_string())
        .collect();
    let recorded: Vec<String> = lab
        .stream("backups")
        .iter()
        .map(|r| r["label"].clone())
        .collect();
    for l in &labels {
        assert!(
            recorded.contains(l),
            "backup {l} is not recorded in Redis: {recorded:?}"
        );
    }
}
