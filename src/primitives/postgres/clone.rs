//! Cloning a standby from the primary: `rewind` (pg_rewind, only what changed) and
//! `basebackup` (pg_basebackup, everything), each in a one-off container on the target's data.

use super::slots::check_slot_name;
use super::sql::pg_rows;
use super::R;
use crate::clients::docker::{ContainerSpec, ExecOutput};
use crate::clients::postgres::quote_literal;
use crate::errln;
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

/// An LSN as PostgreSQL writes it ("0/3000060"), as a number; None when it is not one.
fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// The lines of a timeline history file (`pg_wal/0000000N.history`): (parent timeline, LSN
/// where it ended and the next began), oldest first.
fn history_switches(history: &str) -> Vec<(i64, u64)> {
    history
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let tli = parts.next()?.parse().ok()?;
            let lsn = parse_lsn(parts.next()?)?;
            Some((tli, lsn))
        })
        .collect()
}

/// What a rewound node's control file (`pg_controldata`) says about where its WAL ends:
/// (timeline, LSN), the later of its latest checkpoint and its minimum recovery point.
fn control_end(controldata: &str) -> Option<(i64, u64)> {
    let field = |name: &str| {
        controldata
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let ckpt = parse_lsn(&field("Latest checkpoint location:")?)?;
    let ckpt_tli: i64 = field("Latest checkpoint's TimeLineID:")?.parse().ok()?;
    let min = field("Minimum recovery ending location:").and_then(|v| parse_lsn(&v));
    let min_tli: Option<i64> =
        field("Min recovery ending loc's timeline:").and_then(|v| v.parse().ok());
    match (min, min_tli) {
        (Some(m), Some(t)) if m > 0 && (t > ckpt_tli || (t == ckpt_tli && m > ckpt)) => {
            Some((t, m))
        }
        _ => Some((ckpt_tli, ckpt)),
    }
}

/// Fmt an LSN as PostgreSQL does.
fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// Can a node whose WAL ends at `end` (timeline, LSN; from `control_end`) follow a primary on
/// timeline `source_tli` whose history file is `history`? It can when it is on that timeline,
/// or on one of its ancestors and has not gone past the point where that ancestor ended.
/// Err says why not, in PostgreSQL's terms.
fn can_follow(end: (i64, u64), source_tli: i64, history: &str) -> Result<(), String> {
    let (tli, lsn) = end;
    if tli == source_tli {
        return Ok(());
    }
    if tli > source_tli {
        return Err(format!(
            "it is on timeline {tli}, newer than the source's {source_tli}"
        ));
    }
    match history_switches(history).into_iter().find(|(t, _)| *t == tli) {
        None => Err(format!(
            "its timeline {tli} is not in the source's history (timeline {source_tli})"
        )),
        Some((_, fork)) if lsn > fork => Err(format!(
            "its WAL on timeline {tli} reaches {} (minimum recovery point or last checkpoint), past {} where the source's history left timeline {tli}: the timelines diverged and nothing was rewound",
            lsn_text(lsn),
            lsn_text(fork)
        )),
        Some(_) => Ok(()),
    }
}

/// The source's timeline, the timeline of its control file's latest checkpoint, and its
/// timeline history file ("" on timeline 1).
fn source_state(h: &Host, source: &str) -> R<(i64, i64, String)> {
    let rows = pg_rows(
        h,
        "rewind",
        source,
        "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) AS tli, \
                (SELECT timeline_id FROM pg_control_checkpoint())::text AS ckpt_tli, \
                coalesce(pg_read_file('pg_wal/' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) || '.history', 0, 1048576, true), '') AS history",
        &[],
    )?;
    let text = |c: &str| match rows.get(0, c) {
        Some(crate::clients::postgres::Value::Text(t)) => t.clone(),
        _ => String::new(),
    };
    let tli = i64::from_str_radix(&text("tli"), 16).unwrap_or(0);
    let ckpt_tli = text("ckpt_tli").parse().unwrap_or(0);
    Ok((tli, ckpt_tli, text("history")))
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
        database. Then it checks that the target can follow the source (its control file's
        timeline and minimum recovery point against the source's timeline history): pg_rewind
        before PostgreSQL 16 reads the source's timeline from its last checkpoint, so on a
        source promoted moments ago it says \"no rewind required\" and changes nothing. When the
        target cannot follow, it says why, runs a CHECKPOINT on the source and rewinds again
        once. Raises when pg_rewind cannot do it or the target still cannot follow (the caller
        can fall back to `basebackup`); the target is then left stopped. Returns #{duration_ms,
        output, rewinds}.",
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
                 rm -rf \"$PGDATA\"/pg_replslot/*\n\
                 echo 'pgrunbook: controldata'\n\
                 LC_ALL=C pg_controldata \"$PGDATA\"\n",
                host = src_host,
                user = c.superuser,
                write_settings = WRITE_STANDBY_SETTINGS,
            );
            let env = vec![
                format!("PGDATA={}", c.data_dir),
                format!("PGPASSWORD={}", c.password),
                format!("PGRUNBOOK_STANDBY_SETTINGS={settings}"),
            ];
            let mut out = job.run("pg_rewind", script.clone(), env.clone())?;
            // Can the target follow the source now? A rewind that did nothing is no success.
            let mut rewinds = 1;
            loop {
                if out.exit_code != 0 {
                    break;
                }
                let (tli, ckpt_tli, history) = source_state(&h, source)?;
                let control = out
                    .stdout
                    .split_once("pgrunbook: controldata\n")
                    .map(|(_, c)| c.to_string())
                    .unwrap_or_default();
                let why = match control_end(&control) {
                    None => Err("pg_controldata said nothing readable".to_string()),
                    Some(end) => can_follow(end, tli, &history),
                };
                let Err(why) = why else { break };
                let said = if out.stderr.contains("no rewind required") {
                    "pg_rewind said \"no rewind required\""
                } else {
                    "pg_rewind ended"
                };
                if rewinds >= 2 || ckpt_tli >= tli {
                    return Err(h.error(Class::Refused, format!(
                        "rewind on {target}: {said}, but {target} cannot follow {source} (timeline {tli}): {why}; {dst} is left stopped"
                    )));
                }
                errln!(
                    "warning: rewind on {target}: {said}, but {target} cannot follow {source}: {why}. {source}'s control file still says timeline {ckpt_tli} (its checkpoint after the promotion has not finished; pg_rewind before PostgreSQL 16 reads the timeline there): CHECKPOINT on {source}, then pg_rewind again"
                );
                h.record(
                    "rewind_retry",
                    format!("{target} could not follow {source}: {why}"),
                );
                pg_rows(&h, "rewind", source, "CHECKPOINT", &[])?;
                rewinds += 1;
                out = job.run("pg_rewind", script.clone(), env.clone())?;
            }
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
            m.insert("rewinds".into(), Dynamic::from_int(rewinds));
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
                "set -e\n\
                 # 18's image keeps PGDATA below its volume (/var/lib/postgresql/18/docker): on a\n\
                 # fresh volume it does not exist yet.\n\
                 mkdir -p {d}\nchmod 700 {d}\nfind {d} -mindepth 1 -delete\n\
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

    const CONTROL_NOOP: &str = "Database cluster state:               shut down in recovery\n\
        Latest checkpoint location:           0/5000060\n\
        Latest checkpoint's REDO location:    0/5000028\n\
        Latest checkpoint's TimeLineID:       1\n\
        Minimum recovery ending location:     0/6A3B2C8\n\
        Min recovery ending loc's timeline:   1\n";
    const CONTROL_REWOUND: &str = "Database cluster state:               in archive recovery\n\
        Latest checkpoint location:           0/5000060\n\
        Latest checkpoint's TimeLineID:       1\n\
        Minimum recovery ending location:     0/7000100\n\
        Min recovery ending loc's timeline:   2\n";
    const HISTORY: &str = "1\t0/6A00000\tno recovery target specified\n";

    #[test]
    fn a_standby_past_the_fork_point_cannot_follow() {
        // PostgreSQL 15's pg_rewind on a source whose control file still says timeline 1:
        // "no rewind required", and the target's minimum recovery point is past the fork.
        let end = control_end(CONTROL_NOOP).unwrap();
        assert_eq!(end, (1, 0x6A3B2C8));
        let why = can_follow(end, 2, HISTORY).unwrap_err();
        assert!(
            why.contains("0/6A3B2C8") && why.contains("0/6A00000"),
            "{why}"
        );
    }

    #[test]
    fn a_rewound_node_and_an_ancestor_before_the_fork_can_follow() {
        assert_eq!(control_end(CONTROL_REWOUND).unwrap(), (2, 0x7000100));
        assert!(can_follow(control_end(CONTROL_REWOUND).unwrap(), 2, HISTORY).is_ok());
        // A node shut down cleanly before the fork (switchover's old primary).
        assert!(can_follow((1, 0x6A00000), 2, HISTORY).is_ok());
        assert!(can_follow((3, 0x1), 2, HISTORY).is_err());
        assert!(can_follow((1, 0x1), 3, "2\t0/1\tx\n").is_err());
        assert_eq!(control_end("nothing"), None);
        assert_eq!(lsn_text(0x1_0000_00A0), "1/A0");
    }

    #[test]
    fn tails_of_tool_output() {
        assert_eq!(tail("a\nb\nc\nd\ne\nf", 4), "c | d | e | f");
        assert_eq!(tail("only", 5), "only");
        assert_eq!(tail("", 5), "");
    }
}
