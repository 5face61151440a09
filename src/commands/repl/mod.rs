//! `pgrunbook repl`: an interactive Rhai session with every primitive and the stdlib modules.
//!
//! Modelled on rhai's own `rhai-repl`: one `Scope` lives for the whole session (`session`), each
//! input is compiled on its own and its functions are kept, so `let` variables and `fn`
//! definitions persist from one input to the next. On top of that:
//! - the stdlib modules are imported under their own names, as the runbooks and the docs import
//!   them (`import "replication" as replication;`), and an `import` typed at the prompt stays
//!   imported;
//! - Tab completes primitives, Rhai functions, `module::function`, node and runbook names and the
//!   `:` commands (`completer`); Enter on an unfinished statement (an open `{`, `(`, `[`) goes on
//!   to the next line (`input`);
//! - rows (an array of maps, what `sql` returns) print as a table; an error prints with a caret
//!   under its position, and the session goes on (`show`);
//! - `:help`, `:nodes`, `:run`, `:load`, `:dry`, `:vars`, `:clear`, `:quit` (`commands`);
//! - Ctrl-C while a statement runs stops it, a SQL query included (cancelled on the server); at the
//!   prompt it clears the line (`signals`). Ctrl-D or `:quit` leaves;
//! - the history file never holds a configured password (`history`).

mod commands;
mod completer;
mod history;
mod input;
mod session;
mod show;
mod signals;

use crate::engine::runbook;
use crate::error::{Class, Failure};
use crate::outln;
use crate::runtime::host::Host;
use commands::Flow;
use completer::ReplHelper;
use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{CompletionType, Editor};
use session::Session;
use show::show_failure;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The name a stdlib module is imported as in the session: its own, as the runbooks, the stdlib
/// and the reference (`docs/primitives.md`) import it.
pub fn module_alias(name: &str) -> &str {
    name
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
    let history = history::History::new(host.config.secrets());
    history.load(&mut rl);
    // After the editor, which installs a SIGINT handler of its own: this one replaces it.
    signals::install_interrupt(&host, &running);

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
        let input = match input::read_input(&mut rl, prompt) {
            Ok(input) => input,
            // Ctrl-C at the prompt: the line is dropped, the session goes on.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                history.save(&mut rl);
                return Err(Failure::new(
                    Class::Infrastructure,
                    format!("repl: cannot read input: {e}"),
                ));
            }
        };
        if input.trim().is_empty() {
            continue;
        }
        history.add(&mut rl, &input);
        let flow = match input::meta_command(&input) {
            Some(line) => commands::command(&mut session, line),
            None => {
                session.eval(&input);
                Flow::Continue
            }
        };
        let _ = std::io::stdout().flush();
        if let Some(h) = rl.helper_mut() {
            h.session_words = session.words();
        }
        match flow {
            Flow::Continue => {}
            Flow::ClearScreen => {
                let _ = rl.clear_screen();
            }
            Flow::Quit => break,
        }
    }
    history.save(&mut rl);
    Ok(())
}

fn editor_error(e: ReadlineError) -> Failure {
    Failure::new(
        Class::Infrastructure,
        format!("repl: cannot start the line editor: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The alias the session imports each stdlib module as is the one the reference documents
    /// (`## Stdlib: \`import "NAME" as ALIAS;\``) and the one every shipped runbook and stdlib
    /// module imports it as.
    #[test]
    fn modules_are_imported_as_documented() {
        let host = Arc::new(Host::new(crate::config::Config::defaults()));
        let reference = crate::commands::reference::markdown(&host).unwrap();
        let names = runbook::module_names();
        assert!(names.iter().any(|n| n == "replication"), "{names:?}");
        for name in &names {
            let alias = module_alias(name);
            let documented = format!("`import \"{name}\" as {alias};`");
            assert!(
                reference.contains(&documented),
                "the reference does not document {documented}"
            );
        }
        let engine = crate::engine::build(&host, &Default::default());
        for (file, text) in crate::embedded::RUNBOOKS
            .iter()
            .chain(crate::embedded::STDLIB.iter())
        {
            let ast = engine.compile(text).unwrap();
            for (path, alias) in session::imports_of(&ast) {
                if names.contains(&path) {
                    assert_eq!(
                        alias,
                        module_alias(&path),
                        "{file} imports {path:?} as {alias}"
                    );
                }
            }
        }
    }
}
