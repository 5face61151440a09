//! The Redis backend: the journal of runs and the record of backups, as Redis Streams.
//!
//! Keys: `<prefix>:journal` (one entry per run start, step and end) and `<prefix>:backups` (one
//! entry per backup). Streams because entries are append-only, ordered, time-stamped by Redis
//! and can be read newest-first with `XREVRANGE ... COUNT n` in one round trip. Every entry
//! carries `cluster`, the PostgreSQL system identifier of the cluster it is about (or
//! `unknown`), so that entries of two clusters that share a Redis can be told apart.
//!
//! Redis being down must never stop a failover. Every entry that cannot be written goes to a
//! spool file (JSON lines, mode 0600) and is delivered, oldest first, the next time pgrunbook
//! reaches Redis, with a warning saying so.
//!
//! A spooled entry belongs to one journal of one cluster, and is delivered there or nowhere.
//! One spool file shared by every configuration once delivered a cluster's entries into another
//! cluster's Redis, whose `status` then showed a backup of a node it does not have. So:
//!
//! - by default each Redis URL and prefix has a spool file of its own (`Config::spool_path`);
//! - every spooled line carries its target (`Target`): the Redis URL with its password masked
//!   (a password is never written), the prefix, and the cluster's system identifier, which the
//!   host learns from PostgreSQL at the start of a run (`Journal::set_cluster`; this file never
//!   talks to PostgreSQL) or `unknown` when no node answered;
//! - a line is delivered only by a process whose own target is equal to it, all three parts:
//!   an explicitly configured `redis.spool` shared by several configurations keeps the others'
//!   lines untouched. `unknown` is equal only to `unknown`: an entry nobody could tie to a
//!   cluster is never guessed into one, and one tied to a cluster is never delivered by a process
//!   that cannot tell which cluster it is working on. Such entries wait in the file (and are
//!   listed by `journal` and `backups` of the matching target) until a process with the same
//!   target reaches Redis. Lines written by older versions, which carry no target, are never
//!   delivered; a warning names them.
//!
//! Entries still waiting in this target's spool are part of what readers see: `journal`,
//! `backups` and `journal_last` show them marked `spooled: "true"` with an empty id, so that a
//! backup recorded while Redis was down is not recorded again by the next one.

use crate::config::Config;
use crate::errln;
use anyhow::{Context, Result};
use redis::Commands;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const JOURNAL: &str = "journal";
pub const BACKUPS: &str = "backups";
/// The cluster of entries written when no node told its system identifier.
pub const UNKNOWN: &str = "unknown";

/// One entry read back: its stream id and fields.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub id: String,
    pub fields: BTreeMap<String, String>,
}

/// The journal a spooled entry was written for, and the only one it may be delivered to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The Redis URL, its password masked.
    pub redis: String,
    pub prefix: String,
    /// The cluster's PostgreSQL system identifier, or `unknown`.
    pub cluster: String,
}

/// One line of the spool file.
#[derive(Serialize, Deserialize)]
struct Spooled {
    /// Absent in lines written by versions before per-cluster spools: never delivered.
    #[serde(default)]
    target: Option<Target>,
    stream: String,
    fields: BTreeMap<String, String>,
}

/// Opens (creating it, mode 0600) and locks the spool file for this process alone; the lock
/// goes with the file handle. Appends go to the end.
fn open_locked(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).read(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let f = opts.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock on a descriptor this function owns; it does not touch memory.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(f)
}

