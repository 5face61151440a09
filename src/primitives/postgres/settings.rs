//! Server settings: `set_setting`, `reset_setting`, `settings_in_force`. A value is checked the
//! way PostgreSQL checks it (pg_settings' vartype, unit, min_val, max_val, enumvals) before it is
//! written, through ALTER SYSTEM with the quoting done here; on a node whose server does not
//! start, `postgresql.auto.conf` is edited in its data directory (a one-off container when the
//! container is stopped), checked against another node's pg_settings.

use super::sql::query_rows;
use super::R;
use crate::clients::postgres::{Rows, Value};
use crate::error::Class;
use crate::primitives::def;
use crate::primitives::node;
use crate::runtime::host::Host;
use rhai::{Dynamic, Map, Module};
use std::sync::Arc;

/// What pg_settings says of one parameter.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub name: String,
    /// In the base unit, as pg_settings.setting shows it.
    pub setting: String,
    pub unit: String,
    pub vartype: String,
    pub min_val: String,
    pub max_val: String,
    pub enumvals: Vec<String>,
    pub context: String,
}

/// Bytes in a memory unit, milliseconds in a time unit; None for other units.
fn unit_factor(unit: &str) -> Option<(char, f64)> {
    let (n, u) = match unit.find(|c: char| !c.is_ascii_digit()) {
        Some(0) | None => (1.0, unit),
        Some(i) => (unit[..i].parse().ok()?, &unit[i..]),
    };
    let (kind, f) = match u {
        "B" => ('m', 1.0),
        "kB" => ('m', 1024.0),
        "MB" => ('m', 1024.0 * 1024.0),
        "GB" => ('m', 1024.0 * 1024.0 * 1024.0),
        "TB" => ('m', 1024.0 * 1024.0 * 1024.0 * 1024.0),
        "us" => ('t', 0.001),
        "ms" => ('t', 1.0),
        "s" => ('t', 1000.0),
        "min" => ('t', 60_000.0),
        "h" => ('t', 3_600_000.0),
        "d" => ('t', 86_400_000.0),
        _ => return None,
    };
    Some((kind, n * f))
}

/// PostgreSQL's booleans: on, off, true, false, yes, no, 1, 0 and unique prefixes, any case.
fn parse_bool(v: &str) -> Option<bool> {
    let v = v.trim().to_ascii_lowercase();
    if v.is_empty() {
        return None;
    }
    match v.as_str() {
        "1" | "on" => return Some(true),
        "0" | "of" | "off" => return Some(false),
        _ => {}
    }
    for (word, b) in [
        ("true", true),
        ("false", false),
        ("yes", true),
        ("no", false),
    ] {
        if word.starts_with(&v) {
            return Some(b);
        }
    }
    None
}

impl Spec {
    /// The value in the parameter's base unit (a number), or what PostgreSQL would say is wrong
    /// with it. Booleans are 1 or 0; enums and strings have no number (`Ok(None)`).
    pub fn check(&self, value: &str) -> Result<Option<f64>, String> {
        let name = &self.name;
        let bad = |why: String| {
            Err(format!(
                "invalid value for parameter \"{name}\": \"{value}\"{why}"
            ))
        };
        match self.vartype.as_str() {
            "bool" => match parse_bool(value) {
                Some(b) => Ok(Some(if b { 1.0 } else { 0.0 })),
                None => bad(" (it takes on or off)".into()),
            },
            "enum" => {
                if self
                    .enumvals
                    .iter()
                    .any(|e| e.eq_ignore_ascii_case(value.trim()))
                {
                    Ok(None)
                } else {
                    bad(format!(" (available values: {})", self.enumvals.join(", ")))
                }
            }
            "integer" | "real" => {
                let t = value.trim();
                let split = t
                    .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
                    .unwrap_or(t.len());
                let (num, unit) = (t[..split].trim(), t[split..].trim());
                let Ok(n) = num.parse::<f64>() else {
                    return bad(String::new());
                };
                let mut base = n;
                if !unit.is_empty() {
                    let valid = match unit_factor(&self.unit).map(|u| u.0) {
                        Some('m') => "B, kB, MB, GB and TB",
                        Some('t') => "us, ms, s, min, h and d",
                        _ => return bad(" (this parameter takes no unit)".into()),
                    };
                    match (unit_factor(unit), unit_factor(&self.unit)) {
                        (Some((k, f)), Some((k2, f2))) if k == k2 => base = n * f / f2,
                        _ => return bad(format!(" (valid units for this parameter are {valid})")),
                    }
                }
                if self.vartype == "integer" {
                    base = base.round();
                }
                let min = self.min_val.parse::<f64>().ok();
                let max = self.max_val.parse::<f64>().ok();
                let shown = |x: f64| format_in_unit(x, &self.unit);
                if min.is_some_and(|m| base < m) || max.is_some_and(|m| base > m) {
                    return Err(format!(
                        "{value} is outside the valid range for parameter \"{name}\" ({} .. {})",
                        min.map(shown).unwrap_or_default(),
                        max.map(shown).unwrap_or_default()
                    ));
                }
                Ok(Some(base))
            }
            _ => Ok(None),
        }
    }

