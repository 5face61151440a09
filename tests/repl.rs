//! `pgrunbook repl` end to end: the binary in a pseudo-terminal, typed at as a user would (Tab,
//! Enter, Ctrl-C, Ctrl-D), against a lab of real containers; what the session did is checked with
//! direct PostgreSQL clients, not by its own word.
//!
//! Reading the screen: escape sequences are stripped, so the line editor's redraws read as
//! `\r` + prompt + line + `\r`. A fresh, empty prompt is the prompt followed at once by `\r`: that is
//! how the test knows an input has been dealt with and the next one may be typed.

mod common;
use common::*;

use rexpect::process::WaitStatus;
use rexpect::reader::Options;
use rexpect::session::{spawn_with_options, PtySession};
use std::path::Path;
use std::time::{Duration, Instant};

/// A fresh prompt (normal or dry run), nothing typed yet.
const FRESH_PROMPT: &str = r"pgrunbook(\[dry\])?> \r";

struct Repl {
    s: PtySession,
    /// Everything read so far, for failure messages.
    log: String,
}

impl Repl {
    fn start(lab: &TestLab) -> Repl {
        Repl::spawn(
            lab.dir.path(),
            &lab.config_path,
            &lab.dir.path().join("data"),
        )
    }

    /// A session in `dir` with the configuration file `config` and the data directory `data`
    /// (where the history file is).
    fn spawn(dir: &Path, config: &Path, data: &Path) -> Repl {
        let mut cmd = std::process::Command::new(BIN);
        cmd.arg("repl")
            .current_dir(dir)
            .env("PGRUNBOOK_CONFIG", config)
            .env("PGRUNBOOK_DATA_DIR", data)
            .env("TERM", "xterm")
            .env_remove("NO_COLOR")
            .env_remove("PGRUNBOOK_PASSWORD")
            .env_remove("PGRUNBOOK_REPLICATION_PASSWORD");
        let s = spawn_with_options(
            cmd,
            Options::new()
                .timeout_ms(Some(30_000))
                .strip_ansi_escape_codes(true),
        )
        .expect("spawn pgrunbook repl in a pty");
        Repl {
            s,
            log: String::new(),
        }
    }

    fn fail(&self, what: &str, err: impl std::fmt::Display) -> ! {
        panic!("{what}: {err}\n--- session so far ---\n{}", self.log);
    }

    /// Waits for `text`; returns what came before it.
    fn expect(&mut self, text: &str, what: &str) -> String {
        match self.s.exp_string(text) {
            Ok(before) => {
                self.log.push_str(&before);
                self.log.push_str(text);
                before
            }
            Err(e) => self.fail(&format!("waiting for {text:?} ({what})"), e),
        }
    }

    /// Waits for a fresh prompt; returns what was printed before it.
    fn prompt(&mut self, what: &str) -> String {
        match self.s.exp_regex(FRESH_PROMPT) {
            Ok((before, m)) => {
                self.log.push_str(&before);
                self.log.push_str(&m);
                before
            }
            Err(e) => self.fail(&format!("waiting for a fresh prompt ({what})"), e),
        }
    }

    fn send(&mut self, keys: &str) {
        self.s.send(keys).unwrap();
        self.s.flush().unwrap();
    }

    /// Types a line and Enter.
    fn enter(&mut self, line: &str) {
        self.send(&format!("{line}\r"));
    }

    /// Types a line, waits until it has run, returns its output.
    fn run(&mut self, line: &str) -> String {
        self.enter(line);
        self.prompt(line)
    }

    fn alive(&self) -> bool {
        matches!(self.s.process().status(), Some(WaitStatus::StillAlive))
    }

    /// Ctrl-D at the prompt; the exit status (within 10 s).
    fn leave(&mut self) -> Option<WaitStatus> {
        self.s.send_control('d').unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            match self.s.process().status() {
                Some(WaitStatus::StillAlive) if Instant::now() < end => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                other => break other,
            }
        }
    }
}

fn lines(out: &str) -> Vec<&str> {
    out.split(['\r', '\n'])
        .filter(|l| !l.trim().is_empty())
        .collect()
}

