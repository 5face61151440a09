//! The dry run's read-only classifier: which statements `sql` may run in a dry run (in a
//! read-only transaction that is rolled back) and which it prints as changes instead.
//!
//! A read-only transaction alone is not a safe test: `pg_terminate_backend`, `pg_switch_wal`,
//! the slot functions and many more act inside one. So a statement is a read only when it is
//! sure to be one: it starts like a query, has none of the words that write (INSERT, UPDATE,
//! DELETE, INTO, FOR UPDATE...), and every function it calls is on a list of functions known
//! to change nothing. Anything else (a function of the user's, one this list does not know) is
//! a change in a dry run. `query` (the explicit read) runs those unknown functions too, but
//! never a statement this file knows to write.

/// Functions known to change nothing: reading them in a dry run is safe. Lower case.
const SAFE_FUNCTIONS: &[&str] = &[
    // PostgreSQL's state, WAL positions, recovery
    "pg_is_in_recovery",
    "pg_is_wal_replay_paused",
    "pg_get_wal_replay_pause_state",
    "pg_last_wal_receive_lsn",
    "pg_last_wal_replay_lsn",
    "pg_last_xact_replay_timestamp",
    "pg_current_wal_lsn",
    "pg_current_wal_insert_lsn",
    "pg_current_wal_flush_lsn",
    "pg_wal_lsn_diff",
    "pg_walfile_name",
    "pg_walfile_name_offset",
    "pg_split_walfile_name",
    "pg_control_checkpoint",
    "pg_control_system",
    "pg_control_recovery",
    "pg_control_init",
    "pg_postmaster_start_time",
    "pg_conf_load_time",
    "pg_backend_pid",
    "pg_stat_get_wal_receiver",
    "pg_stat_get_wal_senders",
    "pg_get_replication_slots",
    "pg_last_committed_xact",
    "pg_xact_commit_timestamp",
    "pg_database_size",
    "pg_relation_size",
    "pg_total_relation_size",
    "pg_table_size",
    "pg_indexes_size",
    "pg_size_pretty",
    "pg_size_bytes",
    "pg_tablespace_location",
    "pg_get_userbyid",
    "pg_has_role",
    "pg_settings_get_flags",
    "pg_show_all_file_settings",
    "pg_hba_file_rules",
    "pg_ident_file_mappings",
    "pg_show_all_settings",
    "pg_typeof",
    "pg_get_indexdef",
    "pg_get_viewdef",
    "pg_get_constraintdef",
    "pg_get_functiondef",
    "pg_encoding_to_char",
    "pg_read_file",
    "pg_ls_dir",
    "pg_ls_waldir",
    "pg_ls_logdir",
    "pg_stat_file",
    "to_regclass",
    "to_regrole",
    "to_regproc",
    "to_regtype",
    "to_regnamespace",
    "has_table_privilege",
    "has_database_privilege",
    "has_schema_privilege",
    "has_function_privilege",
    "current_setting",
    "current_database",
    "current_schema",
    "current_user",
    "session_user",
    "inet_server_addr",
    "inet_server_port",
    "inet_client_addr",
    "version",
    "format_type",
    "obj_description",
    "col_description",
    "quote_ident",
    "quote_literal",
    "quote_nullable",
    // time
    "now",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "timeofday",
    "age",
    "date_trunc",
    "date_part",
    "extract",
    "make_interval",
    "to_timestamp",
    "to_char",
    "to_date",
    "to_number",
    "justify_interval",
    // aggregates and windows
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "bool_and",
    "bool_or",
    "every",
    "string_agg",
    "array_agg",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "row_number",
    "rank",
    "dense_rank",
    "lag",
    "lead",
    "first_value",
    "last_value",
    // values, text, arrays, json
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "abs",
    "round",
    "floor",
    "ceil",
    "ceiling",
    "trunc",
    "mod",
    "power",
    "sqrt",
    "length",
    "char_length",
    "octet_length",
    "lower",
    "upper",
    "initcap",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "substr",
    "substring",
    "position",
    "strpos",
    "split_part",
    "replace",
    "regexp_replace",
    "regexp_match",
    "regexp_matches",
    "left",
    "right",
    "lpad",
    "rpad",
    "concat",
    "concat_ws",
    "format",
    "md5",
    "starts_with",
    "array_length",
    "array_to_string",
    "string_to_array",
    "cardinality",
    "unnest",
    "generate_series",
    "array_position",
    "json_build_object",
    "jsonb_build_object",
    "json_build_array",
    "jsonb_build_array",
    "to_json",
    "to_jsonb",
    "row_to_json",
    "jsonb_pretty",
    "encode",
    "decode",
];

