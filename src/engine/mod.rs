//! The Rhai engine pgrunbook runs scripts in: every primitive registered, `import "cluster"`
//! resolved to the stdlib, limits set, and errors turned into `Failure`s with `file:line:col`.

pub mod check;
pub mod runbook;

use crate::errln;
use crate::error::{Class, Failure, Location, NotSimulated, PrimitiveError};
use crate::runtime::host::Host;
use rhai::{Dynamic, Engine, EvalAltResult, Module, ModuleResolver, Position, Scope, Shared, AST};
use runbook::Runbook;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Source texts by the name errors use (runbooks and modules), for the caret.
pub type Sources = Arc<Mutex<HashMap<String, String>>>;

/// Resolves `import "NAME"` to `./stdlib/NAME.rhai`, else the shipped stdlib; a path ending in
/// `.rhai` is read as a file. Modules are compiled once per engine.
pub struct StdlibResolver {
    cache: Mutex<HashMap<String, Shared<Module>>>,
    sources: Sources,
}

impl ModuleResolver for StdlibResolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        if let Some(m) = self.cache.lock().unwrap().get(path) {
            return Ok(m.clone());
        }
        let found = runbook::find_import(path);
        let Some((name, text)) = found else {
            return Err(Box::new(EvalAltResult::ErrorModuleNotFound(
                path.to_string(),
                pos,
            )));
        };
        self.sources
            .lock()
            .unwrap()
            .insert(name.clone(), text.clone());
        let mut ast = engine.compile(&text).map_err(|e| {
            Box::new(EvalAltResult::ErrorInModule(
                name.clone(),
                Box::new(EvalAltResult::ErrorParsing(*e.0, e.1)),
                pos,
            ))
        })?;
        ast.set_source(name.as_str());
        let mut module = Module::eval_ast_as_new(Scope::new(), &ast, engine)
            .map_err(|e| Box::new(EvalAltResult::ErrorInModule(name.clone(), e, pos)))?;
        // The module's name is the source its functions run with: errors point into it, and
        // `step` knows a stdlib procedure's steps from the runbook's own.
        module.set_id(name.as_str());
        module.build_index();
        let module: Shared<Module> = module.into();
        self.cache
            .lock()
            .unwrap()
            .insert(path.to_string(), module.clone());
        Ok(module)
    }
}

/// Builds an engine wired to `host`.
pub fn build(host: &Arc<Host>, sources: &Sources) -> Engine {
    let mut engine = Engine::new();
    crate::primitives::register_all(&mut engine, host);
    register_error_type(&mut engine);
    engine.set_module_resolver(StdlibResolver {
        cache: Mutex::new(HashMap::new()),
        sources: sources.clone(),
    });
    engine.set_max_expr_depths(128, 64);
    engine.set_max_call_levels(64);
    let limits = &host.config.runbook;
    if limits.max_operations > 0 {
        engine.set_max_operations(limits.max_operations);
    }
    let h = host.clone();
    engine.on_print(move |s| h.say(s));
    let h = host.clone();
    engine.on_debug(move |s, src, pos| {
        let at = match (src, pos.line()) {
            (Some(src), Some(l)) => format!("{src}:{l}: "),
            _ => String::new(),
        };
        errln!("{}", h.mask(&format!("debug: {at}{s}")));
    });
    let h = host.clone();
    let timeout = Duration::from_secs(limits.timeout_s);
    let started = Mutex::new(Instant::now());
    engine.on_progress(move |ops| {
        if ops == 1 {
            *started.lock().unwrap() = Instant::now();
        }
        if ops % 256 != 0 {
            return None;
        }
        if h.cancel.is_cancelled() {
            return Some(Dynamic::from("interrupted by Ctrl-C"));
        }
        if !timeout.is_zero() && started.lock().unwrap().elapsed() > timeout {
            return Some(Dynamic::from(format!(
                "stopped after the run's time limit of {} s (runbook.timeout_s)",
                timeout.as_secs()
            )));
        }
        None
    });
    engine
}

