//! `pgrunbook repl`: an interactive Rhai session with every primitive and the stdlib modules.
//!
//! Modelled on rhai's own `rhai-repl`: one `Scope` lives for the whole session, each input is
//! compiled on its own and its functions are merged into one AST, so `let` variables and `fn`
//! definitions persist from one input to the next. On top of that:
//! - the stdlib modules are imported under the names the runbooks use (`cluster`, `repl`, `lsn`,
//!   `health`, `backup`), and an `import` typed at the prompt stays imported;
//! - Tab completes primitives, Rhai functions, `module::function`, node and runbook names and the
//!   `:` commands; Enter on an unfinished statement (an open `{`, `(`, `[`) goes on to the next line;
//! - rows (an array of maps, what `sql` returns) print as a table; an error prints with a caret
//!   under its position, and the session goes on;
//! - Ctrl-C while a statement runs stops it, a SQL query included (cancelled on the server); at the
//!   prompt it clears the line. Ctrl-D or `:quit` leaves.
//!
//! Positions: each input is compiled as if it followed the earlier ones in one file, `<repl>`, the
//! session's transcript. So an error inside a function defined ten inputs ago still shows the line
//! of that function, not a line of the input that called it.

// `Failure` is the error of every command (see `cli`), large or not.
#![allow(clippy::result_large_err)]

use crate::engine::runbook::{self, Runbook};
use crate::engine::{self, Sources};
use crate::error::{Class, Failure};
use crate::runtime::host::Host;
use crate::{errln, out, outln};
use rhai::{
    Dynamic, Engine, FnAccess, LexError, OptimizationLevel, ParseError, ParseErrorType, Position,
    Scope, AST,
};
use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{CompletionType, Context, Editor, Helper};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The name errors give the session's text.
const SOURCE: &str = "<repl>";

/// Past this many lines the transcript starts again (Rhai positions stop at 65535).
const MAX_TRANSCRIPT_LINES: usize = 60_000;

/// The `:` commands: name, arguments, what it does.
const COMMANDS: &[(&str, &str, &str)] = &[
    (
        ":help",
        "[NAME]",
        "this list; with NAME, the signature and doc of a primitive, a function or a module",
    ),
    (
        ":nodes",
        "",
        "each node's role, state and lag (as `pgrunbook status`)",
    ),
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
    (":vars", "", "the variables of this session"),
    (":quit", "", "leaves (so does Ctrl-D)"),
];

const KEYWORDS: &[&str] = &[
    "let", "const", "fn", "if", "else", "switch", "while", "loop", "for", "in", "do", "until",
    "break", "continue", "return", "throw", "try", "catch", "import", "export", "as", "true",
    "false", "private", "global",
];

/// The name a stdlib module is imported as, the one the shipped runbooks use.
pub fn module_alias(name: &str) -> &str {
    match name {
        "replication" => "repl",
        n => n,
    }
}

