//! Reading the journal back: `pgrunbook journal` (one line per run like `patronictl history`)
//! and `pgrunbook journal RUN_ID`, runs grouped from their entries, the reading of a stream from
//! Redis and the spool (`backups` reads its stream the same way), the conversion of the stored
//! strings to typed JSON values, and sizes for people.
//!
//! Redis stores every field as a string. The `--json` outputs convert at output, field by field
//! (`typed`): an integer becomes a number, `true`/`false` a boolean, the JSON-valued fields
//! (`metrics`, `params`, `planned`) their object or array, converted the same way inside. Fields
//! that are identifiers (`id`, `run_id`, `cluster`, `label`) stay strings even when they look like
//! numbers. The schema is in docs/json.md.

use super::{infra, load_config};
use crate::clients::redis::{Entry, JOURNAL};
use crate::error::Failure;
use crate::runtime::host::Host;
use crate::{errln, out, outln};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// `journal`: one line per run, newest first (`last` counts runs); with a run id (or a unique
/// prefix of one), that run. `json` prints the entries of those runs, their values typed.
pub fn run(
    config: Option<&Path>,
    run: Option<&str>,
    last: usize,
    json: bool,
) -> Result<(), Failure> {
    let host = open_streams(config)?;
    let runs = match run {
        Some(prefix) => {
            let entries = read_stream(&host, JOURNAL, 1 << 30)?;
            let runs: Vec<Run> = group(&entries)
                .into_iter()
                .filter(|r| r.run_id.starts_with(prefix))
                .collect();
            match runs.len() {
                0 => {
                    return Err(Failure::usage(format!(
                        "no run {prefix:?} in the journal; `pgrunbook journal` lists the runs"
                    )))
                }
                1 => runs,
                n => {
                    let ids: Vec<&str> = runs.iter().take(5).map(|r| r.run_id.as_str()).collect();
                    return Err(Failure::usage(format!(
                        "{prefix:?} is the start of {n} run ids ({}{}); give more of it",
                        ids.join(", "),
                        if n > 5 { ", ..." } else { "" }
                    )));
                }
            }
        }
        None => {
            // Enough entries for `last` runs: more are read until the stream (or spool) is
            // exhausted or a run older than the `last` newest shows up.
            let mut want = (last.max(1) * 64).max(256);
            loop {
                let entries = read_stream(&host, JOURNAL, want)?;
                let mut runs = group(&entries);
                if runs.len() > last || entries.len() < want || want >= 1 << 24 {
                    runs.truncate(last);
                    break runs;
                }
                want *= 8;
            }
        }
    };
    if json {
        let entries: Vec<Value> = runs
            .iter()
            .flat_map(|r| r.entries.iter().rev().map(typed_entry))
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&entries).unwrap_or_default()
        );
        return Ok(());
    }
    match (run, runs.first()) {
        (Some(_), Some(r)) => out!("{}", render_run(r)),
        (None, None) => outln!("(no journal entries in Redis or in the spool)"),
        (None, Some(_)) => out!("{}", render_runs(&runs)),
        (Some(_), None) => {}
    }
    Ok(())
}

/// The host the journal streams are read with, its spool delivered first.
pub fn open_streams(config: Option<&Path>) -> Result<Host, Failure> {
    let host = Host::new(load_config(config)?);
    host.learn_cluster();
    host.journal.flush_spool();
    Ok(host)
}

/// The newest `n` entries of `stream`, from Redis and from this cluster's spool. With Redis down,
/// what is still spooled is used (with a warning); only with nothing spooled either is Redis
/// being down an error.
pub fn read_stream(host: &Host, stream: &str, n: usize) -> Result<Vec<Entry>, Failure> {
    let j = &host.journal;
    let (entries, unreachable) = j.last_with_spool(stream, n);
    if let Some(e) = unreachable {
        if !j.has_spooled() {
            return Err(infra(e));
        }
        errln!(
            "warning: {e:#}; showing the entries still spooled in {} (not delivered yet)",
            host.config.spool_path().display()
        );
    }
    Ok(entries)
}

/// Fields that stay strings whatever they hold: identifiers, not quantities.
const IDENTIFIERS: [&str; 4] = ["id", "run_id", "cluster", "label"];
/// Fields whose string is JSON written by the host.
const JSON_FIELDS: [&str; 3] = ["metrics", "params", "planned"];

