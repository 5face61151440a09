//! Schedules: when a `[[schedule]]` is due, whether it is late, and what to say when a run is
//! still going at its next time.
//!
//! Cron expressions have six fields, seconds first (`sec min hour day month weekday`, as in
//! `0 0 3 * * Sun`), so that tests can use periods of a few seconds. They are parsed by the
//! `croner` crate (POSIX/Vixie semantics, names of days and months, ranges, steps, `L`, `#`),
//! with seconds required and no year field. Times are the machine's local time, like cron's.
//!
//! The rules (see docs/watch.md):
//!
//! - a schedule's *cursor* is the planned time of its last run (kept in Redis, so a watcher that
//!   comes back knows it), or the watcher's start when it never ran;
//! - when one or more planned times have passed since the cursor, the runbook runs **once**, for
//!   the newest of them; it is *late* when that time is older than `LATE_AFTER` (the watcher was
//!   down, or busy), and the journal says how many times were missed;
//! - while a run of the schedule is still going, the times that pass are skipped, not queued.

use chrono::{DateTime, TimeZone};
use croner::Cron;
use std::time::Duration;

/// A planned time this much in the past when its run starts makes the run late.
pub const LATE_AFTER: Duration = Duration::from_secs(5);

/// Most planned times counted when a schedule missed many (a per-second schedule missed for a
/// day): the journal then says "at least".
const COUNT_CAP: usize = 10_000;

/// Parsing lives with the configuration it validates (a layer below the commands).
pub use crate::config::parse_cron;

/// What a schedule should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due<Tz: TimeZone> {
    /// The planned time the run is for (the newest that has passed).
    pub planned: DateTime<Tz>,
    /// How many planned times passed since the cursor (1 when on time; `COUNT_CAP` at most).
    pub passed: usize,
    /// The planned time is more than `LATE_AFTER` ago.
    pub late: bool,
}

/// The newest planned time in `(cursor, now]`, with how many there were; `None` when none has
/// passed.
pub fn due<Tz: TimeZone>(cron: &Cron, cursor: &DateTime<Tz>, now: &DateTime<Tz>) -> Option<Due<Tz>>
where
    Tz::Offset: Copy,
{
    let newest = cron.find_previous_occurrence(now, true).ok()?;
    if newest <= *cursor {
        return None;
    }
    let passed = cron
        .iter_after(*cursor)
        .take_while(|t| t <= now)
        .take(COUNT_CAP)
        .count()
        .max(1);
    let late = (*now).signed_duration_since(newest)
        > chrono::Duration::from_std(LATE_AFTER).unwrap_or_default();
    Some(Due {
        planned: newest,
        passed,
        late,
    })
}

/// The next planned time after `t`.
pub fn next_after<Tz: TimeZone>(cron: &Cron, t: &DateTime<Tz>) -> Option<DateTime<Tz>>
where
    Tz::Offset: Copy,
{
    cron.find_next_occurrence(t, false).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn six_fields_seconds_first() {
        let c = parse_cron("0 0 3 * * Sun").unwrap();
        // 2026-03-01 is a Sunday.
        let next = next_after(&c, &at("2026-02-27T12:00:00Z")).unwrap();
        assert_eq!(next, at("2026-03-01T03:00:00Z"));
        let every5 = parse_cron("*/5 * * * * *").unwrap();
        assert_eq!(
            next_after(&every5, &at("2026-01-01T00:00:03Z")).unwrap(),
            at("2026-01-01T00:00:05Z")
        );
        assert!(parse_cron("1,31 * * * * MON-FRI").is_ok());
    }

    #[test]
    fn wrong_expressions_are_refused_with_the_reason() {
        let e = format!("{:#}", parse_cron("0 3 * * *").unwrap_err());
        assert!(
            e.contains("5 field(s)") && e.contains("seconds first"),
            "{e}"
        );
        let e = format!("{:#}", parse_cron("0 0 3 * * Sun 2027").unwrap_err());
        assert!(e.contains("7 field(s)"), "{e}");
        let e = format!("{:#}", parse_cron("0 61 * * * *").unwrap_err());
        assert!(e.contains("invalid cron"), "{e}");
        assert!(parse_cron("0 0 3 * * Funday").is_err());
    }

    #[test]
    fn due_once_for_the_newest_time_and_late_when_missed() {
        let c = parse_cron("*/10 * * * * *").unwrap();
        let cursor = at("2026-01-01T00:00:00Z");
        // Nothing passed yet.
        assert_eq!(due(&c, &cursor, &at("2026-01-01T00:00:09Z")), None);
        // On time: one time passed, run now, not late.
        let d = due(&c, &cursor, &at("2026-01-01T00:00:10.200Z")).unwrap();
        assert_eq!(d.planned, at("2026-01-01T00:00:10Z"));
        assert_eq!((d.passed, d.late), (1, false));
        // The watcher was down for a minute: one run, for the newest time, late, 6 missed.
        let d = due(&c, &cursor, &at("2026-01-01T00:01:07Z")).unwrap();
        assert_eq!(d.planned, at("2026-01-01T00:01:00Z"));
        assert_eq!((d.passed, d.late), (6, true));
        // After it ran the cursor is that time: nothing again until the next one.
        assert_eq!(due(&c, &d.planned, &at("2026-01-01T00:01:08Z")), None);
        // A daily schedule missed for three days.
        let daily = parse_cron("0 0 3 * * *").unwrap();
        let d = due(&daily, &cursor, &at("2026-01-04T04:00:00Z")).unwrap();
        assert_eq!(d.planned, at("2026-01-04T03:00:00Z"));
        assert_eq!((d.passed, d.late), (4, true));
    }
}
