//! What lives for the whole session: the engine with the modules imported so far, the `Scope`
//! holding the variables, the functions defined so far, and the transcript errors point into.
//!
//! As in rhai's own `rhai-repl`, each input is compiled on its own and its functions are merged
//! into one AST, so `let` variables and `fn` definitions persist from one input to the next.
//! Positions: each input is compiled as if it followed the earlier ones in one file, `<repl>`,
//! the session's transcript. So an error inside a function defined ten inputs ago still shows the
//! line of that function, not a line of the input that called it.

use super::show::{format_value, show_failure, shows_unit, terminal_width};
use crate::engine::{self, Sources};
use crate::error::Failure;
use crate::runtime::host::Host;
use crate::{errln, out};
use rhai::{Dynamic, Engine, Expr, Position, Scope, Stmt, AST};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The name errors give the session's text.
pub const SOURCE: &str = "<repl>";

/// Past this many lines the transcript starts again (Rhai positions stop at 65535).
const MAX_TRANSCRIPT_LINES: usize = 60_000;

pub struct Session {
    pub host: Arc<Host>,
    pub sources: Sources,
    pub engine: Engine,
    pub scope: Scope<'static>,
    /// The functions defined so far (statements are dropped after each input).
    pub ast: AST,
    /// Every input so far, one after the other: the text errors point into.
    transcript: String,
    pub lines: usize,
    /// Whether a statement is running (for the Ctrl-C handler).
    running: Arc<AtomicBool>,
}

impl Session {
    pub fn new(host: Arc<Host>, running: Arc<AtomicBool>) -> Session {
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
    pub fn import(&mut self, path: &str, alias: &str) -> Result<(), Failure> {
        let module = self
            .engine
            .module_resolver()
            .resolve(&self.engine, None, path, Position::NONE)
            .map_err(|e| engine::to_failure(&self.engine, &e, SOURCE, &self.host, &self.sources))?;
        self.engine.register_static_module(alias, module);
        Ok(())
    }

    /// Runs `f` as a statement: Ctrl-C cancels it.
    pub fn guarded<T>(&mut self, f: impl FnOnce(&mut Session) -> T) -> T {
        self.host.cancel.reset();
        self.running.store(true, Ordering::SeqCst);
        let r = f(self);
        self.running.store(false, Ordering::SeqCst);
        r
    }

    /// Compiles and runs one typed input; prints its value or its error.
    pub fn eval(&mut self, text: &str) {
        self.eval_text(text, true);
    }

    /// Compiles and runs `text` (an input, or a file `:load` reads); prints its value or its
    /// error. A value of `()` is printed only for a `typed` input (see `shows_unit`).
    pub fn eval_text(&mut self, text: &str, typed: bool) {
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
        let imports = imports_of(&ast);
        let show_unit = typed && shows_unit(&ast);
        self.ast += ast;
        let result = self.guarded(|s| {
            s.engine
                .eval_ast_with_scope::<Dynamic>(&mut s.scope, &s.ast)
        });
        // Keep the functions, drop the statements (as rhai-repl does).
        self.ast.clear_statements();
        match result {
            Ok(value) => {
                if !value.is_unit() || show_unit {
                    let shown = format_value(&value, &self.host.column_orders, terminal_width());
                    out!("{}", self.host.mask(&shown));
                }
                for (path, alias) in imports {
                    let _ = self.import(&path, &alias);
                }
            }
            Err(e) => {
                show_failure(&engine::to_failure(
                    &self.engine,
                    &e,
                    SOURCE,
                    &self.host,
                    &self.sources,
                ));
                if matches!(text.trim(), "clear()" | "clear();") {
                    errln!("(:clear or Ctrl-L clears the screen)");
                }
            }
        }
    }

    /// Variables and functions of the session, for completion.
    pub fn words(&self) -> Vec<String> {
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
}

/// The `import "path" as name;` statements at the top level of an input, to keep those modules
/// after it (an import inside a block or a function ends with it, as in a script).
pub fn imports_of(ast: &AST) -> Vec<(String, String)> {
    ast.statements()
        .iter()
        .filter_map(|s| match s {
            Stmt::Import(x, _) => match &x.0 {
                Expr::StringConstant(path, _) if !x.1.name.is_empty() => {
                    Some((path.to_string(), x.1.name.to_string()))
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhai::OptimizationLevel;

    #[test]
    fn imports_are_read_from_the_ast() {
        let mut e = Engine::new_raw();
        e.set_optimization_level(OptimizationLevel::None);
        let ast = e
            .compile(
                "import \"cluster\" as c; let reimport = 1; import \"x.rhai\" as x_1;\n\
                 let important = \"import \\\"y\\\" as y\";\n\
                 if true { import \"inner\" as inner; }\n\
                 fn f() { import \"in_fn\" as in_fn; }\n\
                 import \"no_alias\";",
            )
            .unwrap();
        assert_eq!(
            imports_of(&ast),
            vec![
                ("cluster".into(), "c".into()),
                ("x.rhai".into(), "x_1".into())
            ]
        );
    }
}
