//! Issue 13: `run rotate-replication-password` on real containers. The new password comes from
//! the environment or a file, the primary gets it as a SCRAM verifier, the standby streams again
//! with it after a reload (a walsender started after the change), and the password appears in no
//! output, plan, journal entry, server log (both servers log every statement) or command line.

mod common;
use common::*;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const NEW_PW: &str = "N3w-rotated-repl-pw";
const FILE_PW: &str = "F1le-rotated-repl-pw";

/// A replication login from the standby's container to the primary with `password`, which
/// reaches `docker exec` through its environment, not its command line.
fn replication_login(lab: &TestLab, password: &str) -> bool {
    Command::new("docker")
        .env("PGPASSWORD", password)
        .args([
            "exec",
            "-e",
            "PGPASSWORD",
            &lab.container("pg-replica"),
            "psql",
            &format!(
                "host={} port=5432 user=replicator dbname=replication replication=true connect_timeout=5",
                lab.container("pg-bases2")
            ),
            "-Atc",
            "IDENTIFY_SYSTEM",
        ])
        .output()
        .unwrap()
        .status
        .success()
}

fn standby_auto_conf(lab: &TestLab) -> String {
    let out = lab.docker(&[
        "exec",
        &lab.container("pg-replica"),
        "cat",
        "/var/lib/postgresql/data/postgresql.auto.conf",
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every distinct command line seen by `ps` while it runs, sampled every few milliseconds.
struct PsSampler {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
    handle: std::thread::JoinHandle<()>,
}

impl PsSampler {
    fn start() -> PsSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, v) = (stop.clone(), seen.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                if let Ok(out) = Command::new("ps").args(["-ww", "-eo", "args"]).output() {
                    let mut v = v.lock().unwrap();
                    for l in String::from_utf8_lossy(&out.stdout).lines() {
                        if !v.iter().any(|x| x == l) {
                            v.push(l.to_string());
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        PsSampler { stop, seen, handle }
    }

    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap();
        Arc::try_unwrap(self.seen).unwrap().into_inner().unwrap()
    }
}

#[test]
fn rotation_from_env_and_file_reconnects_the_standby_and_shows_the_password_nowhere() {
    let lab = TestLab::replicating("swrot");
    for node in ["pg-bases2", "pg-replica"] {
        let mut c = lab.client(node);
        c.batch_execute("ALTER SYSTEM SET log_statement = 'all'")
            .unwrap();
        c.batch_execute("SELECT pg_reload_conf()").unwrap();
    }
    let ps = PsSampler::start();
    let mut texts: Vec<(String, String)> = vec![];
    let mut keep = |what: &str, r: &Run| {
        texts.push((format!("stdout of {what}"), r.stdout.clone()));
        texts.push((format!("stderr of {what}"), r.stderr.clone()));
    };

    // No new password: refused, nothing changed.
    let conf_before = standby_auto_conf(&lab);
    let r = lab
        .pgrunbook(&["run", "rotate-replication-password"])
        .fails_with(4)
        .stderr_has("PGRUNBOOK_NEW_REPLICATION_PASSWORD");
    keep("a run without a password", &r);

    // A dry run says the password would change, without it; nothing changes.
    let env = [("PGRUNBOOK_NEW_REPLICATION_PASSWORD", NEW_PW)];
    let r = lab
        .pgrunbook_env(&["run", "rotate-replication-password", "--dry-run"], &env)
        .succeeds()
        .stdout_has("would set the password of role replicator to the new one")
        .stdout_has("would point primary_conninfo at pg-bases2");
    keep("the dry run", &r);
    assert_eq!(standby_auto_conf(&lab), conf_before);
    assert!(replication_login(&lab, REPL_PASSWORD));
    assert!(!replication_login(&lab, NEW_PW));

    // From the environment.
    let r = lab
        .pgrunbook_env(&["run", "rotate-replication-password"], &env)
        .succeeds()
        .stdout_has("streams again")
        .stdout_has("verify: all checks passed")
        .stdout_has("PGRUNBOOK_REPLICATION_PASSWORD");
    keep("the rotation from the environment", &r);
    assert!(
        replication_login(&lab, NEW_PW),
        "the new password is refused"
    );
    assert!(
        !replication_login(&lab, REPL_PASSWORD),
        "the old password still works"
    );
    assert!(standby_auto_conf(&lab).contains(NEW_PW));
    let interrupted: i64 = lab
        .stream("journal")
        .iter()
        .rev()
        .find_map(|e| {
            let m: serde_json::Value = serde_json::from_str(e.get("metrics")?).ok()?;
            m["replication_interrupted_ms"].as_str()?.parse().ok()
        })
        .expect("the journal has replication_interrupted_ms");
    eprintln!("replication interrupted for {interrupted} ms");
    assert!(
        interrupted < 2000,
        "replication interrupted for {interrupted} ms"
    );

    // From a file (0600), with the configured password still the first one: the run uses
    // the file's, and pgrunbook logs in as the superuser only.
    let file = lab.dir.path().join("new-replication-password");
    std::fs::write(&file, format!("{FILE_PW}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let set = format!("password_file={}", file.display());
    let r = lab
        .pgrunbook(&["run", "rotate-replication-password", "--set", &set])
        .succeeds()
        .stdout_has("streams again");
    keep("the rotation from a file", &r);
    assert!(replication_login(&lab, FILE_PW));
    assert!(!replication_login(&lab, NEW_PW));
    let mode = lab.docker(&[
        "exec",
        &lab.container("pg-replica"),
        "stat",
        "-c",
        "%a",
        "/var/lib/postgresql/data/postgresql.auto.conf",
    ]);
    assert_eq!(String::from_utf8_lossy(&mode.stdout).trim(), "600");
    assert!(
        !standby_auto_conf(&lab).contains("quiet reload"),
        "the quiet-reload line was left behind"
    );

    // Where the passwords must not be.
    let seen = ps.finish();
    for (node, container) in [
        ("pg-bases2", lab.container("pg-bases2")),
        ("pg-replica", lab.container("pg-replica")),
        ("redis", lab.redis_container()),
    ] {
        let out = lab.docker(&["logs", &container]);
        texts.push((
            format!("docker logs of {node}"),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ));
    }
    for stream in ["journal", "backups"] {
        for e in lab.stream(stream) {
            texts.push((format!("{stream} entry"), format!("{e:?}")));
        }
    }
    if let Ok(spool) = std::fs::read_to_string(lab.dir.path().join("spool.jsonl")) {
        texts.push(("the spool".into(), spool));
    }
    texts.push(("ps".into(), seen.join("\n")));
    // The statement logging did log the rotation (a verifier, not a password).
    assert!(texts
        .iter()
        .any(|(w, t)| w == "docker logs of pg-bases2" && t.contains("ALTER ROLE")));
    for pw in [NEW_PW, FILE_PW] {
        for (what, text) in &texts {
            assert!(!text.contains(pw), "the password {pw} appears in {what}");
        }
    }
}
