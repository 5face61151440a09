//! Reading an input: a whole statement, which may span lines (Enter on an open `{`, `(`, `[`
//! goes on to the next line), and telling a `:` command from Rhai.

use super::completer::ReplHelper;
use rhai::{Engine, LexError, ParseError, ParseErrorType, Position};
use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::Editor;

/// Reads one input. On a terminal the validator has waited for the end of the statement already;
/// piped input comes a line at a time, so the rest of an unfinished statement is read here.
pub fn read_input(
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

/// The `:` command an input is (without the colon), if it is one. `help`, `quit`, `exit` and
/// `clear` alone are commands too: as Rhai they would only be unknown variables.
pub fn meta_command(input: &str) -> Option<&str> {
    let t = input.trim();
    if let Some(c) = t.strip_prefix(':') {
        return Some(c);
    }
    matches!(t, "help" | "quit" | "exit" | "clear").then_some(t)
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

#[cfg(test)]
mod tests {
    use super::*;
    use rhai::OptimizationLevel;

    #[test]
    fn unfinished_statements_continue() {
        let mut p = Engine::new_raw();
        p.set_optimization_level(OptimizationLevel::None);
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
    fn commands_are_told_from_rhai() {
        assert_eq!(meta_command(":help sql"), Some("help sql"));
        assert_eq!(meta_command("  :q "), Some("q"));
        assert_eq!(meta_command("quit"), Some("quit"));
        assert_eq!(meta_command("clear"), Some("clear"));
        assert_eq!(meta_command("clear()"), None);
        assert_eq!(meta_command("help(1)"), None);
        assert_eq!(meta_command("a ? b : c"), None);
    }
}