/// A stored string as the JSON value it stands for.
pub fn scalar(v: &str) -> Value {
    match v {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        "()" => return Value::Null,
        _ => {}
    }
    if let Ok(n) = v.parse::<i64>() {
        // Only a number written the canonical way: `007` or `+1` are not quantities.
        if n.to_string() == v {
            return Value::from(n);
        }
    }
    if let Ok(n) = v.parse::<u64>() {
        if n.to_string() == v {
            return Value::from(n);
        }
    }
    let decimal = v.split_once('.').is_some_and(|(a, b)| {
        let a = a.strip_prefix('-').unwrap_or(a);
        !a.is_empty()
            && !b.is_empty()
            && a.bytes().all(|c| c.is_ascii_digit())
            && b.bytes().all(|c| c.is_ascii_digit())
    });
    if decimal {
        if let Some(n) = v.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(v.to_string())
}

/// Strings inside a parsed JSON value converted like top-level fields.
fn deep(key: &str, v: Value) -> Value {
    match v {
        Value::String(s) if IDENTIFIERS.contains(&key) => Value::String(s),
        Value::String(s) => scalar(&s),
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let v = deep(&k, v);
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(|v| deep(key, v)).collect()),
        other => other,
    }
}

/// One stored field as its typed JSON value.
pub fn typed(key: &str, v: &str) -> Value {
    if IDENTIFIERS.contains(&key) {
        return Value::String(v.to_string());
    }
    if JSON_FIELDS.contains(&key) {
        if let Ok(parsed) = serde_json::from_str::<Value>(v) {
            return deep(key, parsed);
        }
    }
    scalar(v)
}

/// The fields of an entry as a typed JSON object.
pub fn typed_fields(fields: &BTreeMap<String, String>) -> Value {
    Value::Object(
        fields
            .iter()
            .map(|(k, v)| (k.clone(), typed(k, v)))
            .collect::<Map<String, Value>>(),
    )
}

/// An entry as `{"id": ..., "fields": {...}}`, its fields typed.
pub fn typed_entry(e: &Entry) -> Value {
    serde_json::json!({ "id": e.id, "fields": typed_fields(&e.fields) })
}

/// For `#[serde(serialize_with)]`: optional fields serialized typed.
pub fn serialize_typed<S: serde::Serializer>(
    v: &Option<BTreeMap<String, String>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::Serialize;
    v.as_ref().map(typed_fields).serialize(s)
}

/// A byte count for people: `512 B`, `29.7 MB` (units of 1024, as PostgreSQL's).
pub fn human_size(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes.abs() < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A stored byte count for people; anything else as it is.
pub fn human_size_str(v: &str) -> String {
    v.parse::<i64>()
        .map(human_size)
        .unwrap_or_else(|_| v.to_string())
}

/// A duration in milliseconds for people: `297 ms`, `4.2 s`, `3m 05s`.
pub fn human_ms(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{}m {:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// One run, gathered from its entries.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub run_id: String,
    pub runbook: String,
    /// The start entry's time, else the oldest entry's.
    pub started: String,
    pub start: Option<Entry>,
    pub end: Option<Entry>,
    /// Every entry of the run, oldest first.
    pub entries: Vec<Entry>,
}

impl Run {
    /// `ok`, `failed`, `interrupted`, or `unfinished` (a start with no end: under way, or the
    /// process was killed).
    pub fn outcome(&self) -> String {
        match &self.end {
            Some(e) => e.fields.get("outcome").cloned().unwrap_or_default(),
            None => "unfinished".into(),
        }
    }

    fn field(&self, k: &str) -> Option<&String> {
        self.entries.iter().rev().find_map(|e| e.fields.get(k))
    }

    pub fn dry_run(&self) -> bool {
        self.field("dry_run").is_some_and(|v| v == "true")
    }

    pub fn spooled(&self) -> bool {
        self.entries
            .iter()
            .any(|e| e.fields.get("spooled").is_some_and(|v| v == "true"))
    }

    pub fn duration_ms(&self) -> Option<i64> {
        self.end.as_ref()?.fields.get("duration_ms")?.parse().ok()
    }

    pub fn metrics(&self) -> BTreeMap<String, String> {
        self.end
            .as_ref()
            .and_then(|e| e.fields.get("metrics"))
            .and_then(|m| serde_json::from_str::<BTreeMap<String, Value>>(m).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                let s = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, s)
            })
            .collect()
    }

    /// The figures worth a glance: time to writes, data lost, method, backup.
    pub fn figures(&self) -> String {
        let m = self.metrics();
        let mut out = vec![];
        if self.dry_run() {
            out.push("dry run".to_string());
        }
        if let Some(v) = m.get("time_to_writes_ms") {
            let t = v.parse().map(human_ms).unwrap_or_else(|_| v.clone());
            out.push(format!("writes after {t}"));
        }
        if let Some(v) = m.get("data_lost_bytes") {
            out.push(format!("data lost {}", human_size_str(v)));
        }
        if let Some(v) = m.get("promoted") {
            out.push(format!("promoted {v}"));
        }
        if let Some(v) = m.get("method") {
            out.push(format!("method {v}"));
        }
        if let Some(v) = m.get("backup_label") {
            match m.get("backup_type") {
                Some(t) => out.push(format!("backup {v} ({t})")),
                None => out.push(format!("backup {v}")),
            }
        }
        if self.end.is_none() {
            out.push("no end entry: under way or interrupted".into());
        }
        if let Some(e) = self.end.as_ref().and_then(|e| e.fields.get("error")) {
            let short: String = e.chars().take(60).collect();
            out.push(format!("error: {short}"));
        }
        if self.spooled() {
            out.push("spooled (not delivered yet)".into());
        }
        out.join(", ")
    }
}

