//! `pgrunbook man`: the manual page (roff) of the command line `cli`.

use crate::error::Failure;
use crate::out;

pub fn run(cli: clap::Command) -> Result<(), Failure> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cli)
        .render(&mut buf)
        .expect("rendering to memory does not fail");
    out!("{}", String::from_utf8_lossy(&buf));
    Ok(())
}
