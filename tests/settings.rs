//! Issue 19: set_setting / reset_setting / settings_in_force on real servers (a value the server
//! would reject changes nothing; a standby that cannot start is brought back), errors as an
//! author sees them (a node that dies at start, a refusal, a message's prefix, the dry-run
//! wording), and dry runs that never guess (a read runs, pg_terminate_backend does not, a skipped
//! write's result stops the dry run, users' runbooks writing through `sql` run unchanged).

mod common;
use common::*;

const PRIMARY: &str = "pg-bases2";
const STANDBY: &str = "pg-replica";

fn auto_conf(lab: &TestLab, node: &str) -> String {
    let out = lab.docker(&[
        "exec",
        &lab.container(node),
        "sh",
        "-c",
        "cat \"$PGDATA/postgresql.auto.conf\"",
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn set_setting_checks_values_as_postgresql_and_brings_back_a_standby_that_cannot_start() {
    let lab = TestLab::replicating("sets");
    let before = auto_conf(&lab, STANDBY);

    // Values the server would reject: a runbook error naming it, nothing written.
    for (name, value, says) in [
        (
            "shared_buffers",
            "lots",
            "invalid value for parameter \"shared_buffers\"",
        ),
        (
            "shared_buffers",
            "256mb",
            "valid units for this parameter are B, kB, MB, GB and TB",
        ),
        ("max_connections", "0", "outside the valid range"),
        ("wal_level", "archive", "available values"),
        (
            "no_such_setting",
            "1",
            "no parameter named 'no_such_setting'",
        ),
    ] {
        let script = lab.script(
            "bad_value.rhai",
            &format!("//! t\nset_setting(\"{STANDBY}\", \"{name}\", \"{value}\");\n"),
        );
        lab.pgrunbook(&["run", &script])
            .fails_with(3)
            .stderr_has(says);
        assert_eq!(
            auto_conf(&lab, STANDBY),
            before,
            "{name} = {value} changed the file"
        );
    }

    // A good value: the old value back, a restart needed; settings_in_force compares with units.
    let script = lab.script(
        "good_value.rhai",
        &format!(
            "//! t\nlet r = set_setting(\"{STANDBY}\", \"work_mem\", \"0.25GB\");\n\
             print(`old=${{r.old}} restart=${{r.restart_needed}} changed=${{r.changed}}`);\n\
             let f = settings_in_force(\"{STANDBY}\", #{{ work_mem: \"256MB\" }});\n\
             print(`in_force=${{f.ok}}`);\n\
             let r = set_setting(\"{STANDBY}\", \"shared_buffers\", \"256MB\");\n\
             print(`sb restart=${{r.restart_needed}}`);\n\
             let f = settings_in_force(\"{STANDBY}\", #{{ shared_buffers: \"256MB\" }});\n\
             print(`sb in_force=${{f.ok}} ${{f.differ}}`);\n\
             reset_setting(\"{STANDBY}\", \"shared_buffers\");\n\
             reset_setting(\"{STANDBY}\", \"work_mem\");\n"
        ),
    );
    lab.pgrunbook(&["run", &script])
        .succeeds()
        .stdout_has("old=4MB restart=false changed=true")
        .stdout_has("in_force=true")
        .stdout_has("sb restart=true")
        .stdout_has("sb in_force=false [\"shared_buffers: 128MB in force, 256MB wanted\"]");
    // In a dry run: said, not done.
    let r = lab
        .pgrunbook(&["run", &script, "--dry-run"])
        .succeeds()
        .stdout_has("[dry run] would ALTER SYSTEM SET \"work_mem\" = '0.25GB' (now 4MB)");
    assert!(
        !auto_conf(&lab, STANDBY).contains("work_mem"),
        "{}",
        r.stdout
    );

    // The hot standby rule: set_setting refuses a standby's max_connections below its primary's.
    let primary_max = lab.query_i64(
        PRIMARY,
        "SELECT setting::bigint FROM pg_settings WHERE name = 'max_connections'",
    );
    let script = lab.script(
        "low.rhai",
        &format!(
            "//! t\nset_setting(\"{STANDBY}\", \"max_connections\", \"{}\");\n",
            primary_max - 10
        ),
    );
    lab.pgrunbook(&["run", &script])
        .fails_with(4)
        .stderr_has("is lower than on the primary");

    // Written behind pgrunbook's back, the same value keeps the standby from starting: the
    // error of the restart carries PostgreSQL's FATAL line and its DETAIL.
    lab.client(STANDBY)
        .batch_execute(&format!(
            "ALTER SYSTEM SET max_connections = {}",
            primary_max - 10
        ))
        .unwrap();
    let script = lab.script(
        "restart.rhai",
        &format!("//! t\nrestart_container(\"{STANDBY}\", 60);\n"),
    );
    lab.pgrunbook(&["run", &script])
        .fails_with(5)
        .stderr_has("PostgreSQL did not start")
        .stderr_has("FATAL:  recovery aborted because of insufficient parameter settings")
        .stderr_has(&format!(
            "DETAIL: max_connections = {} is a lower setting than on the primary server",
            primary_max - 10
        ));
    // (Its container may be running again: the lab's restart policy starts it, and it fails.)
    assert!(lab.try_client(STANDBY).is_none(), "the standby answers");

    // set_setting works on its data directory and says so; the standby starts and streams.
    let script = lab.script(
        "fix.rhai",
        &format!(
            "//! t\nimport \"replication\" as replication;\n\
             let r = set_setting(\"{STANDBY}\", \"max_connections\", \"{primary_max}\");\n\
             print(`offline=${{r.offline}} old=${{r.old}}`);\n\
             start_container(\"{STANDBY}\");\nwait_ready(\"{STANDBY}\", 60);\n\
             replication::wait_streaming(\"{PRIMARY}\", \"{STANDBY}\", 60);\n"
        ),
    );
    lab.pgrunbook(&["run", &script])
        .succeeds()
        .stdout_has("its postgresql.auto.conf was edited in its data directory (checked against pg-bases2's pg_settings)")
        .stdout_has(&format!("offline=true old={}", primary_max - 10));
    lab.pgrunbook(&["run", "verify"]).succeeds();
}

#[test]
fn errors_read_as_what_they_are() {
    let lab = TestLab::replicating("errs");
    // A refusal: the message, nothing was changed, no source excerpt (unless --verbose).
    let script = lab.script(
        "refuse.rhai",
        "//! t\nstep(\"Look\");\nrefuse(\"not now\");\n",
    );
    let r = lab.pgrunbook(&["run", &script]).fails_with(4);
    assert!(
        r.stderr
            .contains("refused: not now\n  nothing was changed\n"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains(" | refuse("), "{}", r.stderr);
    let r = lab.pgrunbook(&["--verbose", "run", &script]).fails_with(4);
    assert!(
        r.stderr.contains("3 | refuse(\"not now\");"),
        "{}",
        r.stderr
    );

    // A refusal after a change says what was changed.
    let script = lab.script(
        "refuse_after.rhai",
        &format!("//! t\ncreate_slot(\"{PRIMARY}\", \"errs_slot\");\nrefuse(\"stop\");\n"),
    );
    lab.pgrunbook(&["run", &script])
        .fails_with(4)
        .stderr_has("changed before the refusal: create replication slot errs_slot on pg-bases2");
    lab.client(PRIMARY)
        .batch_execute("SELECT pg_drop_replication_slot('errs_slot')")
        .unwrap();

    // A message names its node once.
    let script = lab.script(
        "bad_sql.rhai",
        &format!("//! t\nsql(\"{STANDBY}\", \"SELECT no_such_column FROM pg_class\");\n"),
    );
    let r = lab.pgrunbook(&["run", &script]).fails_with(3);
    assert!(
        r.stderr
            .contains("sql on pg-replica: SQL error: column \"no_such_column\" does not exist"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("SQL error on pg-replica"),
        "{}",
        r.stderr
    );

    // The dry-run wording.
    let script = lab.script(
        "shutdown.rhai",
        &format!("//! t\nfast_shutdown(\"{PRIMARY}\");\n"),
    );
    lab.pgrunbook(&["run", &script, "--dry-run"])
        .succeeds()
        .stdout_has("[dry run] would shut PostgreSQL down fast in container");
}

#[test]
fn dry_runs_run_reads_only_and_stop_where_a_skipped_write_is_used() {
    let lab = TestLab::replicating("dryq");
    lab.client(PRIMARY)
        .batch_execute("ALTER SYSTEM SET work_mem = '8MB'")
        .unwrap();
    // A read of pg_file_settings returns its real rows in a dry run.
    let script = lab.script(
        "file_settings.rhai",
        &format!(
            "//! t\nlet rows = sql(\"{PRIMARY}\", \"SELECT name, setting FROM pg_file_settings WHERE name = 'work_mem'\");\n\
             print(`rows=${{rows.len()}} ${{rows[rows.len() - 1].setting}}`);\n"
        ),
    );
    lab.pgrunbook(&["run", &script, "--dry-run"])
        .succeeds()
        .stdout_has("rows=")
        .stdout_has(" 8MB")
        .stdout_has("plan: 0 change(s)");

    // pg_terminate_backend is not run in a dry run; using its result stops the dry run there.
    let mut victim = lab
        .pg_config(PRIMARY)
        .application_name("dryq_victim")
        .connect(postgres::NoTls)
        .unwrap();
    let script = lab.script(
        "terminate.rhai",
        &format!(
            "//! t\nstep(\"Terminate\");\n\
             let r = sql(\"{PRIMARY}\", \"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'dryq_victim'\");\n\
             step(\"Use the result\");\n\
             if r == [] {{ print(\"none terminated\"); }}\n\
             step(\"Never reached\");\n"
        ),
    );
    let r = lab
        .pgrunbook(&["run", &script, "--dry-run"])
        .succeeds()
        .stdout_has("[dry run] would run SQL: SELECT pg_terminate_backend(pid)")
        .stdout_has("not simulated past here at ")
        .stdout_has("plan: 1 change(s)")
        .stdout_lacks("none terminated")
        .stdout_lacks("Never reached");
    assert!(
        victim.simple_query("SELECT 1").is_ok(),
        "the dry run terminated the backend:\n{}",
        r.stdout
    );
    // `query` refuses a statement known to write, in a real run too.
    let script = lab.script(
        "query_write.rhai",
        &format!("//! t\nquery(\"{PRIMARY}\", \"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'dryq_victim'\");\n"),
    );
    lab.pgrunbook(&["run", &script])
        .fails_with(3)
        .stderr_has("query on pg-bases2: not a read (it calls pg_terminate_backend(), which changes the server)");
    assert!(victim.simple_query("SELECT 1").is_ok());

    // A runbook users wrote with `sql` for its writes: checks and runs unchanged, and its dry
    // run stops where it uses a skipped write's result, the plan so far printed.
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/users_sql_writes.rhai"
    ))
    .unwrap();
    let script = lab.script("users_sql_writes.rhai", &fixture);
    lab.pgrunbook(&["check", &script]).succeeds();
    lab.pgrunbook(&["run", &script])
        .succeeds()
        .stdout_has("1 audit row(s) labelled nightly")
        .stdout_has("0 old row(s) removed");
    lab.pgrunbook(&["run", &script, "--dry-run", "--set", "label=dry"])
        .succeeds()
        .stdout_has("[dry run] would run SQL: INSERT INTO dba_audit(label)")
        .stdout_has("0 audit row(s) labelled dry")
        .stdout_has("[dry run] would run SQL: DELETE FROM dba_audit")
        .stdout_has("not simulated past here at ")
        .stdout_lacks("old row(s) removed")
        .stdout_has("plan: 3 change(s)");
}