/// SQL words that are not functions though a `(` may follow them.
const KEYWORDS: &[&str] = &[
    "select",
    "from",
    "where",
    "and",
    "or",
    "not",
    "in",
    "exists",
    "any",
    "all",
    "some",
    "as",
    "on",
    "join",
    "using",
    "values",
    "over",
    "filter",
    "within",
    "cast",
    "case",
    "when",
    "then",
    "else",
    "by",
    "having",
    "limit",
    "offset",
    "union",
    "except",
    "intersect",
    "with",
    "lateral",
    "is",
    "between",
    "like",
    "ilike",
    "array",
    "row",
    "interval",
    "numeric",
    "decimal",
    "varchar",
    "char",
    "character",
    "timestamp",
    "timestamptz",
    "time",
    "bit",
    "float",
    "partition",
    "order",
    "group",
    "distinct",
    "explain",
    "table",
    "show",
    "escape",
    "similar",
];

/// Words that make a statement write, wherever they are (a data-modifying WITH, SELECT INTO,
/// row locks, another statement after a `;`).
const WRITING_WORDS: &[&str] = &[
    "insert",
    "update",
    "delete",
    "merge",
    "into",
    "truncate",
    "copy",
    "create",
    "alter",
    "drop",
    "grant",
    "revoke",
    "lock",
    "vacuum",
    "analyze",
    "analyse",
    "cluster",
    "reindex",
    "refresh",
    "call",
    "do",
    "set",
    "reset",
    "notify",
    "listen",
    "unlisten",
    "checkpoint",
    "discard",
    "prepare",
    "execute",
    "deallocate",
    "comment",
    "security",
    "import",
    "load",
    "nextval",
    "setval",
];

/// What a statement is, for a dry run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Sure to change nothing: runs in a dry run.
    Read,
    /// Writes, or may: `why` says what makes it one.
    Write(String),
    /// A query that calls a function this file does not know (`why` names it): a change for
    /// `sql` in a dry run, a read for `query`, whose caller says it is one.
    Unknown(String),
}

