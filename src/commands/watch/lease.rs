//! Only one watcher acts for a cluster: a lease in Redis, and a lock file on this machine.
//!
//! - **The local lock**: `flock` on `<data dir>/watch/<hash>.lock`, the hash of the Redis URL
//!   (password masked) and key prefix, like the journal's spool: one per cluster journal. A
//!   watcher must hold it to act at all, so two watchers on one machine never both act, with or
//!   without Redis. The kernel releases it when the process dies, even by SIGKILL.
//! - **The lease**: the key `<prefix>:watch:lease` in Redis, taken with `SET NX PX` (in a small
//!   Lua script that also renews it for its holder) and renewed every third of `lease_ttl_ms`.
//!   It excludes watchers on other machines. A watcher that dies stops renewing, and another
//!   takes over once the lease expires.
//! - **Redis down**: a watcher that held the lease when Redis stopped answering goes on acting
//!   on its local lock alone; one that did not hold it keeps waiting; one started while Redis
//!   was never reached acts on its local lock. So with Redis down, only watchers on *one machine*
//!   exclude each other. Watchers on two machines that both lose Redis keep the roles they had.
//!   docs/watch.md says what follows.

/// The lease's key (after the prefix).
pub const LEASE: &str = "watch:lease";
/// The hash of watchers' heartbeats (after the prefix).
pub const WATCHERS: &str = "watch:watchers";
/// The hash of schedules' last planned times (after the prefix).
pub const SCHEDULES: &str = "watch:schedules";
/// The hash holding a failover decided and not seen end (after the prefix; `pending.rs`).
pub const FAILOVER: &str = "watch:failover";

pub use crate::runtime::local_lock::{local_path, LocalLock};

/// What the lease says this watcher may do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Act; the string says on what grounds (shown when it changes).
    Acting(String),
    /// Do not act; the string says why (who holds the lease or the lock).
    Waiting(String),
}

impl Standing {
    pub fn acting(&self) -> bool {
        matches!(self, Standing::Acting(_))
    }
    pub fn text(&self) -> &str {
        match self {
            Standing::Acting(s) | Standing::Waiting(s) => s,
        }
    }
}

/// The outcome of one claim of the lease in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    Mine,
    Other(String),
    Unreachable(String),
}

/// The rule of the module's doc, as a function of what happened: whether the local lock is
/// held, the claim just made, whether this watcher held the lease at its last successful claim,
/// and whether it ever reached Redis.
pub fn standing(
    local: Result<(), String>,
    claim: &Claim,
    held: bool,
    seen_redis: bool,
) -> Standing {
    if let Err(other) = local {
        return Standing::Waiting(format!(
            "another watcher on this machine holds the local lock ({other})"
        ));
    }
    match claim {
        Claim::Mine => Standing::Acting("holds the lease in Redis".into()),
        Claim::Other(who) => Standing::Waiting(format!("the lease in Redis is held by {who}")),
        Claim::Unreachable(why) if held => Standing::Acting(format!(
            "held the lease when Redis stopped answering ({why}); acting on the local lock"
        )),
        Claim::Unreachable(why) if !seen_redis => Standing::Acting(format!(
            "Redis has not answered since the start ({why}); acting on the local lock alone"
        )),
        Claim::Unreachable(why) => Standing::Waiting(format!(
            "Redis does not answer ({why}) and the lease was another watcher's"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_lock_is_one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w").join("x.lock");
        let a = LocalLock::try_take(p.clone(), "host a pid 1").unwrap();
        assert!(a.is_some());
        assert!(LocalLock::try_take(p.clone(), "host b pid 2")
            .unwrap()
            .is_none());
        assert_eq!(LocalLock::holder(&p), "host a pid 1");
        drop(a);
        assert!(LocalLock::try_take(p.clone(), "host b pid 2")
            .unwrap()
            .is_some());
    }

    #[test]
    fn who_acts_with_and_without_redis() {
        let down = Claim::Unreachable("refused".into());
        assert!(standing(Ok(()), &Claim::Mine, false, true).acting());
        assert!(!standing(Ok(()), &Claim::Other("w2".into()), true, true).acting());
        assert!(!standing(Err("pid 9".into()), &Claim::Mine, true, true).acting());
        // Redis down: the last holder goes on, a watcher that never saw Redis acts on its lock,
        // a watcher that saw another hold the lease waits.
        assert!(standing(Ok(()), &down, true, true).acting());
        assert!(standing(Ok(()), &down, false, false).acting());
        let w = standing(Ok(()), &down, false, true);
        assert!(
            !w.acting() && w.text().contains("another watcher's"),
            "{w:?}"
        );
    }
}
