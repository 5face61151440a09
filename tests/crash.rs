//! Issue 5: crash-safe re-runs. For each shipped runbook that changes the cluster, the host is
//! killed with SIGKILL at each step in turn (and in the middle of the long steps: setup's clone,
//! failback's pg_rewind and the pgBackRest backup); the same runbook run again must finish the
//! job and leave the lab healthy, with verify passing. Steps are named by their titles, not their
//! numbers, and the step named must be the one under way when the kill lands: a runbook whose
//! steps change cannot move a kill point to another step unnoticed.
//!
//! The suite (`scripts/test.sh`, CI) runs failover's and a called switchover's; setup's,
//! failback's and backup's are repeated chaos rounds that `scripts/test-more.sh` runs, to keep
//! the suite under 20 minutes (each of those runbooks has its own end-to-end tests in the suite).

mod common;
use common::*;

#[test]
#[ignore = "repeated chaos rounds: scripts/test-more.sh (keeps scripts/test.sh under 20 minutes)"]
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
#[ignore = "repeated chaos rounds: scripts/test-more.sh (keeps scripts/test.sh under 20 minutes)"]
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
#[ignore = "repeated chaos rounds: scripts/test-more.sh (keeps scripts/test.sh under 20 minutes)"]
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

/// A custom runbook that calls the shipped switchover as a function (issue 19), as a user writes it.
const MY_SWITCHOVER: &str = r#"//! A custom procedure around the shipped switchover: a step of its own before and after.
import "switchover" as switchover;

step("Before the switchover");
let r = switchover::run(#{});
step("After the switchover");
print(`custom: ${r.to} is the primary`);
"#;

#[test]
fn a_switchover_called_from_another_runbook_recovers_from_a_kill_inside_it() {
    let lab = TestLab::replicating("crnest");
    lab.script("runbooks/my-switchover.rhai", MY_SWITCHOVER);
    // The called procedure's steps carry its name in the outer run.
    let steps = [
        "switchover: Stop writes",
        "has received and replayed everything",
        "switchover: Promote",
        "without a rewind",
        "as a standby of",
        "switchover: Lift the switchover fence",
    ];
    let mut n = 0;
    kill_at_each(
        &lab,
        "my-switchover",
        &points(&steps, &[]),
        || {},
        |step| {
            // Finished by the outer runbook run again, or by the shipped one, in turn.
            n += 1;
            let runbook = if n % 2 == 1 {
                "my-switchover"
            } else {
                "switchover"
            };
            let r = lab.pgrunbook(&["run", runbook]);
            assert_eq!(
                r.code, 0,
                "{runbook} after a kill in \"{step}\":\n{}\n{}",
                r.stdout, r.stderr
            );
            if runbook == "my-switchover" {
                assert!(
                    r.stdout.contains("==> [1] Before the switchover"),
                    "{}",
                    r.stdout
                );
                assert!(
                    r.stdout.contains("] switchover: Check the pair is healthy"),
                    "{}",
                    r.stdout
                );
            }
            lab.pgrunbook(&["run", "verify"]).succeeds();
            assert!(
                !lab.is_fenced("pg-bases2") && !lab.is_fenced("pg-replica"),
                "a fence is left after a kill in \"{step}\" and a re-run of {runbook}"
            );
        },
    );
    // The journal of the outer run tells one story: its own steps and the switchover's.
    let steps: Vec<String> = lab
        .stream("journal")
        .iter()
        .filter(|e| e.get("runbook").map(String::as_str) == Some("my-switchover"))
        .filter(|e| e.get("event").map(String::as_str) == Some("step"))
        .map(|e| e["step"].clone())
        .collect();
    assert!(
        steps.iter().any(|s| s == "Before the switchover"),
        "{steps:?}"
    );
    assert!(
        steps.iter().any(|s| s.starts_with("switchover: Promote ")),
        "{steps:?}"
    );
}
