//! The lab: the seed's topology as containers, created, reused and removed through the Docker
//! API. `lab up` on a running lab changes nothing; everything it creates carries the lab's label,
//! so `lab down` never removes a container or volume it did not make.

use crate::config::Config;
use crate::docker::{ContainerSpec, Docker, State};
use crate::embedded;
use crate::errln;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const REDIS_DATA: &str = "/var/lib/redis-lab";

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("pgrunbook-base-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// A hash of the lab's files (Dockerfile, entrypoint, configuration): the image is rebuilt when
/// it changes, so an upgraded pgrunbook never runs an old entrypoint.
pub fn lab_hash() -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for (name, text) in embedded::LAB_FILES {
        for b in name.bytes().chain(text.bytes()) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    format!("{h:016x}")
}

pub struct Lab<'a> {
    pub config: &'a Config,
    pub docker: &'a Docker,
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
        Lab { config, docker }
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
        let hash = lab_hash();
        match self
            .docker
            .image_label(&self.config.lab.image, "org.pgrunbook.lab-hash")?
        {
            Some(Some(h)) if h == hash => return Ok(()),
            Some(_) => errln!(
                "lab: the lab's files changed since image {} was built; rebuilding it",
                self.config.lab.image
            ),
            None => errln!(
                "lab: image {} is missing; building it (a few minutes the first time)",
                self.config.lab.image
            ),
        }
        // The base image: imported from a Debian root file system when it is missing (no
        // registry needed; lab/build-image.sh does the same by hand).
        // Any other base (postgres:17 where a registry is reachable) is pulled by the build.
        let ours = self.config.lab.base_image.starts_with("pgrunbook-base:");
        if ours && !self.docker.image_exists(&self.config.lab.base_image)? {
            self.build_base_image()?;
        }
        // The lab image: lab/Dockerfile and its files, from the copy compiled into the binary.
        let mut context = tar::Builder::new(Vec::new());
        for (rel, text) in embedded::LAB_FILES {
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
        let mut labels = HashMap::new();
        labels.insert("org.pgrunbook.lab-hash".to_string(), hash);
        errln!(
            "lab: building {} from {}",
            self.config.lab.image,
            self.config.lab.base_image
        );
        self.docker
            .build_image(context, &self.config.lab.image, args, labels, &mut |l| {
                if l.starts_with("Step ") {
                    errln!("lab:   {l}");
                }
            })?;
        Ok(())
    }

    /// Makes the base image from Debian's packages with mmdebstrap (installed on demand), then
    /// imports it through the Docker API.
    fn build_base_image(&self) -> Result<()> {
        let base = &self.config.lab.base_image;
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
        let st = std::process::Command::new("mmdebstrap")
            .args([
                "--quiet",
                "--variant=minbase",
                "--include=postgresql-17,postgresql-contrib-17,pgbackrest,redis-server,ca-certificates,procps",
                "--format=tar",
                "trixie",
            ])
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

    fn node_spec(&self, name: &str) -> ContainerSpec {
        let n = &self.config.nodes[name];
        let c = &self.config.cluster;
        ContainerSpec {
            name: n.container.clone(),
            image: self.config.lab.image.clone(),
            env: vec![
                format!("PGRUNBOOK_INIT={}", n.init),
                format!("PGRUNBOOK_DATABASE={}", c.database),
                format!("POSTGRES_PASSWORD={}", c.password),
                format!("REPLICATION_PASSWORD={}", c.replication_password),
                format!("PGDATA={}", c.data_dir),
            ],
            volumes: vec![
                (self.config.data_volume(n), c.data_dir.clone()),
                (
                    self.config.lab.repo_volume.clone(),
                    self.config.pgbackrest.repo_path.clone(),
                ),
            ],
            network: Some(self.config.lab.network.clone()),
            aliases: vec![n.container.clone()],
            ports: vec![("5432/tcp".into(), n.port)],
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
        self.ensure_image()?;
        let mut did = vec![];
        let labels = self.labels();
        if self
            .docker
            .ensure_network(&self.config.lab.network, &labels)?
        {
            did.push(format!("created network {}", self.config.lab.network));
        }
        let mut volumes: Vec<String> = self
            .config
            .nodes
            .values()
            .map(|n| self.config.data_volume(n))
            .collect();
        volumes.push(self.config.lab.repo_volume.clone());
        volumes.push(self.redis_volume());
        for v in volumes {
            if self.docker.ensure_volume(&v, &labels)? {
                did.push(format!("created volume {v}"));
            }
        }
        let mut specs: Vec<ContainerSpec> = self
            .config
            .nodes
            .keys()
            .map(|n| self.node_spec(n))
            .collect();
        specs.push(self.redis_spec());
        for spec in specs {
            match self.docker.state(&spec.name)? {
                State::Missing => {
                    self.docker.create(&spec)?;
                    self.docker.start(&spec.name)?;
                    did.push(format!("created and started container {}", spec.name));
                }
                s if !s.is_running() => {
                    self.docker.start(&spec.name)?;
                    did.push(format!(
                        "started container {} (was {})",
                        spec.name,
                        s.as_str()
                    ));
                }
                _ => {}
            }
        }
        Ok(did)
    }

    /// Waits until every node initialised as primary accepts connections.
    pub fn wait_primaries(&self, pg: &crate::postgres::Postgres, timeout: Duration) -> Result<()> {
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
            .docker
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
        for name in &names {
            if self.docker.state(name)? == State::Missing {
                continue;
            }
            if !self.owned(name)? {
                did.push(format!(
                    "left container {name} alone: pgrunbook's lab did not create it"
                ));
                continue;
            }
            self.docker.remove(name)?;
            self.docker.remove(&format!("{name}-basebackup"))?;
            did.push(format!("removed container {name}"));
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
            if self.docker.network_exists(&self.config.lab.network)? {
                self.docker.remove_network(&self.config.lab.network)?;
                did.push(format!("removed network {}", self.config.lab.network));
            }
        }
        Ok(did)
    }

    pub fn status(&self) -> Result<Vec<Row>> {
        self.docker.ping()?;
        let mut rows = vec![];
        for (name, n) in &self.config.nodes {
            rows.push(Row {
                name: format!("{name} ({})", n.container),
                role: format!("node, init {}", n.init),
                state: self.docker.state(&n.container)?.as_str().to_string(),
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
