//! The seed's own way: the lab from `lab/docker-compose.yml` (containers pgrunbook did not
//! create), then pgrunbook's setup and verify against it, given only names and ports.

mod common;
use common::*;
use std::process::Command;

struct Compose {
    project: String,
    env: Vec<(String, String)>,
}

impl Compose {
    fn run(&self, args: &[&str]) -> std::process::Output {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/lab/docker-compose.yml");
        let mut c = Command::new("docker-compose");
        c.args(["-f", file, "-p", &self.project]).args(args);
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
