//! `pgrunbook definitions DIR`: Rhai definition files (`.d.rhai`) of every primitive and module,
//! for editors that complete Rhai.

use crate::config::Config;
use crate::engine;
use crate::error::Failure;
use crate::outln;
use crate::runtime::host::Host;
use std::path::Path;
use std::sync::Arc;

pub fn run(dir: &Path) -> Result<(), Failure> {
    let host = Arc::new(Host::new(Config::defaults()));
    let engine = engine::build(&host, &Default::default());
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::usage(format!("cannot create {}: {e}", dir.display())))?;
    engine
        .definitions()
        .with_headers(true)
        .write_to_dir(dir)
        .map_err(|e| {
            Failure::usage(format!(
                "cannot write definitions to {}: {e}",
                dir.display()
            ))
        })?;
    outln!("wrote Rhai definitions to {}", dir.display());
    Ok(())
}