    /// Whether `value` is what `other` (both as written, in any unit) means for this parameter.
    pub fn same(&self, value: &str, other: &str) -> bool {
        match (self.check(value), self.check(other)) {
            (Ok(Some(a)), Ok(Some(b))) => (a - b).abs() < 1e-9 * a.abs().max(1.0),
            _ => value.trim().eq_ignore_ascii_case(other.trim()),
        }
    }

    /// The setting in force, as pg_settings shows it: a number of base units (`16384` of
    /// `8kB`), which `check` reads as such.
    fn in_force(&self) -> String {
        self.setting.clone()
    }
}

/// A number of base units as PostgreSQL shows it (`16384` of `8kB` is `128MB`).
fn format_in_unit(x: f64, unit: &str) -> String {
    if let Some((k, f)) = unit_factor(unit) {
        let total = x * f;
        let units: &[(&str, f64)] = if k == 'm' {
            &[
                ("TB", 1099511627776.0),
                ("GB", 1073741824.0),
                ("MB", 1048576.0),
                ("kB", 1024.0),
                ("B", 1.0),
            ]
        } else {
            &[
                ("d", 86_400_000.0),
                ("h", 3_600_000.0),
                ("min", 60_000.0),
                ("s", 1000.0),
                ("ms", 1.0),
            ]
        };
        for (u, m) in units {
            if total != 0.0 && total % m == 0.0 {
                return format!("{}{u}", total / m);
            }
        }
        return format!("{x}{unit}");
    }
    x.to_string()
}

