//! Issue 5: crash-safe re-runs. For each shipped runbook that changes the cluster, the host is
//! killed with SIGKILL at each step in turn (and in the middle of the long steps: the base
//! backups and the pgBackRest backup); the same runbook run again must finish the job and leave
//! the lab healthy, with verify passing.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs `pgrunbook run <runbook>` and SIGKILLs it `delay_ms` after step `k` starts. Returns the
/// title of the step it was killed in, or None when the run ended before reaching step k.
fn kill_at_step(lab: &TestLab, runbook: &str, k: usize, delay_ms: u64) -> Option<String> {
    let mut child = Command::new(BIN)
        .args(["run", runbook])
        .current_dir(lab.dir.path())
        .env("PGRUNBOOK_CONFIG", &lab.config_path)
        .env("PGRUNBOOK_DATA_DIR", &lab.data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let marker = format!("==> [{k}] ");
    let mut killed_in = None;
    for line in BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        if let Some(title) = line.strip_prefix(&marker) {
            std::thread::sleep(Duration::from_millis(delay_ms));
            unsafe {
                libc::kill(child.id() as i32, libc::SIGKILL);
            }
            killed_in = Some(title.to_string());
            break;
        }
    }
    let _ = child.wait();
    killed_in
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

/// Kill points: every step at its start, and the given long steps also half a second in.
fn points(long_steps: &[usize]) -> Vec<(usize, u64)> {
    let mut p: Vec<(usize, u64)> = (1..=12).map(|k| (k, 0)).collect();
    p.extend(long_steps.iter().map(|k| (*k, 500)));
    p
}

#[test]
fn setup_recovers_from_a_kill_at_every_step() {
    let lab = TestLab::up("crsetup");
    let mut tally = Tally {
        runbook: "setup",
        points: vec![],
    };
    // Step 7 is the base backup.
    for (k, delay) in points(&[7]) {
        // A fresh lab for each kill point: the standby has never been cloned.
        lab.pgrunbook(&["lab", "down", "--volumes"]).succeeds();
        lab.pgrunbook(&["lab", "up"]).succeeds();
        let Some(step) = kill_at_step(&lab, "setup", k, delay) else {
            continue;
        };
        lab.pgrunbook(&["run", "setup"]).succeeds();
        lab.pgrunbook(&["run", "verify"]).succeeds();
        tally.points.push(format!("step {k} +{delay} ms: {step}"));
    }
    assert!(tally.points.len() >= 9, "{:?}", tally.points);
}

#[test]
fn failover_recovers_from_a_kill_at_every_step() {
    let lab = TestLab::replicating("crfail");
    let mut tally = Tally {
        runbook: "failover",
        points: vec![],
    };
    for (k, delay) in points(&[]) {
        let Some(step) = kill_at_step(&lab, "failover", k, delay) else {
            continue;
        };
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
        tally.points.push(format!("step {k}: {step}"));
    }
    assert!(
        tally.points.iter().any(|p| p.contains("Promote")),
        "the moment between fencing and promotion is covered"
    );
    assert!(tally.points.len() >= 7, "{:?}", tally.points);
}

#[test]
fn failback_recovers_from_a_kill_at_every_step() {
    let lab = TestLab::replicating("crback");
    let mut tally = Tally {
        runbook: "failback",
        points: vec![],
    };
    // Step 4 is the base backup.
    for (k, delay) in points(&[4]) {
        lab.pgrunbook(&["run", "failover"]).succeeds();
        let Some(step) = kill_at_step(&lab, "failback", k, delay) else {
            lab.pgrunbook(&["run", "failback"]).succeeds();
            continue;
        };
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
        tally.points.push(format!("step {k} +{delay} ms: {step}"));
    }
    assert!(tally.points.len() >= 8, "{:?}", tally.points);
}

#[test]
fn backup_recovers_from_a_kill_at_every_step() {
    let lab = TestLab::replicating("crbackup");
    let mut tally = Tally {
        runbook: "backup",
        points: vec![],
    };
    // Step 6 is the backup itself.
    for (k, delay) in points(&[6]) {
        let Some(step) = kill_at_step(&lab, "backup", k, delay) else {
            continue;
        };
        lab.pgrunbook(&["run", "backup"])
            .succeeds()
            .stdout_has("Backup ");
        lab.pgrunbook(&["run", "verify"]).succeeds();
        tally.points.push(format!("step {k} +{delay} ms: {step}"));
    }
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
    assert!(tally.points.len() >= 7, "{:?}", tally.points);
}
