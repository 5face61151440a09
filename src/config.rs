//! Configuration: built-in defaults (the seed's names), then `pgrunbook.toml`, then the
//! environment.
//!
//! Why three layers: a user of the seed's own compose setup runs pgrunbook with no file at all;
//! a user with another setup writes only what differs; CI and tests change one value (a port, a
//! password) through the environment without writing files. Passwords never come from the command
//! line, because a command line is visible to every user of the machine through `ps`.
//!
//! Environment overrides: `PGRUNBOOK_PASSWORD` and `PGRUNBOOK_REPLICATION_PASSWORD` set the two
//! passwords; any other value is `PGRUNBOOK_<SECTION>__<KEY>`, for example
//! `PGRUNBOOK_REDIS__URL=redis://127.0.0.1:6380` or `PGRUNBOOK_NODES__PG_REPLICA__PORT=5434`
//! (case and `-`/`_` do not matter).

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub cluster: Cluster,
    /// Nodes by the name runbooks use for them.
    pub nodes: BTreeMap<String, Node>,
    pub pgbackrest: PgBackRest,
    pub redis: Redis,
    pub lab: Lab,
    pub runbook: RunbookLimits,
    /// `[[schedule]]`: runbooks `pgrunbook watch` runs on a cron schedule (see docs/watch.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule: Vec<Schedule>,
    /// `[watch]`: the watcher's lease, heartbeat and policy (see docs/watch.md).
    #[serde(default)]
    pub watch: Watch,
    /// `[hooks]`: runbooks run on events (see docs/clients.md).
    #[serde(default)]
    pub hooks: Hooks,
    /// `[clients]`: the applications' Docker network and the aliases that follow the primary
    /// (see docs/clients.md).
    #[serde(default)]
    pub clients: Clients,
    /// Where the configuration came from, for messages.
    #[serde(skip)]
    pub source: String,
    /// Docker's environment when the configuration was loaded.
    #[serde(skip)]
    pub docker_env: DockerEnv,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// The application database (`sql` connects to it).
    pub database: String,
    pub superuser: String,
    pub password: String,
    pub replication_user: String,
    pub replication_password: String,
    /// The data directory inside every node's container.
    pub data_dir: String,
    pub connect_timeout_ms: u64,
    /// Synchronous replication: `setup` and `failback` set `synchronous_standby_names = '*'` on
    /// the primary once its standby streams, so no commit returns before the standby has it;
    /// `failover` clears it on the new primary, which has no standby to wait for.
    pub synchronous: bool,
    /// pgrunbook's own table for `verify`'s row round trip, `schema.table` in the application
    /// database. Created (schema too) when missing, so verify works on any database; rows older
    /// than a day are deleted as new ones come.
    pub verify_table: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Docker container name.
    pub container: String,
    /// Address of the published PostgreSQL port, as seen from the host.
    pub host: String,
    pub port: u16,
    /// The slot this node reads from when it is a standby (`replica1`, `primary1`).
    pub slot: String,
    /// What the lab makes of this node when its data directory is empty: `primary` or `standby`.
    pub init: String,
    /// The Docker engine this node's container runs on: `unix:///path/docker.sock` or
    /// `tcp://ADDR:PORT` (with `tls` for TLS). Empty: Docker's own `DOCKER_HOST`, else the local
    /// socket. See docs/multi-host.md.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub docker: String,
    /// Client certificates for a `tcp://` engine that requires TLS. Unset: `DOCKER_TLS_VERIFY`
    /// and `DOCKER_CERT_PATH` (`ca.pem`, `cert.pem`, `key.pem`) when the node uses `DOCKER_HOST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// Failover preference: among equally advanced standbys the higher wins; 0: never promote
    /// this node.
    #[serde(default = "default_priority")]
    pub priority: u32,
    /// `HOST:PORT` at which the other nodes' PostgreSQL reaches this one (replication, clones,
    /// pg_rewind), when they see it on another network than pgrunbook does. Empty: the
    /// container's name when every node shares one engine (as on one Docker network), else
    /// `host:port`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub replication_address: String,
    /// Where `pgrunbook watch` serves this node's health endpoint (`127.0.0.1:8008`); empty:
    /// none (see docs/clients.md).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub health: String,
}

/// `[hooks]`: runbooks run on events, time-limited; their failure never undoes the operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hooks {
    /// A runbook (a name or a path) run after every change of role: failover, switchover,
    /// failback (and the watcher's auto-rejoin), with parameters node, old_role, new_role,
    /// cluster, run_id. Empty: none.
    pub on_role_change: String,
    /// How long a hook may run before it is stopped.
    pub timeout_ms: u64,
}

impl Default for Hooks {
    fn default() -> Hooks {
        Hooks {
            on_role_change: String::new(),
            timeout_ms: 10_000,
        }
    }
}

/// `[clients]`: the applications' network, on which the primary carries `primary_alias` and
/// each streaming standby `replica_alias`. Empty network: none.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Clients {
    pub network: String,
    pub primary_alias: String,
    pub replica_alias: String,
}

impl Default for Clients {
    fn default() -> Clients {
        Clients {
            network: String::new(),
            primary_alias: "pg-primary".into(),
            replica_alias: "pg-replicas".into(),
        }
    }
}

fn default_priority() -> u32 {
    100
}

/// `tls = { ca, cert, key }`: PEM files for a Docker engine that verifies its clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The Docker engine a node runs on, resolved from its `docker`/`tls` and Docker's environment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Engine {
    /// `unix:///var/run/docker.sock` or `tcp://ADDR:PORT`.
    pub url: String,
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
}

impl Engine {
    /// The engine as messages show it (`tcp://10.0.0.11:2376 (TLS)`).
    pub fn shown(&self) -> String {
        if self.tls.is_some() {
            format!("{} (TLS)", self.url)
        } else {
            self.url.clone()
        }
    }
}

/// Docker's own environment (`DOCKER_HOST`, `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`), read when
/// the configuration is loaded: the default engine of a node that names none.
#[derive(Debug, Clone, Default)]
pub struct DockerEnv {
    pub host: Option<String>,
    pub tls_verify: bool,
    pub cert_path: Option<PathBuf>,
}

