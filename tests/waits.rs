//! Issue 18: every wait either reaches its condition or fails, naming what it waited for, for
//! how long, and the last cause seen. One wait of each kind is broken on purpose, and the run
//! must fail well before its timeout with the cause the server gave:
//!
//! - a primitive waiting for a server to accept connections (`restart_container`, `wait_ready`);
//! - a runbook waiting for a segment to be archived (`restore`);
//! - a runbook waiting for a standby to stream (`rotate-replication-password`).

mod common;
use common::*;
use std::time::{Duration, Instant};

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The standby cannot start (the primary's max_connections was raised, as in the issue's
/// on-call trial): restart_container fails as soon as the container gives up, with the
/// server's FATAL and its DETAIL, not after its 120 s. Then an archive_command that fails:
/// restore's wait for the archived segment fails after one round of the archiver's retries,
/// with the failure from the primary's log, not after 60 s.
#[test]
fn a_server_that_cannot_start_and_a_broken_archive_fail_fast_with_their_cause() {
    let lab = TestLab::replicating("waitfast");
    lab.pgrunbook(&["run", "backup"]).succeeds();

    // Archiving broken on purpose.
    let mut c = lab.client("pg-bases2");
    c.batch_execute("ALTER SYSTEM SET archive_command = 'exit 3'")
        .unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    let t = Instant::now();
    let r = lab
        .pgrunbook(&[
            "run",
            "restore",
            "--set",
            &format!("into={}-restored", lab.id),
            "--set",
            &format!("port={}", free_port()),
            "--set",
            "target_name=whatever",
        ])
        .fails_with(4);
    let took = t.elapsed();
    assert!(
        r.stderr.contains("has not archived WAL segment")
            && r.stderr.contains("the archiver failed on it")
            && r.stderr.contains("archive command failed with exit code 3"),
        "{}",
        r.stderr
    );
    assert!(
        took < Duration::from_secs(50),
        "the archive wait ran {took:?}, near its 60 s, instead of failing on the cause"
    );
    c.batch_execute("ALTER SYSTEM RESET archive_command")
        .unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();

    // The primary gets more connections than the standby has: the standby cannot start again.
    c.batch_execute("ALTER SYSTEM SET max_connections = 300")
        .unwrap();
    drop(c);
    assert!(lab
        .docker(&["restart", &lab.container("pg-bases2")])
        .status
        .success());
    wait_until("pg-bases2 to answer", 60, || {
        lab.try_client("pg-bases2").is_some()
    });
    // The standby replays the parameter change before it is restarted.
    std::thread::sleep(Duration::from_secs(2));
    let script = lab.script(
        "restart_standby.rhai",
        "//! Restarts the standby.\nstep(\"Restart pg-replica\");\nrestart_container(\"pg-replica\", 120);\n",
    );
    let t = Instant::now();
    let r = lab.pgrunbook(&["run", &script]);
    let took = t.elapsed();
    assert_ne!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("restart_container on pg-replica: PostgreSQL did not start")
            && r.stderr.contains("insufficient parameter settings")
            && r.stderr.contains("max_connections"),
        "{}",
        r.stderr
    );
    assert!(
        took < Duration::from_secs(90),
        "restart_container waited {took:?}, near its 120 s, instead of failing on the cause"
    );
}

/// The standby's replication connection is refused by pg_hba.conf: the rotation's wait for the
/// standby to stream again fails after its timeout with the standby's FATAL from its log.
#[test]
fn a_standby_that_cannot_reconnect_fails_the_rotation_with_its_cause() {
    let lab = TestLab::replicating("waitrot");
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
    assert!(out.status.success());
    lab.client("pg-bases2")
        .simple_query("SELECT pg_reload_conf()")
        .unwrap();
    let t = Instant::now();
    let r = lab
        .pgrunbook_env(
            &["run", "rotate-replication-password", "--set", "timeout_s=5"],
            &[(
                "PGRUNBOOK_NEW_REPLICATION_PASSWORD",
                "rotated-in-waits-test",
            )],
        )
        .fails_with(4);
    let took = t.elapsed();
    assert!(
        r.stderr
            .contains("does not stream with the new password after 5 s: its log says FATAL")
            && r.stderr.contains("pg_hba.conf"),
        "{}",
        r.stderr
    );
    assert!(took < Duration::from_secs(60), "{took:?}");
}
