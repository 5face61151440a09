//! Issue 6: passwords stay secret. While a whole cycle runs (setup, backups, failover, failback,
//! dry runs, a run with a wrong password, and a runbook that tries its best to print them), no
//! password may appear in any process's command line, pgrunbook's output, the Redis streams, the
//! spool file or the containers' logs; and the files that must hold one are private.
//!
//! Passwords reaching containers through their environment is accepted (that is how the lab's
//! entry point and pg_basebackup get them; `docker inspect` shows it to Docker's users only).

mod common;
use common::*;
use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

const WRONG_PASSWORD: &str = "Wr0ng-secret-for-the-test";
const SECRETS: [&str; 3] = [PASSWORD, REPL_PASSWORD, WRONG_PASSWORD];

fn leaked(text: &str) -> Vec<&'static str> {
    SECRETS.into_iter().filter(|s| text.contains(s)).collect()
}

/// Fails when a run printed a password.
fn clean(r: Run) -> Run {
    for (name, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        let found = leaked(text);
        assert!(
            found.is_empty(),
            "pgrunbook {} printed {found:?} on {name}:\n{text}",
            r.args.join(" ")
        );
    }
    r
}

/// What `ps` showed while the sampler ran.
struct Seen {
    samples: usize,
    /// Command lines that held a password.
    leaks: BTreeSet<String>,
    /// Whether container processes (PostgreSQL, pg_basebackup) and pgrunbook were seen at all:
    /// the sampling looked where the passwords could have been.
    saw_postgres: bool,
    saw_pgrunbook: bool,
    saw_basebackup: bool,
}

/// Samples every process's command line (`ps -eo args`, unabridged) until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Seen>,
}

impl Sampler {
    fn start() -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut seen = Seen {
                samples: 0,
                leaks: BTreeSet::new(),
                saw_postgres: false,
                saw_pgrunbook: false,
                saw_basebackup: false,
            };
            while !s.load(Ordering::SeqCst) {
                let out = Command::new("ps")
                    .args(["-ww", "-eo", "args"])
                    .output()
                    .expect("run ps");
                let text = String::from_utf8_lossy(&out.stdout);
                for line in text.lines() {
                    if !leaked(line).is_empty() {
                        seen.leaks.insert(line.to_string());
                    }
                    seen.saw_postgres |= line.starts_with("postgres");
                    seen.saw_pgrunbook |= line.contains("pgrunbook run");
                    seen.saw_basebackup |= line.contains("pg_basebackup ");
                }
                seen.samples += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            seen
        });
        Sampler { stop, handle }
    }

    fn finish(self) -> Seen {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap()
    }
}

/// Files in a container that hold a password, with their modes: `(mode, path)`, and how many
/// lines of the other compressed files (pgBackRest's repository: data files, WAL, zstd as
/// shipped or gzip) hold one. The
/// passwords go to the search on its standard input, so the search itself puts none on a
/// command line.
fn files_with_secrets(container: &str, dirs: &str) -> (Vec<(String, String)>, usize) {
    let script = r#"IFS= read -r p1; IFS= read -r p2
g() { grep "$@" -f /dev/fd/3 3<<EOF
$p1
$p2
EOF
}
g -rlsF $DIRS | while IFS= read -r f; do stat -c '%a %n' "$f"; done
unz() { case "$1" in *.zst) zstd -dcq "$1" ;; *) zcat "$1" ;; esac; }
find $DIRS -type f \( -name 'postgresql.auto.conf*.gz' -o -name 'postgresql.auto.conf*.zst' \) 2>/dev/null | while IFS= read -r f; do
  if unz "$f" | g -qF; then stat -c '%a %n' "$f"; fi
done
n=$(find $DIRS -type f \( -name '*.gz' -o -name '*.zst' \) ! -name 'postgresql.auto.conf*' 2>/dev/null | while IFS= read -r f; do unz "$f"; done | g -cF)
echo "compressed ${n:-0}""#;
    let mut child = Command::new("docker")
        .args([
            "exec",
            "-i",
            "-e",
            &format!("DIRS={dirs}"),
            container,
            "sh",
            "-c",
            script,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}\n{REPL_PASSWORD}").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && text.contains("compressed "),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files = vec![];
    let mut compressed = 0;
    for (a, b) in text.lines().filter_map(|l| l.split_once(' ')) {
        if a == "compressed" {
            compressed = b.trim().parse().unwrap();
        } else {
            files.push((a.to_string(), b.to_string()));
        }
    }
    (files, compressed)
}