impl DockerEnv {
    pub fn from_env(env: &[(String, String)]) -> DockerEnv {
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        DockerEnv {
            host: get("DOCKER_HOST"),
            // Docker's CLI takes any non-empty value as "on", "0" included.
            tls_verify: get("DOCKER_TLS_VERIFY").is_some(),
            cert_path: get("DOCKER_CERT_PATH").map(PathBuf::from),
        }
    }
}

pub const DEFAULT_ENGINE: &str = "unix:///var/run/docker.sock";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgBackRest {
    pub stanza: String,
    pub repo_path: String,
    /// How many full backups the repository keeps.
    pub retention_full: u32,
    /// pgBackRest's `compress-type` for backups and archived WAL: "zst" (the default: about
    /// five times faster than "gz" at level 6 and a smaller repository, see docs/benchmarks.md),
    /// "lz4", "gz", "bz2" or "none".
    pub compress_type: String,
    /// pgBackRest's `compress-level` (zst: 3 is its own default).
    pub compress_level: u32,
    /// pgBackRest's `process-max` for backup and restore; 0: the node's CPU count plus one
    /// (`nproc` in its container when the configuration is written, in the restore's one-off
    /// container for a restore): a restore of many small files waits on their fsyncs, and one
    /// process more than cores overlaps that wait with the work of the largest file.
    pub process_max: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redis {
    pub url: String,
    /// Prefix of every key pgrunbook writes (`<prefix>:journal`, `<prefix>:backups`).
    pub prefix: String,
    pub connect_timeout_ms: u64,
    /// Where journal entries wait while Redis is unreachable. Empty: a file of its own for this
    /// Redis and prefix in the user's data directory (see `Config::spool_path`).
    pub spool: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lab {
    pub image: String,
    /// The "official" flavour's image (`lab up --flavour official`): containers that behave like
    /// the official postgres image with Debian's pgBackRest, as users already have them.
    pub official_image: String,
    pub base_image: String,
    pub network: String,
    /// The pgBackRest repository volume both nodes mount at `pgbackrest.repo_path` (nodes on
    /// one engine, and no `repo_host_path`).
    pub repo_volume: String,
    /// A directory on every host, bind-mounted at `pgbackrest.repo_path` in every node's
    /// container instead of `repo_volume`: the same network file system mounted at this path on
    /// every host, so whichever node is primary backs up and archives into one repository.
    /// Empty: `repo_volume` on one engine; on several, the simulated hosts' shared directory
    /// (`lab hosts up`), else `lab up` refuses. See docs/multi-host.md.
    #[serde(default)]
    pub repo_host_path: String,
    pub redis_container: String,
    pub redis_port: u16,
    /// Label put on everything the lab creates, so `lab down` removes only its own things.
    pub label: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunbookLimits {
    /// Rhai operations a runbook may run before it is stopped (0: no limit).
    pub max_operations: u64,
    /// Wall-clock limit of one run, in seconds (0: no limit).
    pub timeout_s: u64,
}

/// One `[[schedule]]`: a runbook, its parameters, and when `pgrunbook watch` runs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// The runbook, as `pgrunbook run` takes it (a shipped name, a name in ./runbooks, a path).
    pub runbook: String,
    /// Six fields, seconds first: `sec min hour day month weekday` (`0 0 3 * * Sun`).
    pub cron: String,
    /// The runbook's parameters, as `--set` gives them (`set = { type = "full" }`).
    #[serde(default)]
    pub set: BTreeMap<String, toml::Value>,
    /// A name for the journal and the last-run record; default `RUNBOOK cron`.
    #[serde(default)]
    pub name: String,
}

impl Schedule {
    /// The name the schedule is recorded under: its own, else the runbook and its parameters.
    pub fn key(&self) -> String {
        if !self.name.is_empty() {
            return self.name.clone();
        }
        let sets: Vec<String> = self
            .sets()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if sets.is_empty() {
            self.runbook.clone()
        } else {
            format!("{} {}", self.runbook, sets.join(" "))
        }
    }

    /// The parameters as `--set KEY=VALUE` pairs.
    pub fn sets(&self) -> Vec<(String, String)> {
        self.set
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect()
    }
}

/// `[watch]`: how `pgrunbook watch` coordinates with other watchers, and its policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Watch {
    /// The policy module: a stdlib name (`watch`, found in ./stdlib first) or a path to a .rhai
    /// file. It decides when to fail over; see stdlib/watch.rhai.
    pub policy: String,
    /// Values that replace the policy's `settings()` (`settings = { grace_ms = 3000 }`).
    pub settings: BTreeMap<String, toml::Value>,
    /// How long the lease in Redis lasts unless renewed; the acting watcher renews it every
    /// third of this. A watcher that dies is replaced after at most this long.
    pub lease_ttl_ms: u64,
    /// How often the watcher writes its heartbeat (shown by `pgrunbook status`).
    pub heartbeat_ms: u64,
}

impl Default for Watch {
    fn default() -> Watch {
        Watch {
            policy: "watch".into(),
            settings: BTreeMap::new(),
            lease_ttl_ms: 3000,
            heartbeat_ms: 1000,
        }
    }
}

const DEFAULTS: &str = r#"
[cluster]
database = "bases2_proyectos"
superuser = "postgres"
password = "postgres_pass"
replication_user = "replicator"
replication_password = "replica_pass"
data_dir = "/var/lib/postgresql/data"
connect_timeout_ms = 3000
synchronous = false
verify_table = "pgrunbook.verify_rows"

[nodes.pg-bases2]
container = "pg-bases2"
host = "127.0.0.1"
port = 5432
slot = "primary1"
init = "primary"

[nodes.pg-replica]
container = "pg-replica"
host = "127.0.0.1"
port = 5433
slot = "replica1"
init = "standby"

[pgbackrest]
stanza = "bases2-db"
repo_path = "/var/lib/pgbackrest"
retention_full = 2
compress_type = "zst"
compress_level = 3
process_max = 0

[redis]
url = "redis://127.0.0.1:6379"
prefix = "pgrunbook"
connect_timeout_ms = 300
spool = ""

[lab]
image = "pgrunbook-lab:17"
official_image = "pgrunbook-official:17"
base_image = "pgrunbook-base:trixie"
network = "pgrunbook-lab"
repo_volume = "pgrunbook-pgbackrest"
repo_host_path = ""
redis_container = "pgrunbook-redis"
redis_port = 6379
label = "pgrunbook-lab"

[runbook]
max_operations = 50000000
timeout_s = 3600

[watch]
policy = "watch"
lease_ttl_ms = 3000
heartbeat_ms = 1000
settings = {}
"#;

impl Config {
    /// The built-in defaults alone.
    pub fn defaults() -> Config {
        let mut c: Config = toml::from_str(DEFAULTS).expect("built-in defaults parse");
        c.source = "built-in defaults".into();
        c
    }

    /// `--config` if given, else `./pgrunbook.toml` if it exists, else the defaults; then the
    /// environment on top.
    pub fn load(explicit: Option<&Path>) -> Result<Config> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        match explicit {
            Some(p) => Self::load_from(Some(p), &env),
            None => {
                let local = PathBuf::from("pgrunbook.toml");
                if local.exists() {
                    Self::load_from(Some(&local), &env)
                } else {
                    Self::load_from(None, &env)
                }
            }
        }
    }

    /// Loads from an optional file and an explicit environment (tests pass their own).
    pub fn load_from(file: Option<&Path>, env: &[(String, String)]) -> Result<Config> {
        let mut value: toml::Value = toml::from_str(DEFAULTS).expect("built-in defaults parse");
        let mut source = "built-in defaults".to_string();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read configuration file {}", path.display()))?;
            let user: toml::Value = toml::from_str(&text)
                .with_context(|| format!("invalid configuration in {}", path.display()))?;
            merge(&mut value, user, true);
            source = path.display().to_string();
        }
        apply_env(&mut value, env)?;
        let mut config: Config = value
            .try_into()
            .with_context(|| format!("invalid configuration (from {source} and environment)"))?;
        config.source = source;
        config.docker_env = DockerEnv::from_env(env);
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        if self.nodes.is_empty() {
            bail!("the configuration names no node ([nodes.NAME] tables)");
        }
        for (name, n) in &self.nodes {
            if n.init != "primary" && n.init != "standby" {
                bail!(
                    "node {name}: init must be \"primary\" or \"standby\", not {:?}",
                    n.init
                );
            }
            if n.container.is_empty() {
                bail!("node {name}: container is empty");
            }
            check_engine_url(name, &n.docker)?;
            if let (Some(_), d) = (&n.tls, n.docker.as_str()) {
                if d.starts_with("unix://") {
                    bail!(
                        "node {name}: tls is set but docker = {d:?} is a local socket, which \
                         takes no TLS; remove tls, or name the engine's TLS port \
                         (docker = \"tcp://HOST:2376\")"
                    );
                }
            }
        }
        self.validate_nodes()?;
        for (i, s) in self.schedule.iter().enumerate() {
            if s.runbook.trim().is_empty() {
                bail!("schedule {}: runbook is empty", i + 1);
            }
            parse_cron(&s.cron).with_context(|| format!("schedule {} ({})", i + 1, s.key()))?;
        }
        check_repo_paths(&self.pgbackrest.repo_path, &self.lab.repo_host_path)?;
        let ct = self.pgbackrest.compress_type.as_str();
        if !["zst", "lz4", "gz", "bz2", "none"].contains(&ct) {
            bail!("pgbackrest.compress_type must be one of zst, lz4, gz, bz2, none, not {ct:?}");
        }
        if self.watch.lease_ttl_ms < 300 {
            bail!(
                "watch.lease_ttl_ms must be at least 300, not {}",
                self.watch.lease_ttl_ms
            );
        }
        let parts: Vec<&str> = self.cluster.verify_table.split('.').collect();
        if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
            bail!(
                "cluster.verify_table must be schema.table, not {:?}",
                self.cluster.verify_table
            );
        }
        Ok(())
    }

    /// The checks that span nodes: engines, containers, priorities, addresses.
    fn validate_nodes(&self) -> Result<()> {
        if let Some(url) = &self.docker_env.host {
            check_engine_url("(DOCKER_HOST)", url)
                .context("in environment variable DOCKER_HOST")?;
        }
        // Two nodes on one engine naming one container would be one container.
        let mut seen: BTreeMap<(String, String), &str> = BTreeMap::new();
        for (name, n) in &self.nodes {
            let engine = self.engine(n).url;
            if let Some(other) = seen.insert((engine.clone(), n.container.clone()), name) {
                bail!(
                    "nodes {other} and {name} both name container '{}' on the engine {engine}: \
                     they would be one container; give node {name} its own container, or put \
                     it on another engine (docker = \"tcp://HOST:2375\" in [nodes.{name}])",
                    n.container
                );
            }
        }
        // At least one standby must be promotable, or failover can never succeed.
        let standbys: Vec<&String> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.init == "standby")
            .map(|(k, _)| k)
            .collect();
        if !standbys.is_empty()
            && standbys
                .iter()
                .all(|s| self.nodes[s.as_str()].priority == 0)
        {
            let names: Vec<&str> = standbys.iter().map(|s| s.as_str()).collect();
            bail!(
                "priority = 0 on every standby ({}): failover could never promote any of them; \
                 give at least one a priority above 0 (priority = 100 in [nodes.{}]), 0 being \
                 \"never promote this node\"",
                names.join(", "),
                names[0]
            );
        }
        // Across engines, nodes cannot reach each other by container name nor by loopback.
        if self.multi_engine() {
            for (name, n) in &self.nodes {
                if n.replication_address.is_empty() && is_loopback(&n.host) {
                    bail!(
                        "node {name}: the nodes are on more than one Docker engine, so the \
                         others reach node {name}'s PostgreSQL by its address, and host = {:?} \
                         is loopback on every host; set host to an address the other hosts \
                         reach (the engine's host), or replication_address = \"HOST:PORT\" in \
                         [nodes.{name}]",
                        n.host
                    );
                }
            }
        }
        for (name, n) in &self.nodes {
            if !n.replication_address.is_empty() {
                split_address(&n.replication_address).with_context(|| {
                    format!("node {name}: replication_address must be HOST:PORT")
                })?;
            }
        }
        Ok(())
    }

    /// The Docker engine `node` runs on: its own `docker` and `tls`, else Docker's environment
    /// (`DOCKER_HOST`, with `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH`), else the local socket.
    pub fn engine(&self, node: &Node) -> Engine {
        let files = |t: &Tls| (t.ca.clone(), t.cert.clone(), t.key.clone());
        if !node.docker.is_empty() {
            return Engine {
                url: normal_url(&node.docker),
                tls: node.tls.as_ref().map(files),
            };
        }
        let env = &self.docker_env;
        let url = env
            .host
            .as_deref()
            .map(normal_url)
            .unwrap_or_else(|| DEFAULT_ENGINE.to_string());
        let tls = node.tls.as_ref().map(files).or_else(|| {
            (env.tls_verify && !url.starts_with("unix://")).then(|| {
                let dir = env
                    .cert_path
                    .clone()
                    .unwrap_or_else(|| dirs::home_dir().unwrap_or_default().join(".docker"));
                (
                    dir.join("ca.pem"),
                    dir.join("cert.pem"),
                    dir.join("key.pem"),
                )
            })
        });
        Engine { url, tls }
    }

    /// The engine of the node called `name` (the default engine for an unknown name).
    pub fn engine_of(&self, name: &str) -> Engine {
        match self.nodes.get(name) {
            Some(n) => self.engine(n),
            None => self.default_engine(),
        }
    }

    /// The engine of a node that names none: the lab's, and one-off helpers'.
    pub fn default_engine(&self) -> Engine {
        let probe = Node {
            container: String::new(),
            host: String::new(),
            port: 0,
            slot: String::new(),
            init: String::new(),
            docker: String::new(),
            tls: None,
            priority: 0,
            replication_address: String::new(),
            health: String::new(),
        };
        self.engine(&probe)
    }

    /// Whether the nodes live on more than one Docker engine.
    pub fn multi_engine(&self) -> bool {
        let mut urls = self.nodes.values().map(|n| self.engine(n).url);
        let first = urls.next();
        urls.any(|u| Some(u) != first)
    }

    /// Where the other nodes' PostgreSQL reaches node `name`'s (`primary_conninfo`,
    /// `pg_basebackup -h`, `pg_rewind`'s source): `replication_address` when set, else the
    /// container's name and 5432 when every node shares one engine (one Docker network), else
    /// the node's `host` and `port`.
    pub fn replication_endpoint(&self, name: &str) -> Option<(String, u16)> {
        let n = self.nodes.get(name)?;
        if !n.replication_address.is_empty() {
            return split_address(&n.replication_address).ok();
        }
        if self.multi_engine() {
            Some((n.host.clone(), n.port))
        } else {
            Some((n.container.clone(), 5432))
        }
    }

    /// The node called `name`, or an error listing the known names.
    pub fn node(&self, name: &str) -> Result<&Node> {
        self.nodes.get(name).with_context(|| {
            format!(
                "unknown node '{name}' (known nodes: {})",
                self.nodes.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }

    /// The node a replication connection to `host` (and `port`, when known) reaches: its
    /// container name on one engine, its address (`replication_address`, else `host`) across
    /// engines. What a standby's primary_conninfo or a walreceiver's sender_host names.
    pub fn node_by_address(&self, host: &str, port: Option<u16>) -> Option<String> {
        if let Some((n, _)) = self.node_by_container(host) {
            return Some(n.clone());
        }
        let matches = |(a, p): (String, u16)| a == host && port.is_none_or(|x| x == p);
        self.nodes
            .keys()
            .find(|k| self.replication_endpoint(k).is_some_and(matches))
            .or_else(|| {
                self.nodes
                    .iter()
                    .find(|(_, n)| n.host == host && port.is_none_or(|x| x == n.port))
                    .map(|(k, _)| k)
            })
            .cloned()
    }

    /// The node whose container is `container`.
    pub fn node_by_container(&self, container: &str) -> Option<(&String, &Node)> {
        self.nodes.iter().find(|(_, n)| n.container == container)
    }

    /// The volume holding a node's data directory in the lab.
    pub fn data_volume(&self, node: &Node) -> String {
        format!("{}-data", node.container)
    }

    /// Where spooled journal entries go: `redis.spool` when set, else
    /// `<data dir>/spool/<hash>.jsonl`, one file per Redis URL and key prefix. One file per
    /// journal, so that a process configured for one Redis never even reads the entries waiting
    /// for another (one shared file delivered a cluster's entries into another cluster's Redis).
    /// The name hashes the URL with its password masked: a file name must not carry a password,
    /// nor a hash of one, which could be guessed back.
    pub fn spool_path(&self) -> PathBuf {
        if !self.redis.spool.is_empty() {
            return PathBuf::from(&self.redis.spool);
        }
        let key = format!("{}\n{}", self.redis_url_shown(), self.redis.prefix);
        data_dir()
            .join("spool")
            .join(format!("{:016x}.jsonl", fnv1a64(key.as_bytes())))
    }

    /// The configuration as TOML with the passwords masked.
    pub fn to_masked_toml(&self) -> String {
        let mut c = self.clone();
        c.cluster.password = "********".into();
        c.cluster.replication_password = "********".into();
        c.redis.url = self.redis_url_shown();
        toml::to_string_pretty(&c).unwrap_or_default()
    }

    /// The secrets, to scrub them from anything printed or journaled.
    pub fn secrets(&self) -> Vec<String> {
        let redis = self.redis_password().map(str::to_string);
        [&self.cluster.password, &self.cluster.replication_password]
            .into_iter()
            .cloned()
            .chain(redis)
            .chain(crate::secrets::learnt())
            .filter(|s| s.len() >= 4)
            .collect()
    }

    /// The password in the Redis URL (`redis://user:PASSWORD@host`), if any.
    fn redis_password(&self) -> Option<&str> {
        let u = &self.redis.url;
        let start = u.find("://")? + 3;
        let at = start + u[start..].rfind('@')?;
        u[start..at]
            .split_once(':')
            .map(|(_, pw)| pw)
            .filter(|pw| !pw.is_empty())
    }

    /// The Redis URL as messages show it, its password masked.
    pub fn redis_url_shown(&self) -> String {
        match self.redis_password() {
            Some(pw) => self.redis.url.replacen(&format!(":{pw}@"), ":********@", 1),
            None => self.redis.url.clone(),
        }
    }
}

/// `tcp://10.0.0.11:2376` is kept; `http://` and `https://` become `tcp://` (bollard's form).
fn normal_url(url: &str) -> String {
    for p in ["http://", "https://"] {
        if let Some(rest) = url.strip_prefix(p) {
            return format!("tcp://{rest}");
        }
    }
    url.to_string()
}

/// Refuses an engine address pgrunbook cannot speak to, saying which it can.
/// `pgbackrest.repo_path` (inside the containers) and `lab.repo_host_path` (on the hosts) are
/// absolute paths a bind mount can take.
fn check_repo_paths(repo_path: &str, host_path: &str) -> Result<()> {
    let bad = |p: &str| {
        if !p.starts_with('/') {
            Some("is not an absolute path")
        } else if p.contains(':') || p.contains(',') {
            Some("contains ':' or ',', which a bind mount cannot take")
        } else if p.split('/').any(|c| c == "..") {
            Some("contains '..'")
        } else if p.trim_end_matches('/').is_empty() {
            Some("is the root directory")
        } else if p.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Some("contains white space")
        } else {
            None
        }
    };
    if let Some(why) = bad(repo_path) {
        bail!(
            "pgbackrest.repo_path = {repo_path:?} {why}: it is where the repository is mounted in \
             every node's container, e.g. \"/var/lib/pgbackrest\""
        );
    }
    if !host_path.is_empty() {
        if let Some(why) = bad(host_path) {
            bail!(
                "lab.repo_host_path = {host_path:?} {why}: it is a directory on every host (the \
                 same network file system mounted at the same path on each), e.g. \
                 \"/srv/pgbackrest\"; leave it empty for a repository volume"
            );
        }
    }
    Ok(())
}

fn check_engine_url(node: &str, url: &str) -> Result<()> {
    if url.is_empty() {
        return Ok(());
    }
    let what = if node.starts_with('(') {
        "DOCKER_HOST".to_string()
    } else {
        format!("node {node}: docker")
    };
    if url.starts_with("ssh://") {
        bail!(
            "{what} = {url:?}: ssh:// engines are not supported; pgrunbook reaches Docker \
             engines over unix:// (a local socket) and tcp:// (tcp://HOST:2376 with \
             tls = {{ ca, cert, key }}). To go through SSH, tunnel the remote socket to a local \
             one: ssh -nNT -L /tmp/{n}-docker.sock:/var/run/docker.sock USER@HOST, then \
             docker = \"unix:///tmp/{n}-docker.sock\"",
            n = if node.starts_with('(') {
                "remote"
            } else {
                node
            }
        );
    }
    let ok = ["unix://", "tcp://", "http://", "https://"]
        .iter()
        .any(|p| url.starts_with(p) && url.len() > p.len());
    if !ok {
        bail!(
            "{what} = {url:?}: not an engine address pgrunbook speaks to; use \
             unix:///var/run/docker.sock or tcp://HOST:PORT (with tls = {{ ca, cert, key }} \
             for TLS)"
        );
    }
    Ok(())
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

/// `HOST:PORT` into its parts.
pub fn split_address(addr: &str) -> Result<(String, u16)> {
    let (h, p) = addr
        .rsplit_once(':')
        .with_context(|| format!("{addr:?} has no :PORT"))?;
    let port: u16 = p
        .parse()
        .with_context(|| format!("{addr:?}: port {p:?} is not a number"))?;
    if h.is_empty() {
        bail!("{addr:?} has no host");
    }
    Ok((h.trim_matches(['[', ']']).to_string(), port))
}

/// FNV-1a, 64 bits: a hash that never changes between builds or Rust versions (the spool's file
/// name must stay the same from one pgrunbook to the next), unlike `std`'s `DefaultHasher`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// pgrunbook's own data directory (history, spool).
pub fn data_dir() -> PathBuf {
    if let Ok(d) = std::env::var("PGRUNBOOK_DATA_DIR") {
        return PathBuf::from(d);
    }
    dirs::data_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("pgrunbook")
}

fn norm(s: &str) -> String {
    s.to_ascii_lowercase().replace('-', "_")
}

/// Deep-merges `over` into `base`. A user's `[nodes]` replaces the default nodes as a whole: a
/// setup with other node names must not inherit the seed's two.
fn merge(base: &mut toml::Value, over: toml::Value, top: bool) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                if top && k == "nodes" {
                    b.insert(k, v);
                    continue;
                }
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v, false),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

fn apply_env(value: &mut toml::Value, env: &[(String, String)]) -> Result<()> {
    for (key, val) in env {
        let path: Vec<String> = match key.as_str() {
            "PGRUNBOOK_PASSWORD" => vec!["cluster".into(), "password".into()],
            "PGRUNBOOK_REPLICATION_PASSWORD" => {
                vec!["cluster".into(), "replication_password".into()]
            }
            k if k.starts_with("PGRUNBOOK_") && k.contains("__") => {
                k["PGRUNBOOK_".len()..].split("__").map(norm).collect()
            }
            _ => continue,
        };
        set_path(value, &path, val).with_context(|| format!("in environment variable {key}"))?;
    }
    Ok(())
}

fn set_path(value: &mut toml::Value, path: &[String], raw: &str) -> Result<()> {
    let table = match value {
        toml::Value::Table(t) => t,
        _ => bail!("{} is not a table", path[0]),
    };
    let existing_key = table.keys().find(|k| norm(k) == path[0]).cloned();
    if path.len() == 1 {
        let key = existing_key.unwrap_or_else(|| path[0].clone());
        let new = match table.get(&key) {
            Some(toml::Value::Integer(_)) => toml::Value::Integer(
                raw.parse()
                    .with_context(|| format!("{key} takes a whole number, not {raw:?}"))?,
            ),
            Some(toml::Value::Boolean(_)) => toml::Value::Boolean(
                raw.parse()
                    .with_context(|| format!("{key} takes true or false, not {raw:?}"))?,
            ),
            _ => toml::Value::String(raw.to_string()),
        };
        table.insert(key, new);
        return Ok(());
    }
    let key = existing_key.unwrap_or_else(|| path[0].clone());
    let child = table
        .entry(key)
        .or_insert_with(|| toml::Value::Table(Default::default()));
    set_path(child, &path[1..], raw)
}

/// Parses a six-field cron expression (seconds first).
pub fn parse_cron(expr: &str) -> Result<croner::Cron> {
    let fields = expr.split_whitespace().count();
    if fields != 6 {
        bail!(
            "cron {expr:?} has {fields} field(s); it needs 6, seconds first: \
             \"sec min hour day month weekday\", like \"0 0 3 * * Sun\""
        );
    }
    use croner::parser::{CronParser, Seconds, Year};
    CronParser::builder()
        .seconds(Seconds::Required)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("invalid cron {expr:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_the_seeds_names() {
        let c = Config::load_from(None, &[]).unwrap();
        assert_eq!(c.cluster.database, "bases2_proyectos");
        assert_eq!(c.cluster.replication_user, "replicator");
        assert_eq!(c.nodes["pg-bases2"].container, "pg-bases2");
        assert_eq!(c.nodes["pg-bases2"].init, "primary");
        assert_eq!(c.nodes["pg-replica"].slot, "replica1");
        assert_eq!(c.nodes["pg-bases2"].slot, "primary1");
        assert_eq!(c.nodes["pg-replica"].port, 5433);
        assert_eq!(c.pgbackrest.stanza, "bases2-db");
        assert_eq!(c.redis.url, "redis://127.0.0.1:6379");
        assert_eq!(c.source, "built-in defaults");
    }

    #[test]
    fn file_overrides_defaults_and_nodes_replace_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pgrunbook.toml");
        std::fs::write(
            &p,
            r#"
[cluster]
database = "app"
[nodes.a]
container = "ca"
host = "127.0.0.1"
port = 7000
slot = "sa"
init = "primary"
"#,
        )
        .unwrap();
        let c = Config::load_from(Some(&p), &[]).unwrap();
        assert_eq!(c.cluster.database, "app");
        assert_eq!(
            c.cluster.superuser, "postgres",
            "untouched values keep defaults"
        );
        assert_eq!(c.nodes.len(), 1);
        assert_eq!(c.nodes["a"].port, 7000);
        assert!(c.source.ends_with("pgrunbook.toml"));
    }

    #[test]
    fn environment_overrides_file() {
        let e = env(&[
            ("PGRUNBOOK_PASSWORD", "s3cret"),
            ("PGRUNBOOK_REDIS__URL", "redis://127.0.0.1:7777"),
            ("PGRUNBOOK_NODES__PG_REPLICA__PORT", "6543"),
            ("PGRUNBOOK_CLUSTER__DATABASE", "12345"),
            ("UNRELATED", "x"),
        ]);
        let c = Config::load_from(None, &e).unwrap();
        assert_eq!(c.cluster.password, "s3cret");
        assert_eq!(c.redis.url, "redis://127.0.0.1:7777");
        assert_eq!(c.nodes["pg-replica"].port, 6543);
        assert_eq!(c.cluster.database, "12345", "a string field stays a string");
    }

    #[test]
    fn bad_values_are_named() {
        let e = env(&[("PGRUNBOOK_NODES__PG_REPLICA__PORT", "five")]);
        let err = format!("{:#}", Config::load_from(None, &e).unwrap_err());
        assert!(err.contains("PGRUNBOOK_NODES__PG_REPLICA__PORT"), "{err}");
        assert!(err.contains("whole number"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.toml");
        std::fs::write(&p, "[cluster]\ndatabse = \"x\"\n").unwrap();
        let err = format!("{:#}", Config::load_from(Some(&p), &[]).unwrap_err());
        assert!(err.contains("databse"), "unknown key is named: {err}");
    }

    #[test]
    fn unknown_node_lists_known_ones() {
        let c = Config::defaults();
        let err = c.node("pg-nope").unwrap_err().to_string();
        assert!(err.contains("unknown node 'pg-nope'"), "{err}");
        assert!(err.contains("pg-bases2, pg-replica"), "{err}");
    }

    #[test]
    fn masked_toml_hides_passwords() {
        let c = Config::defaults();
        let t = c.to_masked_toml();
        assert!(!t.contains("postgres_pass") && !t.contains("replica_pass"));

        let e = env(&[(
            "PGRUNBOOK_REDIS__URL",
            "redis://user:r3dis-pw@127.0.0.1:6379/0",
        )]);
        let c = Config::load_from(None, &e).unwrap();
        assert_eq!(
            c.redis_url_shown(),
            "redis://user:********@127.0.0.1:6379/0"
        );
        assert!(c.secrets().contains(&"r3dis-pw".to_string()));
        assert!(!c.to_masked_toml().contains("r3dis-pw"));
    }

    #[test]
    fn the_default_spool_is_one_file_per_redis_and_prefix() {
        // The published FNV-1a test vectors: the name must not change between versions.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);

        let with = |pairs: &[(&str, &str)]| Config::load_from(None, &env(pairs)).unwrap();
        let base = with(&[]).spool_path();
        assert_eq!(base.parent().unwrap().file_name().unwrap(), "spool");
        assert_eq!(with(&[]).spool_path(), base, "stable");
        let other_url = with(&[("PGRUNBOOK_REDIS__URL", "redis://127.0.0.1:6380")]).spool_path();
        let other_prefix = with(&[("PGRUNBOOK_REDIS__PREFIX", "lab2")]).spool_path();
        assert_ne!(other_url, base);
        assert_ne!(other_prefix, base);
        assert_ne!(other_url, other_prefix);

        // The password is in neither the name nor what it hashes.
        let pw = |p: &str| {
            with(&[(
                "PGRUNBOOK_REDIS__URL",
                &format!("redis://u:{p}@127.0.0.1:6379"),
            )])
            .spool_path()
        };
        assert_eq!(pw("r3dis-pw"), pw("other-pw"));
        assert!(!pw("r3dis-pw").display().to_string().contains("r3dis-pw"));

        let explicit = with(&[("PGRUNBOOK_REDIS__SPOOL", "/tmp/x/spool.jsonl")]);
        assert_eq!(explicit.spool_path(), PathBuf::from("/tmp/x/spool.jsonl"));
    }

    #[test]
    fn schedules_and_watch_settings_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pgrunbook.toml");
        std::fs::write(
            &p,
            r#"
[[schedule]]
runbook = "backup"
cron = "0 0 3 * * Sun"
set = { type = "full" }

[[schedule]]
runbook = "verify"
cron = "*/10 * * * * *"
name = "often"

[watch]
lease_ttl_ms = 5000
settings = { grace_ms = 2500, max_lag = "8MB" }
"#,
        )
        .unwrap();
        let c = Config::load_from(Some(&p), &[]).unwrap();
        assert_eq!(c.schedule.len(), 2);
        assert_eq!(c.schedule[0].sets(), vec![("type".into(), "full".into())]);
        assert_eq!(c.schedule[0].key(), "backup type=full");
        assert_eq!(c.schedule[1].key(), "often");
        assert_eq!(c.watch.lease_ttl_ms, 5000);
        assert_eq!(c.watch.heartbeat_ms, 1000, "unset values keep defaults");
        assert_eq!(c.watch.policy, "watch");
        assert_eq!(c.watch.settings["grace_ms"].as_integer(), Some(2500));

        // No [watch] nor [[schedule]]: defaults, and the masked TOML still loads back.
        let d = Config::load_from(None, &[]).unwrap();
        assert!(d.schedule.is_empty());
        assert_eq!(d.watch.lease_ttl_ms, 3000);
        let back: Config = toml::from_str(&c.to_masked_toml()).unwrap();
        assert_eq!(back.schedule.len(), 2);

        // The environment reaches [watch] too.
        let e = env(&[("PGRUNBOOK_WATCH__LEASE_TTL_MS", "900")]);
        assert_eq!(Config::load_from(None, &e).unwrap().watch.lease_ttl_ms, 900);

        // A bad cron expression names the schedule; unknown keys are refused.
        for (text, want) in [
            (
                "[[schedule]]\nrunbook = \"backup\"\ncron = \"0 0 3 * *\"\n",
                "schedule 1 (backup)",
            ),
            (
                "[[schedule]]\nrunbook = \"backup\"\ncron = \"0 0 61 * * *\"\n",
                "schedule 1",
            ),
            (
                "[[schedule]]\nrunbook = \"\"\ncron = \"* * * * * *\"\n",
                "runbook is empty",
            ),
            (
                "[[schedule]]\nrunbok = \"backup\"\ncron = \"* * * * * *\"\n",
                "runbok",
            ),
            ("[watch]\nlease_ttl_ms = 10\n", "at least 300"),
        ] {
            std::fs::write(&p, text).unwrap();
            let err = format!("{:#}", Config::load_from(Some(&p), &[]).unwrap_err());
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    fn load_text(text: &str, e: &[(&str, &str)]) -> Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pgrunbook.toml");
        std::fs::write(&p, text).unwrap();
        Config::load_from(Some(&p), &env(e))
    }

    const THREE: &str = r#"
[nodes.east]
container = "pg-east"
docker = "tcp://10.213.0.2:2375"
host = "10.213.0.2"
port = 5432
slot = "east"
init = "primary"
[nodes.west]
container = "pg-west"
docker = "tcp://10.213.0.3:2376"
tls = { ca = "/certs/ca.pem", cert = "/certs/cert.pem", key = "/certs/key.pem" }
host = "10.213.0.3"
port = 5432
slot = "west"
init = "standby"
priority = 50
[nodes.north]
container = "pg-north"
docker = "http://10.213.0.4:2375"
host = "10.213.0.4"
port = 5432
slot = "north"
init = "standby"
replication_address = "192.168.7.4:6432"
"#;

    #[test]
    fn repo_host_path_must_be_an_absolute_path_a_bind_mount_takes() {
        let ok = load_text(
            &format!("{THREE}[lab]\nrepo_host_path = \"/srv/pgbackrest\"\n"),
            &[],
        )
        .unwrap();
        assert_eq!(ok.lab.repo_host_path, "/srv/pgbackrest");
        assert_eq!(load_text(THREE, &[]).unwrap().lab.repo_host_path, "");
        for (v, want) in [
            ("srv/pgbackrest", "is not an absolute path"),
            ("/srv/a:b", "contains ':'"),
            ("/srv/../etc", "contains '..'"),
            ("/", "is the root directory"),
            ("/srv/pg backrest", "contains white space"),
        ] {
            let err = format!(
                "{:#}",
                load_text(&format!("{THREE}[lab]\nrepo_host_path = {v:?}\n"), &[]).unwrap_err()
            );
            assert!(
                err.contains(&format!("lab.repo_host_path = {v:?} {want}")),
                "{v}: {err}"
            );
        }
        let err = format!(
            "{:#}",
            load_text(
                &format!("{THREE}[pgbackrest]\nrepo_path = \"pgbackrest\"\n"),
                &[]
            )
            .unwrap_err()
        );
        assert!(
            err.contains("pgbackrest.repo_path = \"pgbackrest\" is not an absolute path"),
            "{err}"
        );
    }

    #[test]
    fn nodes_name_their_engine_priority_and_replication_address() {
        let c = load_text(THREE, &[]).unwrap();
        assert!(c.multi_engine());
        let east = c.engine_of("east");
        assert_eq!(east.url, "tcp://10.213.0.2:2375");
        assert_eq!(east.tls, None);
        let west = c.engine_of("west");
        assert_eq!(
            west.tls,
            Some((
                "/certs/ca.pem".into(),
                "/certs/cert.pem".into(),
                "/certs/key.pem".into()
            ))
        );
        assert_eq!(west.shown(), "tcp://10.213.0.3:2376 (TLS)");
        assert_eq!(
            c.engine_of("north").url,
            "tcp://10.213.0.4:2375",
            "http:// is tcp://"
        );
        assert_eq!(c.nodes["east"].priority, 100, "the default priority");
        assert_eq!(c.nodes["west"].priority, 50);
        // Across engines: host:port, or replication_address.
        assert_eq!(
            c.replication_endpoint("east"),
            Some(("10.213.0.2".into(), 5432))
        );
        assert_eq!(
            c.replication_endpoint("north"),
            Some(("192.168.7.4".into(), 6432))
        );
        // One engine (the defaults): the container's name on the shared network, as before.
        let d = Config::load_from(None, &[]).unwrap();
        assert!(!d.multi_engine());
        assert_eq!(
            d.replication_endpoint("pg-bases2"),
            Some(("pg-bases2".into(), 5432))
        );
        assert_eq!(d.engine_of("pg-bases2").url, DEFAULT_ENGINE);
        // The masked TOML loads back with the new keys.
        let back: Config = toml::from_str(&c.to_masked_toml()).unwrap();
        assert_eq!(back.nodes["west"].tls, c.nodes["west"].tls);
        assert!(
            !d.to_masked_toml().contains("docker ="),
            "unset keys stay out"
        );
    }

    #[test]
    fn dockers_own_environment_is_the_default_engine() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().display().to_string();
        let c = Config::load_from(
            None,
            &env(&[
                ("DOCKER_HOST", "tcp://127.0.0.1:2376"),
                ("DOCKER_TLS_VERIFY", "1"),
                ("DOCKER_CERT_PATH", &certs),
            ]),
        )
        .unwrap();
        let e = c.engine_of("pg-bases2");
        assert_eq!(e.url, "tcp://127.0.0.1:2376");
        let (ca, cert, key) = e.tls.unwrap();
        assert_eq!(ca, dir.path().join("ca.pem"));
        assert_eq!(cert, dir.path().join("cert.pem"));
        assert_eq!(key, dir.path().join("key.pem"));
        let plain = Config::load_from(None, &env(&[("DOCKER_HOST", "unix:///run/d.sock")]))
            .unwrap()
            .engine_of("pg-replica");
        assert_eq!(
            plain,
            Engine {
                url: "unix:///run/d.sock".into(),
                tls: None
            }
        );
        // A node's own docker wins over DOCKER_HOST.
        let c = load_text(THREE, &[("DOCKER_HOST", "unix:///run/d.sock")]).unwrap();
        assert_eq!(c.engine_of("east").url, "tcp://10.213.0.2:2375");
    }

    #[test]
    fn engine_and_node_mistakes_name_the_node_and_the_fix() {
        type Case<'a> = (String, Vec<(&'a str, &'a str)>, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            (
                THREE.replace("tcp://10.213.0.2:2375", "ssh://admin@10.213.0.2"),
                vec![],
                vec![
                    "node east",
                    "ssh://",
                    "unix://",
                    "tcp://",
                    "ssh -nNT -L",
                    "/var/run/docker.sock",
                ],
            ),
            (
                String::new(),
                vec![("DOCKER_HOST", "ssh://admin@db1")],
                vec!["DOCKER_HOST", "not supported", "tunnel"],
            ),
            (
                THREE.replace("tcp://10.213.0.2:2375", "10.213.0.2:2375"),
                vec![],
                vec!["node east", "tcp://HOST:PORT"],
            ),
            (
                // Same container on the same engine (spelt http:// once, tcp:// once).
                THREE
                    .replace("pg-north", "pg-east")
                    .replace("http://10.213.0.4:2375", "http://10.213.0.2:2375"),
                vec![],
                vec![
                    "nodes east and north",
                    "container 'pg-east'",
                    "tcp://10.213.0.2:2375",
                    "give node north its own container",
                ],
            ),
            (
                THREE.replace("priority = 50", "priority = 0").replace(
                    "init = \"standby\"\nreplication_address",
                    "init = \"standby\"\npriority = 0\nreplication_address",
                ),
                vec![],
                vec![
                    "priority = 0 on every standby (north, west)",
                    "priority = 100 in [nodes.north]",
                ],
            ),
            (
                THREE.replace("host = \"10.213.0.2\"", "host = \"127.0.0.1\""),
                vec![],
                vec![
                    "node east",
                    "more than one Docker engine",
                    "replication_address",
                ],
            ),
            (
                THREE.replace("192.168.7.4:6432", "192.168.7.4"),
                vec![],
                vec!["node north", "replication_address must be HOST:PORT"],
            ),
            (
                THREE.replace("tcp://10.213.0.3:2376", "unix:///run/west.sock"),
                vec![],
                vec!["node west", "tls is set", "local socket"],
            ),
        ];
        for (text, e, wants) in cases {
            let err = match text.is_empty() {
                true => Config::load_from(None, &env(&e)),
                false => load_text(&text, &e),
            };
            let err = format!("{:#}", err.unwrap_err());
            for w in wants {
                assert!(err.contains(w), "want {w:?} in: {err}");
            }
        }
        // The same container name on two engines is two containers: fine.
        let ok = THREE.replace("pg-north", "pg-east");
        load_text(&ok, &[]).unwrap();
        // One node on a loopback host is fine when every node shares one engine.
        Config::load_from(None, &[]).unwrap();
    }
}
