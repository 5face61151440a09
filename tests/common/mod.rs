//! The end-to-end test harness: a lab of real containers with its own names and ports, the
//! pgrunbook binary run against it, and direct PostgreSQL and Redis clients to check what the
//! runbooks did, independently of them.
//!
//! ```ignore
//! let lab = TestLab::up("setup");
//! lab.pgrunbook(&["run", "setup"]).succeeds().stdout_has("streams from");
//! assert!(lab.query_bool("pg-replica", "SELECT pg_is_in_recovery()"));
//! ```
//!
//! Every lab is removed (containers, volumes, network) when the `TestLab` is dropped, also when
//! the test fails. Names start with `prt-`, ports are free ports picked at start, so a user's own
//! lab (pg-bases2 on 5432...) is never touched.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_pgrunbook");
pub const PASSWORD: &str = "t3st_superuser_pw";
pub const REPL_PASSWORD: &str = "t3st_replication_pw";

mod kill;
#[allow(unused_imports)]
pub use kill::*;
pub mod snapshot;

static COUNTER: AtomicUsize = AtomicUsize::new(0);
static IMAGE: Once = Once::new();

/// Fails the test, loudly, when no Docker engine answers: end-to-end tests never pass silently.
pub fn require_docker() {
    let sock = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    if std::os::unix::net::UnixStream::connect(&sock).is_err() {
        panic!(
            "end-to-end tests need a running Docker engine, and none answers at {sock}. \
             Start dockerd (or set DOCKER_HOST) and run the tests again."
        );
    }
}

/// A port no one listens on, never the same twice in one test process.
///
/// Asking the kernel for port 0 is not enough: it hands a released port out again, so two tests
/// running side by side could both publish a container on it (Docker then refuses the second with
/// "port is already allocated"), and the kernel's ephemeral range is also where outgoing
/// connections take their local ports. So ports come from below that range (20000-32767), from a
/// counter that starts at a place given by the process id, and each is checked free by binding it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_768;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() * 97) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {LOW} and {}", LOW + SPAN - 1)
}

/// The connection settings of a lab node's published port (superuser, application database).
pub fn pg_config(port: u16) -> postgres::Config {
    let mut c = postgres::Config::new();
    c.host("127.0.0.1")
        .port(port)
        .user("postgres")
        .password(PASSWORD)
        .dbname("bases2_proyectos")
        .connect_timeout(Duration::from_secs(3));
    c
}

/// The result of one pgrunbook invocation, with assertions that print everything on failure.
#[derive(Debug)]
pub struct Run {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    fn from(args: &[&str], out: Output, elapsed: Duration) -> Run {
        Run {
            args: args.iter().map(|s| s.to_string()).collect(),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed,
        }
    }

    fn show(&self) -> String {
        format!(
            "pgrunbook {}\n--- exit code {}\n--- stdout\n{}\n--- stderr\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }

    pub fn succeeds(self) -> Run {
        assert_eq!(self.code, 0, "expected success\n{}", self.show());
        self
    }

    pub fn fails_with(self, code: i32) -> Run {
        assert_eq!(
            self.code,
            code,
            "expected exit code {code}\n{}",
            self.show()
        );
        self
    }

    pub fn stdout_has(self, text: &str) -> Run {
        assert!(
            self.stdout.contains(text),
            "stdout lacks {text:?}\n{}",
            self.show()
        );
        self
    }

    pub fn stdout_lacks(self, text: &str) -> Run {
        assert!(
            !self.stdout.contains(text),
            "stdout has {text:?}\n{}",
            self.show()
        );
        self
    }

    pub fn stderr_has(self, text: &str) -> Run {
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}\n{}",
            self.show()
        );
        self
    }
}

/// Runs pgrunbook in `dir` with no lab (for commands that need none).
pub fn pgrunbook_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let t = Instant::now();
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run pgrunbook");
    Run::from(args, out, t.elapsed())
}