/// A Redis error as an `anyhow` error with its message only. `RedisError`'s `Display` already
/// includes the text of the error it wraps (the I/O error of a refused connection, say), and its
/// `source()` returns that same error, so keeping the chain would print the cause twice
/// (`Connection refused (os error 111): Connection refused (os error 111)`).
fn redis_error(e: redis::RedisError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// How long a connection may sit unused before it is checked (PING) before its next use:
/// shorter than any restart of Redis.
const IDLE_CHECK: Duration = Duration::from_millis(200);

/// One connection to Redis, made on first use, checked when it sat idle, made again after a
/// failure (not before 2 s): what the journal and the Redis coordination store each hold.
pub struct Connection {
    config: Config,
    conn: Mutex<Option<redis::Connection>>,
    /// When the connection was last used (`with_conn` checks one idle for `IDLE_CHECK`).
    used: Mutex<Option<Instant>>,
    /// When and why the last connection attempt failed; no new attempt for a while after it, and
    /// the same reason is given meanwhile.
    failed: Mutex<Option<(Instant, String)>>,
}

/// The run journal: entries appended to Redis streams (spooled to disk when Redis cannot be
/// reached) and read back. The coordination state (the watcher's lease, the hold of planned
/// operations, heartbeats, schedule cursors, the pending failover) is not here: it is
/// `crate::coordination`.
pub struct Journal {
    config: Config,
    redis: Connection,
    warned: Mutex<bool>,
    spooled: Mutex<usize>,
    /// The cluster's system identifier once the host has learned it (`UNKNOWN` when no node
    /// answered); `None` before.
    cluster: Mutex<Option<String>>,
    /// Whether the warning about spools of older versions was given.
    warned_old: Mutex<bool>,
}

impl Connection {
    pub fn new(config: Config) -> Connection {
        Connection {
            config,
            conn: Mutex::new(None),
            used: Mutex::new(None),
            failed: Mutex::new(None),
        }
    }

    /// The key `name` under the configured prefix (`<prefix>:<name>`).
    pub fn key(&self, name: &str) -> String {
        format!("{}:{}", self.config.redis.prefix, name)
    }

    fn connect(&self) -> Result<redis::Connection> {
        let client = redis::Client::open(self.config.redis.url.as_str())
            .map_err(redis_error)
            .with_context(|| format!("invalid Redis URL {}", self.config.redis_url_shown()))?;
        let t = Duration::from_millis(self.config.redis.connect_timeout_ms);
        let conn = client
            .get_connection_with_timeout(t)
            .map_err(redis_error)
            .with_context(|| {
                format!("Redis at {} is unreachable", self.config.redis_url_shown())
            })?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(redis_error)?;
        conn.set_write_timeout(Some(Duration::from_secs(5)))
            .map_err(redis_error)?;
        Ok(conn)
    }

    /// Runs `f` on the connection; `None` when Redis cannot be reached.
    pub fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let mut guard = self.conn.lock().unwrap();
        // A connection idle for a while may have been closed by a Redis restart (a REPL left
        // open across a lab restart): PING it first, and reconnect when it does not answer,
        // rather than fail the caller's command with "unexpected end of file".
        let idle = self
            .used
            .lock()
            .unwrap()
            .is_none_or(|t| t.elapsed() > IDLE_CHECK);
        if idle
            && guard
                .as_mut()
                .is_some_and(|c| !redis::ConnectionLike::check_connection(c))
        {
            *guard = None;
        }
        *self.used.lock().unwrap() = Some(Instant::now());
        if guard.is_none() {
            if let Some((t, why)) = &*self.failed.lock().unwrap() {
                if t.elapsed() < Duration::from_secs(2) {
                    anyhow::bail!("{why}");
                }
            }
            match self.connect() {
                Ok(c) => *guard = Some(c),
                Err(e) => {
                    *self.failed.lock().unwrap() = Some((Instant::now(), format!("{e:#}")));
                    return Err(e);
                }
            }
        }
        let r = f(guard.as_mut().unwrap());
        if r.is_err() {
            *guard = None;
        }
        r.map_err(redis_error)
            .with_context(|| format!("Redis at {}", self.config.redis_url_shown()))
    }
}

impl Journal {
    pub fn new(config: Config) -> Journal {
        Journal {
            redis: Connection::new(config.clone()),
            config,
            warned: Mutex::new(false),
            spooled: Mutex::new(0),
            cluster: Mutex::new(None),
            warned_old: Mutex::new(false),
        }
    }

