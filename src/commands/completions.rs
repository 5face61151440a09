//! `pgrunbook completions SHELL`: the shell's completion script for the command line `cli`.

use crate::error::Failure;
use crate::out;

pub fn run(shell: clap_complete::Shell, mut cli: clap::Command) -> Result<(), Failure> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cli, "pgrunbook", &mut buf);
    out!("{}", String::from_utf8_lossy(&buf));
    Ok(())
}
