//! Issue 3: the seed's failover, failback and backups as runbooks on real containers, checked
//! by direct queries, not by the runbooks' own word. Each test has its own lab; a test whose
//! behaviour needs an earlier state (failback needs a failover, a backup chain needs backups on
//! both timelines) runs the sequence it needs.

mod common;
use common::*;
use std::time::{Duration, Instant};

fn write_rows(lab: &TestLab, node: &str, tag: &str, n: i64) {
    let mut c = lab.client(node);
    for i in 0..n {
        c.execute(
            "INSERT INTO public.replica_test(val) VALUES ($1)",
            &[&format!("{tag}-{i}")],
        )
        .unwrap();
    }
}

fn count_rows(lab: &TestLab, node: &str, tag: &str) -> i64 {
    lab.client(node)
        .query_one(
            "SELECT count(*) FROM public.replica_test WHERE val LIKE $1",
            &[&format!("{tag}-%")],
        )
        .unwrap()
        .get(0)
}

fn wait_rows(lab: &TestLab, node: &str, tag: &str, n: i64) -> i64 {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let c = count_rows(lab, node, tag);
        if c >= n || Instant::now() > end {
            return c;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The runbooks the journal saw end, oldest first; fails unless every run also has a start.
fn journaled_runs(lab: &TestLab) -> Vec<String> {
    let journal = lab.stream("journal");
    let runs: Vec<String> = journal
        .iter()
        .filter(|e| e["event"] == "end")
        .map(|e| e["runbook"].clone())
        .collect();
    let starts = journal.iter().filter(|e| e["event"] == "start").count();
    assert_eq!(
        starts,
        runs.len(),
        "one start and one end per run: {journal:?}"
    );
    runs
}

/// The metrics of the last run's end entry in the journal, which must be `runbook`'s.
fn last_metrics(lab: &TestLab, runbook: &str) -> serde_json::Value {
    let end = lab
        .stream("journal")
        .into_iter()
        .rfind(|e| e["event"] == "end")
        .unwrap();
    assert_eq!(end["runbook"], runbook, "{end:?}");
    serde_json::from_str(&end["metrics"]).unwrap()
}

#[test]
fn failover_promotes_the_standby_fences_the_old_primary_and_journals_time_and_loss() {
    let lab = TestLab::replicating("pfailover");
    write_rows(&lab, "pg-bases2", "before", 50);

    lab.pgrunbook(&["run", "failover"])
        .succeeds()
        .stdout_has("pg-replica is the primary and accepts writes")
        .stdout_has("Data lost: 0 bytes");
    assert!(!lab.query_bool("pg-replica", "SELECT pg_is_in_recovery()"));
    assert_eq!(
        lab.container_state("pg-bases2"),
        "exited",
        "the old primary is fenced"
    );
    let metrics = last_metrics(&lab, "failover");
    assert!(
        metrics["time_to_writes_ms"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > 0
    );
    assert_eq!(metrics["data_lost_bytes"], "0");
    // Nothing was lost: every row written before is on the new primary, which takes writes.
    assert_eq!(count_rows(&lab, "pg-replica", "before"), 50);
    write_rows(&lab, "pg-replica", "after", 30);

    // Running failover again is a no-op.
    lab.pgrunbook(&["run", "failover"])
        .succeeds()
        .stdout_has("Failover has already happened")
        .stdout_lacks("Promote");
    assert_eq!(lab.container_state("pg-bases2"), "exited");
    assert!(!lab.query_bool("pg-replica", "SELECT pg_is_in_recovery()"));
    assert_eq!(journaled_runs(&lab), ["setup", "failover", "failover"]);
}

#[test]
fn failback_rewinds_the_old_primary_into_a_standby_with_every_row() {
    let lab = TestLab::replicating("pfailback");
    write_rows(&lab, "pg-bases2", "before", 50);
    lab.pgrunbook(&["run", "failover"]).succeeds();
    write_rows(&lab, "pg-replica", "after", 30);

    // pg_rewind: only what diverged, then again as a no-op.
    lab.pgrunbook(&["run", "failback"])
        .succeeds()
        .stdout_has("Rewind pg-bases2 from pg-replica")
        .stdout_lacks("re-cloning")
        .stdout_has("verify: all checks passed");
    let metrics = last_metrics(&lab, "failback");
    assert_eq!(metrics["method"], "rewind", "{metrics}");
    lab.pgrunbook(&["run", "failback"])
        .succeeds()
        .stdout_has("already streams from pg-replica")
        .stdout_lacks("Empty");
    lab.pgrunbook(&["run", "verify"]).succeeds();

    // Roles are swapped.
    assert!(!lab.query_bool("pg-replica", "SELECT pg_is_in_recovery()"));
    assert!(lab.query_bool("pg-bases2", "SELECT pg_is_in_recovery()"));

    // Every row written is on both nodes.
    for node in ["pg-bases2", "pg-replica"] {
        assert_eq!(
            wait_rows(&lab, node, "before", 50),
            50,
            "rows before failover on {node}"
        );
        assert_eq!(
            wait_rows(&lab, node, "after", 30),
            30,
            "rows after failover on {node}"
        );
    }

    // No slot is left without a consumer, on either node.
    for node in ["pg-bases2", "pg-replica"] {
        let idle = lab.query_strings(
            node,
            "SELECT slot_name::text FROM pg_replication_slots WHERE NOT active",
        );
        assert!(idle.is_empty(), "unused slots on {node}: {idle:?}");
    }
    assert_eq!(
        lab.query_strings(
            "pg-replica",
            "SELECT slot_name::text FROM pg_replication_slots"
        ),
        vec!["primary1".to_string()]
    );
    assert_eq!(
        journaled_runs(&lab),
        ["setup", "failover", "failback", "failback", "verify"]
    );
}

#[test]
fn backups_before_and_after_a_failover_form_one_chain_recorded_in_redis() {
    let lab = TestLab::replicating("pbackups");
    // Full on pg-bases2 (timeline 1), incremental on pg-replica after the failover (timeline
    // 2), differential after the failback, all in the repository both nodes share.
    lab.pgrunbook(&["run", "backup"])
        .succeeds()
        .stdout_has("(full)");
    lab.pgrunbook(&["run", "failover"]).succeeds();
    lab.pgrunbook(&["run", "backup", "--set", "type=incr"])
        .succeeds()
        .stdout_has("(incr, based on");
    lab.pgrunbook(&["run", "failback"]).succeeds();
    lab.pgrunbook(&["run", "backup", "--set", "type=diff"])
        .succeeds()
        .stdout_has("(diff, based on");

    // pgBackRest shows the three backups in one chain: full, then incr and diff on it.
    let info = lab.pgbackrest_info("pg-replica");
    let backups = info[0]["backup"].as_array().unwrap();
    assert_eq!(backups.len(), 3, "{backups:#?}");
    let kinds: Vec<&str> = backups
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["full", "incr", "diff"]);
    let full = backups[0]["label"].as_str().unwrap();
    assert_eq!(
        backups[1]["prior"].as_str().unwrap(),
        full,
        "incr builds on the full backup"
    );
    assert_eq!(
        backups[2]["prior"].as_str().unwrap(),
        full,
        "diff builds on the full backup"
    );
    for b in &backups[1..] {
        assert!(b["reference"].as_array().unwrap().iter().any(|r| r == full));
    }
    // The full backup was taken on timeline 1 (pg-bases2), the incr after failover on 2.
    assert!(backups[0]["archive"]["start"]
        .as_str()
        .unwrap()
        .starts_with("00000001"));
    assert!(backups[1]["archive"]["start"]
        .as_str()
        .unwrap()
        .starts_with("00000002"));

    // Redis holds one record per backup and one journal entry per run.
    let records = lab.stream("backups");
    assert_eq!(records.len(), 3, "{records:?}");
    assert_eq!(
        records
            .iter()
            .map(|r| r["type"].as_str())
            .collect::<Vec<_>>(),
        vec!["full", "incr", "diff"]
    );
    for (r, b) in records.iter().zip(backups) {
        assert_eq!(r["label"], b["label"].as_str().unwrap());
        for k in ["ts", "repo", "size", "duration_s", "node", "timeline"] {
            assert!(!r[k].is_empty(), "backup record lacks {k}: {r:?}");
        }
    }
    assert_eq!(records[0]["node"], "pg-bases2");
    assert_eq!(records[1]["node"], "pg-replica");
    assert_eq!(records[1]["timeline"], "2");
    assert_eq!(
        journaled_runs(&lab),
        ["setup", "backup", "failover", "backup", "failback", "backup"]
    );

    // `pgrunbook backups` lists them from Redis alone.
    let r = lab.pgrunbook(&["backups", "--json"]).succeeds();
    let listed: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert_eq!(listed[0]["fields"]["type"], "diff", "newest first");
    lab.pgrunbook(&["backups", "--last", "1"])
        .succeeds()
        .stdout_has("diff")
        .stdout_lacks("incr");
    lab.pgrunbook(&["journal", "--last", "3"])
        .succeeds()
        .stdout_has("backup");
}

/// A backup on a pair that is set up rewrites no pgBackRest configuration and creates no
/// stanza: it finds both as they are, cheaply (issue 18: it rewrote pgbackrest.conf on every
/// node, and checked what pgBackRest reads, on every run).
#[test]
fn a_backup_rewrites_no_configuration_that_is_current() {
    let lab = TestLab::replicating("pbconf");
    let mtimes = |lab: &TestLab| -> Vec<String> {
        ["pg-bases2", "pg-replica"]
            .iter()
            .map(|n| {
                let out = lab.docker(&[
                    "exec",
                    &lab.container(n),
                    "stat",
                    "-c",
                    "%y",
                    "/etc/pgbackrest/pgbackrest.conf",
                ]);
                assert!(out.status.success(), "{n}: no pgbackrest.conf");
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            })
            .collect()
    };
    let before = mtimes(&lab);
    for args in [
        &["run", "backup"][..],
        &["run", "backup", "--set", "type=incr"][..],
    ] {
        lab.pgrunbook(args)
            .succeeds()
            .stdout_has("pgBackRest configuration unchanged")
            .stdout_has("stanza bases2-db exists")
            .stdout_has("archives WAL");
    }
    assert_eq!(mtimes(&lab), before, "pgbackrest.conf was written again");
}

#[test]
fn a_bad_backup_type_is_refused_before_anything_runs() {
    // Up, not set up: the parameter is refused before the cluster is even looked at. Every run
    // journals its start, so an unchanged journal means nothing ran.
    let lab = TestLab::up("pbadtype");
    let journal_before = lab.stream("journal").len();
    lab.pgrunbook(&["run", "backup", "--set", "type=weekly"])
        .fails_with(2)
        .stderr_has("must be one of full, diff, incr");
    assert_eq!(
        lab.stream("journal").len(),
        journal_before,
        "not even a journal entry"
    );
    assert!(lab.stream("backups").is_empty(), "no backup recorded");
}

#[test]
fn failover_without_a_reachable_standby_is_refused_and_the_primary_stays() {
    let lab = TestLab::replicating("pnostandby");
    assert!(lab
        .docker(&["stop", &lab.container("pg-replica")])
        .status
        .success());
    lab.pgrunbook(&["run", "failover"])
        .fails_with(4)
        .stderr_has("no reachable standby to promote");
    assert_eq!(lab.container_state("pg-bases2"), "running");
    assert!(!lab.query_bool("pg-bases2", "SELECT pg_is_in_recovery()"));
    assert_eq!(lab.container_state("pg-replica"), "exited");
}

#[test]
fn failback_with_the_lab_down_is_a_clear_error_and_creates_nothing() {
    // Configured, never started: no containers (as after `lab down`).
    let lab = TestLab::new("pnolab");
    lab.pgrunbook(&["run", "failback"])
        .fails_with(5)
        .stderr_has("does not exist (is the lab up?");
    assert_eq!(lab.container_state("pg-bases2"), "missing");
    assert_eq!(lab.container_state("pg-replica"), "missing");
}
