//! `pgrunbook backups`: the newest entries of the `backups` stream as a table (or `--json`),
//! from Redis and from this cluster's spool. With Redis down, what is still spooled is shown
//! (exit 0); only with nothing spooled either is Redis being down an error.

use super::journal::{self, open_streams, read_stream};
use crate::clients::redis::BACKUPS;
use crate::error::Failure;
use crate::{out, outln};
use std::path::Path;

/// Fields every backup entry has that say nothing in a table.
const HIDDEN: [&str; 5] = ["run_id", "params", "metrics", "planned", "cluster"];

/// The columns that come first, in this order; the others follow in the order they appear.
const ORDER: [&str; 10] = [
    "ts",
    "spooled",
    "runbook",
    "event",
    "step",
    "outcome",
    "duration_ms",
    "type",
    "label",
    "node",
];

/// The event of a restore drill's entry (`run restore-check`), which the stream holds beside
/// the backups.
const RESTORE_CHECK: &str = "restore_check";

/// "ok 2025-06-01T12:00:00.000Z in 2.4 s" or "FAILED 2025-06-01T...": a drill, for the table.
fn verified_cell(check: &std::collections::BTreeMap<String, String>) -> String {
    let ts = check.get("ts").cloned().unwrap_or_default();
    match check.get("outcome").map(String::as_str) {
        Some("ok") => format!(
            "ok {ts} in {} s",
            check.get("restore_s").cloned().unwrap_or_default()
        ),
        _ => format!("FAILED {ts}"),
    }
}

pub fn run(config: Option<&Path>, last: usize, json: bool) -> Result<(), Failure> {
    let stream = BACKUPS;
    let host = open_streams(config)?;
    // Restore drills sit in the same stream; read enough to find those of the last backups.
    let all = read_stream(&host, stream, last.saturating_mul(4).saturating_add(100))?;
    let (checks, backups): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|e| e.fields.get("event").is_some_and(|v| v == RESTORE_CHECK));
    // The newest drill of each label (entries come newest first).
    let check_of = |label: &str| {
        checks
            .iter()
            .find(|c| c.fields.get("label").is_some_and(|l| l == label))
    };
    let entries: Vec<_> = backups.into_iter().take(last).collect();
    if json {
        let typed: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| {
                let mut v = journal::typed_entry(e);
                let check = e
                    .fields
                    .get("label")
                    .and_then(|l| check_of(l))
                    .map(journal::typed_entry)
                    .map(|c| c["fields"].clone())
                    .unwrap_or(serde_json::Value::Null);
                v["fields"]["verified"] = check;
                v
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&typed).unwrap_or_default()
        );
        return Ok(());
    }
    if entries.is_empty() {
        outln!("(no {stream} entries in Redis or in the spool)");
        return Ok(());
    }
    let mut cols: Vec<String> = vec![];
    for e in &entries {
        for k in e.fields.keys() {
            if !cols.contains(k) && !HIDDEN.contains(&k.as_str()) {
                cols.push(k.clone());
            }
        }
    }
    cols.sort_by_key(|c| ORDER.iter().position(|o| o == c).unwrap_or(ORDER.len()));
    cols.push("verified".into());
    let cells: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            cols.iter()
                .map(|c| {
                    if c == "verified" {
                        return e
                            .fields
                            .get("label")
                            .and_then(|l| check_of(l))
                            .map(|k| verified_cell(&k.fields))
                            .unwrap_or_else(|| "-".into());
                    }
                    let v = e.fields.get(c).cloned().unwrap_or_default();
                    if c == "size" || c.ends_with("_size") || c.ends_with("_bytes") {
                        journal::human_size_str(&v)
                    } else {
                        v
                    }
                })
                .collect()
        })
        .collect();
    out!("{}", crate::table::render_cells(&cols, &cells));
    Ok(())
}
