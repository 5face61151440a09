//! The WAL a crashed primary wrote that its standby never received (`unshipped_wal`), read with
//! `pg_waldump` from the node's own data directory.

use super::R;
use crate::clients::postgres::PgLsn;
use crate::error::Class;
use crate::primitives::{def, node};
use crate::runtime::host::Host;
use rhai::{Dynamic, Map, Module};
use std::sync::Arc;

/// What a primary wrote after its standby's last received byte, read from `pg_waldump` output.
#[derive(Debug, Clone, PartialEq)]
pub struct Unshipped {
    /// Bytes of WAL from `received` to the end of the last record.
    pub bytes: u64,
    /// Commit records among the records that end after `received`.
    pub commits: i64,
    /// Where the last record ends (`received` when none ends after it).
    pub end: PgLsn,
    /// The timeline the script printed (`timeline N`, from pg_controldata), 0 when unknown.
    pub timeline: i64,
}

/// One record line of `pg_waldump`: where the record starts and its total length.
///
/// `rmgr: Transaction len (rec/tot):     34/    34, tx:        750, lsn: 0/03000158, prev 0/03000060, desc: COMMIT ...`
fn waldump_record(line: &str) -> Option<(PgLsn, u64)> {
    let tot = line
        .split("len (rec/tot):")
        .nth(1)?
        .split(',')
        .next()?
        .split('/')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    let lsn = line
        .split(" lsn: ")
        .nth(1)?
        .split(',')
        .next()?
        .trim()
        .parse()
        .ok()?;
    Some((lsn, tot))
}

/// Reads the output of the `unshipped_wal` script: a `timeline N` line, then `pg_waldump` from
/// `start` (the standby's replay position). Records that start before `start` are skipped; of
/// the others, those that end after `received` were never shipped.
pub fn unshipped(output: &str, start: PgLsn, received: PgLsn) -> Unshipped {
    let recv = u64::from(received);
    let mut end = recv;
    let mut commits = 0;
    let mut timeline = 0;
    for line in output.lines() {
        if let Some(t) = line.strip_prefix("timeline ") {
            timeline = t.trim().parse().unwrap_or(0);
            continue;
        }
        let Some((lsn, tot)) = waldump_record(line) else {
            continue;
        };
        if lsn < start {
            continue;
        }
        let record_end = u64::from(lsn) + tot;
        if record_end > recv {
            end = end.max(record_end);
            if line.contains("desc: COMMIT") {
                commits += 1;
            }
        }
    }
    Unshipped {
        bytes: end - recv,
        commits,
        end: PgLsn::from(end),
        timeline,
    }
}

