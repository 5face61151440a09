//! The coordination store: what watchers and runs agree on, as opposed to what they record (the
//! journal, `clients::redis::Journal`). Today it lives in the same Redis as the journal
//! (`RedisStore`); the issue "a watcher on every host" adds etcd behind the same trait.
//!
//! Four things use it, each under its own key (after the configured prefix):
//! - the watcher's **lease** (`watch:lease`): one watcher acts per cluster (`commands/watch/lease.rs`);
//! - the **hold** of a planned operation (`hold`): a run that changes the cluster on purpose keeps
//!   watchers off (`runtime/hold.rs`);
//! - small **maps**: the watchers' heartbeats (`watch:watchers`), the schedules' last planned
//!   times (`watch:schedules`), the failover decided and not seen to end (`watch:failover`), and
//!   the slots pgrunbook created (`slots`).
//!
//! Nothing here is spooled: a lease or a hold that cannot be read is not held, and callers say
//! what they do then.

mod redis;

pub use self::redis::RedisStore;

use crate::config::Config;
use anyhow::Result;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The contract each store keeps. Every operation is one atomic step on the store; a `ttl_ms`
/// is counted by the store, from the moment it applies the operation.
pub trait Coordination: Send + Sync {
    /// Takes the lease `name` for `holder` for `ttl_ms`, or renews it to a full `ttl_ms` when
    /// `holder` has it, atomically. `Ok(None)`: `holder` has it now; `Ok(Some(other))`: `other`
    /// has it, and it is untouched.
    fn lease_claim(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<Option<String>>;

    /// Gives the lease `name` up if `holder` has it (compare and delete, atomically). Returns
    /// whether it did.
    fn lease_release(&self, name: &str, holder: &str) -> Result<bool>;

    /// The holder of the lease `name` and the milliseconds it has left, if anyone holds it.
    fn lease_holder(&self, name: &str) -> Result<Option<(String, i64)>>;

    /// Sets the key `name` to `value` for `ttl_ms`, whoever held it (a hold is renewed by
    /// setting it again).
    fn hold_set(&self, name: &str, value: &str, ttl_ms: u64) -> Result<()>;

    /// The key `name`, if set and not expired.
    fn hold_get(&self, name: &str) -> Result<Option<String>>;

    /// Removes the key `name` if it still holds `value`. Returns whether it did.
    fn hold_release(&self, name: &str, value: &str) -> Result<bool>;

    /// Sets `field` of the map `name` (one field at a time, atomically).
    fn map_set(&self, name: &str, field: &str, value: &str) -> Result<()>;

    /// Removes `field` from the map `name`.
    fn map_del(&self, name: &str, field: &str) -> Result<()>;

    /// Every field of the map `name`.
    fn map_all(&self, name: &str) -> Result<BTreeMap<String, String>>;
}

/// The store the configuration names. Today: Redis, the journal's (`[redis]`).
pub fn open(config: &Config) -> Arc<dyn Coordination> {
    Arc::new(RedisStore::new(config.clone()))
}

#[cfg(test)]
pub mod memory {
    //! A store in memory, for unit tests of pure logic (no TTLs: nothing expires).
    use super::Coordination;
    use anyhow::Result;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct MemoryStore {
        keys: Mutex<BTreeMap<String, String>>,
        maps: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
    }

    impl Coordination for MemoryStore {
        fn lease_claim(&self, name: &str, holder: &str, _ttl_ms: u64) -> Result<Option<String>> {
            let mut k = self.keys.lock().unwrap();
            match k.get(name) {
                Some(v) if v != holder => Ok(Some(v.clone())),
                _ => {
                    k.insert(name.into(), holder.into());
                    Ok(None)
                }
            }
        }
        fn lease_release(&self, name: &str, holder: &str) -> Result<bool> {
            let mut k = self.keys.lock().unwrap();
            if k.get(name).is_some_and(|v| v == holder) {
                k.remove(name);
                return Ok(true);
            }
            Ok(false)
        }
        fn lease_holder(&self, name: &str) -> Result<Option<(String, i64)>> {
            Ok(self.keys.lock().unwrap().get(name).map(|v| (v.clone(), -1)))
        }
        fn hold_set(&self, name: &str, value: &str, _ttl_ms: u64) -> Result<()> {
            self.keys.lock().unwrap().insert(name.into(), value.into());
            Ok(())
        }
        fn hold_get(&self, name: &str) -> Result<Option<String>> {
            Ok(self.keys.lock().unwrap().get(name).cloned())
        }
        fn hold_release(&self, name: &str, value: &str) -> Result<bool> {
            self.lease_release(name, value)
        }
        fn map_set(&self, name: &str, field: &str, value: &str) -> Result<()> {
            self.maps
                .lock()
                .unwrap()
                .entry(name.into())
                .or_default()
                .insert(field.into(), value.into());
            Ok(())
        }
        fn map_del(&self, name: &str, field: &str) -> Result<()> {
            if let Some(m) = self.maps.lock().unwrap().get_mut(name) {
                m.remove(field);
            }
            Ok(())
        }
        fn map_all(&self, name: &str) -> Result<BTreeMap<String, String>> {
            Ok(self
                .maps
                .lock()
                .unwrap()
                .get(name)
                .cloned()
                .unwrap_or_default())
        }
    }

    #[test]
    fn a_lease_is_one_holders_until_released() {
        let s = MemoryStore::default();
        assert_eq!(s.lease_claim("l", "a", 1000).unwrap(), None);
        assert_eq!(s.lease_claim("l", "a", 1000).unwrap(), None, "renewed");
        assert_eq!(s.lease_claim("l", "b", 1000).unwrap(), Some("a".into()));
        assert!(
            !s.lease_release("l", "b").unwrap(),
            "only its holder releases it"
        );
        assert!(s.lease_release("l", "a").unwrap());
        assert_eq!(s.lease_claim("l", "b", 1000).unwrap(), None);
    }
}