/// Makes the errors primitives raise (`PrimitiveError`) usable in scripts that catch them: their
/// text is the message (`print(e)`, `` `${e}` ``, `"" + e`), and their parts are properties:
/// `e.message`, `e.class` ("refused", "unreachable"...), `e.primitive`, `e.node` (`()` when
/// unknown), `e.cause`. `throw e` raises it again, class and all.
pub fn register_error_type(engine: &mut Engine) {
    let opt = |v: &Option<String>| v.clone().map_or(Dynamic::UNIT, Dynamic::from);
    engine
        .register_type_with_name::<PrimitiveError>("PrimitiveError")
        .register_fn("to_string", |e: &mut PrimitiveError| e.to_string())
        .register_fn("to_debug", |e: &mut PrimitiveError| format!("{e:?}"))
        .register_get("message", |e: &mut PrimitiveError| e.to_string())
        .register_get("class", |e: &mut PrimitiveError| e.class.name().to_string())
        .register_get("cause", |e: &mut PrimitiveError| e.cause.clone())
        .register_get("primitive", move |e: &mut PrimitiveError| opt(&e.primitive))
        .register_get("node", move |e: &mut PrimitiveError| opt(&e.node));
    register_not_simulated(engine);
}

/// The stop of a dry run where a script uses a result the dry run did not produce.
fn used(n: &NotSimulated) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from(n.clone()),
        Position::NONE,
    ))
}

/// `NotSimulated` (see `crate::error`): printed, it says what it stands for; compared with
/// anything, it stops the dry run (Rhai would otherwise say `false` for values of two types, and
/// the script would go on with a wrong answer). Other uses (an index, `len`, a loop, a
/// condition) fail in Rhai itself, naming the type: `not_simulated` recognises them.
fn register_not_simulated(engine: &mut Engine) {
    engine
        .register_type_with_name::<NotSimulated>("NotSimulated")
        .register_fn("to_string", |n: &mut NotSimulated| {
            format!("(not simulated: the result of {})", n.what)
        })
        .register_fn("to_debug", |n: &mut NotSimulated| {
            format!("(not simulated: the result of {})", n.what)
        });
    macro_rules! compare {
        ($($t:ty),*) => {$(
            engine
                .register_fn("==", |a: &mut NotSimulated, _: $t| -> Result<bool, Box<EvalAltResult>> { Err(used(a)) })
                .register_fn("!=", |a: &mut NotSimulated, _: $t| -> Result<bool, Box<EvalAltResult>> { Err(used(a)) })
                .register_fn("==", |_: $t, a: NotSimulated| -> Result<bool, Box<EvalAltResult>> { Err(used(&a)) })
                .register_fn("!=", |_: $t, a: NotSimulated| -> Result<bool, Box<EvalAltResult>> { Err(used(&a)) });
        )*};
    }
    compare!(
        rhai::Array,
        rhai::Map,
        rhai::INT,
        rhai::FLOAT,
        bool,
        rhai::ImmutableString,
        ()
    );
    engine
        .register_fn(
            "==",
            |a: &mut NotSimulated, _: NotSimulated| -> Result<bool, Box<EvalAltResult>> {
                Err(used(a))
            },
        )
        .register_fn(
            "!=",
            |a: &mut NotSimulated, _: NotSimulated| -> Result<bool, Box<EvalAltResult>> {
                Err(used(a))
            },
        );
}

/// When `err` is a script using a `NotSimulated` result: what that result stands for (the last
/// statement a dry run skipped, when Rhai's error names only the type).
pub fn not_simulated(err: &EvalAltResult, host: &Host) -> Option<String> {
    let mut e = err;
    while let EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
    | EvalAltResult::ErrorInModule(_, inner, _) = e
    {
        e = inner;
    }
    if let EvalAltResult::ErrorRuntime(v, _) = e {
        if let Some(n) = v.read_lock::<NotSimulated>() {
            return Some(n.what.clone());
        }
    }
    e.to_string().contains("NotSimulated").then(|| {
        host.run
            .lock()
            .unwrap()
            .last_skipped
            .clone()
            .unwrap_or_else(|| "a statement the dry run did not run".into())
    })
}

/// Rhai keywords called like functions that the engine's function list does not name.
pub const KEYWORD_FUNCTIONS: &[&str] = &[
    "print",
    "debug",
    "type_of",
    "eval",
    "Fn",
    "call",
    "curry",
    "is_shared",
    "is_def_var",
    "is_def_fn",
];

/// Names of every function `engine` can call natively (primitives, Rhai packages), plus the
/// keywords that are called like functions. Includes operators and property accessors.
pub fn function_names(engine: &Engine) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = engine
        .gen_fn_signatures(true)
        .into_iter()
        .filter_map(|s| s.split('(').next().map(|n| n.trim().to_string()))
        .filter(|n| !n.is_empty() && !n.contains(' '))
        .collect();
    names.extend(KEYWORD_FUNCTIONS.iter().map(|k| k.to_string()));
    names
}

