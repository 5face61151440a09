//! Docker primitives: commands in containers and the containers' lifecycle, through bollard.
//! Nodes are named by their configuration names and resolved to containers here.

use super::{def, node};
use crate::error::Class;
use crate::runtime::host::Host;
use rhai::{Array, Dynamic, EvalAltResult, Map, Module};
use std::sync::Arc;
use std::time::{Duration, Instant};

type R<T> = Result<T, Box<EvalAltResult>>;

/// A command given as a string runs through `sh -c`; an array runs as it is.
pub fn command_of(cmd: &Dynamic) -> Vec<String> {
    if let Some(a) = cmd.read_lock::<Array>() {
        return a.iter().map(|v| v.to_string()).collect();
    }
    vec!["sh".into(), "-c".into(), cmd.to_string()]
}

fn exec_map(out: crate::clients::docker::ExecOutput) -> Map {
    let mut m = Map::new();
    m.insert("exit_code".into(), Dynamic::from_int(out.exit_code));
    m.insert("stdout".into(), out.stdout.into());
    m.insert("stderr".into(), out.stderr.into());
    m
}

pub fn create_module(host: Arc<Host>) -> Module {
    let mut m = Module::new();

    let h = host.clone();
    let exec = move |node: &str, cmd: Dynamic, user: &str| -> R<Map> {
        let container = h.container("docker_exec", node)?;
        let argv = command_of(&cmd);
        let user = if user.is_empty() { None } else { Some(user) };
        h.docker
            .exec(&container, &argv, user, &[], &h.cancel, &mut |_| {})
            .map(exec_map)
            .map_err(|e| h.fail("docker_exec", node, e))
    };
    let e2 = exec.clone();
    def!(
        &mut m,
        "docker_exec",
        ["node: &str", "cmd: String | Array", "Map"],
        "Runs a command in the node's container (a string runs through `sh -c`) and returns
        #{exit_code, stdout, stderr}. A non-zero exit is returned, not raised.
        This is a read: it runs in a dry run too, so use it for commands that change nothing.",
        move |node: &str, cmd: Dynamic| e2(node, cmd, "")
    );
    def!(
        &mut m,
        "docker_exec",
        ["node: &str", "cmd: String | Array", "user: &str", "Map"],
        "Like `docker_exec(node, cmd)`, as the given user (\"root\", \"postgres\").",
        move |node: &str, cmd: Dynamic, user: &str| exec(node, cmd, user)
    );

    let h = host.clone();
    def!(
        &mut m,
        "container_status",
        ["node: &str", "String"],
        "The state of the node's container: \"running\", \"exited\", \"created\", \"missing\"...",
        move |node: &str| -> R<String> {
            let c = h.container("container_status", node)?;
            h.docker
                .state(&c)
                .map(|s| s.as_str().to_string())
                .map_err(|e| h.fail("container_status", node, e))
        }
    );

    let h = host.clone();
    def!(
        &mut m,
        "stop_container",
        ["node: &str"],
        "Stops the node's container cleanly, whatever its image's stop signal: PostgreSQL's fast
        shutdown (SIGINT to the postmaster), a wait for the container to exit, then Docker's stop
        (SIGKILL after 30 s more). Stopping a stopped container does nothing.",
        move |node: &str| -> R<()> {
            let c = h.container("stop_container", node)?;
            if !h.change(node, &format!("stop container {c} (fast shutdown)")) {
                return Ok(());
            }
            node::clean_stop(&h, "stop_container", node, 60)
        }
    );

    let h = host.clone();
    def!(
        &mut m,
        "kill_container",
        ["node: &str"],
        "Kills the node's container with SIGKILL (no clean shutdown).",
        move |node: &str| -> R<()> {
            let c = h.container("kill_container", node)?;
            if !h.change(node, &format!("kill container {c}")) {
                return Ok(());
            }
            h.docker
                .kill(&c, "SIGKILL")
                .map_err(|e| h.fail("kill_container", node, e))?;
            h.pg.forget(node);
            Ok(())
        }
    );

    let h = host.clone();
    def!(
        &mut m,
        "kill_container",
        ["node: &str", "signal: &str"],
        "Sends `signal` to the node's container and returns at once. \"SIGINT\" is PostgreSQL's
        fast shutdown and the lab image's stop signal, so Docker treats it as a stop: the restart
        policy does not bring the container back.",
        move |node: &str, signal: &str| -> R<()> {
            let c = h.container("kill_container", node)?;
            if !h.change(node, &format!("send {signal} to container {c}")) {
                return Ok(());
            }
            h.docker
                .kill(&c, signal)
                .map_err(|e| h.fail("kill_container", node, e))?;
            h.pg.forget(node);
            Ok(())
        }
    );

    let h = host.clone();
    def!(
        &mut m,
        "fast_shutdown",
        ["node: &str", "bool"],
        "Asks PostgreSQL in the node for a fast shutdown (SIGINT to the postmaster, through the
        engine when it is the container's PID 1) and returns at once: new connections are refused,
        open transactions end, and a primary's walsenders send their standbys every last byte of
        WAL before they hang up. Works whatever the image's stop signal; Docker does not restart
        the container. Returns false when no server was running.",
        move |node: &str| -> R<bool> {
            let c = h.container("fast_shutdown", node)?;
            if !h.change(
                node,
                &format!("fast shutdown of PostgreSQL in container {c}"),
            ) {
                return Ok(true);
            }
            node::fast_shutdown(&h, "fast_shutdown", node)
        }
    );

    let h = host.clone();
    def!(
        &mut m,
        "restart_container",
        ["node: &str", "timeout_s: i64"],
        "Restarts the node cleanly (as `stop_container`, then start) and waits up to `timeout_s`
        seconds until PostgreSQL accepts connections again: how settings that need a restart
        (archive_mode, wal_log_hints) take effect.",
        move |node: &str, timeout_s: i64| -> R<()> {
            let c = h.container("restart_container", node)?;
            if !h.change(
                node,
                &format!("restart container {c} (fast shutdown, then start)"),
            ) {
                return Ok(());
            }
            node::clean_stop(&h, "restart_container", node, 60)?;
            h.docker
                .start(&c)
                .map_err(|e| h.fail("restart_container", node, e))?;
            node::wait_accepting(
                &h,
                "restart_container",
                node,
                timeout_s.max(1),
                &format!(" of the restart (see `docker logs {c}`)"),
            )
        }
    );

    let h = host.clone();
    def!(
        &mut m,
        "start_container",
        ["node: &str"],
        "Starts the node's container. Starting a running container does nothing.",
        move |node: &str| -> R<()> {
            let c = h.container("start_container", node)?;
            if !h.change(node, &format!("start container {c}")) {
                return Ok(());
            }
            h.docker
                .start(&c)
                .map_err(|e| h.fail("start_container", node, e))
        }
    );

    let h = host.clone();
    def!(&mut m, "require_container", ["node: &str"],
        "Fails (exit code 5, unreachable) when the node's container does not exist, saying how to
        bring the lab up. Runbooks call it first so that nothing changes on a half-present cluster.",
        move |node: &str| -> R<()> {
            let c = h.container("require_container", node)?;
            match h.docker.state(&c).map_err(|e| h.fail("require_container", node, e))? {
                crate::clients::docker::State::Missing => Err(h.error(Class::Infrastructure, format!(
                    "container '{c}' of node {node} does not exist (is the lab up? `pgrunbook lab up`)"))),
                _ => Ok(()),
            }
        });

    let h = host.clone();
    def!(
        &mut m,
        "fence",
        ["node: &str", "reason: &str"],
        "Fences the node so that it can never come back as a second primary: writes
        `standby.signal` and `pgrunbook.fenced` (with `reason`) into its data directory. Whoever
        starts its container later, by hand or by Docker's restart policy, gets a read-only
        standby. Works on a stopped container too (through a one-off container). `failback`
        lifts the fence when it re-clones the node.",
        move |node: &str, reason: &str| -> R<()> {
            if !h.change(
                node,
                &format!("fence (standby.signal + pgrunbook.fenced: {reason})"),
            ) {
                return Ok(());
            }
            let stamp = format!("{} {}", crate::runtime::host::now_rfc3339(), reason);
            // Fast path: a node that answers writes its own files (COPY TO, as superuser), in a
            // millisecond where a docker exec takes tens.
            if h.pg.ping(node) {
                let sql = format!(
                    "DO $$ BEGIN \
                     EXECUTE format('COPY (SELECT %L) TO %L', {stamp}, current_setting('data_directory') || '/pgrunbook.fenced'); \
                     EXECUTE format('COPY (SELECT %L) TO %L', 'fenced by pgrunbook', current_setting('data_directory') || '/standby.signal'); \
                     END $$",
                    stamp = crate::clients::postgres::quote_literal(&stamp));
                if h.pg.execute_batch(node, &sql, None).is_ok() {
                    return Ok(());
                }
            }
            let script = format!(
                "set -e; test -s \"$PGDATA/PG_VERSION\"; printf '%s\\n' {} > \"$PGDATA/pgrunbook.fenced\"; touch \"$PGDATA/standby.signal\"; sync",
                node::sh_quote(&stamp));
            let out = node::run_on_data_dir(&h, "fence", node, &script)?;
            if out.exit_code != 0 {
                return Err(h.error(
                    Class::Refused,
                    format!(
                        "fence on {node}: cannot write the fence into its data directory: {}",
                        out.stderr.trim()
                    ),
                ));
            }
            Ok(())
        }
    );

    let h = host.clone();
    def!(
        &mut m,
        "unfence",
        ["node: &str", "bool"],
        "Lifts the fence `fence` wrote: removes `pgrunbook.fenced` from the node's data directory
        and leaves `standby.signal`, so a standby stays a standby. For a fenced node that streams
        again from the primary (switchover's old primary, once it follows the new one); `rewind`
        and `basebackup` lift fences themselves. Returns false when the node was not fenced. Works
        on a stopped container too (through a one-off container).",
        move |node: &str| -> R<bool> {
            h.check_node("unfence", node)?;
            if node::read_data_file(&h, "unfence", node, "pgrunbook.fenced")?.is_none() {
                return Ok(false);
            }
            if !h.change(
                node,
                "lift the fence (remove pgrunbook.fenced, keep standby.signal)",
            ) {
                return Ok(true);
            }
            let out = node::run_on_data_dir(
                &h,
                "unfence",
                node,
                "set -e; rm -f \"$PGDATA/pgrunbook.fenced\"; sync",
            )?;
            if out.exit_code != 0 {
                return Err(h.error(
                    Class::Refused,
                    format!(
                        "unfence on {node}: cannot remove pgrunbook.fenced: {}",
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
        "fence_info",
        ["node: &str", "Dynamic"],
        "The node's fence (the time and reason `fence` wrote), or `()` when it is not fenced.",
        move |node: &str| -> R<Dynamic> {
            h.check_node("fence_info", node)?;
            Ok(
                node::read_data_file(&h, "fence_info", node, "pgrunbook.fenced")?
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .map(Dynamic::from)
                    .unwrap_or(Dynamic::UNIT),
            )
        }
    );

    let h = host;
    def!(
        &mut m,
        "wait_container",
        ["node: &str", "state: &str", "timeout_s: i64"],
        "Waits until the node's container is in `state` (\"running\", \"exited\"); fails after
        `timeout_s` seconds.",
        move |node: &str, state: &str, timeout_s: i64| -> R<()> {
            let c = h.container("wait_container", node)?;
            if h.dry_run() {
                return Ok(());
            }
            let end = Instant::now() + Duration::from_secs(timeout_s.max(0) as u64);
            loop {
                let s = h
                    .docker
                    .state(&c)
                    .map_err(|e| h.fail("wait_container", node, e))?;
                if s.as_str() == state {
                    return Ok(());
                }
                if Instant::now() >= end {
                    return Err(h.error(Class::Refused, format!(
                        "wait_container on {node}: container {c} is {} after {timeout_s} s, not {state}", s.as_str())));
                }
                h.check_cancel()?;
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    );

    m
}
