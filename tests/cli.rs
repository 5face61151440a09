//! Commands that need no lab: check, list, parameters, configuration.

mod common;
use common::*;

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn check_reports_the_position_of_a_syntax_error() {
    let d = dir();
    std::fs::write(
        d.path().join("broken.rhai"),
        "//! Broken on purpose.\nstep(\"one\");\nlet x = sql(\"pg-bases2\", \"SELECT 1\";\n",
    )
    .unwrap();
    let r = pgrunbook_in(d.path(), &["check", "broken.rhai"], &[]).fails_with(3);
    let r = r.stderr_has("syntax error").stderr_has("broken.rhai:3:");
    // The caret sits under the column the error names.
    let loc = r
        .stderr
        .lines()
        .find(|l| l.contains("--> broken.rhai:3:"))
        .unwrap();
    let col: usize = loc.rsplit(':').next().unwrap().trim().parse().unwrap();
    let caret = r
        .stderr
        .lines()
        .find(|l| l.trim_end().ends_with('^'))
        .unwrap();
    assert_eq!(
        caret.find('^').unwrap() - "  | ".len(),
        col - 1,
        "{}",
        r.stderr
    );
}

#[test]
fn list_shows_descriptions_and_parameters() {
    let d = dir();
    let r = pgrunbook_in(d.path(), &["list"], &[])
        .succeeds()
        .stdout_has("Sets up streaming replication and WAL archiving")
        .stdout_has("--set timeout_s=<integer> 120");
    let listed: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.ends_with("(shipped)"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for name in [
        "backup",
        "examples/replication_report",
        "failback",
        "failover",
        "rotate-replication-password",
        "setup",
        "switchover",
        "verify",
    ] {
        assert!(
            listed.contains(&name),
            "list lacks the shipped runbook {name}\n{}",
            r.stdout
        );
    }
}

#[test]
fn unknown_runbook_and_bad_parameters_are_usage_errors() {
    let d = dir();
    pgrunbook_in(d.path(), &["run", "setpu"], &[])
        .fails_with(2)
        .stderr_has("unknown runbook 'setpu'")
        .stderr_has("did you mean 'setup'");
    pgrunbook_in(d.path(), &["run", "setup", "--set", "timeout=5"], &[])
        .fails_with(2)
        .stderr_has("has no parameter 'timeout'")
        .stderr_has("did you mean timeout_s");
    pgrunbook_in(d.path(), &["run", "setup", "--set", "timeout_s=soon"], &[])
        .fails_with(2)
        .stderr_has("takes an integer");
}

/// Every command and subcommand clap knows (from `Cli::command()`), as argument paths:
/// `[]` for the top level, `["lab", "up"]`, ... `help` (clap's own) is left out.
fn command_paths() -> Vec<Vec<String>> {
    fn walk(cmd: &clap::Command, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(path.clone());
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            path.push(sub.get_name().to_string());
            walk(sub, path, out);
            path.pop();
        }
    }
    use clap::CommandFactory;
    let mut out = Vec::new();
    walk(&pgrunbook::cli::Cli::command(), &mut Vec::new(), &mut out);
    out
}

#[test]
fn every_command_has_help_with_examples() {
    let d = dir();
    let paths = command_paths();
    // The list comes from the code; these are here so that a broken walk cannot pass empty.
    for named in [
        "status",
        "watch",
        "repl",
        "config",
        "reference",
        "definitions",
        "lab build",
    ] {
        assert!(
            paths.iter().any(|p| p.join(" ") == named),
            "{named} is not among the commands: {paths:?}"
        );
    }
    let mut missing = Vec::new();
    for path in &paths {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let r = pgrunbook_in(d.path(), &args, &[]).succeeds();
        if !r.stdout.contains("Example") {
            missing.push(args.join(" "));
        }
    }
    assert!(
        missing.is_empty(),
        "help without an example: {}",
        missing.join("; ")
    );
}

