//! `pgrunbook check`: finds what is wrong with a runbook without running it.
//!
//! Beyond syntax errors (found by compiling), the checker walks the AST and reports, each at its
//! `file:line:col`:
//!
//! - calls to functions that do not exist (primitives, Rhai's own functions, the script's own
//!   functions, `module::f` in an imported stdlib module), with the nearest name as a hint, and
//!   script functions called with the wrong number of arguments;
//! - imports of modules that cannot be found (or do not compile);
//! - variables used where no `let`, `const`, parameter, loop variable, closure parameter or catch
//!   variable defines them. Runbook parameters (and `params`) are defined at the top level; a
//!   script function sees only its own parameters and variables, as in Rhai.
//!
//! Native functions are overloaded, so for them only the name is checked, not the arity; a
//! method call `x.f(..)` is accepted when any function `f` exists, or when `f` is a property some
//! object map of the script may hold (a closure stored in a map is called as a method).

use crate::engine;
use crate::engine::runbook::{self, Runbook};
use crate::error::{Class, Failure, Location};
use crate::runtime::host::Host;
use rhai::{
    ASTFlags, ASTNode, Engine, Expr, FnAccess, FnCallExpr, OptimizationLevel, Position, Stmt,
    StmtBlock, AST,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Prefix Rhai gives the functions it makes of closures (`|x| ...`).
const ANONYMOUS_PREFIX: &str = "anon$";

/// Every function name a script can call: primitives and Rhai's own. Builds an engine to ask;
/// with an engine at hand, `engine::function_names(&engine)` gives the same without that.
pub fn known_function_names(host: &Host) -> Vec<String> {
    let sources = Arc::new(Mutex::new(HashMap::new()));
    let h = Arc::new(Host::new(host.config.clone()));
    let e = engine::build(&h, &sources);
    engine::function_names(&e).into_iter().collect()
}

/// Checks one runbook (or stdlib module): its syntax, then the calls, imports and variables its
/// AST uses. Returns every problem found, sorted by position.
pub fn check(host: &Arc<Host>, rb: &Runbook) -> Vec<Failure> {
    let sources = Arc::new(Mutex::new(HashMap::new()));
    let mut e = engine::build(host, &sources);
    // The optimizer would fold and drop code: check what was written.
    e.set_optimization_level(OptimizationLevel::None);
    let ast = match engine::compile(&e, &rb.display_path, &rb.source) {
        Ok(ast) => ast,
        Err(f) => return vec![f],
    };
    let natives = engine::function_names(&e);
    let mut top_level: Vec<String> = rb.meta.params.iter().map(|p| p.name.clone()).collect();
    top_level.push("params".to_string());
    let mut checker = Checker::new(&e, &natives, &rb.display_path, &rb.source, &ast);
    checker.run(&ast, top_level);
    let mut problems = checker.problems;
    problems.sort_by(|a, b| {
        let key = |f: &Failure| {
            f.location
                .as_ref()
                .map(|l| (l.line, l.col))
                .unwrap_or_default()
        };
        key(a).cmp(&key(b)).then_with(|| a.message.cmp(&b.message))
    });
    problems.dedup_by(|a, b| a.location == b.location && a.message == b.message);
    problems
}

/// The functions a stdlib module exports: name -> the arities it is defined with.
struct ModuleInfo {
    fns: BTreeMap<String, BTreeSet<usize>>,
}

/// Where the walk is: the top level of the file, a named script function, or a closure.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    TopLevel,
    Function,
    Closure,
}

struct Checker<'a> {
    engine: &'a Engine,
    natives: &'a BTreeSet<String>,
    file: &'a str,
    source: &'a str,
    /// Named script functions of the file: name -> arities.
    script_fns: BTreeMap<String, BTreeSet<usize>>,
    /// Import alias -> the module's functions (`None` when the import itself is broken).
    modules: HashMap<String, Option<ModuleInfo>>,
    /// Object map keys and properties the script uses: `obj.name(..)` may call a closure there.
    properties: HashSet<String>,
    /// Functions called as `f!(..)`, which see the caller's variables.
    capture_called: HashSet<String>,
    /// `eval` may define variables the checker cannot see.
    uses_eval: bool,
    /// Variables of the top level (including parameters), for the hint inside functions.
    globals: BTreeSet<String>,
    /// Variables in scope, innermost block last.
    frames: Vec<Vec<String>>,
    context: Context,
    check_vars: bool,
    problems: Vec<Failure>,
}