/// Queries running on the node whose text mentions pg_sleep (not counting this one).
fn sleeping_queries(lab: &TestLab) -> i64 {
    lab.query_i64(
        "pg-bases2",
        "SELECT count(*) FROM pg_stat_activity WHERE state <> 'idle' \
         AND query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()",
    )
}

fn slots(lab: &TestLab) -> Vec<String> {
    lab.query_strings(
        "pg-bases2",
        "SELECT slot_name::text FROM pg_replication_slots ORDER BY 1",
    )
}

#[test]
fn repl_session_end_to_end() {
    let lab = TestLab::replicating("repl");
    let mut r = Repl::start(&lab);
    let banner = r.prompt("the first prompt");
    assert!(
        banner.contains("cluster"),
        "the banner names the imported modules:\n{banner}"
    );

    // Tab completes a primitive's name, and the completed line is the one that runs.
    r.send("create_sl");
    r.send("\t");
    r.expect("create_slot", "the name completed by Tab");
    r.enter(r#"("pg-bases2", "repl_tab_slot")"#);
    let out = r.prompt("create_slot after completion");
    assert!(
        out.contains("=> true"),
        "create_slot should return true:\n{out}"
    );
    assert!(
        slots(&lab).contains(&"repl_tab_slot".to_string()),
        "the slot created from the completed line is missing: {:?}",
        slots(&lab)
    );

    // Ctrl-C at the prompt drops the line typed so far and the session goes on.
    r.send("let dropped = 1");
    r.expect("let dropped = 1", "the typed line");
    r.s.send_control('c').unwrap();
    r.prompt("Ctrl-C at the prompt");
    assert!(
        r.alive(),
        "Ctrl-C at the prompt ended the session\n{}",
        r.log
    );
    let out = r.run("dropped");
    assert!(
        out.contains("error:"),
        "the dropped line must not have run:\n{out}"
    );

    // A function defined over several lines (Enter on an open `{` continues it), then used.
    r.enter("fn twice(x) {");
    r.enter("x * 2");
    r.enter("}");
    let out = r.prompt("the multi-line function definition");
    assert!(!out.contains("error"), "defining twice failed:\n{out}");
    let out = r.run("twice(21)");
    assert!(
        lines(&out).contains(&"=> 42"),
        "twice(21) should print 42:\n{out}"
    );
    // Variables persist too.
    r.run("let n = twice(5);");
    let out = r.run("n + 1");
    assert!(lines(&out).contains(&"=> 11"), "n should persist:\n{out}");

    // Rows print as a table.
    let out = r.run(r#"sql("pg-bases2", "SELECT 1 AS one, 'a' AS letter")"#);
    let ls = lines(&out);
    let header = ls
        .iter()
        .position(|l| l.contains("one") && l.contains("letter") && l.contains('|'));
    let Some(header) = header else {
        panic!("no table header with `one` and `letter`:\n{out}");
    };
    let sep = ls.get(header + 1).copied().unwrap_or("");
    assert!(
        sep.contains("-+-") && sep.chars().all(|c| c == '-' || c == '+'),
        "no separator line under the header:\n{out}"
    );
    // (Rhai maps keep their keys sorted: the columns come in name order.)
    let row: Vec<&str> = ls
        .get(header + 2)
        .unwrap_or(&"")
        .split('|')
        .map(str::trim)
        .collect();
    assert!(
        row.contains(&"1") && row.contains(&"a"),
        "no row under the separator:\n{out}"
    );

    // An error shows with a caret, and the session goes on.
    let out = r.run("nosuch_fn(1)");
    assert!(
        out.contains("function not found: nosuch_fn"),
        "no error message:\n{out}"
    );
    let ls = lines(&out);
    let src = ls.iter().position(|l| l.contains("| nosuch_fn(1)"));
    assert!(
        src.is_some_and(|i| ls.get(i + 1).is_some_and(|l| l.trim_end().ends_with('^'))),
        "no caret under the source line:\n{out}"
    );
    let out = r.run("1 + 1");
    assert!(
        lines(&out).contains(&"=> 2"),
        "1 + 1 after an error:\n{out}"
    );

    // Meta-commands.
    let out = r.run(":help");
    for c in [
        ":help", ":status", ":nodes", ":run", ":load", ":dry", ":quit",
    ] {
        assert!(out.contains(c), ":help does not list {c}:\n{out}");
    }
    let out = r.run(":help create_slot");
    assert!(
        out.contains("create_slot(node: &str, name: &str) -> bool")
            && out.contains("physical replication slot"),
        ":help create_slot lacks the signature or the doc:\n{out}"
    );
    let out = r.run(":nodes");
    assert!(
        lines(&out)
            .iter()
            .any(|l| l.starts_with("pg-bases2") && l.contains("primary"))
            && lines(&out)
                .iter()
                .any(|l| l.starts_with("pg-replica") && l.contains("standby")),
        ":nodes should show the primary and the standby:\n{out}"
    );
    let out = r.run("cluster::primary()");
    assert!(
        out.contains("=> \"pg-bases2\""),
        "the stdlib is imported:\n{out}"
    );
    r.run(":dry on");
    let out = r.run(r#"create_slot("pg-bases2", "repl_dry_slot")"#);
    assert!(
        out.contains("[dry run] would create replication slot"),
        "dry run:\n{out}"
    );
    assert!(
        !slots(&lab).contains(&"repl_dry_slot".to_string()),
        "the dry run created the slot"
    );
    r.run(":dry off");
    let script = lab.script(
        "helpers.rhai",
        "fn thrice(x) { x * 3 }\nlet loaded = thrice(2);\n",
    );
    let out = r.run(&format!(":load {script}"));
    assert!(!out.contains("error"), ":load failed:\n{out}");
    let out = r.run("thrice(loaded)");
    assert!(
        lines(&out).contains(&"=> 18"),
        "what :load defined persists:\n{out}"
    );
    let out = r.run(":run verify");
    assert!(out.contains("runbook verify: ok"), ":run verify:\n{out}");

    // Ctrl-C during a long query: back at the prompt at once, and the query cancelled on the server.
    r.enter(r#"sql("pg-bases2", "SELECT pg_sleep(30)")"#);
    let end = Instant::now() + Duration::from_secs(10);
    while sleeping_queries(&lab) == 0 {
        assert!(
            Instant::now() < end,
            "the pg_sleep query never started\n{}",
            r.log
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = Instant::now();
    r.s.send_control('c').unwrap();
    let out = r.prompt("the prompt after Ctrl-C");
    let took = sent.elapsed();
    eprintln!("the prompt came back {took:?} after Ctrl-C");
    assert!(
        took < Duration::from_secs(1),
        "the prompt came back after {took:?}:\n{out}"
    );
    assert!(
        out.contains("cancel"),
        "the error should say the query was cancelled:\n{out}"
    );
    let end = Instant::now() + Duration::from_secs(2);
    while sleeping_queries(&lab) > 0 {
        assert!(
            Instant::now() < end,
            "pg_sleep is still running on the server 2 s after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        r.alive(),
        "Ctrl-C during a statement ended the session\n{}",
        r.log
    );
    let out = r.run("twice(4)");
    assert!(
        lines(&out).contains(&"=> 8"),
        "the session goes on after Ctrl-C:\n{out}"
    );

    // Ctrl-D leaves with exit status 0, and the history is in the data directory.
    let status = r.leave();
    assert!(
        matches!(status, Some(WaitStatus::Exited(_, 0))),
        "Ctrl-D should exit with 0, got {status:?}\n{}",
        r.log
    );
    let history = std::fs::read_to_string(lab.dir.path().join("data").join("repl_history"))
        .expect("the history file");
    assert!(
        history.contains("twice(21)"),
        "history lacks twice(21):\n{history}"
    );
}

/// The history file never holds a configured password: an input holding one is not added at all
/// (the other inputs are), and a history written before (by an older pgrunbook) that holds one
/// has it masked. No lab is needed: the inputs only assign variables.
#[test]
fn repl_history_keeps_no_password() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let config = dir.path().join("pgrunbook.toml");
    std::fs::write(
        &config,
        format!(
            "[cluster]\npassword = \"{PASSWORD}\"\nreplication_password = \"{REPL_PASSWORD}\"\n"
        ),
    )
    .unwrap();
    let history_file = data.join("repl_history");
    std::fs::write(
        &history_file,
        format!("#V2\nlet old = \"{REPL_PASSWORD}\";\nlet kept_from_before = 1;\n"),
    )
    .unwrap();
    let read_history = || std::fs::read_to_string(&history_file).expect("the history file");

    let mut r = Repl::spawn(dir.path(), &config, &data);
    let banner = r.prompt("the first prompt");
    assert!(
        banner.contains("replication"),
        "the banner names the modules:\n{banner}"
    );
    r.run(&format!("let pw = \"{PASSWORD}\";"));
    r.run("let ordinary = 40 + 2;");
    // The history is saved after each input: no password in it while the session goes on either.
    let during = read_history();
    assert!(
        !during.contains(PASSWORD) && !during.contains(REPL_PASSWORD),
        "a password is in the history file during the session:\n{during}"
    );
    assert!(
        during.contains("let ordinary = 40 + 2;"),
        "an ordinary input is missing from the history:\n{during}"
    );
    let out = r.run(&format!("pw == \"{PASSWORD}\""));
    assert!(
        lines(&out).contains(&"=> true"),
        "the input holding the password still runs:\n{out}"
    );
    // The alias the session imports `replication` as is the documented one.
    let out = r.run(":help replication");
    assert!(
        out.contains("import \"replication\" as replication;")
            && out.contains("replication::is_streaming("),
        ":help replication:\n{out}"
    );
    let status = r.leave();
    assert!(
        matches!(status, Some(WaitStatus::Exited(_, 0))),
        "Ctrl-D should exit with 0, got {status:?}\n{}",
        r.log
    );

    let history = read_history();
    assert!(
        !history.contains(PASSWORD) && !history.contains(REPL_PASSWORD),
        "a password is in the history file:\n{history}"
    );
    for kept in [
        "let ordinary = 40 + 2;",
        "let kept_from_before = 1;",
        "let old = \"********\";",
        ":help replication",
    ] {
        assert!(
            history.lines().any(|l| l == kept),
            "the history lacks {kept:?}:\n{history}"
        );
    }
    assert!(
        !history.contains("let pw"),
        "the input holding the password is in the history (masked or not):\n{history}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&history_file)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "the history file's mode");
}

/// `()` is shown for an expression whose value it is (so a call that answers "nothing" is seen
/// to answer), not after a statement nor after a call that prints. No lab is needed.
#[test]
fn repl_shows_unit_values_of_expressions_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pgrunbook.toml");
    std::fs::write(&config, "").unwrap();
    let mut r = Repl::spawn(dir.path(), &config, &dir.path().join("data"));
    r.prompt("the first prompt");
    let unit = |out: &str| lines(out).contains(&"=> ()");
    for (input, shown) in [
        ("let u = ();", false),
        ("u", true),
        ("fn nothing() { }", false),
        ("nothing()", true),
        ("nothing();", true),
        ("()", true),
        ("u = 1", false),
        ("const C = ();", false),
        ("if u == 1 { }", false),
        ("print(\"said\")", false),
        ("debug(1)", false),
    ] {
        let out = r.run(input);
        assert_eq!(
            unit(&out),
            shown,
            "{input:?} {} show `=> ()`:\n{out}",
            if shown { "should" } else { "should not" }
        );
    }
    let out = r.run("print(\"said\")");
    assert!(lines(&out).contains(&"said"), "print prints:\n{out}");
    // `clear()` is not Rhai; the error says what clears the screen.
    let out = r.run("clear()");
    assert!(
        out.contains(":clear"),
        "clear() should point at :clear:\n{out}"
    );
    r.run(":clear");
    assert!(r.alive(), ":clear ended the session\n{}", r.log);
    let out = r.run("1 + 1");
    assert!(lines(&out).contains(&"=> 2"), "after :clear:\n{out}");
}