/// The statement's words, lower case, and each word followed by `(`, with string literals,
/// quoted identifiers and comments left out.
fn tokens(q: &str) -> (Vec<String>, Vec<String>, bool) {
    let b: Vec<char> = q.chars().collect();
    let (mut words, mut calls) = (vec![], vec![]);
    let mut more_statements = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == '\'' || c == '"' {
            // A literal or quoted identifier: '' and "" inside are doubled quotes.
            let q = c;
            i += 1;
            while i < b.len() {
                if b[i] == q {
                    if i + 1 < b.len() && b[i + 1] == q {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
        } else if c == '$' && i + 1 < b.len() && (b[i + 1] == '$' || b[i + 1].is_alphabetic()) {
            // A dollar-quoted string: $$...$$ or $tag$...$tag$ (a $1 parameter is not one).
            let start = i;
            let mut j = i + 1;
            while j < b.len() && b[j] != '$' && (b[j].is_alphanumeric() || b[j] == '_') {
                j += 1;
            }
            if j < b.len() && b[j] == '$' {
                let tag: String = b[start..=j].iter().collect();
                let rest: String = b[j + 1..].iter().collect();
                match rest.find(&tag) {
                    Some(k) => i = j + 1 + rest[..k].chars().count() + tag.chars().count(),
                    None => i = b.len(),
                }
            } else {
                i = j;
            }
        } else if c == '-' && b.get(i + 1) == Some(&'-') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && b.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == '*' && b[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == ';' {
            if b[i + 1..].iter().any(|c| !c.is_whitespace()) {
                more_statements = true;
            }
            i += 1;
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < b.len()
                && (b[i].is_alphanumeric() || b[i] == '_' || b[i] == '$' || b[i] == '.')
            {
                i += 1;
            }
            let word: String = b[start..i].iter().collect::<String>().to_lowercase();
            let mut j = i;
            while j < b.len() && b[j].is_whitespace() {
                j += 1;
            }
            if b.get(j) == Some(&'(') {
                calls.push(word.clone());
            }
            // A qualified name (pg_catalog.now, s.t): its last part is the word.
            words.push(word.rsplit('.').next().unwrap_or(&word).to_string());
        } else {
            i += 1;
        }
    }
    (words, calls, more_statements)
}

/// Classifies one statement (see `Kind`).
pub fn classify(query: &str) -> Kind {
    let (words, calls, more) = tokens(query);
    if more {
        return Kind::Write("more than one statement".into());
    }
    let first = words.first().map(String::as_str).unwrap_or("");
    if !matches!(
        first,
        "select" | "with" | "show" | "table" | "values" | "explain"
    ) {
        return Kind::Write(format!("a {} statement", first.to_uppercase()));
    }
    if let Some(w) = words.iter().find(|w| WRITING_WORDS.contains(&w.as_str())) {
        // `EXPLAIN` without ANALYZE runs nothing; with it, it runs the statement.
        return Kind::Write(format!("it contains {}", w.to_uppercase()));
    }
    if words
        .windows(2)
        .any(|w| w[0] == "for" && matches!(w[1].as_str(), "share" | "key" | "no"))
    {
        return Kind::Write("it locks rows".into());
    }
    for call in &calls {
        let name = call.strip_prefix("pg_catalog.").unwrap_or(call);
        if KEYWORDS.contains(&name) || SAFE_FUNCTIONS.contains(&name) {
            continue;
        }
        if name.contains('.') {
            return Kind::Unknown(format!("it calls {call}(), which pgrunbook does not know"));
        }
        if CHANGING.iter().any(|p| name.starts_with(p)) {
            return Kind::Write(format!("it calls {name}(), which changes the server"));
        }
        return Kind::Unknown(format!(
            "it calls {name}(), which pgrunbook does not know to be a read"
        ));
    }
    Kind::Read
}

/// Prefixes of server functions known to change something, even inside a read-only
/// transaction: `query` refuses them as it refuses INSERT.
pub const CHANGING: &[&str] = &[
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
    "pg_replication_slot_advance",
    "pg_logical_slot_",
    "pg_log_",
    "pg_stat_reset",
    "pg_backup_",
    "pg_start_backup",
    "pg_stop_backup",
    "lo_",
    "dblink",
    "pg_file_write",
    "pg_file_unlink",
    "pg_file_rename",
    "pg_notify",
    "pg_advisory",
    "pg_try_advisory",
    "txid_current",
    "pg_current_xact_id",
    "pg_sleep",
];

/// Whether a statement only reads, for `sql` in a dry run: `Kind::Read`.
pub fn is_read_only(query: &str) -> bool {
    classify(query) == Kind::Read
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

    #[test]
    fn a_view_whose_name_looks_like_a_function_is_read() {
        // The DBA's query that the old classifier took for a write (it matched "pg_file_").
        assert_eq!(
            classify("SELECT name, setting FROM pg_file_settings WHERE name IN ('shared_buffers', 'max_connections') AND error IS NULL"),
            Kind::Read
        );
        assert!(is_read_only(
            "SELECT slot_name, active FROM pg_replication_slots"
        ));
        assert!(is_read_only(
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
        ));
        assert!(is_read_only("SELECT pg_catalog.now()"));
        assert!(is_read_only(
            "SELECT name FROM pg_settings WHERE name = $1 AND setting::numeric > 0 -- insert into nothing"
        ));
        assert!(is_read_only("SELECT 'drop table t; insert into x' AS text"));
        assert!(is_read_only("SELECT $$ delete $$"));
    }

    #[test]
    fn functions_with_side_effects_and_unknown_functions_are_not_reads() {
        for q in [
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app'",
            "select pg_switch_wal()",
            "SELECT * FROM pg_create_physical_replication_slot('s')",
            "SELECT pg_catalog.pg_drop_replication_slot('s')",
            "SELECT pg_replication_slot_advance('s', '0/0')",
            "SELECT set_config('work_mem', '1MB', false)",
            "SELECT nextval('s')",
            "SELECT pg_current_xact_id()",
        ] {
            assert!(
                matches!(classify(q), Kind::Write(_)),
                "{q}: {:?}",
                classify(q)
            );
        }
        assert!(matches!(classify("SELECT my_cleanup()"), Kind::Unknown(_)));
        assert!(matches!(classify("SELECT app.purge(1)"), Kind::Unknown(_)));
        assert!(!is_read_only("SELECT my_cleanup()"));
        for q in [
            "WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) FROM d",
            "SELECT * FROM t FOR UPDATE",
            "SELECT * FROM t FOR SHARE",
            "SELECT 1; DROP TABLE t",
            "EXPLAIN ANALYZE DELETE FROM t",
            "select 1 into x",
        ] {
            assert!(
                matches!(classify(q), Kind::Write(_)),
                "{q}: {:?}",
                classify(q)
            );
        }
        // A trailing semicolon is still one statement.
        assert!(is_read_only("SELECT 1;"));
    }
}
