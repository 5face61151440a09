//! pgBackRest primitives: run pgBackRest in a node's container against the repository both
//! nodes share.

use super::def;
use super::node::{self, server_facts, ServerFacts};
use crate::error::Class;
use crate::runtime::host::Host;
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
    let mut progress =
        crate::runtime::progress::Progress::new(&format!("pgbackrest {command}"), h.tty);
    let out = h.docker_of(node).exec(
        &container,
        &argv,
        Some("postgres"),
        &[],
        &h.cancel,
        &mut |l| progress.line(l),
    );
    progress.finish();
    let out = out.map_err(|e| h.fail("pgbackrest", node, e))?;
    if missing_program(&out) {
        return Err(not_installed(h, node, &container));
    }
    let mut m = Map::new();
    m.insert("exit_code".into(), Dynamic::from_int(out.exit_code));
    m.insert("stdout".into(), out.stdout.into());
    m.insert("stderr".into(), out.stderr.into());
    Ok(m)
}

/// The file pgBackRest reads first. Debian's package ships only the older
/// `/etc/pgbackrest.conf`, which pgBackRest reads only when this one does not exist; writing here
/// makes ours the one it reads, and leaves the package's file alone.
pub const CONFIG_FILE: &str = "/etc/pgbackrest/pgbackrest.conf";

/// The configuration file the host writes on a node: nobody edits heredocs by hand (the seed's
/// was split in two and could not run as printed). The port, socket directory and data directory
/// are the node's own (`server_facts`), not constants: a user's container may differ.
pub fn config_text(h: &Host, facts: &ServerFacts) -> String {
    let c = &h.config;
    format!(
        "# Written by pgrunbook (pgbackrest_configure); changes here are overwritten.\n\
         [global]\n\
         repo1-path={repo}\n\
         repo1-retention-full={ret}\n\
         start-fast=y\n\
         compress-type={ctype}\n\
         compress-level={clevel}\n\
         process-max={pmax}\n\
         delta=y\n\
         log-level-console=info\n\
         log-level-file=info\n\
         \n\
         # archive_command runs this for every WAL segment, and its console is the server's\n\
         # log: only warnings there (the log file above keeps info).\n\
         [global:archive-push]\n\
         log-level-console=warn\n\
         \n\
         [{stanza}]\n\
         pg1-path={data}\n\
         pg1-port={port}\n\
         pg1-user={user}\n\
         pg1-socket-path={socket}\n",
        repo = c.pgbackrest.repo_path,
        ret = c.pgbackrest.retention_full,
        ctype = c.pgbackrest.compress_type,
        clevel = c.pgbackrest.compress_level,
        // @PROCESS_MAX@ becomes the container's CPU count plus one where the file is written.
        pmax = match c.pgbackrest.process_max {
            0 => "@PROCESS_MAX@".to_string(),
            n => n.to_string(),
        },
        stanza = c.pgbackrest.stanza,
        data = facts.data_dir,
        port = facts.port,
        socket = facts.socket_dir,
        user = c.cluster.superuser,
    )
}

/// The error for a node whose container has no pgBackRest: which node, and what to do.
fn not_installed(h: &Host, node: &str, container: &str) -> Box<EvalAltResult> {
    h.error(
        Class::Refused,
        format!(
            "pgBackRest is not installed in container {container} of node {node}: install it in \
             the image (Debian/Ubuntu: `apt-get install -y pgbackrest`; in a Dockerfile \
             `RUN apt-get update && apt-get install -y pgbackrest`), on every node, since either \
             may become the primary. Nothing was changed."
        ),
    )
}

/// Whether an exec failed because the program is not in the container.
fn missing_program(out: &crate::clients::docker::ExecOutput) -> bool {
    (out.exit_code == 126 || out.exit_code == 127)
        && (out.stdout.contains("not found") || out.stderr.contains("not found"))
}

/// The value pgBackRest reads for an option (`pgbackrest help backup OPTION` prints
/// `current: VALUE` when a configuration file sets it).
fn current_value(help: &str) -> Option<String> {
    help.lines()
        .find_map(|l| l.strip_prefix("current: "))
        .map(|v| v.trim().to_string())
}

