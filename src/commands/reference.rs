//! The primitive reference, generated from the code: every primitive with the parameter names
//! and doc comment it was registered with, and every stdlib function with its `///` comments.
//! `pgrunbook reference > docs/primitives.md` writes it; a test fails when the checked-in file
//! differs, so the reference cannot drift from the code.

use crate::engine;
use crate::engine::runbook;
use crate::error::Failure;
use crate::runtime::host::Host;
use rhai::Engine;
use std::fmt::Write;
use std::sync::Arc;

/// `reference`: the Markdown on stdout.
pub fn run() -> Result<(), Failure> {
    let host = Arc::new(Host::new(crate::config::Config::defaults()));
    crate::out!("{}", markdown(&host)?);
    Ok(())
}

/// One documented function.
#[derive(Debug, Clone)]
pub struct FnDoc {
    /// Qualified name: `sql`, `cluster::primary`.
    pub name: String,
    pub signature: String,
    pub doc: String,
}

fn strip_doc(lines: &[String]) -> String {
    lines
        .iter()
        .flat_map(|c| c.lines().map(str::to_string).collect::<Vec<_>>())
        .map(|l| {
            l.trim()
                .trim_start_matches("///")
                .trim_start_matches("/**")
                .trim_end_matches("*/")
                .trim()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_string()
}

/// Primitives, grouped by the backend that registers them: (name, source path) and its
/// functions.
pub fn primitives(host: &Arc<Host>) -> Vec<((&'static str, &'static str), Vec<FnDoc>)> {
    let mut out = vec![];
    for backend in crate::primitives::modules(host) {
        let mut engine = Engine::new_raw();
        engine.register_global_module(backend.module.into());
        let json = engine.gen_fn_metadata_to_json(false).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        let mut docs: Vec<FnDoc> = v["functions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|f| {
                let name = f["name"].as_str().unwrap_or_default().to_string();
                let params: Vec<String> = f["params"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|p| match (p["name"].as_str(), p["type"].as_str()) {
                        (Some(n), Some(t)) => format!("{n}: {t}"),
                        (Some(n), None) => n.to_string(),
                        _ => "_".into(),
                    })
                    .collect();
                let ret = f["returnType"].as_str().unwrap_or("()");
                let signature = if ret == "()" {
                    format!("{name}({})", params.join(", "))
                } else {
                    format!("{name}({}) -> {ret}", params.join(", "))
                };
                let comments: Vec<String> = f["docComments"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|c| c.as_str().map(str::to_string))
                    .collect();
                FnDoc {
                    name,
                    signature,
                    doc: strip_doc(&comments),
                }
            })
            .collect();
        docs.sort_by(|a, b| {
            a.name
                .cmp(&b.name)
                .then(a.signature.len().cmp(&b.signature.len()))
        });
        out.push(((backend.name, backend.source), docs));
    }
    out
}

/// Stdlib functions, by module. The modules are compiled by the engine runbooks run in (same
/// limits and settings), and one that does not compile is an error, not a module left out.
pub fn stdlib(host: &Arc<Host>) -> Result<Vec<(String, String, Vec<FnDoc>)>, Failure> {
    let engine = engine::build(host, &Default::default());
    let mut out = vec![];
    for name in runbook::module_names() {
        let (path, text) = runbook::find_module(&name).ok_or_else(|| {
            Failure::new(
                crate::error::Class::Runbook,
                format!("stdlib module {name} cannot be read"),
            )
        })?;
        let ast = engine::compile(&engine, &path, &text)?;
        let about = text
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .map(|l| l.trim_start_matches("//!").trim())
            .collect::<Vec<_>>()
            .join(" ");
        let mut fns: Vec<FnDoc> = ast
            .iter_functions()
            .filter(|f| !f.comments.is_empty())
            .map(|f| {
                let comments: Vec<String> = f.comments.iter().map(|c| c.to_string()).collect();
                let params = f.params.join(", ");
                let this = f.this_type.map(|_| "this.").unwrap_or("");
                FnDoc {
                    name: format!("{name}::{}", f.name),
                    signature: format!("{this}{name}::{}({params})", f.name),
                    doc: strip_doc(&comments),
                }
            })
            .collect();
        // Overloads (same name, other arity) by signature: iter_functions' order is a hash's.
        fns.sort_by(|a, b| {
            a.name
                .cmp(&b.name)
                .then(a.signature.len().cmp(&b.signature.len()))
        });
        out.push((name, about, fns));
    }
    Ok(out)
}

/// The whole reference as Markdown; fails when a stdlib module does not compile.
pub fn markdown(host: &Arc<Host>) -> Result<String, Failure> {
    let mut s = String::new();
    writeln!(s, "# Primitive reference").unwrap();
    writeln!(s).unwrap();
    writeln!(
        s,
        "Generated by `pgrunbook reference` from the code (the names, parameters and doc comments the \
         primitives are registered with, and the `///` comments of the stdlib). Do not edit: a test \
         fails when this file differs from what the code generates.\n\n\
         Nodes are named by their configuration names (`pg-bases2`, `pg-replica`); the host resolves \
         them to containers and ports. A primitive that changes the cluster prints what it would do \
         instead during a dry run."
    )
    .unwrap();
    for ((group, source), fns) in primitives(host) {
        writeln!(s, "\n## Primitives: {group} (`{source}`)\n").unwrap();
        for f in fns {
            writeln!(s, "- `{}`  \n  {}", f.signature, f.doc).unwrap();
        }
    }
    for (name, about, fns) in stdlib(host)? {
        writeln!(
            s,
            "\n## Stdlib: `import \"{name}\" as {name};` (`stdlib/{name}.rhai`)\n"
        )
        .unwrap();
        if !about.is_empty() {
            writeln!(s, "{about}\n").unwrap();
        }
        for f in fns {
            writeln!(s, "- `{}`  \n  {}", f.signature, f.doc).unwrap();
        }
    }
    Ok(s)
}

/// Every documented function: the primitives, then the stdlib's.
pub fn all(host: &Arc<Host>) -> Result<Vec<FnDoc>, Failure> {
    let mut all: Vec<FnDoc> = primitives(host).into_iter().flat_map(|(_, f)| f).collect();
    all.extend(stdlib(host)?.into_iter().flat_map(|(_, _, f)| f));
    Ok(all)
}

/// The documented functions named `name` (each overload), or `module::name`, for `:help NAME`.
pub fn lookup(host: &Arc<Host>, name: &str) -> Result<Vec<FnDoc>, Failure> {
    Ok(all(host)?
        .into_iter()
        .filter(|f| f.name == name || f.name.ends_with(&format!("::{name}")))
        .collect())
}
