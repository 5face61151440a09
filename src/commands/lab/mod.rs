//! `pgrunbook lab up|down|status|build`: the lab's subcommands, over `resources` (the image,
//! containers, network and volumes the lab is made of).

mod resources;

pub use resources::{pg_version, Flavour, Lab, PgVersion};

use super::{infra, load_config};
use crate::error::Failure;
use crate::runtime::host::Host;
use crate::{out, outln};
use std::path::Path;
use std::time::Duration;

/// How long `lab up` waits for the primaries to accept connections.
const WAIT_PRIMARIES: Duration = Duration::from_secs(120);

/// scripts/lab-hosts.sh, built in: `lab hosts` runs it with bash.
const HOSTS_SCRIPT: &str = include_str!("../../../scripts/lab-hosts.sh");

/// `lab hosts up|cut|heal|down`: simulated hosts (see docs/multi-host.md).
pub fn hosts(args: Vec<String>) -> Result<(), Failure> {
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg(HOSTS_SCRIPT)
        .arg("lab-hosts.sh")
        .args(&args)
        .status()
        .map_err(|e| {
            Failure::new(
                crate::error::Class::Infrastructure,
                format!("cannot run bash: {e}"),
            )
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(Failure::new(
            crate::error::Class::Infrastructure,
            format!(
                "lab hosts {} failed ({status}): see the lines above",
                args[0]
            ),
        ))
    }
}

/// `lab up`: creates or starts what is missing, then waits for the primaries.
pub fn up(config: Option<&Path>, flavour: Flavour, pg: Option<u32>) -> Result<(), Failure> {
    with_lab(config, flavour, pg, |lab, host| {
        // Nodes across engines without a repository they all see: the configuration's fault.
        lab.shared_repo()
            .map_err(|e| Failure::usage(format!("{e:#}")))?;
        let did = lab.up().map_err(infra)?;
        lab.wait_primaries(&host.pg, WAIT_PRIMARIES)
            .map_err(infra)?;
        if did.is_empty() {
            outln!("lab: already up, nothing changed");
        }
        for d in did {
            outln!("lab: {d}");
        }
        Ok(())
    })
}

/// `lab down`: removes the containers; with `volumes`, the data, repository and network too.
pub fn down(config: Option<&Path>, volumes: bool) -> Result<(), Failure> {
    with_lab(config, Flavour::Lab, None, |lab, _| {
        let did = lab.down(volumes).map_err(infra)?;
        if did.is_empty() {
            outln!("lab: nothing to remove");
        }
        for d in did {
            outln!("lab: {d}");
        }
        Ok(())
    })
}

/// `lab status`: the lab's containers, their role, state and port.
pub fn status(config: Option<&Path>) -> Result<(), Failure> {
    with_lab(config, Flavour::Lab, None, |lab, _| {
        let rows = lab.status().map_err(infra)?;
        let cols: Vec<String> = ["container", "role", "state", "port"]
            .map(String::from)
            .to_vec();
        let cells: Vec<Vec<String>> = rows
            .into_iter()
            .map(|r| vec![r.name, r.role, r.state, format!("127.0.0.1:{}", r.port)])
            .collect();
        out!("{}", crate::table::render_cells(&cols, &cells));
        Ok(())
    })
}

/// `lab build`: builds the flavour's image if it is missing.
pub fn build(config: Option<&Path>, flavour: Flavour, pg: Option<u32>) -> Result<(), Failure> {
    with_lab(config, flavour, pg, |lab, _| {
        lab.ensure_image().map_err(infra)
    })
}

fn with_lab(
    config: Option<&Path>,
    flavour: Flavour,
    pg: Option<u32>,
    f: impl FnOnce(&Lab, &Host) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let mut config = load_config(config)?;
    if let Some(major) = pg {
        let v = pg_version(major).map_err(|e| Failure::usage(format!("--pg {major}: {e}")))?;
        config.lab.image = format!("pgrunbook-lab:{major}");
        config.lab.official_image = format!("pgrunbook-official:{major}");
        config.lab.base_image = format!("pgrunbook-base:{}", v.base_tag());
    }
    let host = Host::new(config);
    let lab = Lab::new(&host.config, &host.docker)
        .with_flavour(flavour)
        .with_engines(&host);
    f(&lab, &host)
}
