//! Issue 2: the lab comes up from nothing, setup and verify work, setup is idempotent, verify
//! fails clearly when the standby is down, errors name what and where.

mod common;
use common::*;

#[test]
fn lab_setup_verify_and_idempotent_setup() {
    let lab = TestLab::new("found");
    lab.ensure_image();
    for node in ["pg-bases2", "pg-replica"] {
        assert_eq!(
            lab.container_state(node),
            "missing",
            "a fresh lab starts from nothing"
        );
    }

    // The lab comes up from nothing, and a second `lab up` changes nothing.
    lab.pgrunbook(&["lab", "up"])
        .succeeds()
        .stdout_has("created network")
        .stdout_has(&format!(
            "created and started container {}",
            lab.container("pg-bases2")
        ));
    assert_eq!(lab.container_state("pg-bases2"), "running");
    assert_eq!(lab.container_state("pg-replica"), "running");
    assert!(!lab.query_bool("pg-bases2", "SELECT pg_is_in_recovery()"));
    lab.pgrunbook(&["lab", "up"])
        .succeeds()
        .stdout_has("already up, nothing changed");

    // setup clones the standby and waits until it streams.
    lab.pgrunbook(&["run", "setup"])
        .succeeds()
        .stdout_has("Clone pg-replica from pg-bases2")
        .stdout_has("pg-replica streams from pg-bases2 through slot replica1");
    assert!(lab.query_bool("pg-replica", "SELECT pg_is_in_recovery()"));
    let streaming = lab.query_strings(
        "pg-bases2",
        "SELECT s.slot_name::text FROM pg_stat_replication r \
         JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE r.state = 'streaming'",
    );
    assert_eq!(streaming, vec!["replica1".to_string()]);

    // verify passes and prints its table.
    lab.pgrunbook(&["run", "verify"])
        .succeeds()
        .stdout_has("standby in recovery")
        .stdout_has("row replicated")
        .stdout_has("verify: all checks passed")
        .stdout_lacks("FAILED");
    assert!(
        lab.query_i64(
            "pg-replica",
            "SELECT count(*) FROM pgrunbook.verify_rows WHERE val LIKE 'verify-%'"
        ) >= 1
    );

    // A second setup is a no-op: no new clone (the standby's postmaster keeps its start time).
    let started = |lab: &TestLab| -> String {
        lab.query_strings("pg-replica", "SELECT pg_postmaster_start_time()::text")[0].clone()
    };
    let before = started(&lab);
    lab.pgrunbook(&["run", "setup"])
        .succeeds()
        .stdout_has("already streams from pg-bases2")
        .stdout_lacks("Clone pg-replica");
    assert_eq!(
        started(&lab),
        before,
        "a second setup must not re-clone the standby"
    );
    assert_eq!(
        lab.query_i64("pg-bases2", "SELECT count(*) FROM pg_replication_slots"),
        1,
        "no slot is added by a second setup"
    );

    // Every run is journaled in Redis: start, steps, end.
    let journal = lab.stream("journal");
    let ends: Vec<_> = journal.iter().filter(|e| e["event"] == "end").collect();
    assert_eq!(ends.len(), 3, "setup, verify, setup: {journal:?}");
    assert!(ends
        .iter()
        .all(|e| e["outcome"] == "ok" && e["exit_code"] == "0"));

    // verify fails, naming the failed checks, when the standby is stopped.
    let out = lab.docker(&["stop", &lab.container("pg-replica")]);
    assert!(out.status.success());
    lab.pgrunbook(&["run", "verify", "--set", "timeout_s=2"])
        .fails_with(4)
        .stdout_has("FAILED")
        .stderr_has("verify failed")
        .stderr_has("standby in recovery")
        .stderr_has("standby streaming")
        .stderr_has("row replicated");
}

#[test]
fn unknown_node_and_missing_container_are_clear_errors() {
    let lab = TestLab::up("errs");
    let script = lab.script(
        "unknown_node.rhai",
        "//! Uses a node that is not configured.\nstep(\"Query\");\nlet rows = sql(\"pg-nope\", \"SELECT 1\");\n",
    );
    lab.pgrunbook(&["run", &script])
        .fails_with(3)
        .stderr_has("unknown node 'pg-nope'")
        .stderr_has("known nodes: pg-bases2, pg-replica")
        .stderr_has("unknown_node.rhai:3:12")
        .stderr_has("in step \"Query\"");

    // A configured node whose container does not exist.
    let extra = std::fs::read_to_string(&lab.config_path)
        .unwrap()
        .replace(&lab.container("pg-replica"), &format!("{}-nothere", lab.id));
    std::fs::write(lab.dir.path().join("missing.toml"), extra).unwrap();
    let script = lab.script(
        "stop_it.rhai",
        "//! Stops the standby.\nstop_container(\"pg-replica\");\n",
    );
    let cfg = lab.dir.path().join("missing.toml");
    pgrunbook_in(
        lab.dir.path(),
        &["--config", cfg.to_str().unwrap(), "run", &script],
        &[("PGRUNBOOK_DATA_DIR", lab.dir.path().to_str().unwrap())],
    )
    .fails_with(5)
    .stderr_has(&format!("container '{}-nothere' does not exist", lab.id))
    .stderr_has("stop_it.rhai:2:1");
    assert_eq!(
        lab.container_state("pg-bases2"),
        "running",
        "nothing else was touched"
    );
}

#[test]
fn print_table_keeps_the_querys_column_order() {
    let lab = TestLab::up("cols");
    let script = lab.script(
        "columns.rhai",
        "//! A query's columns, printed in its order.\n\
         let rows = sql(\"pg-bases2\", \"select 3 as c, 1 as a, 2 as b\");\n\
         print_table(rows);\n\
         print(`keys: ${rows[0].keys()}`);\n\
         print(`first: ${sql_value(\"pg-bases2\", \"select 3 as c, 1 as a\")}`);\n\
         print_table([#{ c: 3, a: 1 }]);\n",
    );
    let out = lab.pgrunbook(&["run", &script]).succeeds().stdout;
    let lines: Vec<&str> = out.lines().map(str::trim_end).collect();
    let header = lines.iter().position(|l| l.starts_with("c | a | b"));
    let header = header.unwrap_or_else(|| panic!("no c | a | b header:\n{out}"));
    assert_eq!(lines[header + 2], "3 | 1 | 2", "{out}");
    // Each row is still a map: its keys are sorted.
    assert!(out.contains("keys: [\"a\", \"b\", \"c\"]"), "{out}");
    // The first column is the query's first, not the map's first key.
    assert!(out.contains("first: 3"), "{out}");
    // Rows built by hand have no query order: their keys sorted, as before.
    assert!(lines.contains(&"a | c"), "{out}");
}