/// What to add to `function not found: SIG` when `name` is not called with arguments it takes:
/// the signatures it has, when it exists (for other arguments), else the nearest name.
fn missing_function_hint(engine: &Engine, name: &str) -> String {
    /// How many signatures are listed; more are counted.
    const SHOWN: usize = 4;
    let signatures: Vec<String> = engine
        .gen_fn_signatures(true)
        .into_iter()
        .filter(|s| s.split('(').next().map(str::trim) == Some(name))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !signatures.is_empty() {
        let mut list = signatures[..signatures.len().min(SHOWN)].join(", ");
        if signatures.len() > SHOWN {
            list.push_str(&format!(" and {} more", signatures.len() - SHOWN));
        }
        return format!("; {name} exists for: {list}");
    }
    if KEYWORD_FUNCTIONS.contains(&name) {
        return format!("; {name} takes other arguments");
    }
    let known = function_names(engine);
    crate::suggest::nearest(
        name,
        known.iter().map(String::as_str).filter(|k| *k != name),
    )
    .map(|s| format!("; did you mean {s}?"))
    .unwrap_or_default()
}

/// Compiles a script, mapping a syntax error to a `Failure` at its position.
pub fn compile(engine: &Engine, name: &str, text: &str) -> Result<AST, Failure> {
    match engine.compile(text) {
        Ok(mut ast) => {
            ast.set_source(name);
            Ok(ast)
        }
        Err(e) => {
            let mut f = Failure::new(Class::Runbook, format!("syntax error: {}", e.0));
            locate(&mut f, name, e.1, text);
            Err(f)
        }
    }
}

fn locate(f: &mut Failure, file: &str, pos: Position, text: &str) {
    if let (Some(line), col) = (pos.line(), pos.position().unwrap_or(1)) {
        f.location = Some(Location {
            file: file.to_string(),
            line,
            col,
        });
        f.source_line = text.lines().nth(line - 1).map(str::to_string);
    }
}

