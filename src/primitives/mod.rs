//! The primitives runbooks call, one file (or folder) per backend:
//!
//! | file            | primitives                                                         |
//! |-----------------|--------------------------------------------------------------------|
//! | `core.rs`       | `step`, `record`, `refuse`, `sleep_ms`, `nodes`, `node_info`, ...   |
//! | `docker.rs`     | `docker_exec`, `container_status`, `stop_container`, ...            |
//! | `postgres/`     | `sql`, `sql_value`, `create_slot`, `promote`, `basebackup`, ...     |
//! | `pgbackrest.rs` | `pgbackrest`, `pgbackrest_configure`, `pgbackrest_info`, ...        |
//! | `redis.rs`      | `redis_log`, `record_backup`, `journal_last`                        |
//! | `http.rs`       | `http_post` (webhooks, for hooks)                                   |
//! | `clients.rs`    | `clients_alias`, `clients_check`, `clients_holders` ([clients])     |
//! | `hooks.rs`      | `role_changed` (runs `[hooks] on_role_change`)                      |
//!
//! `node.rs` holds what several of them do to a node (stop it cleanly, wait until it accepts
//! connections, read its server's facts, run a script on its data directory); the backend files
//! use it and never each other.
//!
//! Each backend has a `create_module(host)` that returns a Rhai module of native functions, each
//! registered with its parameter names and a doc comment (shown by `:help` in the REPL and
//! written to `docs/primitives.md`). A primitive that changes the cluster asks `host.change(...)`
//! first, which is what makes `--dry-run` print instead of act.

pub mod clients;
pub mod core;
pub mod docker;
pub mod hooks;
pub mod http;
pub mod logs;
pub mod node;
pub mod pgbackrest;
pub mod postgres;
pub mod redis;

use crate::runtime::host::Host;
use crate::table::ColumnOrders;
use rhai::{Engine, Module};
use std::sync::Arc;

/// An option of a map a script passed (`#{container: "x", port: 5440}`) as text: "" when it is
/// missing or `()`.
pub fn map_text(opts: &rhai::Map, key: &str) -> String {
    opts.get(key)
        .filter(|v| !v.is_unit())
        .map(|v| v.to_string())
        .unwrap_or_default()
}

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

/// A backend's primitives and where their source is (a file, or a folder for a backend split
/// into several files), for the reference.
pub struct Backend {
    pub name: &'static str,
    /// From the crate's root: `src/primitives/core.rs`, `src/primitives/postgres/`.
    pub source: &'static str,
    pub module: Module,
}

/// Every primitive module, in the order `docs/primitives.md` lists them.
///
/// `sql` and `print_table` share one [`ColumnOrders`]: rows keep their query's column order in
/// a table although each row is a Rhai map, whose keys are sorted.
pub fn modules(host: &Arc<Host>) -> Vec<Backend> {
    let orders: Arc<ColumnOrders> = host.column_orders.clone();
    let backend = |name, source, module| Backend {
        name,
        source,
        module,
    };
    vec![
        backend(
            "core",
            "src/primitives/core.rs",
            core::create_module(host.clone(), orders.clone()),
        ),
        backend(
            "docker",
            "src/primitives/docker.rs",
            docker::create_module(host.clone()),
        ),
        backend(
            "logs",
            "src/primitives/logs.rs",
            logs::create_module(host.clone()),
        ),
        backend(
            "postgres",
            "src/primitives/postgres/",
            postgres::create_module(host.clone(), orders),
        ),
        backend(
            "pgbackrest",
            "src/primitives/pgbackrest.rs",
            pgbackrest::create_module(host.clone()),
        ),
        backend(
            "redis",
            "src/primitives/redis.rs",
            redis::create_module(host.clone()),
        ),
        backend(
            "http",
            "src/primitives/http.rs",
            http::create_module(host.clone()),
        ),
        backend(
            "clients",
            "src/primitives/clients.rs",
            clients::create_module(host.clone()),
        ),
        backend(
            "hooks",
            "src/primitives/hooks.rs",
            hooks::create_module(host.clone()),
        ),
    ]
}

/// Registers every primitive into the engine's global namespace.
pub fn register_all(engine: &mut Engine, host: &Arc<Host>) {
    for b in modules(host) {
        engine.register_global_module(b.module.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_backends_source_is_where_the_reference_says() {
        let host = Arc::new(Host::new(crate::config::Config::defaults()));
        for b in modules(&host) {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(b.source);
            assert!(
                path.exists(),
                "{} names {}, which does not exist",
                b.name,
                b.source
            );
            assert_eq!(b.source.ends_with('/'), path.is_dir(), "{}", b.source);
        }
    }
}
