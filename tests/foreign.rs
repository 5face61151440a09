//! pgrunbook on containers it did not build: a pair made by hand with the docker CLI from the
//! official flavour (like `postgres:17` with Debian's pgBackRest: root entrypoint, no stop
//! signal, no archiving, port 5544 inside, other names, no `replica_test`), driven by a config
//! file alone. Every step here failed on such a pair before pgrunbook learned to handle it:
//! setup could only refuse on archive_mode = off, pgBackRest's configuration could not be
//! written (no /etc/pgbackrest/), verify needed the lab's table, and failback re-cloned after a
//! stop that Docker ended with SIGKILL.

mod common;
use common::*;
use std::time::Instant;

const WRITERS: usize = 4;

/// The metrics of the newest `end` entry of `runbook` in the journal (Redis, read directly).
fn last_metrics(lab: &TestLab, runbook: &str) -> serde_json::Value {
    let end = lab
        .stream("journal")
        .into_iter()
        .rfind(|e| e["event"] == "end" && e["runbook"] == runbook)
        .unwrap_or_else(|| panic!("no end entry of {runbook} in the journal"));
    assert_eq!(end["outcome"], "ok", "{end:?}");
    serde_json::from_str(&end["metrics"]).unwrap()
}

fn setting(lab: &TestLab, node: &str, name: &str) -> String {
    lab.client(node)
        .query_one("SELECT setting FROM pg_settings WHERE name = $1", &[&name])
        .unwrap()
        .get(0)
}