    /// Sets the cluster the entries of this process are about: its PostgreSQL system
    /// identifier, or `None` when no node answered.
    pub fn set_cluster(&self, id: Option<String>) {
        *self.cluster.lock().unwrap() = Some(id.unwrap_or_else(|| UNKNOWN.to_string()));
    }

    /// Whether `set_cluster` was called.
    pub fn cluster_learned(&self) -> bool {
        self.cluster.lock().unwrap().is_some()
    }

    /// The cluster's system identifier, or `unknown`.
    pub fn cluster(&self) -> String {
        self.cluster
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| UNKNOWN.to_string())
    }

    /// Where this process's entries belong.
    pub fn target(&self) -> Target {
        Target {
            redis: self.config.redis_url_shown(),
            prefix: self.config.redis.prefix.clone(),
            cluster: self.cluster(),
        }
    }

    pub fn key(&self, stream: &str) -> String {
        format!("{}:{}", self.config.redis.prefix, stream)
    }

    /// Runs `f` on the Redis connection (`Connection::with_conn`).
    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        self.redis.with_conn(f)
    }

    /// Whether Redis answers now.
    pub fn reachable(&self) -> bool {
        self.with_conn(|c| redis::cmd("PING").query::<String>(c))
            .is_ok()
    }

    fn scrub(&self, mut fields: BTreeMap<String, String>) -> BTreeMap<String, String> {
        // The journal is kept: mask by value and by shape (see `crate::secrets`).
        let secrets = self.config.secrets();
        for v in fields.values_mut() {
            *v = crate::secrets::mask_shapes(&crate::secrets::mask_values(v, &secrets));
        }
        fields
    }

    /// Appends an entry; spools it when Redis is unreachable. Never fails.
    pub fn append(&self, stream: &str, mut fields: BTreeMap<String, String>) {
        fields.insert("cluster".into(), self.cluster());
        let fields = self.scrub(fields);
        let key = self.key(stream);
        let items: Vec<(String, String)> = fields.clone().into_iter().collect();
        let r = self.with_conn(|c| c.xadd::<_, _, _, _, String>(&key, "*", &items));
        if let Err(e) = r {
            self.spool(stream, fields, &e);
        }
    }

    fn spool(&self, stream: &str, fields: BTreeMap<String, String>, why: &anyhow::Error) {
        let path = self.config.spool_path();
        let line = serde_json::to_string(&Spooled {
            target: Some(self.target()),
            stream: stream.to_string(),
            fields,
        })
        .unwrap_or_default();
        let written = open_locked(&path).and_then(|mut f| writeln!(f, "{line}"));
        *self.spooled.lock().unwrap() += 1;
        let mut warned = self.warned.lock().unwrap();
        if !*warned {
            *warned = true;
            match written {
                Ok(()) => errln!(
                    "warning: {why:#}; journal entries are kept in {} and delivered when Redis is back",
                    path.display()
                ),
                Err(e) => errln!(
                    "warning: {why:#}; and the spool {} cannot be written ({e:#}): journal entries are lost",
                    path.display()
                ),
            }
        }
    }

    /// How many entries this process spooled.
    pub fn spooled_count(&self) -> usize {
        *self.spooled.lock().unwrap()
    }

    /// The lines of the spool file, each with what it holds when it parses.
    fn spool_lines(text: &str) -> impl Iterator<Item = (&str, Option<Spooled>)> {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| (l, serde_json::from_str::<Spooled>(l).ok()))
    }

    /// Delivers this target's spooled entries, oldest first, and leaves every other line of the
    /// file as it was. Returns how many were delivered.
    pub fn flush_spool(&self) -> usize {
        let path = self.config.spool_path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        self.warn_of_old_spools(&text);
        let target = self.target();
        let mine = |s: &Option<Spooled>| {
            s.as_ref()
                .is_some_and(|s| s.target.as_ref() == Some(&target))
        };
        if !Self::spool_lines(&text).any(|(_, s)| mine(&s)) || !self.reachable() {
            return 0;
        }
        // Locked from reading to rewriting, so that an entry another process spools meanwhile
        // is not lost when the file is rewritten.
        let delivered = (|| -> std::io::Result<usize> {
            let mut f = open_locked(&path)?;
            let mut text = String::new();
            f.read_to_string(&mut text)?;
            let mut delivered = 0;
            let mut failed = false;
            let mut rest = String::new();
            for (line, s) in Self::spool_lines(&text) {
                if let Some(s) = s.filter(|s| !failed && s.target.as_ref() == Some(&target)) {
                    let key = self.key(&s.stream);
                    let mut items: Vec<(String, String)> = s.fields.into_iter().collect();
                    items.push(("spooled".into(), "true".into()));
                    let sent = self.with_conn(|c| c.xadd::<_, _, _, _, String>(&key, "*", &items));
                    if sent.is_ok() {
                        delivered += 1;
                        continue;
                    }
                    // Keep the order: nothing after an entry that failed goes first.
                    failed = true;
                }
                rest.push_str(line);
                rest.push('\n');
            }
            if delivered > 0 {
                f.set_len(0)?;
                f.rewind()?;
                f.write_all(rest.as_bytes())?;
            }
            Ok(delivered)
        })()
        .unwrap_or(0);
        if delivered > 0 {
            errln!(
                "warning: delivered {delivered} journal entr{} spooled while Redis was unreachable",
                if delivered == 1 { "y" } else { "ies" }
            );
        }
        delivered
    }

    /// Warns, once, of spooled entries that carry no target (written by a version before
    /// per-cluster spools, in the configured file or in the old default file): nothing says
    /// where they belong, so they are never delivered.
    fn warn_of_old_spools(&self, text: &str) {
        let mut warned = self.warned_old.lock().unwrap();
        if *warned {
            return;
        }
        let untargeted = |text: &str| {
            Self::spool_lines(text)
                .filter(|(_, s)| s.as_ref().is_some_and(|s| s.target.is_none()))
                .count()
        };
        let mut old = vec![(self.config.spool_path(), untargeted(text))];
        let legacy = crate::config::data_dir().join("journal-spool.jsonl");
        if legacy != self.config.spool_path() {
            let t = std::fs::read_to_string(&legacy).unwrap_or_default();
            old.push((legacy, untargeted(&t)));
        }
        old.retain(|(_, n)| *n > 0);
        *warned = !old.is_empty();
        for (p, n) in old {
            errln!(
                "warning: {} holds {n} journal entr{} spooled by an older pgrunbook, which did not record the Redis and cluster they belong to; they are not delivered (read them, then remove them)",
                p.display(),
                if n == 1 { "y" } else { "ies" }
            );
        }
    }

    /// This target's entries of `stream` still waiting in the spool, newest first, marked
    /// `spooled: "true"`, with an empty id (Redis gave them none yet).
    pub fn spooled_entries(&self, stream: &str) -> Vec<Entry> {
        let text = std::fs::read_to_string(self.config.spool_path()).unwrap_or_default();
        let target = self.target();
        let mut entries: Vec<Entry> = Self::spool_lines(&text)
            .filter_map(|(_, s)| s)
            .filter(|s| s.target.as_ref() == Some(&target) && s.stream == stream)
            .map(|s| {
                let mut fields = s.fields;
                fields.insert("spooled".into(), "true".into());
                Entry {
                    id: String::new(),
                    fields,
                }
            })
            .collect();
        entries.reverse();
        entries
    }

    /// Whether this target has entries waiting in the spool, in any stream.
    pub fn has_spooled(&self) -> bool {
        let text = std::fs::read_to_string(self.config.spool_path()).unwrap_or_default();
        let target = Some(self.target());
        let found = Self::spool_lines(&text).any(|(_, s)| s.is_some_and(|s| s.target == target));
        found
    }

    /// The last `n` entries of a stream as a reader should see them, newest first: those in
    /// Redis and those of this target still in the spool, by time (`ts`). With the error when
    /// Redis could not be read (the entries are then the spooled ones only).
    pub fn last_with_spool(&self, stream: &str, n: usize) -> (Vec<Entry>, Option<anyhow::Error>) {
        let spooled = self.spooled_entries(stream);
        let (mut entries, err) = match self.last(stream, n) {
            Ok(e) => (e, None),
            Err(e) => (vec![], Some(e)),
        };
        if !spooled.is_empty() {
            entries.extend(spooled);
            let ts = |e: &Entry| e.fields.get("ts").cloned().unwrap_or_default();
            entries.sort_by_key(|e| std::cmp::Reverse(ts(e)));
            entries.truncate(n);
        }
        (entries, err)
    }

    /// The last `n` entries of a stream, newest first.
    pub fn last(&self, stream: &str, n: usize) -> Result<Vec<Entry>> {
        let key = self.key(stream);
        let reply: redis::streams::StreamRangeReply =
            self.with_conn(|c| c.xrevrange_count(&key, "+", "-", n))?;
        Ok(reply
            .ids
            .into_iter()
            .map(|id| Entry {
                fields: id
                    .map
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            redis::from_redis_value::<String>(v.clone()).unwrap_or_default(),
                        )
                    })
                    .collect(),
                id: id.id,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Redis URL on a local port nothing listens on.
    fn closed_port_url() -> String {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("redis://127.0.0.1:{port}")
    }

    #[test]
    fn an_unreachable_redis_names_the_os_error_once() {
        let mut config = Config::defaults();
        config.redis.url = closed_port_url();
        let j = Journal::new(config);
        let err = format!("{:#}", j.last(JOURNAL, 1).unwrap_err());
        assert!(err.contains("is unreachable"), "{err}");
        assert_eq!(err.matches("os error").count(), 1, "{err}");
        // Asked again at once, it does not try again and gives the same reason.
        let again = format!("{:#}", j.last(JOURNAL, 1).unwrap_err());
        assert_eq!(again, err);

        let wrapped = redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused here",
        ));
        let err = format!("{:#}", redis_error(wrapped).context("Redis at x"));
        assert_eq!(err, "Redis at x: refused here");
    }

    #[test]
    fn spooled_entries_are_seen_only_by_their_own_target() {
        let dir = tempfile::tempdir().unwrap();
        let url = closed_port_url();
        let journal = |prefix: &str, cluster: Option<&str>| {
            let mut config = Config::defaults();
            config.redis.url = url.clone();
            config.redis.prefix = prefix.into();
            config.redis.spool = dir.path().join("shared.jsonl").display().to_string();
            let j = Journal::new(config);
            j.set_cluster(cluster.map(str::to_string));
            j
        };
        let writer = journal("p", Some("42"));
        let mut fields = BTreeMap::new();
        fields.insert("label".to_string(), "b1".to_string());
        fields.insert("ts".to_string(), "2026-01-01T00:00:00.000Z".to_string());
        writer.append(BACKUPS, fields);
        assert_eq!(writer.spooled_count(), 1);

        let seen = |j: &Journal| j.spooled_entries(BACKUPS);
        let mine = seen(&writer);
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].fields["label"], "b1");
        assert_eq!(mine[0].fields["cluster"], "42");
        assert_eq!(mine[0].fields["spooled"], "true");
        assert_eq!(mine[0].id, "");
        assert!(writer.has_spooled());
        let (last, unreachable) = writer.last_with_spool(BACKUPS, 10);
        assert!(unreachable.is_some());
        assert_eq!(last.len(), 1);

        // The same Redis URL with another prefix, another cluster, or no cluster known; and
        // another Redis.
        let mut elsewhere = journal("p", Some("42"));
        elsewhere.config.redis.url = closed_port_url();
        for other in [
            journal("q", Some("42")),
            journal("p", Some("43")),
            journal("p", None),
            elsewhere,
        ] {
            assert!(seen(&other).is_empty(), "{:?}", other.target());
            assert!(!other.has_spooled());
        }
        assert_eq!(
            seen(&journal("p", Some("42"))).len(),
            1,
            "another process, same target"
        );
    }
}