#[test]
fn completions_and_man_page_name_every_command() {
    let d = dir();
    pgrunbook_in(d.path(), &["--help"], &[])
        .succeeds()
        .stdout_has("completions")
        .stdout_has("man");
    let commands = [
        "run",
        "list",
        "check",
        "lab",
        "backups",
        "journal",
        "status",
        "reference",
        "definitions",
        "config",
        "repl",
        "completions",
        "man",
    ];
    for shell in ["bash", "zsh", "fish"] {
        let mut run = pgrunbook_in(d.path(), &["completions", shell], &[]).succeeds();
        for c in commands {
            run = run.stdout_has(c);
        }
    }
    let mut man = pgrunbook_in(d.path(), &["man"], &[])
        .succeeds()
        .stdout_has(".TH pgrunbook 1");
    for c in commands {
        man = man.stdout_has(c);
    }
    pgrunbook_in(d.path(), &["completions", "powershell"], &[]).fails_with(2);
}

#[test]
fn config_comes_from_file_then_environment_and_masks_passwords() {
    let d = dir();
    std::fs::write(
        d.path().join("pgrunbook.toml"),
        "[cluster]\ndatabase = \"fromfile\"\npassword = \"hunter22\"\n",
    )
    .unwrap();
    pgrunbook_in(
        d.path(),
        &["config"],
        &[("PGRUNBOOK_REDIS__URL", "redis://127.0.0.1:7001")],
    )
    .succeeds()
    .stdout_has("database = \"fromfile\"")
    .stdout_has("redis://127.0.0.1:7001")
    .stdout_lacks("hunter22");
}