pub struct TestLab {
    pub id: String,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    /// pgrunbook's data directory (`PGRUNBOOK_DATA_DIR`): the lab's own, or one shared.
    pub data_dir: PathBuf,
    pub ports: Vec<(String, u16)>,
    pub redis_port: u16,
    pub keep: bool,
    /// How the harness logs in to check things: (superuser, password, database).
    pub login: (String, String, String),
    pub stanza: String,
    /// Made by hand with the docker CLI (`TestLab::foreign`), not by `pgrunbook lab up`:
    /// the containers, volumes and network to remove at the end.
    pub by_hand: Option<ByHand>,
    /// The data directory inside the nodes' containers.
    pub pgdata: String,
}

/// How a pair made by hand is laid out: the PostgreSQL version of its image, where that
/// version's official image keeps the data, and where the server's configuration file is.
#[derive(Debug, Clone)]
pub struct Layout {
    /// PostgreSQL's major version: the images pgrunbook-official:N (the nodes) and
    /// pgrunbook-lab:N (Redis), which `pgrunbook lab build --pg N` makes.
    pub pg: u32,
    /// PGDATA inside the containers.
    pub pgdata: String,
    /// Where the data volume is mounted: PGDATA itself, or a parent of it (18's image).
    pub volume_at: String,
    /// The server runs with `-c config_file=/etc/postgresql/postgresql.conf`, a file mounted
    /// from the host (a common compose pattern): the data directory's postgresql.conf is unused.
    pub config_file_outside: bool,
}

impl Layout {
    /// As the official `postgres:N` image lays it out: up to 17 the volume and PGDATA are
    /// /var/lib/postgresql/data; from 18 the volume is /var/lib/postgresql and PGDATA
    /// /var/lib/postgresql/18/docker.
    pub fn official(pg: u32) -> Layout {
        let (pgdata, volume_at) = if pg >= 18 {
            (
                format!("/var/lib/postgresql/{pg}/docker"),
                "/var/lib/postgresql".to_string(),
            )
        } else {
            let d = "/var/lib/postgresql/data".to_string();
            (d.clone(), d)
        };
        Layout {
            pg,
            pgdata,
            volume_at,
            config_file_outside: false,
        }
    }

    /// With the server's configuration file outside the data directory.
    pub fn with_config_file_outside(mut self) -> Layout {
        self.config_file_outside = true;
        self
    }
}

/// The configuration file of a server started with `-c config_file=...`, as a compose user
/// writes it: what the official image's initdb would have put in the data directory's.
const OUTSIDE_CONFIG: &str =
    "# Mounted at /etc/postgresql/postgresql.conf; the server runs with -c config_file=...\n\
listen_addresses = '*'\n\
max_connections = 100\n\
shared_buffers = 128MB\n\
dynamic_shared_memory_type = posix\n\
max_wal_size = 1GB\n\
min_wal_size = 80MB\n\
log_timezone = 'Etc/UTC'\n\
timezone = 'Etc/UTC'\n\
datestyle = 'iso, mdy'\n\
default_text_search_config = 'pg_catalog.english'\n\
# Common tuning. It also spreads the checkpoint after a promotion over about 27 minutes, during\n\
# which a promoted node's control file still names the old timeline (what pg_rewind < 16 reads).\n\
checkpoint_timeout = 30min\n";

/// What a pair made by hand consists of, for the cleanup.
pub struct ByHand {
    pub containers: Vec<String>,
    pub volumes: Vec<String>,
    pub network: String,
}

/// The PostgreSQL versions whose official-flavour image this test process has built.
static OFFICIAL_IMAGES: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// The official flavour's names: nothing like the seed's.
pub const FOREIGN_PASSWORD: &str = "f0reign_dba_pw";
pub const FOREIGN_REPL_PASSWORD: &str = "f0reign_stream_pw";
/// The port PostgreSQL listens on inside the foreign containers (not 5432).
pub const FOREIGN_INNER_PORT: u16 = 5544;

