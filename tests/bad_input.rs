//! Issue 6: bad input. Every mistake a user can make (a wrong name, a broken runbook, a backend
//! that cannot be reached, a runbook that never ends, Ctrl-C) gets one clear error line naming
//! what was wrong and where, the exit code `docs/errors.md` documents, and leaves the cluster as
//! it was. "As it was" is checked independently of pgrunbook: container states through the
//! Docker CLI, roles, slots, fences and rows through direct SQL, backups through Redis.
//!
//! The cases are listed with what they prove in `docs/safety.md`.

mod common;
use common::*;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NODES: [&str; 2] = ["pg-bases2", "pg-replica"];

/// A node that answers: its role, whether it is fenced, its slots.
#[derive(Debug, PartialEq)]
struct NodeState {
    in_recovery: bool,
    fenced: bool,
    slots: Vec<String>,
}

/// Everything a runbook could change, read without pgrunbook.
#[derive(Debug, PartialEq)]
struct Snapshot {
    /// node -> container state ("running", "exited", "missing").
    containers: Vec<(String, String)>,
    /// node -> its state, when it answers.
    nodes: Vec<(String, Option<NodeState>)>,
    /// Rows of public.replica_test on pg-bases2 (None: the table is gone).
    rows: Option<i64>,
    backups: usize,
}

fn snapshot(lab: &TestLab) -> Snapshot {
    let containers = NODES
        .iter()
        .map(|n| (n.to_string(), lab.container_state(n)))
        .collect();
    let nodes = NODES
        .iter()
        .map(|n| {
            let state = lab.try_client(n).map(|mut c| {
                let rec: bool = c
                    .query_one("SELECT pg_is_in_recovery()", &[])
                    .unwrap()
                    .get(0);
                let fenced: bool = c
                    .query_one(
                        "SELECT pg_read_file('pgrunbook.fenced', 0, 100, true) IS NOT NULL",
                        &[],
                    )
                    .unwrap()
                    .get(0);
                let slots = c
                    .query(
                        "SELECT slot_name::text FROM pg_replication_slots ORDER BY 1",
                        &[],
                    )
                    .unwrap()
                    .iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect();
                NodeState {
                    in_recovery: rec,
                    fenced,
                    slots,
                }
            });
            (n.to_string(), state)
        })
        .collect();
    let rows = lab.try_client("pg-bases2").and_then(|mut c| {
        c.query_one("SELECT count(*) FROM public.replica_test", &[])
            .ok()
            .map(|r| r.get::<_, i64>(0))
    });
    Snapshot {
        containers,
        nodes,
        rows,
        backups: lab.stream("backups").len(),
    }
}

fn slots_on(lab: &TestLab, node: &str) -> Vec<String> {
    lab.query_strings(
        node,
        "SELECT slot_name::text FROM pg_replication_slots ORDER BY 1",
    )
}

fn table_exists(lab: &TestLab, node: &str) -> bool {
    lab.query_bool(
        node,
        "SELECT to_regclass('public.replica_test') IS NOT NULL",
    )
}

/// The error line pgrunbook prints (`error: ...`, or `refused: ...` for a refusal), to check it
/// is one line that says it all.
fn error_line(r: &Run) -> String {
    let lines: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: ") || l.starts_with("refused: "))
        .collect();
    assert_eq!(lines.len(), 1, "exactly one error line:\n{}", r.stderr);
    lines[0].to_string()
}

/// The journal's `end` entries, oldest first.
fn ends(lab: &TestLab) -> Vec<HashMap<String, String>> {
    lab.stream("journal")
        .into_iter()
        .filter(|e| e["event"] == "end")
        .collect()
}

