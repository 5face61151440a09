//! Cloning a standby from the primary: `rewind` (pg_rewind, only what changed) and
//! `basebackup` (pg_basebackup, everything), each in a one-off container on the target's data.

use super::slots::check_slot_name;
use super::sql::pg_rows;
use super::R;
use crate::clients::docker::{ContainerSpec, ExecOutput};
use crate::clients::postgres::quote_literal;
use crate::error::Class;
use crate::primitives::{def, node};
use crate::runtime::host::Host;
use crate::runtime::progress::Progress;
use rhai::{Dynamic, Map, Module};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Quotes a libpq connection-string value: in single quotes, `\\` and `'` escaped.
pub fn conninfo_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The `primary_conninfo` and `primary_slot_name` lines of a standby's postgresql.auto.conf that
/// point it at the container `source_container` (its server on `port` inside the network), as
/// the replication role with the password this run uses, reading `slot`. Quoted for libpq, then
/// for the configuration file. It holds the password: it reaches a container only through the
/// environment (`PGRUNBOOK_STANDBY_SETTINGS`, written by `WRITE_STANDBY_SETTINGS`), never a
/// command line or an SQL statement (which a server may log).
/// Where the other nodes' PostgreSQL reaches `node`'s: `replication_address` when set; across
/// engines the node's `host`/`port`; else, on one engine (one Docker network), its container's
/// name and the port its server says it listens on, as always.
pub fn reach(h: &Host, primitive: &str, node: &str) -> R<(String, i64)> {
    let container = h.container(primitive, node)?;
    let own = h
        .config
        .nodes
        .get(node)
        .is_some_and(|n| !n.replication_address.is_empty());
    if own || h.config.multi_engine() {
        if let Some((addr, port)) = h.config.replication_endpoint(node) {
            return Ok((addr, i64::from(port)));
        }
    }
    let port = node::server_facts(h, primitive, node)?.port;
    Ok((container, port))
}

pub fn standby_settings(
    h: &Host,
    source_container: &str,
    port: i64,
    target: &str,
    slot: &str,
) -> String {
    let conninfo = format!(
        "host={} port={port} user={} password={} application_name={}",
        conninfo_quote(source_container),
        conninfo_quote(&h.config.cluster.replication_user),
        conninfo_quote(&h.replication_password()),
        conninfo_quote(target),
    );
    format!(
        "primary_conninfo = {}\nprimary_slot_name = {}\n",
        quote_literal(&conninfo),
        quote_literal(slot)
    )
}

/// Shell lines that replace `primary_conninfo` and `primary_slot_name` in
/// `$PGDATA/postgresql.auto.conf` with `$PGRUNBOOK_QUIET` (a `QUIET_RELOAD` line, or nothing)
/// followed by `$PGRUNBOOK_STANDBY_SETTINGS` (from `standby_settings`), leaving the file mode
/// 0600. A `QUIET_RELOAD` line left by an earlier run goes too. `sed -i` writes a new file and
/// renames it over the old one, so a server reading the file sees the old or the new one, never
/// half of it.
pub const WRITE_STANDBY_SETTINGS: &str = "touch \"$PGDATA/postgresql.auto.conf\"\n\
    sed -i -e '/^primary_conninfo/d' -e '/^primary_slot_name/d' -e '/# pgrunbook: quiet reload$/d' \"$PGDATA/postgresql.auto.conf\"\n\
    printf '%s%s' \"$PGRUNBOOK_QUIET\" \"$PGRUNBOOK_STANDBY_SETTINGS\" >> \"$PGDATA/postgresql.auto.conf\"\n\
    chmod 600 \"$PGDATA/postgresql.auto.conf\"\n";

