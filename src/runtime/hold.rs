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
//! - **A lock file** beside the watcher's own (`<data dir>/watch/<hash>.hold`, `flock`): the
//!   kernel drops it when the run's process ends, however it ends.
//!
//! The value names the runbook, the run, the process and the machine; a watcher ignores a hold
//! taken by its own process (the failback it runs itself with `auto_rejoin`).

use crate::clients::redis::Journal;
use crate::config::Config;
use std::fs::File;
use std::io::{Seek, Write};
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The key in Redis (after the journal's prefix).
pub const KEY: &str = "watch:hold";
/// How long a hold outlives the last renewal of a run that died.
pub const TTL_MS: u64 = 10_000;

/// `<data dir>/watch/<hash>.hold`, the hash being the journal's (Redis URL and prefix), as for the
/// watcher's local lock.
pub fn local_path(config: &Config) -> PathBuf {
    let key = format!("{}\n{}", config.redis_url_shown(), config.redis.prefix);
    crate::config::data_dir().join("watch").join(format!(
        "{:016x}.hold",
        crate::config::fnv1a64(key.as_bytes())
    ))
}

/// This process, as holds and restore labels name it: `pid N on HOST`.
pub fn me() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    format!("pid {} on {host}", std::process::id())
}

/// A hold taken by this run; released when dropped.
pub struct Hold {
    _file: Option<File>,
    stop: Arc<AtomicBool>,
    renewer: Option<std::thread::JoinHandle<()>>,
    value: String,
    journal: Arc<Journal>,
}

impl Hold {
    /// Takes the hold for `what` (say `switchover run 20261126-…`). Returns it with what could
    /// not be done (Redis down, the lock file not writable): the run goes on, and says so.
    pub fn take(config: &Config, what: &str) -> (Hold, Vec<String>) {
        let value = format!("{what} ({})", me());
        let mut problems = vec![];
        let file = match lock_file(&local_path(config), &value) {
            Ok(f) => Some(f),
            Err(e) => {
                problems.push(format!("the local hold file: {e}"));
                None
            }
        };
        let journal = Arc::new(Journal::new(config.clone()));
        if let Err(e) = journal.hold_set(KEY, &value, TTL_MS) {
            problems.push(format!("Redis: {e:#}"));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (stop, journal, value) = (stop.clone(), journal.clone(), value.clone());
            std::thread::Builder::new()
                .name("hold".into())
                .spawn(move || {
                    let step = Duration::from_millis(TTL_MS / 5);
                    let tick = Duration::from_millis(50);
                    let mut waited = Duration::ZERO;
                    while !stop.load(Ordering::SeqCst) {
                        std::thread::sleep(tick);
                        waited += tick;
                        if waited >= step {
                            waited = Duration::ZERO;
                            let _ = journal.hold_set(KEY, &value, TTL_MS);
                        }
                    }
                })
                .ok()
        };
        (
            Hold {
                _file: file,
                stop,
                renewer,
                value,
                journal,
            },
            problems,
        )
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.renewer.take() {
            let _ = t.join();
        }
        let _ = self.journal.hold_release(KEY, &self.value);
        // The lock file's lock goes with the file.
    }
}

fn lock_file(path: &PathBuf, value: &str) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)?;
    // SAFETY: flock on a descriptor this function owns; it does not touch memory. A blocking
    // lock: two planned operations on one cluster at once wait for each other here.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let holder = std::fs::read_to_string(path).unwrap_or_default();
            return Err(std::io::Error::other(format!(
                "held by another run: {}",
                holder.trim()
            )));
        }
        return Err(e);
    }
    f.set_len(0)?;
    f.rewind()?;
    writeln!(f, "{value}")?;
    Ok(f)
}

/// The hold another process has on this cluster, if any: what it says of itself. Looks at the
/// lock file first (no network), then at Redis.
pub fn current(config: &Config, journal: &Journal) -> Option<String> {
    let mine = me();
    let path = local_path(config);
    if let Ok(f) = std::fs::OpenOptions::new().read(true).open(&path) {
        // SAFETY: as above; a shared lock taken and dropped at once, only to ask.
        let free = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0;
        if free {
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
        } else {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            if !holder.ends_with(&format!("({mine})")) {
                return Some(holder.to_string());
            }
        }
    }
    match journal.hold_get(KEY) {
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
    let here = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    host == here
        && pid.parse::<u32>().is_ok()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_of_a_process_gone_from_this_machine_is_over() {
        let here = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim()
            .to_string();
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