/// Runs the REPL until `:quit` or Ctrl-D.
pub fn run(config: Option<&Path>) -> Result<(), Failure> {
    let host = Arc::new(Host::new(super::load_config(config)?));
    let running = Arc::new(AtomicBool::new(false));
    let mut session = Session::new(host.clone(), running.clone());
    let mut aliases = vec![];
    for name in runbook::module_names() {
        let alias = module_alias(&name).to_string();
        match session.import(&name, &alias) {
            Ok(()) => aliases.push(alias),
            Err(f) => show_failure(&f),
        }
    }

    let helper = ReplHelper::new(&host, &session.engine);
    let editor_config = rustyline::Config::builder()
        .completion_type(CompletionType::List)
        .auto_add_history(false)
        .max_history_size(1000)
        .and_then(|b| b.history_ignore_dups(true))
        .map_err(editor_error)?
        .build();
    let mut rl: Editor<ReplHelper, FileHistory> =
        Editor::with_config(editor_config).map_err(editor_error)?;
    rl.set_helper(Some(helper));
    let history = crate::config::data_dir().join("repl_history");
    if let Some(dir) = history.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = rl.load_history(&history);
    // After the editor, which installs a SIGINT handler of its own: this one replaces it.
    install_interrupt(&host, &running);

    outln!(
        "pgrunbook repl: Rhai with every primitive; modules imported: {}.",
        aliases.join(", ")
    );
    outln!("Tab completes, :help lists the commands, Ctrl-C stops a statement, Ctrl-D leaves.");

    loop {
        let prompt = if host.dry_run() {
            "pgrunbook[dry]> "
        } else {
            "pgrunbook> "
        };
        let _ = std::io::stdout().flush();
        let input = match read_input(&mut rl, prompt) {
            Ok(input) => input,
            // Ctrl-C at the prompt: the line is dropped, the session goes on.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                let _ = rl.save_history(&history);
                return Err(Failure::new(
                    Class::Infrastructure,
                    format!("repl: cannot read input: {e}"),
                ));
            }
        };
        if input.trim().is_empty() {
            continue;
        }
        let _ = rl.add_history_entry(input.as_str());
        let _ = rl.save_history(&history);
        let trimmed = input.trim();
        let flow = if trimmed.starts_with(':') || matches!(trimmed, "help" | "quit" | "exit") {
            session.command(trimmed.trim_start_matches(':'))
        } else {
            session.eval(&input);
            Flow::Continue
        };
        let _ = std::io::stdout().flush();
        if let Some(h) = rl.helper_mut() {
            h.session_words = session.words();
        }
        if let Flow::Quit = flow {
            break;
        }
    }
    let _ = rl.save_history(&history);
    Ok(())
}

fn editor_error(e: ReadlineError) -> Failure {
    Failure::new(
        Class::Infrastructure,
        format!("repl: cannot start the line editor: {e}"),
    )
}