/// A line that keeps the postmaster from logging the reload that applies a new
/// `primary_conninfo`: on SIGHUP it logs every changed parameter with its value at level LOG
/// ("parameter \"primary_conninfo\" changed to \"... password=...\""), whatever the parameter.
/// Read before the settings that follow it, it raises the log level to FATAL for that reload;
/// `set_primary_conninfo` removes it (a second reload) as soon as the first one is applied.
pub const QUIET_RELOAD: &str = "log_min_messages = 'fatal' # pgrunbook: quiet reload\n";

/// One clone of `target` from `source` by a tool (pg_rewind, pg_basebackup) in a one-off
/// container with the target's image, volumes and network: what `rewind` and `basebackup`
/// share. In order: `new` checks the arguments and inspects the target (a dry run too), `plan`
/// says what will change (and stops a dry run there), `stop_target` stops the target, `run`
/// runs the tool's script with a progress line, `finish` starts the target again.
struct CloneJob<'a> {
    h: &'a Host,
    /// `rewind` or `basebackup`: in every message, and the one-off container's name.
    primitive: &'static str,
    source: &'a str,
    target: &'a str,
    /// The target's container.
    dst: String,
    /// The one-off container, like the target's.
    spec: ContainerSpec,
    /// When the target was stopped: the clone's duration counts from there.
    started: Instant,
}

impl<'a> CloneJob<'a> {
    fn new(
        h: &'a Host,
        primitive: &'static str,
        source: &'a str,
        target: &'a str,
        slot: &str,
    ) -> R<CloneJob<'a>> {
        h.container(primitive, source)?;
        let dst = h.container(primitive, target)?;
        check_slot_name(slot).map_err(|e| h.error(Class::Runbook, format!("{primitive}: {e}")))?;
        if source == target {
            return Err(h.error(
                Class::Runbook,
                format!("{primitive}: source and target are the same node"),
            ));
        }
        let spec = h
            .docker_of(target)
            .oneoff_like(&dst, &format!("{dst}-{primitive}"))
            .map_err(|e| h.fail(primitive, target, e))?;
        Ok(CloneJob {
            h,
            primitive,
            source,
            target,
            dst,
            spec,
            started: Instant::now(),
        })
    }

    /// Announces the change; false in a dry run, where nothing more may happen.
    fn plan(&self, what: &str) -> bool {
        self.h.change(self.target, what)
    }

    /// Stops the target cleanly; returns where the target reaches the source (`reach`).
    fn stop_target(&mut self) -> R<(String, i64)> {
        self.started = Instant::now();
        let port = reach(self.h, self.primitive, self.source)?;
        node::clean_stop(self.h, self.primitive, self.target, 60)?;
        Ok(port)
    }

    /// Runs `script` with `sh -c` in the one-off container, `env` its environment, showing its
    /// output as the progress of `tool`.
    fn run(&self, tool: &str, script: String, env: Vec<String>) -> R<ExecOutput> {
        let h = self.h;
        let mut spec = self.spec.clone();
        spec.entrypoint = Some(vec!["/bin/sh".into(), "-c".into()]);
        spec.cmd = Some(vec![script]);
        spec.env = env;
        let mut progress =
            Progress::new(&format!("{tool} {} -> {}", self.source, self.target), h.tty);
        let out = h
            .docker_of(self.target)
            .run_oneoff(&spec, &h.cancel, &mut |l| progress.line(l));
        progress.finish();
        out.map_err(|e| h.fail(self.primitive, self.target, e))
    }

    /// Starts the target; returns #{duration_ms} since it was stopped.
    fn finish(&self) -> R<Map> {
        self.h
            .docker_of(self.target)
            .start(&self.dst)
            .map_err(|e| self.h.fail(self.primitive, self.target, e))?;
        let mut m = Map::new();
        m.insert(
            "duration_ms".into(),
            Dynamic::from_int(self.started.elapsed().as_millis() as i64),
        );
        Ok(m)
    }
}

/// The last `n` lines of a tool's stderr, on one line, for the error that says it failed.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

