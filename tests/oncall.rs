//! Issue 18 part A: the on-call trial. Each fault is injected as the issue did it, on real
//! containers; `diagnose` must name it with its cause and fix, and `status` in one line.
//! Then the slots pgrunbook did not create (failback and switchover leave them alone), and the
//! node's log as the REPL's `:log` shows it.

mod common;
use common::*;
use std::time::{Duration, Instant};

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The table line of `check` in diagnose's output.
fn line_of<'a>(r: &'a Run, check: &str) -> &'a str {
    r.stdout
        .lines()
        .find(|l| l.starts_with(check))
        .unwrap_or_else(|| panic!("no line for {check:?} in:\n{}", r.stdout))
}

fn found_line<'a>(r: &'a Run, check: &str) -> &'a str {
    let line = line_of(r, check);
    assert!(
        line.contains("| FOUND "),
        "{check} is not FOUND:\n{}",
        r.stdout
    );
    line
}

/// The `fix (...)` lines of diagnose's output.
fn fixes(r: &Run) -> Vec<&str> {
    r.stdout
        .lines()
        .filter(|l| l.starts_with("fix ("))
        .collect()
}

/// The container's own output (what `docker logs` shows), stdout and stderr.
fn docker_logs(lab: &TestLab, node: &str) -> String {
    let out = lab.docker(&["logs", &lab.container(node)]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What the REPL prints for `input` (stdin not a terminal: one statement a line).
fn repl(lab: &TestLab, input: &str) -> String {
    use std::io::Write;
    let mut child = lab
        .command(&["repl"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_killed_primary_is_named_first_not_blamed_on_dns_and_failover_dry_run_estimates_the_loss() {
    let lab = TestLab::replicating("ocdown");
    lab.client("pg-bases2")
        .batch_execute("CREATE TABLE oc_t(i int); INSERT INTO oc_t VALUES (1)")
        .unwrap();
    assert!(lab
        .docker(&["kill", &lab.container("pg-bases2")])
        .status
        .success());
    wait_until("pg-bases2 has exited", 30, || {
        lab.container_state("pg-bases2") == "exited"
    });

    // status says it first, and fails.
    let r = lab.pgrunbook(&["status"]).fails_with(4);
    assert!(
        r.stdout
            .lines()
            .next()
            .is_some_and(|l| l.starts_with("ALERT: no node accepts writes")
                && l.contains("pg-bases2 is stopped (container exited)")),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains("no node accepts writes"), "{}", r.stderr);

    // diagnose names the dead primary and does not blame DNS.
    let r = lab.pgrunbook(&["run", "diagnose"]).fails_with(4);
    let line = found_line(&r, "a node accepts writes");
    assert!(line.contains("container exited"), "{}", r.stdout);
    let dns = line_of(&r, "primary_conninfo host resolves");
    assert!(!dns.contains("FOUND"), "DNS blamed:\n{}", r.stdout);
    assert!(
        fixes(&r)
            .iter()
            .any(|f| f.contains("start_container(\"pg-bases2\")") && f.contains("failover")),
        "{}",
        r.stdout
    );

    // failover --dry-run reads the dead primary's WAL for the loss, as the real run does.
    let r = lab
        .pgrunbook(&["run", "failover", "--dry-run"])
        .succeeds()
        .stdout_has("estimated loss: ");
    let est = r
        .stdout
        .lines()
        .find(|l| l.contains("estimated loss: "))
        .unwrap();
    assert!(
        !est.contains("unknown") && est.contains("committed transaction(s)"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_standby_that_cannot_start_is_named_with_the_parameter_on_both_sides() {
    let lab = TestLab::replicating("ocparam");
    lab.client("pg-bases2")
        .batch_execute("ALTER SYSTEM SET max_connections = 300")
        .unwrap();
    assert!(lab
        .docker(&["restart", &lab.container("pg-bases2")])
        .status
        .success());
    wait_until(
        "the standby has replayed the primary's new max_connections",
        90,
        || docker_logs(&lab, "pg-replica").contains("insufficient parameter settings"),
    );
    assert!(lab
        .docker(&["restart", &lab.container("pg-replica")])
        .status
        .success());
    wait_until("the standby refuses to start", 90, || {
        docker_logs(&lab, "pg-replica")
            .contains("recovery aborted because of insufficient parameter settings")
    });

    let r = lab.pgrunbook(&["run", "diagnose"]).fails_with(4);
    let line = found_line(&r, "standby server up");
    assert!(
        line.contains("is a lower setting than on the primary server, where its value was 300"),
        "the DETAIL is the evidence:\n{}",
        r.stdout
    );
    let param = found_line(&r, "settings the standby needs");
    assert!(
        param.contains("max_connections is 100 on pg-replica and 300 on pg-bases2"),
        "{}",
        r.stdout
    );
    let fx = fixes(&r);
    assert!(
        fx.iter()
            .any(|f| f.contains("set_setting(\"pg-replica\", \"max_connections\", \"300\")")),
        "{}",
        r.stdout
    );
    assert!(
        !fx.iter()
            .any(|f| f.contains("start it: start_container(\"pg-replica\")")),
        "start_container advised for a container Docker restarts:\n{}",
        r.stdout
    );

    // status keeps the DETAIL, in the line beside the standby.
    let r = lab.pgrunbook(&["status"]).succeeds();
    let warn = r
        .stdout
        .lines()
        .find(|l| l.starts_with("warning: pg-replica does not stream from pg-bases2"))
        .unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(
        warn.contains("DETAIL: max_connections = 100 is a lower setting than on the primary server, where its value was 300"),
        "{}",
        r.stdout
    );

    // setup says why it re-clones.
    lab.pgrunbook(&["run", "setup", "--dry-run"])
        .succeeds()
        .stdout_has("pg-replica's data directory would be replaced by a clone of pg-bases2: it is not a valid standby of it")
        .stdout_has("max_connections = 100");
}

/// A physical slot pgrunbook did not create, holding about 1 GB of WAL on pg-bases2.
fn stale_slot(lab: &TestLab) {
    let mut c = lab.client("pg-bases2");
    c.batch_execute(
        "SELECT pg_create_physical_replication_slot('old_replica', true); \
         CREATE TABLE oc_w(i int);",
    )
    .unwrap();
    for _ in 0..65 {
        c.batch_execute("INSERT INTO oc_w VALUES (1); SELECT pg_switch_wal();")
            .unwrap();
    }
}

fn slot_exists(lab: &TestLab, node: &str) -> bool {
    lab.query_i64(
        node,
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'old_replica'",
    ) == 1
}

#[test]
fn a_stale_slot_is_named_with_the_wal_it_holds() {
    let lab = TestLab::replicating("ocslot");
    stale_slot(&lab);

    let r = lab.pgrunbook(&["run", "diagnose"]).fails_with(4);
    let line = found_line(&r, "slots holding WAL");
    for part in [
        "old_replica (unused, holds 1.0 GB of WAL",
        "wal_status ",
        "safe_wal_size ",
        "not a configured node's",
    ] {
        assert!(line.contains(part), "{part}:\n{}", r.stdout);
    }
    assert!(
        fixes(&r)
            .iter()
            .any(|f| f.contains("drop_slot(\"pg-bases2\", \"old_replica\")")),
        "{}",
        r.stdout
    );
    let r = lab.pgrunbook(&["status"]).succeeds();
    assert!(
        r.stdout.contains("old_replica (unused, 1.0 GB)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(
            "warning: slot old_replica on pg-bases2 is unused and holds 1.0 GB of WAL (not a configured node's slot)"
        ),
        "{}",
        r.stdout
    );
}

#[test]
fn a_slot_pgrunbook_did_not_create_survives_failback_and_switchover() {
    let lab = TestLab::replicating("ocforeign");
    let create = || {
        lab.client("pg-bases2")
            .batch_execute("SELECT pg_create_physical_replication_slot('old_replica', true)")
            .unwrap()
    };
    create();
    let dry_failback = lab.pgrunbook(&["run", "failback", "--dry-run"]).succeeds();
    let dry_switchover = lab
        .pgrunbook(&["run", "switchover", "--dry-run"])
        .succeeds();

    // Each run is looked at, and the slot put back if it went, so that one run shows all.
    let mut dropped_by = vec![];
    let mut outputs = vec![];
    let mut step = |name: &str, args: &[&str]| {
        let r = lab.pgrunbook(args).succeeds();
        if !slot_exists(&lab, "pg-bases2") {
            dropped_by.push(name.to_string());
            create();
        }
        outputs.push(r.stdout);
    };
    // pg-bases2 primary: failback finds the pair streaming and tidies the primary's slots.
    step("failback (pair streaming)", &["run", "failback"]);
    // pg-bases2 becomes a standby: its slots are looked at as the old primary's.
    step("switchover", &["run", "switchover"]);
    step("failback (after switchover)", &["run", "failback"]);
    // pg-bases2 primary again, pg-replica rejoined by pg_rewind: the primary's slots.
    step("failover", &["run", "failover"]);
    step("failback (rejoin)", &["run", "failback"]);
    assert!(
        dropped_by.is_empty(),
        "old_replica dropped by {dropped_by:?}:\n{}",
        outputs.join("\n=====\n")
    );
    for i in [0, 1, 4] {
        assert!(
            outputs[i].contains("left alone on pg-bases2: slot old_replica (unused, holds "),
            "{}",
            outputs[i]
        );
    }
    // After the switchover, pg-replica is the primary, which is not the configured layout.
    assert!(
        outputs[2].contains("pgrunbook run switchover makes pg-bases2 the primary again"),
        "{}",
        outputs[2]
    );
    assert!(
        !outputs[4].contains("pgrunbook run switchover makes"),
        "{}",
        outputs[4]
    );

    // Dry runs speak in the conditional.
    for r in [&dry_failback, &dry_switchover] {
        assert!(
            r.stdout
                .contains("left alone on pg-bases2: slot old_replica")
                && r.stdout
                    .contains("--set drop_foreign_slots=true would drop it")
                && !r.stdout.contains("dropped"),
            "{}",
            r.stdout
        );
    }

    // Asked to, failback drops it.
    lab.pgrunbook(&["run", "failback", "--set", "drop_foreign_slots=true"])
        .succeeds()
        .stdout_has("dropped unused slots [\"old_replica\"]");
    assert!(!slot_exists(&lab, "pg-bases2"));
}

#[test]
fn replay_blocked_by_a_query_is_named_with_the_blocker_and_status_warns_in_human_units() {
    let lab = TestLab::replicating("ocblock");
    {
        let mut s = lab.client("pg-replica");
        s.batch_execute("ALTER SYSTEM SET max_standby_streaming_delay = -1")
            .unwrap();
        // The lab turns it on; the trial had it off.
        s.batch_execute("ALTER SYSTEM SET hot_standby_feedback = off")
            .unwrap();
        s.batch_execute("SELECT pg_reload_conf()").unwrap();
    }
    lab.client("pg-bases2")
        .batch_execute("CREATE TABLE oc_b AS SELECT generate_series(1, 10000) AS i")
        .unwrap();
    wait_until("the standby has the table", 60, || {
        lab.try_client("pg-replica").is_some_and(|mut c| {
            c.query("SELECT 1 FROM pg_class WHERE relname = 'oc_b'", &[])
                .is_ok_and(|r| !r.is_empty())
        })
    });
    // A long transaction on the standby, left idle.
    let mut holder = lab.client("pg-replica");
    holder
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM oc_b")
        .unwrap();
    // Vacuum on the primary removes rows the standby's snapshot still sees: replay waits.
    let mut p = lab.client("pg-bases2");
    for q in [
        "DELETE FROM oc_b",
        "VACUUM oc_b",
        "CREATE TABLE oc_fill AS SELECT generate_series(1, 500000) AS i",
    ] {
        p.batch_execute(q).unwrap();
    }
    wait_until("replay waits on the standby's query", 60, || {
        lab.query_i64(
            "pg-replica",
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'startup' AND wait_event = 'RecoveryConflictSnapshot'",
        ) == 1
    });

    let r = lab.pgrunbook(&["run", "diagnose"]).fails_with(4);
    let line = found_line(&r, "WAL replay not blocked by a query");
    for part in [
        "waits on RecoveryConflictSnapshot",
        "idle in transaction for ",
        "max_standby_streaming_delay = -1 (wait forever)",
        "hot_standby_feedback = off",
    ] {
        assert!(line.contains(part), "{part}:\n{}", r.stdout);
    }
    assert!(
        fixes(&r)
            .iter()
            .any(|f| f.contains("pg_terminate_backend(")
                && f.contains("max_standby_streaming_delay")),
        "{}",
        r.stdout
    );

    let r = lab.pgrunbook(&["status"]).succeeds();
    let warn = r
        .stdout
        .lines()
        .find(|l| l.starts_with("warning: pg-replica replays "))
        .unwrap_or_else(|| panic!("no lag warning:\n{}", r.stdout));
    assert!(warn.contains(" MB behind pg-bases2"), "{}", r.stdout);
    assert!(warn.contains("RecoveryConflictSnapshot"), "{}", r.stdout);
    assert!(
        !r.stdout.contains(" B |"),
        "raw bytes in the table:\n{}",
        r.stdout
    );

    // A fault of our own: an old transaction holds back VACUUM, here on both nodes (a
    // threshold of 1 s instead of diagnose's 10 minutes).
    let mut writer = lab.client("pg-bases2");
    writer
        .batch_execute("BEGIN; SELECT pg_current_xact_id()")
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let script = lab.script(
        "xmin.rhai",
        "import \"diagnose\" as diagnose;\n\
         for n in nodes() { let f = diagnose::check_xmin_horizon(n, 1); print(`${n}: ${f.status}: ${f.evidence} FIX ${f.fix}`); }\n\
         for n in nodes() { let f = diagnose::check_connections(n); print(`${n}: ${f.status}: ${f.evidence}`); }\n",
    );
    let r = lab.pgrunbook(&["run", &script]).succeeds();
    for node in ["pg-bases2", "pg-replica"] {
        let line = r
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{node}: FOUND: VACUUM on {node} cannot remove")))
            .unwrap_or_else(|| panic!("{node}:\n{}", r.stdout));
        assert!(
            line.contains("idle in transaction for ") && line.contains("pg_terminate_backend("),
            "{line}"
        );
    }
    assert!(
        r.stdout.contains("pg-bases2: ok: ") && r.stdout.contains("client connections of 97"),
        "{}",
        r.stdout
    );
    drop(writer);
    drop(holder);
}

#[test]
fn the_log_shows_the_servers_lines_within_80_columns_after_a_backup_and_archiving() {
    let lab = TestLab::replicating("oclog");
    lab.pgrunbook(&["run", "backup", "--set", "type=full"])
        .succeeds();
    let before = lab.query_i64("pg-bases2", "SELECT archived_count FROM pg_stat_archiver");
    {
        let mut c = lab.client("pg-bases2");
        c.batch_execute("CREATE TABLE oc_l(i int)").unwrap();
        for _ in 0..12 {
            c.batch_execute(
                "INSERT INTO oc_l SELECT generate_series(1, 1000); SELECT pg_switch_wal();",
            )
            .unwrap();
        }
    }
    wait_until("the segments are archived", 120, || {
        lab.query_i64("pg-bases2", "SELECT archived_count FROM pg_stat_archiver") >= before + 12
    });
    let out = repl(&lab, ":log pg-bases2 5\n");
    // What `:log` printed: after the session's banner.
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .skip_while(|l| l.starts_with("pgrunbook repl:") || l.starts_with("Tab completes"))
        .collect();
    let levels = [
        "LOG", "WARNING", "ERROR", "FATAL", "PANIC", "NOTICE", "INFO",
    ];
    // An entry's line: "2026-12-04 15:00:00 UTC LOG     message"; detail and hint are indented.
    let entries: Vec<&&str> = lines
        .iter()
        .filter(|l| !l.starts_with(' '))
        .filter(|l| {
            l.split_whitespace()
                .nth(3)
                .is_some_and(|w| levels.contains(&w))
        })
        .collect();
    assert_eq!(entries.len(), 5, "five of PostgreSQL's entries:\n{out}");
    for l in &lines {
        assert!(
            l.chars().count() <= 80,
            "wider than 80 columns: {l:?}\n{out}"
        );
    }
    assert!(!out.contains("archive-push"), "pgBackRest's lines:\n{out}");
    assert!(!out.contains(" | "), "a table:\n{out}");
}

/// A REPL session fed one line at a time, its output (stdout and stderr) read as it comes.
struct Session {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Session {
    fn start(lab: &TestLab) -> Session {
        use std::io::BufRead;
        let mut child = lab
            .command(&["repl"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx2.send(format!("stderr: {l}"));
            }
        });
        let stdin = child.stdin.take().unwrap();
        Session {
            child,
            stdin,
            lines,
            seen: vec![],
        }
    }

    /// Types `input`, then returns the first line of output containing `until` (60 s at most).
    fn send(&mut self, input: &str, until: &str) -> String {
        use std::io::Write;
        writeln!(self.stdin, "{input}").unwrap();
        self.stdin.flush().unwrap();
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(until) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "no {until:?} after {input:?}; the session printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_repl_left_open_across_a_restart_of_postgresql_and_redis_reconnects() {
    let lab = TestLab::replicating("ocrepl");
    let mut s = Session::start(&lab);
    s.send("sql_value(\"pg-bases2\", \"SELECT 41 + 1\")", "=> 42");
    let line = s.send(":status", "last backup:");
    assert!(line.contains("Redis reachable"), "{}", s.seen.join("\n"));

    // The lab restarts under the open session.
    assert!(lab
        .docker(&["restart", &lab.container("pg-bases2")])
        .status
        .success());
    lab.stop_redis();
    lab.start_redis();
    wait_until("pg-bases2 accepts connections", 60, || {
        lab.try_client("pg-bases2").is_some()
    });

    let before = s.seen.len();
    s.send("sql_value(\"pg-bases2\", \"SELECT 42 + 1\")", "=> 43");
    let line = s.send(":status", "last backup:");
    let after = s.seen[before..].join("\n");
    assert!(line.contains("Redis reachable"), "{after}");
    assert!(
        !after.contains("stderr:"),
        "errors after the restart:\n{after}"
    );
}

/// A slot pgrunbook created for a node that has since left the configuration is dropped by the
/// next failback, with a message; a slot it did not create is still left alone.
#[test]
fn a_slot_made_for_a_node_no_longer_configured_is_dropped_with_a_message() {
    let lab = TestLab::replicating("ocgone");
    // Under a configuration with a third node, pg-gone (slot "gone"), create its slot on the
    // primary as setup would.
    let with_gone = lab.dir.path().join("with-gone.toml");
    let mut text = std::fs::read_to_string(&lab.config_path).unwrap();
    text.push_str(
        "\n[nodes.pg-gone]\ncontainer = \"nowhere-pg-gone\"\nhost = \"127.0.0.1\"\nport = 1\nslot = \"gone\"\ninit = \"standby\"\n",
    );
    std::fs::write(&with_gone, text).unwrap();
    let script = lab.script(
        "make.rhai",
        "//! t\nprint(create_slot(\"pg-bases2\", \"gone\"));\n",
    );
    let env = [
        ("PGRUNBOOK_CONFIG", with_gone.to_str().unwrap()),
        ("PGRUNBOOK_DATA_DIR", lab.data_dir.to_str().unwrap()),
    ];
    pgrunbook_in(lab.dir.path(), &["run", &script], &env)
        .succeeds()
        .stdout_has("true");
    lab.client("pg-bases2")
        .batch_execute("SELECT pg_create_physical_replication_slot('old_replica', true)")
        .unwrap();
    let slots = |lab: &TestLab| {
        lab.query_strings(
            "pg-bases2",
            "SELECT slot_name::text FROM pg_replication_slots ORDER BY 1",
        )
    };
    assert_eq!(slots(&lab), ["gone", "old_replica", "replica1"]);

    // pg-gone leaves the configuration: the dry run says it would drop the slot, and changes
    // nothing; the real run drops it and says for which node it was made.
    lab.pgrunbook(&["run", "failback", "--dry-run"])
        .succeeds()
        .stdout_has("would drop on pg-bases2: slot gone, which pgrunbook created for pg-gone, no longer a configured node");
    assert_eq!(slots(&lab), ["gone", "old_replica", "replica1"]);
    lab.pgrunbook(&["run", "failback"])
        .succeeds()
        .stdout_has("dropping on pg-bases2: slot gone, which pgrunbook created for pg-gone")
        .stdout_has("left alone on pg-bases2: slot old_replica");
    assert_eq!(slots(&lab), ["old_replica", "replica1"]);
}
