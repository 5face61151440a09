//! `pgrunbook journal`: one line per run with its key figures, one run in detail, typed JSON;
//! `backups` and `status` with sizes for people in tables and numbers in JSON.

mod common;
use common::*;
use serde_json::Value;

/// Run ids of the lab's journal, in order of first appearance.
fn run_ids(lab: &TestLab) -> Vec<String> {
    let mut ids: Vec<String> = vec![];
    for e in lab.stream("journal") {
        if let Some(id) = e.get("run_id") {
            if !ids.contains(id) {
                ids.push(id.clone());
            }
        }
    }
    ids
}

#[test]
fn journal_shows_one_line_per_run_and_a_run_in_detail() {
    let lab = TestLab::replicating("jview");
    lab.pgrunbook(&["run", "verify"]).succeeds();
    lab.pgrunbook(&["run", "failover"]).succeeds();
    let journal = lab.stream("journal");
    let end = journal
        .iter()
        .find(|e| e["runbook"] == "failover" && e["event"] == "end")
        .expect("the failover's end entry")
        .clone();
    let failover_id = end["run_id"].clone();
    // A run that started and never ended (killed): a start entry alone.
    let mut c = lab.redis();
    let _: String = redis::cmd("XADD")
        .arg(format!("{}:journal", lab.id))
        .arg("*")
        .arg(&[
            ("event", "start"),
            ("run_id", "9999999999999-00001"),
            ("runbook", "backup"),
            ("ts", "2999-01-01T00:00:00.000Z"),
            ("dry_run", "false"),
        ])
        .query(&mut c)
        .unwrap();
    let ids = run_ids(&lab);
    assert_eq!(ids.len(), 4, "setup, verify, failover, the unfinished one");

    // One line per run, newest first, with the failover's time to writes and data lost.
    let r = lab.pgrunbook(&["journal"]).succeeds();
    let rows: Vec<&str> = r.stdout.lines().skip(2).collect();
    assert_eq!(rows.len(), ids.len(), "one line per run\n{}", r.stdout);
    for id in &ids {
        assert_eq!(
            rows.iter().filter(|l| l.contains(id.as_str())).count(),
            1,
            "{id}\n{}",
            r.stdout
        );
    }
    assert!(
        rows[0].contains("9999999999999-00001"),
        "newest first\n{}",
        r.stdout
    );
    assert!(
        rows[0].contains("unfinished") && rows[0].contains("under way or interrupted"),
        "{}",
        r.stdout
    );
    let fo = rows.iter().find(|l| l.contains(&failover_id)).unwrap();
    let metrics: Value = serde_json::from_str(&end["metrics"]).unwrap();
    let ttw: i64 = metrics["time_to_writes_ms"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let shown = if ttw < 1000 {
        format!("writes after {ttw} ms")
    } else {
        "writes after ".to_string()
    };
    assert!(fo.contains(&shown), "{fo}");
    assert!(fo.contains("data lost 0 B"), "{fo}");
    assert!(fo.contains(" ok "), "{fo}");

    // --last counts runs.
    let r = lab.pgrunbook(&["journal", "--last", "2"]).succeeds();
    assert_eq!(r.stdout.lines().skip(2).count(), 2, "{}", r.stdout);

    // One run by a prefix of its id: its steps and metrics.
    let prefix = &failover_id[..failover_id.len() - 2];
    let r = lab.pgrunbook(&["journal", prefix]).succeeds();
    let steps: Vec<&String> = journal
        .iter()
        .filter(|e| e["run_id"] == failover_id && e["event"] == "step")
        .map(|e| &e["step"])
        .collect();
    assert!(steps.len() >= 5, "{steps:?}");
    for s in &steps {
        assert!(r.stdout.contains(s.as_str()), "{s}\n{}", r.stdout);
    }
    assert!(r.stdout.contains("time_to_writes_ms"), "{}", r.stdout);
    assert!(r.stdout.contains(&failover_id), "{}", r.stdout);
    lab.pgrunbook(&["journal", "9999999999999"])
        .succeeds()
        .stdout_has("under way, or was interrupted");
    lab.pgrunbook(&["journal", "no-such-run"])
        .fails_with(2)
        .stderr_has("no run");

    // JSON: numbers, booleans and the metrics as an object.
    let r = lab.pgrunbook(&["journal", "--json"]).succeeds();
    let entries: Vec<Value> = serde_json::from_str(&r.stdout).unwrap();
    let end = entries
        .iter()
        .find(|e| e["fields"]["run_id"] == failover_id.as_str() && e["fields"]["event"] == "end")
        .expect("the failover's end in JSON");
    let f = &end["fields"];
    assert!(f["duration_ms"].is_i64(), "{f}");
    assert!(f["exit_code"].is_i64(), "{f}");
    assert_eq!(f["dry_run"], Value::Bool(false), "{f}");
    assert_eq!(f["metrics"]["time_to_writes_ms"], ttw, "{f}");
    assert!(f["metrics"]["data_lost_bytes"].is_i64(), "{f}");
    assert!(f["run_id"].is_string() && f["cluster"].is_string(), "{f}");
}

#[test]
fn backup_sizes_are_for_people_in_tables_and_exact_in_json() {
    let lab = TestLab::up("jsize");
    let mut c = lab.redis();
    let _: String = redis::cmd("XADD")
        .arg(format!("{}:backups", lab.id))
        .arg("*")
        .arg(&[
            ("event", "backup"),
            ("type", "full"),
            ("label", "20250101-000000F"),
            ("size", "31106679"),
            ("repo_size", "4194304"),
            ("duration_s", "2"),
            ("node", "pg-bases2"),
            ("ts", "2025-01-01T00:00:00.000Z"),
        ])
        .query(&mut c)
        .unwrap();
    lab.pgrunbook(&["backups"])
        .succeeds()
        .stdout_has("29.7 MB")
        .stdout_has("4.0 MB")
        .stdout_lacks("31106679");
    let r = lab.pgrunbook(&["backups", "--json"]).succeeds();
    let b: Vec<Value> = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(b[0]["fields"]["size"], 31106679);
    assert_eq!(b[0]["fields"]["duration_s"], 2);
    assert_eq!(b[0]["fields"]["label"], "20250101-000000F");
    let r = lab.pgrunbook(&["status", "--json"]).succeeds();
    let st: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(st["last_backup"]["size"], 31106679, "{st}");
    lab.pgrunbook(&["status"])
        .succeeds()
        .stdout_has("(29.7 MB)");
}