/// Turns a Rhai error into a `Failure`: the innermost position (where the failing call is),
/// the call frames it passed through, and the class the primitive raised it with (carried by the
/// `PrimitiveError` value; anything else a script throws is a runbook error). `engine` is the
/// one that ran the script: it knows the functions a missing one is compared with.
pub fn to_failure(
    engine: &Engine,
    err: &EvalAltResult,
    top: &str,
    host: &Host,
    sources: &Sources,
) -> Failure {
    let mut frames: Vec<(String, Position, String)> = vec![]; // (file, pos, what)
    let mut file = top.to_string();
    let mut e = err;
    loop {
        match e {
            EvalAltResult::ErrorInFunctionCall(name, src, inner, pos) => {
                frames.push((file.clone(), *pos, format!("in call to {name}")));
                if !src.is_empty() {
                    file = src.clone();
                }
                e = inner;
            }
            EvalAltResult::ErrorInModule(path, inner, pos) => {
                frames.push((file.clone(), *pos, format!("importing {path}")));
                file = path.clone();
                e = inner;
            }
            _ => break,
        }
    }
    let (class, message) = match e {
        EvalAltResult::ErrorRuntime(v, _) => match v.read_lock::<PrimitiveError>() {
            Some(pe) => (pe.class, pe.to_string()),
            None => (Class::Runbook, v.to_string()),
        },
        EvalAltResult::ErrorTerminated(v, _) => (Class::Interrupted, v.to_string()),
        EvalAltResult::ErrorTooManyOperations(_) => (
            Class::Interrupted,
            format!(
                "stopped after {} operations (runbook.max_operations): does the runbook loop forever?",
                host.config.runbook.max_operations
            ),
        ),
        EvalAltResult::ErrorModuleNotFound(m, _) => (
            Class::Runbook,
            format!(
                "module '{m}' not found (looked in ./stdlib and the shipped stdlib: {})",
                runbook::module_names().join(", ")
            ),
        ),
        EvalAltResult::ErrorFunctionNotFound(sig, _) => {
            let name = sig.split('(').next().unwrap_or(sig).trim();
            let hint = missing_function_hint(engine, name);
            (Class::Runbook, format!("function not found: {sig}{hint}"))
        }
        other => {
            let mut text = other.to_string();
            if let Some(i) = text.rfind(" (line ") {
                text.truncate(i);
            }
            (Class::Runbook, text)
        }
    };
    // A primitive's error was scrubbed when raised; the rest is the script's own text.
    let mut f = Failure::new(class, host.mask(&message));
    let pos = e.position();
    let srcs = sources.lock().unwrap();
    let text = |file: &str| srcs.get(file).cloned().unwrap_or_default();
    // A primitive's error caught and thrown again (`throw e`) points at the call that failed,
    // where the error was raised; the `throw` follows in the trace.
    let raised_at = match e {
        EvalAltResult::ErrorRuntime(v, _) => v
            .read_lock::<PrimitiveError>()
            .and_then(|pe| pe.raised_at.clone()),
        _ => None,
    };
    let raised_at = raised_at.map(|mut l| {
        if l.file.is_empty() {
            l.file = top.to_string();
        }
        l
    });
    if let Some(at) = raised_at.filter(|at| {
        (at.file.as_str(), Some(at.line), at.col)
            != (file.as_str(), pos.line(), pos.position().unwrap_or(1))
    }) {
        let src = text(&at.file);
        f.source_line = src.lines().nth(at.line - 1).map(str::to_string);
        f.location = Some(at);
        if let Some(l) = pos.line() {
            f.trace.push(format!(
                "thrown again at {file}:{l}:{}",
                pos.position().unwrap_or(1)
            ));
        }
        for (ffile, fpos, what) in frames.iter().rev() {
            if let Some(l) = fpos.line() {
                f.trace.push(format!(
                    "{what} at {ffile}:{l}:{}",
                    fpos.position().unwrap_or(1)
                ));
            }
        }
    } else if !pos.is_none() {
        locate(&mut f, &file, pos, &text(&file));
        for (ffile, fpos, what) in frames.iter().rev() {
            if let Some(l) = fpos.line() {
                f.trace.push(format!(
                    "{what} at {ffile}:{l}:{}",
                    fpos.position().unwrap_or(1)
                ));
            }
        }
    } else if let Some((ffile, fpos, _)) = frames.last() {
        // No position at the innermost error: point at the innermost call.
        locate(&mut f, ffile, *fpos, &text(ffile));
        for (ffile, fpos, what) in frames.iter().rev().skip(1) {
            if let Some(l) = fpos.line() {
                f.trace.push(format!(
                    "{what} at {ffile}:{l}:{}",
                    fpos.position().unwrap_or(1)
                ));
            }
        }
    }
    f.step = host.current_step();
    // The caret's source line is printed too: a password written into a runbook stays masked.
    f.source_line = f.source_line.map(|l| host.mask(&l));
    f
}

/// Checks `--set` values against the runbook's declared parameters.
pub fn bind_params(
    rb: &Runbook,
    sets: &[(String, String)],
) -> Result<BTreeMap<String, Dynamic>, Failure> {
    let mut values: BTreeMap<String, Dynamic> = rb
        .meta
        .params
        .iter()
        .map(|p| (p.name.clone(), p.default.clone()))
        .collect();
    for (k, v) in sets {
        let Some(p) = rb.meta.params.iter().find(|p| &p.name == k) else {
            let names: Vec<&str> = rb.meta.params.iter().map(|p| p.name.as_str()).collect();
            let known = if names.is_empty() {
                "it takes no parameters".to_string()
            } else {
                format!("its parameters are {}", names.join(", "))
            };
            let hint = crate::suggest::nearest(k, names.iter().copied())
                .map(|s| format!("; did you mean {s}?"))
                .unwrap_or_default();
            return Err(Failure::usage(format!(
                "runbook '{}' has no parameter '{k}' ({known}){hint}",
                rb.name
            )));
        };
        let v = p
            .parse(v)
            .map_err(|e| Failure::usage(format!("runbook '{}': {e}", rb.name)))?;
        values.insert(k.clone(), v);
    }
    Ok(values)
}