pub fn register(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    def!(m, "unshipped_wal", ["node: &str", "replayed: &str", "received: &str", "Map"],
        "What a crashed primary `node` wrote that its standby never received: reads the node's own
        WAL (pg_waldump, in a one-off container when the node is down) from the standby's replay
        position `replayed` and counts the records that end after `received`. Returns
        #{bytes, commits, end_lsn, timeline}: the bytes of WAL and the committed transactions lost.",
        move |node: &str, replayed: &str, received: &str| -> R<Map> {
            let lsn = |text: &str| {
                text.parse::<PgLsn>().map_err(|_| {
                    h.error(Class::Runbook, format!("unshipped_wal: {text:?} is not an LSN"))
                })
            };
            let (start, recv) = (lsn(replayed)?, lsn(received)?);
            let script = format!(
                "tli=$(pg_controldata \"$PGDATA\" | sed -n \"s/^Latest checkpoint's TimeLineID: *//p\"); \
                 echo \"timeline $tli\"; \
                 pg_waldump --path=\"$PGDATA/pg_wal\" --timeline=\"$tli\" --start={start} 2>/dev/null; true");
            let out = node::run_on_data_dir(&h, "unshipped_wal", node, &script)?;
            let lost = unshipped(&out.stdout, start, recv);
            let mut m = Map::new();
            m.insert("bytes".into(), Dynamic::from_int(lost.bytes as i64));
            m.insert("commits".into(), Dynamic::from_int(lost.commits));
            m.insert("end_lsn".into(), Dynamic::from(lost.end.to_string()));
            m.insert("timeline".into(), Dynamic::from_int(lost.timeline));
            Ok(m)
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pg_waldump` (PostgreSQL 17) from 0/3000060 on a primary that was killed: an insert and
    /// its commit the standby received, then two transactions it never received, the last cut
    /// off (pg_waldump stops there with an error on stderr, which the script drops).
    const WALDUMP: &str = "timeline 1
rmgr: Heap        len (rec/tot):     54/   254, tx:        750, lsn: 0/03000060, prev 0/03000028, desc: INSERT off: 1, flags: 0x08, blkref #0: rel 1663/5/16385 blk 0 FPW
rmgr: Transaction len (rec/tot):     34/    34, tx:        750, lsn: 0/03000158, prev 0/03000060, desc: COMMIT 2025-01-10 09:14:03.512345 UTC
rmgr: Heap        len (rec/tot):     59/    59, tx:        751, lsn: 0/03000180, prev 0/03000158, desc: INSERT off: 2, flags: 0x08, blkref #0: rel 1663/5/16385 blk 0
rmgr: Transaction len (rec/tot):     34/    34, tx:        751, lsn: 0/030001C0, prev 0/03000180, desc: COMMIT 2025-01-10 09:14:03.514001 UTC
rmgr: Standby     len (rec/tot):     50/    50, tx:          0, lsn: 0/030001E8, prev 0/030001C0, desc: RUNNING_XACTS nextXid 752 latestCompletedXid 751 oldestRunningXid 752
rmgr: Heap        len (rec/tot):     59/    59, tx:        752, lsn: 0/03000220, prev 0/030001E8, desc: INSERT off: 3, flags: 0x08, blkref #0: rel 1663/5/16385 blk 0
rmgr: Transaction len (rec/tot):     34/    34, tx:        752, lsn: 0/03000260, prev 0/03000220, desc: COMMIT 2025-01-10 09:14:03.515870 UTC
";

    fn lsn(s: &str) -> PgLsn {
        s.parse().unwrap()
    }

    #[test]
    fn waldump_record_lines() {
        let mut lines = WALDUMP.lines().skip(1);
        assert_eq!(
            waldump_record(lines.next().unwrap()),
            Some((lsn("0/3000060"), 254))
        );
        assert_eq!(
            waldump_record(lines.next().unwrap()),
            Some((lsn("0/3000158"), 34))
        );
        assert_eq!(waldump_record("timeline 1"), None);
        assert_eq!(
            waldump_record("pg_waldump: error: error in WAL record at 0/3000288: invalid record length at 0/3000288: expected at least 24, got 0"),
            None
        );
        assert_eq!(waldump_record(""), None);
    }

    #[test]
    fn unshipped_counts_what_ends_after_received() {
        // The standby received up to the end of the first commit (0/3000158 + 34 = 0/300017A).
        let lost = unshipped(WALDUMP, lsn("0/3000060"), lsn("0/300017A"));
        assert_eq!(
            lost,
            Unshipped {
                // Up to the end of the last commit: 0/3000260 + 34 = 0/3000282.
                bytes: 0x3000282 - 0x300017A,
                commits: 2,
                end: lsn("0/3000282"),
                timeline: 1,
            }
        );
        assert_eq!(lost.end.to_string(), "0/3000282");

        // A standby that received everything lost nothing; its end is where it stands.
        let none = unshipped(WALDUMP, lsn("0/3000060"), lsn("0/3000282"));
        assert_eq!((none.bytes, none.commits), (0, 0));
        assert_eq!(none.end, lsn("0/3000282"));

        // A record that starts before the replay position is not counted, whatever its end.
        let late = unshipped(WALDUMP, lsn("0/3000200"), lsn("0/3000000"));
        assert_eq!(late.commits, 1);

        // No output (pg_waldump missing, no WAL): nothing lost, timeline unknown.
        let empty = unshipped("", lsn("0/3000060"), lsn("0/300017A"));
        assert_eq!((empty.bytes, empty.commits, empty.timeline), (0, 0, 0));
    }

    #[test]
    fn unshipped_reads_lsns_across_segments_and_high_words() {
        let out = "timeline 3
rmgr: Transaction len (rec/tot):     34/    34, tx:       9001, lsn: 1/FFFFFFE0, prev 1/FFFFFFA8, desc: COMMIT 2025-01-10 09:14:03.515870 UTC
";
        let lost = unshipped(out, lsn("1/FFFFFF00"), lsn("1/FFFFFFE0"));
        assert_eq!(lost.bytes, 34);
        assert_eq!(lost.end.to_string(), "2/2");
        assert_eq!(lost.timeline, 3);
    }
}
