//! `pgrunbook check [RUNBOOK...]`: the static checker (`engine::check`) over the named runbooks,
//! or over every shipped and local one. Each problem goes to stderr; any problem makes the exit
//! code a runbook error.

use super::load_config;
use crate::engine::runbook::Runbook;
use crate::error::{Class, Failure};
use crate::runtime::host::Host;
use crate::{err, outln};
use std::path::Path;
use std::sync::Arc;

pub fn run(config: Option<&Path>, runbooks: &[String]) -> Result<(), Failure> {
    let host = Arc::new(Host::new(load_config(config)?));
    let (list, unloaded): (Vec<Runbook>, Vec<Failure>) = if runbooks.is_empty() {
        Runbook::scan()
    } else {
        let list = runbooks
            .iter()
            .map(|n| Runbook::find(n))
            .collect::<Result<_, _>>()?;
        (list, vec![])
    };
    let mut problems = unloaded.len();
    for f in unloaded {
        err!("{}", f.render());
    }
    for rb in &list {
        let found = crate::engine::check::check(&host, rb);
        if found.is_empty() {
            outln!("ok      {}", rb.display_path);
        }
        for f in found {
            problems += 1;
            err!("{}", f.render());
        }
    }
    if problems > 0 {
        return Err(Failure::new(
            Class::Runbook,
            format!("check found {problems} problem(s)"),
        ));
    }
    Ok(())
}
