//! `pgrunbook check` finds what is wrong with a runbook without running it (no Docker, no
//! database): unknown functions, missing modules and undefined variables, each at its
//! `file:line:col` with the source line and a caret.

mod common;
use common::*;

use std::path::Path;

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(p, text).unwrap();
}

/// Asserts that stderr reports `message` at `loc` (`file:line:col`), with the caret under the
/// column.
fn reports(r: &Run, loc: &str, message: &str) {
    let lines: Vec<&str> = r.stderr.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim() == format!("--> {loc}"))
        .unwrap_or_else(|| panic!("no problem at {loc}\n{}", r.stderr));
    assert_eq!(
        lines[at - 1],
        format!("error: {message}"),
        "at {loc}\n{}",
        r.stderr
    );
    let (line, col) = {
        let mut parts = loc.rsplit(':');
        let col: usize = parts.next().unwrap().parse().unwrap();
        let line: usize = parts.next().unwrap().parse().unwrap();
        (line, col)
    };
    let prefix = format!("{line} | ");
    assert!(
        lines[at + 2].starts_with(&prefix),
        "no source line at {loc}\n{}",
        r.stderr
    );
    let caret = lines[at + 3];
    assert_eq!(
        caret.find('^'),
        Some(prefix.len() + col - 1),
        "caret for {loc}\n{}",
        r.stderr
    );
}

/// The "module not found" message (its list of stdlib modules grows with the stdlib).
fn module_not_found(r: &Run, name: &str) -> String {
    let start = format!("error: module '{name}' not found (stdlib modules: ");
    let line = r
        .stderr
        .lines()
        .find(|l| l.starts_with(&start))
        .unwrap_or_else(|| panic!("no {start:?}\n{}", r.stderr));
    line["error: ".len()..].to_string()
}

#[test]
fn unknown_functions_are_reported_with_the_nearest_name() {
    let d = dir();
    write(
        d.path(),
        "typo.rhai",
        r#"//! Broken on purpose: misspelled and miscounted calls.
import "cluster" as cluster;
let primary = cluster::primry();
if primary != () {
    creat_slot(primary, "slot1");
}
fn twice(x) { x * 2 }
print(twice(1, 2));
[1, 2].frob();
"#,
    );
    let r = pgrunbook_in(d.path(), &["check", "typo.rhai"], &[]).fails_with(3);
    reports(
        &r,
        "typo.rhai:3:24",
        "unknown function 'cluster::primry' (did you mean cluster::primary?)",
    );
    reports(
        &r,
        "typo.rhai:5:5",
        "unknown function 'creat_slot' (did you mean create_slot?)",
    );
    reports(
        &r,
        "typo.rhai:8:7",
        "function 'twice' takes 1 argument, not 2",
    );
    assert!(r.stderr.contains("unknown function 'frob'"), "{}", r.stderr);
    r.stderr_has("--> typo.rhai:9:8")
        .stderr_has("check found 4 problem(s)");
}

#[test]
fn missing_modules_are_reported_at_the_import() {
    let d = dir();
    write(
        d.path(),
        "imports.rhai",
        "//! Broken on purpose: a module that does not exist.\nimport \"cluster\" as cluster;\nimport \"nosuch\" as x;\nx::anything();\n",
    );
    let r = pgrunbook_in(d.path(), &["check", "imports.rhai"], &[]).fails_with(3);
    let message = module_not_found(&r, "nosuch");
    assert!(
        message.contains("backup, clients, cluster, diagnose, failback, failover, health, lsn, replication, switchover, verify"),
        "{message}"
    );
    reports(&r, "imports.rhai:3:8", &message);
    // Calls into the missing module are not reported again.
    r.stderr_has("check found 1 problem(s)");
}

#[test]
fn local_modules_are_checked_too() {
    let d = dir();
    write(
        d.path(),
        "stdlib/mine.rhai",
        "fn hello(who) { `hello ${who}` }\nprivate fn secret() { 1 }\n",
    );
    write(d.path(), "stdlib/broken.rhai", "fn oops( { }\n");
    write(
        d.path(),
        "uses.rhai",
        "//! Uses local modules.\nimport \"mine\" as mine;\nimport \"broken\" as broken;\nprint(mine::hello(\"x\"));\nprint(mine::helo(\"x\"));\nprint(mine::secret());\n",
    );
    let r = pgrunbook_in(d.path(), &["check", "uses.rhai"], &[]).fails_with(3);
    reports(
        &r,
        "uses.rhai:5:13",
        "unknown function 'mine::helo' (did you mean mine::hello?)",
    );
    reports(&r, "uses.rhai:6:13", "unknown function 'mine::secret'");
    r.stderr_has("--> uses.rhai:3:8")
        .stderr_has("error: module 'broken' does not compile: ")
        .stderr_has("stdlib/broken.rhai:1:");
}

#[test]
fn undefined_variables_are_reported_with_the_nearest_name() {
    let d = dir();
    write(
        d.path(),
        "vars.rhai",
        r#"//! Broken on purpose: variables that are not defined where they are used.
//!
//! param node = "pg-bases2"  The node
let primary = node;
print(primry);
fn check_node(n) {
    sql(n, "SELECT 1");
    primary
}
let f = |x| x + missing;
for s in [1] { print(s); }
print(s);
"#,
    );
    let r = pgrunbook_in(d.path(), &["check", "vars.rhai"], &[]).fails_with(3);
    reports(
        &r,
        "vars.rhai:5:7",
        "undefined variable 'primry' (did you mean primary?)",
    );
    reports(
        &r,
        "vars.rhai:8:5",
        "undefined variable 'primary': a function cannot see the runbook's variables and parameters; pass it as an argument",
    );
    reports(&r, "vars.rhai:10:17", "undefined variable 'missing'");
    reports(&r, "vars.rhai:12:7", "undefined variable 's'");
    r.stderr_has("check found 4 problem(s)");
}

