//! A failover the watcher decided and has not seen end, written down before it starts: in
//! `<data dir>/watch/<hash>.failover.json` on this machine and in the hash
//! `<prefix>:watch:failover` in Redis. A watcher SIGKILLed in the middle of a failover cannot
//! say so; the next one to act (started again on this machine, or another taking the lease)
//! finds the record and gives it to the policy as `obs.interrupted`, which decides whether to
//! finish it (docs/watch.md).
//!
//! The record is removed when the failover ends, ok or refused; it stays when the failover was
//! abandoned (a second Ctrl-C) or the watcher was killed. When Redis does not answer at that
//! moment, the watcher removes it there later (`Pending::clear_redis`).

use super::lease;
use crate::clients::redis::JOURNAL;
use crate::config::Config;
use crate::coordination::Coordination;
use crate::runtime::host::Host;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The field of the hash `<prefix>:watch:failover`.
const FIELD: &str = "pending";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pending {
    /// The watcher that decided it (its id), where it ran, and when it decided.
    pub watcher: String,
    pub host: String,
    pub pid: u32,
    pub since: String,
    /// The policy's reason.
    pub trigger: String,
    /// The primary it failed over from and the standby it was to promote, as the watcher saw
    /// them.
    pub primary: Option<String>,
    pub standby: Option<String>,
}

impl Pending {
    /// Writes it down on this machine and in Redis. `Ok(None)`: both written; `Ok(Some(why))`:
    /// one of the two failed (why); `Err(why)`: neither was written, so a watcher killed from
    /// here on leaves nothing for the next one to finish. The caller says so loudly.
    pub fn save(&self, host: &Host) -> Result<Option<String>, String> {
        self.save_to(
            &lease::local_path(&host.config, "failover.json"),
            host.coord.as_ref(),
        )
    }

    fn save_to(&self, path: &Path, store: &dyn Coordination) -> Result<Option<String>, String> {
        let json = serde_json::to_string(self).map_err(|e| format!("cannot encode it: {e}"))?;
        let local = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(path, &json))
            .map_err(|e| format!("not written to {}: {e}", path.display()));
        let redis = store
            .map_set(lease::FAILOVER, FIELD, &json)
            .map_err(|e| format!("not written to Redis: {e:#}"));
        match (local, redis) {
            (Ok(()), Ok(())) => Ok(None),
            (Err(e), Ok(())) | (Ok(()), Err(e)) => Ok(Some(e)),
            (Err(a), Err(b)) => Err(format!("{a}; {b}")),
        }
    }

    /// Removes it here; returns whether Redis's copy is gone too (false: Redis did not answer).
    pub fn clear(config: &Config, host: &Host) -> bool {
        let _ = std::fs::remove_file(lease::local_path(config, "failover.json"));
        Self::clear_redis(host)
    }

    pub fn clear_redis(host: &Host) -> bool {
        host.coord.map_del(lease::FAILOVER, FIELD).is_ok()
    }

    /// The record left by a watcher that did not finish its failover: this machine's, else
    /// Redis's.
    pub fn load(host: &Host) -> Option<Pending> {
        let local = std::fs::read_to_string(lease::local_path(&host.config, "failover.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        local.or_else(|| {
            host.coord
                .map_all(lease::FAILOVER)
                .ok()
                .and_then(|h| h.get(FIELD).and_then(|t| serde_json::from_str(t).ok()))
        })
    }

    /// The run's id and the last step its failover run finished (steps are journaled as they
    /// end: the one under way when it was killed is the next): from Redis, and this machine's
    /// spool when Redis does not answer.
    pub fn last_step(&self, host: &Host) -> Option<(String, String)> {
        let (entries, _) = host.journal.last_with_spool(JOURNAL, 500);
        // Newest first: the newest failover run this watcher started.
        let run = entries.iter().find(|e| {
            e.fields.get("runbook").map(String::as_str) == Some("failover")
                && e.fields.get("event").map(String::as_str) == Some("start")
                && e.fields.get("watcher") == Some(&self.watcher)
        })?;
        let run_id = run.fields.get("run_id")?.clone();
        let step = entries
            .iter()
            .find(|e| {
                e.fields.get("run_id") == Some(&run_id)
                    && e.fields.get("event").map(String::as_str) == Some("step")
            })
            .and_then(|e| e.fields.get("step").cloned())
            .unwrap_or_else(|| "(none)".into());
        Some((run_id, step))
    }

    /// What the policy sees (`obs.interrupted`).
    pub fn obs(&self, step: Option<&(String, String)>) -> rhai::Map {
        let mut m = rhai::Map::new();
        let opt = |v: &Option<String>| {
            v.clone()
                .map(rhai::Dynamic::from)
                .unwrap_or(rhai::Dynamic::UNIT)
        };
        m.insert("watcher".into(), self.watcher.clone().into());
        m.insert("since".into(), self.since.clone().into());
        m.insert("trigger".into(), self.trigger.clone().into());
        m.insert("primary".into(), opt(&self.primary));
        m.insert("standby".into(), opt(&self.standby));
        m.insert("after_step".into(), opt(&step.map(|(_, s)| s.clone())));
        m.insert("run".into(), opt(&step.map(|(r, _)| r.clone())));
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> Pending {
        Pending {
            watcher: "w1".into(),
            host: "h".into(),
            pid: 1,
            since: "2026-01-01T00:00:00Z".into(),
            trigger: "primary pg-bases2 is out".into(),
            primary: Some("pg-bases2".into()),
            standby: Some("pg-replica".into()),
        }
    }

    /// A journal whose Redis refuses connections (nothing listens on port 1).
    fn dead_redis() -> crate::coordination::RedisStore {
        let mut config = Config::defaults();
        config.redis.url = "redis://127.0.0.1:1".into();
        crate::coordination::RedisStore::new(config)
    }

    #[test]
    fn a_record_written_nowhere_is_an_error_naming_both_places() {
        let dir = tempfile::tempdir().unwrap();
        // The record's directory is a file: it cannot be written on disk either.
        let blocker = dir.path().join("watch");
        std::fs::write(&blocker, "").unwrap();
        let path = blocker.join("x.failover.json");
        let err = pending().save_to(&path, &dead_redis()).unwrap_err();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("not written to Redis"), "{err}");
    }

    #[test]
    fn a_record_written_on_disk_only_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("watch").join("x.failover.json");
        let warning = pending().save_to(&path, &dead_redis()).unwrap();
        assert!(
            warning.as_deref().is_some_and(|w| w.contains("Redis")),
            "{warning:?}"
        );
        let back: Pending = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back, pending());
    }
}