impl<'a> Checker<'a> {
    fn new(
        engine: &'a Engine,
        natives: &'a BTreeSet<String>,
        file: &'a str,
        source: &'a str,
        ast: &AST,
    ) -> Self {
        let mut script_fns: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
        for f in ast.iter_fn_def() {
            if !f.name.starts_with(ANONYMOUS_PREFIX) {
                script_fns
                    .entry(f.name.to_string())
                    .or_default()
                    .insert(f.params.len());
            }
        }
        Checker {
            engine,
            natives,
            file,
            source,
            script_fns,
            modules: HashMap::new(),
            properties: HashSet::new(),
            capture_called: HashSet::new(),
            uses_eval: false,
            globals: BTreeSet::new(),
            frames: vec![],
            context: Context::TopLevel,
            check_vars: true,
            problems: vec![],
        }
    }

    fn run(&mut self, ast: &AST, top_level: Vec<String>) {
        self.survey(ast);

        // The top level: runbook parameters are in scope from the start.
        self.globals.extend(top_level.iter().cloned());
        self.frames = vec![top_level];
        self.context = Context::TopLevel;
        self.check_vars = !self.uses_eval;
        self.stmts(ast.statements());

        // Every function body, with only its parameters in scope (closures are functions whose
        // first parameters are the variables they capture, so they see those too).
        let defs: Vec<(String, Vec<String>)> = ast
            .iter_fn_def()
            .map(|f| {
                (
                    f.name.to_string(),
                    f.params.iter().map(|p| p.to_string()).collect(),
                )
            })
            .collect();
        for (name, params) in defs {
            let body = function_body(ast, &name, params.len());
            self.frames = vec![params];
            self.context = if name.starts_with(ANONYMOUS_PREFIX) {
                Context::Closure
            } else {
                Context::Function
            };
            self.check_vars = !self.uses_eval && !self.capture_called.contains(&name);
            self.stmts(&body);
        }
    }

    /// First pass over everything: imports (resolved now, so calls into them can be checked
    /// wherever they are), object map keys and properties, `f!(..)` calls, `eval`.
    fn survey(&mut self, ast: &AST) {
        let mut imports: Vec<(String, Position, String)> = vec![];
        let mut properties = HashSet::new();
        let mut capture_called = HashSet::new();
        let mut uses_eval = false;
        ast.walk(&mut |path: &[ASTNode]| {
            match path.last() {
                Some(ASTNode::Stmt(Stmt::Import(x, _))) => {
                    if let Expr::StringConstant(p, pos) = &x.0 {
                        imports.push((p.to_string(), *pos, x.1.name.to_string()));
                    }
                }
                Some(ASTNode::Expr(Expr::Map(x, _))) => {
                    properties.extend(x.0.iter().map(|(k, _)| k.name.to_string()));
                }
                Some(ASTNode::Expr(Expr::Property(x, _))) => {
                    properties.insert(x.2.to_string());
                }
                Some(ASTNode::Expr(Expr::FnCall(x, _)))
                | Some(ASTNode::Stmt(Stmt::FnCall(x, _))) => {
                    if x.capture_parent_scope {
                        capture_called.insert(x.name.to_string());
                    }
                    if x.name == "eval" && x.namespace.is_empty() {
                        uses_eval = true;
                    }
                }
                _ => {}
            }
            true
        });
        self.properties = properties;
        self.capture_called = capture_called;
        self.uses_eval = uses_eval;
        let mut cache: HashMap<String, Option<BTreeMap<String, BTreeSet<usize>>>> = HashMap::new();
        for (path, pos, alias) in imports {
            let fns = match cache.get(&path) {
                Some(found) => found.clone(),
                None => {
                    let found = match self.load_module(&path) {
                        Ok(fns) => Some(fns),
                        Err(message) => {
                            self.problem(pos, message);
                            None
                        }
                    };
                    cache.insert(path.clone(), found.clone());
                    found
                }
            };
            let entry = self.modules.entry(alias).or_insert(None);
            if entry.is_none() {
                *entry = fns.map(|fns| ModuleInfo { fns });
            }
        }
    }