/// Runs a runbook from start to end: parameters into the scope, the run journaled.
/// Calls `module::function(args...)` of the stdlib (or a `./stdlib` override) outside any run:
/// nothing is journaled. For commands that reuse the stdlib's words (`status` asks
/// `diagnose::reason`), so that a check is written once, in Rhai, where users read it.
pub fn call_stdlib(
    host: &Arc<Host>,
    module: &str,
    function: &str,
    args: Vec<Dynamic>,
) -> Result<Dynamic, Failure> {
    let sources: Sources = Arc::new(Mutex::new(HashMap::new()));
    let engine = build(host, &sources);
    let names: Vec<String> = (0..args.len()).map(|i| format!("arg{i}")).collect();
    let text = format!(
        "import \"{module}\" as m;\nm::{function}({})",
        names.join(", ")
    );
    let display = format!("<{module}::{function}>");
    sources
        .lock()
        .unwrap()
        .insert(display.clone(), text.clone());
    let ast = compile(&engine, &display, &text)?;
    let mut scope = Scope::new();
    for (n, v) in names.iter().zip(args) {
        scope.push_constant(n.as_str(), v);
    }
    engine
        .eval_ast_with_scope::<Dynamic>(&mut scope, &ast)
        .map_err(|e| to_failure(&engine, &e, &display, host, &sources))
}

