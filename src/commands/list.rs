//! `pgrunbook list`: the shipped and local runbooks, each with its description and parameters.
//! The ones that cannot be loaded are shown on stderr, and make the exit code a runbook error.

use crate::engine::runbook::Runbook;
use crate::error::{Class, Failure};
use crate::{err, outln};

pub fn run() -> Result<(), Failure> {
    let (found, problems) = Runbook::scan();
    for rb in found {
        let origin = if rb.shipped { "shipped" } else { "local" };
        outln!("{:<24} {} ({origin})", rb.name, rb.meta.description);
        for p in &rb.meta.params {
            outln!(
                "{:<26}--set {}=<{}> {} {}",
                "",
                p.name,
                p.kind(),
                p.default_shown(),
                p.help
            );
        }
    }
    unloadable(problems)
}

/// The runbooks that could not be loaded: each shown on stderr, then one failure for the exit
/// code (a single one is that failure itself).
fn unloadable(mut problems: Vec<Failure>) -> Result<(), Failure> {
    match problems.len() {
        0 => Ok(()),
        1 => Err(problems.remove(0)),
        n => {
            for f in &problems {
                err!("{}", f.render());
            }
            Err(Failure::new(
                Class::Runbook,
                format!("{n} runbooks could not be loaded"),
            ))
        }
    }
}
