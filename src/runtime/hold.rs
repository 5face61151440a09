//! The hold: while a planned operation (a switchover, a failback, a failover typed by hand)
//! runs, `pgrunbook watch` does not act on what it sees. A switchover shuts the primary down on
//! purpose; without the hold a watcher would take that for a failure and start a failover of its
//! own beside the switchover.
//!
//! The runbook asks for it (`hold_watchers()`, so a reader sees it), and the run keeps it until it
//! ends. It is held in two places, so that a watcher on this machine sees it with Redis down:
//!
//! - **Redis**: the key `<prefix>:watch:hold`, set with a time to live of `TTL_MS` and renewed
//!   every `TTL_MS / 5` by a thread of the run. A run killed by SIGKILL stops renewing it, and
//!   watchers act again within `TTL_MS` (the failover runbook then finishes or repairs the job,
//!   as it does after any crash).
//! - **A lock file** beside the watcher's own (`<data dir>/watch/<hash>.hold`, a `LocalLock`):
//!   the kernel drops it when the run's process ends, however it ends.
//!
//! The value names the runbook, the run, the process and the machine; a watcher ignores a hold
//! taken by its own process (the failback it runs itself with `auto_rejoin`).

use crate::config::Config;
use crate::coordination::{self, Coordination};
use crate::errln;
use crate::runtime::local_lock::{held_by_other, hostname, local_path, LocalLock};
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

/// The key in Redis (after the journal's prefix).
pub const KEY: &str = "watch:hold";
/// How long a hold outlives the last renewal of a run that died.
pub const TTL_MS: u64 = 10_000;

/// This process, as holds and restore labels name it: `pid N on HOST`.
pub fn me() -> String {
    format!("pid {} on {}", std::process::id(), hostname())
}

/// A hold taken by this run; released when dropped.
pub struct Hold {
    _lock: Option<LocalLock>,
    /// Dropped to stop the renewing thread at once.
    stop: Option<mpsc::Sender<()>>,
    renewer: Option<std::thread::JoinHandle<()>>,
    value: String,
    store: Arc<dyn Coordination>,
}

impl Hold {
    /// Takes the hold for `what` (say `switchover run 20261126-…`). Returns it with what could
    /// not be done (Redis down, the lock file not writable): the run goes on, and says so.
    pub fn take(config: &Config, what: &str) -> (Hold, Vec<String>) {
        let value = format!("{what} ({})", me());
        let mut problems = vec![];
        let file = match lock_file(local_path(config, "hold"), &value) {
            Ok(f) => Some(f),
            Err(e) => {
                problems.push(format!("the local hold file: {e}"));
                None
            }
        };
        let store = coordination::open(config);
        if let Err(e) = store.hold_set(KEY, &value, TTL_MS) {
            problems.push(format!("Redis: {e:#}"));
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let renewer = {
            let (store, value) = (store.clone(), value.clone());
            std::thread::Builder::new()
                .name("hold".into())
                .spawn(move || {
                    let every = Duration::from_millis(TTL_MS / 5);
                    // Said once per outage: the hold in Redis expires within TTL_MS of the
                    // last renewal, and watchers on other machines may act again then.
                    let mut failing = false;
                    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                        match store.hold_set(KEY, &value, TTL_MS) {
                            Ok(()) if failing => {
                                errln!("the watchers' hold is renewed in Redis again");
                                failing = false;
                            }
                            Ok(()) => {}
                            Err(e) if !failing => {
                                errln!(
                                    "warning: cannot renew the watchers' hold in Redis ({e:#}): it expires within {} s, and watchers on other machines may act during this run",
                                    TTL_MS / 1000
                                );
                                failing = true;
                            }
                            Err(_) => {}
                        }
                    }
                })
                .ok()
        };
        (
            Hold {
                _lock: file,
                stop: Some(stop),
                renewer,
                value,
                store,
            },
            problems,
        )
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.renewer.take() {
            let _ = t.join();
        }
        if let Err(e) = self.store.hold_release(KEY, &self.value) {
            errln!(
                "warning: cannot release the watchers' hold in Redis ({e:#}): watchers hold off until it expires, within {} s",
                TTL_MS / 1000
            );
        }
        // The lock file's lock goes with the file.
    }
}

fn lock_file(path: PathBuf, value: &str) -> std::io::Result<LocalLock> {
    match LocalLock::try_take(path.clone(), value)? {
        Some(lock) => Ok(lock),
        None => Err(std::io::Error::other(format!(
            "held by another run: {}",
            LocalLock::holder(&path)
        ))),
    }
}

/// The hold another process has on this cluster, if any: what it says of itself. Looks at the
/// lock file first (no network), then at Redis.
pub fn current(config: &Config, store: &dyn Coordination) -> Option<String> {
    let mine = me();
    if let Some(holder) = held_by_other(&local_path(config, "hold")) {
        if !holder.ends_with(&format!("({mine})")) {
            return Some(holder);
        }
    }
    match store.hold_get(KEY) {
        Ok(Some(v)) if !v.ends_with(&format!("({mine})")) && !died_here(&v) => Some(v),
        _ => None,
    }
}

/// Whether a hold's value names a process of this machine that is gone (a watcher or a run
/// killed with SIGKILL): its hold is over although Redis keeps it until its time to live ends.
/// Also used for the owner of a restored container (`pid N on HOST`).
pub fn died_here(value: &str) -> bool {
    let Some(rest) = value.rsplit_once("(pid ").map(|(_, r)| r) else {
        return false;
    };
    let Some((pid, host)) = rest.trim_end_matches(')').split_once(" on ") else {
        return false;
    };
    host == hostname()
        && pid.parse::<u32>().is_ok()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_of_a_process_gone_from_this_machine_is_over() {
        let here = hostname();
        let alive = format!("switchover run x (pid {} on {here})", std::process::id());
        assert!(!died_here(&alive));
        // Pids stop well below this on Linux (pid_max is at most 2^22).
        assert!(died_here(&format!(
            "failover run y (pid 99999999 on {here})"
        )));
        // Another machine's process cannot be looked at: its hold stands until it expires.
        assert!(!died_here("failover run y (pid 99999999 on elsewhere)"));
        assert!(!died_here("no pid here"));
    }
}
