//! How a server ended: the final checkpoint of a node that was shut down, from its own log (fast:
//! one call to the engine) or from its control file (`pg_controldata`, authoritative). What
//! `switchover` compares with the point where the new primary's timeline begins, to know that
//! every acknowledged commit reached it and that the old primary can follow it without a rewind.

use super::R;
use crate::error::Class;
use crate::primitives::logs::{parse, split_docker_time, LogEntry};
use crate::primitives::{def, node};
use crate::runtime::host::Host;
use rhai::{Dynamic, Map, Module};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `pg_controldata` says: (cluster state, latest checkpoint location, its timeline).
fn parse_controldata(text: &str) -> Option<(String, String, Option<i64>)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let state = field("Database cluster state:")?;
    let lsn = field("Latest checkpoint location:")?;
    let tli = field("Latest checkpoint's TimeLineID:").and_then(|v| v.parse().ok());
    Some((state, lsn, tli))
}

/// The LSN of the last shutdown checkpoint in `entries`, once it is complete: "checkpoint
/// starting: shutdown ...", then "checkpoint complete: ... lsn=X/Y, redo lsn=...". A shutdown
/// checkpoint is the last record a server writes, so its LSN is final as soon as it is logged
/// (before the walsenders' last send and the postmaster's exit). PostgreSQL 17 writes the LSN in
/// that message (with log_checkpoints, on by default); older servers do not, and then this is
/// None.
fn shutdown_checkpoint_in_log(entries: &[LogEntry]) -> Option<String> {
    let start = entries
        .iter()
        .rposition(|e| e.message.starts_with("checkpoint starting: shutdown"))?;
    let complete = start
        + entries[start..]
            .iter()
            .position(|e| e.message.starts_with("checkpoint complete:"))?;
    let msg = &entries[complete].message;
    let rest = &msg[msg.find("; lsn=").map(|i| i + 6).or_else(|| {
        msg.find(" lsn=")
            .filter(|i| !msg[..*i].ends_with("redo"))
            .map(|i| i + 5)
    })?..];
    let lsn: String = rest
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || *c == '/')
        .collect();
    lsn.contains('/').then_some(lsn)
}

fn result(lsn: &str, state: &str, timeline: Option<i64>, source: &str) -> Map {
    let mut m = Map::new();
    m.insert("lsn".into(), lsn.to_string().into());
    m.insert("state".into(), state.to_string().into());
    m.insert("clean".into(), (state == "shut down").into());
    m.insert(
        "timeline".into(),
        timeline.map(Dynamic::from_int).unwrap_or(Dynamic::UNIT),
    );
    m.insert("source".into(), source.to_string().into());
    m
}

pub fn register(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    def!(
        m,
        "final_checkpoint",
        ["node: &str", "since_ms: i64", "Map"],
        "The last checkpoint of `node`'s server: #{lsn, state, clean, timeline, source}. `clean`
        is true when the server was shut down cleanly as a primary (state \"shut down\"): then
        `lsn` is its shutdown checkpoint, the last record of its WAL. With `since_ms` (now_ms()
        when the shutdown was asked for) it waits, up to 30 s, for the server's own log to show
        its shutdown checkpoint complete, and reads the checkpoint's LSN there (PostgreSQL 17 logs it; one
        call to the engine, no container): source \"log\", timeline (). Otherwise, or when the
        log does not say, it reads the control file with pg_controldata (in the container, or a
        one-off container when it is stopped: slower): source \"pg_controldata\". With
        `since_ms` 0, only pg_controldata. A read: it runs in a dry run too.",
        move |node: &str, since_ms: i64| -> R<Map> {
            let container = h.container("final_checkpoint", node)?;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if since_ms > 0 {
                    let lines = h
                        .docker_of(node)
                        .logs(&container, Some(since_ms / 1000), None, &h.cancel)
                        .map_err(|e| h.fail("final_checkpoint", node, e))?;
                    let entries = parse(lines.iter().map(|l| split_docker_time(l)));
                    if let Some(lsn) = shutdown_checkpoint_in_log(&entries) {
                        return Ok(result(&lsn, "shut down", None, "log"));
                    }
                }
                let running = h
                    .docker_of(node)
                    .state(&container)
                    .map_err(|e| h.fail("final_checkpoint", node, e))?
                    .is_running();
                if !running || since_ms <= 0 || Instant::now() >= deadline {
                    break;
                }
                h.check_cancel()?;
                std::thread::sleep(Duration::from_millis(20));
            }
            let out = node::run_on_data_dir(
                &h,
                "final_checkpoint",
                node,
                "LC_ALL=C pg_controldata \"$PGDATA\"",
            )?;
            match parse_controldata(&out.stdout) {
                Some((state, lsn, tli)) if out.exit_code == 0 => {
                    Ok(result(&lsn, &state, tli, "pg_controldata"))
                }
                _ => Err(h.error(
                    Class::Refused,
                    format!(
                        "final_checkpoint on {node}: pg_controldata failed (exit {}): {}",
                        out.exit_code,
                        out.stderr.trim()
                    ),
                )),
            }
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &str) -> Vec<LogEntry> {
        parse(text.lines().map(|l| (None, l)))
    }

    #[test]
    fn the_shutdown_checkpoint_is_read_from_the_log() {
        let log = "2026-11-26 16:20:19.083 UTC [1] LOG:  received fast shutdown request\n\
            2026-11-26 16:20:19.123 UTC [40] LOG:  shutting down\n\
            2026-11-26 16:20:19.133 UTC [40] LOG:  checkpoint starting: shutdown immediate\n\
            2026-11-26 16:20:19.209 UTC [40] LOG:  checkpoint complete: wrote 0 buffers (0.0%); 0 WAL file(s) added, 0 removed, 0 recycled; write=0.001 s, sync=0.001 s, total=0.076 s; sync files=0, longest=0.000 s, average=0.000 s; distance=16384 kB, estimate=16384 kB; lsn=0/3000028, redo lsn=0/3000028\n\
            2026-11-26 16:20:19.327 UTC [1] LOG:  database system is shut down\n";
        assert_eq!(
            shutdown_checkpoint_in_log(&entries(log)).as_deref(),
            Some("0/3000028")
        );
        // Not finished yet: no answer from the log.
        let unfinished: String = log.lines().take(3).map(|l| format!("{l}\n")).collect();
        assert_eq!(shutdown_checkpoint_in_log(&entries(&unfinished)), None);
        // A spread checkpoint, not a shutdown's: no answer.
        let other = "2026-11-26 16:20:19.133 UTC [40] LOG:  checkpoint starting: time\n\
            2026-11-26 16:20:19.209 UTC [40] LOG:  checkpoint complete: wrote 0 buffers; lsn=0/5000028, redo lsn=0/5000028\n\
            2026-11-26 16:20:19.327 UTC [1] LOG:  database system is shut down\n";
        assert_eq!(shutdown_checkpoint_in_log(&entries(other)), None);
    }

    #[test]
    fn controldata_fields() {
        let text = "pg_control version number:            1700\n\
            Database cluster state:               shut down\n\
            Latest checkpoint location:           0/3000028\n\
            Latest checkpoint's REDO location:    0/3000028\n\
            Latest checkpoint's TimeLineID:       2\n";
        assert_eq!(
            parse_controldata(text),
            Some(("shut down".into(), "0/3000028".into(), Some(2)))
        );
        assert_eq!(parse_controldata("garbage"), None);
    }
}