impl TestLab {
    /// Waits at most `secs` seconds until `node` answers and refuses writes (a fenced node
    /// started by hand); a write it accepts is split brain, and fails the test at once.
    pub fn wait_read_only(&self, secs: u64, node: &str) {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(mut c) = self.try_client(node) {
                match c.execute("CREATE TABLE split_brain_probe (x int)", &[]) {
                    Err(e) if e.code().map(|c| c.code()) == Some("25006") => return,
                    Err(_) => {}
                    Ok(_) => panic!("{node} accepted a write after a manual start: split brain"),
                }
            }
            assert!(
                Instant::now() < end,
                "{node} did not come back read-only within {secs} s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A lab's configuration, written but not started.
    pub fn new(tag: &str) -> TestLab {
        Self::with_extra(tag, "")
    }

    /// With extra TOML appended to the configuration.
    pub fn with_extra(tag: &str, extra: &str) -> TestLab {
        Self::configured(tag, extra, None)
    }

    /// A lab whose pgrunbook keeps its data in `data_dir`, which other labs may share, and
    /// spools where it does by default (no `redis.spool`): like one user with two configurations.
    pub fn with_shared_data_dir(tag: &str, data_dir: &Path) -> TestLab {
        Self::configured(tag, "", Some(data_dir))
    }

    /// The configuration is written but nothing started. Without `shared_data_dir`, the data
    /// directory and the spool file (`redis.spool`) are the lab's own, in its directory.
    fn configured(tag: &str, extra: &str, shared_data_dir: Option<&Path>) -> TestLab {
        require_docker();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("prt-{}-{}{}", tag, std::process::id() % 100000, n);
        let dir = tempfile::tempdir().unwrap();
        let p1 = free_port();
        let p2 = free_port();
        let rp = free_port();
        let config = format!(
            r#"[cluster]
password = "{PASSWORD}"
replication_password = "{REPL_PASSWORD}"

[nodes.pg-bases2]
container = "{id}-pg-bases2"
host = "127.0.0.1"
port = {p1}
slot = "primary1"
init = "primary"

[nodes.pg-replica]
container = "{id}-pg-replica"
host = "127.0.0.1"
port = {p2}
slot = "replica1"
init = "standby"

[redis]
url = "redis://127.0.0.1:{rp}"
prefix = "{id}"
{spool}

[lab]
network = "{id}-net"
repo_volume = "{id}-pgbackrest"
redis_container = "{id}-redis"
redis_port = {rp}
label = "{id}"
{extra}
"#,
            spool = match shared_data_dir {
                Some(_) => String::new(),
                None => format!("spool = \"{}\"", dir.path().join("spool.jsonl").display()),
            }
        );
        let data_dir = match shared_data_dir {
            Some(d) => d.to_path_buf(),
            None => dir.path().join("data"),
        };
        let config_path = dir.path().join("pgrunbook.toml");
        std::fs::write(&config_path, config).unwrap();
        TestLab {
            id,
            dir,
            config_path,
            data_dir,
            ports: vec![("pg-bases2".into(), p1), ("pg-replica".into(), p2)],
            redis_port: rp,
            keep: std::env::var("PGRUNBOOK_TEST_KEEP").is_ok(),
            login: (
                "postgres".into(),
                PASSWORD.into(),
                "bases2_proyectos".into(),
            ),
            stanza: "bases2-db".into(),
            by_hand: None,
            pgdata: "/var/lib/postgresql/data".into(),
        }
    }

    /// A primary/standby pair as a user builds it by hand with the docker CLI, from the
    /// official flavour's image (like `postgres:17` with Debian's pgBackRest): it starts as root,
    /// sets no stop signal, runs with PostgreSQL's defaults (no archiving, no wal_log_hints),
    /// listens on port 5544 inside its container, and uses its own names: nodes `alpha` and
    /// `beta`, superuser `dba`, database `appdb`, replication role `streamer`, slots
    /// `alpha_slot`/`beta_slot`, stanza `app-db`, no `replica_test` table. The primary's own
    /// init script only allows replication in pg_hba.conf. The standby is created and left for
    /// `setup` to clone, as the seed does. pgrunbook learns all of this from the config file
    /// alone (no environment variables).
    pub fn foreign(tag: &str) -> TestLab {
        Self::foreign_on(tag, Layout::official(17))
    }

    /// `foreign` on PostgreSQL `layout.pg`, with the data directory where that version's
    /// official image keeps it, and the configuration file where `layout` says.
    pub fn foreign_on(tag: &str, layout: Layout) -> TestLab {
        require_docker();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("prt-{}-{}{}", tag, std::process::id() % 100000, n);
        let dir = tempfile::tempdir().unwrap();
        let (p1, p2, rp) = (free_port(), free_port(), free_port());
        let alpha = format!("{id}-alpha");
        let beta = format!("{id}-beta");
        let redis = format!("{id}-redis");
        let net = format!("{id}-net");
        let pgdata = layout.pgdata.clone();
        let config = format!(
            r#"# Written as docs/own-containers.md says, for a pair pgrunbook did not build.
[cluster]
data_dir = "{pgdata}"
database = "appdb"
superuser = "dba"
password = "{FOREIGN_PASSWORD}"
replication_user = "streamer"
replication_password = "{FOREIGN_REPL_PASSWORD}"

[nodes.alpha]
container = "{alpha}"
host = "127.0.0.1"
port = {p1}
slot = "alpha_slot"
init = "primary"

[nodes.beta]
container = "{beta}"
host = "127.0.0.1"
port = {p2}
slot = "beta_slot"
init = "standby"

[pgbackrest]
stanza = "app-db"

[redis]
url = "redis://127.0.0.1:{rp}"
prefix = "{id}"
"#
        );
        let config_path = dir.path().join("pgrunbook.toml");
        std::fs::write(&config_path, config).unwrap();
        let data_dir = dir.path().join("data");
        let lab = TestLab {
            id: id.clone(),
            dir,
            config_path,
            data_dir,
            ports: vec![("alpha".into(), p1), ("beta".into(), p2)],
            redis_port: rp,
            keep: std::env::var("PGRUNBOOK_TEST_KEEP").is_ok(),
            login: ("dba".into(), FOREIGN_PASSWORD.into(), "appdb".into()),
            stanza: "app-db".into(),
            by_hand: Some(ByHand {
                containers: vec![alpha.clone(), beta.clone(), redis.clone()],
                volumes: ["alpha-data", "beta-data", "repo", "redis-data"]
                    .iter()
                    .map(|v| format!("{id}-{v}"))
                    .collect(),
                network: net.clone(),
            }),
            pgdata: pgdata.clone(),
        };
        {
            let mut built = OFFICIAL_IMAGES.lock().unwrap();
            if !built.contains(&layout.pg) {
                let pg = layout.pg.to_string();
                let r = pgrunbook_in(
                    lab.dir.path(),
                    &["lab", "build", "--flavour", "official", "--pg", &pg],
                    &[],
                );
                assert_eq!(
                    r.code, 0,
                    "building the official flavour of PostgreSQL {pg} failed:\n{}",
                    r.stderr
                );
                built.push(layout.pg);
            }
        }
        let conf = lab.dir.path().join("postgresql.conf");
        if layout.config_file_outside {
            std::fs::write(&conf, OUTSIDE_CONFIG).unwrap();
        }
        // The user's own init script: replication from the other container, with a password.
        let init = lab.dir.path().join("initdb");
        std::fs::create_dir_all(&init).unwrap();
        let script = init.join("10-replication.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\nprintf 'host replication all all scram-sha-256\\n' >> \"$PGDATA/pg_hba.conf\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let must = |args: &[&str]| {
            let out = lab.docker(args);
            assert!(
                out.status.success(),
                "docker {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        must(&["network", "create", &net]);
        let node = |verb: &str, name: &str, port: u16, data: &str, init: Option<&Path>| {
            let mut args: Vec<String> = [
                verb,
                "--name",
                name,
                "--network",
                &net,
                "--restart",
                "unless-stopped",
            ]
            .into_iter()
            .chain((verb == "run").then_some("-d"))
            .map(|s| s.to_string())
            .collect();
            args.extend([
                "-p".into(),
                format!("127.0.0.1:{port}:{FOREIGN_INNER_PORT}"),
                "-e".into(),
                "POSTGRES_USER=dba".into(),
                "-e".into(),
                format!("POSTGRES_PASSWORD={FOREIGN_PASSWORD}"),
                "-e".into(),
                "POSTGRES_DB=appdb".into(),
                "-e".into(),
                format!("PGDATA={pgdata}"),
                "-v".into(),
                format!("{id}-{data}:{}", layout.volume_at),
                "-v".into(),
                format!("{id}-repo:/var/lib/pgbackrest"),
            ]);
            if let Some(dir) = init {
                args.push("-v".into());
                args.push(format!("{}:/docker-entrypoint-initdb.d:ro", dir.display()));
            }
            if layout.config_file_outside {
                args.push("-v".into());
                args.push(format!(
                    "{}:/etc/postgresql/postgresql.conf:ro",
                    conf.display()
                ));
            }
            args.extend([
                format!("pgrunbook-official:{}", layout.pg),
                "postgres".into(),
                "-c".into(),
                format!("port={FOREIGN_INNER_PORT}"),
            ]);
            if layout.config_file_outside {
                args.extend([
                    "-c".into(),
                    "config_file=/etc/postgresql/postgresql.conf".into(),
                ]);
            }
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            must(&refs);
        };
        node("run", &alpha, p1, "alpha-data", Some(&init));
        // Like the seed's standby: created, never started, until setup clones it.
        node("create", &beta, p2, "beta-data", None);
        must(&[
            "run",
            "-d",
            "--name",
            &redis,
            "-p",
            &format!("127.0.0.1:{rp}:6379"),
            "-v",
            &format!("{id}-redis-data:/var/lib/redis-lab"),
            &format!("pgrunbook-lab:{}", layout.pg),
            "redis-server",
            "--bind",
            "0.0.0.0",
            "--protected-mode",
            "no",
            // Its volume: the image's working directory is not writable, and Redis refuses
            // writes (MISCONF) once a snapshot fails there.
            "--dir",
            "/var/lib/redis-lab",
        ]);
        // The official entrypoint runs initdb first (and the matrix starts several pairs at
        // once): wait until the primary takes logins, up to a minute.
        let end = Instant::now() + Duration::from_secs(60);
        while lab.try_client("alpha").is_none() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = lab.client("alpha");
        lab
    }

    /// A lab that is up (containers running, primary accepting connections).
    pub fn up(tag: &str) -> TestLab {
        let lab = TestLab::new(tag);
        lab.ensure_image();
        lab.pgrunbook(&["lab", "up"]).succeeds();
        lab
    }

    /// A lab that is up and replicating (setup done).
    pub fn replicating(tag: &str) -> TestLab {
        let lab = TestLab::up(tag);
        lab.pgrunbook(&["run", "setup"]).succeeds();
        lab
    }

    /// Builds the lab image once per test process (a no-op when it exists).
    pub fn ensure_image(&self) {
        IMAGE.call_once(|| {
            let r = self.pgrunbook(&["lab", "build"]);
            assert_eq!(r.code, 0, "building the lab image failed:\n{}", r.stderr);
        });
    }

    pub fn container(&self, node: &str) -> String {
        format!("{}-{node}", self.id)
    }

    pub fn port(&self, node: &str) -> u16 {
        self.ports.iter().find(|(n, _)| n == node).unwrap().1
    }

    /// Runs pgrunbook with this lab's configuration, in the lab's own directory.
    pub fn pgrunbook(&self, args: &[&str]) -> Run {
        self.pgrunbook_env(args, &[])
    }

    /// A `pgrunbook` command with this lab's configuration, not started: for tests that need
    /// the child itself (its pipes, its pid) rather than its finished output.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("PGRUNBOOK_CONFIG", &self.config_path)
            .env("PGRUNBOOK_DATA_DIR", self.dir.path().join("data"));
        cmd
    }

    pub fn pgrunbook_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut env: Vec<(&str, &str)> = env.to_vec();
        let cfg = self.config_path.to_str().unwrap().to_string();
        env.push(("PGRUNBOOK_CONFIG", &cfg));
        let data = self.data_dir.to_str().unwrap().to_string();
        env.push(("PGRUNBOOK_DATA_DIR", &data));
        pgrunbook_in(self.dir.path(), args, &env)
    }

    /// Writes a script in the lab's directory and returns its path.
    pub fn script(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        name.to_string()
    }

    // ---- direct access, independent of pgrunbook -------------------------------------------

    /// How the harness connects to a node's published port, as the lab's superuser.
    pub fn pg_config(&self, node: &str) -> postgres::Config {
        let mut c = postgres::Config::new();
        c.host("127.0.0.1")
            .port(self.port(node))
            .user(&self.login.0)
            .password(&self.login.1)
            .dbname(&self.login.2)
            .connect_timeout(Duration::from_secs(3));
        c
    }

    pub fn client(&self, node: &str) -> postgres::Client {
        let port = self.port(node);
        let mut last = None;
        for _ in 0..150 {
            match self.pg_config(node).connect(postgres::NoTls) {
                Ok(c) => return c,
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("cannot connect to {node} on port {port}: {:?}", last);
    }

    pub fn try_client(&self, node: &str) -> Option<postgres::Client> {
        self.pg_config(node).connect(postgres::NoTls).ok()
    }

    pub fn query_bool(&self, node: &str, sql: &str) -> bool {
        self.client(node).query_one(sql, &[]).unwrap().get(0)
    }

    pub fn query_i64(&self, node: &str, sql: &str) -> i64 {
        self.client(node).query_one(sql, &[]).unwrap().get(0)
    }

    /// The cluster's PostgreSQL system identifier, read on `node`.
    pub fn system_identifier(&self, node: &str) -> String {
        self.client(node)
            .query_one(
                "SELECT system_identifier::text FROM pg_control_system()",
                &[],
            )
            .unwrap()
            .get(0)
    }

    pub fn query_strings(&self, node: &str, sql: &str) -> Vec<String> {
        self.client(node)
            .query(sql, &[])
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect()
    }

    pub fn redis_container(&self) -> String {
        format!("{}-redis", self.id)
    }

    /// Stops the lab's Redis (its data is kept in a volume; `start_redis` brings it back on the
    /// same port).
    pub fn stop_redis(&self) {
        let out = self.docker(&["stop", &self.redis_container()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the lab's Redis again and waits until it answers.
    pub fn start_redis(&self) {
        let out = self.docker(&["start", &self.redis_container()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = format!("redis://127.0.0.1:{}", self.redis_port);
        let t = Instant::now();
        loop {
            let pong = redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if pong.is_ok() {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "Redis did not come back: {pong:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn redis(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}", self.redis_port))
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// Entries of one of the lab's streams (`journal`, `backups`), oldest first.
    pub fn stream(&self, name: &str) -> Vec<std::collections::HashMap<String, String>> {
        let mut c = self.redis();
        let r: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(format!("{}:{name}", self.id))
            .arg("-")
            .arg("+")
            .query(&mut c)
            .unwrap();
        r.ids
            .into_iter()
            .map(|e| {
                e.map
                    .into_iter()
                    .map(|(k, v)| (k, redis::from_redis_value::<String>(v).unwrap()))
                    .collect()
            })
            .collect()
    }

    /// State of a container through the Docker API (the `docker` crate of the project is not
    /// used: bollard directly would be the same code; the CLI is the independent witness).
    pub fn container_state(&self, node: &str) -> String {
        let out = Command::new("docker")
            .args(["inspect", "-f", "{{.State.Status}}", &self.container(node)])
            .output()
            .unwrap();
        if !out.status.success() {
            return "missing".into();
        }
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `pgbackrest info --output=json` run in the node's container, independently of pgrunbook.
    pub fn pgbackrest_info(&self, node: &str) -> serde_json::Value {
        let out = self.docker(&[
            "exec",
            "-u",
            "postgres",
            &self.container(node),
            "pgbackrest",
            &format!("--stanza={}", self.stanza),
            "--output=json",
            "info",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Whether the node's data directory holds failover's fence marker.
    pub fn is_fenced(&self, node: &str) -> bool {
        self.docker(&[
            "exec",
            &self.container(node),
            "test",
            "-f",
            &format!("{}/pgrunbook.fenced", self.pgdata),
        ])
        .status
        .success()
    }

    /// A write load that ends in a crash: `writers` clients on `node`'s published port, each
    /// running `insert` (its `$1` a unique value `TAG-WRITER-N`) in autocommit and recording every
    /// commit acknowledged to it; after `for_ms` the node's container is killed with SIGKILL (no
    /// clean shutdown). Returns the acknowledged values.
    pub fn writes_until_killed(
        &self,
        node: &str,
        insert: &str,
        tag: &str,
        writers: usize,
        for_ms: u64,
    ) -> Vec<String> {
        self.writes_until(node, insert, tag, writers, for_ms, || {
            let out = self.docker(&["kill", "-s", "KILL", &self.container(node)]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        })
    }

    /// `writes_until_killed` with the fault of the caller's choosing: `fault` runs after
    /// `for_ms`, while the writers go on; they stop at their first error (or when it returns).
    pub fn writes_until(
        &self,
        node: &str,
        insert: &str,
        tag: &str,
        writers: usize,
        for_ms: u64,
        fault: impl FnOnce(),
    ) -> Vec<String> {
        writes_until(self.pg_config(node), insert, tag, writers, for_ms, fault)
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker").args(args).output().unwrap()
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("PGRUNBOOK_TEST_KEEP: leaving lab {} in place", self.id);
            return;
        }
        if let Some(h) = &self.by_hand {
            let mut args = vec!["rm", "-f"];
            args.extend(h.containers.iter().map(String::as_str));
            let _ = self.docker(&args);
            let mut args = vec!["volume", "rm", "-f"];
            args.extend(h.volumes.iter().map(String::as_str));
            let _ = self.docker(&args);
            let _ = self.docker(&["network", "rm", &h.network]);
            return;
        }
        let r = self.pgrunbook(&["lab", "down", "--volumes"]);
        if r.code != 0 {
            eprintln!("cleaning up lab {} failed: {}", self.id, r.stderr);
        }
    }
}

/// A write load on the server `cfg` reaches: `writers` clients, each running `insert` (its `$1`
/// a unique value `TAG-WRITER-N`) in autocommit and recording every commit acknowledged to it;
/// `fault` runs after `for_ms` while they go on, and they stop at their first error (or when it
/// returns). Returns the acknowledged values.
pub fn writes_until(
    cfg: postgres::Config,
    insert: &str,
    tag: &str,
    writers: usize,
    for_ms: u64,
    fault: impl FnOnce(),
) -> Vec<String> {
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Mutex};
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = vec![];
    for w in 0..writers {
        let (acked, stop, cfg) = (acked.clone(), stop.clone(), cfg.clone());
        let (insert, tag) = (insert.to_string(), tag.to_string());
        handles.push(std::thread::spawn(move || {
            let mut c = cfg.connect(postgres::NoTls).unwrap();
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let val = format!("{tag}-{w}-{i}");
                match c.execute(insert.as_str(), &[&val]) {
                    Ok(_) => acked.lock().unwrap().push(val),
                    Err(_) => return,
                }
                i += 1;
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(for_ms));
    fault();
    stop.store(true, Ordering::SeqCst);
    for h in handles {
        h.join().unwrap();
    }
    Arc::try_unwrap(acked).unwrap().into_inner().unwrap()
}