    /// Finds and compiles a module the way `import` does; returns its exported functions.
    fn load_module(&self, path: &str) -> Result<BTreeMap<String, BTreeSet<usize>>, String> {
        let found = runbook::find_import(path);
        let Some((display, text)) = found else {
            return Err(format!(
                "module '{path}' not found (stdlib modules: {})",
                runbook::module_names().join(", ")
            ));
        };
        let ast = self.engine.compile(&text).map_err(|e| {
            let at = match e.1.line() {
                Some(l) => format!(" at {display}:{l}:{}", e.1.position().unwrap_or(1)),
                None => String::new(),
            };
            format!("module '{path}' does not compile: {}{at}", e.0)
        })?;
        let mut fns: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
        for f in ast.iter_fn_def() {
            if f.access != FnAccess::Private && !f.name.starts_with(ANONYMOUS_PREFIX) {
                fns.entry(f.name.to_string())
                    .or_default()
                    .insert(f.params.len());
            }
        }
        Ok(fns)
    }

    fn problem(&mut self, pos: Position, message: String) {
        let mut f = Failure::new(Class::Runbook, message);
        if let Some(line) = pos.line() {
            f.location = Some(Location {
                file: self.file.to_string(),
                line,
                col: pos.position().unwrap_or(1),
            });
            f.source_line = self.source.lines().nth(line - 1).map(str::to_string);
        }
        self.problems.push(f);
    }

    // ---- scopes ---------------------------------------------------------------------------

    fn define(&mut self, name: &str) {
        if name.is_empty() {
            return;
        }
        if self.context == Context::TopLevel {
            self.globals.insert(name.to_string());
        }
        if let Some(frame) = self.frames.last_mut() {
            frame.push(name.to_string());
        }
    }

    fn is_defined(&self, name: &str) -> bool {
        self.frames.iter().any(|f| f.iter().any(|v| v == name))
            // A script function's name is a function pointer.
            || self.script_fns.contains_key(name)
    }

    fn use_var(&mut self, name: &str, pos: Position) {
        if !self.check_vars || self.is_defined(name) {
            return;
        }
        let message = if self.context == Context::Function && self.globals.contains(name) {
            format!(
                "undefined variable '{name}': a function cannot see the runbook's variables and \
                 parameters; pass it as an argument"
            )
        } else {
            let in_scope: BTreeSet<&str> =
                self.frames.iter().flatten().map(String::as_str).collect();
            let hint = nearest(name, in_scope)
                .map(|s| format!(" (did you mean {s}?)"))
                .unwrap_or_default();
            format!("undefined variable '{name}'{hint}")
        };
        self.problem(pos, message);
    }

    // ---- statements -----------------------------------------------------------------------

    fn stmts(&mut self, stmts: &[Stmt]) {
        for s in stmts {
            self.stmt(s);
        }
    }

    /// A block: its variables end with it.
    fn block(&mut self, block: &StmtBlock, defined: Vec<String>) {
        self.frames.push(vec![]);
        for name in defined {
            self.define(&name);
        }
        self.stmts(block.statements());
        self.frames.pop();
    }

    fn stmt(&mut self, stmt: &Stmt) {
        match stmt {
            Stmt::If(x, _) => {
                self.expr(&x.expr);
                self.block(&x.body, vec![]);
                self.block(&x.branch, vec![]);
            }
            Stmt::Switch(x, _) => {
                self.expr(&x.0);
                for case in &x.1.expressions {
                    self.expr(&case.lhs);
                    self.expr(&case.rhs);
                }
            }
            Stmt::While(x, _) => {
                self.expr(&x.expr);
                self.block(&x.body, vec![]);
            }
            Stmt::Do(x, ..) => {
                self.block(&x.body, vec![]);
                self.expr(&x.expr);
            }
            Stmt::For(x, _) => {
                let (var, counter, flow) = &**x;
                self.expr(&flow.expr);
                let mut defined = vec![var.name.to_string()];
                defined.extend(counter.iter().map(|c| c.name.to_string()));
                self.block(&flow.body, defined);
            }
            Stmt::Var(x, ..) => {
                self.expr(&x.1);
                self.define(&x.0.name);
            }
            Stmt::Assignment(x) => {
                self.expr(&x.1.lhs);
                self.expr(&x.1.rhs);
            }
            Stmt::FnCall(x, pos) => self.call(x, *pos),
            Stmt::Block(b) => self.block(b, vec![]),
            Stmt::TryCatch(x, _) => {
                self.block(&x.body, vec![]);
                let caught = match &x.expr {
                    Expr::Variable(v, ..) => vec![v.1.to_string()],
                    _ => vec![],
                };
                self.block(&x.branch, caught);
            }
            Stmt::Expr(e) => self.expr(e),
            Stmt::BreakLoop(Some(e), ..) | Stmt::Return(Some(e), ..) => self.expr(e),
            Stmt::Import(x, _) => self.expr(&x.0),
            Stmt::Export(x, _) => self.use_var(&x.0.name, x.0.pos),
            _ => {}
        }
    }

