//! Operations on a node that several backends share: its server's own facts, waiting for it
//! to accept connections, stopping it cleanly, small files of its data directory, and scripts
//! run on that directory (in its container, or a one-off container when it is stopped).
//!
//! The Docker, PostgreSQL and pgBackRest primitives all use these; none of those files uses
//! another, only this one. Nothing here is registered as a primitive.

use crate::clients::docker::{ExecOutput, State};
use crate::error::Class;
use crate::runtime::host::Host;
use rhai::EvalAltResult;
use std::time::{Duration, Instant};

type R<T> = Result<T, Box<EvalAltResult>>;

/// Quotes a string for `sh -c`.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Where a node's server listens and keeps its data, as the server itself says (not from the
/// configuration: a user's container may use another port or socket directory).
#[derive(Debug, Clone)]
pub struct ServerFacts {
    pub port: i64,
    /// The first of `unix_socket_directories`.
    pub socket_dir: String,
    pub data_dir: String,
}

pub fn server_facts(h: &Host, primitive: &str, node: &str) -> R<ServerFacts> {
    h.check_node(primitive, node)?;
    let rows = h
        .pg
        .query(
            node,
            "SELECT current_setting('port') AS port, \
                    trim(split_part(current_setting('unix_socket_directories'), ',', 1)) AS socket_dir, \
                    current_setting('data_directory') AS data_dir",
            &[],
            false,
            &h.cancel,
        )
        .map_err(|e| h.fail(primitive, node, e.into()))?;
    if rows.rows.is_empty() {
        return Err(h.error(Class::Runbook, format!("{primitive} on {node}: no answer")));
    }
    let get = |k: &str| {
        rows.get(0, k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    Ok(ServerFacts {
        port: get("port").parse().unwrap_or(5432),
        socket_dir: get("socket_dir"),
        data_dir: get("data_dir"),
    })
}

/// Waits until the node accepts connections, at most `timeout_s` seconds (Ctrl-C and the run's
/// time limit stop it). `after` is said in the error: "within 60 s{after}".
///
/// A server that dies while starting (its container exits) is not waited for: the error says so
/// at once, with the last FATAL line of its log and its DETAIL, which say why. A server still not
/// accepting at the deadline gets its last FATAL line too, when it wrote one.
pub fn wait_accepting(h: &Host, primitive: &str, node: &str, timeout_s: i64, after: &str) -> R<()> {
    let started = Instant::now();
    let end = started + Duration::from_secs(timeout_s.max(0) as u64);
    let container = h.container(primitive, node)?;
    let mut next_state_check = started + Duration::from_millis(500);
    let log_window = || started.elapsed().as_secs() as i64 + 5;
    loop {
        if h.pg
            .probe(node)
            .map_err(|e| h.fail(primitive, node, e.into()))?
        {
            return Ok(());
        }
        if Instant::now() >= next_state_check {
            next_state_check = Instant::now() + Duration::from_millis(500);
            if h.docker_of(node)
                .state(&container)
                .is_ok_and(|s| !s.is_running())
            {
                let why = crate::primitives::logs::last_fatal(h, node, log_window())
                    .map(|f| format!("; its log says {f}"))
                    .unwrap_or_else(|| format!(" (see `docker logs {container}`)"));
                return Err(h.error(
                    Class::Infrastructure,
                    format!("{primitive} on {node}: PostgreSQL did not start (container {container} exited){why}"),
                ));
            }
        }
        if Instant::now() >= end {
            let why = crate::primitives::logs::last_fatal(h, node, log_window())
                .map(|f| format!("; its log says {f}"))
                .unwrap_or_default();
            return Err(h.error(
                Class::Infrastructure,
                format!("{primitive} on {node}: PostgreSQL did not accept connections within {timeout_s} s{after}{why}"),
            ));
        }
        h.check_cancel()?;
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a shell script that works on the node's data directory: with `docker exec` when its
/// container runs, else in a one-off container with the node's image and volumes. `$PGDATA` is
/// set to the data directory.
pub fn run_on_data_dir(h: &Host, primitive: &str, node: &str, script: &str) -> R<ExecOutput> {
    run_script(h, primitive, node, script, vec![])
}

/// Runs a shell script as postgres in the node's container (`docker exec` when it runs, else a
/// one-off container with its image, volumes and network), with `$PGDATA` and `env` set. The
/// environment is how secrets reach a script: never its command line, which `ps` shows.
pub fn run_script(
    h: &Host,
    primitive: &str,
    node: &str,
    script: &str,
    env: Vec<String>,
) -> R<ExecOutput> {
    let container = h.container(primitive, node)?;
    let state = h
        .docker_of(node)
        .state(&container)
        .map_err(|e| h.fail(primitive, node, e))?;
    let mut env = env;
    env.push(format!("PGDATA={}", h.config.cluster.data_dir));
    let argv = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
    let oneoff = || {
        h.docker_of(node)
            .oneoff_like(&container, &format!("{container}-pgrunbook"))
            .and_then(|mut spec| {
                spec.entrypoint = Some(vec!["/bin/sh".into(), "-c".into()]);
                spec.cmd = Some(vec![script.to_string()]);
                spec.env = env.clone();
                h.docker_of(node).run_oneoff(&spec, &h.cancel, &mut |_| {})
            })
    };
    if !state.is_running() {
        return oneoff().map_err(|e| h.fail(primitive, node, e));
    }
    // The container can stop under the exec: a `docker stop` sent by an earlier run that was
    // killed goes on in the daemon, and when the container's main process ends the exec ends
    // with SIGKILL (exit 137) or cannot start. Look again: a container now down gets the script
    // where it would have run had it been down from the start, in a one-off container of its
    // image; one still up runs it again (at most three times in all).
    let mut attempt = 1;
    loop {
        let out = h.docker_of(node).exec(
            &container,
            &argv,
            Some("postgres"),
            &env,
            &h.cancel,
            &mut |_| {},
        );
        let stopped_under = match &out {
            Ok(o) => o.exit_code == 137,
            Err(_) => true,
        };
        if !stopped_under || attempt == 3 || h.cancel.is_cancelled() {
            return out.map_err(|e| h.fail(primitive, node, e));
        }
        match h.docker_of(node).state(&container) {
            Ok(s) if !s.is_running() && s != State::Missing => {
                return oneoff().map_err(|e| h.fail(primitive, node, e));
            }
            Ok(s) if s.is_running() => attempt += 1,
            _ => return out.map_err(|e| h.fail(primitive, node, e)),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A small file of the node's data directory (`postmaster.pid`, `pgrunbook.fenced`): through
/// SQL when the server answers (a millisecond, where a docker exec takes tens), else from the
/// data directory itself (`run_on_data_dir`: an exec, or a one-off container when the container
/// is stopped). `None` when the file is not there.
pub fn read_data_file(h: &Host, primitive: &str, node: &str, file: &str) -> R<Option<String>> {
    if h.pg.ping(node) {
        if let Ok(rows) = h.pg.query(
            node,
            "SELECT pg_read_file($1, 0, 4096, true) AS f",
            &[&file],
            false,
            &h.cancel,
        ) {
            return Ok(rows
                .first_value()
                .and_then(|v| v.as_str())
                .map(str::to_string));
        }
    }
    let script = format!(
        "cat \"$PGDATA/{file}\" 2>/dev/null || true",
        file = file.replace(['"', '$', '`', '\\'], "")
    );
    let out = run_on_data_dir(h, primitive, node, &script)?;
    Ok((!out.stdout.is_empty()).then_some(out.stdout))
}

/// The postmaster's PID inside the node's container, from the first line of `postmaster.pid`
/// (the server's own lock file). `None` when there is none (no server runs).
fn postmaster_pid(h: &Host, primitive: &str, node: &str) -> R<Option<i64>> {
    Ok(read_data_file(h, primitive, node, "postmaster.pid")?
        .and_then(|text| text.lines().next().and_then(|l| l.trim().parse().ok())))
}

/// Asks PostgreSQL in the node's container for a fast shutdown (SIGINT to the postmaster) and
/// returns at once. Whatever the image's stop signal: `docker stop` sends the image's, and an
/// image that sets none gets SIGTERM, PostgreSQL's "smart" shutdown, which waits for every
/// client (pgrunbook's own connections included) until Docker kills it and leaves a stale
/// postmaster.pid behind. When the postmaster is the container's PID 1 the signal goes through
/// the engine (`docker kill -s SIGINT`), which then treats the exit as intended and does not
/// restart it; otherwise it is sent inside the container. Returns false when no server runs.
pub fn fast_shutdown(h: &Host, primitive: &str, node: &str) -> R<bool> {
    let container = h.container(primitive, node)?;
    let state = h
        .docker_of(node)
        .state(&container)
        .map_err(|e| h.fail(primitive, node, e))?;
    if !state.is_running() {
        return Ok(false);
    }
    match signal_postmaster(h, primitive, node, &container) {
        // The container exited between the look at its state and the exec that reads or signals
        // its postmaster (a server already shutting down): there is nothing left to shut down.
        Err(_)
            if !h
                .docker_of(node)
                .state(&container)
                .is_ok_and(|s| s.is_running()) =>
        {
            h.pg.forget(node);
            Ok(false)
        }
        other => other,
    }
}

/// `fast_shutdown`'s work once the container was seen running: SIGINT to the postmaster.
fn signal_postmaster(h: &Host, primitive: &str, node: &str, container: &str) -> R<bool> {
    let container = container.to_string();
    let Some(pid) = postmaster_pid(h, primitive, node)? else {
        // No server runs in the container (a lab standby waiting for its clone, say): there is
        // nothing to shut down; Docker's stop ends the container.
        return Ok(false);
    };
    h.pg.forget(node);
    match pid {
        pid if pid != 1 => {
            let argv = vec!["kill".to_string(), "-INT".to_string(), pid.to_string()];
            let out = h
                .docker_of(node)
                .exec(&container, &argv, None, &[], &h.cancel, &mut |_| {})
                .map_err(|e| h.fail(primitive, node, e))?;
            if out.exit_code != 0 {
                return Err(h.error(
                    Class::Refused,
                    format!(
                        "{primitive} on {node}: cannot signal the postmaster (PID {pid}) in {container}: {}",
                        out.stderr.trim()
                    ),
                ));
            }
        }
        _ => h
            .docker_of(node)
            .kill(&container, "SIGINT")
            .map_err(|e| h.fail(primitive, node, e))?,
    }
    Ok(true)
}

/// Stops the node cleanly whatever its image: PostgreSQL's fast shutdown, a wait for the
/// container to exit (or, when the postmaster is not PID 1, for the postmaster to end), then
/// Docker's stop, which marks the container as stopped by hand so that no restart policy brings
/// it back. A server that does not end within `timeout_s` is left to Docker's stop (SIGKILL
/// after 30 s), and the caller hears of it through the stale postmaster.pid.
pub fn clean_stop(h: &Host, primitive: &str, node: &str, timeout_s: u64) -> R<()> {
    let container = h.container(primitive, node)?;
    if fast_shutdown(h, primitive, node)? {
        let end = Instant::now() + Duration::from_secs(timeout_s);
        loop {
            let state = h
                .docker_of(node)
                .state(&container)
                .map_err(|e| h.fail(primitive, node, e))?;
            if !state.is_running() {
                break;
            }
            // A postmaster that is not PID 1 ends without ending its container.
            let probe = vec![
                "sh".to_string(),
                "-c".to_string(),
                "test -f \"$PGDATA/postmaster.pid\"".to_string(),
            ];
            let env = vec![format!("PGDATA={}", h.config.cluster.data_dir)];
            if let Ok(out) =
                h.docker_of(node)
                    .exec(&container, &probe, None, &env, &h.cancel, &mut |_| {})
            {
                if out.exit_code == 1 {
                    break;
                }
            }
            if Instant::now() >= end {
                break;
            }
            h.check_cancel()?;
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    h.docker_of(node)
        .stop(&container, 30)
        .map_err(|e| h.fail(primitive, node, e))?;
    h.pg.forget(node);
    Ok(())
}

// ---- restored servers: containers of their own built from a backup --------------------------

/// The label every container and volume a restore makes carries (besides the lab's label
/// `org.pgrunbook.lab`): its value says which runbook made it (`restore-check`, `restore`).
/// `remove_restored` removes nothing without it, and `lab down` removes what has it.
pub const RESTORE_LABEL: &str = "org.pgrunbook.restore";
/// The backup a restored container was made from.
pub const RESTORE_BACKUP_LABEL: &str = "org.pgrunbook.restore.backup";
/// The label naming the run and process that made a restored container or volume.
pub const RESTORE_OWNER_LABEL: &str = "org.pgrunbook.restore.owner";

/// The volume that holds a restored container's data directory.
pub fn restored_volume(container: &str) -> String {
    format!("{container}-data")
}

/// The labels of a restored container and its volume: the lab's, what made it, from which backup.
pub fn restore_labels(
    h: &Host,
    purpose: &str,
    backup: &str,
) -> std::collections::HashMap<String, String> {
    let mut l = std::collections::HashMap::new();
    l.insert("org.pgrunbook.lab".to_string(), h.config.lab.label.clone());
    l.insert(RESTORE_LABEL.to_string(), purpose.to_string());
    l.insert(RESTORE_BACKUP_LABEL.to_string(), backup.to_string());
    let run = h.run.lock().unwrap().run_id.clone();
    l.insert(
        RESTORE_OWNER_LABEL.to_string(),
        format!("run {run} ({})", crate::runtime::hold::me()),
    );
    l
}

/// The run and process that made a restored container or volume, when that process still runs
/// (on this machine; on another one it cannot be looked at and counts as running). `None` for a
/// leftover: its run ended or was killed, or it is this process's own.
pub fn restore_owner_alive(labels: &std::collections::HashMap<String, String>) -> Option<String> {
    let owner = labels.get(RESTORE_OWNER_LABEL)?;
    let mine = format!("({})", crate::runtime::hold::me());
    if owner.ends_with(&mine) || crate::runtime::hold::died_here(owner) {
        return None;
    }
    Some(owner.clone())
}

/// Whether `labels` are those of a restore of this lab.
pub fn is_restore(h: &Host, labels: &std::collections::HashMap<String, String>) -> bool {
    labels.contains_key(RESTORE_LABEL)
        && labels.get("org.pgrunbook.lab") == Some(&h.config.lab.label)
}

/// Refuses a name that is not a Docker container name.
pub fn check_container_name(h: &Host, primitive: &str, name: &str) -> R<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(h.error(
            Class::Runbook,
            format!(
                "{primitive}: {name:?} is not a container name (letters, digits, '_', '.', '-', \
                 starting with a letter or digit)"
            ),
        ))
    }
}

/// Refuses (exit 4) unless `name` is free for a new restored container: not the container of a
/// configured node, no container of that name, no volume `NAME-data`. Nothing live is ever
/// overwritten.
/// The engines a restore may have used: the default one first, then each node's (once each).
fn restore_engines(h: &Host) -> Vec<&crate::clients::docker::Docker> {
    let mut v: Vec<&crate::clients::docker::Docker> = vec![&h.docker];
    for name in h.config.nodes.keys() {
        let d = h.docker_of(name);
        if !v.iter().any(|e| std::ptr::eq(*e, d)) {
            v.push(d);
        }
    }
    v
}

/// The engine that holds the restore `name` (its container, or its `-data` volume): a restore
/// runs on the engine of the node that lends its image, which across hosts is not the default
/// one. The default engine when none holds it (or when an engine cannot be asked).
pub fn restore_engine<'a>(h: &'a Host, name: &str) -> &'a crate::clients::docker::Docker {
    let vol = restored_volume(name);
    restore_engines(h)
        .into_iter()
        .find(|d| {
            matches!(d.container_labels(name), Ok(Some(_)))
                || matches!(d.volume_labels(&vol), Ok(Some(_)))
        })
        .unwrap_or(&h.docker)
}

pub fn require_free_name(h: &Host, primitive: &str, name: &str) -> R<()> {
    check_container_name(h, primitive, name)?;
    if let Some((node, _)) = h.config.node_by_container(name) {
        return Err(h.error(
            Class::Refused,
            format!(
                "{primitive}: {name} is the container of node {node}: a restore never overwrites \
                 a node of the pair; choose another name"
            ),
        ));
    }
    if restore_engines(h)
        .iter()
        .any(|d| matches!(d.inspect(name), Ok(Some(_))))
    {
        return Err(h.error(
            Class::Refused,
            format!(
                "{primitive}: a container named {name} exists already; a restore makes a new \
                 container and never overwrites one: choose another name, or remove it yourself"
            ),
        ));
    }
    let vol = restored_volume(name);
    if restore_engines(h)
        .iter()
        .any(|d| matches!(d.volume_exists(&vol), Ok(true)))
    {
        return Err(h.error(
            Class::Refused,
            format!(
                "{primitive}: a volume named {vol} exists already; a restore into {name} would \
                 write its data there: choose another name, or remove the volume yourself"
            ),
        ));
    }
    Ok(())
}

/// Read-only volume mounts (volume, path) and bind mounts (`src:dest:ro`) of a container.
pub type RoMounts = (Vec<(String, String)>, Vec<String>);

/// How a restored container sees the node's pgBackRest repository: the node's own mount at
/// `pgbackrest.repo_path` (a named volume or a bind mount), read-only. Returns (read-only
/// volumes, binds).
pub fn repo_mount_ro(h: &Host, primitive: &str, node: &str) -> R<RoMounts> {
    let container = h.container(primitive, node)?;
    let repo = h.config.pgbackrest.repo_path.clone();
    let info = h
        .docker_of(node)
        .inspect(&container)
        .map_err(|e| h.fail(primitive, node, e))?
        .ok_or_else(|| {
            h.error(
                Class::Infrastructure,
                format!("{primitive}: container '{container}' of node {node} does not exist"),
            )
        })?;
    for m in info.mounts.unwrap_or_default() {
        if m.destination.as_deref() != Some(repo.as_str()) {
            continue;
        }
        match (m.typ.map(|t| t.to_string()).as_deref(), m.name, m.source) {
            (Some("volume"), Some(n), _) => return Ok((vec![(n, repo)], vec![])),
            (Some("bind"), _, Some(src)) => return Ok((vec![], vec![format!("{src}:{repo}:ro")])),
            _ => {}
        }
    }
    Err(h.error(
        Class::Refused,
        format!(
            "{primitive}: container {container} of node {node} mounts nothing at {repo} (the \
             repository, pgbackrest.repo_path): a restore reads the repository from the same \
             volume"
        ),
    ))
}

/// The image of a node's container.
pub fn image_of(h: &Host, primitive: &str, node: &str) -> R<String> {
    let container = h.container(primitive, node)?;
    h.docker_of(node)
        .oneoff_like(&container, "unused")
        .map(|s| s.image)
        .map_err(|e| h.fail(primitive, node, e))
}

/// Runs one query with psql in a restored container, through its Unix socket (as the cluster's
/// superuser, on the application database), and returns its rows as JSON (typed: numbers,
/// booleans, null). The query is wrapped as `SELECT json_agg(q) FROM (query) q`, so it must be a
/// query that returns rows (SELECT, VALUES, TABLE). An error is PostgreSQL's, as psql prints it.
pub fn psql_rows(
    h: &Host,
    primitive: &str,
    container: &str,
    query: &str,
) -> R<std::result::Result<serde_json::Value, String>> {
    let q = query.trim().trim_end_matches(';');
    let wrapped = format!("SELECT coalesce(json_agg(q), '[]') FROM ({q}\n) q");
    let argv = vec![
        "psql".to_string(),
        "-X".into(),
        "-q".into(),
        "-A".into(),
        "-t".into(),
        "-v".into(),
        "ON_ERROR_STOP=1".into(),
        "-h".into(),
        RESTORED_SOCKET_DIR.into(),
        "-p".into(),
        "5432".into(),
        "-U".into(),
        h.config.cluster.superuser.clone(),
        "-d".into(),
        h.config.cluster.database.clone(),
        "-c".into(),
        wrapped,
    ];
    let env = vec![format!("PGPASSWORD={}", h.config.cluster.password)];
    let out = restore_engine(h, container)
        .exec(
            container,
            &argv,
            Some("postgres"),
            &env,
            &h.cancel,
            &mut |_| {},
        )
        .map_err(|e| h.fail(primitive, "", e))?;
    if out.exit_code != 0 {
        return Ok(Err(h.scrub(out.stderr.trim())));
    }
    serde_json::from_str(out.stdout.trim())
        .map(Ok)
        .map_err(|e| {
            h.error(
                Class::Runbook,
                format!(
                    "{primitive} in {container}: unexpected psql output ({e}): {}",
                    out.stdout.trim()
                ),
            )
        })
}

/// Where a restored server listens: its Unix socket directory (the port is always 5432 inside).
pub const RESTORED_SOCKET_DIR: &str = "/tmp";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
    }
}
