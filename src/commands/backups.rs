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

pub fn run(config: Option<&Path>, last: usize, json: bool) -> Result<(), Failure> {
    let stream = BACKUPS;
    let host = open_streams(config)?;
    let entries = read_stream(&host, stream, last)?;
    if json {
        let typed: Vec<serde_json::Value> = entries.iter().map(journal::typed_entry).collect();
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
    let cells: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            cols.iter()
                .map(|c| {
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