/// Entries (newest first) grouped into runs, newest first by start. Entries without a run id
/// are left out.
pub fn group(entries: &[Entry]) -> Vec<Run> {
    let mut runs: Vec<Run> = vec![];
    for e in entries.iter().rev() {
        let Some(id) = e.fields.get("run_id").filter(|s| !s.is_empty()) else {
            continue;
        };
        let i = match runs.iter().position(|r| &r.run_id == id) {
            Some(i) => i,
            None => {
                runs.push(Run {
                    run_id: id.clone(),
                    ..Default::default()
                });
                runs.len() - 1
            }
        };
        let r = &mut runs[i];
        if r.runbook.is_empty() {
            r.runbook = e.fields.get("runbook").cloned().unwrap_or_default();
        }
        if r.started.is_empty() {
            r.started = e.fields.get("ts").cloned().unwrap_or_default();
        }
        match e.fields.get("event").map(String::as_str) {
            Some("start") => {
                r.started = e.fields.get("ts").cloned().unwrap_or_default();
                r.start = Some(e.clone());
            }
            Some("end") => r.end = Some(e.clone()),
            _ => {}
        }
        r.entries.push(e.clone());
    }
    runs.sort_by(|a, b| b.started.cmp(&a.started));
    runs
}

/// The one-line-per-run table.
pub fn render_runs(runs: &[Run]) -> String {
    let cols: Vec<String> = [
        "started", "run", "runbook", "outcome", "duration", "figures",
    ]
    .map(String::from)
    .to_vec();
    let cells: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.started.clone(),
                r.run_id.clone(),
                r.runbook.clone(),
                r.outcome(),
                r.duration_ms().map(human_ms).unwrap_or_else(|| "-".into()),
                r.figures(),
            ]
        })
        .collect();
    crate::table::render_cells(&cols, &cells)
}

