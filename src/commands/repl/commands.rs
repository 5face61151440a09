//! The `:` commands: `:help [NAME]`, `:nodes`, `:run`, `:log`, `:load`, `:dry`, `:vars`,
//! `:clear`, `:quit`.

use super::session::{Session, SOURCE};
use super::show::show_failure;
use crate::commands::reference::{self, FnDoc};
use crate::engine::{self, runbook::Runbook};
use crate::error::Failure;
use crate::{errln, out, outln};

/// The `:` commands: name, arguments, what it does.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    (
        ":help",
        "[NAME]",
        "this list; with NAME, the signature and doc of a primitive, a function or a module",
    ),
    (
        ":status",
        "",
        "the cluster at a glance, as `pgrunbook status`: each node's role, state, lag and slots",
    ),
    (":nodes", "", "the same as :status"),
    (
        ":run",
        "RUNBOOK [key=value ...]",
        "runs a runbook with parameters",
    ),
    (
        ":load",
        "FILE",
        "runs a script file in this session: its variables and functions stay",
    ),
    (
        ":dry",
        "[on|off]",
        "dry run: primitives print the changes they would make instead of making them",
    ),
    (
        ":log",
        "NODE [N] [TEXT]",
        "the last N (30) entries of the node's PostgreSQL log as log lines, or only those containing TEXT (pg_log)",
    ),
    (":vars", "", "the variables of this session"),
    (":clear", "", "clears the screen (so does Ctrl-L)"),
    (":quit", "", "leaves (so does Ctrl-D)"),
];

/// What the loop does after a command.
pub enum Flow {
    Continue,
    ClearScreen,
    Quit,
}

/// Runs a `:` command (`line` without the colon).
pub fn command(session: &mut Session, line: &str) -> Flow {
    let (cmd, args) = line
        .split_once(char::is_whitespace)
        .map(|(c, a)| (c, a.trim()))
        .unwrap_or((line, ""));
    match cmd {
        "help" | "h" | "?" if args.is_empty() => print_commands(),
        "help" | "h" | "?" => help(session, args),
        "nodes" | "status" => {
            let st = session.guarded(|s| {
                let mut st = crate::commands::status::collect(&s.host);
                crate::commands::status::explain(&s.host, &mut st);
                st
            });
            out!("{}", crate::commands::status::render(&st));
        }
        "run" => run_runbook(session, args),
        "log" => log(session, args),
        "load" => load(session, args),
        "dry" => {
            let host = &session.host;
            match args {
                "on" => host.set_dry_run(true),
                "off" => host.set_dry_run(false),
                "" => {}
                other => errln!("usage: :dry on|off (not {other:?})"),
            }
            if host.dry_run() {
                outln!("dry run is on: changes are printed, not made");
            } else {
                outln!("dry run is off: changes are made");
            }
        }
        "vars" => {
            if session.scope.is_empty() {
                outln!("(no variables)");
            }
            for (name, constant, value) in session.scope.iter() {
                let kind = if constant { "const" } else { "let" };
                outln!(
                    "{kind} {name} = {}",
                    session.host.mask(&format!("{value:?}"))
                );
            }
        }
        "clear" | "cls" => return Flow::ClearScreen,
        "quit" | "q" | "exit" => return Flow::Quit,
        other => {
            let names: Vec<&str> = COMMANDS.iter().map(|c| &c.0[1..]).collect();
            let hint = crate::suggest::nearest(other, names.iter().copied())
                .map(|s| format!("; did you mean :{s}?"))
                .unwrap_or_default();
            errln!("unknown command :{other}{hint} (:help lists them)");
        }
    }
    Flow::Continue
}