fn text(rows: &Rows, col: &str) -> String {
    match rows.get(0, col) {
        Some(Value::Text(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(Value::Int(i)) => i.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Float(f)) => f.to_string(),
        Some(v) => format!("{v:?}"),
    }
}

const SPEC_QUERY: &str = "SELECT name, setting, coalesce(unit, '') AS unit, vartype, \
    coalesce(min_val, '') AS min_val, coalesce(max_val, '') AS max_val, \
    coalesce(array_to_string(enumvals, ','), '') AS enumvals, context \
    FROM pg_settings WHERE name = lower($1)";

/// The parameter as `node`'s server describes it; a runbook error for a name it does not know.
fn spec_of(h: &Host, primitive: &str, node: &str, name: &str) -> R<Spec> {
    let rows = query_rows(h, primitive, node, SPEC_QUERY, &[name.into()])?;
    if rows.rows.is_empty() {
        return Err(h.error(
            Class::Runbook,
            format!("{primitive} on {node}: the server has no parameter named '{name}'"),
        ));
    }
    let enumvals = text(&rows, "enumvals");
    Ok(Spec {
        name: text(&rows, "name"),
        setting: text(&rows, "setting"),
        unit: text(&rows, "unit"),
        vartype: text(&rows, "vartype"),
        min_val: text(&rows, "min_val"),
        max_val: text(&rows, "max_val"),
        enumvals: if enumvals.is_empty() {
            vec![]
        } else {
            enumvals.split(',').map(str::to_string).collect()
        },
        context: text(&rows, "context"),
    })
}

/// A literal for ALTER SYSTEM and postgresql.auto.conf: `'it''s'`.
fn literal(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// A parameter name as an identifier (names come from pg_settings: letters, digits, _ and .).
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The settings of a standby that must be at least the primary's, or it does not start
/// (PostgreSQL's hot standby rule).
const HOT_STANDBY_MINIMUMS: &[&str] = &[
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
];

/// `postgresql.auto.conf` with `name` set to `value` (or removed with `None`), and the value it
/// had there.
pub fn edit_auto_conf(conf: &str, name: &str, value: Option<&str>) -> (String, Option<String>) {
    let mut old = None;
    let mut out: Vec<String> = vec![];
    for line in conf.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        if !line.trim_start().starts_with('#') && key.eq_ignore_ascii_case(name) {
            let v = line.split_once('=').map(|x| x.1.trim()).unwrap_or("");
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(v);
            old = Some(v.replace("''", "'"));
            continue;
        }
        out.push(line.to_string());
    }
    if let Some(v) = value {
        out.push(format!("{name} = {}", literal(v)));
    }
    let mut s = out.join("\n");
    s.push('\n');
    (s, old)
}

/// Sets (`Some`) or resets (`None`) a parameter; what set_setting and reset_setting return.
fn apply(h: &Host, primitive: &str, node: &str, name: &str, value: Option<&str>) -> R<Map> {
    h.check_node(primitive, node)?;
    let up = h.pg.probe(node).unwrap_or(false);
    let mut out = Map::new();
    if up {
        let spec = spec_of(h, primitive, node, name)?;
        if spec.context == "internal" {
            return Err(h.error(
                Class::Runbook,
                format!("{primitive} on {node}: {name} cannot be changed (it is fixed when PostgreSQL is built or initialized)"),
            ));
        }
        if let Some(v) = value {
            spec.check(v).map_err(|e| {
                h.error(
                    Class::Runbook,
                    format!("{primitive} on {node}: {e}; nothing was changed"),
                )
            })?;
            hot_standby_rule(h, primitive, node, &spec, v)?;
        }
        let old = query_rows(
            h,
            primitive,
            node,
            "SELECT current_setting($1) AS v",
            &[name.into()],
        )?;
        let old = text(&old, "v");
        let changes = match value {
            Some(v) => !spec.same(v, &spec.in_force()),
            None => true,
        };
        let restart = spec.context == "postmaster" && changes;
        let stmt = match value {
            Some(v) => format!("ALTER SYSTEM SET {} = {}", ident(&spec.name), literal(v)),
            None => format!("ALTER SYSTEM RESET {}", ident(&spec.name)),
        };
        let when = if restart {
            "; takes effect at a restart"
        } else {
            ""
        };
        out.insert("old".into(), old.clone().into());
        out.insert("restart_needed".into(), Dynamic::from_bool(restart));
        out.insert("offline".into(), Dynamic::FALSE);
        if h.change(node, &format!("{stmt} (now {old}{when})")) {
            super::sql::pg_rows(h, primitive, node, &stmt, &[]).map_err(|e| {
                h.error(
                    Class::Runbook,
                    format!("{primitive} on {node}: the server rejected it ({stmt}): {}; nothing was changed", cause_of(&e)),
                )
            })?;
            super::sql::pg_rows(h, primitive, node, "SELECT pg_reload_conf()", &[])?;
            // The reload is asynchronous: a setting that needs no restart is waited for (5 s at
            // most), so that what follows (settings_in_force, a query) sees it in force.
            if let (Some(v), false) = (value, restart) {
                let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
                while std::time::Instant::now() < end {
                    let now = spec_of(h, primitive, node, name)?;
                    if now.same(v, &now.in_force()) {
                        break;
                    }
                    h.check_cancel()?;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
            out.insert("changed".into(), Dynamic::TRUE);
        } else {
            out.insert("changed".into(), Dynamic::FALSE);
        }
        return Ok(out);
    }
    // The server does not answer: its data directory, checked against another node's server.
    let other = h
        .config
        .nodes
        .keys()
        .filter(|n| n.as_str() != node)
        .find(|n| h.pg.probe(n).unwrap_or(false))
        .cloned();
    let checked_on = match (&other, value) {
        (Some(o), Some(v)) => {
            let spec = spec_of(h, primitive, o, name)?;
            if spec.context == "internal" {
                return Err(h.error(
                    Class::Runbook,
                    format!("{primitive} on {node}: {name} cannot be changed"),
                ));
            }
            spec.check(v).map_err(|e| {
                h.error(Class::Runbook, format!("{primitive} on {node}: {e} (checked against {o}'s server); nothing was changed"))
            })?;
            format!("checked against {o}'s pg_settings")
        }
        (None, Some(_)) => "not checked: no server answers".to_string(),
        (_, None) => String::new(),
    };
    let read = node::run_on_data_dir(h, primitive, node, "cat \"$PGDATA/postgresql.auto.conf\"")?;
    if read.exit_code != 0 {
        return Err(h.error(
            Class::Infrastructure,
            format!(
                "{primitive} on {node}: cannot read postgresql.auto.conf in its data directory: {}",
                read.stderr.trim()
            ),
        ));
    }
    let (conf, old) = edit_auto_conf(&read.stdout, name, value);
    out.insert(
        "old".into(),
        old.clone().map_or(Dynamic::UNIT, Dynamic::from),
    );
    out.insert("restart_needed".into(), Dynamic::TRUE);
    out.insert("offline".into(), Dynamic::TRUE);
    // A container that is up while its server does not answer is most often in a restart loop
    // (a setting keeps the server from starting, and the restart policy starts it again). A
    // start already under way would read the old file and fail once more, so the container is
    // stopped for the edit and started again after it: it is left as it was found, reading the
    // edit.
    let container = h.container(primitive, node)?;
    let was_up = h
        .docker_of(node)
        .state(&container)
        .map_err(|e| h.fail(primitive, node, e))
        .map(|s| matches!(s.as_str(), "running" | "restarting"))?;
    let what = match value {
        Some(v) => format!("write {name} = {} into postgresql.auto.conf in its data directory (PostgreSQL does not answer; {checked_on})", literal(v)),
        None => format!("remove {name} from postgresql.auto.conf in its data directory (PostgreSQL does not answer)"),
    };
    let what = if was_up {
        format!("{what}, stopping its container {container} for the edit (it is up, its server does not answer) and starting it again")
    } else {
        what
    };
    if !h.change(node, &what) {
        out.insert("changed".into(), Dynamic::FALSE);
        return Ok(out);
    }
    if was_up {
        h.docker_of(node)
            .stop(&container, 30)
            .map_err(|e| h.fail(primitive, node, e))?;
    }
    let script = "printf '%s' \"$PGRUNBOOK_AUTO_CONF\" > \"$PGDATA/postgresql.auto.conf.pgrunbook\" && \
                  mv -f \"$PGDATA/postgresql.auto.conf.pgrunbook\" \"$PGDATA/postgresql.auto.conf\"";
    let w = node::run_script(
        h,
        primitive,
        node,
        script,
        vec![format!("PGRUNBOOK_AUTO_CONF={conf}")],
    )?;
    if w.exit_code != 0 {
        return Err(h.error(
            Class::Infrastructure,
            format!(
                "{primitive} on {node}: cannot write postgresql.auto.conf: {}",
                w.stderr.trim()
            ),
        ));
    }
    if was_up {
        h.docker_of(node)
            .start(&container)
            .map_err(|e| h.fail(primitive, node, e))?;
    }
    h.say(&format!(
        "    {primitive} on {node}: PostgreSQL does not answer, so its postgresql.auto.conf was edited in its data directory ({}){}",
        if checked_on.is_empty() { "the setting removed".to_string() } else { checked_on },
        if was_up { "; its container, up but not answering, was stopped for the edit and started again" } else { "" }
    ));
    out.insert("changed".into(), Dynamic::TRUE);
    Ok(out)
}

/// The server's own message of a failed statement, without the client's wrapping.
fn cause_of(e: &rhai::EvalAltResult) -> String {
    match e {
        rhai::EvalAltResult::ErrorRuntime(v, _) => {
            match v.read_lock::<crate::error::PrimitiveError>() {
                Some(pe) => pe.cause.clone(),
                None => v.to_string(),
            }
        }
        other => other.to_string(),
    }
}

/// A standby with one of `HOT_STANDBY_MINIMUMS` below its primary's does not start: refused.
fn hot_standby_rule(h: &Host, primitive: &str, node: &str, spec: &Spec, value: &str) -> R<()> {
    if !HOT_STANDBY_MINIMUMS.contains(&spec.name.as_str()) {
        return Ok(());
    }
    let in_recovery = query_rows(
        h,
        primitive,
        node,
        "SELECT pg_is_in_recovery()::text AS r",
        &[],
    )?;
    let Ok(Some(wanted)) = spec.check(value) else {
        return Ok(());
    };
    for other in h.config.nodes.keys().filter(|n| n.as_str() != node) {
        if !h.pg.probe(other).unwrap_or(false) {
            continue;
        }
        let Ok(theirs) = spec_of(h, primitive, other, &spec.name) else {
            continue;
        };
        let Ok(r) = query_rows(
            h,
            primitive,
            other,
            "SELECT pg_is_in_recovery()::text AS r",
            &[],
        ) else {
            continue;
        };
        let their_value: f64 = theirs.setting.parse().unwrap_or(0.0);
        let (me_standby, other_primary) =
            (text(&in_recovery, "r") == "true", text(&r, "r") == "false");
        if me_standby && other_primary && wanted < their_value {
            return Err(h.error(
                Class::Refused,
                format!(
                    "{primitive} on {node}: {} = {value} is lower than on the primary {other} ({}): a standby needs it at least as high, or it does not start (hot standby). Raise it on the standby first, lower it on the primary first. Nothing was changed.",
                    spec.name, theirs.setting
                ),
            ));
        }
    }
    Ok(())
}

pub fn register(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    def!(
        m,
        "set_setting",
        ["node: &str", "name: &str", "value: Dynamic", "Map"],
        "Sets a server parameter with ALTER SYSTEM (quoting done here) and reloads:
        `set_setting(standby, \"shared_buffers\", \"256MB\")`. The value is checked first as
        PostgreSQL checks it (pg_settings' vartype, unit, min_val, max_val, enumvals): a value
        the server would reject is a runbook error and changes nothing; so is a standby's
        max_connections (and the other hot-standby minimums) below its primary's. Returns
        #{old, restart_needed, changed, offline}: `old` as current_setting showed it,
        `restart_needed` when the parameter takes effect only at a restart. In a dry run it says
        what it would do. On a node whose PostgreSQL does not answer (it does not start), it
        edits postgresql.auto.conf in the data directory (a one-off container when the container
        is stopped), checks the value against another node's server, and says so. A container
        that is up there (in a restart loop) is stopped for the edit and started again, so that
        its next start reads the edit.",
        move |node: &str, name: &str, value: Dynamic| -> R<Map> {
            let v = value.to_string();
            apply(&h, "set_setting", node, name, Some(&v))
        }
    );

    let h = host.clone();
    def!(
        m,
        "reset_setting",
        ["node: &str", "name: &str", "Map"],
        "Removes a parameter set with ALTER SYSTEM (ALTER SYSTEM RESET) and reloads; on a node
        that does not answer, removes it from postgresql.auto.conf in its data directory.
        Returns #{old, restart_needed, changed, offline}, as `set_setting`.",
        move |node: &str, name: &str| -> R<Map> { apply(&h, "reset_setting", node, name, None) }
    );

    let h = host.clone();
    def!(
        m,
        "settings_in_force",
        ["node: &str", "wanted: Map", "Map"],
        "Compares the settings in force on `node` with `wanted` (`#{shared_buffers: \"256MB\"}`),
        with units: 256MB is 0.25GB and 32768 (of 8kB). Returns #{ok, differ}: `differ` lists
        \"name: X in force, Y wanted\" for each that is not in force (a parameter waiting for a
        restart is not in force). A read: it runs in a dry run too.",
        move |node: &str, wanted: Map| -> R<Map> {
            let mut differ = rhai::Array::new();
            for (name, v) in &wanted {
                let spec = spec_of(&h, "settings_in_force", node, name)?;
                let v = v.to_string();
                spec.check(&v).map_err(|e| {
                    h.error(Class::Runbook, format!("settings_in_force on {node}: {e}"))
                })?;
                let pending = query_rows(
                    &h,
                    "settings_in_force",
                    node,
                    "SELECT pending_restart::text AS p FROM pg_settings WHERE name = $1",
                    &[spec.name.clone().into()],
                )?;
                let in_force = spec.in_force();
                if !spec.same(&v, &in_force) {
                    let shown = match spec.check(&in_force) {
                        Ok(Some(x)) if !spec.unit.is_empty() && spec.vartype != "bool" => {
                            format_in_unit(x, &spec.unit)
                        }
                        _ => in_force.clone(),
                    };
                    differ.push(format!("{name}: {shown} in force, {v} wanted").into());
                } else if text(&pending, "p") == "true" {
                    differ.push(
                        format!("{name}: {v} in force, but another value waits for a restart")
                            .into(),
                    );
                }
            }
            let mut out = Map::new();
            out.insert("ok".into(), Dynamic::from_bool(differ.is_empty()));
            out.insert("differ".into(), differ.into());
            Ok(out)
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(vartype: &str, unit: &str, min: &str, max: &str) -> Spec {
        Spec {
            name: "p".into(),
            setting: "16384".into(),
            unit: unit.into(),
            vartype: vartype.into(),
            min_val: min.into(),
            max_val: max.into(),
            enumvals: vec!["replica".into(), "logical".into(), "minimal".into()],
            context: "postmaster".into(),
        }
    }

    #[test]
    fn sizes_compare_with_units_and_ranges_hold() {
        let sb = spec("integer", "8kB", "16", "1073741823");
        assert_eq!(sb.check("256MB").unwrap(), Some(32768.0));
        assert!(sb.same("256MB", "0.25GB"));
        assert!(sb.same("256MB", "32768"));
        assert!(sb.same("128MB", &sb.in_force()));
        assert!(!sb.same("256MB", "128MB"));
        assert!(sb
            .check("8")
            .unwrap_err()
            .contains("outside the valid range"));
        assert!(sb
            .check("256mb")
            .unwrap_err()
            .contains("valid units for this parameter are B, kB, MB, GB and TB"));
        assert!(sb.check("256ms").is_err());
        assert!(sb.check("lots").is_err());
        let mc = spec("integer", "", "1", "262143");
        assert_eq!(mc.check("200").unwrap(), Some(200.0));
        assert!(mc.check("0").is_err());
        assert!(mc.check("10MB").unwrap_err().contains("takes no unit"));
        let t = spec("integer", "ms", "0", "2147483647");
        assert!(t.same("5s", "5000"));
        assert!(t.same("1min", "60s"));
    }

    #[test]
    fn booleans_enums_and_auto_conf() {
        let b = spec("bool", "", "", "");
        assert!(b.same("on", "true") && b.same("of", "no") && !b.same("on", "off"));
        assert!(b.check("maybe").is_err());
        let e = spec("enum", "", "", "");
        assert!(e.check("Logical").is_ok());
        assert!(e
            .check("archive")
            .unwrap_err()
            .contains("available values: replica, logical, minimal"));
        let conf =
            "# Do not edit this file manually!\nshared_buffers = '128MB'\nwork_mem = '4MB'\n";
        let (new, old) = edit_auto_conf(conf, "shared_buffers", Some("it's"));
        assert_eq!(old.as_deref(), Some("128MB"));
        assert_eq!(
            new,
            "# Do not edit this file manually!\nwork_mem = '4MB'\nshared_buffers = 'it''s'\n"
        );
        let (new, old) = edit_auto_conf(&new, "SHARED_BUFFERS", None);
        assert_eq!(old.as_deref(), Some("it's"));
        assert_eq!(new, "# Do not edit this file manually!\nwork_mem = '4MB'\n");
    }
}