/// Reads one input. On a terminal the validator has waited for the end of the statement already;
/// piped input comes a line at a time, so the rest of an unfinished statement is read here.
fn read_input(
    rl: &mut Editor<ReplHelper, FileHistory>,
    prompt: &str,
) -> Result<String, ReadlineError> {
    let mut text = rl.readline(prompt)?;
    while rl.helper().is_some_and(|h| is_incomplete(&h.parser, &text)) {
        match rl.readline("") {
            Ok(more) => {
                text.push('\n');
                text.push_str(&more);
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(text)
}

/// Ctrl-C while a statement runs: sets the cancel flag (Rhai stops at its next operation, the
/// primitives at their next check) and cancels the SQL query under way on the server. A second
/// Ctrl-C before the statement stops leaves the REPL. At the prompt nothing is done here: the line
/// editor reads Ctrl-C as a key then (raw mode), and a stray signal must not end the session.
fn install_interrupt(host: &Arc<Host>, running: &Arc<AtomicBool>) {
    let h = host.clone();
    let r = running.clone();
    let set = ctrlc::set_handler(move || {
        if !r.load(Ordering::SeqCst) {
            return;
        }
        if h.cancel.is_cancelled() {
            errln!("\ninterrupted again: leaving the REPL");
            std::process::exit(130);
        }
        h.cancel.cancel();
        h.pg.cancel_inflight();
        errln!();
        // A query may have started between the flag and its cancel token: cancel again a few
        // times while the statement is still running.
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(50));
            if !r.load(Ordering::SeqCst) {
                break;
            }
            h.pg.cancel_inflight();
        }
    });
    match set {
        // ctrlc also catches SIGTERM and SIGHUP (its `termination` feature); here they keep their
        // default, ending the process, or `kill` could not end an idle session.
        // SAFETY: setting a signal's disposition to its default has no other effect.
        Ok(()) => unsafe {
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            libc::signal(libc::SIGHUP, libc::SIG_DFL);
        },
        Err(e) => {
            errln!("warning: Ctrl-C cannot stop a running statement in this session: {e}")
        }
    }
}

enum Flow {
    Continue,
    Quit,
}

/// What lives for the whole session.
struct Session {
    host: Arc<Host>,
    sources: Sources,
    engine: Engine,
    scope: Scope<'static>,
    /// The functions defined so far (statements are dropped after each input).
    ast: AST,
    /// Every input so far, one after the other: the text errors point into.
    transcript: String,
    lines: usize,
    /// Whether a statement is running (for the Ctrl-C handler).
    running: Arc<AtomicBool>,
}

impl Session {
    fn new(host: Arc<Host>, running: Arc<AtomicBool>) -> Session {
        let sources: Sources = Arc::new(Mutex::new(HashMap::new()));
        let engine = engine::build(&host, &sources);
        let mut ast = AST::empty();
        ast.set_source(SOURCE);
        Session {
            host,
            sources,
            engine,
            scope: Scope::new(),
            ast,
            transcript: String::new(),
            lines: 0,
            running,
        }
    }

    /// Imports a module for the rest of the session: later inputs and functions see it.
    fn import(&mut self, path: &str, alias: &str) -> Result<(), Failure> {
        let module = self
            .engine
            .module_resolver()
            .resolve(&self.engine, None, path, Position::NONE)
            .map_err(|e| engine::to_failure(&e, SOURCE, &self.host, &self.sources))?;
        self.engine.register_static_module(alias, module);
        Ok(())
    }

    /// Runs `f` as a statement: Ctrl-C cancels it.
    fn guarded<T>(&mut self, f: impl FnOnce(&mut Session) -> T) -> T {
        self.host.cancel.reset();
        self.running.store(true, Ordering::SeqCst);
        let r = f(self);
        self.running.store(false, Ordering::SeqCst);
        r
    }

    /// Compiles and runs one input; prints its value or its error.
    fn eval(&mut self, text: &str) {
        if self.lines > MAX_TRANSCRIPT_LINES {
            self.transcript.clear();
            self.lines = 0;
        }
        // Compiled at its place in the transcript, so positions are lines of the transcript.
        let placed = format!("{}{text}", "\n".repeat(self.lines));
        self.transcript.push_str(text);
        if !self.transcript.ends_with('\n') {
            self.transcript.push('\n');
        }
        self.lines = self.transcript.lines().count();
        self.sources
            .lock()
            .unwrap()
            .insert(SOURCE.to_string(), self.transcript.clone());
        let ast = match engine::compile(&self.engine, SOURCE, &placed) {
            Ok(ast) => ast,
            Err(f) => return show_failure(&f),
        };
        self.ast += ast;
        let result = self.guarded(|s| {
            s.engine
                .eval_ast_with_scope::<Dynamic>(&mut s.scope, &s.ast)
        });
        // Keep the functions, drop the statements (as rhai-repl does).
        self.ast.clear_statements();
        match result {
            Ok(value) => {
                if let Some(text) = format_value(&value) {
                    out!("{}", self.host.scrub(&text));
                }
                for (path, alias) in imports_in(text) {
                    let _ = self.import(&path, &alias);
                }
            }
            Err(e) => show_failure(&engine::to_failure(&e, SOURCE, &self.host, &self.sources)),
        }
    }

    /// Variables and functions of the session, for completion.
    fn words(&self) -> Vec<String> {
        let mut w: Vec<String> = self.scope.iter().map(|(n, _, _)| n.to_string()).collect();
        w.extend(
            self.ast
                .iter_functions()
                .filter(|f| !f.name.contains('$'))
                .map(|f| f.name.to_string()),
        );
        w.sort();
        w.dedup();
        w
    }

    /// A `:` command (without the colon).
    fn command(&mut self, line: &str) -> Flow {
        let (cmd, args) = line
            .split_once(char::is_whitespace)
            .map(|(c, a)| (c, a.trim()))
            .unwrap_or((line, ""));
        match cmd {
            "help" | "h" | "?" if args.is_empty() => print_commands(),
            "help" | "h" | "?" => self.help(args),
            "nodes" | "status" => {
                let st = self.guarded(|s| crate::commands::status::collect(&s.host));
                out!("{}", crate::commands::status::render(&st));
            }
            "run" => self.run_runbook(args),
            "load" => self.load(args),
            "dry" => {
                match args {
                    "on" => self.host.set_dry_run(true),
                    "off" => self.host.set_dry_run(false),
                    "" => {}
                    other => errln!("usage: :dry on|off (not {other:?})"),
                }
                if self.host.dry_run() {
                    outln!("dry run is on: changes are printed, not made");
                } else {
                    outln!("dry run is off: changes are made");
                }
            }
            "vars" => {
                if self.scope.is_empty() {
                    outln!("(no variables)");
                }
                for (name, constant, value) in self.scope.iter() {
                    let kind = if constant { "const" } else { "let" };
                    outln!("{kind} {name} = {}", self.host.scrub(&format!("{value:?}")));
                }
            }
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

    fn run_runbook(&mut self, args: &str) {
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
        let result = self.guarded(|s| engine::run(&s.host, &rb, params));
        if self.host.dry_run() {
            let planned = self.host.run.lock().unwrap().planned.clone();
            outln!("plan: {} change(s) would be made", planned.len());
            for (i, p) in planned.iter().enumerate() {
                outln!("  {}. {p}", i + 1);
            }
        }
        match result {
            Ok(()) => outln!("runbook {}: ok", rb.name),
            Err(f) => show_failure(&f),
        }
    }

    fn load(&mut self, path: &str) {
        if path.is_empty() {
            errln!("usage: :load FILE");
            return;
        }
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let first = self.lines + 1;
                self.eval(&text);
                outln!("loaded {path} (lines {first}-{} of {SOURCE})", self.lines);
            }
            Err(e) => errln!("cannot read {path}: {e}"),
        }
    }

    /// `:help NAME`: a function's signatures and doc, or a module's functions.
    fn help(&self, name: &str) {
        let json = self
            .engine
            .gen_fn_metadata_with_ast_to_json(&self.ast, true)
            .unwrap_or_default();
        let meta: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        let empty = vec![];
        // Closures and private functions are nothing a user can call.
        let functions = |v: &serde_json::Value| -> Vec<serde_json::Value> {
            v["functions"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .filter(|f| f["isAnonymous"] != true && f["access"] != "private")
                .cloned()
                .collect()
        };
        let modules = meta["modules"].as_object().cloned().unwrap_or_default();
        // A module: its functions with the first line of their doc.
        if let Some(m) = modules.get(name) {
            outln!("module {name}:");
            for f in functions(m) {
                let doc = doc_text(&f);
                let first = doc.lines().next().unwrap_or("");
                outln!(
                    "  {name}::{}  {first}",
                    f["signature"].as_str().unwrap_or("")
                );
            }
            return;
        }
        let mut found: Vec<(String, serde_json::Value)> = vec![];
        match name.rsplit_once("::") {
            Some((m, f)) => {
                if let Some(module) = modules.get(m) {
                    for func in functions(module) {
                        if func["name"] == f {
                            found.push((format!("{m}::"), func));
                        }
                    }
                }
            }
            None => {
                for func in functions(&meta) {
                    if func["name"] == name {
                        found.push((String::new(), func));
                    }
                }
                // `:help primary` finds `cluster::primary`.
                if found.is_empty() {
                    for (m, module) in &modules {
                        for func in functions(module) {
                            if func["name"] == name {
                                found.push((format!("{m}::"), func));
                            }
                        }
                    }
                }
            }
        }
        if found.is_empty() {
            let mut known: Vec<String> = functions(&meta)
                .iter()
                .filter_map(|f| f["name"].as_str().map(str::to_string))
                .collect();
            for (m, module) in &modules {
                known.push(m.clone());
                known.extend(
                    functions(module)
                        .iter()
                        .filter_map(|f| f["name"].as_str().map(|n| format!("{m}::{n}"))),
                );
            }
            let hint = crate::suggest::nearest(name, known.iter().map(String::as_str))
                .map(|s| format!("; did you mean {s}?"))
                .unwrap_or_default();
            errln!("no function or module named {name}{hint}");
            return;
        }
        for (i, (prefix, f)) in found.iter().enumerate() {
            if i > 0 {
                outln!();
            }
            outln!("{prefix}{}", f["signature"].as_str().unwrap_or(name));
            for line in doc_text(f).lines() {
                outln!("    {line}");
            }
        }
    }
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

fn print_commands() {
    outln!("Type Rhai statements: variables and functions stay for the session. The stdlib");
    outln!(
        "modules are imported (cluster::primary(), repl::..., lsn::..., health::..., backup::...)."
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

/// A value as the REPL prints it: rows as a table, a multi-line string as it is, anything else
/// after `=> `; nothing for `()`.
pub fn format_value(v: &Dynamic) -> Option<String> {
    if v.is_unit() {
        return None;
    }
    if v.is_array() {
        let rows = v.clone().into_array().unwrap_or_default();
        if !rows.is_empty() && rows.iter().all(Dynamic::is_map) {
            return Some(crate::table::render(&rows));
        }
    }
    if v.is_string() {
        let s = v.to_string();
        if s.contains('\n') {
            return Some(format!("{}\n", s.trim_end_matches('\n')));
        }
    }
    Some(format!("=> {v:?}\n"))
}

/// Prints a failure with its caret. The exit code it would have from the command line means
/// nothing here, the session goes on, so it is left out.
fn show_failure(f: &Failure) {
    let _ = std::io::stdout().flush();
    let suffix = format!(" (exit code {})", f.class.exit_code());
    let rendered = f.render();
    let text: Vec<&str> = rendered
        .lines()
        .map(|l| l.strip_suffix(suffix.as_str()).unwrap_or(l))
        .collect();
    errln!("{}", text.join("\n"));
}

/// `import "path" as name` statements of an input, to keep those modules after it.
fn imports_in(text: &str) -> Vec<(String, String)> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = vec![];
    let mut at = 0;
    while let Some(i) = text[at..].find("import") {
        let start = at + i;
        at = start + "import".len();
        if text[..start].chars().next_back().is_some_and(ident) {
            continue;
        }
        let t = text[at..].trim_start();
        let Some(t) = t.strip_prefix('"') else {
            continue;
        };
        let Some(end) = t.find('"') else { continue };
        let path = &t[..end];
        let t = t[end + 1..].trim_start();
        let Some(t) = t.strip_prefix("as") else {
            continue;
        };
        if !t.starts_with(char::is_whitespace) {
            continue;
        }
        let name: String = t.trim_start().chars().take_while(|c| ident(*c)).collect();
        if !name.is_empty() {
            out.push((path.to_string(), name));
        }
    }
    out
}

/// Whether an input is an unfinished statement (Enter then continues it on the next line).
pub fn is_incomplete(parser: &Engine, input: &str) -> bool {
    let t = input.trim();
    if t.is_empty() || t.starts_with(':') {
        return false;
    }
    match parser.compile(input) {
        Ok(_) => false,
        Err(e) => ends_early(&e, input),
    }
}

/// Whether a parse error says the input ended before the statement did.
fn ends_early(e: &ParseError, input: &str) -> bool {
    match e.err_type() {
        ParseErrorType::UnexpectedEOF => true,
        ParseErrorType::MissingToken(..) | ParseErrorType::MissingSymbol(..) => {
            at_end(e.position(), input)
        }
        // A back-tick string may span lines.
        ParseErrorType::BadInput(LexError::UnterminatedString) => {
            input.matches('`').count() % 2 == 1
        }
        _ => false,
    }
}

/// Whether a position is past the last non-blank character of the input.
fn at_end(pos: Position, input: &str) -> bool {
    let Some(line) = pos.line() else {
        return false;
    };
    let content = input.trim_end();
    let last_line = content.lines().count().max(1);
    let last_col = content
        .lines()
        .last()
        .map(|l| l.chars().count())
        .unwrap_or(0);
    line > last_line || line == last_line && pos.position().unwrap_or(0) > last_col
}

/// Completion, multi-line input and (default) hints and highlighting for the line editor.
struct ReplHelper {
    /// Parses inputs for the validator (syntax only: nothing is registered in it).
    parser: Engine,
    /// Primitives, Rhai functions, `module::function` and keywords.
    words: Vec<String>,
    /// What goes in a string: node and runbook names.
    strings: Vec<String>,
    /// Runbook names and their parameters, for `:run`.
    runbooks: Vec<(String, Vec<String>)>,
    /// Variables and functions defined in the session.
    session_words: Vec<String>,
    files: FilenameCompleter,
}

impl ReplHelper {
    fn new(host: &Arc<Host>, engine: &Engine) -> ReplHelper {
        let mut parser = Engine::new_raw();
        parser.set_optimization_level(OptimizationLevel::None);
        parser.set_max_expr_depths(128, 64);

        let mut words: Vec<String> = crate::engine::check::known_function_names(host)
            .into_iter()
            .filter(|n| n.starts_with(|c: char| c.is_alphabetic() || c == '_'))
            .collect();
        for name in runbook::module_names() {
            let alias = module_alias(&name);
            words.push(alias.to_string());
            if let Some((_, text)) = runbook::find_module(&name) {
                if let Ok(ast) = engine.compile(&text) {
                    words.extend(
                        ast.iter_functions()
                            .filter(|f| f.access != FnAccess::Private && !f.name.contains('$'))
                            .map(|f| format!("{alias}::{}", f.name)),
                    );
                }
            }
        }
        words.extend(KEYWORDS.iter().map(|k| k.to_string()));
        words.sort();
        words.dedup();

        // Completion offers the runbooks that load; `list` and `check` report the others.
        let runbooks: Vec<(String, Vec<String>)> = Runbook::scan()
            .0
            .into_iter()
            .map(|rb| {
                let params = rb
                    .meta
                    .params
                    .iter()
                    .map(|p| format!("{}=", p.name))
                    .collect();
                (rb.name, params)
            })
            .collect();
        let mut strings: Vec<String> = host.config.nodes.keys().cloned().collect();
        strings.extend(runbooks.iter().map(|(n, _)| n.clone()));
        strings.sort();
        strings.dedup();
        ReplHelper {
            parser,
            words,
            strings,
            runbooks,
            session_words: vec![],
            files: FilenameCompleter::new(),
        }
    }

    /// Where the word being completed starts, and what it may become.
    fn candidates(&self, line: &str, pos: usize) -> (usize, Vec<String>) {
        let before = &line[..pos];
        let trimmed = before.trim_start();
        let matching = |list: &mut dyn Iterator<Item = &String>, word: &str| -> Vec<String> {
            let mut v: Vec<String> = list.filter(|c| c.starts_with(word)).cloned().collect();
            v.sort();
            v.dedup();
            v
        };
        if trimmed.starts_with(':') {
            let lead = before.len() - trimmed.len();
            let Some((cmd, _)) = trimmed.split_once(char::is_whitespace) else {
                let names: Vec<String> = COMMANDS.iter().map(|c| c.0.to_string()).collect();
                return (lead, matching(&mut names.iter(), trimmed));
            };
            let start = before
                .rfind(char::is_whitespace)
                .map(|i| i + 1)
                .unwrap_or(0);
            let word = &before[start..];
            let args_before = before[lead + cmd.len()..start].split_whitespace().count();
            let list: Vec<String> = match cmd {
                ":help" | ":h" => self.words.clone(),
                ":run" if args_before == 0 => self.runbooks.iter().map(|r| r.0.clone()).collect(),
                ":run" => {
                    let rb = trimmed.split_whitespace().nth(1).unwrap_or("");
                    self.runbooks
                        .iter()
                        .find(|r| r.0 == rb)
                        .map(|r| r.1.clone())
                        .unwrap_or_default()
                }
                ":dry" => vec!["on".into(), "off".into()],
                _ => vec![],
            };
            return (start, matching(&mut list.iter(), word));
        }
        if let Some(q) = open_quote(before) {
            let word = &before[q + 1..];
            return (q + 1, matching(&mut self.strings.iter(), word));
        }
        let start = before
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_alphanumeric() || *c == '_' || *c == ':')
            .last()
            .map(|(i, _)| i)
            .unwrap_or(pos);
        let word = &before[start..];
        if word.is_empty() {
            return (pos, vec![]);
        }
        let mut all = self.words.iter().chain(self.session_words.iter());
        (start, matching(&mut all, word))
    }
}

/// Where the string literal the text ends in starts, if it ends inside one.
fn open_quote(s: &str) -> Option<usize> {
    let mut open = None;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match open {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(_) if c == '"' => open = None,
            None if c == '"' => open = Some(i),
            _ => {}
        }
    }
    open
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = line[..pos].trim_start();
        if before.starts_with(":load ") {
            return self.files.complete_path(line, pos);
        }
        let (start, words) = self.candidates(line, pos);
        let pairs = words
            .into_iter()
            .map(|w| Pair {
                display: w.clone(),
                replacement: w,
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        Ok(if is_incomplete(&self.parser, ctx.input()) {
            ValidationResult::Incomplete
        } else {
            ValidationResult::Valid(None)
        })
    }
}

impl Hinter for ReplHelper {
    type Hint = String;
}

impl Highlighter for ReplHelper {}

impl Helper for ReplHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser() -> Engine {
        let mut e = Engine::new_raw();
        e.set_optimization_level(OptimizationLevel::None);
        e
    }

    #[test]
    fn unfinished_statements_continue() {
        let p = parser();
        for text in [
            "fn twice(x) {",
            "fn twice(x) {\n  x * 2",
            "let a = [1, 2,",
            "sql(\"pg-bases2\",",
            "if x > 1 {",
            "1 +",
            "let m = #{ a: 1,",
            "let s = `two\nlines",
        ] {
            assert!(is_incomplete(&p, text), "{text:?} should continue");
        }
        for text in [
            "fn twice(x) {\n  x * 2\n}",
            "1 + 1",
            "let x = ;",
            "foo(1))",
            "x }",
            "",
            ":help",
            "let s = \"open",
        ] {
            assert!(!is_incomplete(&p, text), "{text:?} is complete (or wrong)");
        }
    }

    #[test]
    fn imports_are_found() {
        assert_eq!(
            imports_in("import \"cluster\" as c; let reimport = 1; import \"x.rhai\" as x_1;"),
            vec![
                ("cluster".into(), "c".into()),
                ("x.rhai".into(), "x_1".into())
            ]
        );
        assert!(imports_in("let important = \"a\" as b").is_empty());
    }

    #[test]
    fn values_print_as_a_repl_would() {
        assert_eq!(format_value(&Dynamic::UNIT), None);
        assert_eq!(format_value(&Dynamic::from_int(42)).unwrap(), "=> 42\n");
        assert_eq!(format_value(&Dynamic::from("a")).unwrap(), "=> \"a\"\n");
        assert_eq!(format_value(&Dynamic::from("a\nb\n")).unwrap(), "a\nb\n");
        let mut row = rhai::Map::new();
        row.insert("one".into(), Dynamic::from_int(1));
        let t = format_value(&Dynamic::from_array(vec![Dynamic::from_map(row)])).unwrap();
        assert_eq!(t, "one\n---\n1\n");
    }

    #[test]
    fn completes_in_context() {
        let h = ReplHelper {
            parser: parser(),
            words: vec![
                "cluster::primaries".into(),
                "cluster::primary".into(),
                "create_slot".into(),
                "sql".into(),
                "sql_value".into(),
            ],
            strings: vec!["pg-bases2".into(), "pg-replica".into(), "setup".into()],
            runbooks: vec![("backup".into(), vec!["type=".into()])],
            session_words: vec!["twice".into()],
            files: FilenameCompleter::new(),
        };
        assert_eq!(
            h.candidates("create_sl", 9),
            (0, vec!["create_slot".to_string()])
        );
        assert_eq!(h.candidates("let n = cluster::pri", 20).1.len(), 2);
        assert_eq!(h.candidates("tw", 2).1, vec!["twice"]);
        assert_eq!(
            h.candidates("sql(\"pg-r", 9),
            (5, vec!["pg-replica".to_string()])
        );
        assert_eq!(h.candidates(":ru", 3), (0, vec![":run".to_string()]));
        assert_eq!(h.candidates(":run ba", 7), (5, vec!["backup".to_string()]));
        assert_eq!(
            h.candidates(":run backup t", 13),
            (12, vec!["type=".to_string()])
        );
        assert!(h.candidates("x + ", 4).1.is_empty());
    }
}