fn run_runbook(session: &mut Session, args: &str) {
    let mut parts = args.split_whitespace();
    let Some(name) = parts.next() else {
        errln!("usage: :run RUNBOOK [key=value ...]");
        return;
    };
    let sets: Result<Vec<(String, String)>, Failure> = parts
        .map(|s| {
            s.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .ok_or_else(|| Failure::usage(format!("parameters are key=value, not {s:?}")))
        })
        .collect();
    let prepared = sets.and_then(|sets| {
        let rb = Runbook::find(name)?;
        let params = engine::bind_params(&rb, &sets)?;
        Ok((rb, params))
    });
    let (rb, params) = match prepared {
        Ok(p) => p,
        Err(f) => return show_failure(&f),
    };
    let result = session.guarded(|s| engine::run(&s.host, &rb, params));
    if session.host.dry_run() {
        let planned = session.host.run.lock().unwrap().planned.clone();
        outln!("plan: {} change(s) would be made", planned.len());
        for (i, p) in planned.iter().enumerate() {
            outln!("  {}. {p}", i + 1);
        }
    }
    match result {
        Ok(()) if session.host.dry_run() => {
            outln!("runbook {}: dry run finished, nothing was changed", rb.name)
        }
        Ok(()) => outln!("runbook {}: ok", rb.name),
        Err(f) => show_failure(&f),
    }
}

/// How wide `:log` writes: an 80-column terminal shows each line whole.
const LOG_WIDTH: usize = 80;

/// `:log NODE [N] [TEXT]`: the server's last entries as log lines (`log_lines(pg_log(...))`:
/// time, level, message, then detail and hint below), evaluated in the session (so Ctrl-C
/// stops it).
fn log(session: &mut Session, args: &str) {
    let mut parts = args.split_whitespace();
    let Some(node) = parts.next() else {
        errln!(
            "usage: :log NODE [N] [TEXT]  (nodes: {})",
            session
                .host
                .config
                .nodes
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
        return;
    };
    let mut lines = 30;
    let mut grep: Vec<&str> = vec![];
    for p in parts {
        match p.parse::<i64>() {
            Ok(n) if grep.is_empty() && n > 0 => lines = n,
            _ => grep.push(p),
        }
    }
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let grep = if grep.is_empty() {
        String::new()
    } else {
        format!(", grep: {}", quote(&grep.join(" ")))
    };
    let text = format!(
        "print(log_lines(pg_log({}, #{{lines: {lines}{grep}}}), {LOG_WIDTH}));",
        quote(node)
    );
    session.eval_text(&text, false);
}

fn load(session: &mut Session, path: &str) {
    if path.is_empty() {
        errln!("usage: :load FILE");
        return;
    }
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let first = session.lines + 1;
            session.eval_text(&text, false);
            outln!(
                "loaded {path} (lines {first}-{} of {SOURCE})",
                session.lines
            );
        }
        Err(e) => errln!("cannot read {path}: {e}"),
    }
}

/// `:help NAME`: a stdlib module's functions; the signatures and doc of a primitive or stdlib
/// function, from the reference (`commands::reference`, what `docs/primitives.md` is made of);
/// else a function of this session or of Rhai itself, from the engine's metadata.
fn help(session: &Session, name: &str) {
    let host = &session.host;
    let modules = match reference::stdlib(host) {
        Ok(m) => m,
        Err(f) => return show_failure(&f),
    };
    if let Some((_, about, fns)) = modules.iter().find(|(m, _, _)| m == name) {
        outln!("module {name}: import \"{name}\" as {name};");
        for line in wrap(about, 2) {
            outln!("{line}");
        }
        for f in fns {
            outln!("  {}", one_line(&f.signature, &f.doc));
        }
        return;
    }
    let mut found = match reference::lookup(host, name) {
        Ok(found) => found,
        Err(f) => return show_failure(&f),
    };
    let engine_fns = engine_functions(session);
    if found.is_empty() {
        found = engine_fns
            .iter()
            .filter(|f| f.name == name)
            .cloned()
            .collect();
    }
    if found.is_empty() {
        let mut known: Vec<String> = reference::all(host)
            .unwrap_or_default()
            .into_iter()
            .flat_map(|f| match f.name.rsplit_once("::") {
                Some((_, short)) => vec![short.to_string(), f.name.clone()],
                None => vec![f.name],
            })
            .collect();
        known.extend(modules.into_iter().map(|(m, _, _)| m));
        known.extend(engine_fns.into_iter().map(|f| f.name));
        let hint = crate::suggest::nearest(name, known.iter().map(String::as_str))
            .map(|s| format!("; did you mean {s}?"))
            .unwrap_or_default();
        errln!("no function or module named {name}{hint}");
        return;
    }
    for (i, f) in found.iter().enumerate() {
        if i > 0 {
            outln!();
        }
        outln!("{}", f.signature);
        // A line that fits stays as it is (the examples in Rhai's own docs are code).
        for line in f.doc.lines() {
            if line.is_empty() {
                outln!();
            } else if 4 + line.chars().count() <= WIDTH {
                outln!("    {line}");
            } else {
                for l in wrap(line, 4) {
                    outln!("{l}");
                }
            }
        }
    }
}

