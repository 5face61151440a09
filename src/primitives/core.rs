//! Core primitives: steps, measured values, refusals, time, and the cluster's configuration.

use super::def;
use crate::errln;
use crate::error::{Class, PrimitiveError};
use crate::runtime::host::Host;
use crate::table::ColumnOrders;
use rhai::{Array, Dynamic, ImmutableString, Map, Module, NativeCallContext};
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
        timed and journaled; Ctrl-C stops the run between steps. A step of a stdlib procedure
        another runbook called (`switchover::run`) is named after it: \"switchover: Promote
        pg-replica\", so that the journal of the run tells one story.",
        move |ctx: NativeCallContext, name: &str| {
            let name = match procedure_of(&ctx, &h) {
                Some(p) => format!("{p}: {name}"),
                None => name.to_string(),
            };
            h.step(&name)
        }
    );

    let h = host.clone();
    def!(
        &mut m,
        "record",
        ["key: &str", "value: Dynamic"],
        "Records a measured value (a time, an LSN, bytes lost) in the run's journal entry. Recorded
        by a stdlib procedure another runbook called (`switchover::run`), the key is prefixed
        with the procedure's name: `switchover.writes_unavailable_ms`.",
        move |ctx: NativeCallContext, key: &str, value: Dynamic| {
            // A caught error is recorded as its message (Rust's Display of a Dynamic holding a
            // custom type gives only the type's name).
            let text = match value.read_lock::<PrimitiveError>() {
                Some(e) => e.to_string(),
                None => value.to_string(),
            };
            match procedure_of(&ctx, &h) {
                Some(p) => h.record(&format!("{p}.{key}"), text),
                None => h.record(key, text),
            }
        }
    );

    let h = host.clone();
    def!(
        &mut m,
        "procedure_options",
        ["procedure: &str", "given: Dynamic", "defaults: Map", "Map"],
        "The options a stdlib procedure was called with (`switchover::run(#{ to: \"pg-bases2\" })`),
        each missing one taken from `defaults`. `given` is a map or `()`. An option that
        `defaults` does not name, or of another kind than its default, is an error naming the
        procedure and the options it takes; a size may be given as text (\"16MB\") where the
        default is a number of bytes.",
        move |procedure: &str, given: Dynamic, defaults: Map| -> Result<Map, Box<rhai::EvalAltResult>> {
            merge_options(procedure, given, defaults).map_err(|e| h.error(Class::Runbook, e))
        }
    );

    let h = host.clone();
    def!(
        &mut m,
        "plan_assume",
        ["what: &str"],
        "In a dry run, notes a change the plan includes but did not simulate (\"the switchover to
        pg-replica above\"): later steps whose outcome depends on it ask `plan_assumed()` and say
        so in the plan, instead of checking a cluster that did not change. Does nothing in a real
        run.",
        move |what: &str| {
            if h.dry_run() {
                h.run.lock().unwrap().assumed.push(what.to_string());
            }
        }
    );

    let h = host.clone();
    def!(
        &mut m,
        "plan_assumed",
        ["Array"],
        "In a dry run, the changes `plan_assume` noted so far, oldest first; `[]` in a real run.",
        move || -> Array {
            h.run
                .lock()
                .unwrap()
                .assumed
                .iter()
                .map(|a| Dynamic::from(a.clone()))
                .collect()
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
        "A node's configuration: #{name, container, host, port, slot, init, priority, engine}:
        `priority` is its failover preference (0: never promoted), `engine` the Docker engine it
        lives on, as `status` shows it.",
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
            m.insert("priority".into(), Dynamic::from_int(i64::from(n.priority)));
            m.insert("engine".into(), h.docker_of(node).engine().shown().into());
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

/// The stdlib procedure (`switchover`) whose code calls a primitive, when it is not the runbook
/// under way: a procedure called from another runbook. The shipped `switchover` runbook calling
/// `switchover::run` gives `None`, so its steps keep their names.
fn procedure_of(ctx: &NativeCallContext, host: &Host) -> Option<String> {
    let source = ctx.call_source()?;
    let stem = |p: &str| {
        std::path::Path::new(p)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
    };
    if !source.ends_with(".rhai") || !source.contains("stdlib/") {
        return None;
    }
    let module = stem(source)?;
    let runbook = host.run.lock().unwrap().runbook.clone();
    (stem(&format!("{runbook}.rhai")).as_deref() != Some(module.as_str())).then_some(module)
}

/// `procedure_options`: `given` over `defaults`, or what is wrong with `given`.
pub fn merge_options(procedure: &str, given: Dynamic, defaults: Map) -> Result<Map, String> {
    let names = || {
        defaults
            .keys()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if given.is_unit() {
        return Ok(defaults);
    }
    let Some(given) = given.clone().try_cast::<Map>() else {
        return Err(format!(
            "{procedure}::run takes a map of options (#{{ {} }}) or (), not {}",
            names(),
            given.type_name()
        ));
    };
    let mut out = defaults.clone();
    for (k, v) in given {
        let Some(default) = defaults.get(&k) else {
            let hint = crate::suggest::nearest(k.as_str(), defaults.keys().map(|k| k.as_str()))
                .map(|s| format!("; did you mean {s}?"))
                .unwrap_or_default();
            return Err(format!(
                "{procedure}::run has no option '{k}' (its options are {}){hint}",
                names()
            ));
        };
        let v = if default.is_unit() || v.type_name() == default.type_name() {
            v
        } else if default.is_int() && v.is_string() {
            let raw = v.to_string();
            crate::engine::runbook::parse_size(&raw)
                .map(Dynamic::from_int)
                .ok_or_else(|| {
                    format!("{procedure}::run: option {k} takes an integer or a size (16MB), not {raw:?}")
                })?
        } else {
            let kind = |d: &Dynamic| {
                match d.type_name() {
                    "i64" => "number",
                    "f64" => "decimal number",
                    "bool" => "bool",
                    "string" => "string",
                    other => other,
                }
                .to_string()
            };
            return Err(format!(
                "{procedure}::run: option {k} takes a {} (like its default, {default}), not a {} ({v})",
                kind(default),
                kind(&v)
            ));
        };
        out.insert(k, v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Map {
        let mut m = Map::new();
        m.insert("max_lag".into(), Dynamic::from_int(16 << 20));
        m.insert("to".into(), Dynamic::UNIT);
        m
    }

    #[test]
    fn options_take_defaults_sizes_and_name_what_is_wrong() {
        let got = merge_options("switchover", Dynamic::UNIT, defaults()).unwrap();
        assert_eq!(got["max_lag"].as_int().unwrap(), 16 << 20);
        let mut given = Map::new();
        given.insert("max_lag".into(), "1MB".into());
        given.insert("to".into(), "pg-bases2".into());
        let got = merge_options("switchover", Dynamic::from_map(given), defaults()).unwrap();
        assert_eq!(got["max_lag"].as_int().unwrap(), 1 << 20);
        assert_eq!(got["to"].to_string(), "pg-bases2");
        let mut given = Map::new();
        given.insert("maxlag".into(), Dynamic::from_int(1));
        let e = merge_options("switchover", Dynamic::from_map(given), defaults()).unwrap_err();
        assert_eq!(
            e,
            "switchover::run has no option 'maxlag' (its options are max_lag, to); did you mean max_lag?"
        );
        let mut given = Map::new();
        given.insert("max_lag".into(), Dynamic::from_bool(true));
        let e = merge_options("switchover", Dynamic::from_map(given), defaults()).unwrap_err();
        assert!(
            e.contains(
                "option max_lag takes a number (like its default, 16777216), not a bool (true)"
            ),
            "{e}"
        );
        let e = merge_options("switchover", Dynamic::from("x"), defaults()).unwrap_err();
        assert!(
            e.starts_with("switchover::run takes a map of options"),
            "{e}"
        );
    }
}
