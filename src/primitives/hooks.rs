//! Hook primitives: `role_changed`, which the procedures call once a node's role has changed, so
//! that `[hooks] on_role_change` runs (see `runtime/hooks.rs`).

use super::def;
use crate::runtime::hooks::{self, RoleChange};
use crate::runtime::host::Host;
use rhai::Module;
use std::sync::Arc;

pub fn create_module(host: Arc<Host>) -> Module {
    let mut m = Module::new();

    let h = host;
    def!(
        &mut m,
        "role_changed",
        ["node: &str", "old_role: &str", "new_role: &str", "String"],
        "Says that `node` went from `old_role` to `new_role` (\"primary\", \"standby\",
        \"fenced\"): runs the runbook of `[hooks] on_role_change` with the parameters node,
        old_role, new_role, cluster and run_id, at most `[hooks] timeout_ms`. Returns how it
        ended (\"none\", \"ok (12 ms)\", \"failed: ...\", \"stopped at its time limit ...\"); a
        failing hook is printed and journaled, never an error of the runbook. Failover,
        switchover and failback call it after their change.",
        move |node: &str,
              old_role: &str,
              new_role: &str|
              -> Result<String, Box<rhai::EvalAltResult>> {
            h.check_node("role_changed", node)?;
            let change = RoleChange {
                node: node.to_string(),
                old_role: old_role.to_string(),
                new_role: new_role.to_string(),
                cluster: h.journal.cluster(),
                run_id: h.run.lock().unwrap().run_id.clone(),
            };
            Ok(hooks::on_role_change(&h, &change).text())
        }
    );

    m
}
