//! Issue 3: the seed's failover, failback and backups as runbooks, in one full cycle on real
//! containers, checked afterwards by direct queries, not by the runbooks' own word.

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

#[test]
fn full_cycle_failover_failback_and_backups() {
    let lab = TestLab::replicating("cycle");

    // 3. full backup
    lab.pgrunbook(&["run", "backup"])
        .succeeds()
        .stdout_has("(full)");

    // 4. rows written on the primary
    write_rows(&lab, "pg-bases2", "before", 50);

    // 5. failover: the standby becomes the primary; time and loss are printed and journaled.
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
    let end = lab
        .stream("journal")
        .into_iter()
        .rfind(|e| e["event"] == "end")
        .unwrap();
    assert_eq!(end["runbook"], "failover");
    let metrics: serde_json::Value = serde_json::from_str(&end["metrics"]).unwrap();
    assert!(
        metrics["time_to_writes_ms"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > 0
    );
    assert_eq!(metrics["data_lost_bytes"], "0");

    // Running failover again is a no-op.
    lab.pgrunbook(&["run", "failover"])
        .succeeds()
        .stdout_has("Failover has already happened")
        .stdout_lacks("Promote");
    assert_eq!(lab.container_state("pg-bases2"), "exited");

    // 6. rows written on the new primary
    write_rows(&lab, "pg-replica", "after", 30);

    // 7. incremental backup on the new primary, in the same repository, on the full one.
    lab.pgrunbook(&["run", "backup", "--set", "type=incr"])
        .succeeds()
        .stdout_has("(incr, based on");

    // 8. failback (pg_rewind: only what diverged), then again as a no-op
    lab.pgrunbook(&["run", "failback"])
        .succeeds()
        .stdout_has("Rewind pg-bases2 from pg-replica")
        .stdout_lacks("re-cloning")
        .stdout_has("verify: all checks passed");
    let end = lab
        .stream("journal")
        .into_iter()
        .rfind(|e| e["event"] == "end")
        .unwrap();
    assert!(end["metrics"].contains("\"method\":\"rewind\""), "{end:?}");
    lab.pgrunbook(&["run", "failback"])
        .succeeds()
        .stdout_has("already streams from pg-replica")
        .stdout_lacks("Empty");

    // 9. verify
    lab.pgrunbook(&["run", "verify"]).succeeds();

    // 10. differential backup
    lab.pgrunbook(&["run", "backup", "--set", "type=diff"])
        .succeeds()
        .stdout_has("(diff, based on");

    // ---- independent checks --------------------------------------------------------------
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
    let runs: Vec<String> = lab
        .stream("journal")
        .into_iter()
        .filter(|e| e["event"] == "end")
        .map(|e| e["runbook"].clone())
        .collect();
    assert_eq!(
        runs,
        [
            "setup", "backup", "failover", "failover", "backup", "failback", "failback", "verify",
            "backup"
        ]
    );
    let starts = lab
        .stream("journal")
        .into_iter()
        .filter(|e| e["event"] == "start")
        .count();
    assert_eq!(starts, runs.len());

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

    // ---- errors that change nothing ---------------------------------------------------------
    // A bad backup type is refused before anything runs.
    let journal_before = lab.stream("journal").len();
    lab.pgrunbook(&["run", "backup", "--set", "type=weekly"])
        .fails_with(2)
        .stderr_has("must be one of full, diff, incr");
    assert_eq!(
        lab.stream("journal").len(),
        journal_before,
        "not even a journal entry"
    );
    assert_eq!(
        lab.pgbackrest_info("pg-replica")[0]["backup"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // failover with no reachable standby: refused, the primary stays primary.
    assert!(lab
        .docker(&["stop", &lab.container("pg-bases2")])
        .status
        .success());
    lab.pgrunbook(&["run", "failover"])
        .fails_with(4)
        .stderr_has("no reachable standby to promote");
    assert_eq!(lab.container_state("pg-replica"), "running");
    assert!(!lab.query_bool("pg-replica", "SELECT pg_is_in_recovery()"));
    assert_eq!(lab.container_state("pg-bases2"), "exited");

    // failback with the lab down: clear error, nothing created.
    lab.pgrunbook(&["lab", "down"]).succeeds();
    lab.pgrunbook(&["run", "failback"])
        .fails_with(5)
        .stderr_has("does not exist (is the lab up?");
    assert_eq!(lab.container_state("pg-bases2"), "missing");
    assert_eq!(lab.container_state("pg-replica"), "missing");
}