pub fn register(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    def!(
        m,
        "rewind",
        ["source: &str", "target: &str", "slot: &str", "Map"],
        "Rejoins `target`, a former primary, as a standby of `source` with pg_rewind: stops the
        target's container, copies from the source only the blocks that changed since their
        timelines parted (needs wal_log_hints or data checksums), points the target at the source
        through `slot` (primary_conninfo with the replication role, primary_slot_name,
        standby.signal), drops the slots it had as a primary, lifts its fence, and starts it. Far faster than `basebackup` on a large
        database. Raises when pg_rewind cannot do it (the caller can fall back to `basebackup`);
        the target is then left stopped. Returns #{duration_ms, output}.",
        move |source: &str, target: &str, slot: &str| -> R<Map> {
            let mut job = CloneJob::new(&h, "rewind", source, target, slot)?;
            let dst = job.dst.clone();
            if !job.plan(&format!(
                "stop container {dst}, pg_rewind it from {source}, make it a standby reading slot {slot}, start {dst}"
            )) {
                return Ok(Map::new());
            }
            let (src_host, src_port) = job.stop_target()?;
            // A server killed (SIGKILL, or Docker's stop after a smart shutdown that never ended)
            // leaves postmaster.pid behind; pg_rewind's crash recovery then takes it for a live
            // server (in a one-off container its PID, often 1, is always alive). It is stale
            // when the container is stopped and no other running container mounts the data.
            let c = &h.config.cluster;
            let volume = h
                .docker_of(target)
                .volume_at(&dst, &c.data_dir)
                .map_err(|e| h.fail("rewind", target, e))?;
            let others = match &volume {
                Some(v) => h
                    .docker_of(target)
                    .running_users_of_volume(v, &dst)
                    .map_err(|e| h.fail("rewind", target, e))?,
                None => vec![],
            };
            if !others.is_empty() {
                return Err(h.error(Class::Refused, format!(
                    "rewind on {target}: its data volume {} is mounted by running container(s) {}: pg_rewind needs the data directory to itself; nothing was changed",
                    volume.unwrap_or_default(), others.join(", "))));
            }
            let settings = standby_settings(&h, &src_host, src_port, target, slot);
            let script = format!(
                "set -e\n\
                 if [ -f \"$PGDATA/postmaster.pid\" ]; then\n\
                   echo \"pgrunbook: removed stale postmaster.pid (PID $(head -n 1 \"$PGDATA/postmaster.pid\"))\"\n\
                   rm -f \"$PGDATA/postmaster.pid\"\n\
                 fi\n\
                 # pg_rewind finishes an unclean shutdown in single-user mode, which refuses\n\
                 # standby mode: standby.signal (a fence, say) is set aside and put back on failure.\n\
                 signal=\n\
                 if [ -f \"$PGDATA/standby.signal\" ]; then signal=1; rm -f \"$PGDATA/standby.signal\"; fi\n\
                 if ! pg_rewind --target-pgdata=\"$PGDATA\" --source-server=\"host={host} port={src_port} user={user} dbname=postgres\" --progress; then\n\
                   if [ -n \"$signal\" ]; then touch \"$PGDATA/standby.signal\"; fi\n\
                   exit 1\n\
                 fi\n\
                 {write_settings}\
                 touch \"$PGDATA/standby.signal\"\n\
                 rm -f \"$PGDATA/pgrunbook.fenced\"\n\
                 rm -rf \"$PGDATA\"/pg_replslot/*\n",
                host = src_host,
                user = c.superuser,
                write_settings = WRITE_STANDBY_SETTINGS,
            );
            let out = job.run(
                "pg_rewind",
                script,
                vec![
                    format!("PGDATA={}", c.data_dir),
                    format!("PGPASSWORD={}", c.password),
                    format!("PGRUNBOOK_STANDBY_SETTINGS={settings}"),
                ],
            )?;
            let stale = out
                .stdout
                .lines()
                .find_map(|l| l.strip_prefix("pgrunbook: removed stale postmaster.pid"))
                .map(|rest| format!("removed stale postmaster.pid{rest}"));
            if let Some(line) = &stale {
                h.say(&format!("    {line}"));
                h.record("stale_pid_removed", line.clone());
            }
            if out.exit_code != 0 {
                return Err(h.error(
                    Class::Refused,
                    format!(
                        "rewind on {target}: pg_rewind from {source} exited {}; {dst} is left stopped: {}",
                        out.exit_code,
                        tail(&out.stderr, 4)
                    ),
                ));
            }
            let mut m = job.finish()?;
            if let Some(line) = stale {
                m.insert("stale_pid_removed".into(), line.into());
            }
            m.insert("output".into(), out.stderr.trim().to_string().into());
            Ok(m)
        }
    );

    let h = host.clone();
    def!(
        m,
        "basebackup",
        ["source: &str", "target: &str", "slot: &str", "Map"],
        "Clones `target` from `source`: stops the target's container, empties its data directory,
        runs `pg_basebackup -X stream -R -S slot --checkpoint=fast` in a one-off container with
        the target's image, volumes and network, then starts the target, which comes up as a
        standby of `source`. The slot must exist on the source. Returns #{duration_ms}.",
        move |source: &str, target: &str, slot: &str| -> R<Map> {
            let mut job = CloneJob::new(&h, "basebackup", source, target, slot)?;
            let dst = job.dst.clone();
            let data = h.config.cluster.data_dir.clone();
            if !job.plan(&format!(
                "stop container {dst}, empty {data}, clone it from {source} with pg_basebackup -X stream -R -S {slot}, start {dst}"
            )) {
                return Ok(Map::new());
            }
            let (src_host, src_port) = job.stop_target()?;
            // A base backup left running by an interrupted run would hold the slot: remove its
            // container, then wait for the source to see the slot free.
            h.docker_of(target)
                .remove(&job.spec.name)
                .map_err(|e| h.fail("basebackup", target, e))?;
            let end = Instant::now() + Duration::from_secs(30);
            loop {
                let active = pg_rows(
                    &h,
                    "basebackup",
                    source,
                    "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND active",
                    &[slot.into()],
                )?;
                if active.first_value().and_then(|v| v.as_int()).unwrap_or(0) == 0 {
                    break;
                }
                if Instant::now() >= end {
                    return Err(h.error(Class::Refused, format!(
                        "basebackup on {target}: slot {slot} on {source} is still in use by another standby after 30 s")));
                }
                h.check_cancel()?;
                std::thread::sleep(Duration::from_millis(100));
            }
            let script = format!(
                "set -e\nfind {d} -mindepth 1 -delete\n\
                 pg_basebackup -h {host} -p {src_port} -U {user} -D {d} -X stream -R -S {slot} --checkpoint=fast -P\n",
                d = node::sh_quote(&data),
                host = node::sh_quote(&src_host),
                user = node::sh_quote(&h.config.cluster.replication_user),
                slot = node::sh_quote(slot),
            );
            let env = vec![format!("PGPASSWORD={}", h.replication_password())];
            let out = job.run("pg_basebackup", script, env)?;
            if out.exit_code != 0 {
                return Err(h.error(Class::Refused, format!(
                    "basebackup on {target}: pg_basebackup from {source} exited {}; {dst} is left stopped with an \
                     incomplete data directory (run the procedure again): {}",
                    out.exit_code, tail(&out.stderr, 5))));
            }
            job.finish()
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_values_are_quoted() {
        assert_eq!(conninfo_quote("pg-bases2"), "'pg-bases2'");
        assert_eq!(conninfo_quote("it's"), "'it\\'s'");
        assert_eq!(conninfo_quote("a\\b c"), "'a\\\\b c'");
    }

    #[test]
    fn tails_of_tool_output() {
        assert_eq!(tail("a\nb\nc\nd\ne\nf", 4), "c | d | e | f");
        assert_eq!(tail("only", 5), "only");
        assert_eq!(tail("", 5), "");
    }
}
