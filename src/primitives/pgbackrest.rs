//! pgBackRest primitives: run pgBackRest in a node's container against the repository both
//! nodes share.

use super::def;
use crate::host::Host;
use rhai::{Dynamic, EvalAltResult, Map, Module};
use std::sync::Arc;

type R<T> = Result<T, Box<EvalAltResult>>;

/// pgBackRest commands that change nothing (they run in a dry run too).
/// (`check` is not one: it forces a WAL switch and archives a segment.)
const READ_COMMANDS: &[&str] = &["info", "version", "help", "verify"];

fn args_of(args: &Dynamic) -> Vec<String> {
    if let Some(a) = args.read_lock::<rhai::Array>() {
        return a.iter().map(|v| v.to_string()).collect();
    }
    args.to_string()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

pub fn run(h: &Host, node: &str, args: Vec<String>) -> R<Map> {
    let container = h.container("pgbackrest", node)?;
    let command = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_default();
    let mut argv = vec![
        "pgbackrest".to_string(),
        format!("--stanza={}", h.config.pgbackrest.stanza),
    ];
    argv.extend(args);
    if !READ_COMMANDS.contains(&command.as_str())
        && !h.change(node, &format!("run {}", argv.join(" ")))
    {
        let mut m = Map::new();
        m.insert("exit_code".into(), Dynamic::from_int(0));
        m.insert("stdout".into(), "".into());
        m.insert("stderr".into(), "".into());
        return Ok(m);
    }
    let mut progress = crate::progress::Progress::new(&format!("pgbackrest {command}"), h.tty);
    let out = h.docker.exec(
        &container,
        &argv,
        Some("postgres"),
        &[],
        &h.cancel,
        &mut |l| progress.line(l),
    );
    progress.finish();
    let out = out.map_err(|e| h.fail("pgbackrest", node, e))?;
    let mut m = Map::new();
    m.insert("exit_code".into(), Dynamic::from_int(out.exit_code));
    m.insert("stdout".into(), out.stdout.into());
    m.insert("stderr".into(), out.stderr.into());
    Ok(m)
}

/// The configuration file the host writes on every node: nobody edits heredocs by hand (the
/// seed's was split in two and could not run as printed).
pub fn config_text(h: &Host) -> String {
    let c = &h.config;
    format!(
        "# Written by pgrunbook (pgbackrest_configure); changes here are overwritten.\n\
         [global]\n\
         repo1-path={repo}\n\
         repo1-retention-full={ret}\n\
         start-fast=y\n\
         log-level-console=info\n\
         log-level-file=info\n\
         \n\
         [{stanza}]\n\
         pg1-path={data}\n\
         pg1-port=5432\n\
         pg1-user={user}\n\
         pg1-socket-path=/var/run/postgresql\n",
        repo = c.pgbackrest.repo_path,
        ret = c.pgbackrest.retention_full,
        stanza = c.pgbackrest.stanza,
        data = c.cluster.data_dir,
        user = c.cluster.superuser,
    )
}

pub fn create_module(host: Arc<Host>) -> Module {
    let mut m = Module::new();

    let h = host.clone();
    def!(
        &mut m,
        "pgbackrest_configure",
        ["node: &str", "bool"],
        "Writes /etc/pgbackrest/pgbackrest.conf in the node's container from the configuration
        (repository path, stanza, data directory). Returns true when the file changed; writing the
        same file again changes nothing.",
        move |node: &str| -> R<bool> {
            let container = h.container("pgbackrest_configure", node)?;
            let text = config_text(&h);
            let read = vec![
                "cat".to_string(),
                "/etc/pgbackrest/pgbackrest.conf".to_string(),
            ];
            let current = h
                .docker
                .exec(
                    &container,
                    &read,
                    Some("postgres"),
                    &[],
                    &h.cancel,
                    &mut |_| {},
                )
                .map_err(|e| h.fail("pgbackrest_configure", node, e))?;
            if current.exit_code == 0 && current.stdout == text {
                return Ok(false);
            }
            if !h.change(node, "write /etc/pgbackrest/pgbackrest.conf") {
                return Ok(true);
            }
            let write = vec![
                "sh".to_string(), "-c".to_string(),
                "umask 077; printf '%s' \"$1\" > /etc/pgbackrest/pgbackrest.conf.new && mv /etc/pgbackrest/pgbackrest.conf.new /etc/pgbackrest/pgbackrest.conf".to_string(),
                "sh".to_string(), text,
            ];
            let out = h
                .docker
                .exec(
                    &container,
                    &write,
                    Some("postgres"),
                    &[],
                    &h.cancel,
                    &mut |_| {},
                )
                .map_err(|e| h.fail("pgbackrest_configure", node, e))?;
            if out.exit_code != 0 {
                return Err(h.error(
                    crate::error::Class::Refused,
                    format!(
                        "pgbackrest_configure on {node}: cannot write the configuration: {}",
                        out.stderr.trim()
                    ),
                ));
            }
            Ok(true)
        }
    );

    let h = host.clone();
    def!(
        &mut m,
        "pgbackrest_info",
        ["node: &str", "Map"],
        "`pgbackrest info --output=json` for the stanza, as a map (the stanza's entry: status,
        backup list, archive ranges). Raises when pgBackRest fails.",
        move |node: &str| -> R<Map> {
            let out = run(&h, node, vec!["--output=json".into(), "info".into()])?;
            let code = out
                .get("exit_code")
                .and_then(|v| v.as_int().ok())
                .unwrap_or(-1);
            let stdout = out.get("stdout").map(|v| v.to_string()).unwrap_or_default();
            if code != 0 {
                let err = out.get("stderr").map(|v| v.to_string()).unwrap_or_default();
                return Err(h.error(
                    crate::error::Class::Refused,
                    format!("pgbackrest_info on {node}: exit {code}: {}", err.trim()),
                ));
            }
            let v: serde_json::Value = serde_json::from_str(&stdout).map_err(|e| {
                h.error(
                    crate::error::Class::Runbook,
                    format!("pgbackrest_info on {node}: unexpected output ({e})"),
                )
            })?;
            let stanza = v
                .as_array()
                .and_then(|a| a.first())
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            rhai::serde::to_dynamic(stanza)
                .ok()
                .and_then(|d| d.try_cast::<Map>())
                .ok_or_else(|| {
                    h.error(
                        crate::error::Class::Runbook,
                        format!("pgbackrest_info on {node}: no stanza in the output"),
                    )
                })
        }
    );

    let h = host;
    def!(
        &mut m,
        "pgbackrest",
        ["node: &str", "args: String | Array", "Map"],
        "Runs `pgbackrest --stanza=<stanza> <args>` as postgres in the node's container and
        returns #{exit_code, stdout, stderr}. Commands other than info/check/verify are changes:
        a dry run prints them.",
        move |node: &str, args: Dynamic| run(&h, node, args_of(&args))
    );

    m
}