#[test]
fn every_kind_of_problem_in_one_script_is_reported_in_order() {
    let d = dir();
    write(
        d.path(),
        "all.rhai",
        r#"//! Broken on purpose, three ways.
import "nosuch" as nosuch;
let primary = "pg-bases2";
creat_slot(primary, "slot1");
print(primry);
"#,
    );
    let r = pgrunbook_in(d.path(), &["check", "all.rhai"], &[]).fails_with(3);
    reports(&r, "all.rhai:2:8", &module_not_found(&r, "nosuch"));
    reports(
        &r,
        "all.rhai:4:1",
        "unknown function 'creat_slot' (did you mean create_slot?)",
    );
    reports(
        &r,
        "all.rhai:5:7",
        "undefined variable 'primry' (did you mean primary?)",
    );
    let order: Vec<usize> = ["--> all.rhai:2:8", "--> all.rhai:4:1", "--> all.rhai:5:7"]
        .iter()
        .map(|l| r.stderr.find(l).unwrap())
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "not in order\n{}",
        r.stderr
    );
    r.stderr_has("check found 3 problem(s)");
}

#[test]
fn a_correct_script_reports_nothing() {
    let d = dir();
    write(
        d.path(),
        "good.rhai",
        r#"//! A correct runbook that uses much of the language.
//!
//! param node = "pg-bases2"  The node
//! param limit = 3           How many

import "cluster" as cluster;
import "lsn" as lsn;

// Called as a method: `this` is the list.
fn add(name, ok) {
    this.push(#{ name: name, ok: ok });
}

fn double(x) { x * 2 }

fn total(list) {
    list.reduce(|sum, c| sum + if c.ok { 1 } else { 0 }, 0)
}

let checks = [];
checks.add("first", true);
for (n, i) in nodes() {
    checks.add(`${n} #${i}`, n != node);
}
let big = [1, 2, 3].filter(|v| v > limit).map(|v| double(v));
let f = Fn("double");
let g = |x| f.call(x) + limit;
let h = double;
let greeter = #{ greet: |who| `hello ${who}` };
print(greeter.greet(node));
print(g.call(1) + h.call(2) + big.len() + total(checks));
try {
    throw "boom";
} catch (err) {
    print(`caught ${err}`);
}
let i = 0;
while i < limit { i += 1; }
do { i -= 1; } while i > 0;
switch i { 0 => print("zero"), 1 if limit > 1 => print("one"), _ => print(i) }
print(lsn::diff("0/2", "0/1") + params.limit);
let p = cluster::primary();
if p != () {
    print(`${p} is ${cluster::role(p)}; ${type_of(p)}; ${p.len()} ${"x" in p}`);
}
"#,
    );
    pgrunbook_in(d.path(), &["check", "good.rhai"], &[])
        .succeeds()
        .stdout_has("ok      good.rhai");
}

/// The runbooks shipped in runbooks/ (`setup`, `examples/replication_report`...), from the folder.
fn shipped_runbooks() -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, base, out);
            } else if p.extension().is_some_and(|x| x == "rhai") {
                let rel = p.strip_prefix(base).unwrap().with_extension("");
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks");
    let mut names = vec![];
    walk(&base, &base, &mut names);
    names.sort();
    for name in [
        "setup",
        "verify",
        "failover",
        "failback",
        "backup",
        "switchover",
        "rotate-replication-password",
    ] {
        assert!(
            names.iter().any(|n| n == name),
            "runbooks/{name}.rhai not found in {names:?}"
        );
    }
    names
}

#[test]
fn every_shipped_runbook_and_stdlib_module_passes() {
    let d = dir();
    let r = pgrunbook_in(d.path(), &["check"], &[]).succeeds();
    for name in shipped_runbooks() {
        assert!(
            r.stdout
                .contains(&format!("ok      <shipped>/runbooks/{name}.rhai")),
            "check did not pass {name}\n{}",
            r.stdout
        );
    }
    let stdlib = Path::new(env!("CARGO_MANIFEST_DIR")).join("stdlib");
    let mut modules: Vec<String> = std::fs::read_dir(&stdlib)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "rhai"))
        .map(|p| p.display().to_string())
        .collect();
    modules.sort();
    assert!(!modules.is_empty());
    let mut args = vec!["check"];
    args.extend(modules.iter().map(String::as_str));
    let r = pgrunbook_in(d.path(), &args, &[]).succeeds();
    for m in &modules {
        assert!(
            r.stdout.contains(&format!("ok      {m}")),
            "{m} not checked\n{}",
            r.stdout
        );
    }
}

#[test]
fn a_runbook_whose_header_does_not_parse_is_an_error_not_left_out() {
    let d = dir();
    write(
        d.path(),
        "runbooks/bad.rhai",
        "//! Bad header on purpose.\n//!\n//! param timeout_s = soon  Seconds\nprint(1);\n",
    );
    write(d.path(), "runbooks/good.rhai", "//! Fine.\nprint(1);\n");
    for cmd in ["list", "check"] {
        pgrunbook_in(d.path(), &[cmd], &[])
            .fails_with(3)
            .stderr_has("invalid parameter declaration")
            .stderr_has("--> runbooks/bad.rhai:3:");
    }
    // The others are still listed and checked.
    pgrunbook_in(d.path(), &["list"], &[])
        .fails_with(3)
        .stdout_has("good ")
        .stdout_has("setup ");
    pgrunbook_in(d.path(), &["check"], &[])
        .fails_with(3)
        .stdout_has("ok      runbooks/good.rhai");
}
