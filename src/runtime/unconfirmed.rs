//! A fence that could not be confirmed: a failover that promoted a node while the old primary's
//! host was cut off (`force=true`) journals `fence_unconfirmed = <old primary>`. When that host
//! comes back and its PostgreSQL is still a primary, `status` and the runbooks name that run.

use crate::clients::redis::{Journal, JOURNAL};
use std::collections::BTreeMap;

/// The failover run that could not fence a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnconfirmedFence {
    pub node: String,
    pub runbook: String,
    pub run_id: String,
    pub at: String,
    pub promoted: String,
}

impl UnconfirmedFence {
    /// The run in one sentence.
    pub fn text(&self) -> String {
        let n = &self.node;
        format!(
            "{} run {} at {} promoted {} while {n} could not be fenced (its host was cut off; force=true): {n} may have taken writes on its side since",
            self.runbook, self.run_id, self.at, self.promoted
        )
    }
}

/// The newest run (of the last 500 journal entries, dry runs left out) that promoted a node
/// while `node` could not be fenced; `None` when there is none or the journal cannot be read.
/// The key is found as recorded by a runbook (`fence_unconfirmed`) or by a procedure another
/// runbook called (`failover.fence_unconfirmed`).
pub fn newest(journal: &Journal, node: &str) -> Option<UnconfirmedFence> {
    let entries = journal.last(JOURNAL, 500).ok()?;
    entries.into_iter().find_map(|e| {
        let f = &e.fields;
        if f.get("event").map(String::as_str) != Some("end")
            || f.get("dry_run").map(String::as_str) == Some("true")
        {
            return None;
        }
        let metrics: BTreeMap<String, String> = serde_json::from_str(f.get("metrics")?).ok()?;
        let key = |k: &str| {
            metrics
                .iter()
                .find(|(m, _)| *m == k || m.ends_with(&format!(".{k}")))
                .map(|(_, v)| v.clone())
        };
        let field = |k: &str, default: &str| f.get(k).cloned().unwrap_or_else(|| default.into());
        (key("fence_unconfirmed")? == node).then(|| UnconfirmedFence {
            node: node.to_string(),
            runbook: field("runbook", "failover"),
            run_id: field("run_id", "?"),
            at: field("ts", "?"),
            promoted: key("promoted").unwrap_or_else(|| "another node".into()),
        })
    })
}
