//! How the session prints what an input gives: its value, or its failure with a caret.

use crate::errln;
use crate::error::Failure;
use crate::table::ColumnOrders;
use rhai::{Dynamic, Expr, FnCallExpr, Stmt, AST};
use std::io::Write;

/// Functions whose whole point is what they print: after them `()` is not shown.
const OUTPUT_FUNCTIONS: [&str; 5] = ["print", "debug", "warn", "print_table", "step"];

/// A value as the REPL prints it: rows (an array of maps) as a table with their columns in the
/// order the query or primitive gave them, or as records when the table would be wider than
/// `width`; a multi-line string as it is; anything else after `=> `, `()` included.
pub fn format_value(v: &Dynamic, orders: &ColumnOrders, width: Option<usize>) -> String {
    if v.is_array() {
        let rows = v.clone().into_array().unwrap_or_default();
        if !rows.is_empty() && rows.iter().all(Dynamic::is_map) {
            return crate::table::render_fit(&rows, orders, width);
        }
    }
    if v.is_string() {
        let s = v.to_string();
        if s.contains('\n') {
            return format!("{}\n", s.trim_end_matches('\n'));
        }
    }
    // A caught primitive error shows as its message (Rust's Debug gives only the type's name).
    if let Some(e) = v.read_lock::<crate::error::PrimitiveError>() {
        return format!("=> {:?}\n", e.to_string());
    }
    format!("=> {v:?}\n")
}

/// Whether an input whose value is `()` shows it. Its value is the value of its last statement:
/// that of an expression (`cluster::primary()` with no primary, `fence_info(node)` on a node
/// without a fence, `()`) is shown, so that "nothing" is seen as an answer; a statement's (`let`,
/// `const`, an assignment, `if` or a loop, `import`, a function definition) and that of a call
/// that prints (`print`, `debug`, `warn`, `print_table`, `step`) are not. rhai-repl shows no `()`
/// at all, which leaves a call that answers `()` looking as if it did nothing.
pub fn shows_unit(input: &AST) -> bool {
    // (A call is `Stmt::FnCall` once optimized, `Stmt::Expr(Expr::FnCall)` before.)
    match input.statements().last() {
        Some(Stmt::FnCall(call, _)) => !prints(call),
        Some(Stmt::Expr(e)) => match e.as_ref() {
            Expr::FnCall(call, _) => !prints(call),
            _ => true,
        },
        _ => false,
    }
}

fn prints(call: &FnCallExpr) -> bool {
    call.namespace.is_empty() && OUTPUT_FUNCTIONS.contains(&call.name.as_str())
}

/// The terminal's width when stdout is one; else `COLUMNS` when set; else None (no limit: the
/// output goes to a file or a pipe).
pub fn terminal_width() -> Option<usize> {
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        // SAFETY: TIOCGWINSZ fills a winsize struct for a terminal file descriptor.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
        if ok && ws.ws_col > 0 {
            return Some(ws.ws_col as usize);
        }
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .filter(|c| *c > 0)
}

/// Prints a failure with its caret. The exit code it would have from the command line means
/// nothing here, the session goes on, so it is left out.
pub fn show_failure(f: &Failure) {
    let _ = std::io::stdout().flush();
    let suffix = format!(" (exit code {})", f.class.exit_code());
    let rendered = f.render();
    let text: Vec<&str> = rendered
        .lines()
        .map(|l| l.strip_suffix(suffix.as_str()).unwrap_or(l))
        .collect();
    errln!("{}", text.join("\n"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhai::{Engine, OptimizationLevel};

    #[test]
    fn values_print_as_a_repl_would() {
        let o = ColumnOrders::default();
        let format_value = |v: &Dynamic| super::format_value(v, &o, None);
        assert_eq!(format_value(&Dynamic::UNIT), "=> ()\n");
        assert_eq!(format_value(&Dynamic::from_int(42)), "=> 42\n");
        assert_eq!(format_value(&Dynamic::from("a")), "=> \"a\"\n");
        assert_eq!(format_value(&Dynamic::from("a\nb\n")), "a\nb\n");
        let mut row = rhai::Map::new();
        row.insert("one".into(), Dynamic::from_int(1));
        let t = format_value(&Dynamic::from_array(vec![Dynamic::from_map(row)]));
        assert_eq!(t, "one\n---\n1\n");
    }

    #[test]
    fn rows_keep_their_given_order_and_turn_to_records_when_too_wide() {
        let o = ColumnOrders::default();
        o.remember(&["time".into(), "level".into(), "message".into()]);
        let mut row = rhai::Map::new();
        row.insert("time".into(), Dynamic::from("15:00"));
        row.insert("level".into(), Dynamic::from("LOG"));
        row.insert("message".into(), Dynamic::from("x".repeat(30)));
        let rows = Dynamic::from_array(vec![Dynamic::from_map(row)]);
        let t = format_value(&rows, &o, Some(80));
        assert!(t.starts_with("time  | level | message"), "{t}");
        let r = format_value(&rows, &o, Some(30));
        assert_eq!(
            r,
            format!(
                "-[ RECORD 1 ]-\ntime    | 15:00\nlevel   | LOG\nmessage | {}\n",
                "x".repeat(30)
            )
        );
    }

    #[test]
    fn unit_is_shown_for_expressions_not_for_statements_or_printing() {
        let mut e = Engine::new();
        e.register_fn("fence_info", |_: &str| ());
        e.register_fn("warn", |_: &str| ());
        let mut raw = Engine::new();
        raw.set_optimization_level(OptimizationLevel::None);
        let shows = |text: &str| {
            let optimized = shows_unit(&e.compile(text).unwrap());
            assert_eq!(
                optimized,
                shows_unit(&raw.compile(text).unwrap()),
                "{text:?}"
            );
            optimized
        };
        for text in [
            "fence_info(\"pg-bases2\")",
            "fence_info(\"pg-bases2\");",
            "cluster::primary()",
            "()",
            "let x = 1; x",
            "[1].clear()",
        ] {
            assert!(shows(text), "{text:?} should show ()");
        }
        for text in [
            "let x = 1;",
            "let x = fence_info(\"pg-bases2\");",
            "const C = 1;",
            "let x = 1; x = 2",
            "print(\"hi\")",
            "debug(1);",
            "warn(\"careful\")",
            "if true { }",
            "for i in 0..2 { }",
            "fn f() { }",
            "",
        ] {
            assert!(!shows(text), "{text:?} should not show ()");
        }
    }
}
