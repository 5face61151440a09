//! pgBackRest primitives: run pgBackRest in a node's container against the repository both
//! nodes share.

use super::def;
use crate::host::Host;
use rhai::{Dynamic, EvalAltResult, Map, Module};
use std::sync::Arc;

type R<T> = Result<T, Box<EvalAltResult>>;

/// pgBackRest commands that change nothing (they run in a dry run too).
const READ_COMMANDS: &[&str] = &["info", "check", "version", "help", "verify"];

fn args_of(args: &Dynamic) -> Vec<String> {
    if let Some(a) = args.read_lock::<rhai::Array>() {
        return a.iter().map(|v| v.to_string()).collect();
    }
    args.to_string().split_whitespace().map(str::to_string).collect()
}

pub fn run(h: &Host, node: &str, args: Vec<String>) -> R<Map> {
    let container = h.container("pgbackrest", node)?;
    let command = args.iter().find(|a| !a.starts_with("--")).cloned().unwrap_or_default();
    let mut argv = vec![
        "pgbackrest".to_string(),
        format!("--stanza={}", h.config.pgbackrest.stanza),
    ];
    argv.extend(args);
    if !READ_COMMANDS.contains(&command.as_str()) && !h.change(node, &format!("run {}", argv.join(" "))) {
        let mut m = Map::new();
        m.insert("exit_code".into(), Dynamic::from_int(0));
        m.insert("stdout".into(), "".into());
        m.insert("stderr".into(), "".into());
        return Ok(m);
    }
    let mut progress = crate::progress::Progress::new(&format!("pgbackrest {command}"), h.tty);
    let out = h
        .docker
        .exec(&container, &argv, Some("postgres"), &[], &h.cancel, &mut |l| progress.line(l));
    progress.finish();
    let out = out.map_err(|e| h.fail("pgbackrest", node, e))?;
    let mut m = Map::new();
    m.insert("exit_code".into(), Dynamic::from_int(out.exit_code));
    m.insert("stdout".into(), out.stdout.into());
    m.insert("stderr".into(), out.stderr.into());
    Ok(m)
}

pub fn create_module(host: Arc<Host>) -> Module {
    let mut m = Module::new();

    let h = host;
    def!(&mut m, "pgbackrest", ["node: &str", "args: String | Array", "Map"],
        "Runs `pgbackrest --stanza=<stanza> <args>` as postgres in the node's container and
        returns #{exit_code, stdout, stderr}. Commands other than info/check/verify are changes:
        a dry run prints them.",
        move |node: &str, args: Dynamic| run(&h, node, args_of(&args)));

    m
}