    // ---- expressions ----------------------------------------------------------------------

    fn expr(&mut self, expr: &Expr) {
        match expr {
            Expr::InterpolatedString(items, _) | Expr::Array(items, _) => {
                for e in items.iter() {
                    self.expr(e);
                }
            }
            Expr::Map(x, _) => {
                for (_, v) in x.0.iter() {
                    self.expr(v);
                }
            }
            // `module::NAME` is the module's business.
            Expr::Variable(x, ..) if x.2.is_empty() => self.use_var(&x.1, expr.position()),
            Expr::Stmt(block) => self.block(block, vec![]),
            Expr::FnCall(x, pos) => self.call(x, *pos),
            Expr::MethodCall(x, pos) => self.method(x, *pos),
            Expr::Dot(x, ..) | Expr::Index(x, ..) => {
                self.expr(&x.lhs);
                self.chain(expr, &x.rhs);
            }
            Expr::And(items, _) | Expr::Or(items, _) | Expr::Coalesce(items, _) => {
                for e in items.iter() {
                    self.expr(e);
                }
            }
            Expr::Custom(x, _) => {
                for e in x.inputs.iter() {
                    self.expr(e);
                }
            }
            _ => {}
        }
    }

    /// The right side of `a.b...` / `a[i]...`, read the way Rhai evaluates it: after a dot
    /// come properties and method calls; after `[` an index expression; a nested chain node
    /// carries the next step on its left (unless its parent ends the chain, `BREAK`).
    fn chain(&mut self, parent: &Expr, rhs: &Expr) {
        let dotting = matches!(parent, Expr::Dot(..));
        match rhs {
            Expr::Property(..) if dotting => {}
            Expr::MethodCall(x, pos) if dotting => self.method(x, *pos),
            Expr::Dot(x, ..) | Expr::Index(x, ..)
                if !parent.options().intersects(ASTFlags::BREAK) =>
            {
                match &x.lhs {
                    Expr::Property(..) if dotting => {}
                    Expr::MethodCall(m, pos) if dotting => self.method(m, *pos),
                    lhs => self.expr(lhs),
                }
                self.chain(rhs, &x.rhs);
            }
            other => self.expr(other),
        }
    }

    /// `f(..)` or `module::f(..)`.
    fn call(&mut self, x: &FnCallExpr, pos: Position) {
        for a in x.args.iter() {
            self.expr(a);
        }
        let name = x.name.as_str();
        if x.is_operator_call() || !is_identifier(name) {
            return;
        }
        let argc = x.args.len();
        if !x.namespace.is_empty() {
            self.qualified_call(x, name, argc, pos);
            return;
        }
        if let Some(arities) = self.script_fns.get(name) {
            if !arities.contains(&argc) && !self.natives.contains(name) {
                let message = format!(
                    "function '{name}' takes {}, not {argc}",
                    describe_arities(arities)
                );
                self.problem(pos, message);
            }
            return;
        }
        if self.natives.contains(name) {
            if name == "Fn" {
                self.fn_pointer_target(x);
            }
            return;
        }
        let message = self.unknown_function(name);
        self.problem(pos, message);
    }

    /// `Fn("name")` names a function that exists.
    fn fn_pointer_target(&mut self, x: &FnCallExpr) {
        if let [Expr::StringConstant(target, tpos)] = &x.args[..] {
            let t = target.as_str();
            if is_identifier(t) && !self.script_fns.contains_key(t) && !self.natives.contains(t) {
                let message = self.unknown_function(t);
                self.problem(*tpos, message);
            }
        }
    }

