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

/// What a restored container runs: the image's PostgreSQL on the restored data directory, with
/// the settings given as arguments (they win over every file).
const RESTORED_SERVER_SCRIPT: &str = r#"PATH="$PATH:$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -n 1)"
exec postgres -D "$PGDATA" "$@"
"#;

use super::map_text as opt_str;

fn opt_int(opts: &Map, key: &str, default: i64) -> i64 {
    opts.get(key)
        .and_then(|v| v.as_int().ok().or_else(|| v.to_string().parse().ok()))
        .unwrap_or(default)
}

/// Refuses unless `container` is a restored container (or volume) of this lab: what
/// `restored_sql` and `remove_restored` act on, never a node or anything else.
fn require_restored(h: &Host, primitive: &str, container: &str) -> R<()> {
    node::check_container_name(h, primitive, container)?;
    match node::restore_engine(h, container)
        .container_labels(container)
        .map_err(|e| h.fail(primitive, "", e))?
    {
        None => Err(h.error(
            Class::Infrastructure,
            format!("{primitive}: container '{container}' does not exist"),
        )),
        Some(l) if node::is_restore(h, &l) => Ok(()),
        Some(_) => Err(h.error(
            Class::Refused,
            format!("{primitive}: {container} is not a container a restore of this lab made (no {} label): left alone", node::RESTORE_LABEL),
        )),
    }
}

