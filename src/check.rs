//! `pgrunbook check`: finds what is wrong with a runbook without running it.

use crate::engine;
use crate::error::Failure;
use crate::host::Host;
use crate::runbook::Runbook;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Every function name a script can call: primitives and Rhai's own.
pub fn known_function_names(host: &Host) -> Vec<String> {
    let sources = Arc::new(Mutex::new(HashMap::new()));
    let h = Arc::new(Host::new(host.config.clone()));
    let e = engine::build(&h, &sources);
    let mut names: Vec<String> = e
        .gen_fn_signatures(true)
        .into_iter()
        .filter_map(|s| s.split('(').next().map(|n| n.trim().to_string()))
        .filter(|n| !n.is_empty() && !n.contains(' '))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Checks one runbook: its header and its syntax. Returns every problem found.
pub fn check(host: &Arc<Host>, rb: &Runbook) -> Vec<Failure> {
    let sources = Arc::new(Mutex::new(HashMap::new()));
    let e = engine::build(host, &sources);
    match engine::compile(&e, &rb.display_path, &rb.source) {
        Ok(_) => vec![],
        Err(f) => vec![f],
    }
}
