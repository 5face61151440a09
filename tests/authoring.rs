//! Issue 4: the worked example of docs/writing-runbooks.md, `status` on a healthy lab and on a
//! lab whose standby is down, and a runbook's own --help.

mod common;
use common::*;

/// `pgrunbook status --json`, parsed.
fn status(lab: &TestLab) -> serde_json::Value {
    let r = lab.pgrunbook(&["status", "--json"]).succeeds();
    serde_json::from_str(&r.stdout).unwrap()
}

/// One node's entry in a status.
fn node_of(st: &serde_json::Value, name: &str) -> serde_json::Value {
    st["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap()
        .clone()
}

#[test]
fn worked_example_status_and_runbook_help() {
    let lab = TestLab::replicating("auth");

    // The worked example runs and reports.
    lab.pgrunbook(&["run", "examples/replication_report"])
        .succeeds()
        .stdout_has("pg-bases2 is the primary")
        .stdout_has("replica1")
        .stdout_has("replication report: ok");
    // Its parameters work: with replay paused and 2 MB written, max_lag=1MB trips it.
    lab.client("pg-replica")
        .execute("SELECT pg_wal_replay_pause()", &[])
        .unwrap();
    lab.client("pg-bases2")
        .execute("INSERT INTO public.replica_test(val) SELECT repeat('x', 1000) FROM generate_series(1, 2000)", &[])
        .unwrap();
    lab.pgrunbook(&["run", "examples/replication_report", "--set", "max_lag=1MB"])
        .fails_with(4)
        .stderr_has("more than max_lag (1.0 MB)");
    lab.client("pg-replica")
        .execute("SELECT pg_wal_replay_resume()", &[])
        .unwrap();

    // A runbook's --help shows its description and parameters.
    lab.pgrunbook(&["run", "examples/replication_report", "--help"])
        .succeeds()
        .stdout_has("reports replication lag")
        .stdout_has("--set max_lag=<size>");
    lab.pgrunbook(&["run", "backup", "--help"])
        .succeeds()
        .stdout_has("one of full|diff|incr");

    // status on a healthy lab.
    let st = status(&lab);
    let node = |name: &str| node_of(&st, name);
    assert_eq!(node("pg-bases2")["role"], "primary");
    assert_eq!(node("pg-replica")["role"], "standby");
    assert_eq!(node("pg-replica")["streaming_from"], "pg-bases2");
    assert!(node("pg-replica")["lag_bytes"].as_i64().is_some());
    assert_eq!(node("pg-bases2")["timeline"], 1);
    assert_eq!(node("pg-bases2")["slots"][0], "replica1");
    assert_eq!(st["last_run"]["runbook"], "examples/replication_report");
    assert!(st["warnings"].as_array().unwrap().is_empty(), "{st}");
    lab.pgrunbook(&["status"])
        .succeeds()
        .stdout_has("primary")
        .stdout_has("last run:");

    // status with the standby down.
    assert!(lab
        .docker(&["stop", &lab.container("pg-replica")])
        .status
        .success());
    let st = status(&lab);
    let node = |name: &str| node_of(&st, name);
    assert_eq!(node("pg-replica")["state"], "exited");
    assert_eq!(node("pg-replica")["role"], "stopped");
    assert_eq!(node("pg-bases2")["role"], "primary");
    let slot = node("pg-bases2")["slots"][0].as_str().unwrap().to_string();
    assert!(slot.starts_with("replica1 (unused, "), "{slot}");
    lab.pgrunbook(&["status"])
        .succeeds()
        .stdout_has("stopped")
        .stdout_has("replica1 (unused, ");
}