/// One run in detail: its steps (and other events), then its metrics.
pub fn render_run(r: &Run) -> String {
    let mut out = format!(
        "run {}  {}{}  {}  {}  started {}\n",
        r.run_id,
        r.runbook,
        if r.dry_run() { " (dry run)" } else { "" },
        r.outcome(),
        r.duration_ms().map(human_ms).unwrap_or_else(|| "-".into()),
        r.started
    );
    if r.end.is_none() {
        out.push_str("no end entry: the run is under way, or was interrupted before it ended\n");
    }
    if let Some(e) = r.end.as_ref().and_then(|e| e.fields.get("error")) {
        out.push_str(&format!("error: {e}\n"));
    }
    if let Some(p) = r.start.as_ref().and_then(|e| e.fields.get("params")) {
        if p != "{}" {
            out.push_str(&format!("params: {p}\n"));
        }
    }
    let cols: Vec<String> = ["#", "step", "outcome", "duration"]
        .map(String::from)
        .to_vec();
    let mut cells = vec![];
    for e in &r.entries {
        let f = &e.fields;
        let event = f.get("event").map(String::as_str).unwrap_or("");
        let (name, outcome, dur) = match event {
            "start" | "end" => continue,
            "step" => (
                f.get("step").cloned().unwrap_or_default(),
                f.get("outcome").cloned().unwrap_or_default(),
                f.get("duration_ms")
                    .and_then(|d| d.parse().ok())
                    .map(human_ms)
                    .unwrap_or_default(),
            ),
            other => (format!("({other} entry)"), String::new(), String::new()),
        };
        cells.push(vec![(cells.len() + 1).to_string(), name, outcome, dur]);
    }
    out.push('\n');
    if cells.is_empty() {
        out.push_str("(no steps recorded)\n");
    } else {
        out.push_str(&crate::table::render_cells(&cols, &cells));
    }
    let m = r.metrics();
    if !m.is_empty() {
        out.push_str("\nmetrics:\n");
        let w = m.keys().map(|k| k.len()).max().unwrap_or(0);
        for (k, v) in &m {
            out.push_str(&format!("  {k:<w$}  {v}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pairs: &[(&str, &str)]) -> Entry {
        Entry {
            id: "1-0".into(),
            fields: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn stored_strings_become_typed_json() {
        assert_eq!(typed("duration_s", "2"), serde_json::json!(2));
        assert_eq!(typed("size", "31106679"), serde_json::json!(31106679));
        assert_eq!(typed("dry_run", "false"), serde_json::json!(false));
        assert_eq!(typed("spooled", "true"), serde_json::json!(true));
        assert_eq!(typed("ratio", "1.5"), serde_json::json!(1.5));
        assert_eq!(typed("lsn", "0/3000000"), serde_json::json!("0/3000000"));
        assert_eq!(typed("tli", "007"), serde_json::json!("007"));
        assert_eq!(typed("node", "pg-bases2"), serde_json::json!("pg-bases2"));
        // Identifiers stay strings.
        assert_eq!(
            typed("cluster", "7412345678901234567"),
            serde_json::json!("7412345678901234567")
        );
        assert_eq!(typed("run_id", "12"), serde_json::json!("12"));
        // JSON-valued fields are parsed, and their strings converted.
        assert_eq!(
            typed(
                "metrics",
                r#"{"time_to_writes_ms":"297","data_lost_bytes":"0","old_primary_lsn":"0/3000000","x":"()"}"#
            ),
            serde_json::json!({"time_to_writes_ms": 297, "data_lost_bytes": 0, "old_primary_lsn": "0/3000000", "x": null})
        );
        let e = typed_entry(&entry(&[("size", "10"), ("label", "20250101")]));
        assert_eq!(e["fields"]["size"], 10);
        assert_eq!(e["fields"]["label"], "20250101");
        assert_eq!(e["id"], "1-0");
    }

    #[test]
    fn sizes_and_durations_for_people() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 kB");
        assert_eq!(human_size(31106679), "29.7 MB");
        assert_eq!(human_size(16 << 30), "16.0 GB");
        assert_eq!(human_size_str("unknown"), "unknown");
        assert_eq!(human_ms(297), "297 ms");
        assert_eq!(human_ms(4200), "4.2 s");
        assert_eq!(human_ms(185_000), "3m 05s");
    }

    #[test]
    fn entries_group_into_runs_newest_first() {
        // Newest first, as the journal is read.
        let entries = vec![
            entry(&[
                ("run_id", "b"),
                ("event", "step"),
                ("step", "Promote"),
                ("ts", "3"),
            ]),
            entry(&[
                ("run_id", "b"),
                ("event", "start"),
                ("runbook", "failover"),
                ("ts", "2"),
            ]),
            entry(&[
                ("run_id", "a"),
                ("event", "end"),
                ("outcome", "ok"),
                ("duration_ms", "1200"),
                (
                    "metrics",
                    r#"{"time_to_writes_ms":"297","data_lost_bytes":"0"}"#,
                ),
                ("ts", "1.5"),
            ]),
            entry(&[
                ("run_id", "a"),
                ("event", "start"),
                ("runbook", "failover"),
                ("ts", "1"),
            ]),
        ];
        let runs = group(&entries);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].run_id, "b");
        assert_eq!(runs[0].outcome(), "unfinished");
        assert!(runs[0].figures().contains("under way or interrupted"));
        assert_eq!(runs[1].outcome(), "ok");
        assert_eq!(runs[1].duration_ms(), Some(1200));
        assert_eq!(runs[1].figures(), "writes after 297 ms, data lost 0 B");
        let t = render_runs(&runs);
        assert_eq!(t.lines().count(), 4, "{t}");
        let d = render_run(&runs[0]);
        assert!(d.contains("Promote"), "{d}");
    }
}