pub fn run(
    host: &Arc<Host>,
    rb: &Runbook,
    params: BTreeMap<String, Dynamic>,
) -> Result<(), Failure> {
    let sources: Sources = Arc::new(Mutex::new(HashMap::new()));
    sources
        .lock()
        .unwrap()
        .insert(rb.display_path.clone(), rb.source.clone());
    let engine = build(host, &sources);
    let ast = compile(&engine, &rb.display_path, &rb.source)?;
    let mut scope = Scope::new();
    let mut pmap = rhai::Map::new();
    for (k, v) in &params {
        scope.push_constant(k.as_str(), v.clone());
        pmap.insert(k.as_str().into(), v.clone());
    }
    scope.push_constant("params", pmap);
    let journal_params: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    host.begin_run(&rb.name, &journal_params);
    let limit = host.config.runbook.timeout_s;
    *host.deadline.lock().unwrap() =
        (limit > 0).then(|| Instant::now() + Duration::from_secs(limit));
    let mut result = engine.run_ast_with_scope(&mut scope, &ast);
    *host.deadline.lock().unwrap() = None;
    // A dry run that reaches a use of a result it did not produce ends there, as a plan.
    if let Some(what) = result
        .as_ref()
        .err()
        .filter(|_| host.dry_run())
        .and_then(|e| not_simulated(e, host))
    {
        let f = to_failure(
            &engine,
            result.as_ref().unwrap_err(),
            &rb.display_path,
            host,
            &sources,
        );
        let at = f.location.map(|l| format!(" at {l}")).unwrap_or_default();
        host.say(&format!(
            "    [dry run] not simulated past here{at}: the runbook uses the result of {what}"
        ));
        host.record(
            "not_simulated_past",
            format!("{}{at}", f.step.unwrap_or_default()),
        );
        result = Ok(());
    }
    let failure = result.err().map(|e| {
        let mut f = to_failure(&engine, &e, &rb.display_path, host, &sources);
        f.changes = Some(host.run.lock().unwrap().made.clone());
        f
    });
    host.end_run(failure.as_ref());
    match failure {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Arc<Host> {
        Arc::new(Host::new(crate::config::Config::defaults()))
    }

    /// Runs `script` in an engine built like a runbook's; its error, as a `Failure`.
    fn failure_of(host: &Arc<Host>, script: &str) -> Failure {
        let sources: Sources = Default::default();
        let engine = build(host, &sources);
        let err = engine.run(script).expect_err("the script fails");
        to_failure(&engine, &err, "t.rhai", host, &sources)
    }

    #[test]
    fn lsn_is_after_is_strict_and_knows_before_from_equal() {
        let h = host();
        let after = |a: &str, b: &str| {
            call_stdlib(&h, "lsn", "is_after", vec![a.into(), b.into()])
                .unwrap()
                .as_bool()
                .unwrap()
        };
        assert!(after("0/3000060", "0/3000028"));
        assert!(after("1/0", "0/FFFFFFFF"));
        assert!(!after("0/3000028", "0/3000028"), "equal is not after");
        assert!(!after("0/3000028", "0/3000060"), "before is not after");
    }

    #[test]
    fn the_exit_class_travels_with_the_error_not_its_text() {
        // Two errors with the same text and different classes: a table from text to class
        // would give both the class of whichever was raised last.
        let h = host();
        let refused = h.error(Class::Refused, "the same words");
        let unreachable = h.error(Class::Infrastructure, "the same words");
        let engine = build(&h, &Default::default());
        let map = |e: &EvalAltResult| to_failure(&engine, e, "t.rhai", &h, &Default::default());
        let (a, b) = (map(&refused), map(&unreachable));
        assert_eq!(
            (a.class, a.message.as_str()),
            (Class::Refused, "the same words")
        );
        assert_eq!(b.class, Class::Infrastructure);
        assert_eq!(
            map(&refused).class,
            Class::Refused,
            "asked again, still refused"
        );
        // A script that throws those very words is the runbook's own error.
        let f = failure_of(&h, r#"throw "the same words";"#);
        assert_eq!(
            (f.class, f.message.as_str()),
            (Class::Runbook, "the same words")
        );
    }

    #[test]
    fn a_backend_error_names_the_primitive_and_node_and_keeps_its_class() {
        let h = host();
        let down = anyhow::anyhow!(Failure::new(Class::Infrastructure, "connection refused"));
        let err = h.fail("sql", "pg-bases2", down.context("cannot connect"));
        let EvalAltResult::ErrorRuntime(v, _) = &*err else {
            panic!("{err:?}")
        };
        let pe = v.clone().try_cast::<PrimitiveError>().expect("typed");
        assert_eq!(pe.class, Class::Infrastructure);
        assert_eq!(pe.primitive.as_deref(), Some("sql"));
        assert_eq!(pe.node.as_deref(), Some("pg-bases2"));
        assert_eq!(
            pe.to_string(),
            "sql on pg-bases2: cannot connect: connection refused"
        );
        let f = to_failure(
            &build(&h, &Default::default()),
            &err,
            "t",
            &h,
            &Default::default(),
        );
        assert_eq!(f.class, Class::Infrastructure);
        assert_eq!(f.message, pe.to_string());
    }

    #[test]
    fn a_caught_error_reads_as_its_message_and_thrown_again_keeps_its_class() {
        let h = host();
        let engine = build(&h, &Default::default());
        let seen: rhai::Array = engine
            .eval(
                r#"
                let seen = [];
                try { refuse("not now"); } catch (e) {
                    record("why", e);
                    seen.push(`${e}`);
                    seen.push("" + e);
                    seen.push(e.to_string());
                    seen.push(e.message);
                    seen.push(e.class);
                    seen.push(e.cause);
                    seen.push(e.node);
                    seen.push(type_of(e));
                }
                seen
                "#,
            )
            .unwrap();
        let seen: Vec<String> = seen.iter().map(|v| v.to_string()).collect();
        assert_eq!(
            seen,
            [
                "not now",
                "not now",
                "not now",
                "not now",
                "refused",
                "not now",
                "",
                "PrimitiveError"
            ]
        );
        let why = h.run.lock().unwrap().metrics.get("why").cloned();
        assert_eq!(why.as_deref(), Some("not now"), "recorded as its message");
        let f = failure_of(
            &h,
            r#"fn again() { try { refuse("not now"); } catch (e) { throw e; } } again();"#,
        );
        assert_eq!((f.class, f.message.as_str()), (Class::Refused, "not now"));
    }

    #[test]
    fn a_caught_error_thrown_again_points_at_the_call_that_raised_it() {
        let h = host();
        let f = failure_of(
            &h,
            "fn again() {\n    try {\n        refuse(\"not now\");\n    } catch (e) {\n        throw e;\n    }\n}\nagain();\n",
        );
        assert_eq!((f.class, f.message.as_str()), (Class::Refused, "not now"));
        let at = f.location.expect("a location");
        assert_eq!((at.file.as_str(), at.line, at.col), ("t.rhai", 3, 9));
        assert_eq!(
            f.trace,
            [
                "thrown again at t.rhai:5:9",
                "in call to again at t.rhai:8:1"
            ]
        );
        // Not thrown again: where it was raised, and no "thrown again".
        let f = failure_of(&h, "let x = 1;\nrefuse(\"no\");\n");
        assert_eq!(f.location.map(|l| l.line), Some(2));
        assert!(f.trace.is_empty(), "{:?}", f.trace);
    }

    #[test]
    fn a_function_called_with_arguments_it_does_not_take_lists_what_it_takes() {
        let h = host();
        let f = failure_of(&h, "clear();");
        assert_eq!(f.class, Class::Runbook);
        assert!(
            f.message
                .starts_with("function not found: clear (); clear exists for: clear("),
            "{}",
            f.message
        );
        assert!(!f.message.contains("did you mean"), "{}", f.message);
        // A name that does not exist still gets the nearest one.
        let f = failure_of(&h, "let a = [1]; cleer(a);");
        assert!(
            f.message.ends_with("; did you mean clear?"),
            "{}",
            f.message
        );
    }
}