/// Writes the configuration as root (the directory may not exist, and `postgres` may not write
/// in /etc), readable by the server's own user and group, by no one else:
/// `/etc/pgbackrest` root:GROUP 0750, the file root:GROUP 0640. The repository directory is
/// created for the server's user when it is missing. `$1` is the text, `$2` the repository.
const WRITE_SCRIPT: &str = r#"set -e
command -v pgbackrest >/dev/null 2>&1 || { echo "pgbackrest: not found" >&2; exit 127; }
owner=$(stat -c %U "$3"); group=$(stat -c %G "$3")
install -d -o root -g "$group" -m 0750 /etc/pgbackrest
umask 027
pmax=$(( $(nproc 2>/dev/null || echo 1) + 1 ))
printf '%s' "$1" | sed "s/@PROCESS_MAX@/$pmax/" > /etc/pgbackrest/pgbackrest.conf.new
chown root:"$group" /etc/pgbackrest/pgbackrest.conf.new
chmod 0640 /etc/pgbackrest/pgbackrest.conf.new
mv -f /etc/pgbackrest/pgbackrest.conf.new /etc/pgbackrest/pgbackrest.conf
[ -d "$2" ] || install -d -o "$owner" -g "$group" -m 0750 "$2"
for d in /var/log/pgbackrest /var/spool/pgbackrest; do
  [ -d "$d" ] || install -d -o "$owner" -g "$group" -m 0750 "$d"
done
echo "$owner"
"#;

/// Prepares the restored data directory as root (a fresh volume may belong to root, or carry
/// the image's mode), then runs pgBackRest as the server's user and says how many bytes the
/// restored directory holds. The pgBackRest command line is the script's arguments. The
/// restore runs with no configuration file, so its process count comes from the environment:
/// `[pgbackrest] process_max`, or the container's CPU count plus one (as in the nodes' file).
const RESTORE_SCRIPT: &str = r#"set -e
: "${PGBACKREST_PROCESS_MAX:=$(( $(nproc 2>/dev/null || echo 1) + 1 ))}"
export PGBACKREST_PROCESS_MAX
chown postgres:postgres "$PGDATA"
chmod 0700 "$PGDATA"
if command -v setpriv >/dev/null 2>&1; then
  as_pg="setpriv --reuid=postgres --regid=postgres --init-groups"
elif command -v gosu >/dev/null 2>&1; then
  as_pg="gosu postgres"
else
  echo "neither setpriv nor gosu in the image: cannot run pgBackRest as postgres" >&2; exit 127
fi
set +e
$as_pg "$@"
rc=$?
echo "pgrunbook-restored-bytes $(du -sb "$PGDATA" | cut -f1)"
exit $rc
"#;

/// The options every pgBackRest command of a restore takes: no configuration file (the
/// repository and the stanza are given here; a restored server has no node's configuration),
/// the repository where the node's container mounts it, no log file.
fn restore_options(h: &Host) -> Vec<String> {
    let c = &h.config;
    vec![
        "--no-config".into(),
        format!("--stanza={}", c.pgbackrest.stanza),
        format!("--repo1-path={}", c.pgbackrest.repo_path),
        format!("--pg1-path={}", c.cluster.data_dir),
        "--log-level-file=off".into(),
        "--lock-path=/tmp/pgbackrest".into(),
    ]
}

/// The restore_command a restored server fetches archived WAL with (pgBackRest's archive-get,
/// with the same options as the restore, so no configuration file is needed).
fn restore_command(h: &Host) -> String {
    format!(
        "pgbackrest {} --log-level-console=off --log-level-stderr=warn archive-get %f \"%p\"",
        restore_options(h).join(" ")
    )
}

