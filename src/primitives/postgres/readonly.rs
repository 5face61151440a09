//! The dry run's read-only classifier: which statements `sql` may run (in a read-only
//! transaction that is rolled back) and which it prints as changes instead.

/// Server functions that change something even inside a read-only transaction.
const CHANGING_FUNCTIONS: &[&str] = &[
    "pg_reload_conf",
    "pg_promote",
    "pg_create_",
    "pg_drop_",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_switch_wal",
    "pg_wal_replay_",
    "pg_rotate_logfile",
    "set_config",
    "nextval",
    "setval",
    "pg_copy_",
    "pg_replication_origin_",
    "pg_log_",
    "pg_stat_reset",
    "pg_backup_",
    "lo_",
    "dblink",
    "pg_file_",
    "pg_notify",
];

/// Whether a statement only reads: it starts like a query and calls no function that changes
/// anything. What is not sure to be a read counts as a change in a dry run.
pub fn is_read_only(query: &str) -> bool {
    let q = query.trim_start().to_ascii_lowercase();
    let first = q
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    matches!(
        first,
        "select" | "with" | "show" | "table" | "values" | "explain"
    ) && !CHANGING_FUNCTIONS.iter().any(|f| q.contains(f))
        && !q.contains("into ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_changes() {
        assert!(is_read_only("SELECT pg_is_in_recovery()"));
        assert!(is_read_only("  with x as (select 1) select * from x"));
        assert!(is_read_only("SHOW archive_mode"));
        assert!(!is_read_only("INSERT INTO t VALUES (1)"));
        assert!(!is_read_only("SELECT pg_reload_conf()"));
        assert!(!is_read_only("select pg_drop_replication_slot('x')"));
        assert!(!is_read_only("ALTER SYSTEM SET x = 1"));
        assert!(!is_read_only("CHECKPOINT"));
        assert!(!is_read_only("SELECT * INTO t2 FROM t"));
    }
}
