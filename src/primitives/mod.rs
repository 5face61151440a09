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

use crate::error::{Location, PrimitiveError};
use crate::runtime::host::Host;
use crate::table::ColumnOrders;
use rhai::{
    Dynamic, Engine, EvalAltResult, FuncRegistration, Module, NativeCallContext, Position,
    RhaiFunc, RhaiNativeFunc, Shared, Variant,
};
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

/// Registers one native function with its parameter names and doc comment, through
/// [`register`] (which makes its errors remember where it was called).
///
/// `def!(module, "name", ["node: &str", "query: &str", "Array"], "doc", |node: &str, q: &str| ...)`
macro_rules! def {
    ($m:expr, $name:expr, [$($p:expr),* $(,)?], $doc:expr, $f:expr) => {
        $crate::primitives::register(
            rhai::FuncRegistration::new($name)
                .with_params_info([$($p),*])
                .with_comments($crate::primitives::doc_lines($doc)),
            $m,
            $f,
        );
    };
}
pub(crate) use def;

/// Registers `f` into `module` as `reg` says (volatile: a primitive's result is never cached), the
/// way `FuncRegistration::set_into_module` does, through [`located`].
pub fn register<A: 'static, const N: usize, const X: bool, R, const F: bool, FUNC>(
    reg: FuncRegistration,
    module: &mut Module,
    f: FUNC,
) where
    R: Variant + Clone,
    FUNC: RhaiNativeFunc<A, N, X, R, F> + Send + Sync + 'static,
{
    // Pure (callable on a constant) as `set_into_module` has it for a function that is not a
    // setter or an indexer, which no primitive is.
    let func = located(f.into_rhai_function(true, true));
    reg.set_into_module_raw(module, FUNC::param_types(), func);
}

/// `func`, with the errors it raises stamped with where it was called: the first time a
/// `PrimitiveError` comes out of a call, its `raised_at` is set to the caller's source and the
/// call's position. Rhai gives that position to the error too (`fill_position`), but a script
/// that catches the error gets only the value; with the stamp in the value, `throw e` after a
/// `catch` still points at the call that failed (`engine::to_failure`). A primitive that calls
/// back into a script (none stamps twice) keeps the innermost call. Only the error path costs.
pub fn located(func: RhaiFunc) -> RhaiFunc {
    match func {
        RhaiFunc::Pure {
            func,
            has_context,
            is_pure,
            is_volatile,
        } => RhaiFunc::Pure {
            func: stamped(func, has_context),
            has_context: true,
            is_pure,
            is_volatile,
        },
        RhaiFunc::Method {
            func,
            has_context,
            is_pure,
            is_volatile,
        } => RhaiFunc::Method {
            func: stamped(func, has_context),
            has_context: true,
            is_pure,
            is_volatile,
        },
        other => other,
    }
}

type NativeFn = dyn Fn(Option<NativeCallContext>, &mut [&mut Dynamic]) -> Result<Dynamic, Box<EvalAltResult>>
    + Send
    + Sync;

fn stamped(inner: Shared<NativeFn>, wants_context: bool) -> Shared<NativeFn> {
    Shared::new(
        move |ctx: Option<NativeCallContext>, args: &mut [&mut Dynamic]| {
            if wants_context {
                // The context goes to the function: keep what the stamp needs first.
                let at = ctx
                    .as_ref()
                    .map(|c| (c.call_source().map(str::to_string), c.call_position()));
                inner(ctx, args).map_err(|e| match at {
                    Some((src, pos)) => stamp(e, src.as_deref(), pos),
                    None => e,
                })
            } else {
                inner(None, args).map_err(|e| match &ctx {
                    Some(c) => stamp(e, c.call_source(), c.call_position()),
                    None => e,
                })
            }
        },
    )
}

/// Sets where a `PrimitiveError` was raised, unless it already says.
fn stamp(mut err: Box<EvalAltResult>, source: Option<&str>, pos: Position) -> Box<EvalAltResult> {
    if let (EvalAltResult::ErrorRuntime(v, _), Some(line)) = (&mut *err, pos.line()) {
        if let Some(mut pe) = v.write_lock::<PrimitiveError>() {
            if pe.raised_at.is_none() {
                pe.raised_at = Some(Location {
                    file: source.unwrap_or_default().to_string(),
                    line,
                    col: pos.position().unwrap_or(1),
                });
            }
        }
    }
    err
}

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