/// `start_restored`: see its doc below.
fn start_restored(h: &Host, node: &str, opts: &Map) -> R<Map> {
    const P: &str = "start_restored";
    let container = opt_str(opts, "container");
    let port = opt_int(opts, "port", 0);
    let timeout_s = opt_int(opts, "timeout_s", 600).max(1);
    let purpose = match opt_str(opts, "purpose") {
        p if p.is_empty() => "restore".to_string(),
        p => p,
    };
    node::check_container_name(h, P, &container)?;
    if h.config.node_by_container(&container).is_some() {
        return Err(h.error(
            Class::Refused,
            format!("{P}: {container} is a node's container"),
        ));
    }
    if !(0..=65535).contains(&port) {
        return Err(h.error(
            Class::Runbook,
            format!("{P}: port {port} is not a TCP port"),
        ));
    }
    let volume = node::restored_volume(&container);
    let (repo_ro, repo_binds) = node::repo_mount_ro(h, P, node)?;
    let image = node::image_of(h, P, node)?;
    let mut result = Map::new();
    result.insert("container".into(), container.clone().into());
    let what = format!(
        "create container {container} ({image}, {}) on volume {volume} and start PostgreSQL in it with archive_mode=off, recovering until it promotes",
        if port > 0 { format!("published on 127.0.0.1:{port}, default bridge network") } else { "no published port, no network".to_string() }
    );
    if !h.change(node, &what) {
        result.insert("dry_run".into(), true.into());
        return Ok(result);
    }
    match h
        .docker_of(node)
        .volume_labels(&volume)
        .map_err(|e| h.fail(P, node, e))?
    {
        Some(l) if node::is_restore(h, &l) => {}
        Some(_) => {
            return Err(h.error(
                Class::Refused,
                format!("{P}: volume {volume} was not made by a restore of this lab: left alone"),
            ))
        }
        None => {
            return Err(h.error(
                Class::Runbook,
                format!("{P}: volume {volume} does not exist: restore_backup makes it"),
            ))
        }
    }
    if h.docker_of(node)
        .inspect(&container)
        .map_err(|e| h.fail(P, node, e))?
        .is_some()
    {
        return Err(h.error(
            Class::Refused,
            format!("{P}: a container named {container} exists already"),
        ));
    }
    let set = h
        .docker_of(node)
        .volume_labels(&volume)
        .ok()
        .flatten()
        .and_then(|l| l.get(node::RESTORE_BACKUP_LABEL).cloned())
        .unwrap_or_default();
    let settings = [
        "archive_mode=off".to_string(),
        "port=5432".into(),
        format!("listen_addresses={}", if port > 0 { "*" } else { "" }),
        format!("unix_socket_directories={}", node::RESTORED_SOCKET_DIR),
        "synchronous_standby_names=".into(),
        "primary_conninfo=".into(),
        "primary_slot_name=".into(),
        "logging_collector=off".into(),
        "hot_standby=on".into(),
        format!("cluster_name={container}"),
    ];
    let spec = crate::clients::docker::ContainerSpec {
        name: container.clone(),
        image,
        // PGHOST: `docker exec NAME psql`, the seed's way of working, finds the socket.
        env: vec![
            format!("PGDATA={}", h.config.cluster.data_dir),
            format!("PGHOST={}", node::RESTORED_SOCKET_DIR),
        ],
        entrypoint: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            RESTORED_SERVER_SCRIPT.into(),
            "sh".into(),
        ]),
        cmd: Some(
            settings
                .iter()
                .flat_map(|s| ["-c".to_string(), s.clone()])
                .collect(),
        ),
        user: Some("postgres".into()),
        volumes: vec![(volume.clone(), h.config.cluster.data_dir.clone())],
        volumes_ro: repo_ro,
        binds: repo_binds,
        network: (port == 0).then(|| "none".to_string()),
        ports: if port > 0 {
            vec![("5432/tcp".into(), port as u16)]
        } else {
            vec![]
        },
        labels: node::restore_labels(h, &purpose, &set),
        ..Default::default()
    };
    let t0 = Instant::now();
    h.docker_of(node)
        .create(&spec)
        .map_err(|e| h.fail(P, node, e))?;
    h.docker_of(node)
        .start(&container)
        .map_err(|e| h.fail(P, node, e))?;
    let end = t0 + Duration::from_secs(timeout_s as u64);
    let log_tail = |n: usize| -> String {
        h.docker_of(node)
            .logs(&container, None, Some(n), &h.cancel)
            .unwrap_or_default()
            .iter()
            .map(|l| l.split_once(' ').map(|(_, t)| t).unwrap_or(l).to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let state_query =
        "SELECT pg_is_in_recovery() AS in_recovery, pg_last_wal_replay_lsn()::text AS replay_lsn, \
                       (SELECT timeline_id FROM pg_control_checkpoint()) AS timeline";
    let row = loop {
        h.check_cancel()?;
        let st = h
            .docker_of(node)
            .state(&container)
            .map_err(|e| h.fail(P, node, e))?;
        if !st.is_running() && st != crate::clients::docker::State::Present("created".into()) {
            let tail = log_tail(15);
            let reason = tail
                .lines()
                .rev()
                .find(|l| l.contains("FATAL") || l.contains("PANIC"))
                .unwrap_or("")
                .to_string();
            return Err(h.error(
                Class::Refused,
                format!("{P}: the restored server in {container} stopped ({}) before it was ready: {}\n{}",
                    st.as_str(), if reason.is_empty() { "see below" } else { reason.as_str() }, h.scrub(&tail)),
            ));
        }
        if st.is_running() {
            if let Ok(Ok(v)) = node::psql_rows(h, P, &container, state_query) {
                if let Some(r) = v.as_array().and_then(|a| a.first()) {
                    if r["in_recovery"] == serde_json::Value::Bool(false) {
                        break r.clone();
                    }
                }
            }
        }
        if Instant::now() >= end {
            return Err(h.error(
                Class::Refused,
                format!("{P}: the restored server in {container} did not finish its recovery within {timeout_s} s; its log ends:\n{}", h.scrub(&log_tail(15))),
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let ms = t0.elapsed().as_millis() as i64;
    let logs = h
        .docker_of(node)
        .logs(&container, None, None, &h.cancel)
        .unwrap_or_default();
    let segments = logs
        .iter()
        .filter(|l| l.contains("restored log file") && !l.contains(".history"))
        .count() as i64;
    let stop = logs
        .iter()
        .rev()
        .find(|l| {
            l.contains("recovery stopping") || l.contains("consistent recovery state reached")
        })
        .map(|l| {
            l.split_once("LOG:")
                .map(|(_, t)| t.trim())
                .unwrap_or(l)
                .to_string()
        })
        .unwrap_or_default();
    result.insert("dry_run".into(), false.into());
    result.insert("ms".into(), Dynamic::from_int(ms));
    result.insert("wal_segments".into(), Dynamic::from_int(segments));
    result.insert("stopped".into(), stop.into());
    result.insert(
        "replay_lsn".into(),
        row["replay_lsn"]
            .as_str()
            .unwrap_or_default()
            .to_string()
            .into(),
    );
    result.insert(
        "timeline".into(),
        Dynamic::from_int(row["timeline"].as_i64().unwrap_or(0)),
    );
    result.insert("port".into(), Dynamic::from_int(port));
    Ok(result)
}

/// The fence of a stopped container, written by the engine itself: its archive endpoint reads
/// the owner of `PG_VERSION` (no data directory there: not fenced this way) and writes the two
/// files with that owner, starting no process: tens of milliseconds, where a one-off container
/// takes about 300 (a failover waits for the fence before it promotes). Then `sync` in a running
/// container of the cluster makes them durable: sync(2) flushes every filesystem of the host,
/// not only that container's, and a fence lost to a crash of the host is a fence that is not
/// there when the old primary starts again. Returns false, having changed nothing that counts,
/// when this way does not apply (the container runs, no other container runs to sync from, an
/// engine call fails): the caller then writes the fence through a one-off container.
fn fence_stopped_through_engine(h: &Host, node: &str, stamp: &str) -> R<bool> {
    let container = h.container("fence", node)?;
    match h.docker_of(node).state(&container) {
        Ok(s) if !s.is_running() && s.as_str() != "missing" => {}
        _ => return Ok(false),
    }
    let syncer = h.config.nodes.iter().find_map(|(name, n)| {
        (name != node
            && h.docker_of(node)
                .state(&n.container)
                .is_ok_and(|s| s.is_running()))
        .then(|| n.container.clone())
    });
    let Some(syncer) = syncer else {
        return Ok(false);
    };
    let dir = h.config.cluster.data_dir.trim_end_matches('/').to_string();
    let Ok(Some(owner)) = h
        .docker_of(node)
        .file_owner(&container, &format!("{dir}/PG_VERSION"))
    else {
        return Ok(false);
    };
    let fenced = format!("{stamp}\n");
    let written = h
        .docker_of(node)
        .upload_file_owned(
            &container,
            &format!("{dir}/pgrunbook.fenced"),
            fenced.as_bytes(),
            0o600,
            owner,
        )
        .and_then(|_| {
            h.docker_of(node).upload_file_owned(
                &container,
                &format!("{dir}/standby.signal"),
                b"",
                0o600,
                owner,
            )
        });
    if written.is_err() {
        return Ok(false);
    }
    let synced = h.docker_of(node).exec(
        &syncer,
        &["sync".to_string()],
        None,
        &[],
        &h.cancel,
        &mut |_| {},
    );
    Ok(synced.is_ok_and(|o| o.exit_code == 0))
}

pub fn create_module(host: Arc<Host>) -> Module {
    let mut m = Module::new();

    let h = host.clone();
    def!(
        &mut m,
        "start_restored",
        ["node: &str", "options: Map", "Map"],
        "Starts a restored server: a NEW container on the volume `restore_backup` filled (the
        node's image, its PostgreSQL with archive_mode=off, no synchronous standbys, no
        primary_conninfo, so it never archives into the repository nor talks to the pair), and
        waits until its recovery has promoted it. The repository is mounted read-only for its
        restore_command. options: #{container: NAME (required; never a node's container),
        port: 0 (no published port and no network at all: a drill) or a port published on
        127.0.0.1, timeout_s: 600, purpose}. Returns #{container, ms (start to promotion),
        wal_segments (archived segments it replayed), replay_lsn (the last record replayed),
        timeline (its new one), stopped (PostgreSQL's line saying where recovery stopped), port}.
        Raises, with PostgreSQL's FATAL line and the log's end, when the server stops first.",
        move |node: &str, options: Map| start_restored(&h, node, &options)
    );

    let h = host.clone();
    def!(
        &mut m,
        "require_new_container",
        ["name: &str"],
        "Refuses (exit code 4) unless `name` is free for a new restored container: not the
        container of a configured node, no container of that name, no volume `<name>-data`.
        `restore` calls it before it changes anything; `restore_backup` checks again.",
        move |name: &str| -> R<()> { node::require_free_name(&h, "require_new_container", name) }
    );

    let h = host.clone();
    def!(
        &mut m,
        "restored_sql",
        ["container: &str", "query: &str", "Array"],
        "Runs a query in a restored container (one `start_restored` made; nothing else) with psql
        through its Unix socket, as the superuser on the application database, and returns the
        rows as maps (numbers, booleans, strings, `()` for NULL). The query must return rows
        (SELECT, VALUES, TABLE). Raises (class refused, exit 4) with PostgreSQL's error when it
        fails.",
        move |container: &str, query: &str| -> R<Array> {
            require_restored(&h, "restored_sql", container)?;
            match node::psql_rows(&h, "restored_sql", container, query)? {
                Ok(v) => Ok(rhai::serde::to_dynamic(v)
                    .ok()
                    .and_then(|d| d.try_cast::<Array>())
                    .unwrap_or_default()),
                Err(e) => Err(h.error(Class::Refused, format!("restored_sql in {container}: {e}"))),
            }
        }
    );

    let h = host.clone();
    def!(
        &mut m,
        "remove_restored",
        ["container: &str", "bool"],
        "Removes a restored container and its volume `<container>-data` (and the one-off
        container of a restore a killed run left), each only when a restore of this lab made it
        (its labels say so); anything else of that name is left alone and refused. Returns true
        when something was removed; removing what is not there does nothing.",
        move |container: &str| -> R<bool> {
            const P: &str = "remove_restored";
            node::check_container_name(&h, P, container)?;
            let volume = node::restored_volume(container);
            let helper = format!("{container}-restore");
            // On the engine the restore ran on (the node's that lent its image).
            let engine = node::restore_engine(&h, container);
            // A restore under way owns what it made: refused, naming its run.
            let not_in_use = |what: &str, labels: &std::collections::HashMap<String, String>| {
                match node::restore_owner_alive(labels) {
                    None => Ok(()),
                    Some(owner) => Err(h.error(
                        Class::Refused,
                        format!(
                            "{P}: {what} belongs to a restore under way: {owner}; wait for it to end (a drill removes its own scratch), or stop that run first"
                        ),
                    )),
                }
            };
            let mut present = vec![];
            for c in [container.to_string(), helper] {
                match engine.container_labels(&c).map_err(|e| h.fail(P, "", e))? {
                    None => {}
                    Some(l) if node::is_restore(&h, &l) => {
                        not_in_use(&c, &l)?;
                        present.push(c)
                    }
                    Some(_) => {
                        return Err(h.error(
                            Class::Refused,
                            format!(
                            "{P}: {c} is not a container a restore of this lab made: left alone"
                        ),
                        ))
                    }
                }
            }
            let vol = match engine
                .volume_labels(&volume)
                .map_err(|e| h.fail(P, "", e))?
            {
                None => false,
                Some(l) if node::is_restore(&h, &l) => {
                    not_in_use(&format!("volume {volume}"), &l)?;
                    true
                }
                Some(_) => {
                    return Err(h.error(
                        Class::Refused,
                        format!(
                        "{P}: volume {volume} was not made by a restore of this lab: left alone"
                    ),
                    ))
                }
            };
            if present.is_empty() && !vol {
                return Ok(false);
            }
            let mut what = present.join(" and ");
            if vol {
                if !what.is_empty() {
                    what.push_str(" and ");
                }
                what.push_str(&format!("volume {volume}"));
            }
            if !h.change("the Docker engine", &format!("remove {what}")) {
                return Ok(true);
            }
            for c in &present {
                engine.remove(c).map_err(|e| h.fail(P, "", e))?;
            }
            if vol {
                engine
                    .remove_volume(&volume)
                    .map_err(|e| h.fail(P, "", e))?;
            }
            Ok(true)
        }
    );

    let h = host.clone();
    let exec = move |node: &str, cmd: Dynamic, user: &str| -> R<Map> {
        let container = h.container("docker_exec", node)?;
        let argv = command_of(&cmd);
        let user = if user.is_empty() { None } else { Some(user) };
        h.docker_of(node)
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
            h.docker_of(node)
                .state(&c)
                .map(|s| s.as_str().to_string())
                .map_err(|e| h.fail("container_status", node, e))
        }
    );

    let h = host.clone();
    def!(
        &mut m,
        "engine_reachable",
        ["node: &str", "bool"],
        "True when the node's Docker engine answers (its API version negotiated, within 5 s the
        first time in a run; the answer is kept for the run). A node whose engine does not answer
        is `unreachable`: its host is down or cut off, and nothing can be done to it, not even a
        fence.",
        move |node: &str| -> R<bool> {
            h.check_node("engine_reachable", node)?;
            Ok(h.docker_of(node).ping().is_ok())
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
            h.docker_of(node)
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
            h.docker_of(node)
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
            if !h.change(node, &format!("shut PostgreSQL down fast in container {c}")) {
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
            h.docker_of(node)
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
            h.docker_of(node)
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
            match h.docker_of(node).state(&c).map_err(|e| h.fail("require_container", node, e))? {
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
        standby. Works on a stopped container too (the engine writes the files, then a `sync` in
        a running container of the cluster makes them durable; else a one-off container). `failback`
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
            if fence_stopped_through_engine(&h, node, &stamp)? {
                return Ok(());
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
                    .docker_of(node)
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
