//! Files on this machine that stand for a cluster's watcher and planned operations: the
//! watcher's lock, its heartbeat and failover record (`commands/watch`), and the hold of a
//! planned operation (`runtime/hold.rs`). One name per cluster journal, and `flock`, which the
//! kernel releases when the process dies, even by SIGKILL.

use crate::config::Config;
use std::fs::File;
use std::io::{Seek, Write};
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;

/// This machine's name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// `<data dir>/watch/<hash>` for this cluster's journal (Redis URL and prefix).
pub fn local_path(config: &Config, ext: &str) -> PathBuf {
    let key = format!("{}\n{}", config.redis_url_shown(), config.redis.prefix);
    crate::config::data_dir().join("watch").join(format!(
        "{:016x}.{ext}",
        crate::config::fnv1a64(key.as_bytes())
    ))
}

/// The local lock, held while this value lives.
pub struct LocalLock {
    _file: File,
    pub path: PathBuf,
}

impl LocalLock {
    /// Takes the lock without waiting: `Ok(None)` when another process holds it (what it wrote
    /// in the file is then in the error of `holder`).
    pub fn try_take(path: PathBuf, me: &str) -> std::io::Result<Option<LocalLock>> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)?;
        // SAFETY: flock on a descriptor this function owns; it does not touch memory.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Ok(None);
            }
            return Err(e);
        }
        f.set_len(0)?;
        f.rewind()?;
        writeln!(f, "{me}")?;
        Ok(Some(LocalLock { _file: f, path }))
    }

    /// Who holds the lock at `path`, as it wrote itself there.
    pub fn holder(path: &PathBuf) -> String {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .trim()
            .to_string()
    }
}

/// Who holds the lock at `path` when a process other than the caller's open file holds it;
/// `None` when it is free or absent. Asks with a shared lock taken and dropped at once.
pub fn held_by_other(path: &PathBuf) -> Option<String> {
    let f = std::fs::OpenOptions::new().read(true).open(path).ok()?;
    // SAFETY: flock on a descriptor this function owns; it does not touch memory.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
        return None;
    }
    Some(LocalLock::holder(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_lock_file_per_journal() {
        let a = Config::defaults();
        let mut b = Config::defaults();
        b.redis.prefix = "other".into();
        assert_ne!(local_path(&a, "lock"), local_path(&b, "lock"));
        assert_eq!(
            local_path(&a, "lock"),
            local_path(&Config::defaults(), "lock")
        );
    }
}