fn stat_mode(lab: &TestLab, container: &str, path: &str) -> String {
    let out = lab.docker(&["exec", container, "stat", "-c", "%a", path]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A runbook that tries every way a script has to show a password it got from where passwords
/// are (the standby's primary_conninfo, its postgresql.auto.conf, the container's environment):
/// a step name, print, warn, debug, a table, a measured value, a journal entry, and an error.
/// It runs after failback, when pg-replica is the standby.
fn leaky_runbook() -> String {
    r#"//! Tries to show the passwords.
let ci = setting("pg-replica", "primary_conninfo");
let conf = docker_exec("pg-replica", "cat \"$PGDATA/postgresql.auto.conf\"").stdout;
let env = docker_exec("pg-bases2", "env | grep -i password").stdout;
step(`Leak ${ci}`);
print(`print ${ci}`);
print(`conf ${conf}`);
print(`env ${env}`);
warn(`warn ${ci}`);
debug(`debug ${ci}`);
print_table([#{ secret: ci, other: env }]);
record("secret", ci);
redis_log("leak", #{ pw: ci, rpw: conf });
throw `thrown ${ci}`;
"#
    .to_string()
}

#[test]
fn a_guessed_password_is_not_confirmed_by_masking() {
    // Masking by value would print "x ******** y" and so confirm the guess; by shape it does not.
    let lab = TestLab::new("guess");
    let guess = lab.script(
        "guess.rhai",
        &format!("print(\"x {REPL_PASSWORD} y\");\nprint(\"password=anything\");\n"),
    );
    lab.pgrunbook(&["run", &guess])
        .succeeds()
        .stdout_has(&format!("x {REPL_PASSWORD} y"))
        .stdout_has("password=********");
}

#[test]
fn no_password_in_command_lines_output_journal_spool_or_logs() {
    let lab = TestLab::up("secrets");
    let bases2 = lab.container("pg-bases2");
    let replica = lab.container("pg-replica");
    let redis = format!("{}-redis", lab.id);

    // Make the primary log every statement it runs, and take the replication role's right
    // away, so that setup has to set the role's password in SQL: a password sent as SQL text
    // would end up in the log.
    {
        let mut c = lab.client("pg-bases2");
        c.simple_query("ALTER SYSTEM SET log_statement = 'all'")
            .unwrap();
        c.simple_query("SELECT pg_reload_conf()").unwrap();
        c.simple_query("ALTER ROLE replicator NOREPLICATION")
            .unwrap();
    }

    let sampler = Sampler::start();
    let run = |args: &[&str]| clean(lab.pgrunbook(args));

    run(&["run", "setup", "--dry-run"])
        .succeeds()
        .stdout_has("create role replicator with REPLICATION LOGIN and the configured password");
    run(&["run", "setup"])
        .succeeds()
        .stdout_has("created role replicator");
    run(&["run", "backup"]).succeeds();
    run(&["run", "failover", "--dry-run"]).succeeds();
    run(&["run", "failover"]).succeeds();
    // pg-replica, the new primary, still holds the replication password in its
    // postgresql.auto.conf: this backup copies it into the repository.
    run(&["run", "backup", "--set", "type=incr"]).succeeds();
    run(&["run", "failback", "--dry-run"]).succeeds();
    run(&["run", "failback"]).succeeds();
    run(&["run", "verify"]).succeeds();

    // A wrong password: the error says so without echoing it (or the right one).
    for args in [&["run", "failover"][..], &["run", "verify"], &["status"]] {
        clean(lab.pgrunbook_env(args, &[("PGRUNBOOK_PASSWORD", WRONG_PASSWORD)]));
    }
    clean(lab.pgrunbook_env(
        &["run", "failover", "--dry-run"],
        &[("PGRUNBOOK_PASSWORD", WRONG_PASSWORD)],
    ))
    .fails_with(5)
    .stderr_has("password authentication failed");

    // A runbook that tries to show them: everything it prints is masked, its error too.
    let leaky = lab.script("leaky.rhai", &leaky_runbook());
    run(&["run", &leaky])
        .fails_with(3)
        .stdout_has("print user=replicator password=******** ")
        .stdout_has("password=******** ")
        .stdout_has("POSTGRES_PASSWORD=********")
        .stdout_has("==> [1] Leak user=replicator password=******** ")
        .stderr_has("warn user=replicator password=******** ")
        .stderr_has("debug: leaky.rhai:10:")
        .stderr_has("debug user=replicator password=******** ")
        .stderr_has("error: thrown user=replicator password=******** ")
        .stderr_has("14 | throw `thrown ${ci}`;");

    //    ...with Redis down, into the spool file, which only its owner can read.
    let spool = lab.dir.path().join("spool.jsonl");
    lab.stop_redis();
    clean(lab.pgrunbook(&["run", &leaky]))
        .fails_with(3)
        .stderr_has("journal entries are kept in");
    //    Reading commands with Redis down show what is spooled: masked too.
    run(&["journal", "--last", "100", "--json"])
        .succeeds()
        .stdout_has("password=********");
    lab.start_redis();
    let spooled = std::fs::read_to_string(&spool).unwrap();
    assert!(
        spooled.contains("\"pw\":\"user=replicator password=********"),
        "the leaky entry is spooled, masked: {spooled}"
    );
    assert!(
        leaked(&spooled).is_empty(),
        "spool holds a password: {spooled}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&spool).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Reading commands: the spool is delivered, nothing shows a password.
    run(&["journal", "--last", "100", "--json"])
        .succeeds()
        .stderr_has("delivered");
    run(&["backups", "--json"]).succeeds();
    run(&["status", "--json"]).succeeds();
    run(&["config"]).succeeds().stdout_has("********");
    run(&["lab", "status"]).succeeds();

    // Command lines: sampled all along, never a password, though every process was visible.
    let seen = sampler.finish();
    assert!(
        seen.leaks.is_empty(),
        "passwords on command lines: {:#?}",
        seen.leaks
    );
    assert!(seen.samples >= 50, "only {} samples of ps", seen.samples);
    assert!(
        seen.saw_postgres && seen.saw_pgrunbook,
        "ps showed the containers' and pgrunbook's processes"
    );
    eprintln!(
        "ps sampled {} times; pg_basebackup seen: {}",
        seen.samples, seen.saw_basebackup
    );

    // Redis: every field of every entry, journal and backups.
    for stream in ["journal", "backups"] {
        for e in lab.stream(stream) {
            for (k, v) in &e {
                assert!(leaked(v).is_empty(), "{stream} entry field {k} = {v:?}");
            }
        }
    }
    let journal = lab.stream("journal");
    let leak = journal
        .iter()
        .filter(|e| e["event"] == "leak")
        .collect::<Vec<_>>();
    assert_eq!(
        leak.len(),
        2,
        "the leaky runbook's entries, one of them spooled: {leak:?}"
    );
    assert!(leak
        .iter()
        .all(|e| e["pw"].contains("password=********") && e["rpw"].contains("password=********")));
    assert_eq!(lab.stream("backups").len(), 2);

    // Container logs (the primary logged every statement pgrunbook sent).
    for c in [&bases2, &replica, &redis] {
        let out = lab.docker(&["logs", c]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            leaked(&text).is_empty(),
            "docker logs {c} shows a password: {:?}",
            text.lines()
                .filter(|l| !leaked(l).is_empty())
                .collect::<Vec<_>>()
        );
        if c == &bases2 {
            assert!(
                text.contains("statement: ALTER ROLE \"replicator\""),
                "the role's password was set in SQL, and logged, as a SCRAM verifier"
            );
        }
    }

    // Files: the only ones holding a password are the standbys' postgresql.auto.conf (which
    // pg_basebackup -R writes, with the replication password), mode 0600, and their copies in
    // pgBackRest's repository, whose root only postgres may enter.
    for c in [&bases2, &replica] {
        assert_eq!(
            stat_mode(&lab, c, "/var/lib/postgresql/data/postgresql.auto.conf"),
            "600"
        );
        assert_eq!(stat_mode(&lab, c, "/var/lib/postgresql/data"), "700");
        assert_eq!(stat_mode(&lab, c, "/var/lib/pgbackrest"), "700");
        let (found, compressed) = files_with_secrets(
            c,
            "/var/lib/postgresql /etc /tmp /var/log /var/spool /var/run/postgresql /home /root",
        );
        assert!(
            found
                .iter()
                .any(|(_, p)| p == "/var/lib/postgresql/data/postgresql.auto.conf"),
            "the search finds the standby's conninfo on {c}: {found:?}"
        );
        assert_eq!(compressed, 0, "{c}");
        for (mode, path) in &found {
            assert!(
                path.starts_with("/var/lib/postgresql/data/") && mode == "600",
                "{c}: {path} holds a password with mode {mode}"
            );
        }
    }
    // The repository both nodes mount.
    let (repo, compressed) = files_with_secrets(&replica, "/var/lib/pgbackrest");
    assert_eq!(
        compressed, 0,
        "no data file or WAL in the repository holds a password"
    );
    assert!(
        repo.iter()
            .any(|(_, p)| p.ends_with("/pg_data/postgresql.auto.conf.zst")),
        "the incremental backup copied pg-replica's postgresql.auto.conf: {repo:?}"
    );
    for (mode, path) in &repo {
        assert!(
            path.starts_with("/var/lib/pgbackrest/backup/"),
            "{path} (mode {mode}) holds a password outside the backups"
        );
    }
}
