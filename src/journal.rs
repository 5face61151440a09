//! The Redis backend: the journal of runs and the record of backups, as Redis Streams.
//!
//! Keys: `<prefix>:journal` (one entry per run start, step and end) and `<prefix>:backups` (one
//! entry per backup). Streams because entries are append-only, ordered, time-stamped by Redis
//! and can be read newest-first with `XREVRANGE ... COUNT n` in one round trip.
//!
//! Redis being down must never stop a failover. Every entry that cannot be written goes to a
//! spool file (JSON lines, mode 0600) and is delivered, oldest first, the next time pgrunbook
//! reaches Redis, with a warning saying so.

use crate::config::Config;
use anyhow::{Context, Result};
use redis::Commands;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const JOURNAL: &str = "journal";
pub const BACKUPS: &str = "backups";

/// One entry read back: its stream id and fields.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub id: String,
    pub fields: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct Spooled {
    stream: String,
    fields: BTreeMap<String, String>,
}

/// A Redis error as an `anyhow` error with its message only. `RedisError`'s `Display` already
/// includes the text of the error it wraps (the I/O error of a refused connection, say), and its
/// `source()` returns that same error, so keeping the chain would print the cause twice
/// (`Connection refused (os error 111): Connection refused (os error 111)`).
fn redis_error(e: redis::RedisError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

pub struct Journal {
    config: Config,
    conn: Mutex<Option<redis::Connection>>,
    /// When and why the last connection attempt failed; no new attempt for a while after it, and
    /// the same reason is given meanwhile.
    failed: Mutex<Option<(Instant, String)>>,
    warned: Mutex<bool>,
    spooled: Mutex<usize>,
}

impl Journal {
    pub fn new(config: Config) -> Journal {
        Journal {
            config,
            conn: Mutex::new(None),
            failed: Mutex::new(None),
            warned: Mutex::new(false),
            spooled: Mutex::new(0),
        }
    }

    pub fn key(&self, stream: &str) -> String {
        format!("{}:{}", self.config.redis.prefix, stream)
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
    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let mut guard = self.conn.lock().unwrap();
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

    /// Whether Redis answers now.
    pub fn reachable(&self) -> bool {
        self.with_conn(|c| redis::cmd("PING").query::<String>(c))
            .is_ok()
    }

    fn scrub(&self, mut fields: BTreeMap<String, String>) -> BTreeMap<String, String> {
        let secrets = self.config.secrets();
        for v in fields.values_mut() {
            for s in &secrets {
                if v.contains(s.as_str()) {
                    *v = v.replace(s.as_str(), "********");
                }
            }
        }
        fields
    }

    /// Appends an entry; spools it when Redis is unreachable. Never fails.
    pub fn append(&self, stream: &str, fields: BTreeMap<String, String>) {
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
            stream: stream.to_string(),
            fields,
        })
        .unwrap_or_default();
        let written = (|| -> Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut opts = std::fs::OpenOptions::new();
            opts.create(true).append(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&path)?;
            writeln!(f, "{line}")?;
            Ok(())
        })();
        *self.spooled.lock().unwrap() += 1;
        let mut warned = self.warned.lock().unwrap();
        if !*warned {
            *warned = true;
            match written {
                Ok(()) => eprintln!(
                    "warning: {why:#}; journal entries are kept in {} and delivered when Redis is back",
                    path.display()
                ),
                Err(e) => eprintln!(
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

    /// Delivers spooled entries, oldest first. Returns how many were delivered.
    pub fn flush_spool(&self) -> usize {
        let path = self.config.spool_path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            return 0;
        };
        if text.trim().is_empty() || !self.reachable() {
            return 0;
        }
        let mut delivered = 0;
        let mut rest = vec![];
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(s) = serde_json::from_str::<Spooled>(line) else {
                continue;
            };
            let key = self.key(&s.stream);
            let mut items: Vec<(String, String)> = s.fields.into_iter().collect();
            items.push(("spooled".into(), "true".into()));
            if rest.is_empty()
                && self
                    .with_conn(|c| c.xadd::<_, _, _, _, String>(&key, "*", &items))
                    .is_ok()
            {
                delivered += 1;
            } else {
                rest.push(line.to_string());
            }
        }
        let _ = std::fs::write(
            &path,
            rest.iter().map(|l| format!("{l}\n")).collect::<String>(),
        );
        if delivered > 0 {
            eprintln!(
                "warning: delivered {delivered} journal entr{} spooled while Redis was unreachable",
                if delivered == 1 { "y" } else { "ies" }
            );
        }
        delivered
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
}
