//! The primitives runbooks call, one file per backend:
//!
//! | file            | primitives                                                         |
//! |-----------------|--------------------------------------------------------------------|
//! | `core.rs`       | `step`, `record`, `refuse`, `sleep_ms`, `nodes`, `node_info`, ...   |
//! | `docker.rs`     | `docker_exec`, `container_status`, `stop_container`, ...            |
//! | `postgres.rs`   | `sql`, `sql_value`, `create_slot`, `promote`, `basebackup`, ...     |
//! | `pgbackrest.rs` | `pgbackrest`, `pgbackrest_configure`, `pgbackrest_info`, ...        |
//! | `redis.rs`      | `redis_log`, `record_backup`, `journal_last`                        |
//!
//! `node.rs` holds what several of them do to a node (stop it cleanly, wait until it accepts
//! connections, read its server's facts, run a script on its data directory); the backend files
//! use it and never each other.
//!
//! Each file has a `create_module(host)` that returns a Rhai module of native functions, each
//! registered with its parameter names and a doc comment (shown by `:help` in the REPL and
//! written to `docs/primitives.md`). A primitive that changes the cluster asks `host.change(...)`
//! first, which is what makes `--dry-run` print instead of act.

pub mod core;
pub mod docker;
pub mod node;
pub mod pgbackrest;
pub mod postgres;
pub mod redis;

use crate::runtime::host::Host;
use rhai::{Engine, Module};
use std::sync::Arc;

/// Turns a doc string into Rhai doc-comment lines.
pub fn doc_lines(doc: &str) -> Vec<String> {
    doc.trim()
        .lines()
        .map(|l| format!("/// {}", l.trim()).trim_end().to_string())
        .collect()
}

/// Registers one native function with its parameter names and doc comment.
///
/// `def!(module, "name", ["node: &str", "query: &str", "Array"], "doc", |node: &str, q: &str| ...)`
macro_rules! def {
    ($m:expr, $name:expr, [$($p:expr),* $(,)?], $doc:expr, $f:expr) => {
        rhai::FuncRegistration::new($name)
            .with_volatility(true)
            .with_params_info([$($p),*])
            .with_comments($crate::primitives::doc_lines($doc))
            .set_into_module($m, $f);
    };
}
pub(crate) use def;

/// Every primitive module, in the order `docs/primitives.md` lists them.
pub fn modules(host: &Arc<Host>) -> Vec<(&'static str, Module)> {
    vec![
        ("core", core::create_module(host.clone())),
        ("docker", docker::create_module(host.clone())),
        ("postgres", postgres::create_module(host.clone())),
        ("pgbackrest", pgbackrest::create_module(host.clone())),
        ("redis", redis::create_module(host.clone())),
    ]
}

/// Registers every primitive into the engine's global namespace.
pub fn register_all(engine: &mut Engine, host: &Arc<Host>) {
    for (_, m) in modules(host) {
        engine.register_global_module(m.into());
    }
}