    fn unknown_function(&self, name: &str) -> String {
        // A function of an imported module, called without its namespace?
        let mut aliases: Vec<&String> = self
            .modules
            .iter()
            .filter(|(_, m)| m.as_ref().is_some_and(|m| m.fns.contains_key(name)))
            .map(|(a, _)| a)
            .collect();
        aliases.sort();
        if let Some(a) = aliases.first() {
            return format!("unknown function '{name}' (did you mean {a}::{name}?)");
        }
        let candidates: BTreeSet<&str> = self
            .natives
            .iter()
            .map(String::as_str)
            .chain(self.script_fns.keys().map(String::as_str))
            .filter(|n| is_identifier(n))
            .collect();
        let hint = nearest(name, candidates)
            .map(|s| format!(" (did you mean {s}?)"))
            .unwrap_or_default();
        format!("unknown function '{name}'{hint}")
    }

    fn qualified_call(&mut self, x: &FnCallExpr, name: &str, argc: usize, pos: Position) {
        let path = &x.namespace.path;
        let root = path[0].name.as_str();
        // `global::f` and modules inside modules are not followed.
        if root == "global" || path.len() > 1 {
            return;
        }
        let Some(module) = self.modules.get(root) else {
            let mut aliases: Vec<&str> = self.modules.keys().map(String::as_str).collect();
            aliases.sort();
            let hint = if let Some(a) = nearest(root, aliases) {
                format!(" (did you mean {a}?)")
            } else if runbook::module_names().iter().any(|m| m == root) {
                format!(" (add `import \"{root}\" as {root};`)")
            } else {
                String::new()
            };
            let message = format!("module '{root}' is not imported{hint}");
            self.problem(path[0].pos, message);
            return;
        };
        // A broken import is reported once, at the import.
        let Some(module) = module else {
            return;
        };
        let message = match module.fns.get(name) {
            Some(arities) if arities.contains(&argc) => return,
            Some(arities) => format!(
                "function '{root}::{name}' takes {}, not {argc}",
                describe_arities(arities)
            ),
            None => {
                let hint = nearest(name, module.fns.keys().map(String::as_str))
                    .map(|s| format!(" (did you mean {root}::{s}?)"))
                    .unwrap_or_default();
                format!("unknown function '{root}::{name}'{hint}")
            }
        };
        self.problem(pos, message);
    }

    /// `x.f(..)`: `f(x, ..)` for natives, `f` with `this` for script functions, or a closure
    /// held in a map property. Any arity is accepted.
    fn method(&mut self, x: &FnCallExpr, pos: Position) {
        for a in x.args.iter() {
            self.expr(a);
        }
        let name = x.name.as_str();
        if !is_identifier(name)
            || self.natives.contains(name)
            || self.script_fns.contains_key(name)
            || self.properties.contains(name)
        {
            return;
        }
        let message = self.unknown_function(name);
        self.problem(pos, message);
    }
}

/// The top-level statements of the script function `name` with `arity` parameters (the body is
/// reached through a walk, the only public way to it).
fn function_body(ast: &AST, name: &str, arity: usize) -> Vec<Stmt> {
    // (`clone_functions_only_filtered` would not filter: into an empty module it copies all.)
    let mut only = ast.clone_functions_only();
    only.retain_functions(|_, _, n, a| n == name && a == arity);
    let mut body = vec![];
    only.walk(&mut |path: &[ASTNode]| {
        if let [ASTNode::Stmt(s)] = path {
            body.push((*s).clone());
        }
        true
    });
    body
}

