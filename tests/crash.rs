//! Issue 5: crash-safe re-runs. For each shipped runbook that changes the cluster, the host is
//! killed with SIGKILL at each step in turn (and in the middle of the long steps: setup's clone,
//! failback's pg_rewind and the pgBackRest backup); the same runbook run again must finish the
//! job and leave the lab healthy, with verify passing. Steps are named by their titles, not their
//! numbers, and the step named must be the one under way when the kill lands: a runbook whose
//! steps change cannot move a kill point to another step unnoticed.

mod common;
use common::*;

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
