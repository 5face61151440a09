//! Tab completion for the line editor: primitives, Rhai functions, `module::function` and
//! keywords; the session's own variables and functions; node and runbook names inside a string;
//! the `:` commands, runbook names and parameters after `:run`, file names after `:load`. The
//! same helper is the validator that makes Enter continue an unfinished statement.

use super::commands::COMMANDS;
use super::input::is_incomplete;
use super::module_alias;
use crate::engine::runbook::{self, Runbook};
use crate::runtime::host::Host;
use rhai::{Engine, FnAccess, OptimizationLevel};
use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};
use std::sync::Arc;

const KEYWORDS: &[&str] = &[
    "let", "const", "fn", "if", "else", "switch", "while", "loop", "for", "in", "do", "until",
    "break", "continue", "return", "throw", "try", "catch", "import", "export", "as", "true",
    "false", "private", "global",
];

/// Completion, multi-line input and (default) hints and highlighting for the line editor.
pub struct ReplHelper {
    /// Parses inputs for the validator (syntax only: nothing is registered in it).
    pub parser: Engine,
    /// Primitives, Rhai functions, `module::function` and keywords.
    words: Vec<String>,
    /// What goes in a string: node and runbook names.
    strings: Vec<String>,
    /// Runbook names and their parameters, for `:run`.
    runbooks: Vec<(String, Vec<String>)>,
    /// Variables and functions defined in the session.
    pub session_words: Vec<String>,
    files: FilenameCompleter,
}

impl ReplHelper {
    pub fn new(host: &Arc<Host>, engine: &Engine) -> ReplHelper {
        let mut parser = Engine::new_raw();
        parser.set_optimization_level(OptimizationLevel::None);
        parser.set_max_expr_depths(128, 64);

        let mut words: Vec<String> = crate::engine::function_names(engine)
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

    #[test]
    fn completes_in_context() {
        let h = ReplHelper {
            parser: Engine::new_raw(),
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