/// The nearest name that looks like a typo of `name`, and shares something with it (so `i`
/// does not suggest `f`).
fn nearest<'n>(name: &str, candidates: impl IntoIterator<Item = &'n str>) -> Option<&'n str> {
    crate::suggest::nearest(name, candidates)
        .filter(|s| crate::suggest::distance(name, s) < name.chars().count())
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// "1 argument", "2 arguments", "1 or 2 arguments".
fn describe_arities(arities: &BTreeSet<usize>) -> String {
    let list: Vec<String> = arities.iter().map(usize::to_string).collect();
    let plural = if arities.len() == 1 && arities.contains(&1) {
        ""
    } else {
        "s"
    };
    let joined = match list.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => list.join(""),
    };
    format!("{joined} argument{plural}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arities_read_well() {
        let s = |v: &[usize]| describe_arities(&v.iter().copied().collect());
        assert_eq!(s(&[1]), "1 argument");
        assert_eq!(s(&[0]), "0 arguments");
        assert_eq!(s(&[1, 2]), "1 or 2 arguments");
        assert_eq!(s(&[0, 1, 3]), "0, 1 or 3 arguments");
    }

    fn host() -> Arc<Host> {
        Arc::new(Host::new(crate::config::Config::defaults()))
    }

    fn problems(source: &str) -> Vec<String> {
        let rb = Runbook {
            name: "t".into(),
            display_path: "t.rhai".into(),
            source: source.into(),
            meta: runbook::parse_meta(source, "t.rhai").unwrap(),
            shipped: false,
        };
        check(&host(), &rb)
            .into_iter()
            .map(|f| {
                format!(
                    "{}: {}",
                    f.location.map(|l| l.to_string()).unwrap_or_default(),
                    f.message
                )
            })
            .collect()
    }

    #[test]
    fn known_names_include_builtins_keywords_and_primitives() {
        let names = known_function_names(&host());
        for n in [
            "print",
            "debug",
            "len",
            "push",
            "filter",
            "map",
            "reduce",
            "parse_int",
            "to_string",
            "contains",
            "type_of",
            "Fn",
            "call",
            "curry",
            "is_def_var",
            "is_def_fn",
            "eval",
            "sql",
            "create_slot",
            "step",
        ] {
            assert!(names.iter().any(|k| k == n), "{n} is not known");
        }
    }

    #[test]
    fn blocks_loops_and_catch_scope_their_variables() {
        let p = problems(
            "if true { let a = 1; }\nprint(a);\nfor (v, i) in [1] { print(v + i); }\nprint(v);\n\
             try { throw 1; } catch (e) { print(e); }\nprint(e);\nlet a = 2;\nprint(a);\n",
        );
        assert_eq!(
            p,
            [
                "t.rhai:2:7: undefined variable 'a'",
                "t.rhai:4:7: undefined variable 'v'",
                "t.rhai:6:7: undefined variable 'e'",
            ]
        );
    }

    #[test]
    fn chains_are_read_like_rhai_reads_them() {
        // Properties are not variables; index expressions and method arguments are.
        let p =
            problems("let a = #{ b: [1] };\na.b[idx].len();\na.b[0].frob(arg);\nlet x = a[b.c];\n");
        assert_eq!(
            p,
            [
                "t.rhai:2:5: undefined variable 'idx'",
                "t.rhai:3:8: unknown function 'frob' (did you mean blob?)",
                "t.rhai:3:13: undefined variable 'arg' (did you mean a?)",
                "t.rhai:4:11: undefined variable 'b'",
            ]
        );
    }

    #[test]
    fn functions_see_their_parameters_and_function_pointers_only() {
        let p = problems(
            "//! d\n//! param node = \"x\"  n\nlet g = 1;\nfn f(a) { let b = a; b + g + node + params.node }\n\
             fn h() { let p = f; p.call(1) }\nprint(f(node) + h());\n",
        );
        assert_eq!(p.len(), 3, "{p:#?}");
        assert!(
            p[0].starts_with("t.rhai:4:26: undefined variable 'g': a function cannot see"),
            "{p:#?}"
        );
        assert!(
            p[1].starts_with("t.rhai:4:30: undefined variable 'node'"),
            "{p:#?}"
        );
        assert!(
            p[2].starts_with("t.rhai:4:37: undefined variable 'params'"),
            "{p:#?}"
        );
    }

    #[test]
    fn eval_and_capturing_calls_turn_off_the_variable_check_where_needed() {
        assert!(problems("eval(\"let z = 1;\");\nprint(z);\n").is_empty());
        assert!(problems("let x = 1;\nfn f() { x }\nprint(f!());\n").is_empty());
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("create_slot"));
        assert!(is_identifier("Fn"));
        assert!(!is_identifier("+"));
        assert!(!is_identifier("get$len"));
        assert!(!is_identifier(""));
    }
}
