//! `pgrunbook config`: the effective configuration (defaults, file, environment merged) as TOML,
//! the passwords masked, after a comment saying where it came from.

use super::load_config;
use crate::error::Failure;
use crate::{out, outln};
use std::path::Path;

pub fn run(config: Option<&Path>) -> Result<(), Failure> {
    let config = load_config(config)?;
    outln!("# from {}", config.source);
    out!("{}", config.to_masked_toml());
    Ok(())
}
