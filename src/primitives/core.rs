//! Core primitives: steps, measured values, refusals, time, and the cluster's configuration.

use super::def;
use crate::errln;
use crate::error::{Class, PrimitiveError};
use crate::runtime::host::Host;
use crate::table::ColumnOrders;
use rhai::{Array, Dynamic, ImmutableString, Map, Module};
use std::sync::Arc;

/// `orders`: the column orders of `sql`'s recent results, which `print_table(rows)` follows.
pub fn create_module(host: Arc<Host>, orders: Arc<ColumnOrders>) -> Module {
    let mut m = Module::new();

    let h = host.clone();
    def!(
        &mut m,
        "step",
        ["name: &str"],
        "Starts a named step of the runbook (the previous one ends here). Each step is printed,
        timed and journaled; Ctrl-C stops the run between steps.",
        move |name: &str| h.step(name)
    );

    let h = host.clone();
    def!(
        &mut m,
        "record",
        ["key: &str", "value: Dynamic"],
        "Records a measured value (a time, an LSN, bytes lost) in the run's journal entry.",
        move |key: &str, value: Dynamic| {
            // A caught error is recorded as its message (Rust's Display of a Dynamic holding a
            // custom type gives only the type's name).
            let text = match value.read_lock::<PrimitiveError>() {
                Some(e) => e.to_string(),
                None => value.to_string(),
            };
            h.record(key, text)
        }
    );

    let h = host.clone();
    def!(
        &mut m,
        "refuse",
        ["reason: &str"],
        "Stops the runbook because the cluster is not in a state it accepts (exit code 4).
        Nothing after it runs.",
        move |reason: &str| -> Result<(), Box<rhai::EvalAltResult>> {
            Err(h.error(Class::Refused, reason))
        }
    );

    let h = host.clone();
    def!(
        &mut m,
        "sleep_ms",
        ["ms: i64"],
        "Waits `ms` milliseconds (wakes early, with an error, on Ctrl-C).",
        move |ms: i64| -> Result<(), Box<rhai::EvalAltResult>> {
            let end =
                std::time::Instant::now() + std::time::Duration::from_millis(ms.max(0) as u64);
            while std::time::Instant::now() < end {
                h.check_cancel()?;
                let left = end.saturating_duration_since(std::time::Instant::now());
                std::thread::sleep(left.min(std::time::Duration::from_millis(20)));
            }
            Ok(())
        }
    );

    def!(
        &mut m,
        "now_ms",
        ["i64"],
        "Milliseconds since the Unix epoch (for timing steps).",
        || -> i64 {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0)
        }
    );

    let h = host.clone();
    def!(
        &mut m,
        "elapsed_ms",
        ["i64"],
        "Milliseconds since the runbook started.",
        move || -> i64 { h.run.lock().unwrap().started.elapsed().as_millis() as i64 }
    );

    let h = host.clone();
    def!(
        &mut m,
        "nodes",
        ["Array"],
        "The names of the configured nodes.",
        move || -> Array {
            h.config
                .nodes
                .keys()
                .map(|k| Dynamic::from(k.clone()))
                .collect()
        }
    );

    let h = host.clone();
    def!(
        &mut m,
        "node_info",
        ["node: &str", "Map"],
        "A node's configuration: #{name, container, host, port, slot, init}.",
        move |node: &str| -> Result<Map, Box<rhai::EvalAltResult>> {
            let n = h
                .config
                .node(node)
                .map_err(|e| h.error(Class::Runbook, format!("node_info: {e}")))?;
            let mut m = Map::new();
            m.insert("name".into(), node.into());
            m.insert("container".into(), n.container.clone().into());
            m.insert("host".into(), n.host.clone().into());
            m.insert("port".into(), Dynamic::from_int(n.port as i64));
            m.insert("slot".into(), n.slot.clone().into());
            m.insert("init".into(), n.init.clone().into());
            Ok(m)
        }
    );

    let h = host.clone();
    def!(&mut m, "settings", ["Map"],
        "The cluster settings runbooks use: #{database, replication_user, stanza, repo_path, data_dir, synchronous, verify_table, lab_label (the label of what pgrunbook creates: scratch containers are named after it)}.",
        move || -> Map {
            let mut m = Map::new();
            m.insert("database".into(), h.config.cluster.database.clone().into());
            m.insert("replication_user".into(), h.config.cluster.replication_user.clone().into());
            m.insert("stanza".into(), h.config.pgbackrest.stanza.clone().into());
            m.insert("repo_path".into(), h.config.pgbackrest.repo_path.clone().into());
            m.insert("data_dir".into(), h.config.cluster.data_dir.clone().into());
            m.insert("synchronous".into(), Dynamic::from_bool(h.config.cluster.synchronous));
            m.insert("verify_table".into(), h.config.cluster.verify_table.clone().into());
            m.insert("lab_label".into(), h.config.lab.label.clone().into());
            m
        });

    let h = host.clone();
    def!(
        &mut m,
        "is_dry_run",
        ["bool"],
        "True during a dry run (`--dry-run`, `:dry on`): changes are printed, not made.",
        move || -> bool { h.dry_run() }
    );

    def!(
        &mut m,
        "join",
        ["items: Array", "separator: &str", "String"],
        "The items as text, separated by `separator`: `join([\"a\", \"b\"], \", \")` or
        `nodes().join(\", \")` is \"a, b\"; an empty array gives \"\".",
        |items: Array, separator: &str| -> String {
            items
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(separator)
        }
    );

    let (h, o) = (host.clone(), orders);
    def!(
        &mut m,
        "print_table",
        ["rows: Array"],
        "Prints an array of maps (rows from `sql`) as a table. Rows from `sql` or `slots` keep
        the query's column order: a map lists its keys sorted, so `sql` remembers the columns of
        its recent results (the last 64), and rows whose keys are exactly one result's columns are
        shown in that result's order (the most recent such result decides). Other rows show
        their keys sorted; `print_table(rows, columns)` chooses.",
        move |rows: Array| h.say(crate::table::render_ordered(&rows, &o).trim_end())
    );

    let h = host.clone();
    def!(
        &mut m,
        "print_table",
        ["rows: Array", "columns: Array"],
        "Prints rows as a table with the given columns, in that order.",
        move |rows: Array, cols: Array| {
            let cols: Vec<String> = cols.iter().map(|c| c.to_string()).collect();
            let cells: Vec<Vec<String>> = rows
                .iter()
                .filter_map(|r| r.read_lock::<Map>().map(|m| m.clone()))
                .map(|m| {
                    cols.iter()
                        .map(|c| {
                            m.get(c.as_str())
                                .map(crate::table::cell)
                                .unwrap_or_default()
                        })
                        .collect()
                })
                .collect();
            h.say(crate::table::render_cells(&cols, &cells).trim_end());
        }
    );

    let h = host;
    def!(
        &mut m,
        "warn",
        ["message: &str"],
        "Prints a warning on stderr.",
        move |msg: ImmutableString| errln!("warning: {}", h.mask(&msg))
    );

    m
}
