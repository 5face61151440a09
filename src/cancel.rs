//! The cancel flag: set by Ctrl-C (or a timeout), watched by every long primitive.
//!
//! Rhai's `on_progress` stops a script between operations, but it cannot interrupt a primitive
//! that is blocked in a Docker call or a SQL query. So long primitives wait on this flag too: the
//! Docker backend selects on `wait_async`, and the PostgreSQL backend cancels the query on the
//! server with its cancel token.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Clone, Default)]
pub struct Cancel {
    flag: Arc<AtomicBool>,
    notify: Arc<tokio::sync::Notify>,
}

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Clears the flag (the REPL does this before each input).
    pub fn reset(&self) {
        self.flag.store(false, Ordering::SeqCst);
    }

    /// Resolves once the flag is set.
    pub async fn wait_async(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_cancelled() {
                return;
            }
            // Also poll, in case the flag was set between the check and `notified`.
            tokio::select! {
                _ = notified => {},
                _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {},
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_round_trip() {
        let c = Cancel::new();
        assert!(!c.is_cancelled());
        let c2 = c.clone();
        c2.cancel();
        assert!(c.is_cancelled());
        c.reset();
        assert!(!c2.is_cancelled());
    }
}