#[test]
fn full_cycle_on_a_pair_made_by_hand_from_the_official_image() {
    let lab = TestLab::foreign("foreign");

    // pgBackRest missing in a node: setup names the node and the fix, and changes nothing.
    let hide = |from: &str, to: &str| {
        let out = lab.docker(&[
            "exec",
            "-u",
            "root",
            &lab.container("alpha"),
            "mv",
            from,
            to,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    hide("/usr/bin/pgbackrest", "/usr/bin/pgbackrest.hidden");
    lab.pgrunbook(&["run", "setup", "--set", "configure_archiving=true"])
        .fails_with(4)
        .stderr_has("pgBackRest is not installed in container")
        .stderr_has("of node alpha")
        .stderr_has("apt-get install -y pgbackrest");
    hide("/usr/bin/pgbackrest.hidden", "/usr/bin/pgbackrest");
    assert_eq!(setting(&lab, "alpha", "archive_mode"), "off");

    // Without the flag, setup refuses as before, names the settings and the way on, and
    // changes nothing.
    lab.pgrunbook(&["run", "setup"])
        .fails_with(4)
        .stderr_has("archive_mode = off")
        .stderr_has("configure_archiving=true");
    assert_eq!(setting(&lab, "alpha", "archive_mode"), "off");
    assert_eq!(lab.container_state("beta"), "created");

    // With it: ALTER SYSTEM, a clean restart it announces, then the whole setup.
    let r = lab
        .pgrunbook(&["run", "setup", "--set", "configure_archiving=true"])
        .succeeds()
        .stdout_has("restarting it cleanly")
        .stdout_has("beta streams from alpha through slot beta_slot");
    assert!(r.stdout.find("restarting it cleanly") < r.stdout.find("now archives WAL"));
    assert_eq!(setting(&lab, "alpha", "archive_mode"), "on");
    assert_eq!(
        setting(&lab, "alpha", "archive_command"),
        "pgbackrest --stanza=app-db archive-push %p"
    );
    assert_eq!(setting(&lab, "alpha", "wal_log_hints"), "on");
    assert!(lab.query_bool("beta", "SELECT pg_is_in_recovery()"));

    // pgBackRest's configuration: the file it reads first, root:postgres 0640 in a 0750
    // directory, with the port the server really listens on.
    for node in ["alpha", "beta"] {
        let out = lab.docker(&[
            "exec",
            &lab.container(node),
            "stat",
            "-c",
            "%U:%G %a %n",
            "/etc/pgbackrest",
            "/etc/pgbackrest/pgbackrest.conf",
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("root:postgres 750 /etc/pgbackrest\n"),
            "{node}: {text}"
        );
        assert!(
            text.contains("root:postgres 640 /etc/pgbackrest/pgbackrest.conf"),
            "{node}: {text}"
        );
        let conf = lab.docker(&[
            "exec",
            &lab.container(node),
            "cat",
            "/etc/pgbackrest/pgbackrest.conf",
        ]);
        let conf = String::from_utf8_lossy(&conf.stdout);
        assert!(
            conf.contains(&format!("pg1-port={FOREIGN_INNER_PORT}")),
            "{conf}"
        );
        assert!(conf.contains("pg1-user=dba"), "{conf}");
    }

    // verify works on a database that has no replica_test, through pgrunbook's own table.
    lab.pgrunbook(&["run", "verify"])
        .succeeds()
        .stdout_has("verify: all checks passed");
    assert!(!lab.query_bool(
        "alpha",
        "SELECT to_regclass('public.replica_test') IS NOT NULL"
    ));
    assert!(lab.query_i64("beta", "SELECT count(*) FROM pgrunbook.verify_rows") >= 1);

    // The first backup finds the stanza setup made (it has no backup yet) and says so; the
    // size printed is what the repository grew by.
    lab.pgrunbook(&["run", "backup", "--set", "type=full"])
        .succeeds()
        .stdout_has("stanza app-db exists")
        .stdout_lacks("stanza app-db created")
        .stdout_has("added to the repository (database");

    // kill -9 of the primary under a write load, then failover.
    lab.client("alpha")
        .batch_execute("CREATE TABLE app_writes (val text PRIMARY KEY)")
        .unwrap();
    let acked = lab.writes_until_killed(
        "alpha",
        "INSERT INTO app_writes(val) VALUES ($1)",
        "w",
        WRITERS,
        2000,
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
    let m = last_metrics(&lab, "failover");
    let estimated: usize = m["lost_transactions"].as_str().unwrap().parse().unwrap();
    eprintln!(
        "foreign: {} commits acknowledged, {missing} missing, failover estimated {estimated}",
        acked.len()
    );
    // The documented bound (docs/safety.md): the estimate counts every commit the standby never
    // received; at most one per writer was written but never acknowledged.
    assert!(
        estimated >= missing && estimated <= missing + WRITERS,
        "estimate {estimated} vs {missing} acknowledged commits missing"
    );

    // The fenced old primary is started by hand: it comes back read-only. failback stops it
    // cleanly although the image has no stop signal, and rewinds it.
    let out = lab.docker(&["start", &lab.container("alpha")]);
    assert!(out.status.success());
    lab.wait_read_only(30, "alpha");
    let t = Instant::now();
    lab.pgrunbook(&["run", "failback"])
        .succeeds()
        .stdout_has("verify: all checks passed")
        .stdout_lacks("re-cloning it instead");
    eprintln!("foreign: failback took {:?}", t.elapsed());
    assert_eq!(last_metrics(&lab, "failback")["method"], "rewind");
    assert!(lab.query_bool("alpha", "SELECT pg_is_in_recovery()"));

    // Backups after the roles swapped: incr and diff on timeline 2, in one chain with the full.
    lab.pgrunbook(&["run", "backup", "--set", "type=incr"])
        .succeeds()
        .stdout_has("of beta, timeline 2");
    lab.pgrunbook(&["run", "backup", "--set", "type=diff"])
        .succeeds()
        .stdout_has("of beta, timeline 2");
    let info = lab.pgbackrest_info("beta");
    let backups = info[0]["backup"].as_array().unwrap();
    let kinds: Vec<&str> = backups
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["full", "incr", "diff"], "{info}");
    let full = backups[0]["label"].as_str().unwrap();
    assert_eq!(backups[1]["prior"], full);
    assert_eq!(backups[2]["prior"], full);

    lab.pgrunbook(&["run", "verify"])
        .succeeds()
        .stdout_has("verify: all checks passed");

    // A fenced node killed with SIGKILL leaves postmaster.pid behind; pg_rewind's crash
    // recovery would take it for a live server (PID 1 is always alive in a one-off container).
    // failback removes it, says so and journals it, and still rewinds.
    lab.pgrunbook(&["run", "failover"]).succeeds();
    let out = lab.docker(&["start", &lab.container("beta")]);
    assert!(out.status.success());
    lab.wait_read_only(30, "beta");
    let out = lab.docker(&["kill", "-s", "KILL", &lab.container("beta")]);
    assert!(out.status.success());
    lab.pgrunbook(&["run", "failback"])
        .succeeds()
        .stdout_has("removed stale postmaster.pid (PID 1)");
    let m = last_metrics(&lab, "failback");
    assert_eq!(m["method"], "rewind", "{m}");
    assert!(m["stale_pid_removed"].as_str().is_some(), "{m}");
}

#[test]
fn lab_up_official_flavour_then_setup_and_verify() {
    let lab = TestLab::new("offlab");
    lab.ensure_image();
    lab.pgrunbook(&["lab", "up", "--flavour", "official"])
        .succeeds()
        .stdout_has("not started: `pgrunbook run setup` clones it");
    // The official image's entrypoint started as root, with no stop signal.
    let out = lab.docker(&[
        "inspect",
        "-f",
        "{{.Config.User}}|{{.Config.StopSignal}}",
        &lab.container("pg-bases2"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "|");
    lab.pgrunbook(&["run", "setup", "--set", "configure_archiving=true"])
        .succeeds();
    // PostgreSQL's default wal_retrieve_retry_interval (5 s, kept by this image) can stall a
    // promotion that long: verify says so, on both nodes, and changes nothing.
    lab.pgrunbook(&["run", "verify"])
        .succeeds()
        .stdout_has("verify: all checks passed")
        .stderr_has(
            "wal_retrieve_retry_interval is over 1 s on pg-bases2 (5000 ms), pg-replica (5000 ms)",
        );
    for node in ["pg-bases2", "pg-replica"] {
        assert_eq!(
            lab.query_i64(
                node,
                "SELECT setting::bigint FROM pg_settings WHERE name = 'wal_retrieve_retry_interval'"
            ),
            5000
        );
    }
    // Lowered by hand (a reload is enough), the warning is gone.
    for node in ["pg-bases2", "pg-replica"] {
        let mut c = lab.client(node);
        c.batch_execute("ALTER SYSTEM SET wal_retrieve_retry_interval = '200ms'")
            .unwrap();
        c.batch_execute("SELECT pg_reload_conf()").unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let r = lab.pgrunbook(&["run", "verify"]).succeeds();
    assert!(
        !r.stderr.contains("wal_retrieve_retry_interval"),
        "{}",
        r.stderr
    );
}

/// This round's runbooks on the pair made by hand (official-like image, nodes alpha/beta,
/// superuser dba, database appdb, replication role streamer, port 5544 inside the containers):
/// diagnose finds a changed replication password and repair-replication-login fixes it, a
/// restore drill passes, and a switchover there and back loses nothing and ends healthy.
#[test]
fn diagnose_repair_restore_check_and_switchover_on_a_pair_made_by_hand() {
    let lab = TestLab::foreign("foreign2");
    // setup restarts alpha to turn archiving on: watchers hold off meanwhile.
    lab.pgrunbook(&["run", "setup", "--set", "configure_archiving=true"])
        .succeeds()
        .stdout_has("then restarting it cleanly")
        .stdout_has("watchers hold off until this run ends");
    // These containers keep PostgreSQL's 5 s wal_retrieve_retry_interval: verify names both.
    lab.pgrunbook(&["run", "verify"])
        .succeeds()
        .stderr_has("wal_retrieve_retry_interval is over 1 s on alpha (5000 ms), beta (5000 ms)");
    // A wrong password: status shows the nodes as "login refused" and exits 5, naming alpha.
    let r = lab
        .pgrunbook_env(&["status"], &[("PGRUNBOOK_PASSWORD", "not-dbas-password")])
        .fails_with(5)
        .stdout_has("login refused");
    assert!(
        r.stderr.contains("refused pgrunbook's login on node alpha")
            && r.stderr
                .contains("password authentication failed for user \"dba\""),
        "{}",
        r.stderr
    );
    lab.pgrunbook(&["run", "diagnose"])
        .succeeds()
        .stdout_has("replication login as streamer from")
        .stdout_has("diagnose: no problem found");

    lab.client("alpha")
        .simple_query(
            "ALTER ROLE streamer PASSWORD 'changed-by-someone-else'; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_replication",
        )
        .unwrap();
    let r = lab.pgrunbook(&["run", "diagnose"]).fails_with(4);
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with("replication password"))
        .unwrap_or_else(|| panic!("no replication password line:\n{}", r.stdout));
    assert!(
        line.contains("| FOUND ") && line.contains("password authentication failed"),
        "{}",
        r.stdout
    );
    lab.pgrunbook(&["run", "repair-replication-login"])
        .succeeds()
        .stdout_has("streams from alpha again");

    lab.pgrunbook(&["run", "backup", "--set", "type=full"])
        .succeeds();
    // The drill runs pgBackRest with the shipped process count (this image's CPUs plus one).
    let out = lab.docker(&["exec", &lab.container("alpha"), "nproc"]);
    let cpus: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    lab.pgrunbook(&["run", "restore-check"])
        .succeeds()
        .stdout_has(&format!("({} pgBackRest processes)", cpus + 1));

    // The first switchover under a watcher: it holds off (hold_watchers) and fails nothing over.
    let log = lab.dir.path().join("watch.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut watcher = lab
        .command(&["watch"])
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("acting: holds the lease")
    {
        assert!(
            std::time::Instant::now() < end,
            "the watcher did not start acting"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(500)); // it saw the standby stream
    lab.pgrunbook(&["run", "switchover"])
        .succeeds()
        .stdout_has("watchers hold off until this run ends");
    std::thread::sleep(std::time::Duration::from_secs(1));
    let _ = watcher.kill();
    let _ = watcher.wait();
    let watched = std::fs::read_to_string(&log).unwrap();
    assert!(
        watched.contains("a planned operation is under way: switchover run"),
        "{watched}"
    );
    assert!(
        !lab.stream("journal")
            .iter()
            .any(|e| e.get("runbook").map(String::as_str) == Some("failover")),
        "{watched}"
    );
    assert!(lab.query_bool("alpha", "SELECT pg_is_in_recovery()"));
    assert!(!lab.query_bool("beta", "SELECT pg_is_in_recovery()"));
    lab.pgrunbook(&["run", "switchover"]).succeeds();
    assert!(!lab.query_bool("alpha", "SELECT pg_is_in_recovery()"));
    lab.pgrunbook(&["run", "diagnose"]).succeeds();
}
