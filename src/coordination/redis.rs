//! The coordination store in Redis: the journal's Redis, its own connection.
//!
//! `pgrunbook watch`: the lease that lets one watcher act per cluster, the watchers' heartbeats
//! and each schedule's last planned time. Keys: `<prefix>:watch:lease` (a string with a time to
//! live), `<prefix>:watch:watchers` and `<prefix>:watch:schedules` (hashes). The prefix is the
//! journal's, one per cluster. Atomic steps are Lua scripts (claim: SET NX PX, or PEXPIRE for
//! its holder; release: GET and DEL by value) or single commands.

use super::Coordination;
use crate::clients::redis::Connection;
use crate::config::Config;
use anyhow::Result;
use redis::Commands;
use std::collections::BTreeMap;

pub struct RedisStore {
    redis: Connection,
}

impl RedisStore {
    pub fn new(config: Config) -> RedisStore {
        RedisStore {
            redis: Connection::new(config),
        }
    }
}

impl Coordination for RedisStore {
    /// Takes the lease `name` for `holder` for `ttl_ms`, or renews it when `holder` has it.
    /// `Ok(None)`: held by `holder` now; `Ok(Some(other))`: held by `other`, untouched.
    fn lease_claim(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<Option<String>> {
        const CLAIM: &str = "local v = redis.call('GET', KEYS[1]) \
            if v == false then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return '' end \
            if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return '' end \
            return v";
        let key = self.redis.key(name);
        let other: String = self.redis.with_conn(|c| {
            redis::cmd("EVAL")
                .arg(CLAIM)
                .arg(1)
                .arg(&key)
                .arg(holder)
                .arg(ttl_ms)
                .query(c)
        })?;
        Ok((!other.is_empty()).then_some(other))
    }

    /// Gives the lease up if `holder` has it. Returns whether it did.
    fn lease_release(&self, name: &str, holder: &str) -> Result<bool> {
        const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
            return redis.call('DEL', KEYS[1]) end return 0";
        let key = self.redis.key(name);
        let n: i64 = self.redis.with_conn(|c| {
            redis::cmd("EVAL")
                .arg(RELEASE)
                .arg(1)
                .arg(&key)
                .arg(holder)
                .query(c)
        })?;
        Ok(n == 1)
    }

    /// The lease's holder and the milliseconds it has left, if anyone holds it.
    fn lease_holder(&self, name: &str) -> Result<Option<(String, i64)>> {
        let key = self.redis.key(name);
        let (v, ttl): (Option<String>, i64) = self.redis.with_conn(|c| {
            redis::pipe()
                .cmd("GET")
                .arg(&key)
                .cmd("PTTL")
                .arg(&key)
                .query(c)
        })?;
        Ok(v.map(|v| (v, ttl)))
    }

    /// Sets the string `name` to `value` for `ttl_ms`, whoever held it (the hold of a planned
    /// operation: `runtime/hold.rs`).
    fn hold_set(&self, name: &str, value: &str, ttl_ms: u64) -> Result<()> {
        let key = self.redis.key(name);
        self.redis.with_conn(|c| {
            redis::cmd("SET")
                .arg(&key)
                .arg(value)
                .arg("PX")
                .arg(ttl_ms)
                .query::<()>(c)
        })
    }

    /// The string `name`, if set.
    fn hold_get(&self, name: &str) -> Result<Option<String>> {
        let key = self.redis.key(name);
        self.redis.with_conn(|c| c.get(&key))
    }

    /// Removes the string `name` if it still holds `value`.
    fn hold_release(&self, name: &str, value: &str) -> Result<bool> {
        self.lease_release(name, value)
    }

    /// Sets `field` of the hash `name`.
    fn map_set(&self, name: &str, field: &str, value: &str) -> Result<()> {
        let key = self.redis.key(name);
        self.redis
            .with_conn(|c| c.hset::<_, _, _, ()>(&key, field, value))
    }

    /// Removes `field` from the hash `name`.
    fn map_del(&self, name: &str, field: &str) -> Result<()> {
        let key = self.redis.key(name);
        self.redis.with_conn(|c| c.hdel::<_, _, ()>(&key, field))
    }

    /// Every field of the hash `name`.
    fn map_all(&self, name: &str) -> Result<BTreeMap<String, String>> {
        let key = self.redis.key(name);
        self.redis.with_conn(|c| c.hgetall(&key))
    }
}