/// The global functions the engine knows beyond the reference: the session's own and Rhai's
/// (closures and private functions are nothing a user can call).
fn engine_functions(session: &Session) -> Vec<FnDoc> {
    let json = session
        .engine
        .gen_fn_metadata_with_ast_to_json(&session.ast, true)
        .unwrap_or_default();
    let meta: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
    meta["functions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["isAnonymous"] != true && f["access"] != "private")
        .filter_map(|f| {
            let name = f["name"].as_str()?.to_string();
            Some(FnDoc {
                signature: f["signature"].as_str().unwrap_or(&name).to_string(),
                doc: doc_text(f),
                name,
            })
        })
        .collect()
}

/// The doc comment of a function in Rhai's metadata JSON, without the comment markers.
fn doc_text(f: &serde_json::Value) -> String {
    let mut out = vec![];
    for c in f["docComments"].as_array().into_iter().flatten() {
        for line in c.as_str().unwrap_or("").lines() {
            let l = line.trim();
            let l = l
                .strip_prefix("///")
                .or_else(|| l.strip_prefix("/**"))
                .or_else(|| l.strip_prefix('*'))
                .unwrap_or(l);
            let l = l.strip_suffix("*/").unwrap_or(l);
            out.push(l.strip_prefix(' ').unwrap_or(l).trim_end().to_string());
        }
    }
    while out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    out.join("\n")
}

/// A function's signature and the first sentence of its doc, cut to one line.
fn one_line(signature: &str, doc: &str) -> String {
    let first = match doc.find(". ") {
        Some(i) => &doc[..=i],
        None => doc.lines().next().unwrap_or(""),
    };
    let line = format!("{signature}  {first}");
    if 2 + line.chars().count() <= WIDTH {
        return line;
    }
    let mut cut: String = line.chars().take(WIDTH - 2 - 3).collect();
    if let Some(i) = cut.rfind(' ') {
        cut.truncate(i);
    }
    format!("{cut}...")
}

/// How wide `:help` writes.
const WIDTH: usize = 96;

/// `text` in lines of at most `WIDTH` columns (a longer word stays whole), each indented by
/// `indent`.
fn wrap(text: &str, indent: usize) -> Vec<String> {
    let pad = " ".repeat(indent);
    let mut lines: Vec<String> = vec![];
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent + line.len() + 1 + word.len() > WIDTH {
            lines.push(format!("{pad}{line}"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(format!("{pad}{line}"));
    }
    lines
}

fn print_commands() {
    outln!("Type Rhai statements: variables and functions stay for the session. The stdlib");
    outln!("modules are imported under their names, as runbooks import them (`import \"cluster\"");
    outln!(
        "as cluster;`): cluster::primary(), replication::..., lsn::..., health::..., backup::..."
    );
    outln!();
    for (name, args, what) in COMMANDS {
        let usage = format!("{name} {args}");
        outln!("  {usage:<32} {what}");
    }
    outln!();
    outln!("Tab completes names; Enter on an unfinished statement continues it on the next line;");
    outln!(
        "Ctrl-C stops the running statement (a SQL query too) or clears the line; Ctrl-D leaves."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_wrap_and_shorten() {
        assert_eq!(wrap("a b", 4), vec!["    a b"]);
        let long = "word ".repeat(40);
        let lines = wrap(&long, 4);
        assert!(lines.len() > 1 && lines.iter().all(|l| l.len() <= 96));
        assert_eq!(
            one_line("f()", "Finds the primary. Returns () when none."),
            "f()  Finds the primary."
        );
        assert_eq!(one_line("f()", "One line\nand more"), "f()  One line");
        let cut = one_line("f()", &"long ".repeat(40));
        assert!(cut.ends_with("long...") && cut.len() <= WIDTH - 2, "{cut}");
    }
}
