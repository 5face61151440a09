//! Replication slots: listing, creating and dropping them, and the names PostgreSQL accepts.

use super::sql::{pg_rows, query_value, rows_for_rhai, run_sql};
use super::R;
use crate::error::Class;
use crate::primitives::def;
use crate::runtime::host::Host;
use crate::table::ColumnOrders;
use rhai::Module;
use std::sync::Arc;

/// Where pgrunbook remembers the slots it created (slot name → the configured node it was created
/// for), beside the journal: a slot made for a node that is later removed from the
/// configuration is still known as pgrunbook's, so failback and switchover may drop it.
pub const SLOTS_CREATED: &str = "slots";

/// Slot names PostgreSQL accepts: lower case letters, digits and `_`, at most 63.
pub fn check_slot_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 63
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(format!(
            "invalid slot name {name:?}: a slot name has 1 to 63 lower case letters, digits or underscores"
        ));
    }
    Ok(())
}

pub fn register(m: &mut Module, host: &Arc<Host>, orders: &Arc<ColumnOrders>) {
    let (h, o) = (host.clone(), orders.clone());
    def!(m, "slots", ["node: &str", "Array"],
        "The node's replication slots: #{slot_name, slot_type, active, active_pid, restart_lsn, wal_status}.",
        move |node: &str| run_sql(&h, "slots", node,
            "SELECT slot_name::text, slot_type, active, active_pid, restart_lsn, wal_status \
             FROM pg_replication_slots ORDER BY slot_name", &[]).map(|r| rows_for_rhai(r, &o)));

    let h = host.clone();
    def!(
        m,
        "slots_created",
        ["Map"],
        "The slots `create_slot` made for configured nodes, as a map: slot name → the node it was
        created for (which may have left the configuration since). Kept in Redis beside the
        journal; empty when Redis cannot be read.",
        move || -> rhai::Map {
            h.coord
                .map_all(SLOTS_CREATED)
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.into(), rhai::Dynamic::from(v)))
                .collect()
        }
    );

    let h = host.clone();
    def!(
        m,
        "create_slot",
        ["node: &str", "name: &str", "bool"],
        "Creates the physical replication slot `name` on the node; returns false (and changes
        nothing) when it exists already.",
        move |node: &str, name: &str| -> R<bool> {
            check_slot_name(name)
                .map_err(|e| h.error(Class::Runbook, format!("create_slot on {node}: {e}")))?;
            let exists = query_value(
                &h,
                "create_slot",
                node,
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
                &[name.into()],
            )?;
            if exists.as_int().unwrap_or(0) > 0 {
                return Ok(false);
            }
            if !h.change(node, &format!("create replication slot {name}")) {
                return Ok(true);
            }
            let _ = query_value(
                &h,
                "create_slot",
                node,
                "SELECT slot_name::text FROM pg_create_physical_replication_slot($1)",
                &[name.into()],
            )?;
            if let Some((for_node, _)) = h.config.nodes.iter().find(|(_, n)| n.slot == name) {
                if let Err(e) = h.coord.map_set(SLOTS_CREATED, name, for_node) {
                    crate::errln!(
                        "warning: create_slot on {node}: slot {name} was created, but not remembered as pgrunbook's (for {for_node}): {e:#}; if {for_node} leaves the configuration, the slot will look foreign and be left alone"
                    );
                }
            }
            Ok(true)
        }
    );

    let h = host.clone();
    def!(
        m,
        "drop_slot",
        ["node: &str", "name: &str", "bool"],
        "Drops the replication slot `name` on the node; returns false when there is none.
        Refuses to drop a slot that a standby is reading.",
        move |node: &str, name: &str| -> R<bool> {
            check_slot_name(name)
                .map_err(|e| h.error(Class::Runbook, format!("drop_slot on {node}: {e}")))?;
            let rows = pg_rows(
                &h,
                "drop_slot",
                node,
                "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                &[name.into()],
            )?;
            let Some(active) = rows.first_value() else {
                return Ok(false);
            };
            if active.as_bool().unwrap_or(false) {
                return Err(h.error(
                    Class::Refused,
                    format!("drop_slot on {node}: slot {name} is in use by a standby"),
                ));
            }
            if !h.change(node, &format!("drop replication slot {name}")) {
                return Ok(true);
            }
            let _ = query_value(
                &h,
                "drop_slot",
                node,
                "SELECT 1 FROM pg_drop_replication_slot($1)",
                &[name.into()],
            )?;
            // Forgotten only when no configured node reads it (a slot of a configured node
            // exists on whichever node is primary, and is created again there).
            if !h.config.nodes.values().any(|n| n.slot == name) {
                let _ = h.coord.map_del(SLOTS_CREATED, name);
            }
            Ok(true)
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names() {
        assert!(check_slot_name("replica1").is_ok());
        assert!(check_slot_name("primary_1").is_ok());
        assert!(check_slot_name("bad name").is_err());
        assert!(check_slot_name("x'); DROP TABLE t; --").is_err());
        assert!(check_slot_name("Upper").is_err());
        assert!(check_slot_name("").is_err());
        assert!(check_slot_name(&"a".repeat(64)).is_err());
    }
}