#[test]
fn size_parameters_are_shown_and_accepted_as_sizes() {
    let d = dir();
    let r = pgrunbook_in(d.path(), &["list"], &[]).succeeds();
    let line = r
        .stdout
        .lines()
        .find(|l| l.contains("--set max_lag="))
        .unwrap_or_else(|| panic!("no max_lag in list\n{}", r.stdout));
    assert!(line.contains("<size> 16MB"), "{line}");
    assert!(!r.stdout.contains("16777216"), "{}", r.stdout);
    let r = pgrunbook_in(d.path(), &["run", "failover", "--help"], &[]).succeeds();
    assert!(
        r.stdout.contains("--set max_lag=<size>") && r.stdout.contains("default 16MB"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("16777216"), "{}", r.stdout);
    // A bad size names the accepted forms, and is refused before anything runs. (That 8MB and
    // 8388608 are accepted is in runbook.rs's unit tests: accepted here, they would run a
    // failover against whatever listens on the default ports.)
    pgrunbook_in(
        d.path(),
        &["run", "failover", "--set", "max_lag=8 megs"],
        &[],
    )
    .fails_with(2)
    .stderr_has("takes a size")
    .stderr_has("8MB")
    .stderr_has("8388608");
}

#[test]
fn a_function_that_exists_for_other_arguments_says_what_it_takes() {
    // `clear` exists, for arrays, maps, strings and blobs, not with no argument: the error says
    // so, and does not suggest the very name that was typed. Nothing here needs a backend; the
    // ports are closed and Docker is elsewhere, so no lab that happens to run is touched.
    let d = dir();
    std::fs::write(
        d.path().join("x.rhai"),
        "//! Calls clear without its argument.\nclear();\n",
    )
    .unwrap();
    let (p1, p2, p3) = (
        free_port().to_string(),
        free_port().to_string(),
        free_port().to_string(),
    );
    let redis = format!("redis://127.0.0.1:{p3}");
    let data = d.path().join("data");
    let r = pgrunbook_in(
        d.path(),
        &["run", "./x.rhai"],
        &[
            ("PGRUNBOOK_NODES__PG_BASES2__PORT", p1.as_str()),
            ("PGRUNBOOK_NODES__PG_REPLICA__PORT", p2.as_str()),
            ("PGRUNBOOK_REDIS__URL", redis.as_str()),
            ("PGRUNBOOK_DATA_DIR", data.to_str().unwrap()),
            ("DOCKER_HOST", "unix:///tmp/nonexistent.sock"),
        ],
    )
    .fails_with(3)
    .stderr_has("error: function not found: clear (); clear exists for: clear(")
    .stderr_has("clear(array: &mut array)")
    .stderr_has("--> ./x.rhai:2:1");
    assert!(!r.stderr.contains("did you mean"), "{}", r.stderr);
}

/// Issue 19: a primitive's error caught and thrown again (`throw e`) points at the call that
/// failed, not at the `throw`, and says its message once; the `throw` follows in the trace. In
/// the runbook, and in a module (`./stdlib/wrap.rhai`) whose function throws it again. A thrown
/// string is the script's own error: it points at its `throw`. No lab: the primitive fails on an
/// unknown node.
#[test]
fn throw_e_after_catch_keeps_the_position_of_the_call_that_failed() {
    let d = dir();
    let write = |name: &str, text: &str| {
        let p = d.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(
        "again.rhai",
        "//! Catches a primitive's error and throws it again.\ntry {\n    sql(\"pg-nowhere\", \"SELECT 1/0\");\n} catch (e) {\n    print(\"cleanup\");\n    throw e;\n}\n",
    );
    write(
        "stdlib/wrap.rhai",
        "/// Throws a primitive's error again.\nfn run(node) {\n    try {\n        sql(node, \"SELECT 1/0\");\n    } catch (e) {\n        throw e;\n    }\n}\n",
    );
    write(
        "viamodule.rhai",
        "//! Calls a module that throws a primitive's error again.\nimport \"wrap\" as wrap;\n\nwrap::run(\"pg-nowhere\");\n",
    );
    write(
        "text.rhai",
        "//! Throws a string of its own.\ntry {\n    sql(\"pg-nowhere\", \"SELECT 1\");\n} catch (e) {\n    throw `cleanup failed: ${e}`;\n}\n",
    );
    let (p1, p2, p3) = (
        free_port().to_string(),
        free_port().to_string(),
        free_port().to_string(),
    );
    let redis = format!("redis://127.0.0.1:{p3}");
    let data = d.path().join("data");
    let run = |runbook: &str| {
        pgrunbook_in(
            d.path(),
            &["run", runbook],
            &[
                ("PGRUNBOOK_NODES__PG_BASES2__PORT", p1.as_str()),
                ("PGRUNBOOK_NODES__PG_REPLICA__PORT", p2.as_str()),
                ("PGRUNBOOK_REDIS__URL", redis.as_str()),
                ("PGRUNBOOK_DATA_DIR", data.to_str().unwrap()),
                ("DOCKER_HOST", "unix:///tmp/nonexistent.sock"),
            ],
        )
        .fails_with(3)
    };
    let message = "sql: unknown node 'pg-nowhere'";
    let once = |r: &Run| {
        assert_eq!(r.stderr.matches(message).count(), 1, "{}", r.stderr);
        assert_eq!(r.stderr.matches("error:").count(), 1, "{}", r.stderr);
    };

    // In the runbook: at the call on line 3, with its source line and the caret under `sql`.
    let r = run("./again.rhai")
        .stdout_has("cleanup")
        .stderr_has(&format!("error: {message}"))
        .stderr_has("--> ./again.rhai:3:5\n")
        .stderr_has("3 |     sql(\"pg-nowhere\", \"SELECT 1/0\");\n  |     ^\n")
        .stderr_has("= thrown again at ./again.rhai:6:5");
    once(&r);
    assert!(!r.stderr.contains("--> ./again.rhai:6"), "{}", r.stderr);

    // In a module: at the call inside it, then the throw, then the runbook's call.
    let r = run("./viamodule.rhai")
        .stderr_has("--> stdlib/wrap.rhai:4:9\n")
        .stderr_has("4 |         sql(node, \"SELECT 1/0\");")
        .stderr_has("= thrown again at stdlib/wrap.rhai:6:9")
        .stderr_has("= in call to run at ./viamodule.rhai:4:7");
    once(&r);

    // A string thrown: the script's own error, at its throw.
    let r = run("./text.rhai")
        .stderr_has(&format!("error: cleanup failed: {message}"))
        .stderr_has("--> ./text.rhai:5:5\n");
    assert!(!r.stderr.contains("thrown again"), "{}", r.stderr);
}