/// The process count a pgBackRest command ran with, from the options its `command begin` line
/// lists (`--process-max=N`; absent: pgBackRest's default, 1). None when no such line is there.
pub fn process_max(stdout: &str) -> Option<i64> {
    let begin = stdout.lines().find(|l| l.contains(" command begin "))?;
    Some(
        begin
            .split_whitespace()
            .find_map(|o| o.strip_prefix("--process-max="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(1),
    )
}

/// The first `ERROR:` line pgBackRest printed (its reason), else its stderr.
pub fn pgbackrest_reason(stdout: &str, stderr: &str) -> String {
    stderr
        .lines()
        .chain(stdout.lines())
        .find(|l| l.contains("ERROR:"))
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| stderr.trim().to_string())
}

use super::map_text as map_str;

/// `restore_backup`: see its doc in `create_module`.
fn restore_backup(h: &Host, node: &str, opts: &Map) -> R<Map> {
    const P: &str = "restore_backup";
    let container = map_str(opts, "container");
    let purpose = match map_str(opts, "purpose") {
        p if p.is_empty() => "restore".to_string(),
        p => p,
    };
    let set = map_str(opts, "set");
    let kind = match map_str(opts, "type") {
        t if t.is_empty() => "immediate".to_string(),
        t => t,
    };
    let target = map_str(opts, "target");
    if !["immediate", "time", "lsn", "name"].contains(&kind.as_str()) {
        return Err(h.error(
            Class::Runbook,
            format!("{P}: type must be immediate, time, lsn or name, not {kind:?}"),
        ));
    }
    if (kind == "immediate") != target.is_empty() {
        return Err(h.error(
            Class::Runbook,
            format!(
                "{P}: type {kind} {} a target",
                if kind == "immediate" {
                    "takes no"
                } else {
                    "needs"
                }
            ),
        ));
    }
    node::require_free_name(h, P, &container)?;
    let (repo_ro, repo_binds) = node::repo_mount_ro(h, P, node)?;
    let image = node::image_of(h, P, node)?;
    let volume = node::restored_volume(&container);
    let mut argv = vec!["pgbackrest".to_string()];
    argv.extend(restore_options(h));
    argv.push("--log-level-console=info".into());
    if !set.is_empty() {
        argv.push(format!("--set={set}"));
    }
    argv.push(format!("--type={kind}"));
    if !target.is_empty() {
        argv.push(format!("--target={target}"));
    }
    argv.extend([
        "--target-action=promote".to_string(),
        "--archive-mode=off".to_string(),
        format!("--recovery-option=restore_command={}", restore_command(h)),
        "restore".to_string(),
    ]);
    let mut result = Map::new();
    result.insert("container".into(), container.clone().into());
    result.insert("volume".into(), volume.clone().into());
    let what = format!(
        "create volume {volume} and restore {} into it ({}), from the repository mounted read-only, in a one-off container with no network",
        if set.is_empty() { "the backup pgBackRest picks".to_string() } else { format!("backup {set}") },
        if target.is_empty() { "to consistency, then promote".to_string() } else { format!("recovery target {kind} {target}, then promote") },
    );
    if !h.change(node, &what) {
        result.insert("exit_code".into(), Dynamic::from_int(0));
        result.insert("dry_run".into(), true.into());
        result.insert("ms".into(), Dynamic::from_int(0));
        result.insert("processes".into(), Dynamic::from_int(0));
        result.insert("size".into(), Dynamic::from_int(0));
        result.insert("error".into(), "".into());
        return Ok(result);
    }
    let labels = node::restore_labels(h, &purpose, &set);
    h.docker_of(node)
        .ensure_volume(&volume, &labels)
        .map_err(|e| h.fail(P, node, e))?;
    let spec = crate::clients::docker::ContainerSpec {
        name: format!("{container}-restore"),
        image,
        env: {
            let mut env = vec![format!("PGDATA={}", h.config.cluster.data_dir)];
            if h.config.pgbackrest.process_max > 0 {
                env.push(format!(
                    "PGBACKREST_PROCESS_MAX={}",
                    h.config.pgbackrest.process_max
                ));
            }
            env
        },
        entrypoint: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            RESTORE_SCRIPT.into(),
            "sh".into(),
        ]),
        cmd: Some(argv),
        user: Some("root".into()),
        volumes: vec![(volume.clone(), h.config.cluster.data_dir.clone())],
        volumes_ro: repo_ro,
        binds: repo_binds,
        network: Some("none".into()),
        labels,
        ..Default::default()
    };
    let t0 = std::time::Instant::now();
    let mut progress = crate::runtime::progress::Progress::new("pgbackrest restore", h.tty);
    let out = h
        .docker_of(node)
        .run_oneoff(&spec, &h.cancel, &mut |l| progress.line(l));
    progress.finish();
    let out = out.map_err(|e| h.fail(P, node, e))?;
    let ms = t0.elapsed().as_millis() as i64;
    let size = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("pgrunbook-restored-bytes "))
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0);
    let error = if out.exit_code == 0 {
        String::new()
    } else {
        h.scrub(&pgbackrest_reason(&out.stdout, &out.stderr))
    };
    result.insert("exit_code".into(), Dynamic::from_int(out.exit_code));
    result.insert("dry_run".into(), false.into());
    result.insert("ms".into(), Dynamic::from_int(ms));
    result.insert(
        "processes".into(),
        Dynamic::from_int(process_max(&out.stdout).unwrap_or(0)),
    );
    result.insert("size".into(), Dynamic::from_int(size));
    result.insert("error".into(), error.into());
    result.insert("stdout".into(), h.scrub(&out.stdout).into());
    result.insert("stderr".into(), h.scrub(&out.stderr).into());
    Ok(result)
}

