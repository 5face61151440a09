//! Journal entries spooled while Redis is down belong to one Redis (URL and prefix) and one
//! cluster (PostgreSQL system identifier): they are delivered there or nowhere. While they wait,
//! `journal`, `backups` and the `journal_last` primitive show them. See `src/clients/redis.rs`.
//!
//! All on real containers; what reached each Redis is read from that Redis directly.

mod common;
use common::*;
use serde_json::Value;
use std::collections::HashMap;

type Entry = HashMap<String, String>;

/// A runbook that journals a labelled step and note and records a labelled backup: what a run
/// leaves in Redis, without the time a real backup takes. One run writes five entries: start,
/// the backup (in `backups`), the note, the step, end.
const NOTE: &str = r#"//! Journals a labelled step and note and records a labelled backup.
//!
//! param label = "x"  What to label the entries with
step("Note " + label);
record_backup(#{ label: label, node: "pg-bases2" });
redis_log("note", #{ label: label });
"#;

fn note(lab: &TestLab, label: &str, env: &[(&str, &str)]) -> Run {
    let script = lab.script("note.rhai", NOTE);
    lab.pgrunbook_env(&["run", &script, "--set", &format!("label={label}")], env)
}

/// Every entry of both streams of the lab's Redis.
fn all_entries(lab: &TestLab) -> Vec<Entry> {
    let mut all = lab.stream("journal");
    all.extend(lab.stream("backups"));
    all
}

/// The entries of both streams whose fields mention `label`.
fn labelled(lab: &TestLab, label: &str) -> Vec<Entry> {
    all_entries(lab)
        .into_iter()
        .filter(|e| e.values().any(|v| v.contains(label)))
        .collect()
}

/// Asserts that the lab's Redis holds only entries of the clusters `ids` and nothing that
/// mentions `foreign` (the other lab's labels).
fn assert_only_own(lab: &TestLab, ids: &[&str], foreign: &str) {
    let entries = all_entries(lab);
    for e in &entries {
        assert!(
            !e.values().any(|v| v.contains(foreign)),
            "{}'s Redis holds the other cluster's entry: {e:?}",
            lab.id
        );
    }
    for e in &entries {
        let cluster = e.get("cluster").map(String::as_str).unwrap_or("(none)");
        assert!(
            ids.contains(&cluster),
            "{}'s Redis holds an entry of cluster {cluster}, not of {ids:?}: {e:?}",
            lab.id
        );
    }
}

/// The lines of a spool file that mention `label`, in order.
fn spool_lines(path: &std::path::Path, label: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(label))
        .map(str::to_string)
        .collect()
}

#[test]
fn two_clusters_never_receive_each_others_spooled_entries() {
    // One user, two configurations: two clusters, each with its own Redis, sharing one data
    // directory, spooling where pgrunbook does by default.
    let data = tempfile::tempdir().unwrap();
    let a = TestLab::with_shared_data_dir("spa", data.path());
    let b = TestLab::with_shared_data_dir("spb", data.path());
    a.ensure_image();
    a.pgrunbook(&["lab", "up"]).succeeds();
    b.pgrunbook(&["lab", "up"]).succeeds();
    let id_a = a.system_identifier("pg-bases2");
    let id_b = b.system_identifier("pg-bases2");
    assert_ne!(id_a, id_b, "two initdb, two clusters");

    note(&a, "cluster-A-up", &[]).succeeds();
    note(&b, "cluster-B-up", &[]).succeeds();

    // A's Redis goes down: A's run spools, under the shared data directory.
    a.stop_redis();
    let r = note(&a, "cluster-A-down", &[])
        .succeeds()
        .stderr_has("journal entries are kept in");
    assert!(
        r.stderr
            .contains(&data.path().join("spool").display().to_string()),
        "the default spool is in the data directory's spool/: {}",
        r.stderr
    );

    // B runs, lists, and runs again after A's Redis is back but before A ran again: B's Redis
    // never gets A's entries.
    note(&b, "cluster-B-while-A-down", &[]).succeeds();
    b.pgrunbook(&["journal"]).succeeds();
    b.pgrunbook(&["backups"]).succeeds();
    assert_only_own(&b, &[&id_b], "cluster-A");
    a.start_redis();
    note(&b, "cluster-B-after", &[]).succeeds();
    assert_only_own(&b, &[&id_b], "cluster-A");
    assert!(
        labelled(&a, "cluster-A-down").is_empty(),
        "not delivered before A runs"
    );

    // A reaches its Redis again: its own entries arrive, marked spooled, and nothing of B's.
    a.pgrunbook(&["journal"])
        .succeeds()
        .stderr_has("delivered 5 journal entries");
    let delivered = labelled(&a, "cluster-A-down");
    assert_eq!(
        delivered.len(),
        4,
        "step, note, backup and start (params): {delivered:?}"
    );
    assert!(delivered.iter().all(|e| e["spooled"] == "true"));
    assert_only_own(&a, &[&id_a], "cluster-B");
    assert_eq!(labelled(&b, "cluster-B-after").len(), 4);

    // An explicitly configured spool file, shared by both: each line carries its target and only
    // the process with that same target (Redis URL, prefix, cluster) delivers it; the others'
    // lines stay as they were.
    let shared = data.path().join("shared-spool.jsonl");
    let shared_s = shared.to_str().unwrap();
    let spool_env = [("PGRUNBOOK_REDIS__SPOOL", shared_s)];
    let (closed1, closed2) = (free_port().to_string(), free_port().to_string());
    // A's configuration when no node answers: the cluster is unknown.
    let unknown_env = [
        ("PGRUNBOOK_REDIS__SPOOL", shared_s),
        ("PGRUNBOOK_NODES__PG_BASES2__PORT", closed1.as_str()),
        ("PGRUNBOOK_NODES__PG_REPLICA__PORT", closed2.as_str()),
    ];
    // A's Redis and prefix, but B's nodes: another cluster.
    let (b1, b2) = (
        b.port("pg-bases2").to_string(),
        b.port("pg-replica").to_string(),
    );
    let other_cluster_env = [
        ("PGRUNBOOK_REDIS__SPOOL", shared_s),
        ("PGRUNBOOK_NODES__PG_BASES2__PORT", b1.as_str()),
        ("PGRUNBOOK_NODES__PG_REPLICA__PORT", b2.as_str()),
    ];
    a.stop_redis();
    b.stop_redis();
    note(&a, "cluster-A-shared", &spool_env).succeeds();
    note(&b, "cluster-B-shared", &spool_env).succeeds();
    note(&a, "cluster-A-unknown", &unknown_env).succeeds();
    // A spooled line names its target: Redis URL (a password would be masked), prefix, cluster.
    let target = |cluster: &str| {
        format!(
            "\"target\":{{\"redis\":\"redis://127.0.0.1:{}\",\"prefix\":\"{}\",\"cluster\":\"{cluster}\"}}",
            a.redis_port, a.id
        )
    };
    let a_lines = spool_lines(&shared, &format!("\"prefix\":\"{}\"", a.id));
    assert_eq!(a_lines.len(), 10, "two runs of five entries");
    assert_eq!(
        spool_lines(&shared, &target(&id_a)).len(),
        5,
        "{a_lines:#?}"
    );
    assert_eq!(
        spool_lines(&shared, &target("unknown")).len(),
        5,
        "{a_lines:#?}"
    );

    b.start_redis();
    b.pgrunbook_env(&["journal"], &spool_env)
        .succeeds()
        .stderr_has("delivered 5 journal entries");
    assert_eq!(labelled(&b, "cluster-B-shared").len(), 4);
    assert_only_own(&b, &[&id_b], "cluster-A");
    assert_eq!(
        spool_lines(&shared, ""),
        a_lines,
        "B delivered its own lines only and left A's as they were"
    );

    a.start_redis();
    let r = a.pgrunbook_env(&["journal"], &other_cluster_env).succeeds();
    assert!(!r.stderr.contains("delivered"), "{}", r.stderr);
    assert!(
        labelled(&a, "cluster-A-shared").is_empty(),
        "not into another cluster"
    );
    assert!(labelled(&a, "cluster-A-unknown").is_empty());
    assert_eq!(spool_lines(&shared, ""), a_lines);

    // A's own cluster gets its entries; not those no one could tie to a cluster...
    a.pgrunbook_env(&["journal"], &spool_env)
        .succeeds()
        .stderr_has("delivered 5 journal entries");
    assert_eq!(labelled(&a, "cluster-A-shared").len(), 4);
    assert!(labelled(&a, "cluster-A-unknown").is_empty());
    assert_eq!(
        spool_lines(&shared, ""),
        spool_lines(&shared, &target("unknown"))
    );

    // ...which only a process that cannot tell its cluster either delivers, marked unknown.
    a.pgrunbook_env(&["journal"], &unknown_env)
        .succeeds()
        .stderr_has("delivered 5 journal entries");
    let unknown = labelled(&a, "cluster-A-unknown");
    assert_eq!(unknown.len(), 4);
    assert!(unknown.iter().all(|e| e["cluster"] == "unknown"));
    assert!(
        spool_lines(&shared, "").is_empty(),
        "the shared spool is empty"
    );
    assert_only_own(&a, &[&id_a, "unknown"], "cluster-B");
    assert_only_own(&b, &[&id_b], "cluster-A");
}

#[test]
fn journal_and_backups_show_what_is_spooled_while_redis_is_down() {
    let lab = TestLab::up("spshow");
    let id = lab.system_identifier("pg-bases2");
    lab.stop_redis();
    let r = note(&lab, "shown-while-down", &[]).succeeds();
    assert_eq!(
        r.stderr.matches("os error").count(),
        1,
        "the cause is named once: {}",
        r.stderr
    );

    let r = lab
        .pgrunbook(&["journal"])
        .succeeds()
        .stderr_has("is unreachable")
        .stderr_has("showing the entries still spooled")
        .stdout_has("spooled (not delivered yet)");
    // One line per run: the note's run, marked spooled.
    let rows: Vec<&str> = r.stdout.lines().skip(2).collect();
    assert_eq!(rows.len(), 1, "{}", r.stdout);
    assert!(rows[0].contains("spooled"), "{}", r.stdout);
    let run_id = lab
        .pgrunbook(&["journal", "--json"])
        .succeeds()
        .stdout
        .clone();
    let run_id: Vec<Value> = serde_json::from_str(&run_id).unwrap();
    let run_id = run_id[0]["fields"]["run_id"].as_str().unwrap().to_string();
    lab.pgrunbook(&["journal", &run_id])
        .succeeds()
        .stdout_has("Note shown-while-down");

    let json = |args: &[&str]| -> Vec<Value> {
        serde_json::from_str(&lab.pgrunbook(args).succeeds().stdout).unwrap()
    };
    let entries = json(&["journal", "--json"]);
    let events: Vec<&str> = entries
        .iter()
        .map(|e| e["fields"]["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["end", "step", "note", "start"], "newest first");
    for e in &entries {
        assert_eq!(e["id"], "", "no stream id yet: {e}");
        assert_eq!(e["fields"]["spooled"], true, "{e}");
        assert_eq!(e["fields"]["cluster"], id.as_str(), "{e}");
    }
    lab.pgrunbook(&["backups"])
        .succeeds()
        .stdout_has("shown-while-down");
    let backups = json(&["backups", "--json"]);
    assert_eq!(backups.len(), 1);
    assert_eq!(backups[0]["fields"]["label"], "shown-while-down");
    assert_eq!(backups[0]["fields"]["spooled"], true);

    // Nothing spooled for another journal (prefix): Redis being down is an error there, as before.
    lab.pgrunbook_env(&["journal"], &[("PGRUNBOOK_REDIS__PREFIX", "elsewhere")])
        .fails_with(5)
        .stderr_has("is unreachable");

    // Redis back: delivered once, now with stream ids.
    lab.start_redis();
    lab.pgrunbook(&["journal"])
        .succeeds()
        .stderr_has("delivered 5 journal entries");
    let entries = json(&["journal", "--json"]);
    assert_eq!(entries.len(), 4, "{entries:?}");
    assert!(entries.iter().all(|e| e["id"] != ""));
    assert_eq!(lab.stream("backups").len(), 1);
}

#[test]
fn a_backup_recorded_while_redis_is_down_is_not_recorded_again() {
    let lab = TestLab::up("sprec");
    lab.stop_redis();
    lab.pgrunbook(&["run", "backup"]).succeeds();
    // The first backup's record waits in the spool; the second backup must see it there.
    lab.pgrunbook(&["run", "backup", "--set", "type=incr"])
        .succeeds()
        .stdout_has("(incr")
        .stdout_lacks("also recorded");
    lab.start_redis();
    lab.pgrunbook(&["backups"])
        .succeeds()
        .stderr_has("delivered");

    let recorded: Vec<String> = lab
        .stream("backups")
        .into_iter()
        .map(|e| e["label"].clone())
        .collect();
    let info = lab.pgbackrest_info("pg-bases2");
    let taken: Vec<String> = info[0]["backup"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["label"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(taken.len(), 2);
    assert_eq!(recorded, taken, "each backup recorded once, oldest first");
}
