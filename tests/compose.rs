//! The seed's own way: the lab from `lab/docker-compose.yml` (containers pgrunbook did not
//! create), then pgrunbook's setup and verify against it, given only names and ports.

mod common;
use common::*;
use std::process::Command;

struct Compose {
    project: String,
    env: Vec<(String, String)>,
    /// Compose files given after lab/docker-compose.yml.
    extra: Vec<&'static str>,
}

impl Compose {
    fn run(&self, args: &[&str]) -> std::process::Output {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/lab/docker-compose.yml");
        let mut c = Command::new("docker-compose");
        c.args(["-f", file]);
        for f in &self.extra {
            c.args(["-f", f]);
        }
        c.args(["-p", &self.project]).args(args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.output().expect("docker-compose runs")
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = self.run(&["down", "-v", "--remove-orphans"]);
    }
}

#[test]
fn compose_lab_works_with_pgrunbook() {
    let lab = TestLab::new("cmp");
    lab.ensure_image();
    let compose = Compose {
        project: lab.id.replace('-', ""),
        env: vec![
            ("PG_PRIMARY".into(), lab.container("pg-bases2")),
            ("PG_STANDBY".into(), lab.container("pg-replica")),
            ("REDIS_NAME".into(), format!("{}-redis", lab.id)),
            ("PG_PRIMARY_PORT".into(), lab.port("pg-bases2").to_string()),
            ("PG_STANDBY_PORT".into(), lab.port("pg-replica").to_string()),
            ("REDIS_PORT".into(), lab.redis_port.to_string()),
            ("PGRUNBOOK_PASSWORD".into(), PASSWORD.into()),
            (
                "PGRUNBOOK_REPLICATION_PASSWORD".into(),
                REPL_PASSWORD.into(),
            ),
        ],
        extra: vec![],
    };
    let up = compose.run(&["up", "-d", "--no-build"]);
    assert!(
        up.status.success(),
        "docker-compose up failed: {}",
        String::from_utf8_lossy(&up.stderr)
    );

    // The primary initialises; then pgrunbook sets up replication on containers it did not create.
    let _ = lab.client("pg-bases2");
    lab.pgrunbook(&["run", "setup"])
        .succeeds()
        .stdout_has("streams from pg-bases2");
    lab.pgrunbook(&["run", "verify"])
        .succeeds()
        .stdout_has("verify: all checks passed");
    assert!(lab.query_bool("pg-replica", "SELECT pg_is_in_recovery()"));

    // lab down leaves containers it did not create alone.
    lab.pgrunbook(&["lab", "down"])
        .succeeds()
        .stdout_has("pgrunbook's lab did not create it");
    assert_eq!(lab.container_state("pg-bases2"), "running");
}

/// contrib/pgrunbook-watch.service passes `systemd-analyze verify`, with its ExecStart pointed
/// at the binary under test (the unit names /usr/local/bin/pgrunbook, which systemd checks
/// exists): no error, and no warning about the unit (an unknown key is only a warning).
#[test]
fn the_systemd_unit_verifies() {
    let analyze = Command::new("systemd-analyze").arg("--version").output();
    assert!(
        analyze.is_ok_and(|o| o.status.success()),
        "systemd-analyze is not installed: the systemd unit cannot be checked. Install it \
         (Debian: apt-get install -y systemd) and run the test again"
    );
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/pgrunbook-watch.service"
    ))
    .unwrap();
    let exec = "ExecStart=/usr/local/bin/pgrunbook ";
    assert_eq!(unit.matches(exec).count(), 1, "{unit}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pgrunbook-watch.service");
    std::fs::write(&path, unit.replace(exec, &format!("ExecStart={BIN} "))).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let about_it: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("pgrunbook-watch"))
        .collect();
    assert!(
        out.status.success() && about_it.is_empty(),
        "systemd-analyze verify: exit {:?}\n{stderr}",
        out.status.code()
    );
}

/// contrib/compose.watch.yml started beside the Compose lab: the watcher runs in its container,
/// sees the nodes and Redis, takes the lease and journals its start.
#[test]
fn the_compose_watch_service_starts_and_watches() {
    let lab = TestLab::new("cmpw");
    lab.ensure_image();
    let watch_name = format!("{}-watch", lab.id);
    let compose = Compose {
        project: lab.id.replace('-', ""),
        env: vec![
            ("PG_PRIMARY".into(), lab.container("pg-bases2")),
            ("PG_STANDBY".into(), lab.container("pg-replica")),
            ("REDIS_NAME".into(), format!("{}-redis", lab.id)),
            ("PG_PRIMARY_PORT".into(), lab.port("pg-bases2").to_string()),
            ("PG_STANDBY_PORT".into(), lab.port("pg-replica").to_string()),
            ("REDIS_PORT".into(), lab.redis_port.to_string()),
            ("PGRUNBOOK_PASSWORD".into(), PASSWORD.into()),
            (
                "PGRUNBOOK_REPLICATION_PASSWORD".into(),
                REPL_PASSWORD.into(),
            ),
            ("PGRUNBOOK_BIN".into(), BIN.into()),
            ("PGRUNBOOK_WATCH_NAME".into(), watch_name.clone()),
            (
                "PGRUNBOOK_CONFIG_DIR".into(),
                lab.dir.path().display().to_string(),
            ),
        ],
        extra: vec![concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/contrib/compose.watch.yml"
        )],
    };
    let up = compose.run(&["up", "-d", "--no-build"]);
    assert!(
        up.status.success(),
        "docker-compose up failed: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let _ = lab.client("pg-bases2");
    lab.pgrunbook(&["run", "setup"]).succeeds();
    let logs = || {
        let o = lab.docker(&["logs", &watch_name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !logs().contains("acting: holds the lease in Redis") {
        assert!(
            std::time::Instant::now() < end,
            "the watcher in {watch_name} never acted:\n{}",
            logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let journal = lab.stream("journal");
    assert!(
        journal
            .iter()
            .any(|e| e.get("runbook").map(String::as_str) == Some("watch")
                && e.get("event").map(String::as_str) == Some("start")),
        "no watcher start in the journal: {journal:?}"
    );
    // (Compose's drop takes the lab and the watcher down, with their volumes.)
}