/// A copy of the lab's configuration with the standby's container renamed to one that does not
/// exist; returns its path.
fn config_with_missing_standby(lab: &TestLab) -> String {
    let text = std::fs::read_to_string(&lab.config_path)
        .unwrap()
        .replace(&lab.container("pg-replica"), &format!("{}-nothere", lab.id));
    let p = lab.dir.path().join("missing.toml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

const NO_DOCKER: (&str, &str) = ("DOCKER_HOST", "unix:///tmp/nonexistent.sock");
const WRONG_PASSWORD: &str = "Wr0ng-pw-for-the-test";

// ---- a, b, c, h, i, j, k: mistakes in what the user typed or wrote -----------------------------

#[test]
fn usage_and_runbook_errors_change_nothing() {
    let lab = TestLab::replicating("badin");
    let before = snapshot(&lab);
    let journal = || lab.stream("journal").len();

    // a. An unknown runbook: usage (2), nothing runs, nothing is journaled.
    let j0 = journal();
    let r = lab.pgrunbook(&["run", "nosuch"]).fails_with(2);
    let line = error_line(&r);
    assert!(line.contains("unknown runbook 'nosuch'"), "{line}");
    assert!(
        line.contains("pgrunbook list"),
        "says where to look: {line}"
    );
    let r = lab.pgrunbook(&["run", "failovr"]).fails_with(2);
    assert!(
        error_line(&r).contains("did you mean 'failover'?"),
        "{}",
        r.stderr
    );
    assert_eq!(journal(), j0, "an unknown runbook is not journaled");

    // b. A syntax error: runbook error (3) at file:line:col with the line and a caret; the
    //    runbook is compiled before anything runs, so not even its first step starts.
    let syn = lab.script(
        "syntax.rhai",
        "//! Broken.\nstep(\"first\");\nlet a = ;\nstop_container(\"pg-replica\");\n",
    );
    let r = lab
        .pgrunbook(&["run", &syn])
        .fails_with(3)
        .stderr_has("--> syntax.rhai:3:9")
        .stderr_has("3 | let a = ;")
        .stdout_lacks("first");
    assert!(error_line(&r).contains("syntax error"), "{}", r.stderr);
    assert_eq!(
        journal(),
        j0,
        "a runbook that does not compile is not journaled"
    );

    // c. An unknown node: runbook error (3), naming the node, the known ones, and where.
    let un = lab.script(
        "unknown_node.rhai",
        "//! Unknown node.\nstep(\"Query\");\nlet rows = sql(\"pg-nope\", \"SELECT 1\");\n",
    );
    let r = lab
        .pgrunbook(&["run", &un])
        .fails_with(3)
        .stderr_has("--> unknown_node.rhai:3:12 in step \"Query\"");
    let line = error_line(&r);
    assert!(line.contains("unknown node 'pg-nope'"), "{line}");
    assert!(
        line.contains("known nodes: pg-bases2, pg-replica"),
        "{line}"
    );

    // h. A backup type other than full/diff/incr: usage (2) before anything runs.
    let j0 = journal();
    let r = lab
        .pgrunbook(&["run", "backup", "--set", "type=weekly"])
        .fails_with(2);
    let line = error_line(&r);
    assert!(
        line.contains("must be one of full, diff, incr") && line.contains("weekly"),
        "{line}"
    );
    assert_eq!(journal(), j0, "a refused parameter is not journaled");
    let r = lab
        .pgrunbook(&["run", "backup", "--set", "kind=full"])
        .fails_with(2);
    assert!(
        error_line(&r).contains("no parameter 'kind'"),
        "{}",
        r.stderr
    );
    assert_eq!(journal(), j0);

    // i. An SQL error: runbook error (3) with the SQLSTATE, the node and file:line:col. The
    //    failed INSERT wrote nothing.
    let se = lab.script(
        "sql_error.rhai",
        "//! SQL error.\nstep(\"Write\");\n\
         sql(\"pg-bases2\", \"INSERT INTO public.replica_test(no_such_column) VALUES (1)\");\n",
    );
    let r = lab
        .pgrunbook(&["run", &se])
        .fails_with(3)
        .stderr_has("--> sql_error.rhai:3:1 in step \"Write\"");
    let line = error_line(&r);
    assert!(line.contains("SQLSTATE 42703"), "{line}");
    assert!(
        line.contains("no_such_column") && line.contains("pg-bases2"),
        "{line}"
    );

    // j. Slot names with quotes, spaces or SQL in them are refused before any SQL is sent.
    for (file, name) in [
        ("slot_sql.rhai", "x'); DROP TABLE public.replica_test; --"),
        ("slot_space.rhai", "bad name"),
    ] {
        let s = lab.script(
            file,
            &format!(
                "//! Bad slot.\nstep(\"Slot\");\ncreate_slot(\"pg-bases2\", {});\n",
                serde_json::to_string(name).unwrap()
            ),
        );
        let r = lab
            .pgrunbook(&["run", &s])
            .fails_with(3)
            .stderr_has(&format!("--> {file}:3:1 in step \"Slot\""));
        let line = error_line(&r);
        assert!(
            line.contains("create_slot on pg-bases2: invalid slot name"),
            "{line}"
        );
        assert!(
            line.contains(&format!("{name:?}")),
            "names the bad value: {line}"
        );
    }
    assert_eq!(
        slots_on(&lab, "pg-bases2"),
        vec!["replica1".to_string()],
        "no slot created"
    );
    assert!(table_exists(&lab, "pg-bases2") && table_exists(&lab, "pg-replica"));

    //    Parameters travel as parameters: the text comes back unchanged, nothing is dropped.
    let params = lab.script(
        "params.rhai",
        r#"//! Parameters are never pasted.
step("Parameters");
for evil in ["x'); DROP TABLE t; --", "x'); DROP TABLE public.replica_test; --", "$1 \\ ' \" ;"] {
    let v = sql_value("pg-bases2", "SELECT $1::text AS v", [evil]);
    let rows = sql("pg-bases2", "SELECT $1::text AS v", [evil]);
    if v != evil || rows[0].v != evil { throw `changed: ${v}`; }
    print(`unchanged: [${v}]`);
}
"#,
    );
    lab.pgrunbook(&["run", &params])
        .succeeds()
        .stdout_has("unchanged: [x'); DROP TABLE t; --]")
        .stdout_has("unchanged: [x'); DROP TABLE public.replica_test; --]")
        .stdout_has("unchanged: [$1 \\ ' \" ;]");
    assert!(table_exists(&lab, "pg-bases2") && table_exists(&lab, "pg-replica"));

    // k. A runbook that loops forever is stopped by the operation limit...
    let spin = lab.script("spin.rhai", "//! Spins.\nstep(\"Spin\");\nloop {}\n");
    let r = lab
        .pgrunbook_env(
            &["run", &spin],
            &[("PGRUNBOOK_RUNBOOK__MAX_OPERATIONS", "100000")],
        )
        .fails_with(130)
        .stderr_has("--> spin.rhai:3:");
    let line = error_line(&r);
    assert!(
        line.contains("stopped after 100000 operations") && line.contains("runbook.max_operations"),
        "{line}"
    );
    //    ...and one that waits forever by the time limit: in a loop of short waits (Rhai's
    //    progress hook), and in one long wait (the wait itself watches the deadline).
    for (file, body) in [
        ("nap_loop.rhai", "loop { sleep_ms(10); }"),
        ("nap_long.rhai", "sleep_ms(600000);"),
    ] {
        let s = lab.script(
            file,
            &format!("//! Waits forever.\nstep(\"Nap\");\n{body}\n"),
        );
        let r = lab
            .pgrunbook_env(&["run", &s], &[("PGRUNBOOK_RUNBOOK__TIMEOUT_S", "1")])
            .fails_with(130)
            .stderr_has(&format!("--> {file}:3:"));
        let line = error_line(&r);
        assert!(
            line.contains("time limit of 1 s") && line.contains("runbook.timeout_s"),
            "{line}"
        );
        assert!(
            r.elapsed < Duration::from_secs(20),
            "a 1 s limit stops {file} long before its wait ends: {:?}",
            r.elapsed
        );
    }
    let last: Vec<_> = ends(&lab).into_iter().rev().take(3).collect();
    assert!(
        last.iter()
            .all(|e| e["outcome"] == "interrupted" && e["exit_code"] == "130"),
        "{last:?}"
    );

    // Nothing of all that changed the cluster.
    assert_eq!(snapshot(&lab), before);
    assert_eq!(lab.container_state("pg-bases2"), "running");
    assert!(!lab.query_bool("pg-bases2", "SELECT pg_is_in_recovery()"));
    assert!(lab.query_bool("pg-replica", "SELECT pg_is_in_recovery()"));
}

// ---- l: Ctrl-C -------------------------------------------------------------------------------

#[test]
fn ctrl_c_stops_at_the_step_under_way() {
    let lab = TestLab::up("ctrlc");
    let before = snapshot(&lab);
    let script = lab.script(
        "steps.rhai",
        "//! Three steps.\nstep(\"one\");\nsleep_ms(200);\nstep(\"two\");\nsleep_ms(30000);\nstep(\"three\");\n",
    );
    let mut child = Command::new(BIN)
        .args(["run", &script])
        .current_dir(lab.dir.path())
        .env("PGRUNBOOK_CONFIG", &lab.config_path)
        .env("PGRUNBOOK_DATA_DIR", lab.dir.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.contains("] two") {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0 && Instant::now() < deadline,
            "step two never started: {seen}"
        );
        seen.push_str(&line);
    }
    let pid = child.id() as libc::pid_t;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let sent = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if sent.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("pgrunbook did not stop within 20 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = sent.elapsed();
    stdout.read_to_string(&mut seen).unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let shown = format!("--- stdout\n{seen}\n--- stderr\n{stderr}");

    assert_eq!(status.code(), Some(130), "{shown}");
    assert!(
        took < Duration::from_secs(3),
        "exited {took:?} after SIGINT\n{shown}"
    );
    assert!(
        stderr.contains("error: interrupted during step \"two\""),
        "{shown}"
    );
    assert!(stderr.contains("steps.rhai:5:1"), "{shown}");
    assert!(!seen.contains("three"), "step three never starts\n{shown}");

    let journal = lab.stream("journal");
    let steps: Vec<(&str, &str)> = journal
        .iter()
        .filter(|e| e["event"] == "step")
        .map(|e| (e["step"].as_str(), e["outcome"].as_str()))
        .collect();
    assert_eq!(
        steps,
        vec![("one", "ok"), ("two", "interrupted")],
        "{journal:?}"
    );
    let end = journal.iter().rfind(|e| e["event"] == "end").unwrap();
    assert_eq!(end["outcome"], "interrupted");
    assert_eq!(end["exit_code"], "130");
    assert!(end["error"].contains("step \"two\""), "{end:?}");
    assert_eq!(snapshot(&lab), before);
}

// ---- d, e, f, g: what pgrunbook talks to cannot be reached ------------------------------------

#[test]
fn unreachable_backends_change_nothing() {
    let lab = TestLab::up("unreach");
    let missing = config_with_missing_standby(&lab);
    let no_slots = |lab: &TestLab| {
        assert!(
            slots_on(lab, "pg-bases2").is_empty(),
            "a failed setup leaves no slot behind"
        );
    };

    // Before setup: each failure is found before the first change (no slot, no clone).
    // d. The standby's container does not exist.
    let r = lab
        .pgrunbook(&["--config", &missing, "run", "setup"])
        .fails_with(5);
    let line = error_line(&r);
    assert!(
        line.contains(&format!(
            "container '{}-nothere' of node pg-replica does not exist",
            lab.id
        )) && line.contains("pgrunbook lab up"),
        "{line}"
    );
    assert!(r.stderr.contains("setup.rhai:"), "{}", r.stderr);
    no_slots(&lab);
    assert_eq!(lab.container_state("pg-replica"), "running");

    // e. The Docker engine cannot be reached.
    for args in [&["run", "setup"][..], &["lab", "up"], &["status"]] {
        let r = lab.pgrunbook_env(args, &[NO_DOCKER]).fails_with(5);
        let line = error_line(&r);
        assert!(
            line.contains("Docker engine unreachable at unix:///tmp/nonexistent.sock"),
            "{args:?}: {line}"
        );
    }
    no_slots(&lab);

    // f. PostgreSQL refuses the password: found at once, not after setup's 60 s wait, and the
    //    password is not echoed.
    let r = lab
        .pgrunbook_env(&["run", "setup"], &[("PGRUNBOOK_PASSWORD", WRONG_PASSWORD)])
        .fails_with(5);
    let line = error_line(&r);
    assert!(
        line.contains("PostgreSQL on node pg-bases2")
            && line.contains("password authentication failed"),
        "{line}"
    );
    assert!(
        r.elapsed < Duration::from_secs(30),
        "no waiting on a wrong password"
    );
    assert!(!r.stderr.contains(WRONG_PASSWORD) && !r.stdout.contains(WRONG_PASSWORD));
    no_slots(&lab);

    //    Nothing listens on a node's port.
    let port = free_port().to_string();
    let q = lab.script(
        "query.rhai",
        "//! One query.\nstep(\"Query\");\nlet v = sql_value(\"pg-bases2\", \"SELECT 1\");\n",
    );
    let r = lab
        .pgrunbook_env(&["run", &q], &[("PGRUNBOOK_NODES__PG_BASES2__PORT", &port)])
        .fails_with(5)
        .stderr_has("--> query.rhai:3:9 in step \"Query\"");
    let line = error_line(&r);
    assert!(
        line.contains(&format!(
            "PostgreSQL on node pg-bases2 (127.0.0.1:{port}) is unreachable"
        )) && line.contains("refused"),
        "{line}"
    );

    // The real setup, then the same failures against a replicating pair.
    lab.pgrunbook(&["run", "setup"]).succeeds();
    let before = snapshot(&lab);
    assert_eq!(
        before.nodes[1].1.as_ref().map(|n| n.in_recovery),
        Some(true),
        "{before:?}"
    );

    // d. A missing container stops failover, failback and backup before they change anything.
    for rb in ["failover", "failback", "backup"] {
        let r = lab
            .pgrunbook(&["--config", &missing, "run", rb])
            .fails_with(5);
        let line = error_line(&r);
        assert!(
            line.contains("of node pg-replica does not exist") && line.contains("is the lab up?"),
            "{rb}: {line}"
        );
    }

    // e. So does an unreachable Docker engine.
    for rb in ["failover", "failback", "backup"] {
        let r = lab.pgrunbook_env(&["run", rb], &[NO_DOCKER]).fails_with(5);
        assert!(
            error_line(&r).contains("Docker engine unreachable"),
            "{rb}: {}",
            r.stderr
        );
    }

    // f. A wrong password is not a node that is down: failover does not call both nodes down
    //    and refuse (4), it says the login was refused (5), in a dry run too; status shows what
    //    it could read, each node as "login refused", then exits 5 the same way.
    for args in [
        &["run", "failover"][..],
        &["run", "failover", "--dry-run"],
        &["run", "verify"],
        &["run", "backup"],
        &["status"],
    ] {
        let r = lab
            .pgrunbook_env(args, &[("PGRUNBOOK_PASSWORD", WRONG_PASSWORD)])
            .fails_with(5);
        let line = error_line(&r);
        assert!(
            line.contains("on node pg-bases2") && line.contains("password authentication failed"),
            "{args:?}: {line}"
        );
        assert!(!r.stderr.contains(WRONG_PASSWORD) && !r.stdout.contains(WRONG_PASSWORD));
        if args == ["status"] {
            assert!(r.stdout.contains("login refused"), "{}", r.stdout);
        }
    }

    //    The standby's port with nothing behind it: failover sees no standby and refuses (4).
    let r = lab
        .pgrunbook_env(
            &["run", "failover"],
            &[("PGRUNBOOK_NODES__PG_REPLICA__PORT", &port)],
        )
        .fails_with(4);
    let line = error_line(&r);
    assert!(
        line.contains("no reachable standby to promote") && line.contains("pg-replica is down"),
        "{line}"
    );
    assert_eq!(snapshot(&lab), before, "nothing changed");

    // g. Redis is down: the procedure runs, its journal goes to the spool file (0600)...
    let spool = lab.dir.path().join("spool.jsonl");
    let journal_before = lab.stream("journal").len();
    let url = format!("redis://127.0.0.1:{}", lab.redis_port);
    lab.stop_redis();
    let r = lab
        .pgrunbook(&["run", "verify"])
        .succeeds()
        .stdout_has("verify: all checks passed")
        .stderr_has(&format!("warning: Redis at {url} is unreachable"))
        .stderr_has(&format!(
            "journal entries are kept in {} and delivered when Redis is back",
            spool.display()
        ));
    assert_eq!(
        r.stderr.matches("warning:").count(),
        1,
        "one warning per run: {}",
        r.stderr
    );
    lab.start_redis();
    assert_eq!(
        lab.stream("journal").len(),
        journal_before,
        "Redis got nothing"
    );
    let spooled: Vec<serde_json::Value> = std::fs::read_to_string(&spool)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events: Vec<&str> = spooled
        .iter()
        .map(|s| s["fields"]["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["start", "step", "step", "end"], "{spooled:?}");
    assert!(spooled
        .iter()
        .all(|s| s["stream"] == "journal" && s["fields"]["runbook"] == "verify"));
    let run_id = spooled[0]["fields"]["run_id"].as_str().unwrap().to_string();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&spool).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the spool is private");

    // ...and the next command that reaches Redis delivers it, oldest first, marked spooled.
    lab.pgrunbook(&["journal", "--last", "1"])
        .succeeds()
        .stderr_has("delivered 4 journal entries spooled while Redis was unreachable");
    let delivered: Vec<_> = lab
        .stream("journal")
        .into_iter()
        .filter(|e| e["run_id"] == run_id)
        .collect();
    assert_eq!(delivered.len(), 4, "{delivered:?}");
    assert!(delivered.iter().all(|e| e["spooled"] == "true"));
    assert_eq!(delivered[0]["event"], "start");
    assert_eq!(delivered[3]["event"], "end");
    assert_eq!(delivered[3]["outcome"], "ok");
    assert!(
        std::fs::read_to_string(&spool).unwrap().trim().is_empty(),
        "the spool is emptied"
    );
    let r = lab.pgrunbook(&["journal", "--last", "1"]).succeeds();
    assert!(!r.stderr.contains("delivered"), "{}", r.stderr);
    assert_eq!(
        lab.stream("journal")
            .iter()
            .filter(|e| e["run_id"] == run_id)
            .count(),
        4,
        "delivered once"
    );
}

// ---- l: a parameter of the wrong type --------------------------------------------------------

/// A value that does not fit the type the server expects for its `$n` is the runbook's mistake
/// (exit 3), not an unreachable node (exit 5): the error names the parameter as written (`$3`),
/// the value and the type, and nothing is sent, so nothing is written.
#[test]
fn a_parameter_of_the_wrong_type_is_a_runbook_error() {
    let lab = TestLab::up("paramtype");
    let rows = || lab.query_i64("pg-bases2", "SELECT count(*) FROM public.replica_test");
    let before = rows();
    let s = lab.script(
        "param_type.rhai",
        r#"//! A parameter of the wrong type.
step("Write");
sql("pg-bases2", "INSERT INTO public.replica_test(val) SELECT 'sum ' || ($1::int + $2::int + $3::int)", [1, 2, "three"]);
"#,
    );
    let r = lab
        .pgrunbook(&["run", &s])
        .fails_with(3)
        .stderr_has("--> param_type.rhai:3:1 in step \"Write\"");
    let line = error_line(&r);
    assert!(
        line.contains("$3"),
        "names the parameter as written: {line}"
    );
    assert!(line.contains("\"three\""), "names the value: {line}");
    assert!(line.contains("int4"), "names the expected type: {line}");
    assert!(
        !line.contains("connection") && !line.contains("serializing"),
        "{line}"
    );
    assert_eq!(rows(), before, "nothing was inserted");
    let end = ends(&lab).pop().unwrap();
    assert_eq!(end["exit_code"], "3", "{end:?}");
}

/// Nodes on several Docker engines that are no simulated hosts of this machine, and no
/// `[lab] repo_host_path`: `lab up` refuses before it makes anything (each host would get a
/// pgBackRest repository of its own). A repo_host_path that a bind mount cannot take is refused
/// when the configuration is read.
#[test]
fn a_lab_across_engines_without_a_shared_repository_is_refused() {
    require_docker();
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("prt-repochk-{}", std::process::id());
    let cfg = dir.path().join("pgrunbook.toml");
    let node = |name: &str, addr: &str, init: &str| {
        format!(
            "[nodes.{name}]\ncontainer = \"{tag}-{name}\"\ndocker = \"tcp://{addr}:2375\"\n\
             host = \"{addr}\"\nport = 5432\nslot = \"{name}\"\ninit = \"{init}\"\n"
        )
    };
    let base = format!(
        "{}{}[lab]\nnetwork = \"{tag}-net\"\nlabel = \"{tag}\"\nredis_container = \"{tag}-redis\"\n",
        node("a", "192.0.2.1", "primary"),
        node("b", "192.0.2.2", "standby"),
    );
    let env = [
        ("PGRUNBOOK_CONFIG", cfg.to_str().unwrap()),
        ("PGRUNBOOK_DATA_DIR", dir.path().to_str().unwrap()),
    ];
    std::fs::write(&cfg, &base).unwrap();
    let r = pgrunbook_in(dir.path(), &["lab", "up"], &env).fails_with(2);
    assert!(
        r.stderr
            .contains("each host would have a pgBackRest repository of its own")
            && r.stderr.contains("Set [lab] repo_host_path"),
        "{r:?}"
    );
    let made = Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&made.stdout).contains(&tag),
        "no container made"
    );
    let nets = Command::new("docker")
        .args(["network", "ls", "--format", "{{.Name}}"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&nets.stdout).contains(&tag),
        "no network made"
    );
    std::fs::write(&cfg, format!("{base}repo_host_path = \"srv/pgbackrest\"\n")).unwrap();
    pgrunbook_in(dir.path(), &["lab", "up"], &env)
        .fails_with(2)
        .stderr_has("lab.repo_host_path = \"srv/pgbackrest\" is not an absolute path");
}
