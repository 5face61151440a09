//! Issue 11: replication broken on real containers, one cause per test; `diagnose` names the
//! cause with its evidence (exit 4), `status` shows it beside the standby, and `setup` refuses
//! to re-clone a standby that only fails to log in.

mod common;
use common::*;
use std::time::{Duration, Instant};

/// Runs `diagnose`, which must find problems (exit 4), and returns its output.
fn diagnose_finds(lab: &TestLab) -> Run {
    lab.pgrunbook(&["run", "diagnose"])
        .fails_with(4)
        .stderr_has("diagnose:")
}

/// The table line of `check` in diagnose's output, which must say FOUND.
fn found_line<'a>(r: &'a Run, check: &str) -> &'a str {
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with(check))
        .unwrap_or_else(|| panic!("no line for {check:?} in:\n{}", r.stdout));
    assert!(
        line.contains("| FOUND "),
        "{check} is not FOUND:\n{}",
        r.stdout
    );
    line
}

/// Ends every walsender on the primary, so the standby has to log in again.
fn kick_walsenders(lab: &TestLab) {
    lab.client("pg-bases2")
        .simple_query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_replication; \
             SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE active_pid IS NOT NULL",
        )
        .unwrap();
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

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn streams(lab: &TestLab) -> bool {
    lab.query_i64(
        "pg-bases2",
        "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND application_name <> 'pg_basebackup'",
    ) > 0
}

#[test]
fn a_changed_replication_password_is_named_shown_by_status_and_setup_will_not_reclone() {
    let lab = TestLab::replicating("diagpw");
    lab.pgrunbook(&["run", "diagnose"])
        .succeeds()
        .stdout_has("diagnose: no problem found");

    // Someone changes the role's password on the primary, outside pgrunbook.
    lab.client("pg-bases2")
        .simple_query("ALTER ROLE replicator PASSWORD 'changed-by-someone-else'")
        .unwrap();
    kick_walsenders(&lab);
    wait_until("the standby stops streaming", || !streams(&lab));

    let r = diagnose_finds(&lab);
    let line = found_line(&r, "replication password");
    assert!(
        line.contains("password authentication failed"),
        "the failed login is the evidence:\n{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("fix (replication password, pg-replica)")
            && r.stdout.contains("repair-replication-login"),
        "{}",
        r.stdout
    );

    // The standby's log says it too, in the REPL (`:log`) as through `pg_log`.
    wait_until("the standby's log has the failed login", || {
        // Log lines wrap at 80 columns: compare the words.
        repl(&lab, ":log pg-replica 5 password authentication\n")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .contains("password authentication failed for user \"replicator\"")
    });
    let r = repl(
        &lab,
        "let e = pg_log(\"pg-replica\", #{grep: \"authentication\", since: \"10m\", lines: 1});\nprint(`${e.len()} ${e[0].level}`);\n",
    );
    assert!(r.contains("1 FATAL"), "{r}");

    // status says why, beside the standby.
    lab.pgrunbook(&["status"])
        .succeeds()
        .stdout_has("pg-replica does not stream from pg-bases2: replication password:");

    // setup does not empty a valid standby for a login problem: it refuses and names it.
    lab.docker(&[
        "exec",
        &lab.container("pg-replica"),
        "touch",
        "/var/lib/postgresql/data/still-here",
    ]);
    lab.pgrunbook(&["run", "setup"])
        .fails_with(4)
        .stderr_has("will not re-clone it")
        .stderr_has("replication password");
    let kept = lab.docker(&[
        "exec",
        &lab.container("pg-replica"),
        "test",
        "-f",
        "/var/lib/postgresql/data/still-here",
    ]);
    assert!(kept.status.success(), "setup emptied the standby");

    // The repair sets the configured password again, and the standby streams.
    lab.pgrunbook(&["run", "repair-replication-login", "--dry-run"])
        .succeeds()
        .stdout_has("would set the password of role replicator");
    lab.pgrunbook(&["run", "repair-replication-login"])
        .succeeds()
        .stdout_has("streams from pg-bases2 again");
    lab.pgrunbook(&["run", "diagnose"]).succeeds();
}

#[test]
fn a_removed_pg_hba_rule_is_named_with_the_rules_there_are() {
    let lab = TestLab::replicating("diaghba");
    let hba = lab.query_strings("pg-bases2", "SHOW hba_file")[0].clone();
    let out = lab.docker(&[
        "exec",
        "-u",
        "root",
        &lab.container("pg-bases2"),
        "sed",
        "-i",
        "/^host *replication/d",
        &hba,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lab.client("pg-bases2")
        .simple_query("SELECT pg_reload_conf()")
        .unwrap();
    kick_walsenders(&lab);
    wait_until("the standby stops streaming", || !streams(&lab));

    let r = diagnose_finds(&lab);
    let line = found_line(&r, "pg_hba.conf rule for replication");
    assert!(line.contains("no pg_hba.conf entry"), "{}", r.stdout);
    assert!(line.contains("rules for replication: none"), "{}", r.stdout);
}

#[test]
fn a_dropped_slot_is_named() {
    let lab = TestLab::replicating("diagslot");
    // The standby reconnects within seconds: end its walsender and drop the slot in one go.
    wait_until("the slot is dropped", || {
        kick_walsenders(&lab);
        lab.client("pg-bases2")
            .simple_query("SELECT pg_drop_replication_slot('replica1')")
            .is_ok()
    });
    let r = diagnose_finds(&lab);
    let line = found_line(&r, "replication slot");
    assert!(
        line.contains("slot replica1 does not exist on pg-bases2"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("create_slot(\"pg-bases2\", \"replica1\")"),
        "{}",
        r.stdout
    );
}

#[test]
fn paused_replay_is_named_though_the_standby_streams() {
    let lab = TestLab::replicating("diagpause");
    lab.client("pg-replica")
        .simple_query("SELECT pg_wal_replay_pause()")
        .unwrap();
    let r = diagnose_finds(&lab);
    let line = found_line(&r, "WAL replay running");
    assert!(
        line.contains("pg_is_wal_replay_paused() = true"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("pg_wal_replay_resume()"), "{}", r.stdout);
}

#[test]
fn a_failing_archive_command_is_named_with_the_failed_segment() {
    let lab = TestLab::replicating("diagarch");
    {
        let mut c = lab.client("pg-bases2");
        c.simple_query("ALTER SYSTEM SET archive_command = 'false'")
            .unwrap();
        c.simple_query("SELECT pg_reload_conf()").unwrap();
    }
    wait_until("the archiver has failed", || {
        let mut c = lab.client("pg-bases2");
        let _ = c.simple_query("CREATE TABLE IF NOT EXISTS arch_t(i int); INSERT INTO arch_t VALUES (1); SELECT pg_switch_wal()");
        lab.query_i64("pg-bases2", "SELECT failed_count FROM pg_stat_archiver") > 0
    });
    let r = diagnose_finds(&lab);
    let line = found_line(&r, "archive_command works");
    assert!(line.contains("failure(s), last 0"), "{}", r.stdout);
}
