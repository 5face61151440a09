//! `pgrunbook run RUNBOOK`: binds the `--set` parameters, runs the runbook (Ctrl-C stops it at
//! the next safe point), and with `--dry-run` prints the plan of changes at the end.
//! `pgrunbook run RUNBOOK --help` prints the runbook's description and parameters instead.

use super::load_config;
use crate::engine;
use crate::engine::runbook::Runbook;
use crate::error::Failure;
use crate::runtime::host::Host;
use crate::{errln, outln};
use std::path::Path;
use std::sync::Arc;

/// `run` without a runbook: `cli` is the whole command line, whose `run` subcommand's help
/// (with `--help`) or usage (as an error) is shown.
pub fn missing_runbook(mut cli: clap::Command, help: bool) -> Result<(), Failure> {
    let run = cli.find_subcommand_mut("run").expect("run subcommand");
    if help {
        let _ = run.print_long_help();
        return Ok(());
    }
    Err(Failure::usage(format!(
        "run needs a runbook name or path\n\n{}",
        run.render_usage()
    )))
}

/// Runs `runbook` with the `--set KEY=VALUE` parameters; with `help`, prints its parameters.
pub fn run(
    config: Option<&Path>,
    runbook: &str,
    sets: &[String],
    dry_run: bool,
    help: bool,
) -> Result<(), Failure> {
    let rb = Runbook::find(runbook)?;
    if help {
        print_params(&rb);
        return Ok(());
    }
    let sets = parse_sets(sets)?;
    let params = engine::bind_params(&rb, &sets)?;
    let host = Arc::new(Host::new(load_config(config)?));
    host.set_dry_run(dry_run);
    install_ctrlc(&host);
    host.learn_cluster();
    host.journal.flush_spool();
    if dry_run {
        outln!(
            "dry run of {}: reads are real, changes are printed",
            rb.name
        );
    }
    let r = engine::run(&host, &rb, params);
    if dry_run {
        let planned = host.run.lock().unwrap().planned.clone();
        outln!("\nplan: {} change(s) would be made", planned.len());
        for (i, p) in planned.iter().enumerate() {
            outln!("  {}. {p}", i + 1);
        }
    }
    r
}

fn parse_sets(sets: &[String]) -> Result<Vec<(String, String)>, Failure> {
    sets.iter()
        .map(|s| {
            s.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .ok_or_else(|| Failure::usage(format!("--set takes KEY=VALUE, not {s:?}")))
        })
        .collect()
}

/// Ctrl-C sets the cancel flag and cancels the query under way; a second Ctrl-C exits at once.
fn install_ctrlc(host: &Arc<Host>) {
    let h = host.clone();
    let installed = ctrlc::set_handler(move || {
        if h.cancel.is_cancelled() {
            errln!("\ninterrupted again: exiting now");
            std::process::exit(130);
        }
        errln!("\ninterrupt: stopping at the next safe point (Ctrl-C again to exit now)");
        h.cancel.cancel();
        h.pg.cancel_inflight();
    });
    if let Err(e) = installed {
        errln!(
            "warning: cannot catch Ctrl-C ({e}): an interrupt stops this run at once, not at its next safe point"
        );
    }
}

/// `run RUNBOOK --help`: the description and each parameter with its type and default.
fn print_params(rb: &Runbook) {
    outln!("{}: {}", rb.name, rb.meta.description);
    outln!(
        "usage: pgrunbook run {} [--set KEY=VALUE ...] [--dry-run]",
        rb.name
    );
    if rb.meta.params.is_empty() {
        outln!("  (no parameters)");
    }
    for p in &rb.meta.params {
        let choices = if p.choices.is_empty() {
            String::new()
        } else {
            format!(" one of {}", p.choices.join("|"))
        };
        outln!(
            "  --set {}=<{}{}>  default {}  {}",
            p.name,
            p.kind(),
            choices,
            p.default_shown(),
            p.help
        );
    }
}