pub fn create_module(host: Arc<Host>) -> Module {
    let mut m = Module::new();

    let h = host.clone();
    def!(
        &mut m,
        "create_restore_point",
        ["node: &str", "name: &str", "String"],
        "Creates a named restore point on the node (a primary): `pg_create_restore_point(name)`,
        a WAL record that `run restore --set target_name=NAME` can recover to. Returns its LSN.
        The name is sent as a parameter; PostgreSQL takes at most 63 bytes. `backup` creates one
        before every backup (`pgrunbook-before-<type>-<time>`).",
        move |node: &str, name: &str| -> R<String> {
            h.check_node("create_restore_point", node)?;
            if name.is_empty() || name.len() > 63 {
                return Err(h.error(
                    Class::Runbook,
                    format!(
                        "create_restore_point: a restore point's name has 1 to 63 bytes, not {:?}",
                        name
                    ),
                ));
            }
            if !h.change(node, &format!("create restore point {name:?}")) {
                return Ok(String::new());
            }
            let rows =
                h.pg.query(
                    node,
                    "SELECT pg_create_restore_point($1)::text AS lsn",
                    &[&name],
                    false,
                    &h.cancel,
                )
                .map_err(|e| h.fail("create_restore_point", node, e.into()))?;
            Ok(rows
                .first_value()
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string())
        }
    );

    let h = host.clone();
    def!(
        &mut m,
        "restore_backup",
        ["node: &str", "options: Map", "Map"],
        "Restores a backup of the shared repository into a NEW volume `<container>-data`, for a
        restored server `start_restored` then starts: pgBackRest's `restore` runs in a one-off
        container of the node's image with no network, the repository mounted read-only (where
        the node mounts it), no configuration file, and `[pgbackrest] process_max` processes
        (0: the container's CPU count plus one, as on the nodes). Nothing of the node changes:
        the node only lends its image and says where the repository is.
        options: #{container: NAME (required; refused when it is a node's container, or when a
        container NAME or a volume NAME-data exists), set: backup label (default: pgBackRest's
        choice, the newest that fits the target), type: `immediate` (to consistency, the
        default), `time`, `lsn` or `name`, target: the time, LSN or restore point,
        purpose: `restore-check` or `restore` (a label)}. Recovery ends with a promotion;
        archive_mode is off in the restored server, so it never archives into the repository.
        Returns #{exit_code, error (pgBackRest's ERROR line), ms, size (bytes restored),
        processes (pgBackRest's process count), container, volume, stdout, stderr}: a failed
        restore is returned, not raised, and its volume left for `remove_restored`.",
        move |node: &str, options: Map| restore_backup(&h, node, &options)
    );

    let h = host.clone();
    def!(
        &mut m,
        "pgbackrest_configure",
        ["node: &str", "bool"],
        "Writes /etc/pgbackrest/pgbackrest.conf in the node's container (the file pgBackRest reads
        first; Debian's package ships only /etc/pgbackrest.conf) from the configuration and from
        what the server says of itself (port, socket directory, data directory). Written as root,
        readable by the server's user and group only; creates /etc/pgbackrest and the repository
        directory when missing. Then checks that pgBackRest reads these values. Returns true when
        the file changed; writing the same file again changes nothing. Fails, naming the node and
        the fix, when pgBackRest is not installed there.",
        move |node: &str| -> R<bool> {
            let container = h.container("pgbackrest_configure", node)?;
            let facts = server_facts(&h, "pgbackrest_configure", node)?;
            let text = config_text(&h, &facts);
            let exec = |argv: Vec<String>, user: &str| {
                h.docker_of(node)
                    .exec(&container, &argv, Some(user), &[], &h.cancel, &mut |_| {})
                    .map_err(|e| h.fail("pgbackrest_configure", node, e))
            };
            // The process count the file would get there (as WRITE_SCRIPT computes it), on the
            // first line, then the file as it is.
            let probe = exec(
                vec![
                    "sh".into(),
                    "-c".into(),
                    "command -v pgbackrest >/dev/null 2>&1 || exit 127; \
                     echo $(( $(nproc 2>/dev/null || echo 1) + 1 )); cat \"$1\" 2>/dev/null"
                        .into(),
                    "sh".into(),
                    CONFIG_FILE.into(),
                ],
                "root",
            )?;
            if probe.exit_code == 127 {
                return Err(not_installed(&h, node, &container));
            }
            let (pmax, current) = probe.stdout.split_once('\n').unwrap_or(("", ""));
            // Compared as it would be written: comparing the template (with @PROCESS_MAX@)
            // found every file different and rewrote it, with its checks, on every run.
            if current == text.replace("@PROCESS_MAX@", pmax.trim()) {
                return Ok(false);
            }
            if !h.change(
                node,
                &format!(
                    "write {CONFIG_FILE} (stanza {}, pg1-path {}, pg1-port {})",
                    h.config.pgbackrest.stanza, facts.data_dir, facts.port
                ),
            ) {
                return Ok(true);
            }
            let out = exec(
                vec![
                    "sh".into(),
                    "-c".into(),
                    WRITE_SCRIPT.into(),
                    "sh".into(),
                    text,
                    h.config.pgbackrest.repo_path.clone(),
                    facts.data_dir.clone(),
                ],
                "root",
            )?;
            if out.exit_code == 127 {
                return Err(not_installed(&h, node, &container));
            }
            if out.exit_code != 0 {
                return Err(h.error(
                    Class::Refused,
                    format!(
                        "pgbackrest_configure on {node}: cannot write {CONFIG_FILE}: {}",
                        out.stderr.trim()
                    ),
                ));
            }
            // What pgBackRest itself reads, as the server's user: the file we wrote must be the
            // one in force (another file, or an environment variable PGBACKREST_*, could win).
            let owner = out.stdout.trim().to_string();
            let owner = if owner.is_empty() {
                "postgres".to_string()
            } else {
                owner
            };
            let stanza = format!("--stanza={}", h.config.pgbackrest.stanza);
            for (option, want) in [
                ("pg1-path", facts.data_dir.clone()),
                ("pg1-port", facts.port.to_string()),
                ("pg1-socket-path", facts.socket_dir.clone()),
                ("repo1-path", h.config.pgbackrest.repo_path.clone()),
                ("compress-type", h.config.pgbackrest.compress_type.clone()),
            ] {
                let help = exec(
                    vec![
                        "pgbackrest".into(),
                        stanza.clone(),
                        "help".into(),
                        "backup".into(),
                        option.into(),
                    ],
                    &owner,
                )?;
                let got = current_value(&help.stdout);
                if got.as_deref() != Some(want.as_str()) {
                    return Err(h.error(
                        Class::Refused,
                        format!(
                            "pgbackrest_configure on {node}: wrote {CONFIG_FILE}, but pgBackRest \
                             (as {owner}) reads {option} = {} where {want} was written: another \
                             configuration file or a PGBACKREST_* variable overrides it",
                            got.unwrap_or_else(|| "(not set)".into())
                        ),
                    ));
                }
            }
            Ok(true)
        }
    );

    let h = host.clone();
    def!(
        &mut m,
        "require_pgbackrest",
        ["node: &str"],
        "Refuses (exit code 4), naming the node, its container and the fix, when pgBackRest is not
        installed in the node's image. Works on a stopped or never started container too (through
        a one-off container of its image), so a runbook can check every node before it changes
        anything.",
        move |node: &str| -> R<()> {
            let container = h.container("require_pgbackrest", node)?;
            let out = node::run_on_data_dir(
                &h,
                "require_pgbackrest",
                node,
                "command -v pgbackrest >/dev/null 2>&1 || exit 127",
            )?;
            match out.exit_code {
                0 => Ok(()),
                127 => Err(not_installed(&h, node, &container)),
                code => Err(h.error(
                    Class::Refused,
                    format!(
                        "require_pgbackrest on {node}: cannot look for pgBackRest in {container} (exit {code}): {}",
                        out.stderr.trim()
                    ),
                )),
            }
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
                    Class::Refused,
                    format!("pgbackrest_info on {node}: exit {code}: {}", err.trim()),
                ));
            }
            let v: serde_json::Value = serde_json::from_str(&stdout).map_err(|e| {
                h.error(
                    Class::Runbook,
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
                        Class::Runbook,
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

#[cfg(test)]
mod tests {
    use super::process_max;

    #[test]
    fn the_process_count_comes_from_the_command_begin_line() {
        let begin =
            "2026-11-26 22:30:03.414 P00   INFO: restore command begin 2.55.1: --no-config \
                     --process-max=3 --stanza=bases2-db\nP00 INFO: restore size = 1GB";
        assert_eq!(process_max(begin), Some(3));
        let default = "P00   INFO: restore command begin 2.55.1: --no-config --stanza=s";
        assert_eq!(process_max(default), Some(1));
        assert_eq!(process_max("ERROR: [055]: unable to load info file"), None);
    }
}
